//! The real-machines suite: the packaged agent inside Debian VMs with real systemd (qemu),
//! driven by the real controller on the host, with real power actions. Not part of the
//! everyday `cargo test` (`test = false`): `.ci/run` runs it with
//! `cargo test --locked -p lightsout-tests --test vm -- --test-threads 2`.
//!
//! Every test boots its own VM ([`lightsout_tests::vm::Vm`]); no power action here is ever
//! sent anywhere else. Several scenarios share one boot to keep the suite inside its time
//! budget. Each scenario function is run once per Debian release (12 bookworm, 13 trixie).
//!
//! # Layout
//! - [`power`]: boot, hardening, `restart --wait`, delayed shutdown and cancel at every
//!   moment, agent stop/restart while pending, uncancelled shutdown.
//! - [`occupancy`]: a user on the console (skipped, wall message), nobody (not skipped),
//!   `shutdown` now.
//! - [`broken`]: the power path cannot work (system bus stopped).
//! - [`rollout`]: the README's rollout and revocation, literally; the package's maintainer
//!   scripts and logrotate file; the audit log across a reboot.
//! - [`scene`]: what the scenarios share (a lab, a booted VM with a serving agent, the
//!   controller's answers, logind's view, the findings list).

#![allow(clippy::unwrap_used, missing_docs)]
#![cfg(target_os = "linux")]

mod broken;
mod occupancy;
mod power;
mod rollout;
mod scene;

/// One `#[test]` per scenario and release: `NAME::bookworm`, `NAME::trixie`.
macro_rules! per_release {
    ($name:ident => $module:ident :: $scenario:ident) => {
        mod $name {
            #[test]
            fn bookworm() {
                super::$module::$scenario("bookworm");
            }
            #[test]
            fn trixie() {
                super::$module::$scenario("trixie");
            }
        }
    };
}

per_release!(power_promises => power::power);
per_release!(occupancy_and_now => occupancy::occupancy);
per_release!(power_path_down => broken::power_path_down);
per_release!(readme_rollout => rollout::rollout);
