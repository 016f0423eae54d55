//! A fake systemd-logind on a private D-Bus, for agents started with `--logind-bus`: the
//! agent's logind power backend and occupancy reading run for real against it, and the real
//! system bus is never involved (the agent uses the given address exclusively).
//!
//! [`FakeLogind::start`] starts `dbus-daemon --session` on a socket in a temporary directory
//! (waiting for the address it prints), then `fake-logind` (`tests/bin/fake_logind.rs`,
//! waiting for its `ready`), which records every call as a JSON line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::{bin, is_temporary, skip_missing};

/// How the fake behaves.
#[derive(Debug, Clone, Default)]
pub struct FakeOptions {
    /// `ScheduleShutdown` answers with an access-denied error.
    pub fail_schedule: bool,
    /// Sessions it lists (a JSON array; see `tests/bin/fake_logind.rs`).
    pub sessions: Option<Value>,
    /// Already scheduled when it starts: kind and due time (µs).
    pub scheduled: Option<(String, u64)>,
    /// Start only the bus, with no logind on it.
    pub no_logind: bool,
}

/// A private bus with a fake logind on it; both are killed when dropped.
pub struct FakeLogind {
    dir: tempfile::TempDir,
    bus: Child,
    fake: Option<Child>,
    /// The bus address, for `--logind-bus`.
    pub address: String,
    /// The fake's record of calls (JSON lines).
    pub record: PathBuf,
}

fn dbus_daemon() -> Option<PathBuf> {
    ["/usr/bin/dbus-daemon", "/bin/dbus-daemon"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl FakeLogind {
    /// Starts the bus and the fake; `None` (after `SKIP: ...`) when `dbus-daemon` is not
    /// installed (`.ci/run` installs it, so under `CI=true` that fails instead).
    pub fn start(options: &FakeOptions) -> Option<Self> {
        let Some(daemon) = dbus_daemon() else {
            skip_missing(
                "dbus-daemon",
                "the fake logind needs a private bus; apt-get install dbus-daemon",
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus");
        let mut bus = Command::new(daemon)
            .args(["--session", "--nofork", "--print-address"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut address = String::new();
        BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let address = address.trim().to_owned();
        assert!(
            address.starts_with("unix:path="),
            "dbus-daemon did not print its address: {address:?}"
        );
        let record = dir.path().join("calls.jsonl");
        let mut me = Self {
            dir,
            bus,
            fake: None,
            address,
            record,
        };
        if !options.no_logind {
            me.start_fake(options);
        }
        Some(me)
    }

    fn start_fake(&mut self, options: &FakeOptions) {
        let mut cmd = Command::new(bin("fake-logind"));
        cmd.args(["--bus", &self.address])
            .arg("--record")
            .arg(&self.record)
            .stdout(Stdio::piped());
        if options.fail_schedule {
            cmd.arg("--fail-schedule");
        }
        if let Some(sessions) = &options.sessions {
            let file = self.dir.path().join("sessions.json");
            std::fs::write(&file, sessions.to_string()).unwrap();
            cmd.arg("--sessions").arg(file);
        }
        if let Some((kind, usec)) = &options.scheduled {
            cmd.args(["--scheduled", &format!("{kind}:{usec}")]);
        }
        let mut fake = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(fake.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "fake-logind did not start");
        self.fake = Some(fake);
    }

    /// `--logind-bus ADDRESS`, for the agent's arguments.
    pub fn agent_args(&self) -> [&str; 2] {
        ["--logind-bus", &self.address]
    }

    /// Every call the fake received so far, in order.
    pub fn calls(&self) -> Vec<Value> {
        crate::Lab::audit_lines(&self.record)
    }

    /// The arguments of every call of `method`, in order.
    pub fn calls_of(&self, method: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c["method"] == method)
            .map(|c| c["args"].clone())
            .collect()
    }

    /// A bus address in a temporary directory where nothing listens.
    pub fn unreachable_address(dir: &Path) -> String {
        format!("unix:path={}", dir.join("no-bus-here").display())
    }
}

impl Drop for FakeLogind {
    fn drop(&mut self) {
        for child in self.fake.iter_mut().chain(std::iter::once(&mut self.bus)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a `--logind-bus` address is a socket in the temporary directory (where every test
/// bus is): what [`crate::AgentProcess::start`] accepts as safe for a live agent.
pub fn is_test_bus(address: &str) -> bool {
    address
        .strip_prefix("unix:path=")
        .and_then(|rest| rest.split(',').next())
        .and_then(|path| Path::new(path).parent())
        .is_some_and(is_temporary)
}
