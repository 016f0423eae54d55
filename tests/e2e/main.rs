//! End-to-end tests: one test binary, one module per area.

#![allow(clippy::unwrap_used)]

mod faults;
mod hostile;
mod rig;
mod smoke;
