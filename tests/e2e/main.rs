//! End-to-end tests: one test binary, one module per area.

#![allow(clippy::unwrap_used)]

mod at_most_once;
mod faults;
mod hostile;
mod netns;
mod resources;
mod rig;
mod smoke;
