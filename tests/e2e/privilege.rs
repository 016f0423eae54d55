//! An agent without root: power requests are refused with `not_privileged` (rehearsals too,
//! so a rehearsal fails where the real thing would) and nothing runs; echo still works.

use std::path::{Path, PathBuf};
use std::process::Command;

use lightsout_tests::{AgentProcess, Lab, PATIENCE, bin, log_lines, running_as_root, stand_in_at};

/// uid/gid of `nobody`.
const NOBODY: u32 = 65534;

/// Copies the agent's files and a stand-in into a directory owned by `nobody`, so an agent
/// running as `nobody` can read its key and reach its power command.
fn nobody_dir(lab: &Lab) -> (tempfile::TempDir, [PathBuf; 3], PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path, name: &str| {
        let to = dir.path().join(name);
        std::fs::copy(from, &to).unwrap();
        std::os::unix::fs::chown(&to, Some(NOBODY), Some(NOBODY)).unwrap();
        to
    };
    let files = [
        copy(&lab.home.ca_cert(), "ca.pem"),
        copy(&lab.home.agent_cert(), "agent.pem"),
        copy(&lab.home.agent_key(), "agent-key.pem"),
    ];
    let (script, log) = stand_in_at(dir.path(), "standin", 0);
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    (dir, files, script, log)
}

#[test]
fn an_unprivileged_agent_refuses_power_actions_and_runs_nothing() {
    let lab = Lab::new();
    let (_dir, [ca, cert, key], script, log) = nobody_dir(&lab);
    let (command, expected_uid) = if running_as_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin("lightsout-agent"));
        (cmd, NOBODY)
    } else {
        // Not root: the agent is unprivileged as it is.
        (
            Command::new(bin("lightsout-agent")),
            rustix::process::geteuid().as_raw(),
        )
    };
    let path = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let (ca, cert, key, script) = (path(&ca), path(&cert), path(&key), path(&script));
    // Not dry-run: the real execution path, with the stand-in as the power command.
    let mut agent = AgentProcess::start_cmd(
        &lab,
        command,
        &[
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "--power-command",
            &script,
        ],
    );
    let target = agent.target();

    let doc = lab.lightsout_json(&["echo", &target], 0);
    let health = &doc["results"][0]["response"]["health"];
    assert_eq!(health["privileged"], false, "{health}");
    assert_eq!(health["dry_run"], false, "{health}");

    for args in [
        vec!["shutdown", &target],
        vec!["restart", &target, "--delay", "5m"],
        vec!["cancel", &target],
        vec!["shutdown", &target, "--dry-run"],
        vec!["cancel", &target, "--dry-run"],
    ] {
        let doc = lab.lightsout_json(&args, 1);
        let host = &doc["results"][0];
        assert_eq!(host["ok"], false, "{args:?}");
        assert_eq!(host["error"]["kind"], "not_privileged", "{args:?}: {host}");
        assert_eq!(host["error"]["source"], "agent");
        let message = host["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("uid {expected_uid}")),
            "{args:?}: {message}"
        );
    }

    let doc = lab.lightsout_json(&["echo", &target], 0);
    let health = &doc["results"][0]["response"]["health"];
    assert!(health["pending"].is_null(), "{health}");
    assert!(health["last_action"].is_null(), "{health}");
    let status = agent
        .terminate(PATIENCE)
        .expect("the agent stops on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", agent.logs());
    assert!(
        log_lines(&log).is_empty(),
        "the stand-in ran: {:?}",
        log_lines(&log)
    );
}
