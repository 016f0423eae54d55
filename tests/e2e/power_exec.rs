//! The real execution path, with a stand-in in place of the system's `shutdown`: what runs,
//! when, how often, and what the agent reports about it.
//!
//! Every agent here runs without `--dry-run` and with `--power-command STANDIN`: the stand-in
//! appends its arguments to a log, so the log is exactly what the system would have been told.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lightsout_protocol::{
    Outcome, PowerParams, PowerReply, Reply, Request, RequestEnvelope, Response,
};
use lightsout_tests::{
    AgentProcess, Lab, PATIENCE, RawClient, log_lines, only_host, poll, wait_for_log,
};
use serde_json::{Value, json};

/// A non-dry-run agent whose power command is a stand-in exiting with `exit_code`.
fn stand_in_agent(lab: &Lab, exit_code: i32) -> (AgentProcess, PathBuf) {
    let (script, log) = lab.stand_in("standin", exit_code);
    let agent = AgentProcess::start(lab, &["--power-command", script.to_str().unwrap()]);
    (agent, log)
}

/// Waits until the agent reports that the command for `request_id` has finished.
fn wait_until_executed(lab: &Lab, agent: &AgentProcess, request_id: &str) -> Value {
    poll(&format!("the execution of {request_id}"), || {
        let h = lab.health(&agent.target());
        (h["last_action"]["request_id"] == request_id).then_some(h)
    })
}

/// Stops the agent (SIGTERM: it waits for every execution it started) and returns the
/// stand-in's final log. Anything the agent was going to run has run by then.
fn stop_and_read_log(agent: &mut AgentProcess, log: &Path) -> Vec<String> {
    let status = agent
        .terminate(PATIENCE)
        .expect("the agent stops on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", agent.logs());
    log_lines(log)
}

#[test]
fn shutdown_now_runs_the_stand_in_with_exactly_the_planned_argv() {
    let lab = Lab::new();
    let (agent, log) = stand_in_agent(&lab, 0);
    let doc = lab.lightsout_json(&["shutdown", &agent.target()], 0);
    let host = only_host(&doc);
    let id = host["request_id"].as_str().unwrap();
    let response = &host["response"];
    assert_eq!(response["dry_run"], false);
    assert_eq!(response["argv"], json!(["shutdown", "-h", "now"]));
    assert_eq!(response["agent_wait_secs"], 0);

    // argv[0] is replaced by the stand-in; the arguments are exactly the planned ones.
    wait_for_log(&log, &["-h now"]);
    let h = wait_until_executed(&lab, &agent, id);
    assert_eq!(h["dry_run"], false);
    assert_eq!(h["privileged"], true);
    assert_eq!(h["last_action"]["argv"], json!(["shutdown", "-h", "now"]));
    assert_eq!(h["last_action"]["exit_code"], 0);
    assert!(h["last_action"]["error"].is_null(), "{h}");
}

#[test]
fn a_request_level_dry_run_executes_nothing() {
    let lab = Lab::new();
    let (mut agent, log) = stand_in_agent(&lab, 0);
    let target = agent.target();
    for (args, argv) in [
        (
            vec!["shutdown", &target, "--dry-run"],
            json!(["shutdown", "-h", "now"]),
        ),
        (
            vec!["restart", &target, "--dry-run", "--delay", "61"],
            json!(["shutdown", "-r", "+1"]),
        ),
        (
            vec!["cancel", &target, "--dry-run"],
            json!(["shutdown", "-c"]),
        ),
    ] {
        let doc = lab.lightsout_json(&args, 0);
        let response = &only_host(&doc)["response"];
        assert_eq!(response["dry_run"], true, "{args:?}: {response}");
        assert_eq!(response["argv"], argv, "{args:?}");
    }
    let h = lab.health(&agent.target());
    assert!(h["pending"].is_null(), "a rehearsal is never pending: {h}");
    assert!(h["last_action"].is_null(), "{h}");
    assert_eq!(stop_and_read_log(&mut agent, &log), Vec::<String>::new());
}

#[test]
fn a_second_action_while_one_is_pending_is_busy_unless_replaced() {
    let lab = Lab::new();
    let (agent, log) = stand_in_agent(&lab, 0);
    let target = agent.target();
    let doc = lab.lightsout_json(&["shutdown", &target, "--delay", "2m"], 0);
    let first = only_host(&doc)["request_id"].as_str().unwrap().to_owned();
    wait_for_log(&log, &["-h +2"]);
    let h = wait_until_executed(&lab, &agent, &first);
    assert_eq!(h["pending"]["request_id"], first.as_str(), "{h}");
    assert_eq!(h["pending"]["action"], "shutdown");

    for args in [
        vec!["shutdown", &target, "--delay", "3m"],
        vec!["restart", &target],
    ] {
        let doc = lab.lightsout_json(&args, 1);
        let host = only_host(&doc);
        assert_eq!(host["ok"], false);
        assert_eq!(host["error"]["kind"], "busy", "{host}");
        assert_eq!(host["error"]["source"], "agent");
        assert_eq!(host["error"]["pending"]["request_id"], first.as_str());
        assert_eq!(
            host["error"]["pending"]["argv"],
            json!(["shutdown", "-h", "+2"])
        );
    }
    assert_eq!(log_lines(&log), ["-h +2"], "a refused action runs nothing");

    let doc = lab.lightsout_json(&["restart", &target, "--delay", "3m", "--replace"], 0);
    let host = only_host(&doc);
    let third = host["request_id"].as_str().unwrap().to_owned();
    assert_eq!(host["response"]["argv"], json!(["shutdown", "-r", "+3"]));
    // The system had the first action: it is cancelled before the replacement is handed over.
    wait_for_log(&log, &["-h +2", "-c", "-r +3"]);
    let h = wait_until_executed(&lab, &agent, &third);
    assert_eq!(h["pending"]["request_id"], third.as_str(), "{h}");
    assert_eq!(h["pending"]["action"], "restart");
}

#[test]
fn cancel_runs_the_stand_in_with_dash_c() {
    let lab = Lab::new();
    let (agent, log) = stand_in_agent(&lab, 0);
    let target = agent.target();

    // Nothing known to be pending: the system's cancel still runs (something may have been
    // scheduled before this agent started).
    let doc = lab.lightsout_json(&["cancel", &target], 0);
    let response = &only_host(&doc)["response"];
    assert_eq!(response["kind"], "cancel");
    assert_eq!(response["dry_run"], false);
    assert_eq!(response["argv"], json!(["shutdown", "-c"]));
    assert!(response["cancelled"].is_null(), "{response}");
    assert_eq!(response["exit_code"], 0);
    assert_eq!(response["outcome"], "nothing_pending", "{response}");
    assert_eq!(log_lines(&log), ["-c"], "cancel runs before it replies");

    // A pending action the system already has.
    let doc = lab.lightsout_json(&["shutdown", &target, "--delay", "2m"], 0);
    let id = only_host(&doc)["request_id"].as_str().unwrap().to_owned();
    wait_until_executed(&lab, &agent, &id);
    let doc = lab.lightsout_json(&["cancel", &target], 0);
    let response = &only_host(&doc)["response"];
    assert_eq!(
        response["cancelled"]["request_id"],
        id.as_str(),
        "{response}"
    );
    assert_eq!(response["exit_code"], 0);
    assert_eq!(response["outcome"], "withdrawn", "{response}");
    assert_eq!(log_lines(&log), ["-c", "-h +2", "-c"]);
    assert!(lab.health(&agent.target())["pending"].is_null());
}

#[test]
fn an_early_cancel_says_the_action_never_reached_the_system() {
    let lab = Lab::new();
    let (mut agent, log) = stand_in_agent(&lab, 0);
    let target = agent.target();
    // 90 s: the agent waits 30 s before `shutdown -h +1`; the cancel comes well before.
    let doc = lab.lightsout_json(&["shutdown", &target, "--delay", "90s"], 0);
    let id = only_host(&doc)["request_id"].as_str().unwrap().to_owned();
    let doc = lab.lightsout_json(&["cancel", &target], 0);
    let response = &only_host(&doc)["response"];
    assert_eq!(response["outcome"], "stopped_before_system", "{response}");
    assert_eq!(
        response["cancelled"]["request_id"],
        id.as_str(),
        "{response}"
    );
    assert!(response["exit_code"].is_null(), "nothing ran: {response}");
    // The text says what happened, not "ran `shutdown -c`".
    let doc = lab.lightsout_json(&["shutdown", &target, "--delay", "90s"], 0);
    let id = only_host(&doc)["request_id"].as_str().unwrap().to_owned();
    let run = lab.lightsout(&["cancel", &target]).success();
    assert!(
        run.stdout.contains(&format!(
            "cancelled pending shutdown (request {id}) before it reached the system; nothing to cancel there"
        )) && !run.stdout.contains("ran `"),
        "{run:?}"
    );
    assert_eq!(
        stop_and_read_log(&mut agent, &log),
        Vec::<String>::new(),
        "nothing ever reached the system"
    );
}

#[test]
fn a_failing_power_command_shows_in_the_next_echo() {
    let lab = Lab::new();
    let (agent, log) = stand_in_agent(&lab, 1);
    let doc = lab.lightsout_json(&["shutdown", &agent.target()], 0);
    // Accepted: the reply goes out before the command runs.
    let id = only_host(&doc)["request_id"].as_str().unwrap().to_owned();
    let h = wait_until_executed(&lab, &agent, &id);
    let last = &h["last_action"];
    assert_eq!(last["exit_code"], 1, "{h}");
    assert!(
        last["error"].as_str().is_some_and(|e| e.contains("failed")),
        "{h}"
    );
    assert!(
        h["pending"].is_null(),
        "a failed action is not pending: {h}"
    );
    assert_eq!(log_lines(&log), ["-h now"]);
    // Nothing pending, so the next action is not refused as busy.
    lab.lightsout_json(&["shutdown", &agent.target(), "--delay", "2m"], 0);
}

#[test]
fn a_delay_of_61s_waits_one_second_then_hands_over_whole_minutes() {
    let lab = Lab::new();
    let (agent, log) = stand_in_agent(&lab, 0);
    let started = Instant::now();
    let doc = lab.lightsout_json(&["shutdown", &agent.target(), "--delay", "61s"], 0);
    let response = &only_host(&doc)["response"];
    assert_eq!(response["delay_secs"], 61);
    assert_eq!(response["agent_wait_secs"], 1);
    assert_eq!(response["argv"], json!(["shutdown", "-h", "+1"]));
    let h = lab.health(&agent.target());
    assert_eq!(h["pending"]["argv"], json!(["shutdown", "-h", "+1"]), "{h}");
    wait_for_log(&log, &["-h +1"]);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "ran early, after {:?}",
        started.elapsed()
    );
}

#[test]
fn cancel_during_the_agent_wait_means_nothing_ever_runs() {
    let lab = Lab::new();
    let (mut agent, log) = stand_in_agent(&lab, 0);
    let doc = lab.lightsout_json(&["shutdown", &agent.target(), "--delay", "61"], 0);
    let id = only_host(&doc)["request_id"].as_str().unwrap().to_owned();
    let doc = lab.lightsout_json(&["cancel", &agent.target()], 0);
    let response = &only_host(&doc)["response"];
    assert_eq!(
        response["cancelled"]["request_id"],
        id.as_str(),
        "{response}"
    );
    // Stopping the agent would hand a still-waiting action to the system: it must not.
    assert_eq!(stop_and_read_log(&mut agent, &log), Vec::<String>::new());
}

#[test]
fn cancel_after_a_replace_also_cancels_what_the_system_already_has() {
    let lab = Lab::new();
    let (mut agent, log) = stand_in_agent(&lab, 0);
    let target = agent.target();
    let doc = lab.lightsout_json(&["shutdown", &target, "--delay", "2m"], 0);
    let first = only_host(&doc)["request_id"].as_str().unwrap().to_owned();
    wait_until_executed(&lab, &agent, &first);
    // The replacement waits 30 s in the agent before it would reach the system...
    let doc = lab.lightsout_json(&["shutdown", &target, "--delay", "150", "--replace"], 0);
    let second = only_host(&doc)["request_id"].as_str().unwrap().to_owned();
    // ...and is cancelled during that wait. The system still holds the first one.
    let doc = lab.lightsout_json(&["cancel", &target], 0);
    let response = &only_host(&doc)["response"];
    assert_eq!(response["cancelled"]["request_id"], second.as_str());
    assert_eq!(
        response["exit_code"], 0,
        "the system's cancel ran: {response}"
    );
    assert_eq!(log_lines(&log), ["-h +2", "-c"]);
    assert_eq!(stop_and_read_log(&mut agent, &log), ["-h +2", "-c"]);
}

/// A stand-in that blocks until `gate` exists, so a test can act while it "runs".
fn gated_stand_in(lab: &Lab) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let dir = lab.dir.path();
    let (script, log, started, gate) = (
        dir.join("gated"),
        dir.join("gated.log"),
        dir.join("gated.started"),
        dir.join("gated.gate"),
    );
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{started}'\n\
             while [ ! -e '{gate}' ]; do sleep 0.01; done\n\
             printf '%s\\n' \"$*\" >> '{log}'\n",
            started = started.display(),
            gate = gate.display(),
            log = log.display(),
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (script, log, started, gate)
}

#[tokio::test]
async fn cancel_while_the_command_is_running_still_cancels_it() {
    let lab = Lab::new();
    let (script, log, started, gate) = gated_stand_in(&lab);
    let agent = AgentProcess::start(&lab, &["--power-command", script.to_str().unwrap()]);
    let mut client = RawClient::connect(&lab, agent.addr).await;
    let shutdown = RequestEnvelope::new(
        "race-shutdown",
        false,
        Request::Shutdown(PowerParams {
            delay_secs: 120,
            ..PowerParams::default()
        }),
    );
    let response = client.call(&shutdown).await;
    assert!(matches!(response.outcome, Outcome::Ok(_)), "{response:?}");
    // The command is now running (blocked on the gate): the system is being told.
    poll("the stand-in to start", || {
        (log_lines(&started) == ["-h +2"]).then_some(())
    });

    let cancel = RequestEnvelope::new("race-cancel", false, Request::Cancel);
    client.send_body(cancel.to_bytes()).await.unwrap();
    // Give the agent a moment to take the cancel while the command still runs; a reply in
    // that moment is checked just the same.
    let early = tokio::time::timeout(Duration::from_millis(200), client.recv()).await;
    std::fs::write(&gate, "").unwrap();
    let response = match early {
        Ok(response) => response,
        Err(_) => client.recv().await,
    }
    .expect("a reply to the cancel");
    match &response.outcome {
        Outcome::Ok(Reply::Cancel(c)) => {
            assert_eq!(
                c.cancelled.as_ref().map(|p| p.request_id.as_str()),
                Some("race-shutdown")
            );
            assert_eq!(
                c.exit_code,
                Some(0),
                "the system got the shutdown, so its cancel must run: {c:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    wait_for_log(&log, &["-h +2", "-c"]);
}

#[tokio::test]
async fn a_replace_while_the_command_is_running_cancels_it_first() {
    let lab = Lab::new();
    let (script, log, started, gate) = gated_stand_in(&lab);
    let agent = AgentProcess::start(&lab, &["--power-command", script.to_str().unwrap()]);
    let mut client = RawClient::connect(&lab, agent.addr).await;
    let power = |id: &str, request: fn(PowerParams) -> Request, minutes: u64, replace: bool| {
        RequestEnvelope::new(
            id,
            false,
            request(PowerParams {
                delay_secs: minutes * 60,
                message: None,
                replace,
            }),
        )
    };
    let response = client
        .call(&power("first", Request::Shutdown, 2, false))
        .await;
    assert!(matches!(response.outcome, Outcome::Ok(_)), "{response:?}");
    poll("the stand-in to start", || {
        (log_lines(&started) == ["-h +2"]).then_some(())
    });
    // Accepted while the system is being handed the first action.
    let response = client
        .call(&power("second", Request::Restart, 3, true))
        .await;
    assert!(matches!(response.outcome, Outcome::Ok(_)), "{response:?}");
    std::fs::write(&gate, "").unwrap();
    wait_for_log(&log, &["-h +2", "-c", "-r +3"]);
}

#[tokio::test]
async fn a_duplicate_request_id_is_answered_from_memory_and_runs_once() {
    let lab = Lab::new();
    let (mut agent, log) = stand_in_agent(&lab, 0);
    let request = RequestEnvelope::new("dup-1", false, Request::Shutdown(PowerParams::default()));
    let mut client = RawClient::connect(&lab, agent.addr).await;
    let first = client.call(&request).await;
    match &first.outcome {
        Outcome::Ok(Reply::Shutdown(PowerReply { dry_run, argv, .. })) => {
            assert!(!dry_run);
            assert_eq!(argv, &["shutdown", "-h", "now"]);
        }
        other => panic!("{other:?}"),
    }
    // The same envelope again, on the same connection and on a new one (a retry after a
    // lost reply): the very same reply, down to the due time.
    let again: Response = client.call(&request).await;
    assert_eq!(again, first);
    let mut retry = RawClient::connect(&lab, agent.addr).await;
    assert_eq!(retry.call(&request).await, first);

    wait_for_log(&log, &["-h now"]);
    drop((client, retry));
    assert_eq!(stop_and_read_log(&mut agent, &log), ["-h now"]);
}
