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
//! From the socket down; each module imports only modules below it (checked with
//! `shared/tools/modcycles.py agent/src`).
//! - [`server`]: [`run`], the accept loop, connection cap and graceful shutdown.
//! - [`listener`]: binding the listening socket (SO_REUSEADDR, dual-stack, deep backlog).
//! - `connection`: one client: handshake deadline, admission, framed reads with an idle
//!   deadline, the rate limit, replies as frames.
//! - `admission`: authenticated connections capped per source address and per certificate,
//!   and the last slots kept for reserved roles.
//! - `request`: one request's path, top to bottom: decode → decide → remember → reserve →
//!   audit → hand over → commit → reply → execute.
//! - `cmd`: the requests that run at once (echo, cancel, wake), one module each.
//! - `state`: the state every request may read, and who is asking.
//! - `power`: the pending action (reserved, handed over, committed) and its two backends:
//!   systemd-logind (via [`logind`]) or a command (with the agent-side timer).
//! - [`replay`]: the replay memory: replies to recent power requests (at-most-once),
//!   per certificate, kept across restarts.
//! - [`audit`]: one JSON line per request and per execution; power actions fail closed
//!   without it.
//! - `last_action`: the last accepted live action and its boot id, synced, so the next
//!   start can audit that it took the machine down.
//! - [`access`]: TLS config, policy and revocations, swapped as a whole on SIGHUP.
//! - [`policy`]: roles and per-agent narrowing: who may do what.
//! - `handshakes`: handshakes in progress per source address, capped.
//! - `rate`: the per-connection request rate limit and the agent-wide wake budget.
//! - `health`: the health snapshot (and the test-only simulated reboot).
//! - `occupancy`: who occupies the machine (logind's user sessions, or utmp), defined once.
//! - [`logind`]: the D-Bus client for systemd-logind (power backend, sessions).
//! - [`config`]: the validated [`Config`] and its [`Limits`]; [`resolve`] builds it from the
//!   command line ([`cli`]), the environment and the file ([`settings`]).
//! - [`discovery`]: answering LAN discovery probes, for agents that opt in.
//! - [`man`]: the man pages' own sections (packaged files, signals); the pages are walked
//!   and written by `lightsout_cli::man`.
//! - `privilege`: whether this process may power the machine off.
//! - [`stdout`]: standard output, where a closed pipe is a normal end (`outln!`), re-exported
//!   from `lightsout_cli`.

pub mod access;
pub(crate) mod admission;
pub mod audit;
pub mod cli;
pub(crate) mod cmd;
pub mod config;
pub(crate) mod connection;
pub mod discovery;
pub(crate) mod handshakes;
pub(crate) mod health;
pub mod last_action;
pub mod listener;
pub mod logind;
pub mod man;
pub(crate) mod occupancy;
pub mod policy;
pub(crate) mod power;
pub(crate) mod privilege;
pub(crate) mod rate;
pub mod replay;
pub(crate) mod request;
pub mod resolve;
pub mod server;
pub mod settings;
pub(crate) mod state;

pub use config::{Config, Limits, Testing};
// Standard output is shared with the controller (`lightsout-cli`); re-exported so that the
// crate's modules and the binary write `crate::outln!` / `lightsout_agent::stdout`.
pub use lightsout_cli::{outln, stdout};
pub use server::run;
