//! Helpers shared by the end-to-end tests (and the benchmarks): a throw-away PKI, agents
//! started as real processes or in-process, and raw TLS clients.
//!
//! Safety: every agent started here runs in dry-run mode or with a stand-in power command
//! written into a temporary directory. Nothing here can reach the system's `shutdown`.

#![allow(clippy::unwrap_used, missing_debug_implementations)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use lightsout_pki::{Ca, CertKind, Home, IssueOptions, TlsFiles};
use lightsout_protocol::{
    ErrorBody, ErrorKind, FrameCodec, Outcome, Reply, Request, RequestEnvelope, Response,
};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;

/// How long any single wait in a test may take before it counts as a hang. Generous: the
/// machine is shared and noisy; a passing test never comes near it.
pub const PATIENCE: Duration = Duration::from_secs(5);

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
    /// Starts `lightsout-agent` with `args` (which must include `--dry-run` or
    /// `--power-command`; enforced here) on 127.0.0.1 port 0, and waits for its
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
    pub fn start_cmd(lab: &Lab, mut cmd: Command, args: &[&str]) -> Self {
        let stand_in = args
            .iter()
            .position(|a| *a == "--power-command")
            .and_then(|i| args.get(i + 1))
            .map(Path::new);
        assert!(
            args.contains(&"--dry-run") || stand_in.is_some_and(is_temporary),
            "test agents must run in dry-run or with a stand-in power command in a temporary directory"
        );
        let has_listen = args.contains(&"--listen");
        cmd.env("LIGHTSOUT_HOME", lab.home.dir())
            // The developer's own settings must not reach a test agent.
            .env_remove("LIGHTSOUT_CONFIG")
            .env_remove("LIGHTSOUT_LISTEN")
            .env_remove("LIGHTSOUT_LOG_FORMAT")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !has_listen {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
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

// ---------------------------------------------------------------------------------------------
// Raw clients: what a hostile or broken peer can send, byte for byte.
// ---------------------------------------------------------------------------------------------

/// The controller-side TLS configuration for `files` (client certificate presented).
pub fn client_config(files: &TlsFiles) -> Arc<ClientConfig> {
    lightsout_pki::tls::client_config(files).unwrap()
}

/// A TLS 1.3 client that trusts the CA in `ca` and presents no certificate at all.
pub fn client_config_without_cert(ca: &Path) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in lightsout_pki::load::certs(ca).unwrap() {
        roots.add(cert).unwrap();
    }
    Arc::new(
        ClientConfig::builder_with_provider(lightsout_pki::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// TCP connect plus TLS handshake, verifying the agent's certificate for the IP dialled.
///
/// # Errors
/// Whatever the connection or the handshake reported.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(config)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
}

/// Connects with `config` and sends one echo. `Ok` with the response when the agent
/// answered, `Err` describing where the exchange broke down when it did not (handshake
/// refused, connection closed or reset instead of an answer).
pub async fn try_echo(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<Response, String> {
    let exchange = async {
        let tls = tls_connect(addr, config)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let mut client = RawClient::from_stream(tls);
        client
            .send_body(echo_envelope("probe", "hi").to_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        match client.framed.next().await {
            Some(Ok(body)) => Response::decode(&body).map_err(|e| format!("bad reply: {e}")),
            Some(Err(e)) => Err(format!("read: {e}")),
            None => Err("closed without an answer".into()),
        }
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer and no close from {addr} within {PATIENCE:?}"))
}

/// Opens a plain TCP connection, writes `bytes`, and reads until the agent closes the
/// connection. Returns what it sent back (which may be nothing). Panics if the agent neither
/// answers nor closes within [`PATIENCE`].
pub async fn plain_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut chunk = [0u8; 4096];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break, // closed or reset: both end the connection
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "agent kept a connection open after {bytes:?}");
    got
}

/// An echo envelope in the current protocol version.
pub fn echo_envelope(id: &str, payload: &str) -> RequestEnvelope {
    RequestEnvelope::new(
        id,
        false,
        Request::Echo {
            payload: payload.into(),
        },
    )
}

/// A verified TLS connection speaking raw frames: any body, any bytes.
pub struct RawClient {
    pub framed: Framed<TlsStream<TcpStream>, FrameCodec>,
}

impl RawClient {
    /// Connects with the lab's controller certificate.
    pub async fn connect(lab: &Lab, addr: SocketAddr) -> Self {
        let tls = tls_connect(addr, client_config(&lab.controller_files()))
            .await
            .unwrap();
        Self::from_stream(tls)
    }

    /// Wraps an established TLS stream.
    pub fn from_stream(tls: TlsStream<TcpStream>) -> Self {
        Self {
            framed: Framed::new(tls, FrameCodec::new()),
        }
    }

    /// Sends `body` as one well-formed frame.
    ///
    /// # Errors
    /// The write failed.
    pub async fn send_body(&mut self, body: impl Into<Bytes>) -> std::io::Result<()> {
        self.framed.send(body.into()).await
    }

    /// Writes `bytes` as they are, bypassing the codec (half frames, lying headers).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stream = self.framed.get_mut();
        stream.write_all(bytes).await.unwrap();
        stream.flush().await.unwrap();
    }

    /// The next response, or `None` when the agent closed the connection (cleanly or not).
    /// Panics when nothing happens within [`PATIENCE`].
    pub async fn recv(&mut self) -> Option<Response> {
        match tokio::time::timeout(PATIENCE, self.framed.next()).await {
            Err(_) => panic!("no frame and no close within {PATIENCE:?}"),
            Ok(Some(Ok(body))) => Some(Response::decode(&body).unwrap_or_else(|e| {
                panic!(
                    "unreadable response {:?}: {e}",
                    String::from_utf8_lossy(&body)
                )
            })),
            Ok(Some(Err(_)) | None) => None,
        }
    }

    /// Sends `body` and returns the response; panics when there is none.
    pub async fn call_body(&mut self, body: impl Into<Bytes>) -> Response {
        self.send_body(body).await.unwrap();
        self.recv()
            .await
            .expect("the agent closed instead of answering")
    }

    /// Sends `request` and returns the response.
    pub async fn call(&mut self, request: &RequestEnvelope) -> Response {
        self.call_body(request.to_bytes()).await
    }

    /// One echo; asserts it succeeded and carried the payload back.
    pub async fn echo_ok(&mut self, payload: &str) {
        let id = format!("echo-{payload}");
        let response = self.call(&echo_envelope(&id, payload)).await;
        assert_eq!(response.id.as_deref(), Some(id.as_str()));
        match response.outcome {
            Outcome::Ok(Reply::Echo { payload: got, .. }) => assert_eq!(got, payload),
            other => panic!("echo failed: {other:?}"),
        }
    }

    /// Resets the TCP connection (RST, no TLS close_notify, no FIN): a peer vanishing.
    pub fn reset(self) {
        let stream = self.framed.into_inner();
        stream.get_ref().0.set_zero_linger().unwrap();
        drop(stream);
    }
}

/// The error of a response; panics when it succeeded.
pub fn expect_error(response: &Response) -> &ErrorBody {
    match &response.outcome {
        Outcome::Error(e) => e,
        Outcome::Ok(reply) => panic!("expected an error, got {reply:?}"),
    }
}

/// The error kind of a response, `None` when it succeeded.
pub fn error_kind(response: &Response) -> Option<ErrorKind> {
    match &response.outcome {
        Outcome::Error(e) => Some(e.kind),
        Outcome::Ok(_) => None,
    }
}
