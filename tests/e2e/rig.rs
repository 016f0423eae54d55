//! The rig for the hardening tests (hostile input, faults, at-most-once, network loss):
//! agents started in-process with [`lightsout_agent::run`], raw clients that say exactly the
//! bytes a test wants at each layer (TCP, TLS records, frames, JSON), and the check every
//! hostile test ends with: a legitimate client is still served, promptly.
//!
//! Safety: [`InProc::start`] starts every agent in dry-run unless the test gives it a stand-in
//! power command, and refuses any other configuration.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use lightsout_agent::Config;
use lightsout_protocol::{
    ErrorBody, ErrorKind, FrameCodec, Outcome, Reply, Request, RequestEnvelope, Response,
};
use lightsout_tests::Lab;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;

/// Longest any single wait may take before it counts as a stall. Generous (shared, noisy
/// 2-core machine): a passing test is nowhere near it; it only turns a hang into a failure.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A raw TLS connection to an agent.
pub type Tls = TlsStream<TcpStream>;
/// A TLS connection speaking frames.
pub type Conn = Framed<Tls, FrameCodec>;

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
            config.dry_run || config.power_command.as_deref().is_some_and(is_stand_in),
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

/// A stand-in lives in a temporary directory, never in a system path.
fn is_stand_in(path: &Path) -> bool {
    lightsout_tests::is_temporary(path)
}

/// Writes an executable shell script `name` into the lab directory and returns its path.
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

/// Lines of a stand-in's log (none when it never ran).
pub fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after [`PATIENCE`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The lab controller's client TLS configuration.
pub fn client_tls(lab: &Lab) -> Arc<ClientConfig> {
    lightsout_pki::tls::client_config(&lab.controller_files()).unwrap()
}

/// A TCP connection to `addr`, with TCP_NODELAY.
pub async fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = tokio::time::timeout(PATIENCE, TcpStream::connect(addr))
        .await
        .expect("connect stalled")
        .expect("connect");
    stream.set_nodelay(true).unwrap();
    stream
}

/// Completes a TLS handshake as the lab's controller.
pub async fn tls(lab: &Lab, addr: SocketAddr) -> Tls {
    let stream = tcp(addr).await;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        PATIENCE,
        TlsConnector::from(client_tls(lab)).connect(name, stream),
    )
    .await
    .expect("TLS handshake stalled")
    .expect("TLS handshake")
}

/// Like [`tls`], retrying (every 50 ms, up to [`PATIENCE`]) while the agent refuses the
/// connection: for agents at their connection cap that are about to free a slot.
pub async fn tls_eventually(lab: &Lab, addr: SocketAddr) -> Tls {
    let started = Instant::now();
    loop {
        let attempt = async {
            let stream = TcpStream::connect(addr).await.ok()?;
            let name = ServerName::try_from("localhost").ok()?;
            TlsConnector::from(client_tls(lab))
                .connect(name, stream)
                .await
                .ok()
        };
        if let Ok(Some(t)) = tokio::time::timeout(PATIENCE, attempt).await {
            return t;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no TLS connection within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A framed TLS connection from source address `from` (any 127.x.y.z stands for another
/// machine on loopback) with the client configuration `config` (another certificate), or
/// `None` when the agent closes it before the handshake completes.
pub async fn conn_from(
    config: Arc<ClientConfig>,
    from: std::net::IpAddr,
    addr: SocketAddr,
) -> Option<Conn> {
    let attempt = async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(from, 0)).ok()?;
        let stream = socket.connect(addr).await.ok()?;
        stream.set_nodelay(true).ok()?;
        let name = ServerName::try_from("localhost").ok()?;
        let tls = TlsConnector::from(config)
            .connect(name, stream)
            .await
            .ok()?;
        Some(Framed::new(tls, FrameCodec::new()))
    };
    tokio::time::timeout(PATIENCE, attempt).await.ok().flatten()
}

/// A framed TLS connection as the lab's controller.
pub async fn conn(lab: &Lab, addr: SocketAddr) -> Conn {
    Framed::new(tls(lab, addr).await, FrameCodec::new())
}

/// Sends `body` as one frame and reads one response.
pub async fn exchange(conn: &mut Conn, body: impl Into<Bytes>) -> Response {
    conn.send(body.into()).await.expect("send frame");
    read_response(conn).await
}

/// Reads one response frame.
pub async fn read_response(conn: &mut Conn) -> Response {
    let frame = tokio::time::timeout(PATIENCE, conn.next())
        .await
        .expect("no response in time")
        .expect("connection closed instead of responding")
        .expect("read failed");
    Response::decode(&frame).expect("a response")
}

/// Sends a request and reads its response.
pub async fn call(conn: &mut Conn, request: &RequestEnvelope) -> Response {
    exchange(conn, request.to_bytes()).await
}

/// An echo request with a fresh id.
pub fn echo(payload: &str) -> RequestEnvelope {
    RequestEnvelope::new(
        lightsout_controller::fanout::new_request_id(),
        false,
        Request::Echo {
            payload: payload.into(),
        },
    )
}

/// The error body of `response`, panicking with the response when it is a success.
pub fn error_of(response: &Response) -> &ErrorBody {
    match &response.outcome {
        Outcome::Error(e) => e,
        Outcome::Ok(reply) => panic!("expected an error, got {}", shorten(&format!("{reply:?}"))),
    }
}

/// At most 300 characters of `text`: failure messages must stay readable when the subject
/// is a 64 KiB payload.
pub fn shorten(text: &str) -> String {
    if text.chars().count() <= 300 {
        return text.to_owned();
    }
    format!(
        "{}... ({} bytes)",
        text.chars().take(300).collect::<String>(),
        text.len()
    )
}

/// The reply of `response`, panicking with the error when it is one.
pub fn reply_of(response: &Response) -> &Reply {
    match &response.outcome {
        Outcome::Ok(reply) => reply,
        Outcome::Error(e) => panic!("expected success, got {} ({})", e.kind, shorten(&e.message)),
    }
}

/// Asserts `response` is an error of `kind` whose message contains `needle`.
pub fn assert_error(response: &Response, kind: ErrorKind, needle: &str) {
    let e = error_of(response);
    assert_eq!(e.kind, kind, "{}", e.message);
    assert!(
        e.message.contains(needle),
        "{:?} does not contain {needle:?}",
        e.message
    );
}

/// Asserts that `conn` still serves a well-formed echo.
pub async fn assert_usable(conn: &mut Conn) {
    let response = call(conn, &echo("still there?")).await;
    match reply_of(&response) {
        Reply::Echo { payload, .. } => assert_eq!(payload, "still there?"),
        other => panic!("{}", shorten(&format!("{other:?}"))),
    }
}

/// The check after every hostile test: a fresh legitimate client gets an echo answered,
/// promptly (within [`PATIENCE`]: connect, handshake and round trip together).
pub async fn assert_served(lab: &Lab, addr: SocketAddr) {
    let started = Instant::now();
    let mut c = tokio::time::timeout(PATIENCE, conn(lab, addr))
        .await
        .expect("a legitimate client could not connect in time");
    assert_usable(&mut c).await;
    assert!(
        started.elapsed() < PATIENCE,
        "legitimate client served only after {:?}",
        started.elapsed()
    );
}

/// One echo over a fresh connection: true when it is answered with success within
/// [`PATIENCE`], false when any step fails (refused, closed, timed out).
pub async fn try_echo(lab: &Lab, addr: SocketAddr) -> bool {
    let attempt = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let name = ServerName::try_from("localhost").ok()?;
        let t = TlsConnector::from(client_tls(lab))
            .connect(name, stream)
            .await
            .ok()?;
        let mut c = Framed::new(t, FrameCodec::new());
        c.send(echo("retry").to_bytes()).await.ok()?;
        let frame = c.next().await?.ok()?;
        let response = Response::decode(&frame).ok()?;
        matches!(response.outcome, Outcome::Ok(_)).then_some(())
    };
    tokio::time::timeout(PATIENCE, attempt)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// Like [`assert_served`] when the agent may need a moment to free a slot: retries every
/// 50 ms, fails after [`PATIENCE`]. Returns how long it took.
pub async fn assert_served_eventually(lab: &Lab, addr: SocketAddr) -> Duration {
    let started = Instant::now();
    while !try_echo(lab, addr).await {
        assert!(
            started.elapsed() < PATIENCE,
            "no legitimate client served within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// Reads from `stream` until the peer closes (EOF or reset) and returns what arrived, or
/// panics if it is still open after `limit`.
pub async fn expect_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "connection still open after {limit:?} (received {} bytes)",
                got.len()
            ),
            Ok(Ok(0) | Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Closes `stream` with a TCP reset instead of a FIN (SO_LINGER 0): the peer sees the
/// connection die, as when a machine vanishes or a process is killed with unread data.
pub fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// A real TLS 1.3 ClientHello, as the lab controller would send it.
pub fn client_hello(lab: &Lab) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(client_tls(lab), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// A ClientHello offering TLS 1.2 and nothing newer (no `supported_versions` extension),
/// built by hand: rustls cannot act as a TLS 1.2 client without its `tls12` feature.
pub fn tls12_only_client_hello() -> Vec<u8> {
    let mut extensions = Vec::new();
    // supported_groups: x25519, secp256r1.
    extensions.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed.
    extensions.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256.
    extensions.extend_from_slice(&[
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
    ]);
    let mut hello = vec![0x03, 0x03]; // legacy_version: TLS 1.2
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // no session id
    // ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256: TLS 1.2 suites only.
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]);
    hello.extend_from_slice(&[0x01, 0x00]); // compression: null
    hello.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
    hello.extend_from_slice(&extensions);
    let mut handshake = vec![0x01]; // client_hello
    handshake.extend_from_slice(&u32::try_from(hello.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record, TLS 1.0 record version
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// A 4-byte big-endian frame header announcing `len` bytes.
pub fn header(len: u32) -> [u8; 4] {
    len.to_be_bytes()
}

/// Writes raw bytes on a TLS connection (inside TLS records) and flushes.
pub async fn write_raw(stream: &mut Tls, bytes: &[u8]) {
    stream.write_all(bytes).await.expect("write");
    stream.flush().await.expect("flush");
}

/// Starts `lightsout-agent` as a process, like [`AgentProcess::start`] (which drains its log),
/// with `LIGHTSOUT_AGENT_BIN` overriding the binary (e.g. a release build for measurements).
/// `args` must include `--dry-run` or `--power-command`.
pub fn spawn_agent(lab: &Lab, args: &[&str]) -> lightsout_tests::AgentProcess {
    // LIGHTSOUT_AGENT_BIN lets the measurements run against a release build.
    let binary = std::env::var_os("LIGHTSOUT_AGENT_BIN")
        .map_or_else(|| lightsout_tests::bin("lightsout-agent"), PathBuf::from);
    lightsout_tests::AgentProcess::start_cmd(lab, std::process::Command::new(binary), args)
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

/// Opens `n` TLS connections as the lab's controller, `parallel` handshakes at a time, and
/// returns them (held open by the caller).
pub async fn tls_many(lab: &Lab, addr: SocketAddr, n: usize, parallel: usize) -> Vec<Tls> {
    let slots = Arc::new(tokio::sync::Semaphore::new(parallel));
    let config = client_tls(lab);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let slots = slots.clone();
        let config = config.clone();
        set.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let stream = TcpStream::connect(addr).await.expect("connect");
            let name = ServerName::try_from("localhost").unwrap();
            TlsConnector::from(config)
                .connect(name, stream)
                .await
                .expect("handshake")
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        out.push(joined.expect("handshake task"));
    }
    out
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
