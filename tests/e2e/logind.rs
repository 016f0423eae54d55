//! The logind power backend and occupancy from logind, against a fake systemd-logind on a
//! private bus (`--logind-bus`; see `tests/util/logind.rs`): the agent's real D-Bus client,
//! the real request path and the real controller. The agents here are live (no dry-run, no
//! stand-in): the fake logind is the whole "system", and it only records.

use std::time::{SystemTime, UNIX_EPOCH};

use lightsout_protocol::{ErrorKind, PowerParams, Request, RequestEnvelope};
use lightsout_tests::{
    AgentProcess, FakeLogind, FakeOptions, Lab, PATIENCE, RawClient, error_of, only_host,
};
use serde_json::{Value, json};

fn now_usec() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

/// A live agent on the fake's bus (plus `extra` arguments).
fn agent_on(lab: &Lab, fake: &FakeLogind, extra: &[&str]) -> AgentProcess {
    let args = [&fake.agent_args()[..], extra].concat();
    AgentProcess::start(lab, &args)
}

/// The agent's audit lines for `request_id`.
fn audit_of(lab: &Lab, request_id: &str) -> Vec<Value> {
    lab.audit()
        .into_iter()
        .filter(|l| l["request_id"] == request_id)
        .collect()
}

#[test]
fn a_delayed_shutdown_is_handed_to_logind_with_its_exact_due_time_and_message() {
    let Some(fake) = FakeLogind::start(&FakeOptions::default()) else {
        return;
    };
    let lab = Lab::new();
    let agent = agent_on(&lab, &fake, &[]);
    let before = now_usec();
    let doc = lab.lightsout_json(
        &[
            "shutdown",
            &agent.target(),
            "--delay",
            "90s",
            "--message",
            "The lab closes",
        ],
        0,
    );
    let after = now_usec();
    let host = only_host(&doc);
    let id = host["request_id"].as_str().unwrap();
    let reply = &host["response"];
    assert_eq!(
        reply["argv"],
        json!(["logind", "ScheduleShutdown", "poweroff", "+90s"]),
        "{doc}"
    );
    assert_eq!(
        reply["agent_wait_secs"], 0,
        "no minute rounding, no agent wait"
    );
    // Wall message first (enabled), then the schedule: exact, to the microsecond.
    let calls = fake.calls();
    let methods: Vec<&str> = calls
        .iter()
        .map(|c| c["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["SetWallMessage", "ScheduleShutdown"], "{calls:?}");
    assert_eq!(calls[0]["args"], json!(["The lab closes", true]));
    assert_eq!(calls[1]["args"][0], "poweroff");
    let due = calls[1]["args"][1].as_u64().unwrap();
    assert!(
        (before + 90_000_000..=after + 90_000_000).contains(&due),
        "due {due} not 90 s after the request ({before}..{after})"
    );
    assert_eq!(reply["due_unix"].as_u64(), Some(due / 1_000_000));
    // Pending on the board, held by the system: the audit has the request and the hand-over.
    let h = lab.health(&agent.target());
    assert_eq!(h["pending"]["request_id"], id, "{h}");
    assert_eq!(h["last_action"]["error"], Value::Null, "{h}");
    let lines = audit_of(&lab, id);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["outcome"], "ok", "{lines:?}");
    assert_eq!(lines[1]["event"], "execution", "{lines:?}");
    assert_eq!(lines[1]["argv"], reply["argv"], "{lines:?}");
    assert_eq!(lines[1]["outcome"], "ok", "{lines:?}");

    // A replacing restart is one new ScheduleShutdown (logind replaces its schedule).
    let doc = lab.lightsout_json(&["restart", &agent.target(), "--replace"], 0);
    assert_eq!(
        only_host(&doc)["response"]["argv"],
        json!(["logind", "ScheduleShutdown", "reboot", "+0s"]),
        "{doc}"
    );
    let schedules = fake.calls_of("ScheduleShutdown");
    assert_eq!(schedules.len(), 2, "{schedules:?}");
    assert_eq!(schedules[1][0], "reboot");
    assert!(fake.calls_of("CancelScheduledShutdown").is_empty());
}

#[test]
fn a_rehearsal_never_calls_logind() {
    let Some(fake) = FakeLogind::start(&FakeOptions::default()) else {
        return;
    };
    let lab = Lab::new();
    let agent = agent_on(&lab, &fake, &[]);
    let doc = lab.lightsout_json(
        &["shutdown", &agent.target(), "--delay", "90s", "--dry-run"],
        0,
    );
    let reply = &only_host(&doc)["response"];
    assert_eq!(reply["dry_run"], true, "{doc}");
    assert_eq!(
        reply["argv"],
        json!(["logind", "ScheduleShutdown", "poweroff", "+90s"])
    );
    let doc = lab.lightsout_json(&["cancel", &agent.target(), "--dry-run"], 0);
    assert_eq!(
        only_host(&doc)["response"]["argv"],
        json!(["logind", "CancelScheduledShutdown"])
    );
    assert_eq!(fake.calls(), Vec::<Value>::new(), "nothing reached the bus");
}

/// Sends a shutdown with a fixed request id, twice (the controller's retry), on two
/// connections; returns both responses.
fn shutdown_twice(lab: &Lab, agent: &AgentProcess) -> [lightsout_protocol::Response; 2] {
    let request = RequestEnvelope::new(
        "retry-me",
        false,
        Request::Shutdown(PowerParams {
            delay_secs: 90,
            message: None,
            replace: false,
        }),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let first = RawClient::connect(lab, agent.addr)
            .await
            .call(&request)
            .await;
        let second = RawClient::connect(lab, agent.addr)
            .await
            .call(&request)
            .await;
        [first, second]
    })
}

/// What every refused hand-over must show: an `unavailable` error naming the cause and saying
/// the machine stays up, the same answer to the retry, nothing pending, the audit's request
/// line followed by an `execution` line with the error.
fn assert_refused(lab: &Lab, agent: &AgentProcess, cause: &str) {
    let [first, retry] = shutdown_twice(lab, agent);
    let body = error_of(&first);
    assert_eq!(body.kind, ErrorKind::Unavailable, "{first:?}");
    for needle in [
        "cannot schedule the shutdown",
        cause,
        "nothing was scheduled, the machine stays up",
    ] {
        assert!(
            body.message.contains(needle),
            "{needle:?} in {}",
            body.message
        );
    }
    assert_eq!(
        retry, first,
        "the retry gets the same refusal, and is not carried out"
    );
    let h = lab.health(&agent.target());
    assert_eq!(h["pending"], Value::Null, "{h}");
    assert!(
        h["last_action"]["error"].as_str().unwrap().contains(cause),
        "{h}"
    );
    let lines = audit_of(lab, "retry-me");
    let executions: Vec<&Value> = lines.iter().filter(|l| l["event"] == "execution").collect();
    assert_eq!(
        executions.len(),
        1,
        "one attempt, one execution line: {lines:?}"
    );
    assert_eq!(executions[0]["outcome"], "failed", "{lines:?}");
    assert!(
        executions[0]["reason"].as_str().unwrap().contains(cause),
        "{lines:?}"
    );
    // The controller says so, and fails.
    let run = lab.lightsout(&["shutdown", &agent.target(), "--delay", "90s"]);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("the machine stays up") || run.stderr.contains("the machine stays up"),
        "{run:?}"
    );
}

#[test]
fn logind_refusing_the_schedule_refuses_the_action() {
    let Some(fake) = FakeLogind::start(&FakeOptions {
        fail_schedule: true,
        ..FakeOptions::default()
    }) else {
        return;
    };
    let lab = Lab::new();
    let agent = agent_on(&lab, &fake, &[]);
    assert_refused(&lab, &agent, "systemd-logind refused it");
    assert!(fake.calls_of("PowerOff").is_empty() && fake.calls_of("Reboot").is_empty());
}

#[test]
fn an_unreachable_bus_or_an_absent_logind_refuses_the_action() {
    let Some(no_logind) = FakeLogind::start(&FakeOptions {
        no_logind: true,
        ..FakeOptions::default()
    }) else {
        return;
    };
    let lab = Lab::new();
    let agent = agent_on(&lab, &no_logind, &[]);
    assert_refused(&lab, &agent, "systemd-logind is not reachable on the bus");
    drop(agent);

    let dir = tempfile::tempdir().unwrap();
    let nowhere = FakeLogind::unreachable_address(dir.path());
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--logind-bus", &nowhere]);
    assert_refused(&lab, &agent, "systemd-logind is not reachable on the bus");
}

#[test]
fn cancel_withdraws_the_action_from_logind_and_says_so() {
    let Some(fake) = FakeLogind::start(&FakeOptions::default()) else {
        return;
    };
    let lab = Lab::new();
    let agent = agent_on(&lab, &fake, &[]);
    let doc = lab.lightsout_json(&["shutdown", &agent.target(), "--delay", "10m"], 0);
    let id = only_host(&doc)["request_id"].as_str().unwrap().to_owned();
    let run = lab.lightsout(&["cancel", &agent.target()]).success();
    assert!(
        run.stdout
            .contains(&format!("cancelled pending shutdown (request {id})"))
            && run.stdout.contains("withdrawn from the system"),
        "{run:?}"
    );
    assert_eq!(fake.calls_of("CancelScheduledShutdown").len(), 1);
    assert_eq!(lab.health(&agent.target())["pending"], Value::Null);
    // Again: nothing anywhere, and the reply says so.
    let doc = lab.lightsout_json(&["cancel", &agent.target()], 0);
    let reply = &only_host(&doc)["response"];
    assert_eq!(reply["outcome"], "nothing_pending", "{doc}");
    assert_eq!(reply["cancelled"], Value::Null, "{doc}");
}

#[test]
fn a_restarted_agent_shows_the_action_logind_still_holds_and_can_cancel_it() {
    let Some(fake) = FakeLogind::start(&FakeOptions::default()) else {
        return;
    };
    let lab = Lab::new();
    let mut first = agent_on(&lab, &fake, &[]);
    let doc = lab.lightsout_json(
        &[
            "restart",
            &first.target(),
            "--delay",
            "10m",
            "--message",
            "m",
        ],
        0,
    );
    let id = only_host(&doc)["request_id"].as_str().unwrap().to_owned();
    let due = only_host(&doc)["response"]["due_unix"].as_u64().unwrap();
    let asked_by = lab.health(&first.target())["pending"]["requested_by"].clone();
    assert!(first.terminate(PATIENCE).is_some_and(|s| s.success()));
    // Stopping the agent changed nothing in logind: no cancel, no new schedule.
    assert_eq!(fake.calls_of("ScheduleShutdown").len(), 1);
    assert!(fake.calls_of("CancelScheduledShutdown").is_empty());

    let second = agent_on(&lab, &fake, &[]);
    let pending = lab.health(&second.target())["pending"].clone();
    assert_eq!(pending["request_id"], id.as_str(), "{pending}");
    assert_eq!(pending["requested_by"], asked_by, "{pending}");
    assert_eq!(pending["action"], "restart", "{pending}");
    assert!(
        pending["due_unix"].as_u64().unwrap().abs_diff(due) <= 1,
        "{pending}"
    );
    let doc = lab.lightsout_json(&["cancel", &second.target()], 0);
    let reply = &only_host(&doc)["response"];
    assert_eq!(reply["outcome"], "withdrawn", "{doc}");
    assert_eq!(reply["cancelled"]["request_id"], id.as_str(), "{doc}");
    assert_eq!(lab.health(&second.target())["pending"], Value::Null);
}

#[test]
fn an_action_scheduled_outside_lightsout_is_shown_as_such() {
    let due = now_usec() + 600_000_000;
    let Some(fake) = FakeLogind::start(&FakeOptions {
        scheduled: Some(("poweroff".into(), due)),
        ..FakeOptions::default()
    }) else {
        return;
    };
    let lab = Lab::new();
    let agent = agent_on(&lab, &fake, &[]);
    let pending = lab.health(&agent.target())["pending"].clone();
    assert_eq!(
        pending["requested_by"], "scheduled outside lightsout",
        "{pending}"
    );
    assert_eq!(pending["action"], "shutdown", "{pending}");
    assert_eq!(pending["due_unix"].as_u64(), Some(due / 1_000_000));
    let doc = lab.lightsout_json(&["cancel", &agent.target()], 0);
    assert_eq!(only_host(&doc)["response"]["outcome"], "withdrawn", "{doc}");
}

fn session(id: &str, user: &str, class: &str, state: &str, tty: &str) -> Value {
    json!({"id": id, "user": user, "uid": 1000, "class": class, "state": state, "tty": tty,
           "seat": if tty.starts_with("tty") { "seat0" } else { "" }})
}

/// What real systemd showed in the VM suite: root's console login on Debian 13 is of class
/// `user-early`, and a fresh console login stays `opening` for seconds while the user's
/// service manager starts. Both are a person at the machine.
#[test]
fn occupancy_counts_root_logins_and_logins_still_opening() {
    let Some(fake) = FakeLogind::start(&FakeOptions {
        sessions: Some(json!([
            session("1", "root", "user-early", "active", "tty1"),
            session("2", "student", "user", "opening", "ttyS0"),
            session("3", "student", "manager", "opening", ""),
        ])),
        ..FakeOptions::default()
    }) else {
        return;
    };
    let lab = Lab::new();
    let agent = agent_on(&lab, &fake, &[]);
    let h = lab.health(&agent.target());
    assert_eq!(h["logged_in_users"], 2, "{h}");
    let states: Vec<&str> = h["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["active", "opening"], "{h}");
    let doc = lab.lightsout_json(&["restart", &agent.target(), "--skip-busy", "--yes"], 0);
    let reason = only_host(&doc)["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("root on tty1 (active") && reason.contains("student on ttyS0 (opening"),
        "{reason}"
    );
    assert!(fake.calls_of("ScheduleShutdown").is_empty());
}

#[test]
fn occupancy_counts_user_sessions_that_are_active_or_online_only() {
    let idle_since = now_usec() - 200 * 1_000_000;
    let mut alice = session("1", "alice", "user", "active", "tty1");
    alice["idle_since_usec"] = json!(idle_since);
    let mut carol = session("5", "carol", "user", "online", "pts/0");
    carol["remote_host"] = json!("10.0.0.5");
    let busy = json!([
        alice,
        session("2", "bob", "user", "closing", "tty2"),
        session("3", "lightdm", "greeter", "active", "tty7"),
        session("4", "alice", "manager", "online", ""),
        carol,
    ]);
    let Some(fake) = FakeLogind::start(&FakeOptions {
        sessions: Some(busy),
        ..FakeOptions::default()
    }) else {
        return;
    };
    let lab = Lab::new();
    let agent = agent_on(&lab, &fake, &[]);
    let h = lab.health(&agent.target());
    assert_eq!(h["logged_in_users"], 2, "{h}");
    let sessions = h["sessions"].as_array().unwrap();
    let users: Vec<&str> = sessions
        .iter()
        .map(|s| s["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice", "carol"], "{h}");
    let idle = sessions[0]["idle_secs"].as_u64().unwrap();
    assert!((200..200 + PATIENCE.as_secs()).contains(&idle), "{h}");
    assert_eq!(sessions[0]["state"], "active");
    assert_eq!(sessions[1]["remote_host"], "10.0.0.5");
    assert_eq!(sessions[1]["idle_secs"], 0);
    // --skip-busy names them, and sends nothing.
    let doc = lab.lightsout_json(&["restart", &agent.target(), "--skip-busy", "--yes"], 0);
    let reason = only_host(&doc)["reason"].as_str().unwrap().to_owned();
    assert!(
        reason.starts_with("busy — alice on tty1 (active, idle 3m")
            && reason.contains("carol on pts/0 from 10.0.0.5 (online, in use)"),
        "{reason}"
    );
    assert!(fake.calls_of("ScheduleShutdown").is_empty());

    // Only a login screen, a manager and a closing session: nobody there.
    let Some(idle_fake) = FakeLogind::start(&FakeOptions {
        sessions: Some(json!([
            session("3", "lightdm", "greeter", "active", "tty7"),
            session("4", "alice", "manager", "online", ""),
            session("2", "bob", "user", "closing", "tty2"),
        ])),
        ..FakeOptions::default()
    }) else {
        return;
    };
    let agent = agent_on(&lab, &idle_fake, &[]);
    let h = lab.health(&agent.target());
    assert_eq!(h["logged_in_users"], 0, "{h}");
    assert_eq!(h["sessions"], json!([]), "{h}");
    let doc = lab.lightsout_json(
        &[
            "restart",
            &agent.target(),
            "--skip-busy",
            "--yes",
            "--delay",
            "10m",
        ],
        0,
    );
    assert_eq!(only_host(&doc)["status"], "ok", "{doc}");
    assert_eq!(idle_fake.calls_of("ScheduleShutdown").len(), 1);
}

#[test]
fn an_agent_without_logind_reads_utmp() {
    // A stand-in agent uses the command backend, so its occupancy comes from utmp: a number
    // when this machine has utmp, unknown when it has none (as on Debian 13).
    let lab = Lab::new();
    let (stand_in, _) = lab.stand_in("standin", 0);
    let agent = AgentProcess::start(&lab, &["--power-command", stand_in.to_str().unwrap()]);
    let h = lab.health(&agent.target());
    let has_utmp = ["/run/utmp", "/var/run/utmp"]
        .iter()
        .any(|p| std::fs::read(p).is_ok());
    if has_utmp {
        let users = h["logged_in_users"].as_u64().unwrap();
        let sessions = h["sessions"].as_array().unwrap();
        assert!(sessions.len() as u64 >= users, "{h}");
        assert!(
            sessions.iter().all(|s| s["state"].is_null()),
            "utmp has no state: {h}"
        );
    } else {
        assert_eq!(h["logged_in_users"], Value::Null, "{h}");
        assert_eq!(h["sessions"], Value::Null, "{h}");
    }
    let run = lab
        .lightsout(&["--json", "cancel", &agent.target()])
        .success();
    assert_eq!(
        run.json()["results"][0]["response"]["argv"],
        json!(["shutdown", "-c"]),
        "the command backend"
    );
}

#[test]
fn the_logind_backend_without_systemd_is_a_configuration_error() {
    if std::path::Path::new("/run/systemd/system").exists() {
        lightsout_tests::skip("this machine runs systemd: backend logind is valid here");
        return;
    }
    let lab = Lab::new();
    let out = lightsout_tests::agent_command()
        .env("LIGHTSOUT_HOME", lab.home.dir())
        .env_remove("LIGHTSOUT_CONFIG")
        .args(["--check-config", "--power-backend", "logind"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not booted with systemd") && stderr.contains("/run/systemd/system"),
        "{stderr}"
    );
    // auto, on this machine: the command backend.
    let out = lightsout_tests::agent_command()
        .env("LIGHTSOUT_HOME", lab.home.dir())
        .env_remove("LIGHTSOUT_CONFIG")
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("power backend: command"),
        "{out:?}"
    );
}
