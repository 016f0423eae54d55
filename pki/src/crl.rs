//! Revocation: the list of revoked certificates (kept in [`crate::index`]) and the CRL signed
//! by the CA that agents and controllers load.
//!
//! Both indexes are JSON Lines files in the home directory, appended to and never rewritten,
//! so a crash mid-write loses at most the line being written. The CRL (`crl.pem`) is rebuilt
//! from `revoked.jsonl` on every revocation and written atomically.

use std::collections::HashSet;
use std::path::Path;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;

pub use crate::ca::record_issued;
use crate::ca::{Ca, write_file};
use crate::home::Home;
use crate::index::append_line;
pub use crate::index::{IssuedRecord, RevokedRecord, list_issued, list_revoked};
use crate::{PkiError, Result};

/// How long a CRL says it is current. Agents honour an older CRL anyway (a stale list of
/// revoked certificates beats none); this only informs other tools.
const CRL_VALIDITY_DAYS: i64 = 365;

/// Which certificates to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every certificate issued under this common name.
    Name(String),
    /// The certificate with this serial (hex, colons allowed).
    Serial(String),
    /// The certificate with this SHA-256 fingerprint (hex, colons allowed).
    Fingerprint(String),
    /// Every certificate issued under this common name except the latest one: what a
    /// renewal replaced.
    Superseded(String),
}

fn normalise_hex(s: &str) -> String {
    s.chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// A serial number in one form whatever form it was given in: lower-case hex, no colons, no
/// leading zero bytes (`00:73:AB` and `73ab` are the same certificate; openssl shows the
/// first, our index the second).
pub fn canonical_serial(s: &str) -> String {
    let hex = normalise_hex(s);
    let digits = hex.trim_start_matches('0');
    if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits.to_owned()
    }
}

/// The serials revoked so far, in [`canonical_serial`] form, with when.
///
/// # Errors
/// The index cannot be read or is corrupt.
pub fn revoked_serials_index(home: &Home) -> Result<std::collections::HashMap<String, i64>> {
    Ok(list_revoked(home)?
        .into_iter()
        .map(|r| (canonical_serial(&r.serial), r.revoked_unix))
        .collect())
}

/// Revokes the certificates matching `selector` and rewrites the CRL. A serial or
/// fingerprint not in the index can still be revoked by serial (certificates issued before
/// the index existed). Returns what was newly revoked (empty if already revoked).
///
/// # Errors
/// Nothing matches, or a file cannot be written.
pub fn revoke(home: &Home, ca: &Ca, selector: &Selector) -> Result<Vec<RevokedRecord>> {
    let issued = list_issued(home)?;
    let already: HashSet<String> = list_revoked(home)?
        .into_iter()
        .map(|r| canonical_serial(&r.serial))
        .collect();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let matches: Vec<RevokedRecord> = match selector {
        Selector::Name(name) => issued
            .iter()
            .filter(|r| &r.name == name)
            .map(|r| RevokedRecord {
                serial: r.serial.clone(),
                name: r.name.clone(),
                fingerprint: r.fingerprint.clone(),
                revoked_unix: now,
            })
            .collect(),
        Selector::Superseded(name) => {
            let mut under: Vec<&IssuedRecord> = issued.iter().filter(|r| &r.name == name).collect();
            // The index is appended to in issue order: the last line is the latest.
            under.pop();
            if under.is_empty() && issued.iter().any(|r| &r.name == name) {
                // Only one certificate under this name: nothing is superseded.
                write_crl(home, ca)?;
                return Ok(Vec::new());
            }
            under
                .into_iter()
                .map(|r| RevokedRecord {
                    serial: r.serial.clone(),
                    name: r.name.clone(),
                    fingerprint: r.fingerprint.clone(),
                    revoked_unix: now,
                })
                .collect()
        }
        Selector::Fingerprint(fp) => {
            let fp = normalise_hex(fp);
            issued
                .iter()
                .filter(|r| r.fingerprint == fp)
                .map(|r| RevokedRecord {
                    serial: r.serial.clone(),
                    name: r.name.clone(),
                    fingerprint: r.fingerprint.clone(),
                    revoked_unix: now,
                })
                .collect()
        }
        Selector::Serial(serial) => {
            let given = normalise_hex(serial);
            let serial = canonical_serial(&given);
            if serial.is_empty()
                || !serial.chars().all(|c| c.is_ascii_hexdigit())
                || serial.len() > 40
            {
                return Err(PkiError::NotFound(given));
            }
            let known = issued
                .iter()
                .find(|r| canonical_serial(&r.serial) == serial);
            vec![RevokedRecord {
                // The index's own form when known: the CRL must list the bytes the
                // certificate carries.
                serial: known.map_or_else(|| serial.clone(), |r| r.serial.clone()),
                name: known.map(|r| r.name.clone()).unwrap_or_default(),
                fingerprint: known.map(|r| r.fingerprint.clone()).unwrap_or_default(),
                revoked_unix: now,
            }]
        }
    };
    if matches.is_empty() {
        let what = match selector {
            Selector::Name(s)
            | Selector::Serial(s)
            | Selector::Fingerprint(s)
            | Selector::Superseded(s) => s.clone(),
        };
        return Err(PkiError::NotFound(what));
    }
    let mut newly = Vec::new();
    for record in matches {
        if !already.contains(&canonical_serial(&record.serial)) {
            append_line(&home.revoked_index(), &record)?;
            newly.push(record);
        }
    }
    write_crl(home, ca)?;
    Ok(newly)
}

/// Rebuilds `crl.pem` from the revoked index, signed by `ca`.
///
/// # Errors
/// Signing failed or the file cannot be written.
pub fn write_crl(home: &Home, ca: &Ca) -> Result<()> {
    let revoked = list_revoked(home)?;
    let now = OffsetDateTime::now_utc();
    let mut revoked_certs = Vec::new();
    for r in &revoked {
        let bytes = (0..r.serial.len())
            .step_by(2)
            .filter_map(|i| {
                r.serial
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Vec<u8>>();
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&bytes),
            revocation_time: OffsetDateTime::from_unix_timestamp(r.revoked_unix).unwrap_or(now),
            reason_code: None,
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(5),
        next_update: now + time::Duration::days(CRL_VALIDITY_DAYS),
        crl_number: SerialNumber::from_slice(&now.unix_timestamp().to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(ca.issuer())?;
    write_file(&home.crl(), crl.pem()?.as_bytes(), false)
}

/// Loads the CRLs in a PEM file.
///
/// # Errors
/// The file cannot be read or holds no CRL.
pub fn load(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| PkiError::Pem {
            path: path.to_path_buf(),
            what: e.to_string(),
        })?;
    if crls.is_empty() {
        return Err(PkiError::Pem {
            path: path.to_path_buf(),
            what: "no CRL found (expected a PEM 'BEGIN X509 CRL' block)".into(),
        });
    }
    Ok(crls)
}

/// The serial numbers (lower-case hex) listed in `crls`. Used to drop connections of a
/// certificate revoked while connected; the handshake check itself is webpki's.
pub fn revoked_serials(crls: &[CertificateRevocationListDer<'_>]) -> HashSet<String> {
    let mut out = HashSet::new();
    for crl in crls {
        if let Ok((_, parsed)) = x509_parser::parse_x509_crl(crl.as_ref()) {
            out.extend(
                parsed
                    .iter_revoked_certificates()
                    .map(|r| crate::ca::hex(r.raw_serial())),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CertKind, IssueOptions, ensure_local};

    #[test]
    fn a_serial_in_colon_form_revokes_the_certificate_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        ensure_local(&home, crate::Side::Controller).unwrap();
        let ca = Ca::load_home(&home).unwrap();
        let opts = IssueOptions::new(CertKind::Agent, "lab-07");
        let issued = ca.issue(&opts).unwrap();
        record_issued(&home, &opts, &issued).unwrap();
        let pairs: Vec<String> = (0..issued.serial.len())
            .step_by(2)
            .map(|i| issued.serial[i..i + 2].to_uppercase())
            .collect();
        let revoked = revoke(
            &home,
            &ca,
            &Selector::Serial(format!("00:{}", pairs.join(":"))),
        )
        .unwrap();
        assert_eq!(revoked.len(), 1);
        assert_eq!(revoked[0].name, "lab-07", "known by its serial, not `?`");
        assert_eq!(revoked[0].serial, issued.serial, "the index's form");
        assert!(
            revoked_serials_index(&home)
                .unwrap()
                .contains_key(&issued.serial)
        );
        let crls = load(&home.crl()).unwrap();
        assert!(revoked_serials(&crls).contains(&issued.serial));
    }

    #[test]
    fn revoke_by_name_lists_serial_in_crl() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        ensure_local(&home, crate::Side::Controller).unwrap();
        let ca = Ca::load_home(&home).unwrap();
        let opts = IssueOptions::new(CertKind::Controller, "lost-laptop");
        let issued = ca.issue(&opts).unwrap();
        record_issued(&home, &opts, &issued).unwrap();

        let revoked = revoke(&home, &ca, &Selector::Name("lost-laptop".into())).unwrap();
        assert_eq!(revoked.len(), 1);
        assert_eq!(revoked[0].serial, issued.serial);
        let crls = load(&home.crl()).unwrap();
        assert!(revoked_serials(&crls).contains(&issued.serial));
        // Idempotent: revoking again adds nothing.
        assert!(
            revoke(&home, &ca, &Selector::Name("lost-laptop".into()))
                .unwrap()
                .is_empty()
        );
        // Unknown names are an error, not a silent no-op.
        assert!(matches!(
            revoke(&home, &ca, &Selector::Name("nobody".into())),
            Err(PkiError::NotFound(_))
        ));
        // By serial in openssl's form (colons, capitals, a leading zero byte): the same one.
        let colons = format!("00:{}", issued.serial.to_uppercase());
        assert!(
            revoke(&home, &ca, &Selector::Serial(colons))
                .unwrap()
                .is_empty()
        );
        // By fingerprint with colons and capitals.
        let fp = issued.fingerprint.to_uppercase();
        assert!(
            revoke(&home, &ca, &Selector::Fingerprint(fp))
                .unwrap()
                .is_empty()
        );
    }
}
