//! What the scenarios share: a lab whose agent certificate names 127.0.0.1 (where qemu
//! forwards the agent's port), a booted VM with a serving agent, the controller's answers,
//! logind's view from inside, and the findings list.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lightsout_tests::vm::{self, Seed, Vm};
use lightsout_tests::{Lab, Run};
use serde_json::Value;

/// The agent's certificate name in every VM (its inventory-free target is `127.0.0.1:PORT`).
pub const AGENT: &str = "lab-vm";

/// A VM booted for one scenario, with its lab.
pub struct Scene {
    pub release: String,
    pub lab: Lab,
    pub vm: Vm,
    pub findings: Findings,
}

/// Boots `release` for scenario `name`: the disk with the agent installed (or without, for
/// the rollout), the agent's bundle on the seed disk, `extra` for more per-run setup. With
/// the agent, waits for its first echo. `None` after a `SKIP:`.
pub fn boot(
    release: &str,
    name: &str,
    with_agent: bool,
    extra: impl FnOnce(&Lab, &mut Seed),
) -> Option<Scene> {
    if !vm::available() {
        return None;
    }
    let started = Instant::now();
    let image = vm::image(release, with_agent)?;
    timing(release, &format!("{name}: image ready"), started.elapsed());
    let lab = Lab::new();
    let bundle = lab.dir.path().join("agent-bundle.pem");
    lab.issue_agent_bundle(AGENT, &bundle);
    let mut seed = if with_agent {
        Seed::with_bundle(&bundle)
    } else {
        Seed::default()
    };
    extra(&lab, &mut seed);
    let mut vm = Vm::boot(&format!("{release}-{name}"), &image, &seed);
    if with_agent {
        let at = vm.wait_for_agent(&lab);
        timing(release, &format!("{name}: boot to first echo"), at);
    }
    Some(Scene {
        release: release.to_owned(),
        lab,
        vm,
        findings: Findings::new(&format!("{release}-{name}")),
    })
}

/// Prints one timing line (`.ci/run`'s log is where the suite's time split is read).
pub fn timing(release: &str, what: &str, took: Duration) {
    eprintln!("vm timing: {release}: {what}: {:.1}s", took.as_secs_f64());
}

impl Scene {
    /// The agent as the controller dials it.
    pub fn target(&self) -> String {
        self.vm.target()
    }

    /// `lightsout --json ARGS TARGET...`: the run and its one host result.
    pub fn host(&self, args: &[&str]) -> (Run, Value) {
        let target = self.target();
        let mut all = vec!["--json", "--timeout", "10s"];
        all.extend_from_slice(args);
        all.push(&target);
        let run = self.lab.lightsout(&all);
        let doc: Value = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
        let host = doc["results"][0].clone();
        (run, host)
    }

    /// The agent's health snapshot (asserts the echo succeeds).
    pub fn health(&self) -> Value {
        let (run, host) = self.host(&["echo"]);
        assert_eq!(run.code, Some(0), "{}: echo failed: {run:?}", self.vm.name);
        host["response"]["health"].clone()
    }

    /// The guest's boot id.
    pub fn boot_id(&mut self) -> String {
        self.vm
            .sh("cat /proc/sys/kernel/random/boot_id")
            .trim()
            .to_owned()
    }

    /// What logind holds as scheduled: (`poweroff`/`reboot`/…, due time in Unix seconds), or
    /// `None`.
    pub fn scheduled(&mut self) -> Option<(String, f64)> {
        let (status, out) = self.vm.run(
            "busctl get-property org.freedesktop.login1 /org/freedesktop/login1 \
             org.freedesktop.login1.Manager ScheduledShutdown",
        );
        if status != 0 {
            return None;
        }
        // `(st) "poweroff" 1764680000000000`
        let mut parts = out.split_whitespace().skip(1);
        let kind = parts.next()?.trim_matches('"').to_owned();
        let usec: u64 = parts.next()?.parse().ok()?;
        (!kind.is_empty() && usec != 0).then(|| (kind, usec as f64 / 1e6))
    }

    /// Waits (up to 15 s) for logind to hold a scheduled action and returns it.
    pub fn wait_scheduled(&mut self) -> Option<(String, f64)> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.scheduled() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Restarts the agent inside (`systemctl ACTION lightsout-agent`) and, unless stopped,
    /// waits for it to answer again.
    pub fn systemctl_agent(&mut self, action: &str) {
        self.vm.sh(&format!("systemctl {action} lightsout-agent"));
        if action != "stop" {
            self.wait_echo();
        }
    }

    /// Waits for the agent to answer an echo (after a restart of the agent or the guest).
    pub fn wait_echo(&mut self) {
        let deadline = Instant::now() + vm::BOOT_PATIENCE;
        loop {
            let (run, _) = self.host(&["echo"]);
            if run.code == Some(0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the agent does not answer: {run:?}",
                self.vm.name
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Makes sure nothing is scheduled any more (the guest's own `shutdown -c`): when a
    /// finding has left an action in the system, the scenario can still go on.
    pub fn rescue(&mut self, what: &str) {
        if self.scheduled().is_some() {
            self.findings.miss(&format!(
                "{what}: logind still holds a scheduled action; cancelled it from inside"
            ));
            self.vm.sh("shutdown -c");
        }
    }

    /// Sleeps until `at`, asserting along the way that qemu is still running.
    pub fn stays_up_until(&mut self, at: Instant, what: &str) -> bool {
        while Instant::now() < at {
            if self.vm.exited().is_some() {
                self.findings
                    .miss(&format!("{what}: the VM powered off early"));
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        true
    }

    /// Writes `contents` into the guest at `path` (through the control channel).
    pub fn put(&mut self, path: &str, contents: &[u8]) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(contents);
        self.vm
            .sh(&format!("printf '%s' '{b64}' | base64 -d > {path}"));
    }

    /// The guest's audit log, parsed.
    pub fn audit(&mut self) -> Vec<Value> {
        self.vm
            .sh("cat /var/lib/lightsout/audit.jsonl")
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Fails the test with every finding collected.
    pub fn finish(self) {
        self.findings.finish();
    }
}

/// Now, in Unix seconds (to compare with logind's due times; the guest's clock comes from
/// the host's through the emulated RTC).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Findings: what the real machine did that the project promises otherwise. A scenario
/// collects them and goes on (so one run shows every difference), then fails with the list.
pub struct Findings {
    name: String,
    missed: Vec<String>,
}

impl Findings {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            missed: Vec::new(),
        }
    }

    /// Records `what` as a finding unless `ok`.
    pub fn check(&mut self, ok: bool, what: &str) {
        if !ok {
            self.miss(what);
        }
    }

    /// Records `what` as a finding.
    pub fn miss(&mut self, what: &str) {
        eprintln!("vm {}: FINDING: {what}", self.name);
        self.missed.push(what.to_owned());
    }

    /// Fails with every finding collected.
    pub fn finish(self) {
        assert!(
            self.missed.is_empty(),
            "vm {}: {} finding(s):\n- {}",
            self.name,
            self.missed.len(),
            self.missed.join("\n- ")
        );
    }
}

/// The bytes of a file on the host.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
