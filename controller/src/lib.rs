//! The lightsout controller: connects to agents over mutual TLS, fans a request out to many
//! of them in parallel, and reports each host's outcome.
//!
//! # Layout
//! - [`cli`]: the clap definitions of the command line.
//! - [`pki_cmd`]: `lightsout pki ...`.
//! - [`target`]: parsing `host`, `host:port`, `[v6]:port`.
//! - [`duration`]: parsing `90`, `90s`, `5m`, `1h30m`.
//! - [`client`]: one connection to one agent: connect, handshake, request/response.
//! - [`error`]: [`ClientError`], the distinct ways reaching an agent can fail.
//! - [`fanout`]: many hosts at once, with a concurrency cap and a per-host deadline.
//! - [`report`]: the human table and the `--json` document; sanitises agent text.

pub mod cli;
pub mod client;
pub mod duration;
pub mod error;
pub mod fanout;
pub mod pki_cmd;
pub mod report;
pub mod target;

pub use client::Client;
pub use error::ClientError;
pub use fanout::{FanOut, HostResult};
pub use target::Target;
