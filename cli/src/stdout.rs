//! Standard output, written so that a closed pipe is a normal end (ripgrep's rule): when the
//! reader has gone (`lightsout status | head`, `lightsout-agent audit tail | head`), the rest of the output is
//! dropped quietly and the command ends with the status it would have had. `println!` would
//! panic instead (exit 101). Any other write error (a full disk) is kept and reported once
//! by the binary at the end.

use std::fmt;
use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write found the reader gone: every later write is skipped.
static READER_GONE: AtomicBool = AtomicBool::new(false);

/// The first write error that was not a closed pipe.
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Writes formatted text to standard output and flushes it (callers use `format_args!`).
pub fn print(args: fmt::Arguments<'_>) {
    write_with(|out| out.write_fmt(args));
}

/// Writes bytes (a generated man page or completion script) to standard output.
pub fn bytes(data: &[u8]) {
    write_with(|out| out.write_all(data));
}

fn write_with(f: impl FnOnce(&mut io::StdoutLock<'static>) -> io::Result<()>) {
    if READER_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    let result = f(&mut out).and_then(|()| out.flush());
    record(result);
}

/// Keeps the outcome of one write: a closed pipe ends the output, another error is kept.
fn record(result: io::Result<()>) {
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            READER_GONE.store(true, Ordering::Relaxed);
        }
        Err(e) => {
            READER_GONE.store(true, Ordering::Relaxed);
            if let Ok(mut failed) = FAILED.lock() {
                failed.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Why standard output could not be written, if it could not (a closed pipe is not an
/// error): the binary reports it and exits with its usage/configuration status.
pub fn error() -> Option<String> {
    FAILED.lock().ok().and_then(|f| f.clone())
}

/// `println!` that never panics: see the module docs.
#[macro_export]
macro_rules! outln {
    () => { $crate::stdout::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdout::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that never panics: see the module docs.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdout::print(format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_ends_output_quietly_and_other_errors_are_kept() {
        record(Ok(()));
        assert!(!READER_GONE.load(Ordering::Relaxed));
        assert_eq!(error(), None);
        record(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(READER_GONE.load(Ordering::Relaxed));
        assert_eq!(error(), None, "a reader that has gone is not an error");
        record(Err(io::Error::other("no space left on device")));
        record(Err(io::Error::other("a second error")));
        assert_eq!(error().as_deref(), Some("no space left on device"));
    }
}
