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
    /// `-5`: clap would suggest `-- -5`, which is no better.
    #[error("a {what} cannot be negative: {input}; {hint}")]
    Negative {
        /// `delay`, `timeout`, `pause`, `duration`.
        what: &'static str,
        /// As typed.
        input: String,
        /// What to give instead.
        hint: &'static str,
    },
    /// `--delay --yes`: the value was left out, and the next option taken for it.
    #[error("{input:?} is an option, not a {what}: {hint}")]
    Missing {
        /// `delay`, `timeout`, `pause`, `duration`.
        what: &'static str,
        /// As typed.
        input: String,
        /// What to give instead.
        hint: &'static str,
    },
}

/// A leading minus sign before a number: refused with what to give instead. (The options
/// that take durations accept values starting with `-` so that this, and not clap's tip to
/// write `-- -5`, is what the user reads.)
fn refuse_negative(s: &str, what: &'static str, hint: &'static str) -> Result<(), DurationError> {
    let t = s.trim();
    if t.starts_with("--") {
        return Err(DurationError::Missing {
            what,
            input: t.to_owned(),
            hint,
        });
    }
    if t.strip_prefix('-')
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    {
        return Err(DurationError::Negative {
            what,
            input: t.to_owned(),
            hint,
        });
    }
    Ok(())
}

/// [`parse`] for `--delay`: a negative delay is refused with "give 0 for now".
///
/// # Errors
/// [`DurationError`].
pub fn parse_delay(s: &str) -> Result<Duration, DurationError> {
    refuse_negative(s, "delay", "give 0 for now, or e.g. 5m")?;
    parse(s)
}

/// Parses a duration; a bare number is seconds.
///
/// # Errors
/// [`DurationError`] for anything else.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    refuse_negative(s, "duration", "give e.g. 90s, 5m or 60d")?;
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
    refuse_negative(s, "timeout", "give e.g. 5s, 500ms or 10m")?;
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
    refuse_negative(s, "pause", "give 0 for none, or e.g. 30s")?;
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
    fn negative_durations_say_so_and_what_to_give() {
        assert_eq!(
            parse_delay("-5").unwrap_err().to_string(),
            "a delay cannot be negative: -5; give 0 for now, or e.g. 5m"
        );
        assert_eq!(
            parse_timeout("-1s").unwrap_err().to_string(),
            "a timeout cannot be negative: -1s; give e.g. 5s, 500ms or 10m"
        );
        assert!(matches!(
            parse_pause("-500ms"),
            Err(DurationError::Negative { what: "pause", .. })
        ));
        assert!(matches!(
            parse("-2d"),
            Err(DurationError::Negative {
                what: "duration",
                ..
            })
        ));
        // An option typed where the value belongs is not a negative number.
        assert_eq!(
            parse_delay("--yes").unwrap_err().to_string(),
            "\"--yes\" is an option, not a delay: give 0 for now, or e.g. 5m"
        );
        assert!(matches!(parse("-"), Err(DurationError::UnknownUnit { .. })));
        assert_eq!(parse_delay("5m"), Ok(Duration::from_secs(300)));
    }

    #[test]
    fn human_form() {
        assert_eq!(human(0), "0s");
        assert_eq!(human(45), "45s");
        assert_eq!(human(300), "5m");
        assert_eq!(human(5430), "1h30m30s");
    }
}
