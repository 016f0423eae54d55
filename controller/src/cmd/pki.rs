//! `lightsout pki ...`: the CA and certificates for other machines.
//!
//! Only the subcommands that sign (`issue`, `renew`, `revoke`) need the CA key; `list` reads
//! the CA's index and `init` creates a CA in an empty home only (the rules are
//! [`lightsout_pki::HomeState`]'s). No private key is overwritten without `--replace`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lightsout_pki::crl::{self, IssuedRecord, Selector};
use lightsout_pki::load::date;
use lightsout_pki::{Ca, CertKind, Home, IssueOptions, Issued, PkiError, ca};

use crate::cli::{IssueCommand, OutArgs, PkiCommand, RenewCommand};

/// Why a `pki` command failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiCommandError {
    /// Issuing, renewing or revoking needs the CA's key, and this home has none.
    #[error(
        "`lightsout pki {command}` signs with the CA key and {} is missing: run it on the \
         machine that holds the lab CA (a second controller needs no CA key for anything else)",
        .path.display()
    )]
    NoCa {
        /// The subcommand.
        command: &'static str,
        /// Where the key should be.
        path: PathBuf,
    },
    /// The CA's files are there but unusable.
    #[error("failed to load the CA")]
    LoadCa(#[source] PkiError),
    /// `pki revoke` without NAME, `--serial` or `--fingerprint`.
    #[error("name a certificate: NAME, --serial or --fingerprint")]
    NoSelector,
    /// A certificate name that would not make a file name.
    #[error("invalid name {0:?}: use a host or user name")]
    InvalidName(String),
    /// `pki renew` of a name the index does not know.
    #[error("no {kind} certificate named {name:?} in the CA's index (see `lightsout pki list`)")]
    NotIssued {
        /// `agent` or `controller`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// The home directory, the CA, the CRL or a certificate file.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

fn load_ca(home: &Home, command: &'static str) -> Result<Ca, PkiCommandError> {
    if !home.ca_key().exists() {
        return Err(PkiCommandError::NoCa {
            command,
            path: home.ca_key(),
        });
    }
    Ca::load_home(home).map_err(PkiCommandError::LoadCa)
}

/// Runs a pki subcommand.
///
/// # Errors
/// Files cannot be read or written, a name is invalid, or the CA key is needed and missing.
pub fn run(cmd: &PkiCommand, home: Option<&Path>) -> Result<(), PkiCommandError> {
    let home = Home::resolve(home)?;
    match cmd {
        PkiCommand::Init => {
            ca::init(&home)?;
            crate::outln!(
                "created the lab CA and this machine's certificates in {}",
                home.dir().display()
            );
            crate::outln!("CA certificate: {}", home.ca_cert().display());
            crate::outln!(
                "keep {} private: whoever holds it can issue certificates; back it up now \
                 (README: \"Backing up the CA\")",
                home.ca_key().display()
            );
            Ok(())
        }
        PkiCommand::Revoke {
            name,
            superseded,
            serial,
            fingerprint,
        } => {
            let ca = load_ca(&home, "revoke")?;
            let selector = match (name, serial, fingerprint) {
                (Some(n), _, _) if *superseded => Selector::Superseded(n.clone()),
                (Some(n), _, _) => Selector::Name(n.clone()),
                (_, Some(s), _) => Selector::Serial(s.clone()),
                (_, _, Some(f)) => Selector::Fingerprint(f.clone()),
                _ => return Err(PkiCommandError::NoSelector),
            };
            let revoked = crl::revoke(&home, &ca, &selector)?;
            if revoked.is_empty() {
                crate::outln!("nothing newly revoked; CRL rewritten");
            }
            for r in &revoked {
                crate::outln!(
                    "revoked {} (serial {})",
                    if r.name.is_empty() {
                        "a certificate not in the index"
                    } else {
                        &r.name
                    },
                    r.serial
                );
            }
            crate::outln!(
                "CRL: {} — copy it to the agents and reload them (SIGHUP)",
                home.crl().display()
            );
            Ok(())
        }
        PkiCommand::List { expiring } => list(&home, *expiring),
        PkiCommand::Issue(issue) => {
            let ca = load_ca(&home, "issue")?;
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
                    (o, out)
                }
                IssueCommand::Controller { name, role, out } => {
                    let mut o = IssueOptions::new(CertKind::Controller, name.clone());
                    o.role = Some(role.clone());
                    (o, out)
                }
            };
            issue_and_write(&home, &ca, opts, out, false)
        }
        PkiCommand::Renew(renew) => {
            let ca = load_ca(&home, "renew")?;
            let (kind, name, out, ips, dns) = match renew {
                RenewCommand::Agent {
                    name,
                    ips,
                    dns,
                    out,
                } => (CertKind::Agent, name, out, ips.as_slice(), dns.as_slice()),
                RenewCommand::Controller { name, out } => {
                    (CertKind::Controller, name, out, &[][..], &[][..])
                }
            };
            let previous = latest(&home, kind, name)?;
            let mut opts = IssueOptions::new(kind, name.clone());
            opts.role.clone_from(&previous.role);
            opts.ips.clone_from(&previous.ips);
            opts.dns.clone_from(&previous.dns);
            for ip in ips {
                if !opts.ips.contains(ip) {
                    opts.ips.push(*ip);
                }
            }
            for d in dns {
                if !opts.dns.contains(d) {
                    opts.dns.push(d.clone());
                }
            }
            let names = opts
                .ips
                .iter()
                .map(ToString::to_string)
                .chain(opts.dns.iter().cloned())
                .collect::<Vec<_>>();
            issue_and_write(&home, &ca, opts, out, true)?;
            if kind == CertKind::Agent {
                crate::outln!(
                    "names: {name}{}{} (add any missing with --ip/--dns)",
                    if names.is_empty() { "" } else { ", " },
                    names.join(", ")
                );
            }
            crate::outln!(
                "renews serial {} (expires {}); once the new certificate is installed: \
                 lightsout pki revoke --serial {}",
                previous.serial,
                date(previous.not_after_unix),
                previous.serial
            );
            Ok(())
        }
    }
}

fn kind_str(kind: CertKind) -> &'static str {
    match kind {
        CertKind::Agent => "agent",
        CertKind::Controller => "controller",
    }
}

/// The latest certificate issued under `name` for `kind` and not revoked (else the latest).
fn latest(home: &Home, kind: CertKind, name: &str) -> Result<IssuedRecord, PkiCommandError> {
    let revoked = crl::revoked_serials_index(home)?;
    let mut matching: Vec<IssuedRecord> = crl::list_issued(home)?
        .into_iter()
        .filter(|r| r.kind == kind_str(kind) && r.name == name)
        .collect();
    matching.sort_by_key(|r| {
        (
            !revoked.contains_key(&crl::canonical_serial(&r.serial)),
            r.issued_unix,
        )
    });
    matching.pop().ok_or_else(|| PkiCommandError::NotIssued {
        kind: kind_str(kind),
        name: name.to_owned(),
    })
}

/// Issues, records and writes where `out` says; `renewal` picks new file names in the
/// default directory instead of refusing when the old ones are there.
fn issue_and_write(
    home: &Home,
    ca: &Ca,
    mut opts: IssueOptions,
    out: &OutArgs,
    renewal: bool,
) -> Result<(), PkiCommandError> {
    if opts.name.is_empty() || opts.name.contains(['/', '\\']) || opts.name.starts_with('.') {
        return Err(PkiCommandError::InvalidName(opts.name));
    }
    opts.validity_days = out.days;
    // Where it goes, decided (and refused) before anything is signed or recorded.
    let target = match &out.bundle {
        Some(bundle) => {
            if bundle.exists() && !out.replace {
                return Err(PkiError::Exists(bundle.clone()).into());
            }
            Target::Bundle(bundle.clone())
        }
        None => {
            let dir = out.out.clone().unwrap_or_else(|| home.issued_dir());
            let files = |stem: &str| {
                (
                    dir.join(format!("{stem}.pem")),
                    dir.join(format!("{stem}-key.pem")),
                )
            };
            let (cert, key) = files(&opts.name);
            let taken = cert.exists() || key.exists();
            if !taken || out.replace {
                Target::Files(cert, key)
            } else if renewal && out.out.is_none() {
                let today = date(time::OffsetDateTime::now_utc().unix_timestamp());
                let (cert, key) = files(&format!("{}-{today}", opts.name));
                if cert.exists() || key.exists() {
                    return Err(PkiError::Exists(key).into());
                }
                Target::Files(cert, key)
            } else {
                return Err(PkiError::Exists(key).into());
            }
        }
    };
    let issued: Issued = ca.issue(&opts)?;
    crl::record_issued(home, &opts, &issued)?;
    match target {
        Target::Bundle(bundle) => {
            issued.write_bundle(&bundle, ca.cert_pem())?;
            crate::outln!(
                "bundle (certificate, CA certificate, key; mode 0600): {}",
                bundle.display()
            );
            match opts.kind {
                CertKind::Agent => crate::outln!(
                    "copy it to the agent machine securely, as /etc/lightsout/agent-bundle.pem \
                     (mode 0600)"
                ),
                CertKind::Controller => crate::outln!(
                    "copy it to the controller machine securely, as \
                     ~/.config/lightsout/controller-bundle.pem (mode 0600), and use it with \
                     `lightsout --bundle FILE` or LIGHTSOUT_BUNDLE=FILE"
                ),
            }
        }
        Target::Files(cert, key) => {
            issued.write(&cert, &key)?;
            crate::outln!("certificate: {}", cert.display());
            crate::outln!(
                "private key: {} (mode 0600; copy it to the machine securely)",
                key.display()
            );
            crate::outln!(
                "CA certificate to install with it: {}",
                home.ca_cert().display()
            );
        }
    }
    crate::outln!(
        "serial {}, valid until {}",
        issued.serial,
        date(issued.not_after_unix)
    );
    Ok(())
}

enum Target {
    Bundle(PathBuf),
    Files(PathBuf, PathBuf),
}

/// `pki list [--expiring D]`: every certificate with its status and dates.
fn list(home: &Home, expiring: Option<Duration>) -> Result<(), PkiCommandError> {
    let revoked = crl::revoked_serials_index(home)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    crate::outln!(
        "{:<11} {:<28} {:<9} {:<10} {:<10} {:<18} SERIAL",
        "KIND",
        "NAME",
        "ROLE",
        "ISSUED",
        "EXPIRES",
        "STATUS"
    );
    for r in crl::list_issued(home)? {
        let revoked_at = revoked.get(&crl::canonical_serial(&r.serial));
        let status = match revoked_at {
            Some(at) => format!("revoked {}", date(*at)),
            None if r.not_after_unix < now => "expired".to_owned(),
            None => "valid".to_owned(),
        };
        if let Some(within) = expiring {
            let horizon = now.saturating_add(i64::try_from(within.as_secs()).unwrap_or(i64::MAX));
            if revoked_at.is_some() || r.not_after_unix > horizon {
                continue;
            }
        }
        crate::outln!(
            "{:<11} {:<28} {:<9} {:<10} {:<10} {:<18} {}",
            r.kind,
            r.name,
            r.role.as_deref().unwrap_or("-"),
            date(r.issued_unix),
            date(r.not_after_unix),
            status,
            r.serial
        );
    }
    Ok(())
}
