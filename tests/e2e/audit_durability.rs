//! The audit log under stress: a full disk, damaged lines, and power actions whose outcome
//! must be on record.
//!
//! The full disk is real: a 64 KiB tmpfs mounted in a private mount namespace that only the
//! agent sees (`unshare --mount`); the test reaches it through `/proc/PID/root`. Mounting
//! needs root: elsewhere these tests print `SKIP: reason`, and fail under `CI=true`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use lightsout_tests::{AgentProcess, Lab, bin, running_as_root};
use serde_json::Value;

/// Where the agent's private tmpfs is mounted, as the agent sees it.
fn mount_point(lab: &Lab) -> PathBuf {
    let dir = lab.dir.path().join("small-disk");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Why a tmpfs cannot be mounted here, if it cannot.
fn cannot_mount(dir: &Path) -> Option<String> {
    if !running_as_root() {
        return Some("mounting a tmpfs needs root".into());
    }
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .args(["mount", "-t", "tmpfs", "-o", "size=64k", "lightsout-test"])
        .arg(dir)
        .output();
    match out {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "unshare --mount + mount tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

/// Prints `SKIP: reason` and returns true, unless under `CI=true`, where skipping fails.
fn skip(reason: &str) -> bool {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "this test must run under CI=true: {reason}"
    );
    eprintln!("SKIP: {reason}");
    true
}

/// An agent in its own mount namespace with a 64 KiB tmpfs at `dir`; `args` as for
/// [`AgentProcess::start`].
fn agent_on_small_disk(lab: &Lab, dir: &Path, args: &[&str]) -> AgentProcess {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=64k lightsout-test "$0" && exec "$@""#)
        .arg(dir)
        .arg(bin("lightsout-agent"));
    AgentProcess::start_cmd(lab, cmd, args)
}

/// `path` (as the agent sees it) as the test sees it: through the agent's root.
fn seen_by_test(agent: &AgentProcess, path: &Path) -> PathBuf {
    Path::new(&format!("/proc/{}/root", agent.child.id())).join(path.strip_prefix("/").unwrap())
}

/// Fills the file system of `dir` (as the test sees it) until a write fails.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let page = [0u8; 4096];
    loop {
        if let Err(e) = file.write_all(&page) {
            assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
            return filler;
        }
    }
}

/// `lightsout-agent audit tail --json` of `log`: the entries, and what it said on stderr.
fn audit_tail(lab: &Lab, log: &Path) -> (Vec<Value>, String) {
    let out = Command::new(bin("lightsout-agent"))
        .env("LIGHTSOUT_HOME", lab.home.dir())
        .args(["audit", "tail", "--json", "-n", "1000", "--audit-log"])
        .arg(log)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "audit tail failed: {stderr}");
    let entries = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (entries, stderr)
}

#[test]
fn a_full_disk_never_tears_the_line_of_a_later_power_action() {
    let lab = Lab::new();
    let dir = mount_point(&lab);
    if let Some(reason) = cannot_mount(&dir) {
        skip(&reason);
        return;
    }
    let (stand_in, _) = lab.stand_in("standin", 0);
    let audit = dir.join("audit.jsonl");
    let agent = agent_on_small_disk(
        &lab,
        &dir,
        &[
            "--power-command",
            stand_in.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    );
    let target = agent.target();
    let log = seen_by_test(&agent, &audit);
    lab.lightsout_json(&["echo", &target], 0);
    let filler = fill(&seen_by_test(&agent, &dir));

    // Echo lines fill the audit file's last page, until one does not fit: the disk is full.
    let mut failed = false;
    for _ in 0..64 {
        let before = std::fs::metadata(&log).unwrap().len();
        lab.lightsout_json(&["echo", &target], 0);
        let text = std::fs::read(&log).unwrap();
        assert_eq!(
            text.last(),
            Some(&b'\n'),
            "a failed append leaves no fragment behind"
        );
        if text.len() as u64 == before {
            failed = true;
            break;
        }
    }
    assert!(failed, "the disk never filled up");

    // Space again: the next power action's line is whole and readable.
    std::fs::remove_file(filler).unwrap();
    let doc = lab.lightsout_json(
        &["shutdown", &target, "--include-self", "--delay", "10m"],
        0,
    );
    let id = doc["results"][0]["request_id"].as_str().unwrap().to_owned();
    let (entries, stderr) = audit_tail(&lab, &log);
    assert!(!stderr.contains("damaged"), "{stderr}");
    assert!(
        entries
            .iter()
            .any(|e| e["request_id"] == id.as_str() && e["decision"] == "allowed"),
        "the shutdown's line is readable: {entries:#?}"
    );
}

#[test]
fn audit_tail_reports_and_skips_a_damaged_line() {
    let lab = Lab::new();
    let log = lab.dir.path().join("audit.jsonl");
    let good = |id: &str| {
        format!(
            r#"{{"ts":"2024-01-01T00:00:00Z","event":"request","request_id":"{id}","peer":"127.0.0.1:1","dry_run":false,"decision":"allowed","outcome":"ok","duration_us":1}}"#
        )
    };
    // A line torn inside a multi-byte character (not UTF-8), then one glued to a fragment.
    let mut bytes = format!("{}\n", good("first")).into_bytes();
    bytes.extend_from_slice(b"{\"ts\":\"2024-01-01T00:00:00Z\",\"reason\":\"\xe2\x80\n");
    bytes.extend_from_slice(format!("{{\"ts\":\"20{}\n", good("glued")).as_bytes());
    bytes.extend_from_slice(format!("{}\n", good("last")).as_bytes());
    std::fs::write(&log, bytes).unwrap();

    let (entries, stderr) = audit_tail(&lab, &log);
    let ids: Vec<_> = entries.iter().map(|e| e["request_id"].clone()).collect();
    assert_eq!(ids, ["first", "last"], "{stderr}");
    assert!(
        stderr.contains("line 2 is damaged") && stderr.contains("line 3 is damaged"),
        "{stderr}"
    );
}

#[test]
fn audit_tail_into_a_closed_pipe_ends_quietly() {
    let lab = Lab::new();
    let log = lab.dir.path().join("audit.jsonl");
    let line = r#"{"ts":"2024-01-01T00:00:00Z","event":"request","peer":"127.0.0.1:1","dry_run":false,"decision":"allowed","outcome":"ok","duration_us":1}"#;
    std::fs::write(&log, format!("{line}\n").repeat(5000)).unwrap();
    // `head -1` goes away after one line: the agent meets a broken pipe, as `| head` does.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' audit tail -n 5000 --audit-log '{}' | head -1; exit ${{PIPESTATUS:-0}}",
            bin("lightsout-agent").display(),
            log.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let status = Command::new(bin("lightsout-agent"))
        .args(["audit", "tail", "-n", "5000", "--audit-log"])
        .arg(&log)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            drop(child.stdout.take());
            child.wait()
        })
        .unwrap();
    assert!(
        status.success(),
        "a closed pipe is a normal end: {status:?}"
    );
}

/// The audit log's lines, parsed (every one must be readable).
fn audit_lines(log: &Path) -> Vec<Value> {
    match std::fs::read_to_string(log) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", log.display()),
    }
}

/// The `execution` lines of request `id`.
fn executions(log: &Path, id: &str) -> Vec<Value> {
    audit_lines(log)
        .into_iter()
        .filter(|l| l["event"] == "execution" && l["request_id"] == id)
        .collect()
}

/// Sends `args` (a shutdown or restart) and returns the request id.
fn accepted(lab: &Lab, args: &[&str]) -> String {
    let doc = lab.lightsout_json(args, 0);
    doc["results"][0]["request_id"].as_str().unwrap().to_owned()
}

/// A non-dry-run agent running `stand_in`, with its audit log at `log` and `more` arguments.
fn stand_in_agent(lab: &Lab, stand_in: &Path, log: &Path, more: &[&str]) -> AgentProcess {
    let args = [
        &[
            "--power-command",
            stand_in.to_str().unwrap(),
            "--audit-log",
            log.to_str().unwrap(),
        ],
        more,
    ]
    .concat();
    AgentProcess::start(lab, &args)
}

#[test]
fn every_execution_is_audited_with_its_outcome() {
    let lab = Lab::new();
    let (works, _) = lab.stand_in("works", 0);
    let (fails, _) = lab.stand_in("fails", 3);
    let cannot_run = lab.dir.path().join("not-executable");
    std::fs::write(&cannot_run, "not a program").unwrap();
    for (name, stand_in, outcome, exit_code, reason) in [
        ("works", works, "ok", Value::from(0), None),
        ("fails", fails, "failed", Value::from(3), Some("failed")),
        (
            "cannot-run",
            cannot_run,
            "failed",
            Value::Null,
            Some("cannot run"),
        ),
    ] {
        let log = lab.dir.path().join(format!("{name}-audit.jsonl"));
        let agent = stand_in_agent(&lab, &stand_in, &log, &[]);
        let id = accepted(&lab, &["restart", &agent.target(), "--delay", "5m"]);
        let line = lightsout_tests::poll(&format!("the execution line of {name}"), || {
            executions(&log, &id).pop()
        });
        assert_eq!(line["outcome"], outcome, "{name}: {line}");
        assert_eq!(line["exit_code"], exit_code, "{name}: {line}");
        assert_eq!(line["kind"], "restart", "{name}: {line}");
        assert_eq!(
            line["argv"],
            serde_json::json!(["shutdown", "-r", "+5"]),
            "{name}: {line}"
        );
        match reason {
            Some(r) => assert!(
                line["reason"].as_str().unwrap().contains(r),
                "{name}: {line}"
            ),
            None => assert!(line["reason"].is_null(), "{name}: {line}"),
        }
    }
}

#[test]
fn an_action_that_took_the_machine_down_is_audited_at_the_next_start() {
    let lab = Lab::new();
    let log = lab.dir.path().join("audit.jsonl");
    let (works, _) = lab.stand_in("works", 0);
    let (fails, _) = lab.stand_in("fails", 1);
    let took_down = |log: &Path| -> Vec<Value> {
        audit_lines(log)
            .into_iter()
            .filter(|l| {
                l["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("took the machine down"))
            })
            .collect()
    };
    // Starts an agent in boot `boot`; an answered echo means its start-up is done.
    let boot = |stand_in: &Path, boot: &str| {
        let agent = stand_in_agent(&lab, stand_in, &log, &["--fake-boot-id", boot]);
        lab.lightsout_json(&["echo", &agent.target()], 0);
        agent
    };
    let stop = |mut agent: AgentProcess| {
        assert!(agent.terminate(lightsout_tests::PATIENCE).is_some());
    };

    // A failed command did not take the machine down: a later boot says nothing of it.
    let agent = boot(&fails, "boot-a");
    let failed = accepted(&lab, &["shutdown", &agent.target(), "--include-self"]);
    lightsout_tests::poll("the failed execution", || executions(&log, &failed).pop());
    stop(agent);
    stop(boot(&works, "boot-b"));
    assert_eq!(took_down(&log), Vec::<Value>::new());

    // A command that worked: the same boot says nothing yet, the next one says it all, once.
    let agent = boot(&works, "boot-b");
    let id = accepted(&lab, &["restart", &agent.target()]);
    lightsout_tests::poll("the execution", || executions(&log, &id).pop());
    stop(agent);
    stop(boot(&works, "boot-b"));
    assert_eq!(took_down(&log), Vec::<Value>::new());
    stop(boot(&works, "boot-c"));
    stop(boot(&works, "boot-d"));
    let lines = took_down(&log);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["event"], "execution");
    assert_eq!(lines[0]["request_id"], id.as_str());
    assert_eq!(lines[0]["kind"], "restart");
    assert_eq!(
        lines[0]["reason"],
        format!("request {id} took the machine down (boot id boot-b → boot-c)")
    );
}

#[test]
fn cancel_is_audited_before_it_runs() {
    let lab = Lab::new();
    let log = lab.dir.path().join("audit.jsonl");
    // The stand-in notes whether the cancel's line was on disk when it ran.
    let seen = lab.dir.path().join("seen.log");
    let stand_in = lab.dir.path().join("checks-audit");
    std::fs::write(
        &stand_in,
        format!(
            "#!/bin/sh\nif grep -q '\"kind\":\"cancel\"' '{log}'; then echo \"$* audited\"; else echo \"$* not audited\"; fi >> '{seen}'\n",
            log = log.display(),
            seen = seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &stand_in,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let agent = stand_in_agent(&lab, &stand_in, &log, &[]);
    let doc = lab.lightsout_json(&["cancel", &agent.target()], 0);
    assert!(
        doc["results"][0]["response"]["audit_missing"].is_null(),
        "{doc}"
    );
    assert_eq!(lightsout_tests::log_lines(&seen), ["-c audited"]);
}

#[test]
fn cancel_runs_when_the_audit_log_cannot_be_written_and_says_so() {
    let lab = Lab::new();
    let (stand_in, ran) = lab.stand_in("standin", 0);
    // /dev/full accepts the open and fails every write with ENOSPC: a full disk.
    let agent = stand_in_agent(&lab, &stand_in, Path::new("/dev/full"), &[]);
    let doc = lab.lightsout_json(&["cancel", &agent.target()], 0);
    let missing = doc["results"][0]["response"]["audit_missing"]
        .as_str()
        .unwrap_or_else(|| panic!("the reply says the line is missing: {doc}"));
    assert!(missing.contains("/dev/full"), "{missing}");
    assert_eq!(lightsout_tests::log_lines(&ran), ["-c"], "the cancel ran");
    let text = lab.lightsout(&["cancel", &agent.target()]).success();
    assert!(
        format!("{text:?}").contains("audit line is missing"),
        "{text:?}"
    );
}
