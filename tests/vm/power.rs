//! One boot of the packaged agent, then every power promise in turn: the unit and its
//! hardening, `restart --wait`, a delayed shutdown cancelled before and after the hand-over
//! to logind, the agent stopped and restarted while an action is pending, and finally an
//! uncancelled delayed shutdown that powers the VM off — never before its delay.

use std::time::{Duration, Instant};

use crate::scene::{self, Scene, timing, unix_now};

pub fn power(release: &str) {
    let Some(mut s) = scene::boot(release, "power", true, |_, _| {}) else {
        return;
    };
    boot_and_hardening(&mut s);
    restart_wait(&mut s);
    cancel_before_and_after_hand_over(&mut s);
    agent_stopped_while_pending(&mut s);
    uncancelled_shutdown(&mut s);
    s.finish();
}

/// The packaged unit started the agent: privileged, not dry-run, and locked down as designed.
fn boot_and_hardening(s: &mut Scene) {
    let started = Instant::now();
    let health = s.health();
    assert_eq!(health["privileged"], true, "{health}");
    assert_eq!(health["dry_run"], false, "{health}");
    let (run, host) = s.host(&["status"]);
    assert_eq!(run.code, Some(0), "status: {run:?}");
    assert_eq!(host["response"]["health"]["privileged"], true, "{host}");
    assert!(
        s.vm.sh("systemctl is-enabled lightsout-agent").trim() == "enabled",
        "the packaged unit is not enabled"
    );
    // The process under the unit: no capabilities, no new privileges, a seccomp filter.
    let status =
        s.vm.sh("cat /proc/$(systemctl show -p MainPID --value lightsout-agent)/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(field("CapEff"), "0000000000000000", "{status}");
    assert_eq!(field("CapBnd"), "0000000000000000", "{status}");
    assert_eq!(field("NoNewPrivs"), "1", "{status}");
    assert_eq!(field("Seccomp"), "2", "{status}");
    // systemd's own judgement of the unit.
    let analysis =
        s.vm.run("systemd-analyze security --no-pager lightsout-agent.service")
            .1;
    let score: f64 = analysis
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for lightsout-agent.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{analysis}"));
    eprintln!(
        "vm {}: systemd-analyze security exposure {score}",
        s.vm.name
    );
    assert!(
        score <= 2.5,
        "exposure {score} (designed: about 1.9 OK):\n{analysis}"
    );
    for (setting, what) in [
        ("PrivateDevices=", "no access to hardware devices"),
        (
            "CapabilityBoundingSet=~CAP_SYS_ADMIN",
            "no administrative capability",
        ),
        ("NoNewPrivileges=", "no new privileges"),
        ("SystemCallFilter=~@mount", "no mount system calls"),
        ("ProtectSystem=", "read-only file system"),
    ] {
        let line = analysis
            .lines()
            .find(|l| l.contains(setting))
            .unwrap_or_else(|| panic!("no {setting} line in:\n{analysis}"));
        assert!(
            line.trim_start().starts_with('✓'),
            "{setting} ({what}) is not applied: {line}"
        );
    }
    timing(&s.release, "power: status + hardening", started.elapsed());
}

/// `restart --wait` really reboots: a new boot id, reported by `--wait`; the audit log has the
/// request before the reboot and the outcome line after it.
fn restart_wait(s: &mut Scene) {
    let before = s.boot_id();
    let started = Instant::now();
    s.vm.expect_reboot();
    let (run, host) = s.host(&["restart", "--wait", "--wait-timeout", "4m"]);
    let took = started.elapsed();
    timing(&s.release, "power: restart --wait", took);
    assert_eq!(run.code, Some(0), "restart --wait: {run:?}");
    assert_eq!(host["wait"]["back"], true, "{host}");
    let after = s.boot_id();
    assert_ne!(
        before, after,
        "restart --wait reported back but the boot id is the same"
    );
    let detail = host["wait"]["detail"].as_str().unwrap_or_default();
    s.findings.check(
        detail.contains(&after) || detail.contains("boot"),
        &format!("--wait's detail does not mention the new boot: {detail:?}"),
    );
    let id = host["request_id"].as_str().unwrap().to_owned();
    let audit = s.audit();
    let of_request: Vec<&serde_json::Value> =
        audit.iter().filter(|l| l["request_id"] == id).collect();
    let request = of_request
        .iter()
        .position(|l| l["event"] == "request")
        .unwrap_or_else(|| panic!("no request line for {id}: {audit:?}"));
    let execution = of_request
        .iter()
        .position(|l| l["event"] == "execution" && l["argv"].is_array());
    let took_down = of_request.iter().position(|l| {
        l["event"] == "execution"
            && l["reason"]
                .as_str()
                .is_some_and(|r| r.contains("took the machine down"))
    });
    s.findings.check(
        execution.is_some_and(|e| e > request),
        &format!("restart {id}: no execution line after the request line: {of_request:?}"),
    );
    s.findings.check(
        took_down.is_some_and(|t| t > request),
        &format!("restart {id}: no outcome line after the reboot: {of_request:?}"),
    );
}

/// A delayed shutdown cancelled during the agent's own wait, and another cancelled after it
/// has been handed to logind (with the agent restarted in between): the VM stays up past
/// both deadlines, the wall message is sent, and the board shows the pending action after
/// the restart.
fn cancel_before_and_after_hand_over(s: &mut Scene) {
    let boot = s.boot_id();
    // 90 s: the agent waits 30 s itself, then hands `+1` to logind.
    let t0 = Instant::now();
    let (run, host) = s.host(&["shutdown", "--delay", "90s", "--message", "vm-suite early"]);
    assert_eq!(run.code, Some(0), "shutdown --delay 90s: {run:?}");
    assert!(
        host["response"]["pending"].is_object() || host["ok"] == true,
        "{host}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let (run, host) = s.host(&["cancel"]);
    assert_eq!(run.code, Some(0), "cancel during the agent's wait: {run:?}");
    let said = run.stdout.clone() + &host.to_string();
    s.findings.check(
        !said.contains("shutdown -c") || host["response"]["exit_code"].is_number(),
        &format!("an early cancel reports a command that did not run: {said}"),
    );
    let held = s.scheduled().is_none();
    s.findings.check(
        held,
        "after a cancel during the agent's wait logind holds an action",
    );
    s.rescue("cancel during the agent's wait");

    // 61 s: the agent waits 1 s, then hands `+1` to logind.
    let t1 = Instant::now();
    let t1_unix = unix_now();
    let (run, _) = s.host(&["shutdown", "--delay", "61s", "--message", "vm-suite 61"]);
    assert_eq!(run.code, Some(0), "shutdown --delay 61s: {run:?}");
    let scheduled = s.wait_scheduled();
    match &scheduled {
        Some((kind, due)) => {
            assert_eq!(kind, "poweroff", "logind holds {kind}");
            assert!(
                *due >= t1_unix + 61.0 - 1.5,
                "logind's due time is {:.1}s after the request, before the 61s delay",
                due - t1_unix
            );
        }
        None => s
            .findings
            .miss("shutdown --delay 61s: logind shows nothing scheduled"),
    }
    // Shown by the guest's own tools as well.
    if let (0, show) = s.vm.run("shutdown --show") {
        eprintln!("vm {}: shutdown --show: {}", s.vm.name, show.trim());
    }
    s.systemctl_agent("restart");
    let health = s.health();
    s.findings.check(
        health["pending"].is_object(),
        &format!("after `systemctl restart lightsout-agent` the board forgets the pending action: {health}"),
    );
    let held = s.scheduled().is_some();
    s.findings.check(
        held,
        "after `systemctl restart lightsout-agent` logind no longer holds the action",
    );
    let (run, host) = s.host(&["cancel"]);
    assert_eq!(
        run.code,
        Some(0),
        "cancel after the agent restarted: {run:?}"
    );
    s.findings.check(
        host["response"]["exit_code"] == 0,
        &format!("cancel after the agent restarted did not run the system's cancel: {host}"),
    );
    s.rescue("cancel after the agent restarted");
    // Both deadlines pass; the machine stays up, on the same boot.
    let up = s.stays_up_until(t1 + Duration::from_secs(61 + 10), "cancelled shutdowns");
    let up = up && s.stays_up_until(t0 + Duration::from_secs(90 + 5), "cancelled shutdowns");
    if up {
        assert_eq!(s.boot_id(), boot, "the VM rebooted although cancelled");
    }
    timing(
        &s.release,
        "power: cancel before/after hand-over",
        t0.elapsed(),
    );
}

/// `systemctl stop lightsout-agent` during the agent's own wait hands the action to logind,
/// rounded up (never early, never dropped); started again, the board shows it and `cancel`
/// works.
fn agent_stopped_while_pending(s: &mut Scene) {
    if s.vm.exited().is_some() {
        return;
    }
    let started = Instant::now();
    let t = unix_now();
    let (run, _) = s.host(&["shutdown", "--delay", "75s"]);
    assert_eq!(run.code, Some(0), "shutdown --delay 75s: {run:?}");
    std::thread::sleep(Duration::from_secs(2));
    s.systemctl_agent("stop");
    match s.scheduled() {
        Some((_, due)) => s.findings.check(
            due >= t + 75.0 - 1.5,
            &format!(
                "agent stopped while waiting: logind's due time {:.1}s after the request is before the 75s delay",
                due - t
            ),
        ),
        None => s
            .findings
            .miss("agent stopped while waiting: the pending action was dropped"),
    }
    s.systemctl_agent("start");
    let health = s.health();
    s.findings.check(
        health["pending"].is_object(),
        &format!("after the agent started again the board forgets the pending action: {health}"),
    );
    let (run, _) = s.host(&["cancel"]);
    assert_eq!(run.code, Some(0), "cancel: {run:?}");
    let held = s.scheduled().is_none();
    s.findings.check(
        held,
        "cancel after an agent stop/start left the action in logind",
    );
    s.rescue("cancel after an agent stop/start");
    timing(
        &s.release,
        "power: agent stopped while pending",
        started.elapsed(),
    );
}

/// An uncancelled `shutdown --delay 61s` powers the VM off: qemu exits, never before 61 s.
fn uncancelled_shutdown(s: &mut Scene) {
    if s.vm.exited().is_some() {
        return;
    }
    let t = Instant::now();
    let (run, _) = s.host(&["shutdown", "--delay", "61s"]);
    assert_eq!(run.code, Some(0), "shutdown --delay 61s: {run:?}");
    let off = s.vm.wait_exit(t, Duration::from_secs(61 + 90));
    let off = off.unwrap_or_else(|| {
        panic!(
            "the VM did not power off within 151s of an uncancelled 61s shutdown\n{}",
            s.vm.console_tail()
        )
    });
    timing(
        &s.release,
        "power: uncancelled 61s shutdown, qemu exited after",
        off,
    );
    assert!(
        off >= Duration::from_secs(61),
        "powered off {:.1}s after the request: before its 61s delay",
        off.as_secs_f64()
    );
}
