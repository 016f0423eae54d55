//! Helpers shared by the end-to-end tests (and the benchmarks): a throw-away PKI, agents
//! started as real processes or in-process, and raw TLS clients.
//!
//! Safety: every agent started here runs in dry-run mode or with a stand-in power command
//! written into a temporary directory. Nothing here can reach the system's `shutdown`.

#![allow(clippy::unwrap_used, missing_debug_implementations)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lightsout_pki::{Ca, CertKind, Home, IssueOptions, TlsFiles};

/// Path of a workspace binary built by cargo (`lightsout-agent` or `lightsout`).
///
/// `cargo test --workspace` builds both: the agent and controller packages each have an
/// integration test, which makes cargo build their binaries into the same target directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/e2e-xxxx -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run the tests with `cargo test --workspace` (it builds every binary)",
        path.display()
    );
    path
}

/// A lab in a temporary directory: a CA plus agent and controller certificates.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub home: Home,
    pub ca: Ca,
}

impl Lab {
    /// A fresh lab: the same first-run setup the binaries do.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        lightsout_pki::ca::ensure_local(&home).unwrap();
        let ca = Ca::load_home(&home).unwrap();
        Self { dir, home, ca }
    }

    /// The agent's TLS files.
    pub fn agent_files(&self) -> TlsFiles {
        TlsFiles::agent(&self.home)
    }

    /// The (admin) controller's TLS files.
    pub fn controller_files(&self) -> TlsFiles {
        TlsFiles::controller(&self.home)
    }

    /// Issues a certificate into the lab directory and returns its files.
    pub fn issue(&self, opts: &IssueOptions) -> TlsFiles {
        let issued = self.ca.issue(opts).unwrap();
        let cert = self.dir.path().join(format!("{}.pem", opts.name));
        let key = self.dir.path().join(format!("{}-key.pem", opts.name));
        issued.write(&cert, &key).unwrap();
        TlsFiles {
            ca: self.home.ca_cert(),
            cert,
            key,
        }
    }

    /// A controller certificate with `role` (or none).
    pub fn controller(&self, name: &str, role: Option<&str>) -> TlsFiles {
        let mut opts = IssueOptions::new(CertKind::Controller, name);
        opts.role = role.map(str::to_owned);
        self.issue(&opts)
    }

    /// Writes a stand-in power command: a shell script that appends its arguments, one line
    /// per call, to `log` and exits with `exit_code`. Returns the script's path.
    pub fn stand_in(&self, name: &str, exit_code: i32) -> (PathBuf, PathBuf) {
        let script = self.dir.path().join(name);
        let log = self.dir.path().join(format!("{name}.log"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexit {exit_code}\n",
                log.display()
            ),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        (script, log)
    }

    /// `lightsout` controller command with this lab's home.
    pub fn controller_cmd(&self) -> Command {
        let mut cmd = Command::new(bin("lightsout"));
        cmd.env("LIGHTSOUT_HOME", self.home.dir())
            .env_remove("RUST_LOG");
        cmd
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

/// A `lightsout-agent` process, killed when dropped.
pub struct AgentProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl AgentProcess {
    /// Starts `lightsout-agent` with `args` (which must include `--dry-run` or
    /// `--power-command`; enforced here) on 127.0.0.1 port 0, and waits for its
    /// "listening on" line.
    pub fn start(lab: &Lab, args: &[&str]) -> Self {
        Self::start_cmd(lab, Command::new(bin("lightsout-agent")), args)
    }

    /// Like [`AgentProcess::start`] with a prepared command (e.g. `setpriv ... lightsout-agent`).
    pub fn start_cmd(lab: &Lab, mut cmd: Command, args: &[&str]) -> Self {
        assert!(
            args.iter()
                .any(|a| *a == "--dry-run" || *a == "--power-command"),
            "test agents must run in dry-run or with a stand-in power command"
        );
        let has_listen = args.contains(&"--listen");
        cmd.env("LIGHTSOUT_HOME", lab.home.dir())
            .env("RUST_LOG", "info")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !has_listen {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("agent did not start: {line:?}"))
            .parse()
            .unwrap();
        Self { child, addr }
    }

    /// `127.0.0.1:PORT` as a controller target.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Sends SIGTERM and waits (up to `limit`) for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
