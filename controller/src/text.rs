//! String helpers for names: the order people expect (`lab-2` before `lab-10`), "did you
//! mean" suggestions for a mistyped name, host names compared without their domain, and
//! agent text shortened to one line.

use std::cmp::Ordering;

/// Orders names as people expect: `lab-2` before `lab-10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, xa), (db, xb)) in ca.iter().zip(&cb) {
        let ord = if *da && *db {
            let (ta, tb) = (xa.trim_start_matches('0'), xb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            xa.cmp(xb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

/// ` (did you mean "x"?)` when a known name is within two edits of `name`.
pub(crate) fn suggest<'a>(
    name: &str,
    known: impl Iterator<Item = &'a str>,
    prefix: &str,
) -> String {
    known
        .map(|k| (strsim::levenshtein(name, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean \"{prefix}{k}\"?)"))
        .unwrap_or_default()
}

/// Whether two host names name the same machine as people write them: case-insensitive, and
/// without the domain (`lab-01.example.edu` is `lab-01`). An agent reports its own host name
/// (often fully qualified) while the inventory uses short names. Addresses are compared whole:
/// `10.0.0.1` is not `10.0.0.2`.
pub fn same_host_name(a: &str, b: &str) -> bool {
    fn short(name: &str) -> &str {
        if name.parse::<std::net::IpAddr>().is_ok() {
            name
        } else {
            name.split('.').next().unwrap_or(name)
        }
    }
    short(a).eq_ignore_ascii_case(short(b))
}

/// `text` on one line (lines joined by a space), at most `max` characters, `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.chars().count() <= max {
        line
    } else {
        let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut names = vec!["lab-10", "lab-2", "lab-01", "alpha", "lab-1a"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["alpha", "lab-01", "lab-1a", "lab-2", "lab-10"]);
    }

    #[test]
    fn suggestions_within_two_edits() {
        let known = ["lab-01", "lab-02", "printer"];
        assert_eq!(
            suggest("lab-1", known.into_iter(), ""),
            " (did you mean \"lab-01\"?)"
        );
        assert_eq!(
            suggest("room", ["room-a"].into_iter(), "@"),
            " (did you mean \"@room-a\"?)"
        );
        assert_eq!(suggest("gateway", known.into_iter(), ""), "");
    }

    #[test]
    fn host_names_compare_without_domain_and_case() {
        assert!(same_host_name("lab-01.example.edu", "lab-01"));
        assert!(same_host_name("LAB-01", "lab-01.Example.EDU"));
        assert!(same_host_name("lab-01", "lab-01"));
        assert!(!same_host_name("lab-01.example.edu", "lab-02"));
        assert!(!same_host_name("10.0.0.1", "10.0.0.2"), "addresses whole");
        assert!(!same_host_name("10.0.0.1", "10"));
    }

    #[test]
    fn shortened_to_one_line() {
        assert_eq!(shorten("a\n  b\n", 10), "a b");
        assert_eq!(shorten("abcdefghijkl", 5), "abcd…");
        assert_eq!(shorten("", 5), "");
    }
}
