//! Who may do what: roles, per-agent policy, revocation, certificate validity and the audit
//! log, against real agent processes driven by the real controller.

use std::process::Command;
use std::time::Duration;

use lightsout_pki::{CertKind, IssueOptions, TlsFiles};
use lightsout_tests::{AgentProcess, Lab};
use serde_json::Value;

const KINDS: [&str; 4] = ["echo", "shutdown", "restart", "cancel"];

/// Runs the controller as `files` with `--json`; returns (exit code, document).
fn run_as(lab: &Lab, files: &TlsFiles, args: &[&str]) -> (i32, Value) {
    let out = lab
        .controller_cmd_as(files)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

/// The error kind of the only host in `doc`, or "ok".
fn outcome(doc: &Value) -> String {
    let host = &doc["results"][0];
    if host["ok"] == true {
        "ok".into()
    } else {
        host["error"]["kind"].as_str().unwrap_or("?").to_owned()
    }
}

fn request(kind: &str, target: &str) -> Vec<String> {
    let mut args = vec![kind.to_owned(), target.to_owned()];
    if kind == "shutdown" || kind == "restart" {
        // Requests must be distinct actions each time: replace any pending one. The agent
        // runs on this machine (loopback) with a stand-in: name it and confirm that.
        args.push("--replace".into());
        args.push("--include-self".into());
    }
    args
}

#[test]
fn roles_get_exactly_their_requests_and_every_attempt_is_audited() {
    let lab = Lab::new();
    let (stand_in, log) = lab.stand_in("fake-shutdown", 0);
    let audit = lab.dir.path().join("audit.jsonl");
    let agent = AgentProcess::start(
        &lab,
        &[
            "--power-command",
            stand_in.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    let cases: [(&str, Option<&str>, &[&str]); 5] = [
        ("mon", Some("monitor"), &["echo"]),
        ("op", Some("operator"), &["echo", "restart", "cancel"]),
        ("adm", Some("admin"), &KINDS),
        ("norole", None, &["echo"]),
        ("stranger", Some("wizard"), &["echo"]),
    ];
    let mut attempts = 0;
    for (name, role, allowed) in cases {
        let files = lab.controller(name, role);
        for kind in KINDS {
            let args = request(kind, &agent.target());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, doc) = run_as(&lab, &files, &args);
            attempts += 1;
            if allowed.contains(&kind) {
                assert_eq!(
                    (code, outcome(&doc)),
                    (0, "ok".into()),
                    "{name} {kind}: {doc}"
                );
            } else {
                assert_eq!(
                    (code, outcome(&doc)),
                    (1, "not_allowed".into()),
                    "{name} {kind}: {doc}"
                );
                let message = doc["results"][0]["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains(kind) && message.contains(name),
                    "{message}"
                );
            }
        }
    }
    // Every attempt has its audit line, with the identity, role and decision.
    let lines: Vec<Value> = Lab::audit_lines(&audit)
        .into_iter()
        .filter(|l| l["event"] == "request")
        .collect();
    assert_eq!(lines.len(), attempts, "{lines:#?}");
    for (name, role, allowed) in cases {
        for kind in KINDS {
            let line = lines
                .iter()
                .find(|l| l["identity"] == name && l["kind"] == kind)
                .unwrap_or_else(|| panic!("no audit line for {name} {kind}"));
            assert_eq!(line["role"], role.map_or(Value::Null, Value::from));
            let decision = if allowed.contains(&kind) {
                "allowed"
            } else {
                "refused"
            };
            assert_eq!(line["decision"], decision, "{line}");
            assert_eq!(line["fingerprint"].as_str().unwrap().len(), 64);
            assert!(
                line["request_id"].is_string()
                    && line["peer"].as_str().unwrap().starts_with("127.0.0.1:")
            );
        }
    }
    // Only admin's shutdown and admin's and operator's restarts reached the stand-in
    // (cancels also run it, with -c).
    std::thread::sleep(Duration::from_millis(300));
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        ran.lines().filter(|l| l.starts_with("-h")).count(),
        1,
        "{ran}"
    );
    assert_eq!(
        ran.lines().filter(|l| l.starts_with("-r")).count(),
        2,
        "{ran}"
    );

    // The readable tail shows the last entries.
    let out = Command::new(lightsout_tests::bin("lightsout-agent"))
        .args([
            "audit",
            "tail",
            "-n",
            "3",
            "--audit-log",
            audit.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("stranger (wizard)"), "{text}");
}

#[test]
fn per_agent_policy_narrows_even_admin() {
    let lab = Lab::new();
    let config = lab.dir.path().join("agent.toml");
    std::fs::write(&config, "[policy]\nallow = [\"echo\"]\n").unwrap();
    let agent = AgentProcess::start(&lab, &["--dry-run", "--config", config.to_str().unwrap()]);
    let admin = lab.controller_files();
    let (code, doc) = run_as(&lab, &admin, &["shutdown", &agent.target(), "--dry-run"]);
    assert_eq!((code, outcome(&doc)), (1, "not_allowed".into()), "{doc}");
    assert!(
        doc["results"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled on this machine")
    );
    let (code, doc) = run_as(&lab, &admin, &["echo", &agent.target()]);
    assert_eq!((code, outcome(&doc)), (0, "ok".into()), "{doc}");
}

#[test]
fn revoked_certificates_are_refused_and_sighup_applies_new_revocations() {
    let lab = Lab::new();
    let issue = |name: &str| lab.issue_with_cli(name, "admin");
    let lost = issue("lost-laptop");
    let later = issue("retired-desk");
    let revoke = |name: &str| {
        lab.lightsout(&["pki", "revoke", name]).success();
    };
    revoke("lost-laptop");

    // The agent loads HOME/crl.pem at start: the lost laptop is refused at the handshake.
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let (code, doc) = run_as(&lab, &lost, &["echo", &agent.target()]);
    assert_eq!((code, outcome(&doc)), (1, "tls".into()), "{doc}");
    let (code, doc) = run_as(&lab, &later, &["echo", &agent.target()]);
    assert_eq!((code, outcome(&doc)), (0, "ok".into()), "{doc}");

    // Revoke the second one and reload: it stops working without restarting the agent.
    revoke("retired-desk");
    let status = Command::new("kill")
        .args(["-HUP", &agent.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut refused = false;
    for _ in 0..100 {
        let (_, doc) = run_as(&lab, &later, &["echo", &agent.target()]);
        if outcome(&doc) == "tls" {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(refused, "the reloaded CRL was not applied");
    // Certificates that are still valid keep working after the reload.
    let (code, doc) = run_as(&lab, &lab.controller_files(), &["echo", &agent.target()]);
    assert_eq!((code, outcome(&doc)), (0, "ok".into()), "{doc}");
    // And the rejections are in the audit log.
    let audit = lab.audit();
    assert!(
        audit.iter().any(|l| l["event"] == "handshake"
            && l["reason"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("revoked")),
        "{audit:#?}"
    );
}

#[test]
fn controller_refuses_a_revoked_agent() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let host = lightsout_pki::ca::local_hostname();
    let out = lab
        .controller_cmd()
        .args(["pki", "revoke", &host])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The controller picks up HOME/crl.pem and refuses the agent's (now revoked) certificate.
    let out = lab
        .controller_cmd()
        .args(["--json", "echo", &agent.target()])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome(&doc), "tls", "{doc}");
    assert!(
        doc["results"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{doc}"
    );
}

#[test]
fn expired_and_not_yet_valid_certificates_are_rejected() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let now = time::OffsetDateTime::now_utc();
    for (name, start, days) in [
        ("expired", now - time::Duration::days(10), 1),
        ("future", now + time::Duration::days(2), 30),
    ] {
        let mut opts = IssueOptions::new(CertKind::Controller, name);
        opts.role = Some("admin".into());
        opts.not_before = Some(start);
        opts.validity_days = days;
        let files = lab.issue(&opts);
        let (code, doc) = run_as(&lab, &files, &["echo", &agent.target()]);
        assert_eq!((code, outcome(&doc)), (1, "tls".into()), "{name}: {doc}");
    }
    let (code, _) = run_as(&lab, &lab.controller_files(), &["echo", &agent.target()]);
    assert_eq!(code, 0, "valid certificates still get in");
}

#[test]
fn power_actions_fail_closed_when_the_audit_log_cannot_be_written() {
    let lab = Lab::new();
    let (stand_in, log) = lab.stand_in("fake-shutdown", 0);
    // /dev/full accepts the open and fails every write with ENOSPC: a full disk.
    let agent = AgentProcess::start(
        &lab,
        &[
            "--power-command",
            stand_in.to_str().unwrap(),
            "--audit-log",
            "/dev/full",
        ],
    );
    let admin = lab.controller_files();
    let (code, doc) = run_as(
        &lab,
        &admin,
        &["shutdown", &agent.target(), "--include-self"],
    );
    assert_eq!((code, outcome(&doc)), (1, "internal".into()), "{doc}");
    assert!(
        doc["results"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("audit log"),
        "{doc}"
    );
    let (code, doc) = run_as(&lab, &admin, &["echo", &agent.target()]);
    assert_eq!((code, outcome(&doc)), (0, "ok".into()), "{doc}");
    assert!(
        doc["results"][0]["response"]["health"]["pending"].is_null(),
        "nothing left pending: {doc}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!log.exists(), "the stand-in must not have run");
}
