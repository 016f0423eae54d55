//! `shutdown --wait` and `restart --wait` learn what happened to the action: the host went
//! off, it failed on the agent (reported at once, not after the timeout), it was cancelled or
//! replaced by someone else, it stayed up past its due time, or a rehearsal had nothing to
//! wait for.
//!
//! Every agent is dry-run or runs a stand-in power command written into the lab's temporary
//! directory. "Powering off" is a stand-in that SIGKILLs its parent, the test agent: from the
//! network that host stops answering, as a machine that powered off does.

use std::process::{Command, Stdio};
use std::time::Duration;

use lightsout_tests::{AgentProcess, Lab, Run, only_host, poll, script, wait_for_line};
use serde_json::Value;

/// A live agent whose power command is `body` (a shell script in the lab's temporary
/// directory). The script's arguments are logged to `power.log` first.
fn agent_running(lab: &Lab, body: &str) -> (AgentProcess, std::path::PathBuf) {
    agent_named(lab, "power", body)
}

/// [`agent_running`] with its own script and log, `NAME-stand-in` and `NAME.log`, for
/// several agents in one lab.
fn agent_named(lab: &Lab, name: &str, body: &str) -> (AgentProcess, std::path::PathBuf) {
    let log = lab.dir.path().join(format!("{name}.log"));
    let script = script(
        lab,
        &format!("{name}-stand-in"),
        &format!("printf '%s\\n' \"$*\" >> '{}'\n{body}", log.display()),
    );
    let agent = AgentProcess::start(lab, &["--power-command", script.to_str().unwrap()]);
    (agent, log)
}

/// A stand-in that "powers the machine off": it kills the agent that ran it.
const POWER_OFF: &str = "kill -KILL $PPID";

/// A stand-in that fails the way `shutdown` does when the system bus is down.
const BUS_DOWN: &str = "echo 'Failed to connect to bus: No such file or directory' >&2\nexit 1";

#[test]
fn shutdown_wait_sees_the_host_go_off_after_its_due_time() {
    let lab = Lab::new();
    let (mut agent, log) = agent_running(&lab, POWER_OFF);
    let target = agent.target();
    let run = lab.lightsout(&[
        "--json",
        "shutdown",
        &target,
        "--delay",
        "2",
        "--wait",
        "--wait-timeout",
        "30s",
    ]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let host = only_host(&run.json()).clone();
    assert_eq!(host["status"], "ok", "{host}");
    assert_eq!(host["wait"]["end"], "off", "{host}");
    assert_eq!(host["wait"]["ok"], true);
    let detail = host["wait"]["detail"].as_str().unwrap();
    assert!(detail.contains("after its due time"), "{detail}");
    assert!(
        host["wait"]["after_ms"].as_f64().unwrap() >= 2000.0,
        "off no earlier than the delay: {host}"
    );
    wait_for_line(&log, "-h now");
    assert!(!agent.is_running(), "the stand-in took the agent down");

    // The table says it too.
    let lab = Lab::new();
    let (second, _log) = agent_running(&lab, POWER_OFF);
    let run = lab.lightsout(&["shutdown", &second.target(), "--wait"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("; off after "), "{run:?}");
    assert!(run.stdout.contains("1 ok, 0 failed"), "{run:?}");
}

#[test]
fn a_failure_after_the_reply_is_reported_at_once_not_after_the_timeout() {
    for action in ["shutdown", "restart"] {
        let lab = Lab::new();
        let (agent, log) = agent_running(&lab, BUS_DOWN);
        let target = agent.target();
        // Due in 5 minutes, and a 10-minute timeout: only the agent's report ends this early.
        let run = lab.lightsout(&[
            "--json",
            action,
            &target,
            "--delay",
            "5m",
            "--wait",
            "--wait-timeout",
            "10m",
        ]);
        assert_eq!(run.code, Some(1), "{action}: {run:?}");
        assert!(
            run.elapsed < Duration::from_secs(120),
            "{action}: reported before the action was even due: {run:?}"
        );
        let host = only_host(&run.json()).clone();
        assert_eq!(host["status"], "failed", "{action}: {host}");
        // The action itself was accepted: the failure is the wait's.
        assert_eq!(host["response"]["dry_run"], false, "{host}");
        assert_eq!(host["wait"]["end"], "action_failed", "{action}: {host}");
        assert_eq!(host["wait"]["ok"], false);
        let detail = host["wait"]["detail"].as_str().unwrap();
        assert!(
            detail.contains("Failed to connect to bus"),
            "{action}: the agent's error: {detail}"
        );
        assert_eq!(lightsout_tests::log_lines(&log).len(), 1, "ran once");
    }

    // In the table: the row fails, with the agent's error.
    let lab = Lab::new();
    let (agent, _log) = agent_running(&lab, BUS_DOWN);
    let run = lab.lightsout(&["restart", &agent.target(), "--wait"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let row = run.stdout.lines().nth(1).unwrap();
    assert!(row.contains("FAILED"), "{row}");
    assert!(row.contains("ACTION FAILED after"), "{row}");
    assert!(row.contains("Failed to connect to bus"), "{row}");
}

#[test]
fn shutdown_wait_fails_when_the_host_is_still_up_past_its_due_time() {
    let lab = Lab::new();
    // The command "succeeds" but the machine never goes down.
    let (agent, log) = agent_running(&lab, "exit 0");
    let run = lab.lightsout(&[
        "--json",
        "shutdown",
        &agent.target(),
        "--wait",
        "--wait-timeout",
        "2s",
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let host = only_host(&run.json()).clone();
    assert_eq!(host["status"], "failed", "{host}");
    assert_eq!(host["wait"]["end"], "still_up", "{host}");
    let detail = host["wait"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("still up 2s after its due time"),
        "{detail}"
    );
    assert!(detail.contains("still answering"), "{detail}");
    wait_for_line(&log, "-h now");
}

/// Starts `lightsout --json shutdown TARGET --delay 5m --wait` in the background.
fn background_wait(lab: &Lab, target: &str) -> std::process::Child {
    lab.controller_cmd()
        .args([
            "--json",
            "shutdown",
            target,
            "--delay",
            "5m",
            "--wait",
            "--include-self",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The background wait's result, once the action is pending on the agent and `interfere`
/// has run.
fn wait_result(lab: &Lab, target: &str, interfere: impl FnOnce()) -> (Run, Value) {
    let child = background_wait(lab, target);
    poll("the shutdown to be pending", || {
        lab.health(target)["pending"]["request_id"]
            .as_str()
            .map(str::to_owned)
    });
    interfere();
    let out = child.wait_with_output().unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        elapsed: Duration::ZERO,
    };
    let host = only_host(&run.json()).clone();
    (run, host)
}

#[test]
fn shutdown_wait_reports_a_cancel_or_a_replacement_by_someone_else() {
    let lab = Lab::new();
    let (agent, _log) = agent_running(&lab, "exit 0");
    let target = agent.target();

    let (run, host) = wait_result(&lab, &target, || {
        lab.lightsout(&["cancel", &target]).success();
    });
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(host["status"], "failed", "{host}");
    assert_eq!(host["wait"]["end"], "cancelled", "{host}");
    let detail = host["wait"]["detail"].as_str().unwrap();
    assert!(detail.starts_with("cancelled:"), "{detail}");

    // Replaced by another administrator's shutdown: the wait names who.
    let bob = lab.controller("bob", Some("admin"));
    let (run, host) = wait_result(&lab, &target, || {
        let mut cmd = lab.controller_cmd_as(&bob);
        cmd.args([
            "shutdown",
            &target,
            "--delay",
            "10m",
            "--replace",
            "--include-self",
        ]);
        Run::of(&mut cmd).success();
    });
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(host["wait"]["end"], "cancelled", "{host}");
    let detail = host["wait"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("replaced by a shutdown requested by bob"),
        "{detail}"
    );
    assert!(
        detail.contains("due in 9m") || detail.contains("due in 10m"),
        "{detail}"
    );
    lab.lightsout(&["cancel", &target]).success();
}

#[test]
fn a_rehearsal_has_nothing_to_wait_for() {
    let lab = Lab::new();
    // A dry-run agent: a shutdown rehearsal cannot take anything down.
    let dry = AgentProcess::start(&lab, &["--dry-run"]);
    let doc = lab.lightsout_json(&["shutdown", &dry.target(), "--wait"], 0);
    let host = only_host(&doc);
    assert_eq!(host["response"]["dry_run"], true, "{host}");
    assert_eq!(host["wait"]["end"], "nothing_to_wait_for", "{host}");
    assert_eq!(host["status"], "ok");

    // `--dry-run` against a live agent: neither action runs, neither is waited for.
    let (agent, log) = agent_running(&lab, POWER_OFF);
    for action in ["shutdown", "restart"] {
        let run = lab.lightsout(&[action, &agent.target(), "--dry-run", "--wait"]);
        assert_eq!(run.code, Some(0), "{run:?}");
        assert!(
            run.stdout
                .contains("nothing to wait for: a rehearsal runs nothing"),
            "{run:?}"
        );
    }
    assert!(lightsout_tests::log_lines(&log).is_empty());
}

#[test]
fn wait_timeout_needs_wait_and_a_duration() {
    let lab = Lab::new();
    let run = lab.lightsout(&["shutdown", "127.0.0.1:9", "--wait-timeout", "5m"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("--wait"), "{run:?}");
    let run = lab.lightsout(&["shutdown", "127.0.0.1:9", "--wait", "--wait-timeout", "0"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("greater than zero"), "{run:?}");
    let help =
        Run::of(Command::new(lightsout_tests::bin("lightsout")).args(["shutdown", "--help"]));
    assert!(help.stdout.contains("--wait-timeout"), "{help:?}");
    assert!(help.stdout.contains("stops answering"), "{help:?}");
}

#[test]
fn a_rolling_shutdown_stops_at_a_host_whose_shutdown_failed() {
    let lab = Lab::new();
    let (failing, _) = agent_named(&lab, "failing", BUS_DOWN);
    let (off, off_log) = agent_named(&lab, "off", POWER_OFF);
    let doc = lab.lightsout_json(
        &[
            "shutdown",
            &failing.target(),
            &off.target(),
            "--batch",
            "1",
            "--wait",
            "--yes",
        ],
        1,
    );
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results[0]["wait"]["end"], "action_failed", "{doc}");
    assert_eq!(results[1]["status"], "skipped", "{doc}");
    assert_eq!(
        results[1]["reason"],
        "not started: a host of batch 1/2 did not shut down"
    );
    assert!(
        lightsout_tests::log_lines(&off_log).is_empty(),
        "never sent"
    );
}

#[test]
fn an_agent_restarting_during_the_wait_is_not_a_cancel() {
    let lab = Lab::new();
    let (first, log) = agent_running(&lab, "exit 0");
    let port = first.addr.port();
    let target = first.target();
    let mut first = first;
    // Due in 5 s: the agent waits, then would run `shutdown -h now`.
    let child = lab
        .controller_cmd()
        .args([
            "--json",
            "shutdown",
            &target,
            "--delay",
            "5",
            "--wait",
            "--wait-timeout",
            "2s",
            "--include-self",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    poll("the shutdown to be pending", || {
        lab.health(&target)["pending"]["request_id"]
            .as_str()
            .map(str::to_owned)
    });
    // Stopped during its wait, the agent hands the action to the system (rounded up to a
    // minute); the new agent no longer shows it as pending.
    let status = first.terminate(lightsout_tests::PATIENCE).unwrap();
    assert!(status.success(), "{status:?}");
    wait_for_line(&log, "-h +1");
    let listen = format!("127.0.0.1:{port}");
    let stand_in = lab.dir.path().join("power-stand-in");
    let _second = AgentProcess::start(
        &lab,
        &[
            "--power-command",
            stand_in.to_str().unwrap(),
            "--listen",
            &listen,
        ],
    );
    assert!(lab.health(&target)["pending"].is_null());

    let out = child.wait_with_output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let host = only_host(&doc);
    // The stand-in never powers anything off: still up, and not taken for a cancel.
    assert_eq!(host["wait"]["end"], "still_up", "{host}");
    assert_eq!(out.status.code(), Some(1));
}
