//! End-to-end tests: one test binary, one module per area.

#![allow(clippy::unwrap_used)]

mod at_most_once;
#[cfg(unix)]
mod audit_durability;
mod authz;
mod controller_cli;
mod faults;
mod hostile;
mod lab;
mod lan;
mod lifecycle;
mod netns;
mod packaging;
#[cfg(unix)]
mod power_exec;
#[cfg(unix)]
mod privilege;
mod resources;
mod rig;
mod smoke;
mod wire_frames;
mod wire_tls;
