//! Keys and certificates over a lab's years: the home directory's rules, second controllers,
//! key modes, expiry, `pki` bookkeeping, renewal and rotation, the CA's backup. The README's
//! procedures are run as written ([`procedure`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lightsout_pki::load::CertInfo;
use lightsout_pki::{CertKind, IssueOptions};
use lightsout_tests::{AgentProcess, Lab, Machine, Run, agent_command, bin, poll, procedure};

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn agent_check_config(home: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(bin("lightsout-agent"));
    cmd.env("LIGHTSOUT_HOME", home)
        .env_remove("LIGHTSOUT_CONFIG")
        .env_remove("RUST_LOG")
        .arg("--check-config")
        .args(args);
    Run::of(&mut cmd)
}

/// A bundle for an agent named `lab-01` (127.0.0.1), from the lab's CA, starting `days_ago`
/// days ago and lasting `days`.
fn agent_bundle(lab: &Lab, days_ago: i64, days: u32) -> PathBuf {
    let mut opts = IssueOptions::new(CertKind::Agent, "lab-01");
    opts.ips = vec!["127.0.0.1".parse().unwrap()];
    opts.validity_days = days;
    // Backdated an hour, as `pki issue` does: ten days from now show as 9 whole days left.
    opts.not_before = Some(
        time::OffsetDateTime::now_utc() - time::Duration::days(days_ago) - time::Duration::hours(1),
    );
    let issued = lab.ca.issue(&opts).unwrap();
    let path = lab.dir.path().join(format!("lab-01-{days_ago}-{days}.pem"));
    issued.write_bundle(&path, lab.ca.cert_pem()).unwrap();
    path
}

#[test]
fn a_home_that_lost_ca_pem_is_refused_and_its_ca_key_kept() {
    let lab = Lab::new();
    let key = std::fs::read(lab.home.ca_key()).unwrap();
    std::fs::remove_file(lab.home.ca_cert()).unwrap();

    let run = lab.lightsout(&["echo", "127.0.0.1:1"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("ca.pem") && run.stderr.contains("nothing was changed"),
        "{run:?}"
    );
    let run = agent_check_config(lab.home.dir(), &["--dry-run"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("ca.pem"), "{run:?}");
    let run = lab.lightsout(&["pki", "init"]);
    assert_eq!(run.code, Some(2), "{run:?}");

    assert_eq!(
        std::fs::read(lab.home.ca_key()).unwrap(),
        key,
        "CA key kept"
    );
    assert!(!lab.home.ca_cert().exists(), "no new CA");
}

#[test]
fn partial_homes_name_what_is_missing_and_change_nothing() {
    let lab = Lab::new();
    std::fs::remove_file(lab.home.controller_key()).unwrap();
    let before: Vec<_> = std::fs::read_dir(lab.home.dir()).unwrap().collect();
    let run = lab.lightsout(&["echo", "127.0.0.1:1"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("controller-key.pem"), "{run:?}");
    let after: Vec<_> = std::fs::read_dir(lab.home.dir()).unwrap().collect();
    assert_eq!(before.len(), after.len());

    // A CA certificate and nothing else.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(lab.home.ca_cert(), dir.path().join("ca.pem")).unwrap();
    let mut cmd = lab.controller_cmd();
    cmd.env("LIGHTSOUT_HOME", dir.path())
        .args(["echo", "127.0.0.1:1"]);
    let run = Run::of(&mut cmd);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("controller.pem") && run.stderr.contains("pki issue controller"),
        "{run:?}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn an_empty_home_gets_a_new_ca_with_a_one_line_notice() {
    let dir = tempfile::tempdir().unwrap();
    let machine = Machine::at(dir.path());
    let run = machine.lightsout(&["echo", "127.0.0.1:1"]);
    let notices: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("created a new lab CA"))
        .collect();
    assert_eq!(notices.len(), 1, "{run:?}");
    assert!(notices[0].contains("to join an existing lab"), "{run:?}");
    assert!(machine.lightsout_home().join("ca-key.pem").exists());
    // The next command says nothing of the sort.
    let run = machine.lightsout(&["echo", "127.0.0.1:1"]);
    assert!(!run.stderr.contains("created a new lab CA"), "{run:?}");
}

#[test]
fn pki_init_refuses_an_existing_ca() {
    let lab = Lab::new();
    let key = std::fs::read(lab.home.ca_key()).unwrap();
    let run = lab.lightsout(&["pki", "init"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("never replaces"), "{run:?}");
    assert_eq!(std::fs::read(lab.home.ca_key()).unwrap(), key);
}

/// The admin's inventory: `lab-01` is the agent at `addr`.
fn write_inventory(lab: &Lab, agent: &AgentProcess) {
    std::fs::write(
        lab.home.dir().join("inventory.toml"),
        format!(
            "[hosts.lab-01]\naddress = \"127.0.0.1\"\nport = {}\n",
            agent.addr.port()
        ),
    )
    .unwrap();
}

#[test]
fn a_second_controller_works_from_its_three_files_as_the_readme_says() {
    let lab = Lab::in_user_home();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    write_inventory(&lab, &agent);
    let usb = tempfile::tempdir().unwrap();
    procedure("second-controller-issue", &lab.admin(), usb.path());

    let teacher = Machine::at(lab.dir.path().join("teacher"));
    let run = procedure("second-controller-install", &teacher, usb.path());
    assert!(run.stdout.contains("1 ok, 0 failed"), "{run:?}");
    let mut files: Vec<String> = std::fs::read_dir(teacher.lightsout_home())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "ca.pem",
            "controller-key.pem",
            "controller.pem",
            "inventory.toml"
        ],
        "no CA key, nothing created"
    );
    // The agent saw the teacher, with the teacher's role.
    let seen = lab.audit();
    assert!(
        seen.iter()
            .any(|l| l["identity"] == "teacher@pc-12" && l["role"] == "operator"),
        "{seen:?}"
    );
    // Signing needs the CA key, and says so.
    let run = teacher.lightsout(&["pki", "issue", "agent", "lab-09"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("signs with the CA key") && run.stderr.contains("ca-key.pem"),
        "{run:?}"
    );
    // Listing needs no CA key.
    teacher.lightsout(&["pki", "list"]).success();
}

#[test]
fn a_controller_bundle_is_enough() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let bundle = lab.dir.path().join("monitor.pem");
    let run = lab
        .lightsout(&[
            "pki",
            "issue",
            "controller",
            "zabbix@mon",
            "--role",
            "monitor",
            "--bundle",
            bundle.to_str().unwrap(),
        ])
        .success();
    assert!(
        run.stdout.contains("controller-bundle.pem") && run.stdout.contains("LIGHTSOUT_BUNDLE"),
        "{run:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let machine = Machine::at(dir.path());
    let run = machine
        .lightsout(&[
            "--bundle",
            bundle.to_str().unwrap(),
            "echo",
            &agent.target(),
        ])
        .success();
    assert!(run.stdout.contains("1 ok"), "{run:?}");
    let mut with_env = machine.clone();
    with_env
        .env
        .push(("LIGHTSOUT_BUNDLE".into(), bundle.display().to_string()));
    with_env.lightsout(&["echo", &agent.target()]).success();
    assert!(
        !machine.lightsout_home().join("ca.pem").exists(),
        "a bundle needs no home files, and none are created"
    );
}

#[test]
fn private_keys_readable_by_others_are_refused() {
    let lab = Lab::new();
    let bundle = agent_bundle(&lab, 0, 30);
    chmod(&bundle, 0o644);
    let run = agent_check_config(
        lab.home.dir(),
        &["--dry-run", "--bundle", bundle.to_str().unwrap()],
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains(bundle.to_str().unwrap()) && run.stderr.contains("chmod 600"),
        "{run:?}"
    );
    // At start too.
    let mut cmd = agent_command();
    cmd.env("LIGHTSOUT_HOME", lab.home.dir()).args([
        "--dry-run",
        "--listen",
        "127.0.0.1:0",
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    let run = Run::of(&mut cmd);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("mode 0644"), "{run:?}");
    // The controller's key in its home.
    chmod(&lab.home.controller_key(), 0o640);
    let run = lab.lightsout(&["echo", "127.0.0.1:1"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("controller-key.pem") && run.stderr.contains("chmod 600"),
        "{run:?}"
    );
}

#[test]
fn check_config_shows_the_certificate_and_refuses_one_out_of_its_dates() {
    let lab = Lab::new();
    let soon = agent_bundle(&lab, 0, 10);
    let run = agent_check_config(
        lab.home.dir(),
        &["--dry-run", "--bundle", soon.to_str().unwrap()],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let info = CertInfo::from_file(&soon).unwrap();
    assert!(
        run.stdout.contains("lab-01")
            && run.stdout.contains(&info.fingerprint)
            && run.stdout.contains("9 days left"),
        "{run:?}"
    );

    let expired = agent_bundle(&lab, 20, 10);
    let run = agent_check_config(
        lab.home.dir(),
        &["--dry-run", "--bundle", expired.to_str().unwrap()],
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("expired on"), "{run:?}");

    let future = agent_bundle(&lab, -5, 10);
    let run = agent_check_config(
        lab.home.dir(),
        &["--dry-run", "--bundle", future.to_str().unwrap()],
    );
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("not valid before"), "{run:?}");
}

#[test]
fn status_shows_an_agent_certificate_that_expires_soon() {
    let lab = Lab::new();
    let soon = agent_bundle(&lab, 0, 10);
    let expiring = AgentProcess::start(&lab, &["--dry-run", "--bundle", soon.to_str().unwrap()]);
    let fine = AgentProcess::start(&lab, &["--dry-run"]);
    std::fs::write(
        lab.home.dir().join("inventory.toml"),
        format!(
            "[hosts.lab-01]\naddress = \"127.0.0.1\"\nport = {}\n[hosts.lab-02]\naddress = \"127.0.0.1\"\nport = {}\n",
            expiring.addr.port(),
            fine.addr.port()
        ),
    )
    .unwrap();
    let run = lab.lightsout(&["status"]).success();
    let row = |host: &str| {
        run.stdout
            .lines()
            .find(|l| l.starts_with(host))
            .unwrap_or_else(|| panic!("{run:?}"))
            .to_owned()
    };
    assert!(
        row("lab-01").contains("certificate expires in 9 days"),
        "{run:?}"
    );
    assert!(!row("lab-02").contains("certificate expires"), "{run:?}");
    let doc = lab.lightsout_json(&["status"], 0);
    let results = doc["results"].as_array().unwrap();
    let by_host = |h: &str| results.iter().find(|r| r["host"] == h).unwrap().clone();
    assert_eq!(by_host("lab-01")["cert_expires_in_days"], 9, "{doc}");
    assert!(
        by_host("lab-02").get("cert_expires_in_days").is_none(),
        "{doc}"
    );
}

#[test]
fn the_controller_warns_of_its_own_certificate_ahead_and_when_expired() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let bundle = |days_ago: i64, days: u32| {
        let mut opts = IssueOptions::new(CertKind::Controller, "carol");
        opts.role = Some("admin".into());
        opts.validity_days = days;
        opts.not_before = Some(
            time::OffsetDateTime::now_utc()
                - time::Duration::days(days_ago)
                - time::Duration::hours(1),
        );
        let path = lab.dir.path().join(format!("carol-{days_ago}.pem"));
        lab.ca
            .issue(&opts)
            .unwrap()
            .write_bundle(&path, lab.ca.cert_pem())
            .unwrap();
        path
    };
    let soon = bundle(0, 10);
    let run = lab
        .lightsout(&["--bundle", soon.to_str().unwrap(), "echo", &agent.target()])
        .success();
    assert!(
        run.stderr.contains("expires in 9 days")
            && run.stderr.contains("pki renew controller carol"),
        "{run:?}"
    );
    let expired = bundle(20, 10);
    let run = lab.lightsout(&[
        "--bundle",
        expired.to_str().unwrap(),
        "echo",
        &agent.target(),
    ]);
    // The agent refuses it (tested in authz); the controller says why before.
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("expired on") && run.stderr.contains("agents will refuse it"),
        "{run:?}"
    );
    // The first-run certificate has years left: nothing said.
    let run = lab.lightsout(&["echo", &agent.target()]).success();
    assert!(!run.stderr.contains("expires"), "{run:?}");
}

#[test]
fn pki_bookkeeping_days_statuses_and_serials() {
    let lab = Lab::new();
    let run = lab.lightsout(&["pki", "issue", "agent", "lab-00", "--days", "0"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        !lab.home.issued_dir().join("lab-00.pem").exists(),
        "{run:?}"
    );

    lab.lightsout(&["pki", "issue", "agent", "lab-07", "--days", "10"])
        .success();
    // An expired one, recorded in the index as `pki issue` would.
    let mut old = IssueOptions::new(CertKind::Agent, "lab-old");
    old.validity_days = 10;
    old.not_before = Some(time::OffsetDateTime::now_utc() - time::Duration::days(30));
    let issued = lab.ca.issue(&old).unwrap();
    lightsout_pki::crl::record_issued(&lab.home, &old, &issued).unwrap();

    let list = lab.lightsout(&["pki", "list"]).success().stdout;
    let line = |name: &str| {
        list.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("{name} not in\n{list}"))
            .to_owned()
    };
    assert!(line("lab-07").contains("valid"), "{list}");
    assert!(line("lab-old").contains("expired"), "{list}");

    let due = lab
        .lightsout(&["pki", "list", "--expiring", "60d"])
        .success()
        .stdout;
    assert!(due.contains("lab-07") && due.contains("lab-old"), "{due}");
    assert!(
        !due.contains("@"),
        "the 825-day first-run certificates are not due:\n{due}"
    );

    // Revoked by serial in openssl's form: known by name, listed as revoked.
    let serial = line("lab-07").split_whitespace().last().unwrap().to_owned();
    let colons: Vec<String> = (0..serial.len())
        .step_by(2)
        .map(|i| serial[i..i + 2].to_uppercase())
        .collect();
    let run = lab
        .lightsout(&[
            "pki",
            "revoke",
            "--serial",
            &format!("00:{}", colons.join(":")),
        ])
        .success();
    assert!(run.stdout.contains("revoked lab-07"), "{run:?}");
    let list = lab.lightsout(&["pki", "list"]).success().stdout;
    let today = lightsout_pki::load::date(time::OffsetDateTime::now_utc().unix_timestamp());
    assert!(
        list.lines()
            .any(|l| l.contains("lab-07") && l.contains(&format!("revoked {today}"))),
        "{list}"
    );
    let due = lab
        .lightsout(&["pki", "list", "--expiring", "60d"])
        .success()
        .stdout;
    assert!(!due.contains("lab-07"), "revoked is not due:\n{due}");
}

#[test]
fn issue_and_renew_never_overwrite_a_key_without_replace() {
    let lab = Lab::new();
    lab.lightsout(&["pki", "issue", "agent", "lab-02", "--ip", "10.0.0.2"])
        .success();
    let key = lab.home.issued_dir().join("lab-02-key.pem");
    let before = std::fs::read(&key).unwrap();
    let run = lab.lightsout(&["pki", "issue", "agent", "lab-02"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("--replace"), "{run:?}");
    assert_eq!(std::fs::read(&key).unwrap(), before);

    // A renewal without --replace goes to new files, with the same names.
    let run = lab
        .lightsout(&["pki", "renew", "agent", "lab-02"])
        .success();
    assert_eq!(std::fs::read(&key).unwrap(), before);
    let today = lightsout_pki::load::date(time::OffsetDateTime::now_utc().unix_timestamp());
    let renewed = lab.home.issued_dir().join(format!("lab-02-{today}.pem"));
    assert!(renewed.exists(), "{run:?}");
    let old = CertInfo::from_file(&lab.home.issued_dir().join("lab-02.pem")).unwrap();
    let new = CertInfo::from_file(&renewed).unwrap();
    assert_eq!(new.name, "lab-02");
    assert_ne!(new.fingerprint, old.fingerprint);
    let index = lightsout_pki::crl::list_issued(&lab.home).unwrap();
    let record = index
        .iter()
        .find(|r| r.fingerprint == new.fingerprint)
        .unwrap();
    assert_eq!(
        record.ips,
        ["10.0.0.2".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(run.stdout.contains("names: lab-02, 10.0.0.2"), "{run:?}");
    // Addresses can be added (certificates recorded before addresses were).
    let elsewhere = lab.dir.path().join("elsewhere");
    let run = lab
        .lightsout(&[
            "pki",
            "renew",
            "agent",
            "lab-02",
            "--ip",
            "10.0.1.2",
            "--out",
            elsewhere.to_str().unwrap(),
        ])
        .success();
    assert!(
        run.stdout.contains("names: lab-02, 10.0.0.2, 10.0.1.2"),
        "{run:?}"
    );

    // With --replace, in place; and a controller keeps its role.
    lab.lightsout(&["pki", "issue", "controller", "bob", "--role", "operator"])
        .success();
    lab.lightsout(&["pki", "renew", "controller", "bob", "--replace"])
        .success();
    let list = lab.lightsout(&["pki", "list"]).success().stdout;
    let bobs: Vec<&str> = list.lines().filter(|l| l.contains(" bob ")).collect();
    assert_eq!(bobs.len(), 2, "{list}");
    assert!(bobs.iter().all(|l| l.contains("operator")), "{list}");
    let run = lab.lightsout(&["pki", "renew", "agent", "nobody"]);
    assert_eq!(run.code, Some(2), "{run:?}");
}

/// `lightsout echo lab-01` over and over on `machine` until stopped: every run must succeed.
struct EchoLoop {
    stop: Arc<AtomicBool>,
    runs: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoLoop {
    fn start(machine: Machine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, runs, failures) = (stop.clone(), runs.clone(), failures.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let run = machine.lightsout(&["echo", "lab-01"]);
                    if run.code != Some(0) {
                        failures.lock().unwrap().push(format!("{run:?}"));
                    }
                    runs.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let this = Self {
            stop,
            runs,
            failures,
            thread: Some(thread),
        };
        this.more_runs(1);
        this
    }

    /// Waits until `n` more runs have completed.
    fn more_runs(&self, n: usize) {
        let target = self.runs.load(Ordering::SeqCst) + n;
        poll("echo loop runs", || {
            (self.runs.load(Ordering::SeqCst) >= target).then_some(())
        });
    }

    /// Stops the loop; returns (runs, failures).
    fn finish(mut self) -> (usize, Vec<String>) {
        self.more_runs(2);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.runs.load(Ordering::SeqCst), failures)
    }
}

impl Drop for EchoLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// lab-01: a lab machine whose agent reads `/etc/lightsout/agent.toml` (bundle
/// `agent-bundle.pem`) and keeps its state in `/var/lib/lightsout`, as packaged; its bundle
/// issued by the admin as in the README's rollout.
fn lab_machine(lab: &Lab, usb: &Path) -> (Machine, AgentProcess) {
    let mut machine = Machine::at(lab.dir.path().join("lab-01"));
    std::fs::create_dir_all(machine.etc()).unwrap();
    std::fs::create_dir_all(machine.var_lib()).unwrap();
    let bundle = usb.join("lab-01.pem");
    lab.issue_agent_bundle("lab-01", &bundle);
    std::fs::copy(&bundle, machine.etc().join("agent-bundle.pem")).unwrap();
    let config = machine.etc().join("agent.toml");
    std::fs::write(
        &config,
        "dry_run = true\n[tls]\nbundle = \"agent-bundle.pem\"\n",
    )
    .unwrap();
    let agent = AgentProcess::start_in(
        &machine.var_lib(),
        agent_command(),
        &["--dry-run", "--config", config.to_str().unwrap()],
    );
    machine.agent_pid = Some(agent.child.id());
    write_inventory(lab, &agent);
    (machine, agent)
}

fn reloads(logs: &str) -> usize {
    logs.matches("SIGHUP: reloaded").count()
}

#[test]
fn an_agent_rotation_as_the_readme_says_fails_no_echo() {
    let lab = Lab::in_user_home();
    let usb = tempfile::tempdir().unwrap();
    let (lab01, agent) = lab_machine(&lab, usb.path());
    let old = CertInfo::from_file(&lab01.etc().join("agent-bundle.pem")).unwrap();
    let echo = EchoLoop::start(lab.admin());

    let run = procedure("renew-agent", &lab.admin(), usb.path());
    assert!(run.stdout.contains("renews serial"), "{run:?}");
    procedure("install-agent", &lab01, usb.path());
    agent.wait_for_logs("the reload", |l| reloads(l) >= 1);
    echo.more_runs(1);
    procedure("revoke-agent", &lab.admin(), usb.path());
    procedure("install-crl", &lab01, usb.path());
    agent.wait_for_logs("the second reload", |l| reloads(l) >= 2);

    let (runs, failures) = echo.finish();
    assert!(
        failures.is_empty(),
        "{} of {runs} echoes failed: {failures:#?}",
        failures.len()
    );
    // The agent serves the new certificate, and the old one is revoked.
    let now = CertInfo::from_file(&lab01.etc().join("agent-bundle.pem")).unwrap();
    assert_ne!(now.fingerprint, old.fingerprint);
    let list = lab.lightsout(&["pki", "list"]).success().stdout;
    assert_eq!(
        list.lines()
            .filter(|l| l.contains(" lab-01 ") && l.contains("revoked"))
            .count(),
        1,
        "{list}"
    );
}

#[test]
fn a_controller_rotation_as_the_readme_says_fails_no_echo() {
    let lab = Lab::in_user_home();
    let usb = tempfile::tempdir().unwrap();
    let (lab01, agent) = lab_machine(&lab, usb.path());
    // The teacher's controller runs from a bundle, as the README's rotation has it.
    let old_bundle = usb.path().join("teacher-old.pem");
    lab.lightsout(&[
        "pki",
        "issue",
        "controller",
        "teacher@pc-12",
        "--role",
        "operator",
        "--bundle",
        old_bundle.to_str().unwrap(),
    ])
    .success();
    let mut teacher = Machine::at(lab.dir.path().join("teacher"));
    std::fs::create_dir_all(teacher.lightsout_home()).unwrap();
    let place = teacher.lightsout_home().join("controller-bundle.pem");
    std::fs::copy(&old_bundle, &place).unwrap();
    teacher
        .env
        .push(("LIGHTSOUT_BUNDLE".into(), place.display().to_string()));
    teacher.env.push((
        "LIGHTSOUT_INVENTORY".into(),
        lab.home.dir().join("inventory.toml").display().to_string(),
    ));
    let echo = EchoLoop::start(teacher.clone());

    procedure("renew-controller", &lab.admin(), usb.path());
    procedure("install-controller", &teacher, usb.path());
    echo.more_runs(1);
    procedure("revoke-controller", &lab.admin(), usb.path());
    procedure("install-crl", &lab01, usb.path());
    agent.wait_for_logs("the reload", |l| reloads(l) >= 1);

    let (runs, failures) = echo.finish();
    assert!(
        failures.is_empty(),
        "{} of {runs} echoes failed: {failures:#?}",
        failures.len()
    );
    // The old bundle is refused by the agent now.
    let mut old = teacher.clone();
    old.env.retain(|(k, _)| k != "LIGHTSOUT_BUNDLE");
    let run = old.lightsout(&["--bundle", old_bundle.to_str().unwrap(), "echo", "lab-01"]);
    assert_eq!(run.code, Some(1), "{run:?}");
}

#[test]
fn the_ca_backup_restores_a_working_ca() {
    let lab = Lab::in_user_home();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    write_inventory(&lab, &agent);
    let usb = tempfile::tempdir().unwrap();
    procedure("backup", &lab.admin(), usb.path());
    let archive = usb.path().join("lightsout-ca-backup.tar.gz");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup holds the CA key");

    // A new administrator machine.
    let new = Machine::at(lab.dir.path().join("new-admin"));
    let run = procedure("restore", &new, usb.path());
    assert!(run.stdout.contains("controller"), "{run:?}");
    let restored = new.lightsout_home();
    assert_eq!(
        std::fs::read(restored.join("ca-key.pem")).unwrap(),
        std::fs::read(lab.home.ca_key()).unwrap()
    );
    let mode = std::fs::metadata(restored.join("ca-key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // It signs for the same lab, and reaches its agents.
    new.lightsout(&["pki", "issue", "agent", "lab-09"])
        .success();
    new.lightsout(&["echo", "lab-01"]).success();
}
