//! Answering LAN discovery probes (`--discoverable`; off by default).
//!
//! A UDP socket on the agent's port receives probes ([`lightsout_protocol::discovery`]) and
//! answers each well-formed one with the agent's certificate name, the address to dial, the
//! TCP port and the certificate's fingerprint — nothing else. Malformed datagrams are ignored
//! without a word, answers are rate-limited, and an answer is never larger than the probe
//! (no amplification towards a spoofed source).
//!
//! The socket is bound to the unspecified address, because on Linux a socket bound to one
//! unicast address never receives broadcasts; SO_REUSEADDR lets several agents on one host
//! (tests, demos) share the port, and each then receives broadcast probes. An agent that
//! listens on one specific address still answers only probers on that address's network.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::time::{Duration, Instant};

use lightsout_protocol::discovery::{Announcement, PROBE_LEN, is_probe};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

/// Answers sent per [`RATE_WINDOW`] at most; the rest are dropped.
const ANSWERS_PER_WINDOW: u32 = 20;
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// What this agent announces about itself.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    /// The certificate's common name.
    pub name: String,
    /// SHA-256 of the certificate, lower-case hex.
    pub fingerprint: String,
}

impl AgentIdentity {
    /// Reads the identity from the agent's certificate file.
    ///
    /// # Errors
    /// The file cannot be read or holds no certificate.
    pub fn from_cert_file(path: &std::path::Path) -> Result<Self, lightsout_pki::PkiError> {
        let certs = lightsout_pki::load::certs(path)?;
        let id = lightsout_pki::tls::identity(&certs[0]);
        Ok(Self {
            name: id.name,
            fingerprint: id.fingerprint,
        })
    }
}

/// The bound discovery socket.
#[derive(Debug)]
pub struct Responder {
    socket: UdpSocket,
    listen: SocketAddr,
    identity: AgentIdentity,
}

impl Responder {
    /// Binds UDP on the port of `listen` (the agent's TCP address).
    ///
    /// # Errors
    /// The port cannot be bound.
    pub fn bind(listen: SocketAddr, identity: AgentIdentity) -> std::io::Result<Self> {
        let v6_only = matches!(listen.ip(), IpAddr::V6(ip) if !ip.is_unspecified());
        let addr = if v6_only {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, listen.port()))
        } else {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, listen.port()))
        };
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        if v6_only {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        Ok(Self {
            socket: UdpSocket::from_std(socket.into())?,
            listen,
            identity,
        })
    }

    /// The bound UDP address.
    ///
    /// # Errors
    /// See [`std::net::UdpSocket::local_addr`].
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Answers probes until `stop` completes.
    pub async fn serve(self, stop: impl Future<Output = ()>) {
        info!(udp = %self.local_addr().map(|a| a.to_string()).unwrap_or_default(), name = %self.identity.name, "answering discovery probes");
        tokio::pin!(stop);
        // One byte more than a probe, so an oversized datagram is seen as such.
        let mut buf = vec![0u8; PROBE_LEN + 1];
        let mut window = (Instant::now(), 0u32);
        loop {
            let (n, peer) = tokio::select! {
                () = &mut stop => return,
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok(r) => r,
                    Err(e) => {
                        debug!(error = %e, "discovery receive failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            if !is_probe(&buf[..n]) || peer.port() == 0 {
                continue;
            }
            if window.0.elapsed() >= RATE_WINDOW {
                window = (Instant::now(), 0);
            }
            if window.1 >= ANSWERS_PER_WINDOW {
                continue;
            }
            window.1 += 1;
            let Some(address) = self.address_for(peer) else {
                continue;
            };
            let answer = Announcement::new(
                self.identity.name.clone(),
                address,
                self.listen.port(),
                self.identity.fingerprint.clone(),
            );
            let Some(bytes) = answer.to_bytes() else {
                warn!("discovery answer would exceed the probe size: not answering");
                continue;
            };
            if let Err(e) = self.socket.send_to(&bytes, peer).await {
                debug!(%peer, error = %e, "discovery answer not sent");
            } else {
                debug!(%peer, "answered a discovery probe");
            }
        }
    }

    /// The address a prober at `peer` should dial: the listen address when it is a specific
    /// one, else the address this machine uses to reach the prober.
    ///
    /// An agent listening on one specific address answers only probes that reach it over
    /// that address's network (the route back to the prober leaves from the listen address):
    /// the socket has to be bound to every address to hear broadcasts, but an agent told to
    /// serve one network must not announce itself on the others. Loopback listeners answer
    /// loopback probers (tests and demos run several on one host).
    fn address_for(&self, peer: SocketAddr) -> Option<IpAddr> {
        let ip = self.listen.ip().to_canonical();
        let local = route_local(peer)?.to_canonical();
        if ip.is_unspecified() {
            return Some(local);
        }
        let same_network = local == ip || (ip.is_loopback() && local.is_loopback());
        same_network.then_some(ip)
    }
}

/// The local address this machine uses to reach `peer`, from the kernel's routing table.
fn route_local(peer: SocketAddr) -> Option<IpAddr> {
    let probe_socket = if peer.is_ipv4() {
        StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        StdUdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))
    }
    .ok()?;
    // connect() on UDP sends nothing: it only asks the kernel for the route.
    probe_socket.connect(peer).ok()?;
    probe_socket.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn responder(listen: &str) -> Responder {
        let identity = AgentIdentity {
            name: "lab-01".into(),
            fingerprint: "ff".into(),
        };
        // Port 0: the UDP socket gets a free port; only the listen *address* matters here.
        Responder::bind(listen.parse().unwrap(), identity).unwrap()
    }

    #[tokio::test]
    async fn a_specific_listen_address_answers_only_its_own_network() {
        let prober: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        // Every address: answers with the address the prober reaches us on.
        assert_eq!(
            responder("0.0.0.0:0").address_for(prober),
            Some(IpAddr::from([127, 0, 0, 1]))
        );
        // A loopback listener answers a loopback prober with its own address.
        assert_eq!(
            responder("127.0.0.3:0").address_for(prober),
            Some(IpAddr::from([127, 0, 0, 3]))
        );
        // An agent serving another network (documentation range) stays silent to it.
        assert_eq!(responder("192.0.2.10:0").address_for(prober), None);
    }
}
