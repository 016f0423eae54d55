//! `lightsout pki ...`: the CA and certificates for other machines.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use lightsout_pki::ca::{self, DEFAULT_VALIDITY_DAYS};
use lightsout_pki::{Ca, CertKind, Home, IssueOptions};

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the lab CA in the home directory (plus this machine's agent and controller
    /// certificates). Does nothing if a CA exists.
    Init,
    /// Issue a certificate signed by the lab CA, for another machine.
    #[command(subcommand)]
    Issue(IssueCommand),
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
        /// Role carried in the certificate.
        #[arg(long, default_value = "admin")]
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
        PkiCommand::Issue(issue) => {
            if !home.ca_key().exists() {
                bail!(
                    "no CA key at {}: run `lightsout pki init` first (on the machine that holds the CA)",
                    home.ca_key().display()
                );
            }
            let ca = Ca::load_home(&home).context("failed to load the CA")?;
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
