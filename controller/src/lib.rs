//! The lightsout controller: connects to agents over mutual TLS, fans a request out to many
//! of them in parallel, and reports each host's outcome.
//!
//! # Layout
//! - [`cli`]: the clap definitions of the command line.
//! - [`pki_cmd`]: `lightsout pki ...`.
//! - [`inventory`]: the lab's hosts and groups (TOML or Ansible INI) and TARGET resolution.
//! - [`target`]: parsing `host`, `host:port`, `[v6]:port`.
//! - [`duration`]: parsing `90`, `90s`, `5m`, `1h30m`.
//! - [`client`]: one connection to one agent: connect, handshake, request/response.
//! - [`error`]: [`ClientError`], the distinct ways reaching an agent can fail.
//! - [`fanout`]: many hosts at once, with a concurrency cap and a per-host deadline.
//! - [`report`]: the table, the status board, `--json` and `--jsonl`; sanitises agent text.
//! - [`output`]: the progress bar and printing results as they arrive and at the end.
//! - [`local`]: recognising the machine the controller runs on.
//! - [`power`]: the safe shutdown/restart workflow (confirmation, self-protection,
//!   `--skip-busy`, batches, `restart --wait`).
//! - [`wake`]: Wake-on-LAN, directly or through an agent (`--via`).
//! - [`discover`]: finding agents on the LAN.
//! - [`inventory_cmd`]: `inventory list` and `inventory learn`.

pub mod cli;
pub mod client;
pub mod discover;
pub mod duration;
pub mod error;
pub mod fanout;
pub mod inventory;
pub mod inventory_cmd;
pub mod local;
pub mod output;
pub mod pki_cmd;
pub mod power;
pub mod report;
pub mod target;
pub mod wake;

pub use client::Client;
pub use error::ClientError;
pub use fanout::{FanOut, HostResult};
pub use target::Target;
