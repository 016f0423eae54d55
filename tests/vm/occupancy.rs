//! Occupancy as logind sees it: `student` logged in on the serial console (a real session of
//! class `user`, autologin) makes `--skip-busy` skip the machine, naming the session; the wall
//! message of a delayed shutdown reaches that session's terminal. Logged out (only the login
//! prompt; the suite's own control channel is no login), the machine is not skipped, and
//! `shutdown` with no delay powers it off within seconds.

use std::time::{Duration, Instant};

use crate::scene::{self, Scene, timing};

pub fn occupancy(release: &str) {
    let Some(mut s) = scene::boot(release, "occupancy", true, |_, seed| {
        seed.setup("touch /etc/vmtest-autologin");
    }) else {
        return;
    };
    let started = Instant::now();
    wait_sessions(&mut s, true);
    logged_in_is_skipped(&mut s);
    wall_reaches_the_console(&mut s);
    s.vm.sh("rm /etc/vmtest-autologin && systemctl restart serial-getty@ttyS0.service");
    wait_sessions(&mut s, false);
    timing(
        &s.release,
        "occupancy: logged in, skipped, wall, logged out",
        started.elapsed(),
    );
    nobody_logged_in_shutdown_now(&mut s);
    s.finish();
}

/// Waits (up to 5 min: the console's getty waits for udev, slow on a loaded machine) until
/// logind lists a user session (`want`) or none.
fn wait_sessions(s: &mut Scene, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = s.vm.sh("loginctl list-sessions --no-legend");
        let user_sessions = list.lines().filter(|l| !l.trim().is_empty()).count();
        if (user_sessions > 0) == want {
            eprintln!("vm {}: loginctl list-sessions:\n{list}", s.vm.name);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: logind sessions never became {}: {list}",
            s.vm.name,
            if want { "present" } else { "none" }
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `shutdown --skip-busy` with `student` on the console: skipped, and the reason names the
/// session.
fn logged_in_is_skipped(s: &mut Scene) {
    let (run, host) = s.host(&["shutdown", "--skip-busy", "--delay", "61s"]);
    assert_eq!(run.code, Some(0), "shutdown --skip-busy: {run:?}");
    if host["status"] != "skipped" {
        let who = s.vm.run("who; ls -l /run/utmp").1;
        let logind =
            s.vm.run(
                "for id in $(loginctl list-sessions --no-legend | awk '{print $1}'); do \
                 loginctl show-session $id -p Id -p Class -p State -p Type -p TTY -p Name; \
                 busctl get-property org.freedesktop.login1 \
                 /org/freedesktop/login1/session/_3$id org.freedesktop.login1.Session State; done; \
                 journalctl --no-pager -o cat -u lightsout-agent | tail -n 20",
            )
            .1;
        let health = s.health();
        s.findings.miss(&format!(
            "student is logged in on the console (logind lists the session), yet not skipped: \
             {host}\n`who` inside: {who}\nlogind inside: {logind}\nthe agent's health: {health}"
        ));
        let (run, _) = s.host(&["cancel"]);
        assert_eq!(run.code, Some(0), "cancel: {run:?}");
        s.rescue("cancel of the shutdown that should have been skipped");
        return;
    }
    let reason = host["reason"].as_str().unwrap_or_default();
    s.findings.check(
        reason.contains("student") || reason.contains("ttyS0"),
        &format!(
            "the skip reason does not name the console session (student on ttyS0): {reason:?}"
        ),
    );
    s.findings.check(
        !reason.contains("unknown"),
        &format!("logind lists the session, yet the agent reports users unknown: {reason:?}"),
    );
    let health = s.health();
    s.findings.check(
        health["logged_in_users"] == 1,
        &format!(
            "the board's logged-in users is {} with student on the console",
            health["logged_in_users"]
        ),
    );
}

/// A delayed shutdown's message reaches the logged-in console; cancelled, nothing stays
/// scheduled.
fn wall_reaches_the_console(s: &mut Scene) {
    let message = format!("vm-suite-wall-{}", std::process::id());
    let (run, _) = s.host(&["shutdown", "--delay", "61s", "--message", &message]);
    assert_eq!(run.code, Some(0), "shutdown --delay 61s --message: {run:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.vm.console().contains(&message) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    s.findings.check(
        s.vm.console().contains(&message),
        "the shutdown message never reached the logged-in console (wall)",
    );
    let (run, _) = s.host(&["cancel"]);
    assert_eq!(run.code, Some(0), "cancel: {run:?}");
    s.rescue("cancel after the wall message");
}

/// Nobody logged in: `shutdown --skip-busy` (no delay) is not skipped, and the VM powers off
/// within seconds.
fn nobody_logged_in_shutdown_now(s: &mut Scene) {
    let t = Instant::now();
    let (run, host) = s.host(&["shutdown", "--skip-busy"]);
    assert_eq!(run.code, Some(0), "shutdown --skip-busy: {run:?}");
    if host["status"] == "skipped" {
        s.findings.miss(&format!(
            "nobody is logged in (login prompt only), yet skipped: {}",
            host["reason"]
        ));
        let (run, _) = s.host(&["shutdown"]);
        assert_eq!(run.code, Some(0), "shutdown: {run:?}");
    }
    let off =
        s.vm.wait_exit(t, Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!(
                    "`shutdown` with no delay: the VM still runs after 60s\n{}",
                    s.vm.console_tail()
                )
            });
    timing(
        &s.release,
        "occupancy: shutdown now, qemu exited after",
        off,
    );
    assert!(
        off < Duration::from_secs(30),
        "powered off only after {off:?}"
    );
}
