//! `lightsout-cli`: the command-line plumbing the two binaries (`lightsout-agent` and
//! `lightsout`) share, kept here once so that they behave the same at their edges. What
//! differs per binary (program name, man section, the man sections clap cannot know) is
//! passed in; the text itself stays in the binary crates.
//!
//! # Layout
//! Each module stands alone (checked with `shared/tools/modcycles.py cli/src`), except that
//! [`man`] writes through [`stdout`].
//! - [`stdout`]: standard output, where a closed pipe is a normal end (`outln!`, `out!`).
//! - [`man`]: man pages with clap_mangen: one page per subcommand at every level, written
//!   into `--out-dir`, each binary adding its own sections.
//! - [`report`]: an `anyhow` error chain on one line, each cause once, and the exit status
//!   a binary ends with (including a failed standard output).

pub mod man;
pub mod report;
pub mod stdout;
