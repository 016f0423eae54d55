//! The README's rollout on a fresh Debian machine, literally: its lab-machine block (`dpkg -i`,
//! `install -m 600`, `--check-config`, `systemctl enable --now`) and its CRL installation
//! (`install-crl`: `install`, `systemctl reload`), run as root inside the VM with only the
//! files the README says to copy over. Then the package's life: an action audited before it
//! runs, an upgrade to a newer build (maintainer scripts), the logrotate file, removal.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lightsout_tests::debs;
use lightsout_tests::readme::procedure_text;

use crate::scene::{self, Scene, read, timing};

/// The machine's name in the README's example.
const MACHINE: &str = "lab-01";

pub fn rollout(release: &str) {
    let Some(debs) = debs::debs() else {
        return;
    };
    let block = lab_machine_block();
    let deb_name = debs
        .agent
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut upgrade_name = String::new();
    let Some(mut s) = scene::boot(release, "rollout", false, |lab, seed| {
        let bundle = lab.dir.path().join(format!("{MACHINE}.pem"));
        lab.issue_agent_bundle(MACHINE, &bundle);
        seed.file(&format!("{MACHINE}.pem"), &read(&bundle));
        seed.file(&deb_name, &read(&debs.agent));
        let newer = newer_build(&debs.agent, lab.dir.path());
        upgrade_name = newer.file_name().unwrap().to_string_lossy().into_owned();
        seed.file(&format!("upgrade/{upgrade_name}"), &read(&newer));
        seed.file("rollout-lab-machine.sh", block.as_bytes());
    }) else {
        return;
    };
    let started = Instant::now();
    // What the administrator carried over: the package and this machine's bundle.
    s.vm.sh(&format!(
        "mkdir -p /root/rollout && cp /run/vmtest-seed/{deb_name} /run/vmtest-seed/{MACHINE}.pem /root/rollout/"
    ));
    let (status, out) = s.vm.run_with(
        "cd /root/rollout && sh -e -x /run/vmtest-seed/rollout-lab-machine.sh",
        Duration::from_secs(300),
    );
    assert_eq!(
        status, 0,
        "the README's lab-machine block failed inside the VM:\n{block}\n{out}"
    );
    s.wait_echo();
    timing(
        &s.release,
        "rollout: README block to first echo",
        started.elapsed(),
    );
    let health = s.health();
    assert_eq!(health["privileged"], true, "{health}");
    assert_eq!(health["dry_run"], false, "{health}");
    let mode = s.vm.sh("stat -c %a /etc/lightsout/agent-bundle.pem");
    assert_eq!(mode.trim(), "600");
    started_once(&mut s);

    revocation(&mut s);
    audited_before_it_runs(&mut s);
    upgrade(&mut s, &upgrade_name);
    rotate(&mut s);
    remove(&mut s);
    timing(
        &s.release,
        "rollout: whole scenario after boot",
        started.elapsed(),
    );
    s.finish();
}

/// The README's block for each lab machine: after its `rollout-lab-machine` marker, or (on a
/// README without markers) the second `sh` block under "Rolling out to a lab (Linux)".
fn lab_machine_block() -> String {
    let readme = std::fs::read_to_string(debs::repo().join("README.md")).unwrap();
    if readme.contains("<!-- procedure: rollout-lab-machine -->") {
        return procedure_text("rollout-lab-machine");
    }
    let section = readme
        .split_once("## Rolling out to a lab (Linux)")
        .expect("README.md has no section \"Rolling out to a lab (Linux)\"")
        .1;
    let block = section
        .split("```sh\n")
        .nth(2)
        .expect("\"Rolling out to a lab (Linux)\" has no second sh block");
    let block = block.split_once("\n```").unwrap().0.to_owned() + "\n";
    assert!(
        block.contains("dpkg -i") && block.contains("agent-bundle.pem"),
        "the second sh block of \"Rolling out to a lab (Linux)\" is not the lab machine's:\n{block}"
    );
    block
}

/// The same package with a higher version (`VERSION+vmtest1`): an upgrade as `dpkg` sees it.
fn newer_build(deb: &Path, dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("newer-deb");
    let status = Command::new("dpkg-deb")
        .arg("-R")
        .arg(deb)
        .arg(&tree)
        .status()
        .unwrap();
    assert!(status.success(), "dpkg-deb -R {}", deb.display());
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap()
        .to_owned();
    let newer = format!("{version}+vmtest1");
    std::fs::write(
        &control,
        text.replace(&format!("Version: {version}"), &format!("Version: {newer}")),
    )
    .unwrap();
    let out = dir.join(format!("lightsout-agent_{newer}_amd64.deb"));
    let run = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "dpkg-deb -b: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

/// The package's install started nothing (the bundle was not there yet): the unit's journal
/// has one start, the README's `systemctl enable --now`, and no failed one.
fn started_once(s: &mut Scene) {
    let journal =
        s.vm.sh("journalctl --no-pager -o cat -u lightsout-agent.service");
    let starts = journal
        .lines()
        .filter(|l| l.starts_with("Started "))
        .count();
    let failed = journal
        .lines()
        .any(|l| l.contains("Failed") || l.contains("failed"));
    s.findings.check(
        starts == 1 && !failed,
        &format!(
            "the agent was started before its bundle was installed (dpkg -i must start \
             nothing): {starts} start(s) in the journal:\n{journal}"
        ),
    );
}

/// A controller certificate revoked on the CA machine is refused by the agent once the
/// README's `install-crl` has run inside the VM; the administrator's is not.
fn revocation(s: &mut Scene) {
    let old = s.lab.issue_with_cli("old-laptop", "admin");
    let echo_as = |s: &Scene, files| {
        let mut cmd = s.lab.controller_cmd_as(files);
        cmd.args(["--timeout", "10s", "echo", &s.target()]);
        lightsout_tests::Run::of(&mut cmd)
    };
    assert_eq!(
        echo_as(s, &old).code,
        Some(0),
        "the new controller certificate is refused"
    );
    s.lab.lightsout(&["pki", "revoke", "old-laptop"]).success();
    let crl = read(&s.lab.home.dir().join("crl.pem"));
    s.put("/root/rollout/crl.pem", &crl);
    let script = procedure_text("install-crl");
    let (status, out) = s.vm.run(&format!(
        "cd /root/rollout && sh -e -x -c '{}'",
        script.replace('\'', "'\\''")
    ));
    assert_eq!(
        status, 0,
        "the README's install-crl failed inside the VM:\n{script}\n{out}"
    );
    let run = echo_as(s, &old);
    s.findings.check(
        run.code != Some(0),
        &format!("after install-crl the revoked controller is still served: {run:?}"),
    );
    let (run, _) = s.host(&["echo"]);
    assert_eq!(
        run.code,
        Some(0),
        "after install-crl the administrator is refused: {run:?}"
    );
}

/// A delayed shutdown and its cancel: each request's line is in the audit log, and the
/// execution line of the command after it.
fn audited_before_it_runs(s: &mut Scene) {
    let (run, shutdown) = s.host(&[
        "shutdown",
        "--delay",
        "61s",
        "--message",
        "vm-suite rollout",
    ]);
    assert_eq!(run.code, Some(0), "shutdown --delay 61s: {run:?}");
    s.wait_scheduled();
    let (run, cancel) = s.host(&["cancel"]);
    assert_eq!(run.code, Some(0), "cancel: {run:?}");
    s.rescue("rollout cancel");
    let audit = s.audit();
    for host in [&shutdown, &cancel] {
        let id = host["request_id"].as_str().unwrap();
        let lines: Vec<&serde_json::Value> =
            audit.iter().filter(|l| l["request_id"] == id).collect();
        let request = lines.iter().position(|l| l["event"] == "request");
        let execution = lines.iter().position(|l| l["event"] == "execution");
        assert!(
            request.is_some(),
            "no audit request line for {id}: {audit:?}"
        );
        s.findings.check(
            execution.is_some_and(|e| Some(e) > request),
            &format!("no execution line after the request line for {id}: {lines:?}"),
        );
    }
}

/// `dpkg -i` of a newer build: the unit is reloaded and the agent restarted on the new
/// version (maintainer scripts), still serving.
fn upgrade(s: &mut Scene, upgrade_name: &str) {
    let pid_before = s.vm.sh("systemctl show -p MainPID --value lightsout-agent");
    // dpkg (unpack, maintainer scripts, the restart) takes well over a minute when the host
    // is loaded.
    let (status, out) = s.vm.run_with(
        &format!("dpkg -i /run/vmtest-seed/upgrade/{upgrade_name} 2>&1"),
        Duration::from_secs(300),
    );
    assert_eq!(status, 0, "dpkg -i of the newer build failed:\n{out}");
    let version = s.vm.sh("dpkg-query -W -f '${Version}' lightsout-agent");
    assert!(
        version.ends_with("+vmtest1"),
        "after the upgrade dpkg has {version}:\n{out}"
    );
    let pid_after = s.vm.sh("systemctl show -p MainPID --value lightsout-agent");
    s.findings.check(
        pid_after.trim() != pid_before.trim() && pid_after.trim() != "0",
        &format!(
            "the upgrade did not restart the agent (MainPID {} → {})",
            pid_before.trim(),
            pid_after.trim()
        ),
    );
    let reload =
        s.vm.sh("systemctl show -p NeedDaemonReload --value lightsout-agent");
    s.findings.check(
        reload.trim() == "no",
        "after the upgrade systemd still needs a daemon-reload for the unit",
    );
    s.wait_echo();
}

/// The package's logrotate file rotates the audit log and the agent writes on into a fresh
/// file (it reopens on SIGHUP).
fn rotate(s: &mut Scene) {
    let (has, _) = s.vm.run("test -f /etc/logrotate.d/lightsout-agent");
    if has != 0 {
        s.findings
            .miss("the package installs no /etc/logrotate.d/lightsout-agent");
        return;
    }
    let (status, out) = s.vm.run("logrotate -f /etc/logrotate.d/lightsout-agent");
    assert_eq!(status, 0, "logrotate -f: {out}");
    let rotated = s.vm.sh("ls /var/lib/lightsout/");
    s.findings.check(
        rotated.lines().any(|l| l.starts_with("audit.jsonl.")),
        &format!("logrotate left no rotated audit log: {rotated}"),
    );
    s.health();
    let (status, fresh) = s.vm.run("cat /var/lib/lightsout/audit.jsonl");
    s.findings.check(
        status == 0 && fresh.lines().any(|l| l.contains("\"request\"")),
        &format!("after rotation the agent does not write into a fresh audit.jsonl: {fresh}"),
    );
}

/// `dpkg -r`: the agent is stopped and no longer answers.
fn remove(s: &mut Scene) {
    let (status, out) =
        s.vm.run_with("dpkg -r lightsout-agent 2>&1", Duration::from_secs(300));
    assert_eq!(status, 0, "dpkg -r failed:\n{out}");
    let (active, state) = s.vm.run("systemctl is-active lightsout-agent");
    s.findings.check(
        active != 0,
        &format!(
            "after dpkg -r the agent still runs ({}):\n{out}",
            state.trim()
        ),
    );
    let (run, _) = s.host(&["echo"]);
    s.findings
        .check(run.code != Some(0), "after dpkg -r the agent still answers");
}
