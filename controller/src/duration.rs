//! Durations as administrators type them: `90` (seconds), `90s`, `5m`, `1h`, `1h30m`.

use std::time::Duration;

/// Why a duration is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was typed.
    #[error("empty duration")]
    Empty,
    /// A letter that is not s, m, h or d.
    #[error("{input:?}: unknown unit {unit:?} (use s, m, h or d, e.g. 90s, 5m, 1h30m)")]
    UnknownUnit {
        /// As typed.
        input: String,
        /// The letter.
        unit: char,
    },
    /// A unit with no number before it.
    #[error("{input:?}: expected a number before {unit:?}")]
    NoNumber {
        /// As typed.
        input: String,
        /// The unit.
        unit: char,
    },
    /// More seconds than fit.
    #[error("{0:?}: too long")]
    TooLong(String),
    /// `1h30`: a number without a unit after a unit.
    #[error("{0:?}: a number needs a unit after another unit (e.g. 1h30m)")]
    MissingUnit(String),
    /// `ms` after something that is not a number.
    #[error("{0:?}: expected milliseconds, e.g. 500ms")]
    BadMillis(String),
    /// A timeout of zero.
    #[error("timeout must be greater than zero")]
    Zero,
}

/// Parses a duration; a bare number is seconds.
///
/// # Errors
/// [`DurationError`] for anything else.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut saw_unit = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: s.to_owned(),
                    unit: c,
                });
            }
        };
        let n: u64 = number.parse().map_err(|_| DurationError::NoNumber {
            input: s.to_owned(),
            unit: c,
        })?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| DurationError::TooLong(s.to_owned()))?;
        number.clear();
        saw_unit = true;
    }
    if !number.is_empty() || !saw_unit {
        return Err(DurationError::MissingUnit(s.to_owned()));
    }
    Ok(Duration::from_secs(total))
}

/// Like [`parse`] but also accepts fractions of a second in milliseconds (`500ms`), for
/// timeouts.
///
/// # Errors
/// [`DurationError`].
pub fn parse_timeout(s: &str) -> Result<Duration, DurationError> {
    let d = match s.trim().strip_suffix("ms") {
        Some(ms) => ms
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| DurationError::BadMillis(s.to_owned()))?,
        None => parse(s)?,
    };
    if d.is_zero() {
        return Err(DurationError::Zero);
    }
    Ok(d)
}

/// Like [`parse_timeout`] but zero is allowed: a pause that may be none.
///
/// # Errors
/// [`DurationError`].
pub fn parse_pause(s: &str) -> Result<Duration, DurationError> {
    match parse_timeout(s) {
        Err(_) if parse(s) == Ok(Duration::ZERO) => Ok(Duration::ZERO),
        other => other,
    }
}

/// Short human form: `45s`, `5m`, `1h30m`.
pub fn human(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        for (s, secs) in [
            ("90", 90),
            ("90s", 90),
            ("5m", 300),
            ("1h", 3600),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("0", 0),
        ] {
            assert_eq!(parse(s), Ok(Duration::from_secs(secs)), "{s}");
        }
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn rejected_forms() {
        for s in ["", "m", "5x", "-5", "1h30", "5 m", "99999999999999999999h"] {
            assert!(parse(s).is_err(), "{s:?}");
        }
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("0ms").is_err(), "zero is zero in any unit");
    }

    #[test]
    fn human_form() {
        assert_eq!(human(0), "0s");
        assert_eq!(human(45), "45s");
        assert_eq!(human(300), "5m");
        assert_eq!(human(5430), "1h30m30s");
    }
}
