//! Where results go while a command runs and when it ends: a progress bar on a terminal,
//! one JSON line per host as it completes (`--jsonl`), and the final table or document.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::render;
use crate::result::{HostResult, Status};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A table for people, sorted by host, and a summary line.
    Table,
    /// One JSON document at the end.
    Json,
    /// One JSON object per line, per host, as results arrive.
    Jsonl,
}

impl Mode {
    /// From the global flags.
    pub fn from_flags(json: bool, jsonl: bool) -> Self {
        match (json, jsonl) {
            (_, true) => Mode::Jsonl,
            (true, false) => Mode::Json,
            (false, false) => Mode::Table,
        }
    }
}

/// The running report of one command.
#[derive(Debug)]
pub struct Live {
    command: String,
    mode: Mode,
    bar: Option<ProgressBar>,
    failed: std::sync::atomic::AtomicUsize,
}

impl Live {
    /// Starts reporting `total` hosts. The progress bar (stderr, hosts done / total, failures
    /// so far) appears only in table mode and only when stderr is a terminal.
    pub fn new(command: &str, mode: Mode, total: usize) -> Self {
        let bar =
            (mode == Mode::Table && std::io::stderr().is_terminal() && total > 0).then(|| {
                let style = ProgressStyle::with_template(
                    "{spinner} {prefix} [{bar:30}] {pos}/{len} hosts done, {msg} ({elapsed})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                let bar = ProgressBar::with_draw_target(
                    Some(total as u64),
                    ProgressDrawTarget::stderr_with_hz(10),
                )
                .with_style(style)
                .with_prefix(command.to_owned())
                .with_message("0 failed");
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
        Self {
            command: command.to_owned(),
            mode,
            bar,
            failed: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A note for the person at the terminal (stderr, above the bar); nothing in JSON modes.
    pub fn note(&self, text: &str) {
        if self.mode != Mode::Table {
            return;
        }
        let text = render::sanitize(text);
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// One host is finished.
    pub fn done(&self, result: &HostResult) {
        if result.status() == Status::Failed {
            self.failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!(
                "{} failed",
                self.failed.load(std::sync::atomic::Ordering::Relaxed)
            ));
        }
        if self.mode == Mode::Jsonl {
            crate::outln!("{}", render::jsonl_line(&self.command, result));
        }
    }

    /// Hides the bar (before a prompt, or at the end).
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Clears the bar and prints the final table or document (`--jsonl` printed as it went).
    pub fn finish(&self, results: &[HostResult]) {
        self.clear();
        match self.mode {
            Mode::Table => crate::out!("{}", render::table(results)),
            Mode::Json => crate::outln!(
                "{}",
                render::json_text(&render::json(&self.command, results))
            ),
            Mode::Jsonl => {}
        }
    }
}
