//! A machine where the power path cannot work: the system bus is stopped, so neither logind
//! nor `shutdown(8)` can schedule anything. The promises: a delayed shutdown never happens
//! before its delay, and the administrator learns that it failed (a refusal, or a failure on
//! the board and from `restart --wait`) rather than a silent `ok`.

use std::time::{Duration, Instant};

use crate::scene::{self, timing};

pub fn power_path_down(release: &str) {
    let Some(mut s) = scene::boot(release, "dbus-down", true, |_, _| {}) else {
        return;
    };
    let started = Instant::now();
    // The agent is already running; the bus goes away under it.
    s.vm.sh("systemctl stop dbus.socket dbus.service");
    let (status, _) = s.vm.run("busctl status >/dev/null 2>&1");
    assert_ne!(
        status, 0,
        "the system bus still answers after stopping dbus"
    );

    let t = Instant::now();
    let (run, host) = s.host(&["shutdown", "--delay", "61s", "--message", "vm-suite no bus"]);
    let refused = run.code != Some(0);
    eprintln!(
        "vm {}: shutdown --delay 61s with the bus down: exit {:?}\n{}{}",
        s.vm.name, run.code, run.stdout, run.stderr
    );
    // Whatever the agent answered, the machine stays up past the delay.
    let up = s.stays_up_until(
        t + Duration::from_secs(61 + 3),
        "system bus down, 61s delay",
    );
    timing(
        &s.release,
        "dbus-down: watched until the delay",
        t.elapsed(),
    );
    if refused {
        let message = format!("{}{}", run.stderr, host["error"]);
        s.findings.check(
            message.to_lowercase().contains("bus") || message.contains("logind"),
            &format!(
                "the refusal does not say what cannot work (the system bus / logind): {message}"
            ),
        );
    } else if up {
        // Accepted: the failure must reach the administrator on the board and from --wait.
        let health = s.health();
        let last = &health["last_action"];
        s.findings.check(
            last["error"].is_string(),
            &format!("accepted with the bus down and no failure on the board: {health}"),
        );
        let (run, _) = s.host(&["status"]);
        s.findings.check(
            run.stdout.contains("FAILED") || run.stdout.to_lowercase().contains("fail"),
            &format!(
                "the status board does not show the failed shutdown:\n{}",
                run.stdout
            ),
        );
        s.findings.miss(
            "shutdown --delay 61s was answered ok although the power path cannot work \
             (the agent should refuse, or report the failure to the controller)",
        );
        s.rescue("bus down");
    }
    if s.vm.exited().is_none() {
        // A delayed restart: it must not happen before its delay, and `--wait` must report
        // the failure as soon as the agent knows it rather than wait out its timeout for a
        // reboot that will not come.
        let t = Instant::now();
        let (run, host) = s.host(&[
            "restart",
            "--delay",
            "61s",
            "--wait",
            "--wait-timeout",
            "1m",
        ]);
        let took = t.elapsed();
        timing(
            &s.release,
            "dbus-down: restart --delay 61s --wait answered after",
            took,
        );
        if run.code == Some(0) {
            let after_ms = host["wait"]["after_ms"].as_f64().unwrap_or(0.0);
            s.findings.check(
                took >= Duration::from_secs(61),
                &format!("restart --delay 61s with the bus down was back after {took:?} ({after_ms} ms): early"),
            );
        } else {
            s.findings.check(
                took < Duration::from_secs(61),
                &format!(
                    "restart --wait with the bus down took {took:?} to report the failure: {run:?}"
                ),
            );
        }
    }
    timing(&s.release, "dbus-down: scenario", started.elapsed());
    s.finish();
}
