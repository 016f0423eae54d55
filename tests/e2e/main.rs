//! End-to-end tests: one test binary, one module per area.

#![allow(clippy::unwrap_used)]

mod ansible_corpus;
mod at_most_once;
#[cfg(unix)]
mod audit_durability;
mod authz;
mod caps;
mod cli_behaviour;
mod controller_cli;
mod faults;
mod hostile;
#[cfg(unix)]
mod keys;
mod lab;
mod lan;
mod lifecycle;
#[cfg(unix)]
mod logind;
mod netns;
mod packaging;
#[cfg(unix)]
mod power_exec;
#[cfg(unix)]
mod privilege;
mod resources;
mod smoke;
#[cfg(unix)]
mod status_board;
mod trust;
#[cfg(unix)]
mod waits;
mod wire_frames;
mod wire_tls;
