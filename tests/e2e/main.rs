//! End-to-end tests: one test binary, one module per area.

#![allow(clippy::unwrap_used)]

mod smoke;
mod wire_frames;
mod wire_tls;
