//! Durations as administrators type them: `90` (seconds), `90s`, `5m`, `1h`, `1h30m`.

use std::time::Duration;

/// Parses a duration; a bare number is seconds.
///
/// # Errors
/// A readable reason for anything else.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
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
                return Err(format!(
                    "{s:?}: unknown unit {c:?} (use s, m, h or d, e.g. 90s, 5m, 1h30m)"
                ));
            }
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{s:?}: expected a number before {c:?}"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{s:?}: too long"))?;
        number.clear();
        saw_unit = true;
    }
    if !number.is_empty() || !saw_unit {
        return Err(format!(
            "{s:?}: a number needs a unit after another unit (e.g. 1h30m)"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// Like [`parse`] but also accepts fractions of a second in milliseconds (`500ms`), for
/// timeouts.
///
/// # Errors
/// A readable reason.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = match s.trim().strip_suffix("ms") {
        Some(ms) => ms
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("{s:?}: expected milliseconds, e.g. 500ms"))?,
        None => parse(s)?,
    };
    if d.is_zero() {
        return Err("timeout must be greater than zero".into());
    }
    Ok(d)
}

/// Like [`parse_timeout`] but zero is allowed: a pause that may be none.
///
/// # Errors
/// A readable reason.
pub fn parse_pause(s: &str) -> Result<Duration, String> {
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
