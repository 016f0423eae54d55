//! Facts read straight from a certificate's bytes, shared by issuing ([`crate::ca`]),
//! loading ([`crate::load`]) and the TLS side ([`crate::tls`]); nothing here depends on them.

use rustls_pki_types::CertificateDer;

/// Prefix of the SAN URI that carries a controller's role (`urn:lightsout:role:admin`).
pub const ROLE_URI_PREFIX: &str = "urn:lightsout:role:";

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a certificate's DER, lower-case hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, cert.as_ref()).as_ref())
}
