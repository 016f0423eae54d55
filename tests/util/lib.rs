//! Helpers shared by the end-to-end tests (and the benchmarks): one home for them, as
//! ripgrep's `tests/util.rs`.
//!
//! Safety: every agent started here runs in dry-run mode, with a stand-in power command
//! written into a temporary directory, or with the logind backend on a private test bus in a
//! temporary directory (`--logind-bus`, used exclusively by the agent); both
//! [`AgentProcess::start_cmd`] and [`InProc::start`] refuse anything else. Nothing here can
//! reach the system's `shutdown` or the system bus.
//!
//! # Layout
//! - this file: [`PATIENCE`], [`bin`], the skip convention ([`skip`], [`skip_missing`]).
//! - [`lab`]: a throw-away PKI ([`Lab`]), `lightsout` runs ([`Run`]), stand-in power
//!   commands, and the waits on their logs.
//! - [`agent`]: agents as real processes ([`AgentProcess`]) or in-process ([`InProc`]), and
//!   what a process holds (sockets, memory).
//! - [`logind`]: a fake systemd-logind on a private D-Bus ([`FakeLogind`]), for agents with
//!   the logind power backend (`--logind-bus`).
//! - [`debs`]: the Debian packages, built once (or taken from `LIGHTSOUT_DEB_DIR`) and
//!   extracted per machine.
//! - [`readme`]: the README's administrator procedures, run as written on stand-in machines
//!   ([`Machine`], [`procedure`]).
//! - [`raw`]: the raw-bytes client ([`RawClient`]) and the bytes a hostile or broken peer
//!   sends at each layer (TCP, TLS records, frames), plus the check every hostile test ends
//!   with ([`assert_served`]). The typed client is the controller's own
//!   ([`lightsout_controller::Client`]).
//! - [`vm`]: real machines — Debian VMs with real systemd under qemu, for the VM suite
//!   (`tests/vm/`), the only place where power actions really happen.

#![allow(clippy::unwrap_used, missing_debug_implementations)]

pub mod agent;
pub mod debs;
pub mod lab;
pub mod logind;
pub mod raw;
pub mod readme;
#[cfg(target_os = "linux")]
pub mod vm;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use agent::*;
pub use lab::*;
pub use logind::*;
pub use raw::*;
pub use readme::*;

/// How long any single wait in a test may take before it counts as a hang. Generous (shared,
/// noisy 2-core machine): a passing test never comes near it; it only turns a hang into a
/// failure.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Path of a workspace binary built by cargo (`lightsout-agent` or `lightsout`).
///
/// `cargo test --workspace` builds both: the agent and controller packages each have an
/// integration test, which makes cargo build their binaries into the same target directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/e2e-xxxx -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run the tests with `cargo test --workspace` (it builds every binary)",
        path.display()
    );
    path
}

/// Says why a test does not run here, the same way everywhere: `SKIP: reason` on stderr.
/// The caller returns right after.
pub fn skip(reason: &str) {
    eprintln!("SKIP: {reason}");
}

/// [`skip`] for a missing tool that `.ci/run` installs (iproute2, util-linux, systemd,
/// openssl, cargo-deb): under `CI=true` it panics instead, since a skip there would hide a
/// broken CI setup and the test would never run where it matters.
///
/// # Panics
/// When the environment variable `CI` is `true`.
pub fn skip_missing(tool: &str, reason: &str) {
    let reason = format!("{tool} is not installed ({reason})");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and {reason}: in CI this test must run, not skip"
    );
    skip(&reason);
}

/// Whether `program ARG` runs and succeeds (e.g. `have("ip", "-V")`): a tool is installed.
pub fn have(program: &str, arg: &str) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether this machine can create network namespaces (root and `ip` from iproute2); when it
/// cannot, says why with [`skip`] or [`skip_missing`] and the caller returns.
pub fn can_make_netns() -> bool {
    if !running_as_root() {
        skip("not root: network namespaces need root");
        return false;
    }
    if !have("ip", "-V") {
        skip_missing("`ip` (iproute2)", ".ci/run installs iproute2");
        return false;
    }
    true
}
