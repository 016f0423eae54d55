//! The agent's promises under attack and mistakes (the Trust issue): a CRL in force is never
//! dropped by a reload, SIGHUP applies the configuration file's `[tls] crl` as the README's
//! rollout says, a replayed power request never runs twice (whatever else arrives, and across
//! an agent restart), every refused request is audited, client text never reaches the logs
//! raw, and messages cannot hide text from the people who read them.
//!
//! Agents run in dry-run or with a stand-in power command in a temporary directory.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use lightsout_agent::audit::AuditLog;
use lightsout_pki::TlsFiles;
use lightsout_protocol::{
    ErrorKind, PowerParams, Reply, Request, RequestEnvelope, Response, WakeParams,
};
use lightsout_tests::{
    AgentProcess, InProc, Lab, PATIENCE, RawClient, client_config, error_kind, error_of, log_lines,
    new_id, poll, reply_of, tls_connect, wait_for_log,
};
use serde_json::Value;

fn revoke(lab: &Lab, name: &str) {
    lab.lightsout(&["pki", "revoke", name]).success();
}

fn sighup(agent: &AgentProcess) {
    let status = Command::new("kill")
        .args(["-HUP", &agent.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Whether `files` can complete an echo with the agent (false: refused at the handshake).
fn echo_as(lab: &Lab, files: &TlsFiles, agent: &AgentProcess) -> bool {
    let out = lab
        .controller_cmd_as(files)
        .args(["--json", "echo", &agent.target()])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let host = &doc["results"][0];
    if host["ok"] == true {
        return true;
    }
    assert_eq!(host["error"]["kind"], "tls", "{doc}");
    false
}

#[test]
fn a_crl_in_force_is_never_dropped_by_a_reload() {
    let lab = Lab::new();
    let lost = lab.issue_with_cli("lost-laptop", "admin");
    revoke(&lab, "lost-laptop");
    // The agent finds HOME/crl.pem at start.
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    assert!(!echo_as(&lab, &lost, &agent), "revoked at start");

    // The file vanishes (a botched copy, a clean-up script) and the agent is reloaded.
    std::fs::remove_file(lab.home.crl()).unwrap();
    sighup(&agent);
    agent.wait_for_logs("the failed reload", |l| {
        l.contains("reload failed") && l.contains("keeping the previous revocations")
    });
    assert!(
        !echo_as(&lab, &lost, &agent),
        "a vanished CRL must not un-revoke"
    );
    assert!(echo_as(&lab, &lab.controller_files(), &agent));
}

/// The README's "Rolling out to a lab", literally: the agent runs from a configuration file
/// with a bundle; after `pki revoke`, the administrator copies `crl.pem` next to it, sets
/// `crl = "crl.pem"` in `[tls]`, and reloads.
#[test]
fn sighup_applies_the_crl_named_in_the_configuration_file() {
    let lab = Lab::new();
    let etc = lab.dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let bundle = etc.join("agent-bundle.pem");
    lab.issue_agent_bundle("lab-01", &bundle);
    let config = etc.join("agent.toml");
    let base = "dry_run = true\n[tls]\nbundle = \"agent-bundle.pem\"\n";
    std::fs::write(&config, base).unwrap();
    // Its own home (as /var/lib/lightsout is), so HOME/crl.pem plays no part.
    let state = lab.dir.path().join("var-lib-lightsout");
    let agent = AgentProcess::start(
        &lab,
        &[
            "--dry-run",
            "--config",
            config.to_str().unwrap(),
            "--home",
            state.to_str().unwrap(),
        ],
    );
    let lost = lab.issue_with_cli("lost-laptop", "operator");
    assert!(echo_as(&lab, &lost, &agent));

    revoke(&lab, "lost-laptop");
    std::fs::copy(lab.home.crl(), etc.join("crl.pem")).unwrap();
    std::fs::write(
        &config,
        format!("{base}crl = \"crl.pem\"\n[limits]\nmax_connections = 100\n"),
    )
    .unwrap();
    sighup(&agent);
    poll("the configured CRL to apply", || {
        (!echo_as(&lab, &lost, &agent)).then_some(())
    });
    let logs = agent.wait_for_logs("the reload", |l| l.contains("reloaded the CRL"));
    assert!(
        logs.contains("take effect only when the agent restarts") && logs.contains("limits"),
        "a key that needs a restart is named: {logs}"
    );

    // The key is removed again: the revocations stay, and the agent says why.
    std::fs::write(&config, base).unwrap();
    sighup(&agent);
    agent.wait_for_logs("the refused reload", |l| {
        l.contains("[tls] crl was removed")
    });
    assert!(!echo_as(&lab, &lost, &agent));
    assert!(echo_as(&lab, &lab.controller_files(), &agent));
}

fn restart_now(id: &str) -> RequestEnvelope {
    RequestEnvelope::new(
        id,
        false,
        Request::Restart(PowerParams {
            delay_secs: 0,
            message: Some("maintenance".into()),
            replace: true,
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_retried_after_the_agent_restarts_is_not_carried_out_again() {
    let lab = Lab::new();
    let (stand_in, log) = lab.stand_in("power", 0);
    let args = ["--power-command", stand_in.to_str().unwrap()];
    let mut agent = AgentProcess::start(&lab, &args);
    let request = restart_now("restart-then-retry");
    let original = RawClient::connect(&lab, agent.addr)
        .await
        .call(&request)
        .await;
    assert!(matches!(reply_of(&original), Reply::Restart(r) if !r.dry_run));
    wait_for_log(&log, &["-r now maintenance"]);

    // The machine "came back": the agent starts again on the same home.
    agent
        .terminate(PATIENCE)
        .expect("the agent stops on SIGTERM");
    let agent = AgentProcess::start(&lab, &args);
    let retried = RawClient::connect(&lab, agent.addr)
        .await
        .call(&request)
        .await;
    assert_eq!(
        retried, original,
        "answered from memory, with the original reply"
    );
    // Give a wrong execution every chance to show, then count.
    let mut client = RawClient::connect(&lab, agent.addr).await;
    client.assert_usable().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        log_lines(&log).len(),
        1,
        "executed once: {:?}",
        log_lines(&log)
    );
    let audit = lab.audit();
    assert!(
        audit.iter().any(|l| l["request_id"] == "restart-then-retry"
            && l["reason"]
                .as_str()
                .is_some_and(|r| r.contains("not executed again"))),
        "{audit:#?}"
    );
}

fn wake(id: &str, dry_run: bool) -> RequestEnvelope {
    RequestEnvelope::new(
        id,
        dry_run,
        Request::Wake(WakeParams {
            macs: vec!["52:54:00:00:00:01".parse().unwrap()],
            broadcast: Some(std::net::Ipv4Addr::LOCALHOST),
            port: Some(9),
        }),
    )
}

/// An operator tries to make the agent forget a restart it carried out: rehearsals do not
/// count, and a full memory refuses new requests rather than forgetting old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_an_operator_sends_makes_the_agent_forget_a_power_request() {
    let lab = Lab::new();
    let (stand_in, log) = lab.stand_in("power", 0);
    let agent = InProc::start(&lab, |c| {
        c.dry_run = false;
        c.power_command = Some(stand_in);
        // The flood below is fast; the rate limit is not what is tested here.
        c.limits.max_requests_per_sec = 100_000;
    })
    .await;
    let operator = lab.issue_with_cli("mallory", "operator");
    let mut client = RawClient::from_stream(
        tls_connect(agent.addr, client_config(&operator))
            .await
            .unwrap(),
    );
    let request = restart_now("the-original");
    let original = client.call(&request).await;
    assert!(
        matches!(reply_of(&original), Reply::Restart(_)),
        "{original:?}"
    );
    wait_for_log(&log, &["-r now maintenance"]);

    // More rehearsals than the old shared memory held (4,096), each with a fresh id.
    for _ in 0..4200 {
        let response = client.call(&wake(&new_id(), true)).await;
        assert!(matches!(reply_of(&response), Reply::Wake(w) if w.dry_run));
    }
    assert_eq!(client.call(&request).await, original);

    // Real requests fill this certificate's memory; then new ones are refused, old ones kept.
    let per_identity = lightsout_agent::replay::PER_IDENTITY;
    for _ in 1..per_identity {
        let response = client.call(&wake(&new_id(), false)).await;
        if error_kind(&response) == Some(ErrorKind::Busy) {
            // The agent-wide wake budget (2,048 packets a minute) is shared: fine, a refusal
            // is remembered like any reply.
            continue;
        }
        assert!(
            matches!(reply_of(&response), Reply::Wake(_)),
            "{response:?}"
        );
    }
    let refused = client.call(&restart_now("one-too-many")).await;
    let error = error_of(&refused);
    assert_eq!(error.kind, ErrorKind::Busy);
    assert!(
        error.message.contains("remembers at most"),
        "{}",
        error.message
    );
    assert_eq!(client.call(&request).await, original, "still remembered");
    assert_eq!(log_lines(&log).len(), 1, "the restart ran once");
    // Another certificate is not affected by mallory's full memory.
    let mut admin = RawClient::connect(&lab, agent.addr).await;
    let response = admin.call(&wake(&new_id(), false)).await;
    assert_ne!(
        error_of_message(&response)
            .as_deref()
            .map(|m| m.contains("remembers at most")),
        Some(true)
    );
}

fn error_of_message(response: &Response) -> Option<String> {
    match &response.outcome {
        lightsout_protocol::Outcome::Error(e) => Some(e.message.clone()),
        lightsout_protocol::Outcome::Ok(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_by_the_rate_limit_are_summarised_in_the_audit_log() {
    let lab = Lab::new();
    let audit_path = lab.dir.path().join("audit.jsonl");
    let audit = Arc::new(AuditLog::new(&audit_path));
    let agent = InProc::start(&lab, |c| {
        c.audit = Some(audit);
        c.limits.max_requests_per_sec = 10;
    })
    .await;
    let mut client = RawClient::connect(&lab, agent.addr).await;
    let sent = 300;
    let mut refused = 0;
    for _ in 0..sent {
        let response = client.call(&RequestEnvelope::echo(new_id(), "x")).await;
        if error_kind(&response) == Some(ErrorKind::Busy) {
            refused += 1;
        }
    }
    assert!(refused > 0, "the flood met the rate limit");
    drop(client);
    let lines = poll("the rate-limit summary", || {
        let lines = Lab::audit_lines(&audit_path);
        lines
            .iter()
            .any(|l| l["event"] == "rate_limit")
            .then_some(lines)
    });
    let echoes = lines.iter().filter(|l| l["kind"] == "echo").count();
    let summarised: usize = lines
        .iter()
        .filter(|l| l["event"] == "rate_limit")
        .map(|l| {
            let reason = l["reason"].as_str().unwrap();
            assert_eq!(l["outcome"], "busy");
            assert_eq!(l["role"], "admin", "{l}");
            reason.split(' ').next().unwrap().parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(summarised, refused, "{lines:#?}");
    assert_eq!(echoes + summarised, sent, "every request has its line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_a_connection_revoked_since_it_opened_is_audited_with_its_id() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let insider = lab.issue_with_cli("insider", "operator");
    let mut client = RawClient::from_stream(
        tls_connect(agent.addr, client_config(&insider))
            .await
            .unwrap(),
    );
    client.assert_usable().await;
    revoke(&lab, "insider");
    sighup(&agent);
    agent.wait_for_logs("the reload", |l| l.contains("reloaded the CRL"));
    let response = client
        .call(&RequestEnvelope::new(
            "after-revocation",
            true,
            Request::Cancel,
        ))
        .await;
    assert_eq!(response.id.as_deref(), Some("after-revocation"));
    assert_eq!(error_kind(&response), Some(ErrorKind::NotAllowed));
    let audit = lab.audit();
    let line = audit
        .iter()
        .find(|l| l["request_id"] == "after-revocation")
        .unwrap_or_else(|| panic!("no audit line: {audit:#?}"));
    assert_eq!(line["decision"], "refused");
    assert_eq!(line["identity"], "insider");
    assert!(
        line["reason"].as_str().unwrap().contains("revoked"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_text_never_reaches_the_logs_raw() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let mut client = RawClient::connect(&lab, agent.addr).await;
    // An unknown kind carrying a newline, a forged log line and a terminal escape.
    let forged = "x\n2026-01-01T00:00:00Z  INFO request ok\u{1b}[2J\u{202e}";
    let body = serde_json::json!({
        "version": lightsout_protocol::PROTOCOL_VERSION,
        "id": "probe-1",
        "request": {"kind": forged},
    });
    let response = client.call_body(body.to_string()).await;
    assert_eq!(error_kind(&response), Some(ErrorKind::BadRequest));
    // An id outside the id alphabet is refused, and never echoed back.
    let body = serde_json::json!({
        "version": lightsout_protocol::PROTOCOL_VERSION,
        "id": "a\nINFO forged\u{1b}[31m",
        "request": {"kind": "cancel"},
    });
    let response = client.call_body(body.to_string()).await;
    assert_eq!(error_kind(&response), Some(ErrorKind::BadRequest));
    assert_eq!(response.id, None);
    assert!(error_of(&response).message.contains("A-Z a-z 0-9"));
    client.assert_usable().await;

    let logs = agent.wait_for_logs("both refusals", |l| {
        l.matches("refused undecodable request").count() >= 2
    });
    for bad in ['\u{1b}', '\u{202e}'] {
        assert!(!logs.contains(bad), "{bad:?} reached the log:\n{logs}");
    }
    assert!(
        !logs.contains("\n2026-01-01T00:00:00Z  INFO request ok")
            && !logs.contains("\nINFO forged"),
        "a forged line reached the log:\n{logs}"
    );
    for line in lab.audit() {
        let text = line.to_string();
        assert!(
            !text.contains('\u{202e}') && !text.contains("\\u001b"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_with_invisible_formatting_are_refused() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, |_| {}).await;
    let mut client = RawClient::connect(&lab, agent.addr).await;
    for message in ["Saving\u{202e}txt.exe", "two\u{2028}lines", "bell\u{7}"] {
        let body = serde_json::json!({
            "version": lightsout_protocol::PROTOCOL_VERSION,
            "id": new_id(),
            "request": {"kind": "shutdown", "delay_secs": 60, "message": message},
        });
        let response = client.call_body(body.to_string()).await;
        assert_eq!(
            error_kind(&response),
            Some(ErrorKind::BadRequest),
            "{message:?}"
        );
        assert!(
            error_of(&response).message.contains("invisible formatting"),
            "{response:?}"
        );
    }
    client.assert_usable().await;
}
