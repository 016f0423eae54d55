//! How a binary ends: its error on one line on stderr, and a standard output that could not
//! be written (other than a closed pipe, see [`crate::stdout`]) is an error too. Both
//! binaries exit 2 for these (usage or configuration).

use std::process::ExitCode;

/// The status for a usage or configuration error, and for a failed standard output.
const USAGE: u8 = 2;

/// The error and its causes on one line, each said once: a cause whose text its parent
/// already includes (`FILE: No such file or directory` over `No such file or directory`) is
/// left out, so nothing reads twice.
#[must_use]
pub fn chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Says `e` on stderr as `PROGRAM: error: ...` and returns the usage status (2).
#[must_use]
pub fn fail(program: &str, e: &anyhow::Error) -> ExitCode {
    eprintln!("{program}: error: {}", chain(e));
    ExitCode::from(USAGE)
}

/// `status`, unless standard output could not be written: then that is said on stderr and
/// the status is 2. A closed pipe is a normal end, and `status` stands.
#[must_use]
pub fn finish(program: &str, status: ExitCode) -> ExitCode {
    match crate::stdout::error() {
        Some(e) => {
            eprintln!("{program}: error: cannot write to standard output: {e}");
            ExitCode::from(USAGE)
        }
        None => status,
    }
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io.to_string();
        // A cause whose text its parent already includes is left out...
        let e = anyhow::Error::new(io).context(format!("inventory.toml: {text}"));
        assert_eq!(chain(&e), format!("inventory.toml: {text}"));
        // ...and a cause that adds something is kept, after its parent.
        let e = anyhow::anyhow!("permission denied").context("failed to load the CRL");
        assert_eq!(chain(&e), "failed to load the CRL: permission denied");
    }
}
