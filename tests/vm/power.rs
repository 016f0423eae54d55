//! One boot of the packaged agent, then every power promise in turn: the unit and its
//! hardening, `restart --wait`, a delayed shutdown cancelled at once and after an agent
//! restart, the agent stopped and restarted while an action is pending, and finally an
//! uncancelled delayed shutdown that powers the VM off — never before its delay.

use std::time::{Duration, Instant};

use crate::scene::{self, Scene, timing, unix_now};

pub fn power(release: &str) {
    let Some(mut s) = scene::boot(release, "power", true, |_, _| {}) else {
        return;
    };
    boot_and_hardening(&mut s);
    restart_wait(&mut s);
    cancel_at_once_and_after_agent_restart(&mut s);
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
    let (run, host) = s.host(&["restart", "--wait", "--wait-timeout", "5m"]);
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

/// Two delayed shutdowns: one cancelled at once, one cancelled after the agent restarted in
/// between. With the logind backend logind holds each action from acceptance, at the exact
/// due time; the board shows it after the restart, the cancel says it withdrew it from the
/// system, and the VM stays up past both deadlines.
fn cancel_at_once_and_after_agent_restart(s: &mut Scene) {
    let boot = s.boot_id();
    let t0 = Instant::now();
    let t0_unix = unix_now();
    let (run, host) = s.host(&["shutdown", "--delay", "61s", "--message", "vm-suite early"]);
    assert_eq!(run.code, Some(0), "shutdown --delay 61s: {run:?}");
    assert!(
        host["response"]["pending"].is_object() || host["ok"] == true,
        "{host}"
    );
    exact_due_time(s, t0_unix, "first 61s shutdown");
    let (run, host) = s.host(&["cancel"]);
    assert_eq!(run.code, Some(0), "cancel at once: {run:?}");
    s.findings.check(
        host["response"]["outcome"] == "withdrawn",
        &format!("a cancel of an action logind holds does not say it withdrew it: {host}"),
    );
    let held = s.scheduled().is_none();
    s.findings
        .check(held, "after a cancel at once logind still holds an action");
    s.rescue("cancel at once");

    let t1 = Instant::now();
    let t1_unix = unix_now();
    let (run, _) = s.host(&["shutdown", "--delay", "61s", "--message", "vm-suite 61"]);
    assert_eq!(run.code, Some(0), "shutdown --delay 61s: {run:?}");
    exact_due_time(s, t1_unix, "second 61s shutdown");
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
        host["response"]["outcome"] == "withdrawn",
        &format!(
            "cancel after the agent restarted did not withdraw the action from logind: {host}"
        ),
    );
    let held = s.scheduled().is_none();
    s.findings.check(
        held,
        "after a cancel following an agent restart logind still holds an action",
    );
    s.rescue("cancel after the agent restarted");
    // Both deadlines pass; the machine stays up, on the same boot.
    let up = s.stays_up_until(t0 + Duration::from_secs(61 + 5), "cancelled shutdowns");
    let up = up && s.stays_up_until(t1 + Duration::from_secs(61 + 5), "cancelled shutdowns");
    if up {
        assert_eq!(s.boot_id(), boot, "the VM rebooted although cancelled");
    }
    timing(
        &s.release,
        "power: cancel at once / after agent restart",
        t0.elapsed(),
    );
}

/// logind holds a poweroff due 61 s after `requested` (Unix seconds): not earlier, and not
/// later than the request's round trip allows.
fn exact_due_time(s: &mut Scene, requested: f64, what: &str) {
    match s.wait_scheduled() {
        Some((kind, due)) => {
            assert_eq!(kind, "poweroff", "{what}: logind holds {kind}");
            let after = due - requested;
            eprintln!(
                "vm {}: {what}: logind due {after:.2}s after the request",
                s.vm.name
            );
            s.findings.check(
                (61.0 - 1.0..=61.0 + 5.0).contains(&after),
                &format!("{what}: logind's due time is {after:.1}s after the request, not 61s"),
            );
        }
        None => s
            .findings
            .miss(&format!("{what}: logind shows nothing scheduled")),
    }
}

/// `systemctl stop lightsout-agent` while an action is pending: logind keeps it, at its due
/// time (never early, never dropped); started again, the board shows it and `cancel` works.
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
