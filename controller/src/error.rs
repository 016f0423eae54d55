//! The distinct ways reaching an agent can fail. Each has a stable `kind()` used in `--json`
//! output, next to the agent-side kinds (`not_privileged`, `busy`...).

use std::time::Duration;

/// Why a request to one agent did not get an answer (or, for `wake`, why nothing was sent).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The name.
        host: String,
        /// Resolver message.
        reason: String,
    },
    /// No route to the host or network.
    #[error("host unreachable: {0}")]
    Unreachable(String),
    /// Nothing listens on the port (is the agent running?).
    #[error("connection refused (is lightsout-agent running on that port?)")]
    Refused,
    /// The TLS handshake failed: the agent's certificate is not from our CA or does not match,
    /// or the agent refused our certificate.
    #[error("TLS failure: {0}")]
    Tls(String),
    /// No complete answer within the deadline.
    #[error("timeout: no answer within {}", humantime(*.0))]
    Timeout(Duration),
    /// The agent closed the connection or sent something that is not a response.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Any other network error.
    #[error("network error: {0}")]
    Io(String),
    /// `wake`: no MAC address is known for the host.
    #[error("{0}")]
    NoMac(String),
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl ClientError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Resolve { .. } => "resolve",
            ClientError::Unreachable(_) => "unreachable",
            ClientError::Refused => "connection_refused",
            ClientError::Tls(_) => "tls",
            ClientError::Timeout(_) => "timeout",
            ClientError::Protocol(_) => "protocol",
            ClientError::Io(_) => "io",
            ClientError::NoMac(_) => "no_mac",
        }
    }

    /// Classifies an I/O error from connect, handshake or a read/write.
    pub fn from_io(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        if let Some(tls) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return ClientError::Tls(describe_tls(tls));
        }
        match e.kind() {
            K::ConnectionRefused => ClientError::Refused,
            K::HostUnreachable | K::NetworkUnreachable => ClientError::Unreachable(e.to_string()),
            K::TimedOut => ClientError::Unreachable(e.to_string()),
            K::UnexpectedEof => {
                ClientError::Protocol("the agent closed the connection without answering".into())
            }
            _ => ClientError::Io(e.to_string()),
        }
    }
}

/// Turns a rustls error into advice an administrator can act on.
fn describe_tls(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the agent's certificate is not from our CA (wrong lab, or an impostor)".into()
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the agent's certificate does not match the name dialled (issue it with --ip/--dns, or pass --tls-name)".into()
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "the agent's certificate has expired".into(),
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the agent's certificate is not valid yet (check the clocks)".into()
        }
        E::InvalidCertificate(C::Revoked) => "the agent's certificate is revoked".into(),
        E::AlertReceived(A::UnknownCA | A::BadCertificate | A::CertificateRequired | A::CertificateRevoked | A::CertificateExpired | A::AccessDenied) => {
            format!("the agent refused our certificate ({e}): is it from the agent's CA, valid, and not revoked?")
        }
        E::AlertReceived(A::ProtocolVersion) | E::PeerIncompatible(_) => {
            format!("the agent does not speak TLS 1.3 ({e})")
        }
        E::InvalidMessage(_) => format!("the peer does not speak TLS ({e}): is this a lightsout agent?"),
        other => other.to_string(),
    }
}
