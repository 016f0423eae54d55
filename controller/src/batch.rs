//! How a rolling shutdown or restart is cut and when it stops: `--batch N|P%` (hosts per
//! batch) and `--max-fail N|P%` (how many failures end it).
//!
//! The threshold is *more than*, never *at least*, for both forms, as Ansible's
//! `max_fail_percentage` ("the percentage must be exceeded, not equalled"):
//! - `--max-fail N`: stop once more than N of the hosts sent the action so far have failed
//!   (`--max-fail 0` stops at the first failure, as Salt's `--failhard`);
//! - `--max-fail P%`: stop once more than P% of the hosts of the batch just sent failed
//!   (Ansible counts per batch too: with batches of 4, 2 failures are 50%, which stops
//!   `--max-fail 49%` but not `--max-fail 50%`).
//!
//! The check runs after each batch; the batches after it are not sent.

use std::fmt;

/// A number of hosts, or a percentage of them (`4` or `25%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// So many hosts.
    Hosts(usize),
    /// So many percent (0-100) of the hosts.
    Percent(u8),
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Share::Hosts(n) => write!(f, "{n}"),
            Share::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Why `--batch` or `--max-fail` is not a share of hosts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// Neither `N` nor `P%`.
    #[error("{0:?}: expected a number of hosts (e.g. 4) or a percentage of them (e.g. 25%)")]
    Invalid(String),
    /// A percentage above 100.
    #[error("{0:?}: a percentage is 0-100%")]
    OverHundred(String),
    /// A batch of no hosts.
    #[error("{0:?}: a batch needs at least one host (e.g. 1, or 10%)")]
    EmptyBatch(String),
}

/// Parses `N` or `P%` (0 allowed: `--max-fail 0` is "stop at the first failure").
///
/// # Errors
/// [`ShareError`].
pub fn parse_share(s: &str) -> Result<Share, ShareError> {
    let t = s.trim();
    let invalid = || ShareError::Invalid(s.to_owned());
    match t.strip_suffix('%') {
        Some(p) => {
            let p: u64 = p.trim().parse().map_err(|_| invalid())?;
            u8::try_from(p)
                .ok()
                .filter(|p| *p <= 100)
                .map(Share::Percent)
                .ok_or_else(|| ShareError::OverHundred(s.to_owned()))
        }
        None => t.parse().map(Share::Hosts).map_err(|_| invalid()),
    }
}

/// Parses `--batch`: `N` (at least 1) or `P%` (above 0).
///
/// # Errors
/// [`ShareError`].
pub fn parse_batch(s: &str) -> Result<Share, ShareError> {
    match parse_share(s)? {
        Share::Hosts(0) | Share::Percent(0) => Err(ShareError::EmptyBatch(s.to_owned())),
        share => Ok(share),
    }
}

impl Share {
    /// Hosts per batch out of `total`: a percentage rounds up and is at least 1.
    pub fn batch_size(self, total: usize) -> usize {
        match self {
            Share::Hosts(n) => n,
            Share::Percent(p) => (total * usize::from(p)).div_ceil(100),
        }
        .max(1)
    }

    /// Whether failures exceed the threshold (see the module docs): `failed_so_far` over
    /// every batch sent, `failed_in_batch` of `batch_len` in the batch just sent.
    pub fn exceeded(self, failed_so_far: usize, failed_in_batch: usize, batch_len: usize) -> bool {
        match self {
            Share::Hosts(n) => failed_so_far > n,
            // failed / len > p / 100, in integers.
            Share::Percent(p) => failed_in_batch * 100 > usize::from(p) * batch_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(parse_share("3"), Ok(Share::Hosts(3)));
        assert_eq!(parse_share("0"), Ok(Share::Hosts(0)));
        assert_eq!(parse_share("25%"), Ok(Share::Percent(25)));
        assert_eq!(parse_share("100%"), Ok(Share::Percent(100)));
        assert_eq!(
            parse_share("101%").unwrap_err().to_string(),
            "\"101%\": a percentage is 0-100%"
        );
        for bad in ["", "%", "-1", "x", "2.5", "25 %%"] {
            assert_eq!(
                parse_share(bad),
                Err(ShareError::Invalid(bad.into())),
                "{bad:?}"
            );
        }
        assert_eq!(parse_batch("0"), Err(ShareError::EmptyBatch("0".into())));
        assert_eq!(parse_batch("0%"), Err(ShareError::EmptyBatch("0%".into())));
        assert_eq!(parse_batch("1%"), Ok(Share::Percent(1)));
    }

    #[test]
    fn a_percentage_batch_rounds_up_and_is_never_empty() {
        assert_eq!(Share::Percent(25).batch_size(8), 2);
        assert_eq!(Share::Percent(25).batch_size(9), 3);
        assert_eq!(Share::Percent(1).batch_size(3), 1);
        assert_eq!(Share::Percent(100).batch_size(5), 5);
        assert_eq!(Share::Hosts(4).batch_size(2), 4);
        assert_eq!(Share::Percent(50).batch_size(0), 1);
    }

    #[test]
    fn the_threshold_must_be_exceeded_not_equalled() {
        // --max-fail 1: one failure is allowed, the second stops.
        assert!(!Share::Hosts(1).exceeded(1, 1, 2));
        assert!(Share::Hosts(1).exceeded(2, 1, 2));
        // --max-fail 0: the first failure stops (Salt's --failhard).
        assert!(Share::Hosts(0).exceeded(1, 1, 4));
        assert!(!Share::Hosts(0).exceeded(0, 0, 4));
        // Ansible's example: batches of 4, 2 failures = 50%.
        assert!(!Share::Percent(50).exceeded(2, 2, 4));
        assert!(Share::Percent(49).exceeded(2, 2, 4));
        // Per batch: earlier failures do not count toward a percentage.
        assert!(!Share::Percent(50).exceeded(9, 1, 4));
        assert!(!Share::Percent(100).exceeded(4, 4, 4));
    }
}
