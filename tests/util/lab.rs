//! A throw-away lab: a PKI in a temporary directory, `lightsout` runs against it, stand-in
//! power commands, and the waits on what they log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lightsout_pki::{Ca, CertKind, Home, IssueOptions, TlsFiles};
use rustls::ClientConfig;

use crate::{PATIENCE, bin};

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
        lightsout_pki::ca::ensure_local(&home, lightsout_pki::Side::Agent).unwrap();
        let ca = Ca::load_home(&home).unwrap();
        Self { dir, home, ca }
    }

    /// A lab whose CA lives where the administrator's does: `ADMIN/.config/lightsout`, with
    /// [`Lab::admin`] as that administrator's `HOME` (for the README's procedures, which say
    /// `~/.config/lightsout`).
    pub fn in_user_home() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("admin/.config/lightsout"));
        lightsout_pki::ca::ensure_local(&home, lightsout_pki::Side::Agent).unwrap();
        let ca = Ca::load_home(&home).unwrap();
        Self { dir, home, ca }
    }

    /// The administrator's `HOME` for a lab made by [`Lab::in_user_home`].
    pub fn admin(&self) -> crate::Machine {
        crate::Machine::at(self.dir.path().join("admin"))
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

    /// Writes a stand-in power command into the lab directory; see [`stand_in_at`].
    pub fn stand_in(&self, name: &str, exit_code: i32) -> (PathBuf, PathBuf) {
        stand_in_at(self.dir.path(), name, exit_code)
    }

    /// A certificate of `kind` issued by a *different* CA, and that CA's certificate: what a
    /// machine of another lab (or an impostor) holds.
    pub fn foreign(&self, kind: CertKind, name: &str) -> TlsFiles {
        let (foreign_ca, _key) = Ca::create("some other lab CA").unwrap();
        let issued = foreign_ca.issue(&IssueOptions::new(kind, name)).unwrap();
        let ca = self.dir.path().join(format!("{name}-ca.pem"));
        let cert = self.dir.path().join(format!("{name}.pem"));
        let key = self.dir.path().join(format!("{name}-key.pem"));
        std::fs::write(&ca, foreign_ca.cert_pem()).unwrap();
        issued.write(&cert, &key).unwrap();
        TlsFiles { ca, cert, key }
    }

    /// `lightsout` controller command with this lab's home.
    pub fn controller_cmd(&self) -> Command {
        let mut cmd = Command::new(bin("lightsout"));
        cmd.env("LIGHTSOUT_HOME", self.home.dir())
            .env_remove("LIGHTSOUT_INVENTORY")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Issues a controller certificate with `role` through the CLI (`pki issue controller`),
    /// as an administrator would, so the CA's index knows the name (`pki revoke NAME` works).
    pub fn issue_with_cli(&self, name: &str, role: &str) -> TlsFiles {
        let out_dir = self.dir.path().to_str().unwrap();
        self.lightsout(&[
            "pki",
            "issue",
            "controller",
            name,
            "--role",
            role,
            "--out",
            out_dir,
        ])
        .success();
        TlsFiles {
            ca: self.home.ca_cert(),
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        }
    }

    /// Issues agent `name`'s bundle for 127.0.0.1 into `bundle` through the CLI
    /// (`pki issue agent NAME --ip 127.0.0.1 --bundle FILE`), as the rollout does.
    pub fn issue_agent_bundle(&self, name: &str, bundle: &Path) {
        self.lightsout(&[
            "pki",
            "issue",
            "agent",
            name,
            "--ip",
            "127.0.0.1",
            "--bundle",
            bundle.to_str().unwrap(),
        ])
        .success();
    }

    /// `lightsout` as the holder of `files` (`--ca --cert --key`), with this lab's home.
    pub fn controller_cmd_as(&self, files: &TlsFiles) -> Command {
        let mut cmd = self.controller_cmd();
        cmd.arg("--ca")
            .arg(&files.ca)
            .arg("--cert")
            .arg(&files.cert)
            .arg("--key")
            .arg(&files.key);
        cmd
    }

    /// The lines of the agent audit log at `path` (none if it does not exist yet), parsed.
    pub fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The echo payloads of the audit lines in `log` (each line must be whole JSON).
    pub fn echo_payloads(log: &Path) -> Vec<String> {
        Self::audit_lines(log)
            .iter()
            .filter_map(|l| l["args"]["payload"].as_str().map(str::to_owned))
            .collect()
    }

    /// The health snapshot of the agent at `target`, via `lightsout --json echo`.
    pub fn health(&self, target: &str) -> serde_json::Value {
        let doc = self.lightsout_json(&["echo", target], 0);
        doc["results"][0]["response"]["health"].clone()
    }

    /// The lab's own agents' audit log (`HOME/audit.jsonl`).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        Self::audit_lines(&self.home.dir().join("audit.jsonl"))
    }

    /// The (admin) controller's client TLS configuration.
    pub fn client_tls(&self) -> Arc<ClientConfig> {
        crate::client_config(&self.controller_files())
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes a stand-in power command into `dir`: a shell script that appends its arguments, one
/// line per call, to a log file next to it and exits with `exit_code`. Returns the script's
/// path and the log's.
pub fn stand_in_at(dir: &Path, name: &str, exit_code: i32) -> (PathBuf, PathBuf) {
    let script = dir.join(name);
    let log = dir.join(format!("{name}.log"));
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

/// Writes an executable shell script `name` with `body` into the lab directory and returns
/// its path.
pub fn script(lab: &Lab, name: &str, body: &str) -> PathBuf {
    let path = lab.dir.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

/// A stand-in power command that logs `start ARGS`, sleeps `secs`, logs `done ARGS`, and
/// succeeds: a power command that is visibly in flight for a while. Returns (script, log).
pub fn slow_stand_in(lab: &Lab, secs: f64) -> (PathBuf, PathBuf) {
    let log = lab.dir.path().join("slow-stand-in.log");
    let script = script(
        lab,
        "slow-stand-in",
        &format!(
            "printf 'start %s\\n' \"$*\" >> '{log}'\nsleep {secs}\nprintf 'done %s\\n' \"$*\" >> '{log}'",
            log = log.display()
        ),
    );
    (script, log)
}

/// The lines a stand-in has logged so far (none when it never ran).
pub fn log_lines(log: &Path) -> Vec<String> {
    match std::fs::read_to_string(log) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", log.display()),
    }
}

/// Polls `check` every 20 ms until it returns `Some`, for at most [`PATIENCE`]; panics with
/// `what` when it never does.
pub fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the stand-in's log holds exactly `expected` (in order), and returns it.
pub fn wait_for_log(log: &Path, expected: &[&str]) -> Vec<String> {
    let mut last = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        last = log_lines(log);
        if last == expected {
            return last;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "stand-in log {}: expected {expected:?}, got {last:?}",
        log.display()
    );
}
/// Waits until the stand-in's log has a line equal to `line`.
pub fn wait_for_line(log: &Path, line: &str) {
    poll(&format!("{line:?} in {}", log.display()), || {
        log_lines(log).iter().any(|l| l == line).then_some(())
    });
}

/// Polls `cond` every 20 ms until it holds, without blocking the runtime; panics with `what`
/// after [`PATIENCE`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port on 127.0.0.1 where nothing listens: bound, then released.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The outcome of one `lightsout` run.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
    /// Wall time of the whole process.
    pub elapsed: Duration,
}

impl Run {
    /// Runs `cmd` to completion.
    pub fn of(cmd: &mut Command) -> Self {
        let started = Instant::now();
        let out = cmd.output().unwrap();
        Self {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
            elapsed: started.elapsed(),
        }
    }

    /// Asserts the process exited 0 (showing its stderr otherwise).
    pub fn success(self) -> Self {
        assert_eq!(self.code, Some(0), "{}", self.stderr);
        self
    }

    /// stdout as the `--json` document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

impl Lab {
    /// Runs `lightsout ARGS` with this lab's home.
    ///
    /// A lab's agents run on this machine's loopback, which the controller protects from
    /// shutdown and restart unless told `--include-self`: power commands get it here (the
    /// self-protection itself is tested in `e2e/lab.rs`, which does not use this helper).
    pub fn lightsout(&self, args: &[&str]) -> Run {
        let mut cmd = self.controller_cmd();
        cmd.args(args);
        let power = args.iter().any(|a| *a == "shutdown" || *a == "restart");
        if power && !args.contains(&"--include-self") {
            cmd.arg("--include-self");
        }
        Run::of(&mut cmd)
    }

    /// Runs `lightsout --json ARGS`, asserts the exit code and returns the document.
    pub fn lightsout_json(&self, args: &[&str], code: i32) -> serde_json::Value {
        let run = self.lightsout(&[&["--json"], args].concat());
        assert_eq!(run.code, Some(code), "lightsout --json {args:?}: {run:?}");
        run.json()
    }
}

/// Whether `path`, resolved (no `..`, no symlinks), lies in the temporary directory: where
/// every stand-in power command of these tests is written, and no real `shutdown` is.
pub fn is_temporary(path: &Path) -> bool {
    let temp = std::env::temp_dir()
        .canonicalize()
        .unwrap_or_else(|_| std::env::temp_dir());
    path.canonicalize().is_ok_and(|p| p.starts_with(temp))
}

/// True when the tests run as root (effective uid 0).
pub fn running_as_root() -> bool {
    #[cfg(unix)]
    {
        rustix::process::geteuid().is_root()
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// The single host object of a `lightsout --json` run (asserts there is exactly one).
pub fn only_host(doc: &serde_json::Value) -> &serde_json::Value {
    assert_eq!(doc["results"].as_array().map(Vec::len), Some(1), "{doc}");
    &doc["results"][0]
}
