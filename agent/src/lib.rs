//! `lightsout-agent`: the daemon on every lab machine.
//!
//! It listens on the LAN over mutual TLS and acts only on the closed set of requests in
//! [`lightsout_protocol::Request`]: echo (a health check), shutdown, restart, cancel and
//! wake (Wake-on-LAN packets on a controller's behalf). Power
//! requests run only when the agent is privileged, are answered *before* they are executed,
//! and in dry-run mode are answered with the exact command line and never executed. Nothing a
//! client sends reaches a shell: commands are argv vectors built by
//! [`lightsout_protocol::power::plan`].
//!
//! # Layout
//! - [`config`]: the validated [`Config`] and its [`Limits`].
//! - [`access`]: TLS config, policy and revocations, swapped as a whole on SIGHUP.
//! - [`policy`]: roles and per-agent narrowing: who may do what.
//! - [`audit`]: one JSON line per request; power actions fail closed without it.
//! - [`cli`]: the clap definitions of the command line.
//! - [`settings`]: the TOML configuration file.
//! - [`listener`]: binding the listening socket (SO_REUSEADDR, dual-stack, deep backlog).
//! - [`server`]: [`run`], the accept loop, connection cap and graceful shutdown.
//! - [`handshakes`]: handshakes in progress per source address, capped.
//! - [`connection`]: one client: handshake deadline, framed reads with an idle deadline.
//! - [`dispatch`]: decodes a frame and routes it to its command; remembers power replies.
//! - [`cmd`]: one module per request kind.
//! - [`rate`]: the per-connection request rate limit (a token bucket).
//! - [`power`]: pending actions, the agent-side timer and running the command.
//! - [`health`]: the health snapshot (and the test-only simulated reboot).
//! - [`discovery`]: answering LAN discovery probes, for agents that opt in.
//! - [`privilege`]: whether this process may power the machine off.

pub mod access;
pub mod audit;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod discovery;
pub mod dispatch;
pub mod handshakes;
pub mod health;
pub mod listener;
pub mod policy;
pub mod power;
pub mod privilege;
pub mod rate;
pub mod server;
pub mod settings;

pub use config::{Config, Limits, Testing};
pub use server::run;
