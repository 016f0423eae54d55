//! End-to-end tests: one test binary, one module per area.

#![allow(clippy::unwrap_used)]

mod authz;
mod lab;
mod lan;
mod smoke;
