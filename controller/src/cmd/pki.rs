//! `lightsout pki ...`: the CA and certificates for other machines.

use std::path::{Path, PathBuf};

use lightsout_pki::{PkiError, ca};

use crate::cli::{IssueCommand, PkiCommand};
use lightsout_pki::crl::{self, Selector};
use lightsout_pki::{Ca, CertKind, Home, IssueOptions};

/// Why a `pki` command failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiCommandError {
    /// Issuing or revoking needs the CA's key, and this home has none.
    #[error(
        "no CA key at {}: run `lightsout pki init` first (on the machine that holds the CA)",
        .0.display()
    )]
    NoCa(PathBuf),
    /// The CA's files are there but unusable.
    #[error("failed to load the CA")]
    LoadCa(#[source] PkiError),
    /// `pki revoke` without NAME, `--serial` or `--fingerprint`.
    #[error("name a certificate: NAME, --serial or --fingerprint")]
    NoSelector,
    /// A certificate name that would not make a file name.
    #[error("invalid name {0:?}: use a host or user name")]
    InvalidName(String),
    /// The home directory, the CA, the CRL or a certificate file.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

fn load_ca(home: &Home) -> Result<Ca, PkiCommandError> {
    if !home.ca_key().exists() {
        return Err(PkiCommandError::NoCa(home.ca_key()));
    }
    Ca::load_home(home).map_err(PkiCommandError::LoadCa)
}

/// Runs a pki subcommand.
///
/// # Errors
/// Files cannot be read or written, or a name is invalid.
pub fn run(cmd: &PkiCommand, home: Option<&Path>) -> Result<(), PkiCommandError> {
    let home = Home::resolve(home)?;
    match cmd {
        PkiCommand::Init => {
            let created = ca::ensure_local(&home)?;
            if created {
                println!(
                    "created the lab CA and this machine's certificates in {}",
                    home.dir().display()
                );
            } else {
                println!("a CA already exists in {}", home.dir().display());
            }
            println!("CA certificate: {}", home.ca_cert().display());
            println!(
                "keep {} private: whoever holds it can issue certificates",
                home.ca_key().display()
            );
            Ok(())
        }
        PkiCommand::Revoke {
            name,
            serial,
            fingerprint,
        } => {
            let ca = load_ca(&home)?;
            let selector = match (name, serial, fingerprint) {
                (Some(n), _, _) => Selector::Name(n.clone()),
                (_, Some(s), _) => Selector::Serial(s.clone()),
                (_, _, Some(f)) => Selector::Fingerprint(f.clone()),
                _ => return Err(PkiCommandError::NoSelector),
            };
            let revoked = crl::revoke(&home, &ca, &selector)?;
            if revoked.is_empty() {
                println!("already revoked; CRL rewritten");
            }
            for r in &revoked {
                println!(
                    "revoked {} (serial {})",
                    if r.name.is_empty() { "?" } else { &r.name },
                    r.serial
                );
            }
            println!(
                "CRL: {} — copy it to the agents and reload them (SIGHUP)",
                home.crl().display()
            );
            Ok(())
        }
        PkiCommand::List => {
            let revoked: std::collections::HashSet<String> = crl::list_revoked(&home)?
                .into_iter()
                .map(|r| r.serial)
                .collect();
            println!(
                "{:<11} {:<28} {:<9} {:<10} {:<8} SERIAL",
                "KIND", "NAME", "ROLE", "EXPIRES", "STATUS"
            );
            for r in crl::list_issued(&home)? {
                let expires = time::OffsetDateTime::from_unix_timestamp(r.not_after_unix)
                    .map(|t| t.date().to_string())
                    .unwrap_or_default();
                let status = if revoked.contains(&r.serial) {
                    "revoked"
                } else {
                    "valid"
                };
                println!(
                    "{:<11} {:<28} {:<9} {:<10} {:<8} {}",
                    r.kind,
                    r.name,
                    r.role.as_deref().unwrap_or("-"),
                    expires,
                    status,
                    r.serial
                );
            }
            Ok(())
        }
        PkiCommand::Issue(issue) => {
            let ca = load_ca(&home)?;
            let (opts, out) = match issue {
                IssueCommand::Agent {
                    name,
                    ips,
                    dns,
                    out,
                } => {
                    let mut o = IssueOptions::new(CertKind::Agent, name.clone());
                    o.ips.clone_from(ips);
                    o.dns.clone_from(dns);
                    o.validity_days = out.days;
                    (o, out)
                }
                IssueCommand::Controller { name, role, out } => {
                    let mut o = IssueOptions::new(CertKind::Controller, name.clone());
                    o.role = Some(role.clone());
                    o.validity_days = out.days;
                    (o, out)
                }
            };
            if opts.name.is_empty() || opts.name.contains(['/', '\\']) || opts.name.starts_with('.')
            {
                return Err(PkiCommandError::InvalidName(opts.name));
            }
            let issued = ca.issue(&opts)?;
            crl::record_issued(&home, &opts, &issued)?;
            if let Some(bundle) = &out.bundle {
                issued.write_bundle(bundle, ca.cert_pem())?;
                println!(
                    "bundle (certificate, CA certificate, key; mode 0600): {}",
                    bundle.display()
                );
                println!("copy it to the machine securely, e.g. /etc/lightsout/agent-bundle.pem");
            } else {
                let dir = out.out.clone().unwrap_or_else(|| home.issued_dir());
                let cert = dir.join(format!("{}.pem", opts.name));
                let key = dir.join(format!("{}-key.pem", opts.name));
                issued.write(&cert, &key)?;
                println!("certificate: {}", cert.display());
                println!(
                    "private key: {} (mode 0600; copy it to the machine securely)",
                    key.display()
                );
                println!(
                    "CA certificate to install with it: {}",
                    home.ca_cert().display()
                );
            }
            Ok(())
        }
    }
}
