//! Text that came from the other side, made safe to show on a terminal.
//!
//! An agent's host name, a refusal message, an audit entry: any of it may carry escape
//! sequences. A compromised machine must not be able to drive the administrator's terminal,
//! so every such string is passed through [`sanitize`] before it is printed.

/// Whether `c` must never reach a terminal raw: C0 and C1 control characters, DEL, and the
/// Unicode bidirectional overrides and marks (which can make text read differently from what
/// it is), plus the line and paragraph separators.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Replaces every [unsafe](is_unsafe) character with `?`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if is_unsafe(c) { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_escapes_keeps_text() {
        assert_eq!(sanitize("lab\u{1b}[2J01\r\n\u{7}"), "lab?[2J01???");
        assert_eq!(sanitize("a\u{9b}b\u{202e}c\u{2028}"), "a?b?c?");
        assert_eq!(sanitize("salle-été_01"), "salle-été_01");
    }
}
