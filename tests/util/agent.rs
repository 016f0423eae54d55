//! Agents under test: real `lightsout-agent` processes ([`AgentProcess`]) and agents inside
//! the test process ([`InProc`], started with [`lightsout_agent::run`]); what a process holds.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lightsout_agent::Config;
use tokio::task::JoinHandle;

use crate::{Lab, PATIENCE, bin, is_temporary, running_as_root};

/// `lightsout-agent`, started so that it sees itself as root (see [`AgentProcess::start`]).
pub fn agent_command() -> Command {
    static USERNS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if running_as_root() {
        return Command::new(bin("lightsout-agent"));
    }
    let userns = *USERNS.get_or_init(|| {
        Command::new("unshare")
            .args(["--user", "--map-root-user", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !userns {
        eprintln!(
            "warning: not root and no user namespaces: agents run unprivileged, power tests fail"
        );
        return Command::new(bin("lightsout-agent"));
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--map-root-user", "--"])
        .arg(bin("lightsout-agent"));
    cmd
}

/// A `lightsout-agent` process, killed when dropped.
pub struct AgentProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything the agent logged on stderr so far. Always drained: an unread pipe would
    /// fill up and block the agent's logging.
    stderr: Arc<Mutex<String>>,
}

impl AgentProcess {
    /// Starts `lightsout-agent` with `args` (which must include `--dry-run`, `--power-command`
    /// or `--logind-bus` on a test bus; enforced here) on 127.0.0.1 port 0, and waits for its
    /// "listening on" line.
    ///
    /// The agent runs with root's effective uid, as on a real lab machine: directly when the
    /// tests run as root, else inside a user namespace where the test user is mapped to root
    /// (`unshare --user --map-root-user`; no real privilege is gained). Power requests to it
    /// are therefore accepted, and carried out by the stand-in or rehearsed.
    pub fn start(lab: &Lab, args: &[&str]) -> Self {
        Self::start_cmd(lab, agent_command(), args)
    }

    /// Like [`AgentProcess::start`] with a prepared command (e.g. `setpriv ... lightsout-agent`).
    pub fn start_cmd(lab: &Lab, cmd: Command, args: &[&str]) -> Self {
        Self::start_in(lab.home.dir(), cmd, args)
    }

    /// Like [`AgentProcess::start_cmd`] with `home` as the agent's home directory (another
    /// machine's, e.g. a lab machine's `/var/lib/lightsout`).
    pub fn start_in(home: &Path, mut cmd: Command, args: &[&str]) -> Self {
        cmd.env("LIGHTSOUT_HOME", home);
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        Self::start_as_configured(cmd, args)
    }

    /// Like [`AgentProcess::start_in`], but the home and the listening address are left to
    /// `cmd` and `args` (a configuration file, a unit's `Environment=`), as on a lab machine.
    pub fn start_as_configured(mut cmd: Command, args: &[&str]) -> Self {
        let stand_in = args
            .iter()
            .position(|a| *a == "--power-command")
            .and_then(|i| args.get(i + 1))
            .map(Path::new);
        let test_bus = args
            .iter()
            .position(|a| *a == "--logind-bus")
            .and_then(|i| args.get(i + 1))
            .is_some_and(|a| crate::is_test_bus(a));
        assert!(
            args.contains(&"--dry-run") || stand_in.is_some_and(is_temporary) || test_bus,
            "test agents must run in dry-run, with a stand-in power command in a temporary directory, or with --logind-bus on a test bus in a temporary directory"
        );
        // The developer's own settings must not reach a test agent.
        cmd.env_remove("LIGHTSOUT_CONFIG")
            .env_remove("LIGHTSOUT_LISTEN")
            .env_remove("LIGHTSOUT_LOG_FORMAT")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = match line.trim().strip_prefix("listening on ") {
            Some(addr) => addr.parse().unwrap(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                // Give the drain thread a moment to collect the reason.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "agent did not start: stdout {line:?}, stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        Self {
            child,
            addr,
            stderr,
        }
    }

    /// `127.0.0.1:PORT` as a controller target.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// What the agent logged so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the agent's log satisfies `check` (log lines reach us asynchronously), and
    /// returns the log. Panics with the log after [`PATIENCE`].
    pub fn wait_for_logs(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let logs = self.logs();
            if check(&logs) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "agent never logged {what}:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM and waits (up to `limit`) for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `lightsout-agent` as a process without a user namespace, like
/// [`AgentProcess::start_cmd`], with `LIGHTSOUT_AGENT_BIN` overriding the binary (e.g. a
/// release build). `args` must include `--dry-run` or `--power-command`.
pub fn spawn_agent(lab: &Lab, args: &[&str]) -> AgentProcess {
    let binary = std::env::var_os("LIGHTSOUT_AGENT_BIN")
        .map_or_else(|| bin("lightsout-agent"), PathBuf::from);
    AgentProcess::start_cmd(lab, Command::new(binary), args)
}

/// An agent running inside the test process.
pub struct InProc {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<JoinHandle<()>>,
}

impl InProc {
    /// Starts an agent on 127.0.0.1 (ephemeral port) with the lab's agent certificate, in
    /// dry-run, privileged (so power requests get as far as they can), default limits; then
    /// `configure` adjusts the configuration. Panics unless the result is dry-run or uses a
    /// stand-in power command.
    pub async fn start(lab: &Lab, configure: impl FnOnce(&mut Config)) -> Self {
        let tls = lightsout_pki::tls::server_config(&lab.agent_files()).unwrap();
        let mut config = Config::new(tls);
        config.dry_run = true;
        config.privileged = true;
        configure(&mut config);
        assert!(
            config.dry_run || config.power_command.as_deref().is_some_and(is_temporary),
            "test agents must run in dry-run or with a stand-in power command in a temp dir"
        );
        let listener = lightsout_agent::listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(lightsout_agent::run(listener, config, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            stop: Some(tx),
            done: Some(done),
        }
    }

    /// Sends the stop signal and returns how long `run` took to return (panics after
    /// [`PATIENCE`]).
    pub async fn stop(mut self) -> Duration {
        let started = Instant::now();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let done = self.done.take().unwrap();
        tokio::time::timeout(PATIENCE, done)
            .await
            .expect("the agent did not stop")
            .expect("the agent task panicked");
        started.elapsed()
    }

    /// Whether the agent task is still running (it never ends on its own: a finished task
    /// means a panic).
    pub fn is_running(&self) -> bool {
        self.done.as_ref().is_some_and(|d| !d.is_finished())
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Sockets process `pid` has open (its listener and connections).
pub fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    })
}

/// Waits until process `pid` has at least (`at_least`) or fewer than (`!at_least`) `n`
/// sockets open; panics with the count after [`PATIENCE`].
pub async fn wait_sockets(pid: u32, n: usize, at_least: bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let open = open_sockets(pid);
        if (open >= n) == at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent has {open} sockets open, expected {} {n}",
            if at_least { "at least" } else { "fewer than" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resident memory of process `pid` in KiB (Linux `/proc/PID/status` VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}
