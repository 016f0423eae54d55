//! The floor: the least a mutual-TLS request/response can cost on this machine.
//!
//! The same stack as lightsout (tokio, rustls with the ring provider, TLS 1.3, no resumption),
//! the same certificates and the same configurations (`lightsout_pki::tls`), and nothing else:
//! no CLI framework work, no first-run certificate check, no codec layer, no JSON decoding of
//! the answer, no report. It is what `shared/notes/tls-floor.md` measured: connect, handshake,
//! one small request and its response.
//!
//! - [`client_main`] (`lightsout-bench floor-client`): a whole process fanning one exchange out
//!   to many hosts, like `lightsout echo`. Against the real agents it sends the same echo frame
//!   the controller sends, so both impose the same work on the agents and the ratio isolates
//!   what the controller adds.
//! - [`server_main`] (`lightsout-bench floor-server`): a minimal mTLS server answering every
//!   frame with a fixed small frame: the floor for an agent (round trip, requests/second,
//!   memory).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use lightsout_pki::{Home, TlsFiles};
use lightsout_protocol::RequestEnvelope;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Largest frame either side reads (the protocol's limit).
const MAX_FRAME: usize = lightsout_protocol::MAX_FRAME_LEN;

/// The floor server's answer to every frame.
const SERVER_REPLY: &[u8] = br#"{"version":1,"id":null,"outcome":{"ok":{"kind":"echo"}}}"#;

/// A length-prefixed echo request, the one `lightsout echo` sends (with a fixed id).
pub fn echo_frame() -> Vec<u8> {
    let body = RequestEnvelope::echo("00000000-0000-4000-8000-000000000000", "ping").to_bytes();
    frame(&body)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads one frame; `None` on a clean end of stream before it.
async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Sends `request` (a whole frame) and reads the answer; fails unless it is a success.
async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    request: &[u8],
) -> std::io::Result<()> {
    s.write_all(request).await?;
    s.flush().await?;
    let body = read_frame(s)
        .await?
        .ok_or_else(|| std::io::Error::other("closed without an answer"))?;
    // Both lightsout agents and the floor server put `"outcome":{"ok":` in a success.
    if body.windows(14).any(|w| w == br#""outcome":{"ok"#) {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "not a success: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )))
    }
}

/// An established floor connection.
#[derive(Debug)]
pub struct FloorConn {
    tls: tokio_rustls::client::TlsStream<TcpStream>,
}

impl FloorConn {
    /// Connects and completes the handshake.
    ///
    /// # Errors
    /// Connect or handshake failed.
    pub async fn connect(
        tls: Arc<ClientConfig>,
        name: ServerName<'static>,
        addr: SocketAddr,
    ) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let tls = TlsConnector::from(tls).connect(name, tcp).await?;
        Ok(Self { tls })
    }

    /// One request/response.
    ///
    /// # Errors
    /// The exchange failed or the answer is not a success.
    pub async fn call(&mut self, request: &[u8]) -> std::io::Result<()> {
        round_trip(&mut self.tls, request).await
    }

    /// Sends close_notify, as `lightsout` does, so the server sees the same clean close.
    pub async fn close(mut self) {
        let _ = self.tls.shutdown().await;
    }
}

/// The lab's client configuration, from a lightsout home directory.
///
/// # Errors
/// The files cannot be loaded.
pub fn client_config(home: &Path) -> anyhow::Result<Arc<ClientConfig>> {
    lightsout_pki::tls::client_config(&TlsFiles::controller(&Home::at(home)))
        .context("failed to load the controller's TLS files")
}

/// The lab's agent configuration, from a lightsout home directory.
///
/// # Errors
/// The files cannot be loaded.
pub fn server_config(home: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    lightsout_pki::tls::server_config(&TlsFiles::agent(&Home::at(home)))
        .context("failed to load the agent's TLS files")
}

/// `floor-client`: one exchange with every target, `parallel` at a time, each under
/// `timeout`. Prints `N ok, M failed`; returns whether all succeeded.
///
/// # Errors
/// Bad arguments or certificates.
pub async fn client_main(
    home: &Path,
    tls_name: &str,
    parallel: usize,
    timeout: Duration,
    targets: &[SocketAddr],
) -> anyhow::Result<bool> {
    let tls = client_config(home)?;
    let name = ServerName::try_from(tls_name.to_owned()).context("invalid --tls-name")?;
    let request: Arc<[u8]> = echo_frame().into();
    let slots = Arc::new(Semaphore::new(parallel.max(1)));
    let mut set = JoinSet::new();
    for &addr in targets {
        let (tls, name, request, slots) =
            (tls.clone(), name.clone(), request.clone(), slots.clone());
        set.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let exchange = async {
                let mut conn = FloorConn::connect(tls, name, addr).await?;
                conn.call(&request).await?;
                conn.close().await;
                std::io::Result::Ok(())
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("{addr}: {e}")),
                Err(_) => Err(format!("{addr}: timeout")),
            }
        });
    }
    let (mut ok, mut failed) = (0usize, 0usize);
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                failed += 1;
                eprintln!("floor-client: {e}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("floor-client: task failed: {e}");
            }
        }
    }
    println!("{ok} ok, {failed} failed");
    Ok(failed == 0)
}

/// `floor-server`: listens on every address (deep backlog, like the agent), prints
/// `listening on FIRST`, and answers every frame with a fixed success frame until killed.
///
/// # Errors
/// An address cannot be bound or the certificates cannot be loaded.
pub async fn server_main(home: &Path, listen: &[SocketAddr]) -> anyhow::Result<()> {
    let acceptor = TlsAcceptor::from(server_config(home)?);
    let mut bound = Vec::new();
    for &addr in listen {
        // The agent's listener: SO_REUSEADDR and a backlog of 1,024 (see tls-floor.md).
        let listener = lightsout_agent::listener::bind(addr)
            .with_context(|| format!("failed to listen on {addr}"))?;
        bound.push(listener);
    }
    let first = bound
        .first()
        .map(tokio::net::TcpListener::local_addr)
        .transpose()?
        .context("nothing to listen on")?;
    println!("listening on {first}");
    let reply: Arc<[u8]> = frame(SERVER_REPLY).into();
    let mut accept_loops = JoinSet::new();
    for listener in bound {
        let (acceptor, reply) = (acceptor.clone(), reply.clone());
        accept_loops.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (acceptor, reply) = (acceptor.clone(), reply.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    while let Ok(Some(_)) = read_frame(&mut tls).await {
                        if tls.write_all(&reply).await.is_err() || tls.flush().await.is_err() {
                            return;
                        }
                    }
                    let _ = tls.shutdown().await;
                });
            }
        });
    }
    while accept_loops.join_next().await.is_some() {}
    Ok(())
}

/// Requests/second: `connections` floor connections calling back to back for `window`.
///
/// # Errors
/// A connection or an exchange failed.
pub async fn load(
    tls: Arc<ClientConfig>,
    name: ServerName<'static>,
    addr: SocketAddr,
    connections: usize,
    window: Duration,
) -> anyhow::Result<f64> {
    let request: Arc<[u8]> = echo_frame().into();
    let mut conns = Vec::new();
    for _ in 0..connections {
        conns.push(FloorConn::connect(tls.clone(), name.clone(), addr).await?);
    }
    let started = Instant::now();
    let deadline = started + window;
    let mut set = JoinSet::new();
    for mut c in conns {
        let request = request.clone();
        set.spawn(async move {
            let mut done = 0u64;
            // Bounded by the deadline and, to be sure, by a count.
            while Instant::now() < deadline && done < 10_000_000 {
                c.call(&request).await?;
                done += 1;
            }
            c.close().await;
            std::io::Result::Ok(done)
        });
    }
    let mut total = 0u64;
    while let Some(joined) = set.join_next().await {
        total += joined??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_through_the_reader() {
        let bytes = echo_frame();
        let mut reader = &bytes[..];
        let body = read_frame(&mut reader).await.unwrap().unwrap();
        let envelope = RequestEnvelope::decode(&body).unwrap();
        assert!(matches!(
            envelope.request,
            lightsout_protocol::Request::Echo { .. }
        ));
        assert!(read_frame(&mut reader).await.unwrap().is_none());
    }

    #[test]
    fn the_server_reply_is_a_success() {
        let body = SERVER_REPLY;
        assert!(body.windows(14).any(|w| w == br#""outcome":{"ok"#));
    }
}
