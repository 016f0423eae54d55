//! `lightsout pki ...`: the CA and certificates for other machines.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use lightsout_pki::ca::{self, DEFAULT_VALIDITY_DAYS};
use lightsout_pki::crl::{self, Selector};
use lightsout_pki::{Ca, CertKind, Home, IssueOptions};

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the lab CA in the home directory (plus this machine's agent and controller
    /// certificates). Does nothing if a CA exists.
    Init,
    /// Issue a certificate signed by the lab CA, for another machine.
    #[command(subcommand)]
    Issue(IssueCommand),
    /// Revoke certificates (a lost laptop, a retired machine) and rewrite the CRL. Then copy
    /// HOME/crl.pem to the agents and reload them (SIGHUP / systemctl reload).
    Revoke {
        /// Common name: every certificate issued under it is revoked.
        #[arg(required_unless_present_any = ["serial", "fingerprint"], conflicts_with_all = ["serial", "fingerprint"])]
        name: Option<String>,
        /// Revoke by serial number (hex).
        #[arg(long, conflicts_with = "fingerprint")]
        serial: Option<String>,
        /// Revoke by SHA-256 fingerprint (hex).
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// List the certificates this CA issued, and which are revoked.
    List,
}

#[derive(Debug, Subcommand)]
pub enum IssueCommand {
    /// A certificate for an agent: NAME (its host name) plus any --ip/--dns controllers will dial.
    Agent {
        /// Host name, also used as a DNS name in the certificate.
        name: String,
        /// IP address controllers use to reach it (repeatable).
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// Additional DNS name (repeatable).
        #[arg(long = "dns")]
        dns: Vec<String>,
        #[command(flatten)]
        out: OutArgs,
    },
    /// A certificate for a controller (an administrator or a monitoring box).
    Controller {
        /// Name recorded in agents' logs, e.g. alice@laptop.
        name: String,
        /// Role carried in the certificate: monitor (echo), operator (echo, restart, cancel),
        /// admin (everything), or a custom role defined in agents' policies.
        #[arg(long, value_parser = parse_role)]
        role: String,
        #[command(flatten)]
        out: OutArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct OutArgs {
    /// Directory to write NAME.pem and NAME-key.pem to [default: HOME/issued].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Validity in days.
    #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS)]
    days: u32,
}

fn parse_role(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        Ok(s.to_owned())
    } else {
        Err(
            "a role is 1-64 characters of a-z, 0-9, '-' and '_' (e.g. monitor, operator, admin)"
                .into(),
        )
    }
}

fn load_ca(home: &Home) -> anyhow::Result<Ca> {
    if !home.ca_key().exists() {
        bail!(
            "no CA key at {}: run `lightsout pki init` first (on the machine that holds the CA)",
            home.ca_key().display()
        );
    }
    Ca::load_home(home).context("failed to load the CA")
}

/// Runs a pki subcommand.
///
/// # Errors
/// Files cannot be read or written, or a name is invalid.
pub fn run(cmd: &PkiCommand, home: Option<&Path>) -> anyhow::Result<()> {
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
                _ => bail!("name a certificate: NAME, --serial or --fingerprint"),
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
                bail!("invalid name {:?}: use a host or user name", opts.name);
            }
            let issued = ca.issue(&opts)?;
            let dir = out.out.clone().unwrap_or_else(|| home.issued_dir());
            let cert = dir.join(format!("{}.pem", opts.name));
            let key = dir.join(format!("{}-key.pem", opts.name));
            issued.write(&cert, &key)?;
            crl::record_issued(&home, &opts, &issued)?;
            println!("certificate: {}", cert.display());
            println!(
                "private key: {} (mode 0600; copy it to the machine securely)",
                key.display()
            );
            println!(
                "CA certificate to install with it: {}",
                home.ca_cert().display()
            );
            Ok(())
        }
    }
}
