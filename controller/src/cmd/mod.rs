//! The subcommands that do work, one file each (mini-redis's `cmd/`). Each takes validated
//! settings and hosts already resolved, and returns whether every host succeeded.
//!
//! # Layout
//! - [`power`]: `shutdown` and `restart`, the safe power workflow.
//! - [`wake`]: `wake`, Wake-on-LAN, directly or through an agent (`--via`).
//! - [`discover`]: `discover`, finding agents on the LAN.
//! - [`inventory`]: `inventory list` and `inventory learn`.
//! - [`pki`]: `pki ...`, the CA and certificates for other machines.

pub mod discover;
pub mod inventory;
pub mod pki;
pub mod power;
pub mod wake;
