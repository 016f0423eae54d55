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
    if certs.is_empty() {
        return Err(PkiError::Pem {
            path: path.to_path_buf(),
            what: "no certificate found (expected a PEM 'BEGIN CERTIFICATE' block)".into(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
///
/// # Errors
/// The file cannot be read or holds no private key.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, e))
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
