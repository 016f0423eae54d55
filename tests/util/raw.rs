//! The raw-bytes client: what a hostile or broken peer can send, byte for byte, at each
//! layer (TCP, TLS records, frames, JSON); and the checks on what comes back.
//!
//! Well-formed requests go through [`RawClient::call`] with the protocol's own constructors
//! (`RequestEnvelope::echo(id, payload)`); the typed client of the real controller is
//! [`lightsout_controller::Client`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use lightsout_pki::TlsFiles;
use lightsout_protocol::{
    ErrorBody, ErrorKind, FrameCodec, Outcome, Reply, RequestEnvelope, Response,
};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;

use crate::{Lab, PATIENCE};

/// A raw TLS connection to an agent.
pub type Tls = TlsStream<TcpStream>;

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

/// The name a client verifies for `addr`: the IP dialled.
fn server_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
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

/// TCP connect plus TLS handshake, verifying the agent's certificate for the IP dialled.
///
/// # Errors
/// Whatever the connection or the handshake reported.
pub async fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(config)
        .connect(server_name(addr), tcp)
        .await
}

/// Completes a TLS handshake as the lab's controller (panics after [`PATIENCE`]).
pub async fn tls(lab: &Lab, addr: SocketAddr) -> Tls {
    tokio::time::timeout(PATIENCE, tls_connect(addr, lab.client_tls()))
        .await
        .expect("TLS handshake stalled")
        .expect("TLS handshake")
}

/// Like [`tls`], retrying (every 50 ms, up to [`PATIENCE`]) while the agent refuses the
/// connection: for agents at their connection cap that are about to free a slot.
pub async fn tls_eventually(lab: &Lab, addr: SocketAddr) -> Tls {
    let started = Instant::now();
    loop {
        if let Ok(Ok(t)) = tokio::time::timeout(PATIENCE, tls_connect(addr, lab.client_tls())).await
        {
            return t;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no TLS connection within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens `n` TLS connections as the lab's controller, `parallel` handshakes at a time, and
/// returns them (held open by the caller).
pub async fn tls_many(lab: &Lab, addr: SocketAddr, n: usize, parallel: usize) -> Vec<Tls> {
    let slots = Arc::new(tokio::sync::Semaphore::new(parallel));
    let config = lab.client_tls();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let slots = slots.clone();
        let config = config.clone();
        set.spawn(async move {
            let _slot = slots.acquire_owned().await;
            tls_connect(addr, config).await.expect("handshake")
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        out.push(joined.expect("handshake task"));
    }
    out
}

/// A verified TLS connection speaking raw frames: any body, any bytes.
pub struct RawClient {
    pub framed: Framed<Tls, FrameCodec>,
}

impl RawClient {
    /// Connects with the lab's controller certificate (panics after [`PATIENCE`]).
    pub async fn connect(lab: &Lab, addr: SocketAddr) -> Self {
        Self::from_stream(tls(lab, addr).await)
    }

    /// Connects from source address `from` (any 127.x.y.z stands for another machine on
    /// loopback) with `config` (another certificate); `None` when the agent closes the
    /// connection before the handshake completes, or after [`PATIENCE`].
    pub async fn connect_from(
        config: Arc<ClientConfig>,
        from: std::net::IpAddr,
        addr: SocketAddr,
    ) -> Option<Self> {
        let attempt = async {
            let socket = tokio::net::TcpSocket::new_v4().ok()?;
            socket.bind(SocketAddr::new(from, 0)).ok()?;
            let stream = socket.connect(addr).await.ok()?;
            stream.set_nodelay(true).ok()?;
            let tls = TlsConnector::from(config)
                .connect(server_name(addr), stream)
                .await
                .ok()?;
            Some(Self::from_stream(tls))
        };
        tokio::time::timeout(PATIENCE, attempt).await.ok().flatten()
    }

    /// Wraps an established TLS stream.
    pub fn from_stream(tls: Tls) -> Self {
        Self {
            framed: Framed::new(tls, FrameCodec::new()),
        }
    }

    /// The TLS stream underneath, for writes that bypass the codec.
    pub fn stream(&mut self) -> &mut Tls {
        self.framed.get_mut()
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
        write_raw(self.stream(), bytes).await;
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

    /// The next response; panics when the agent closed instead.
    pub async fn response(&mut self) -> Response {
        self.recv()
            .await
            .expect("the agent closed instead of answering")
    }

    /// Sends `body` and returns the response; panics when there is none.
    pub async fn call_body(&mut self, body: impl Into<Bytes>) -> Response {
        self.send_body(body).await.unwrap();
        self.response().await
    }

    /// Sends `request` and returns the response.
    pub async fn call(&mut self, request: &RequestEnvelope) -> Response {
        self.call_body(request.to_bytes()).await
    }

    /// One echo; asserts it succeeded and carried the payload back.
    pub async fn echo_ok(&mut self, payload: &str) {
        let id = new_id();
        let response = self.call(&RequestEnvelope::echo(&id, payload)).await;
        assert_eq!(response.id.as_deref(), Some(id.as_str()));
        match reply_of(&response) {
            Reply::Echo { payload: got, .. } => assert_eq!(got, payload),
            other => panic!("echo failed: {}", shorten(&format!("{other:?}"))),
        }
    }

    /// Asserts the connection still serves a well-formed echo.
    pub async fn assert_usable(&mut self) {
        self.echo_ok("still there?").await;
    }

    /// Resets the TCP connection (RST, no TLS close_notify, no FIN): a peer vanishing.
    pub fn reset(self) {
        let stream = self.framed.into_inner();
        stream.get_ref().0.set_zero_linger().unwrap();
        drop(stream);
    }
}

/// A fresh request id, as the controller makes them.
pub fn new_id() -> String {
    lightsout_controller::fanout::new_request_id()
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
            .send_body(RequestEnvelope::echo("probe", "hi").to_bytes())
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

/// The check after every hostile test: a fresh legitimate client gets an echo answered,
/// promptly (within [`PATIENCE`]: connect, handshake and round trip together).
pub async fn assert_served(lab: &Lab, addr: SocketAddr) {
    let started = Instant::now();
    let mut c = tokio::time::timeout(PATIENCE, RawClient::connect(lab, addr))
        .await
        .expect("a legitimate client could not connect in time");
    c.assert_usable().await;
    assert!(
        started.elapsed() < PATIENCE,
        "legitimate client served only after {:?}",
        started.elapsed()
    );
}

/// Like [`assert_served`] when the agent may need a moment to free a slot: retries every
/// 50 ms, fails after [`PATIENCE`]. Returns how long it took.
pub async fn assert_served_eventually(lab: &Lab, addr: SocketAddr) -> Duration {
    let started = Instant::now();
    loop {
        let attempt = tokio::time::timeout(PATIENCE, try_echo(addr, lab.client_tls())).await;
        if let Ok(Ok(response)) = attempt {
            if matches!(response.outcome, Outcome::Ok(_)) {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no legitimate client served within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens a plain TCP connection, writes `bytes`, and reads until the agent closes the
/// connection. Returns what it sent back (which may be nothing). Panics if the agent neither
/// answers nor closes within [`PATIENCE`].
pub async fn plain_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = tcp(addr).await;
    write_raw(&mut tcp, bytes).await;
    expect_closed(&mut tcp, PATIENCE).await
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

/// Writes raw bytes (on a TLS stream: inside TLS records) and flushes.
pub async fn write_raw<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    stream.write_all(bytes).await.expect("write");
    stream.flush().await.expect("flush");
}

/// Closes `stream` with a TCP reset instead of a FIN (SO_LINGER 0): the peer sees the
/// connection die, as when a machine vanishes or a process is killed with unread data.
pub fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// A 4-byte big-endian frame header announcing `len` bytes.
pub fn header(len: u32) -> [u8; 4] {
    len.to_be_bytes()
}

/// The first flight of a real TLS 1.3 client, as the lab controller sends it: a complete
/// ClientHello.
pub fn client_hello(lab: &Lab) -> Vec<u8> {
    let name = server_name(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut conn = rustls::ClientConnection::new(lab.client_tls(), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    assert!(hello.len() > 100 && hello[0] == 0x16, "{hello:?}");
    hello
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

/// The error body of `response`, panicking with the response when it is a success.
pub fn error_of(response: &Response) -> &ErrorBody {
    match &response.outcome {
        Outcome::Error(e) => e,
        Outcome::Ok(reply) => panic!("expected an error, got {}", shorten(&format!("{reply:?}"))),
    }
}

/// The error kind of a response, `None` when it succeeded.
pub fn error_kind(response: &Response) -> Option<ErrorKind> {
    match &response.outcome {
        Outcome::Error(e) => Some(e.kind),
        Outcome::Ok(_) => None,
    }
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
