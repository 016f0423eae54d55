//! The lightsout controller: connects to agents over mutual TLS, fans a request out to many
//! of them in parallel, and reports each host's outcome.
//!
//! # Layout
//! Public (the binary, the end-to-end tests and the benchmark use them):
//! - [`cli`]: the clap definitions of the command line.
//! - [`batch`]: `--batch N|P%` and `--max-fail N|P%`: batch sizes and when a rolling run stops.
//! - [`cmd`]: the subcommands, one file each (`echo`, `status`, `cancel`, `power`, `wake`,
//!   `discover`, `inventory`, `pki`).
//! - [`inventory`]: the lab's hosts and groups (TOML, or an Ansible inventory) and TARGET resolution.
//! - [`fanout`]: many hosts at once, with a concurrency cap and a per-host deadline.
//! - [`result`]: the result model: [`HostResult`], its outcome and [`result::Status`].
//! - [`print`](mod@print): where results are printed: the progress bar, results as they
//!   arrive and at the end.
//! - [`local`]: recognising the machine the controller runs on.
//! - [`man`]: the man pages' sections clap cannot know; the pages are walked and written by
//!   `lightsout_cli::man`.
//! - [`stdout`]: standard output, where a closed pipe is a normal end (`outln!`, `out!`),
//!   re-exported from `lightsout_cli`.
//!
//! Inside the crate:
//! - `client`: one connection to one agent ([`Client`]): connect, handshake,
//!   request/response.
//! - `error`: [`ClientError`], the distinct ways reaching an agent can fail.
//! - `target`: parsing `host`, `host:port`, `[v6]:port` into a [`Target`].
//! - `duration`: parsing `90`, `90s`, `5m`, `1h30m`.
//! - `board`: the status board's NOTE for a host (pending action, last failure, host name)
//!   and the same facts for `--json`.
//! - `wait`: `--wait` after a shutdown or restart: polling each host until the action
//!   happened, failed, or was cancelled.
//! - `render`: results as text (the table, the status board, `--json`, `--jsonl`);
//!   sanitises agent text.
//! - `text`: string helpers: natural order of names, "did you mean" suggestions.
//!
//! The binary (`main.rs`) adds `settings.rs`: the command line turned into validated
//! settings (inventory loaded, targets resolved, TLS configuration loaded) before any work,
//! and the only `anyhow` errors.

pub mod batch;
pub(crate) mod board;
pub mod cli;
pub(crate) mod client;
pub mod cmd;
pub(crate) mod duration;
pub(crate) mod error;
pub mod fanout;
pub mod inventory;
pub mod local;
pub mod man;
pub mod print;
pub(crate) mod render;
pub mod result;
pub(crate) mod target;
pub(crate) mod text;
pub(crate) mod wait;

// Standard output is shared with the agent (`lightsout-cli`); re-exported so that the
// crate's modules and the binary write `crate::outln!` / `lightsout_controller::stdout`.
pub use lightsout_cli::{out, outln, stdout};

pub use client::Client;
pub use error::ClientError;
pub use fanout::FanOut;
pub use result::HostResult;
pub use target::{Target, TargetError};
