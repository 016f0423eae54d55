//! Certificates for lightsout: where they live, how they are made, and the TLS configurations
//! built from them.
//!
//! Every agent and controller authenticates the other with certificates issued by one lab CA
//! (mutual TLS). On a single machine the quickstart needs no manual step: the first run of
//! either binary in an empty home creates the CA and a certificate for each side there. What
//! else a home may hold, and what is an error, is decided in one place: [`Home::check`].
//!
//! # Layout
//! - [`home`]: the home directory, the well-known file names in it, and its rules
//!   ([`HomeState`]: empty, ready, or able to issue this side's certificate).
//! - [`ca`]: creating the CA, issuing agent and controller certificates, the first-run setup.
//! - [`crl`]: revocation and the CRL.
//! - [`index`]: the indexes of issued and revoked certificates (JSON Lines files).
//! - [`der`]: facts read straight from a certificate's bytes: fingerprint, hex serials, the
//!   role URI prefix.
//! - [`load`]: reading PEM certificates, keys (refused when others may read them) and
//!   bundles; what a certificate says about itself ([`load::CertInfo`]).
//! - [`tls`]: rustls server and client configurations (TLS 1.3, ring) and peer identities.

pub mod ca;
pub mod crl;
pub mod der;
pub mod home;
pub mod index;
pub mod load;
pub mod tls;

pub use ca::{Ca, CertKind, IssueOptions, Issued};
pub use home::{Home, HomeState, Side};
pub use tls::{Identity, TlsFiles};

/// Everything that can go wrong with certificates, with the file concerned where there is one.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// What was expected and not found.
        what: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificates or keys.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A certificate verifier could not be built (e.g. an empty CA file, an unparsable CRL).
    #[error("TLS certificate verification: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// No home directory could be determined.
    #[error(
        "no home directory (HOME is not set): pass --home DIR or set LIGHTSOUT_HOME to the directory holding the certificates"
    )]
    NoHome,
    /// Another process holds the first-run lock for too long.
    #[error("{0}: another lightsout process is creating the CA; remove the lock if it is stale")]
    Locked(std::path::PathBuf),
    /// Nothing matches a revocation request.
    #[error("no issued certificate matches {0:?} (see `lightsout pki list`)")]
    NotFound(String),
    /// An index file is corrupt.
    #[error("{path}: line {line}: {message}")]
    Index {
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The home directory holds part of a lab: nothing is created over it.
    #[error("{}: incomplete lightsout home, nothing was changed: {problem}", .dir.display())]
    Incomplete {
        /// The home directory.
        dir: std::path::PathBuf,
        /// What is missing and what to do.
        problem: String,
    },
    /// A private key (or bundle) is readable by group or others.
    #[error(
        "{}: private key readable by group or others (mode {mode:04o}): run `chmod 600 {}`",
        .path.display(), .path.display()
    )]
    KeyMode {
        /// The file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A certificate is outside its validity period.
    #[error("{}: certificate {name:?} {problem}", .path.display())]
    Validity {
        /// The file.
        path: std::path::PathBuf,
        /// Its common name.
        name: String,
        /// `expired on DATE` or `not valid before DATE`.
        problem: String,
    },
    /// `pki init` over an existing CA.
    #[error(
        "{}: a CA (or part of a lab) is already here; `pki init` never replaces one (back it up, \
         or use another --home)",
        .0.display()
    )]
    CaExists(std::path::PathBuf),
    /// A private key file exists and the command was not told to replace it.
    #[error("{}: exists; pass --replace to overwrite it, or choose another file", .0.display())]
    Exists(std::path::PathBuf),
    /// A name or address is not valid for a certificate.
    #[error("invalid certificate name {0:?}")]
    BadName(String),
}

/// Result alias for this crate.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;
