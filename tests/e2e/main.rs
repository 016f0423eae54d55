//! End-to-end tests: one test binary, one module per area.

#![allow(clippy::unwrap_used)]

mod authz;
mod controller_cli;
mod lifecycle;
mod packaging;
#[cfg(unix)]
mod power_exec;
#[cfg(unix)]
mod privilege;
mod smoke;
mod wire_frames;
mod wire_tls;
