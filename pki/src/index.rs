//! The CA's two indexes in the home directory, `issued.jsonl` and `revoked.jsonl`: JSON Lines
//! files appended to (and synced) and never rewritten, so a crash mid-write loses at most the
//! line being written. Plain records and their files only: issuing lives in [`crate::ca`],
//! revoking and the CRL in [`crate::crl`].

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::home::Home;
use crate::{PkiError, Result};

/// One certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedRecord {
    /// Common name.
    pub name: String,
    /// `agent` or `controller`.
    pub kind: String,
    /// Role, for controllers.
    pub role: Option<String>,
    /// Extra IP address SANs (what `pki renew` issues again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<std::net::IpAddr>,
    /// Extra DNS SANs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// SHA-256 fingerprint, lower-case hex.
    pub fingerprint: String,
    /// Issue time, Unix seconds.
    pub issued_unix: i64,
    /// End of validity, Unix seconds.
    pub not_after_unix: i64,
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedRecord {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// Common name, when known.
    pub name: String,
    /// SHA-256 fingerprint, when known.
    pub fingerprint: String,
    /// Revocation time, Unix seconds.
    pub revoked_unix: i64,
}

pub(crate) fn append_line<T: Serialize>(path: &Path, record: &T) -> Result<()> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut line = serde_json::to_string(record).map_err(|e| PkiError::Index {
        path: path.to_path_buf(),
        line: 0,
        message: e.to_string(),
    })?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    file.write_all(line.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PkiError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| PkiError::Index {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// Every certificate the home's CA issued.
///
/// # Errors
/// The index cannot be read or is corrupt.
pub fn list_issued(home: &Home) -> Result<Vec<IssuedRecord>> {
    read_lines(&home.issued_index())
}

/// Every certificate revoked so far.
///
/// # Errors
/// The index cannot be read or is corrupt.
pub fn list_revoked(home: &Home) -> Result<Vec<RevokedRecord>> {
    read_lines(&home.revoked_index())
}
