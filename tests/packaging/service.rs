//! The packaged agent's files as the service and its administrator see them: the packaged
//! configuration checks out and names the service's home, `sudo lightsout-agent audit tail`
//! reads the service's log, and the logrotate file rotates that log while the agent runs,
//! losing no line.

use std::path::Path;
use std::process::Command;

use lightsout_tests::{AgentProcess, Lab, have, poll, skip_missing};

use crate::{Installed, beside, can_pose_as_packaged_machine, on_packaged_machine};

/// Installs this machine's bundle into the root, as the README's rollout does (`install -m
/// 600`), for 127.0.0.1 so the lab's controller can reach the agent.
fn install_bundle(lab: &Lab, installed: &Installed) {
    let bundle = installed.path("/etc/lightsout/agent-bundle.pem");
    lab.issue_agent_bundle("lab-01", &bundle);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bundle, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// The packaged agent, started as the unit starts it (`--config /etc/lightsout/agent.toml`)
/// on the packaged machine, in dry-run and on loopback.
fn start_service(installed: &Installed) -> AgentProcess {
    let cmd = on_packaged_machine(installed, &installed.path("/usr/bin/lightsout-agent"));
    // The home the helper passes as LIGHTSOUT_HOME is the configuration's own.
    AgentProcess::start_in(
        Path::new("/var/lib/lightsout"),
        cmd,
        &["--config", "/etc/lightsout/agent.toml", "--dry-run"],
    )
}

/// The installed packages with a bundle and the state directory in place, as after the
/// administrator's installation steps; `None` (having said why) where this cannot run.
fn packaged_machine() -> Option<(Installed, Lab)> {
    let installed = Installed::new()?;
    if !can_pose_as_packaged_machine() {
        return None;
    }
    let lab = Lab::new();
    install_bundle(&lab, &installed);
    installed.make_state_dir();
    Some((installed, lab))
}

/// `lightsout-agent --check-config` on the packaged configuration, as the service runs it.
fn check_packaged_config(installed: &Installed) -> std::process::Output {
    on_packaged_machine(installed, &installed.path("/usr/bin/lightsout-agent"))
        .args(["--check-config", "--config", "/etc/lightsout/agent.toml"])
        .output()
        .unwrap()
}

#[test]
fn packaged_config_checks_out_and_names_the_services_files() {
    let Some((installed, _lab)) = packaged_machine() else {
        return;
    };
    let out = check_packaged_config(&installed);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(stdout.contains("home: /var/lib/lightsout\n"), "{stdout}");
    assert!(
        stdout.contains("audit log: /var/lib/lightsout/audit.jsonl\n"),
        "{stdout}"
    );

    // Before the state directory exists (postinst not run), the audit log cannot be opened:
    // exit 2, naming where the path comes from.
    std::fs::remove_dir_all(installed.path("/var/lib/lightsout")).unwrap();
    let out = check_packaged_config(&installed);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/var/lib/lightsout/audit.jsonl") && stderr.contains("`home`"),
        "{stderr}"
    );
}

#[test]
fn audit_tail_on_a_packaged_machine_reads_the_services_log() {
    let Some((installed, lab)) = packaged_machine() else {
        return;
    };
    let agent = start_service(&installed);
    lab.lightsout(&["echo", &agent.target(), "--payload", "seen-by-tail"])
        .success();
    let log = installed.path("/var/lib/lightsout/audit.jsonl");
    poll("the service's audit line", || {
        Lab::echo_payloads(&log)
            .contains(&"seen-by-tail".to_owned())
            .then_some(())
    });

    // `sudo lightsout-agent audit tail` beside the service: no option, no LIGHTSOUT_HOME
    // (sudo drops it).
    let binary = installed.path("/usr/bin/lightsout-agent");
    let tail = |extra: &[&str]| {
        let mut cmd = beside(agent.child.id(), binary.to_str().unwrap());
        cmd.args(["audit", "tail", "--json"]).args(extra);
        cmd.output().unwrap()
    };
    let out = tail(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("seen-by-tail"), "{stdout}");

    // Told another home, it reads that one's log, not the service's.
    let elsewhere = installed.scratch().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = tail(&["--home", elsewhere.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&elsewhere.join("audit.jsonl").display().to_string()),
        "{stderr}"
    );
}

#[test]
fn logrotate_accepts_the_file_and_a_rotation_loses_no_line() {
    let Some(installed) = Installed::new() else {
        return;
    };
    if !have("logrotate", "--version") {
        skip_missing("logrotate", ".ci/run installs it");
        return;
    }
    let file = installed.path("/etc/logrotate.d/lightsout-agent");
    let scratch = installed.scratch();
    let state = scratch.join("logrotate.state");
    let out = Command::new("logrotate")
        .arg("--debug")
        .arg("--state")
        .arg(&state)
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("error"), "{said}");
    assert!(
        said.contains("/var/lib/lightsout/audit.jsonl"),
        "the file rotates the service's audit log: {said}"
    );

    if !can_pose_as_packaged_machine() {
        return;
    }
    // The real thing, on the packaged machine: the service runs, logrotate rotates its log
    // and runs the file's postrotate, whose `systemctl reload lightsout-agent` is a stand-in
    // doing what the unit's ExecReload does (SIGHUP to the agent).
    let lab = Lab::new();
    install_bundle(&lab, &installed);
    installed.make_state_dir();
    let agent = start_service(&installed);
    let log = installed.path("/var/lib/lightsout/audit.jsonl");
    let echo = |payload: &str| {
        lab.lightsout(&["echo", &agent.target(), "--payload", payload])
            .success();
    };
    echo("before");
    poll("the first line", || {
        Lab::echo_payloads(&log)
            .contains(&"before".to_owned())
            .then_some(())
    });
    let bin = scratch.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = scratch.join("systemctl-calls");
    let systemctl = bin.join("systemctl");
    std::fs::write(
        &systemctl,
        format!(
            "#!/bin/sh\necho \"$*\" >>'{}'\n[ \"$1 $2\" = 'reload lightsout-agent.service' ] && exec kill -HUP {}\nexit 1\n",
            calls.display(),
            agent.child.id()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // In the agent's own mount namespace, where /var/lib/lightsout is the service's.
    let search = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = beside(agent.child.id(), "logrotate")
        .args(["--force", "--state"])
        .arg(&state)
        .arg("/etc/logrotate.d/lightsout-agent")
        .env("PATH", search)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "logrotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap().trim(),
        "reload lightsout-agent.service"
    );
    agent.wait_for_logs("the reopen on SIGHUP", |l| {
        l.contains("audit log is reopened")
    });
    echo("after");
    poll("the line after the rotation", || {
        Lab::echo_payloads(&log)
            .contains(&"after".to_owned())
            .then_some(())
    });
    let rotated = installed.path("/var/lib/lightsout/audit.jsonl.1");
    assert_eq!(
        Lab::echo_payloads(&rotated),
        ["before"],
        "the rotated file keeps its line"
    );
    assert_eq!(
        Lab::echo_payloads(&log),
        ["after"],
        "the new file gets the new lines"
    );
}
