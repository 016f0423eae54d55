//! Reading PEM files, with errors that name the file.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{PkiError, Result};

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> PkiError {
    match e {
        rustls_pki_types::pem::Error::Io(source) => PkiError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => PkiError::Pem {
            path: path.to_path_buf(),
            what: other.to_string(),
        },
    }
}

/// All certificates in a PEM file, in order (leaf first for a chain).
///
/// # Errors
/// The file cannot be read, is not PEM, or holds no certificate.
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    at_least_one(path, &certs)?;
    Ok(certs)
}

/// An error naming `path` when it held no certificate.
fn at_least_one(path: &Path, certs: &[CertificateDer<'_>]) -> Result<()> {
    if certs.is_empty() {
        return Err(PkiError::Pem {
            path: path.to_path_buf(),
            what: "no certificate found (expected a PEM 'BEGIN CERTIFICATE' block)".into(),
        });
    }
    Ok(())
}

/// The first private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
///
/// # Errors
/// The file cannot be read, is readable by group or others ([`check_private`]), or holds no
/// private key.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    check_private(path)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, e))
}

/// A bundle's certificates (ours first, then the CA) and its key, from one read of the file:
/// a bundle replaced while we read (a rotation's rename) never yields one file's certificate
/// with another's key.
///
/// # Errors
/// The file cannot be read, is readable by group or others, or lacks certificates or a key.
pub fn bundle(path: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    check_private(path)?;
    let bytes = std::fs::read(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    at_least_one(path, &certs)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| pem_error(path, e))?;
    Ok((certs, key))
}

/// Reads a whole file as text, naming it on error.
///
/// # Errors
/// The file cannot be read.
pub fn text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Refuses a private key (or bundle) that group or others may read, as ssh does: such a key
/// may already be someone else's.
///
/// # Errors
/// [`PkiError::KeyMode`] naming the file and its mode, or the file cannot be examined.
pub fn check_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| PkiError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(PkiError::KeyMode {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// What a certificate says about itself: who, which one, and when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Common name (`?` when it has none).
    pub name: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    /// Start of validity, Unix seconds.
    pub not_before_unix: i64,
    /// End of validity, Unix seconds.
    pub not_after_unix: i64,
}

/// End of a DER certificate's validity, Unix seconds; `None` if it does not parse. One parse
/// and nothing else: for callers that look at many certificates (a fan-out's agents).
pub fn not_after_unix(der: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

impl CertInfo {
    /// Reads a DER certificate; `None` if it does not parse.
    pub fn from_der(der: &CertificateDer<'_>) -> Option<Self> {
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let validity = parsed.validity();
        let name = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or("?")
            .to_owned();
        Some(Self {
            name,
            fingerprint: crate::der::fingerprint(der),
            not_before_unix: validity.not_before.timestamp(),
            not_after_unix: validity.not_after.timestamp(),
        })
    }

    /// The first certificate of a PEM file (a bundle's is this machine's own).
    ///
    /// # Errors
    /// The file cannot be read or holds no parsable certificate.
    pub fn from_file(path: &Path) -> Result<Self> {
        let certs = certs(path)?;
        certs
            .first()
            .and_then(Self::from_der)
            .ok_or_else(|| PkiError::Pem {
                path: path.to_path_buf(),
                what: "the certificate cannot be parsed".into(),
            })
    }

    /// Whole days of validity left at `now_unix` (negative once expired).
    pub fn days_left(&self, now_unix: i64) -> i64 {
        (self.not_after_unix - now_unix).div_euclid(86_400)
    }

    /// Whether the certificate is valid at `now_unix`.
    ///
    /// # Errors
    /// [`PkiError::Validity`] (naming `path`) when expired or not yet valid.
    pub fn check_valid(&self, path: &Path, now_unix: i64) -> Result<()> {
        let problem = if now_unix > self.not_after_unix {
            format!("expired on {}", date(self.not_after_unix))
        } else if now_unix < self.not_before_unix {
            format!("is not valid before {}", date(self.not_before_unix))
        } else {
            return Ok(());
        };
        Err(PkiError::Validity {
            path: path.to_path_buf(),
            name: self.name.clone(),
            problem,
        })
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| unix.to_string())
}
