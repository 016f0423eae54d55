//! A pretend reboot, for tests and demonstrations of `lightsout restart --wait` against
//! dry-run agents (`--simulate-reboot`, which needs `--dry-run`).
//!
//! After a rehearsed restart the agent behaves, from the network, like a machine that
//! rebooted when the restart was due: it refuses connections for the configured downtime,
//! then reports a fresh `boot_id`, a boot time of "then" and an uptime counted from it.
//! Nothing is executed and nothing else changes.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The simulated boot, if a restart was rehearsed.
#[derive(Debug, Default)]
pub struct SimulatedBoot {
    state: Mutex<Option<Boot>>,
    count: Mutex<u64>,
}

#[derive(Debug, Clone)]
struct Boot {
    /// When the machine "went down".
    down_at: Instant,
    /// When it "is back".
    up_at: Instant,
    /// The new identity, reported from `down_at` on.
    boot_id: String,
    boot_time_unix: u64,
}

impl SimulatedBoot {
    /// Pretends to reboot `delay` from now, staying unreachable for `downtime`.
    pub fn schedule(&self, delay: Duration, downtime: Duration) {
        let n = {
            let mut count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
            *count += 1;
            *count
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let down_at = Instant::now() + delay;
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Some(Boot {
            down_at,
            up_at: down_at + downtime,
            boot_id: format!("simulated-{:x}-{n}", now.as_nanos()),
            boot_time_unix: (now + delay).as_secs(),
        });
    }

    /// Whether the machine is "down" right now: connections are refused.
    pub fn is_down(&self) -> bool {
        let now = Instant::now();
        self.current()
            .is_some_and(|b| now >= b.down_at && now < b.up_at)
    }

    /// The simulated (boot_id, boot_time_unix), once the pretend reboot has happened.
    pub fn identity(&self) -> Option<(String, u64)> {
        self.current()
            .filter(|b| Instant::now() >= b.down_at)
            .map(|b| (b.boot_id, b.boot_time_unix))
    }

    fn current(&self) -> Option<Boot> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_changes_before_the_restart_is_due() {
        let sim = SimulatedBoot::default();
        assert!(sim.identity().is_none() && !sim.is_down());
        sim.schedule(Duration::from_secs(3600), Duration::from_secs(1));
        assert!(sim.identity().is_none() && !sim.is_down());
    }

    #[test]
    fn down_then_back_with_a_new_identity() {
        let sim = SimulatedBoot::default();
        sim.schedule(Duration::ZERO, Duration::from_millis(50));
        assert!(sim.is_down());
        let (first, _) = sim.identity().unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert!(!sim.is_down());
        sim.schedule(Duration::ZERO, Duration::ZERO);
        let (second, _) = sim.identity().unwrap();
        assert_ne!(first, second, "every simulated boot is a new one");
    }
}
