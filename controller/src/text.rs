//! String helpers for names: the order people expect (`lab-2` before `lab-10`) and
//! "did you mean" suggestions for a mistyped name.

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
}
