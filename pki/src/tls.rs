//! rustls configurations for both sides, and who a peer is once the handshake is done.
//!
//! Crypto provider: ring. Measured on these machines (`shared/notes/tls-floor.md`), a whole
//! client process with ring costs ~2 ms against ~35 ms with aws-lc-rs (whose start-up alone is
//! ~30 ms), builds in about half the time with no C toolchain surprises, and the binaries are
//! 2 MB smaller. Handshake CPU is the same. For a CLI started once per command, that decides.
//!
//! Protocol: TLS 1.3 only. Every lightsout peer is built from this crate, so there is no
//! legacy client to accommodate, and 1.3 means forward-secret AEAD suites only. Session
//! resumption is disabled on the server: every connection presents and verifies a client
//! certificate, and the handshake cost is already inside the performance targets.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

use crate::der::ROLE_URI_PREFIX;
pub use crate::der::fingerprint;
use crate::home::Home;
use crate::{Result, load};

/// The three files a TLS endpoint needs.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The lab CA certificate: peers must chain to it.
    pub ca: PathBuf,
    /// Our certificate (chain).
    pub cert: PathBuf,
    /// Our private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// This machine's agent files in `home`.
    pub fn agent(home: &Home) -> Self {
        Self {
            ca: home.ca_cert(),
            cert: home.agent_cert(),
            key: home.agent_key(),
        }
    }

    /// This machine's controller files in `home`.
    pub fn controller(home: &Home) -> Self {
        Self {
            ca: home.ca_cert(),
            cert: home.controller_cert(),
            key: home.controller_key(),
        }
    }
}

impl TlsFiles {
    /// One bundle file (`lightsout pki issue ... --bundle`): our certificate first, then the
    /// CA certificate, then our private key.
    pub fn bundle(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self {
            ca: path.clone(),
            cert: path.clone(),
            key: path,
        }
    }

    /// Whether the three files are one bundle.
    pub fn is_bundle(&self) -> bool {
        self.ca == self.cert && self.cert == self.key
    }
}

/// What a TLS endpoint is built from, read from separate files or a bundle.
struct Material {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
}

fn material(files: &TlsFiles) -> Result<Material> {
    let (chain, anchors, key) = if files.is_bundle() {
        let (mut certs, key) = load::bundle(&files.cert)?;
        if certs.len() < 2 {
            return Err(crate::PkiError::Pem {
                path: files.cert.clone(),
                what: "a bundle holds our certificate, then the CA certificate, then the key"
                    .into(),
            });
        }
        let anchors = certs.split_off(1);
        (certs, anchors, key)
    } else {
        (
            load::certs(&files.cert)?,
            load::certs(&files.ca)?,
            load::private_key(&files.key)?,
        )
    };
    let mut roots = RootCertStore::empty();
    for cert in anchors {
        roots.add(cert)?;
    }
    Ok(Material {
        roots: Arc::new(roots),
        chain,
        key,
    })
}

/// The one crypto provider lightsout uses (see the module docs for why ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The agent's TLS configuration: TLS 1.3, client certificates required and verified against
/// the CA, no session resumption.
///
/// # Errors
/// A file cannot be read or rustls refuses its contents.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    server_config_with_crls(files, Vec::new())
}

/// Like [`server_config`], rejecting client certificates listed in `crls` at the handshake.
///
/// Only the client's own certificate is checked (the CA is the trust anchor itself), and an
/// expired CRL is still honoured: a stale list of revoked certificates is better than none.
///
/// # Errors
/// A file cannot be read or rustls refuses its contents.
pub fn server_config_with_crls(
    files: &TlsFiles,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<ServerConfig>> {
    let Material { roots, chain, key } = material(files)?;
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots, provider());
    if !crls.is_empty() {
        builder = builder.with_crls(crls).only_check_end_entity_revocation();
    }
    let verifier = builder.build()?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The controller's TLS configuration: TLS 1.3, the agent must chain to the CA and match the
/// name or address dialled, and we present our client certificate.
///
/// # Errors
/// A file cannot be read or rustls refuses its contents.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>> {
    client_config_with_crls(files, Vec::new())
}

/// Like [`client_config`], refusing agents whose certificate is listed in `crls`.
///
/// # Errors
/// A file cannot be read or rustls refuses its contents.
pub fn client_config_with_crls(
    files: &TlsFiles,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<ClientConfig>> {
    let Material { roots, chain, key } = material(files)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = if crls.is_empty() {
        builder.with_root_certificates(roots)
    } else {
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .build()?;
        builder.with_webpki_verifier(verifier)
    };
    let mut config = builder.with_client_auth_cert(chain, key)?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Who is on the other end, read from their (already verified) certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The certificate's common name.
    pub name: String,
    /// SHA-256 of the certificate, lower-case hex.
    pub fingerprint: String,
    /// The role carried as a `urn:lightsout:role:` SAN URI, if any.
    pub role: Option<String>,
    /// Serial number, lower-case hex (what a CRL lists).
    pub serial: String,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Reads the identity out of a certificate. Never fails: an unparsable name shows as `?`
/// (the certificate was verified by webpki before we get here).
pub fn identity(cert: &CertificateDer<'_>) -> Identity {
    let fingerprint = fingerprint(cert);
    let mut name = String::from("?");
    let mut role = None;
    let mut serial = String::new();
    if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) {
        serial = crate::der::hex(parsed.raw_serial());
        if let Some(cn) = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
        {
            name = cn.to_string();
        }
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            role = san.value.general_names.iter().find_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(uri) => {
                    uri.strip_prefix(ROLE_URI_PREFIX).map(str::to_owned)
                }
                _ => None,
            });
        }
    }
    Identity {
        name,
        fingerprint,
        role,
        serial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{Ca, CertKind, IssueOptions};

    #[test]
    fn a_bundle_is_enough_for_an_agent() {
        let (ca, _) = Ca::create("test CA").unwrap();
        let issued = ca
            .issue(&IssueOptions::new(CertKind::Agent, "lab-01"))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.pem");
        issued.write_bundle(&path, ca.cert_pem()).unwrap();
        let files = TlsFiles::bundle(&path);
        assert!(files.is_bundle());
        let m = material(&files).unwrap();
        assert_eq!(m.chain.len(), 1, "only our certificate is presented");
        assert_eq!(m.roots.len(), 1, "only the CA is trusted");
        server_config(&files).expect("usable");
        // A bundle without the CA is refused with a reason.
        std::fs::write(&path, format!("{}{}", issued.cert_pem, issued.key_pem)).unwrap();
        assert!(material(&files).is_err());
    }

    #[test]
    fn identity_reads_name_role_and_fingerprint() {
        let (ca, _) = Ca::create("test CA").unwrap();
        let mut opts = IssueOptions::new(CertKind::Controller, "alice");
        opts.role = Some("operator".into());
        let issued = ca.issue(&opts).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pem");
        std::fs::write(&path, &issued.cert_pem).unwrap();
        let cert = &load::certs(&path).unwrap()[0];
        let id = identity(cert);
        assert_eq!(id.name, "alice");
        assert_eq!(id.role.as_deref(), Some("operator"));
        assert_eq!(id.fingerprint.len(), 64);
    }
}
