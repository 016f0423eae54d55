//! One connection to one agent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lightsout_protocol::{FrameCodec, RequestEnvelope, Response};
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;

use crate::error::ClientError;
use crate::target::Target;

/// An established, authenticated connection to an agent. Carries any number of requests.
#[derive(Debug)]
pub struct Client {
    framed: Framed<TlsStream<TcpStream>, FrameCodec>,
    peer: SocketAddr,
    peer_cert: Option<CertificateDer<'static>>,
}

impl Client {
    /// Resolves `target`, connects (trying each address in turn), and completes the TLS
    /// handshake. The agent's certificate must chain to our CA and match `tls_name` when
    /// given, else the host as typed (name or IP address).
    ///
    /// No deadline of its own: callers wrap it in one (see [`crate::fanout`]).
    ///
    /// # Errors
    /// [`ClientError`] saying which step failed.
    pub async fn connect(
        target: &Target,
        tls: Arc<ClientConfig>,
        tls_name: Option<&str>,
    ) -> Result<Self, ClientError> {
        let name = tls_name.unwrap_or(&target.host);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| ClientError::Tls(format!("{name:?} is not a valid TLS server name")))?;
        let addrs: Vec<SocketAddr> = match target.host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, target.port)],
            Err(_) => tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .map_err(|e| ClientError::Resolve {
                    host: target.host.clone(),
                    reason: e.to_string(),
                })?
                .collect(),
        };
        let mut last = ClientError::Resolve {
            host: target.host.clone(),
            reason: "no addresses".into(),
        };
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let tls = TlsConnector::from(tls.clone())
                        .connect(server_name.clone(), stream)
                        .await
                        .map_err(ClientError::from_io)?;
                    // The agent's certificate, as verified in the handshake: its dates feed
                    // the status board's expiry warning, with no request of its own.
                    let peer_cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(<[_]>::first)
                        .map(|c| c.clone().into_owned());
                    return Ok(Self {
                        framed: Framed::new(tls, FrameCodec::new()),
                        peer: addr,
                        peer_cert,
                    });
                }
                Err(e) => last = ClientError::from_io(e),
            }
        }
        Err(last)
    }

    /// The address actually connected to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The agent's certificate, as presented (and verified) in the handshake. Kept as DER
    /// and parsed only by whoever needs it (the status board's expiry note).
    pub fn peer_cert(&self) -> Option<&CertificateDer<'static>> {
        self.peer_cert.as_ref()
    }

    /// Sends one request and waits for its response.
    ///
    /// # Errors
    /// [`ClientError`] when the exchange fails or the reply is not a response to this id.
    pub async fn call(&mut self, request: &RequestEnvelope) -> Result<Response, ClientError> {
        self.framed
            .send(request.to_bytes())
            .await
            .map_err(ClientError::from_io)?;
        let body = match self.framed.next().await {
            Some(Ok(body)) => body,
            Some(Err(e)) => return Err(ClientError::from_io(e)),
            None => {
                return Err(ClientError::Protocol(
                    "the agent closed the connection without answering".into(),
                ));
            }
        };
        let response = Response::decode(&body)
            .map_err(|e| ClientError::Protocol(format!("unreadable response: {e}")))?;
        // A reply with no id is an error about a frame the agent could not read: ours.
        if response.id.as_deref().is_some_and(|id| id != request.id) {
            return Err(ClientError::Protocol(format!(
                "response is for request {:?}, not {:?}",
                response.id, request.id
            )));
        }
        Ok(response)
    }

    /// Closes the connection politely (TLS close_notify), within `limit`.
    pub async fn close(mut self, limit: Duration) {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(limit, self.framed.get_mut().shutdown()).await;
    }
}
