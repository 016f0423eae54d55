//! Rate limits: the per-connection request rate (a token bucket) and the agent-wide budget
//! of Wake-on-LAN packets.
//!
//! Each connection may send up to `rate` requests in a burst, then `rate` per second on
//! average. A request over the limit is not carried out: it is answered with `busy` ("rate
//! limit") and the connection stays usable, so a well-behaved client that slows down carries
//! on. Answering instead of closing keeps the client informed; the answer is cheap (no health
//! snapshot, no power action, no log line at the default level), so a client ignoring it
//! costs little more than its own bytes.

use tokio::time::Instant;

/// One token, in the bucket's integer unit (nano-tokens): integer arithmetic, so refills
/// computed in many small steps add up exactly.
const TOKEN: u128 = 1_000_000_000;

/// A token bucket holding at most `rate` tokens, refilled at `rate` tokens a second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u128,
    /// Current content, in nano-tokens.
    level: u128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket allowing `rate` requests at once and `rate` a second after that.
    /// A rate of 0 is treated as 1.
    pub fn per_second(rate: u32) -> Self {
        let rate = u128::from(rate.max(1));
        Self {
            rate,
            level: rate * TOKEN,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one (true), else leaves the bucket as it is (false).
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.last = now;
        // nanoseconds x tokens/second = nano-tokens.
        self.level = self
            .level
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(self.rate * TOKEN);
        if self.level >= TOKEN {
            self.level -= TOKEN;
            true
        } else {
            false
        }
    }
}

/// Magic packets this agent sends per [`BUDGET_WINDOW`], whoever asks: enough to wake a
/// room of a thousand machines at once, too few for a stolen operator certificate to turn
/// the agent into a broadcast storm (the per-connection rate limit alone would allow
/// 100 requests × 256 MACs a second).
pub const PACKETS_PER_WINDOW: u32 = 2048;
/// The window of [`PACKETS_PER_WINDOW`].
pub const BUDGET_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// The agent-wide allowance of magic packets.
#[derive(Debug)]
pub struct WakeBudget {
    used: std::sync::Mutex<(std::time::Instant, u32)>,
}

impl Default for WakeBudget {
    fn default() -> Self {
        Self {
            used: std::sync::Mutex::new((std::time::Instant::now(), 0)),
        }
    }
}

impl WakeBudget {
    /// Takes `n` packets from the current window's allowance, or none if they do not fit.
    pub fn try_take(&self, n: usize) -> bool {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if used.0.elapsed() >= BUDGET_WINDOW {
            *used = (std::time::Instant::now(), 0);
        }
        match u32::try_from(n).ok().and_then(|n| used.1.checked_add(n)) {
            Some(total) if total <= PACKETS_PER_WINDOW => {
                used.1 = total;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_steady_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::per_second(5);
        bucket.last = start;
        for i in 0..5 {
            assert!(bucket.try_take_at(start), "burst request {i}");
        }
        assert!(!bucket.try_take_at(start), "sixth in the same instant");
        // 200 ms later exactly one more token has come back.
        let later = start + Duration::from_millis(200);
        assert!(bucket.try_take_at(later));
        assert!(!bucket.try_take_at(later));
    }

    #[test]
    fn refill_never_exceeds_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::per_second(3);
        bucket.last = start;
        let much_later = start + Duration::from_secs(3600);
        let granted = (0..10).filter(|_| bucket.try_take_at(much_later)).count();
        assert_eq!(granted, 3);
    }

    #[test]
    fn refused_requests_do_not_consume() {
        let start = Instant::now();
        let mut bucket = TokenBucket::per_second(1);
        bucket.last = start;
        assert!(bucket.try_take_at(start));
        // Hammering while empty must not push the next token further away.
        for ms in [100, 200, 300, 400, 500, 600, 700, 800, 900] {
            assert!(!bucket.try_take_at(start + Duration::from_millis(ms)));
        }
        assert!(bucket.try_take_at(start + Duration::from_millis(1000)));
    }

    #[test]
    fn zero_rate_is_one() {
        let start = Instant::now();
        let mut bucket = TokenBucket::per_second(0);
        bucket.last = start;
        assert!(bucket.try_take_at(start));
        assert!(!bucket.try_take_at(start));
    }
}
