//! The real `lightsout` binary against real dry-run agents: every command with and without
//! `--json`, the JSON document's shape, exit codes, and each way reaching a host can fail.

use std::net::TcpListener;
use std::time::Duration;

use lightsout_pki::CertKind;
use lightsout_tests::{AgentProcess, Lab, closed_port};
use serde_json::{Value, json};

/// The fields every host object has, and their types.
fn assert_host_shape(host: &Value, target: &str, ok: bool) {
    assert_eq!(host["target"], target, "{host}");
    assert_eq!(host["ok"], ok, "{host}");
    assert!(
        host["elapsed_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{host}"
    );
    if ok {
        assert!(host["response"].is_object(), "{host}");
        assert!(host.get("error").is_none(), "{host}");
        assert!(
            host["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{host}"
        );
    } else {
        assert!(host.get("response").is_none(), "{host}");
        assert!(host["error"]["kind"].is_string(), "{host}");
        assert!(host["error"]["message"].is_string(), "{host}");
    }
}

fn assert_summary(doc: &Value, total: u64, ok: u64) {
    assert_eq!(
        doc["summary"],
        json!({ "total": total, "ok": ok, "failed": total - ok, "skipped": 0 }),
        "{doc}"
    );
    assert_eq!(
        doc["results"].as_array().map(Vec::len),
        Some(total as usize)
    );
}

#[test]
fn every_command_with_json_against_a_dry_run_agent() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let target = agent.target();

    let doc = lab.lightsout_json(&["echo", &target, "--payload", "ping-1"], 0);
    assert_eq!(doc["command"], "echo");
    assert_summary(&doc, 1, 1);
    let host = &doc["results"][0];
    assert_host_shape(host, &target, true);
    let response = &host["response"];
    assert_eq!(response["kind"], "echo");
    assert_eq!(response["payload"], "ping-1");
    assert_eq!(response["health"]["dry_run"], true);
    assert_eq!(response["health"]["privileged"], true);
    assert!(response["health"]["hostname"].is_string());
    assert!(response["health"]["pending"].is_null());

    let doc = lab.lightsout_json(
        &[
            "shutdown",
            &target,
            "--delay",
            "90s",
            "--message",
            "Lab closes",
        ],
        0,
    );
    assert_eq!(doc["command"], "shutdown");
    assert_summary(&doc, 1, 1);
    assert_host_shape(&doc["results"][0], &target, true);
    let response = &doc["results"][0]["response"];
    assert_eq!(response["kind"], "shutdown");
    assert_eq!(response["action"], "shutdown");
    assert_eq!(response["dry_run"], true);
    assert_eq!(response["delay_secs"], 90);
    assert_eq!(response["agent_wait_secs"], 30);
    assert_eq!(response["message"], "Lab closes");
    assert_eq!(
        response["argv"],
        json!(["shutdown", "-h", "+1", "Lab closes"])
    );
    assert!(
        response["due_unix"]
            .as_u64()
            .is_some_and(|t| t > 1_600_000_000)
    );

    let doc = lab.lightsout_json(&["restart", &target], 0);
    assert_eq!(doc["command"], "restart");
    let response = &doc["results"][0]["response"];
    assert_eq!(response["kind"], "restart");
    assert_eq!(response["action"], "restart");
    assert_eq!(response["dry_run"], true);
    assert_eq!(response["agent_wait_secs"], 0);
    assert_eq!(response["argv"], json!(["shutdown", "-r", "now"]));

    let doc = lab.lightsout_json(&["cancel", &target], 0);
    assert_eq!(doc["command"], "cancel");
    assert_summary(&doc, 1, 1);
    let response = &doc["results"][0]["response"];
    assert_eq!(response["kind"], "cancel");
    assert_eq!(response["dry_run"], true);
    assert_eq!(response["argv"], json!(["shutdown", "-c"]));
    assert!(
        response["cancelled"].is_null(),
        "a rehearsal schedules nothing"
    );

    // Rehearsals left nothing pending.
    let doc = lab.lightsout_json(&["echo", &target], 0);
    assert!(doc["results"][0]["response"]["health"]["pending"].is_null());
}

#[test]
fn every_command_as_a_table_against_a_dry_run_agent() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let target = agent.target();
    for (args, detail) in [
        (vec!["echo", &target, "--payload", "hi"], "\"hi\" from "),
        (
            vec!["shutdown", &target, "--delay", "5m", "--message", "Bye now"],
            "dry run: shutdown in 5m; would run `shutdown -h +5 'Bye now'`",
        ),
        (
            vec!["restart", &target, "--delay", "61"],
            "after the agent waits 1s, would run `shutdown -r +1`",
        ),
        (vec!["cancel", &target], "would run `shutdown -c`"),
    ] {
        let run = lab.lightsout(&args);
        assert_eq!(run.code, Some(0), "{args:?}: {run:?}");
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 3, "header, one row, summary: {run:?}");
        assert!(lines[0].starts_with("HOST"), "{run:?}");
        assert!(lines[1].starts_with(&target), "{run:?}");
        assert!(lines[1].contains(" ok "), "{run:?}");
        assert!(lines[1].contains(detail), "{args:?}: {:?}", lines[1]);
        assert_eq!(lines[2], "1 ok, 0 failed");
    }
}

#[test]
fn an_unreachable_host_among_reachable_ones_fails_alone_with_exit_1() {
    let lab = Lab::new();
    let a = AgentProcess::start(&lab, &["--dry-run"]);
    let b = AgentProcess::start(&lab, &["--dry-run"]);
    let closed = format!("127.0.0.1:{}", closed_port());
    let targets = [a.target(), closed.clone(), b.target()];

    let mut args = vec!["echo"];
    args.extend(targets.iter().map(String::as_str));
    let doc = lab.lightsout_json(&args, 1);
    assert_summary(&doc, 3, 2);
    let results = doc["results"].as_array().unwrap();
    // One row per host, in the order given.
    assert_host_shape(&results[0], &targets[0], true);
    assert_host_shape(&results[1], &closed, false);
    assert_host_shape(&results[2], &targets[2], true);
    assert_eq!(results[1]["error"]["kind"], "connection_refused");
    assert_eq!(results[1]["error"]["source"], "controller");

    let run = lab.lightsout(&args);
    assert_eq!(run.code, Some(1), "{run:?}");
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&closed))
        .unwrap_or_else(|| panic!("no row for {closed}: {run:?}"));
    assert!(
        row.contains("FAILED") && row.contains("connection refused"),
        "{row}"
    );
    assert!(run.stdout.ends_with("2 ok, 1 failed\n"), "{run:?}");
}

#[test]
fn usage_errors_exit_2_and_contact_no_host() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let target = agent.target();
    for args in [
        vec!["echo"],
        vec!["shutdown", &target, "--delay", "8d"],
        vec!["shutdown", &target, "--delay", "soon"],
        vec!["restart", &target, "--message=-c"],
        vec!["shutdown", &target, "--message", "bell\u{7}"],
        vec!["echo", &target, "127.0.0.1:0"],
        vec!["echo", &target, "--timeout", "0"],
        vec!["echo", &target, "--timeout", "0ms"],
        vec!["reboot", &target],
    ] {
        let run = lab.lightsout(&[&["--json"], &args[..]].concat());
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        assert!(!run.stderr.is_empty(), "{args:?}: a usage error says why");
    }
    // Nothing reached the agent. (A request would be logged before the controller exits.)
    let run = lab.lightsout(&["echo", &target]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let logs = agent.wait_for_logs("the final echo", |l| l.contains("request ok"));
    assert_eq!(logs.matches("client connected").count(), 1, "{logs}");
}

#[test]
fn a_controller_of_another_lab_gets_a_tls_error() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let other_lab = Lab::new();
    let doc = other_lab.lightsout_json(&["echo", &agent.target()], 1);
    assert_summary(&doc, 1, 0);
    let host = &doc["results"][0];
    assert_host_shape(host, &agent.target(), false);
    assert_eq!(host["error"]["kind"], "tls", "{host}");
    assert_eq!(host["error"]["source"], "controller");
    assert!(
        host["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not from our CA"),
        "{host}"
    );
}

#[test]
fn a_controller_certificate_from_a_foreign_ca_gets_a_tls_error() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    // Trusts the agent (right CA file), but presents a certificate the agent does not trust:
    // in TLS 1.3 the refusal arrives after the client's side of the handshake is done.
    let foreign = lab.foreign(CertKind::Controller, "mallory");
    let ca = lab.home.ca_cert();
    let doc = lab.lightsout_json(
        &[
            "--ca",
            ca.to_str().unwrap(),
            "--cert",
            foreign.cert.to_str().unwrap(),
            "--key",
            foreign.key.to_str().unwrap(),
            "echo",
            &agent.target(),
        ],
        1,
    );
    let host = &doc["results"][0];
    assert_host_shape(host, &agent.target(), false);
    assert_eq!(host["error"]["kind"], "tls", "{host}");
    assert!(
        host["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused our certificate"),
        "{host}"
    );
}

#[test]
fn tls_name_must_match_the_agent_certificate() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let target = agent.target();
    let doc = lab.lightsout_json(&["--tls-name", "lab-99.example", "echo", &target], 1);
    let host = &doc["results"][0];
    assert_eq!(host["error"]["kind"], "tls", "{host}");
    assert!(
        host["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{host}"
    );
    // A name the certificate does carry works, whatever address was dialled.
    let doc = lab.lightsout_json(&["--tls-name", "localhost", "echo", &target], 0);
    assert_eq!(doc["results"][0]["ok"], true);
}

#[test]
fn a_host_that_never_answers_times_out_at_the_deadline() {
    let lab = Lab::new();
    // Accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || {
        let (conn, _) = silent.accept().unwrap();
        conn
    });
    let agent = AgentProcess::start(&lab, &["--dry-run"]);

    let run = lab.lightsout(&[
        "--json",
        "--timeout",
        "500ms",
        "echo",
        &target,
        &agent.target(),
    ]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.elapsed < Duration::from_secs(5),
        "took {:?}",
        run.elapsed
    );
    let doc = run.json();
    let host = &doc["results"][0];
    assert_host_shape(host, &target, false);
    assert_eq!(host["error"]["kind"], "timeout", "{host}");
    assert!(
        host["elapsed_ms"].as_f64().unwrap() >= 500.0,
        "gave up before the deadline: {host}"
    );
    assert!(
        host["error"]["message"].as_str().unwrap().contains("500ms"),
        "{host}"
    );
    // The other host is not held up by the silent one.
    assert_eq!(doc["results"][1]["ok"], true, "{doc}");
    assert!(holder.join().is_ok(), "the controller did connect");
}

/// A wide fan-out must not run out of file descriptors under the usual soft limit: the
/// controller raises its own soft limit (up to the hard one) to fit `--parallel`.
#[test]
fn a_wide_fan_out_fits_under_a_low_soft_open_files_limit() {
    let lab = Lab::new();
    // One agent standing for 300 hosts, reached on 300 loopback addresses (it listens on
    // every address; only 127.0.0.0/8 is dialled): lift its per-address handshake cap and its
    // per-address and per-certificate connection caps.
    let agent = AgentProcess::start(
        &lab,
        &[
            "--dry-run",
            "--listen",
            "0.0.0.0:0",
            "--max-handshakes-per-ip",
            "1000",
            "--max-connections-per-ip",
            "1000",
            "--max-connections-per-cert",
            "1000",
        ],
    );
    let port = agent.addr.port();
    let targets: Vec<String> = (0..300)
        .map(|i| format!("127.0.{}.{}:{port}", i / 250, i % 250 + 1))
        .collect();
    let script = format!(
        "ulimit -S -n 64 && exec '{}' --json --tls-name localhost --parallel 300 --timeout 20s echo {}",
        lightsout_tests::bin("lightsout").display(),
        targets.join(" ")
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("LIGHTSOUT_HOME", lab.home.dir())
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        doc["summary"]["ok"],
        300,
        "{}",
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ok"] != true)
            .cloned()
            .unwrap_or_default()
    );
    assert_eq!(out.status.code(), Some(0));
}
