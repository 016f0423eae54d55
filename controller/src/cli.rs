//! The command line, as clap types. Kept in the library so that shell completions and man
//! pages are generated from the very definitions the binary parses.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lightsout_pki::ca::DEFAULT_VALIDITY_DAYS;

use crate::batch::{self, Share};
use crate::duration;

/// lightsout: health checks, shutdown and restart for a room of lab machines, over mutual TLS.
#[derive(Debug, Parser)]
#[command(name = "lightsout", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The options every command takes (inventory, TLS, fan-out, output), shown after each
/// command's own options under their own heading.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Home directory holding the certificates [default: $LIGHTSOUT_HOME, else
    /// ~/.config/lightsout]. An empty one gets a new lab CA on first use; a partial one is an
    /// error (see the README's home directory rules).
    #[arg(long, global = true, env = "LIGHTSOUT_HOME")]
    pub home: Option<PathBuf>,
    /// CA certificate agents must chain to [default: HOME/ca.pem].
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// Our client certificate [default: HOME/controller.pem].
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// Our private key [default: HOME/controller-key.pem].
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// One file holding our certificate, the CA certificate and our key (`lightsout pki issue
    /// controller NAME --role ROLE --bundle FILE`), instead of --ca, --cert and --key.
    #[arg(long, global = true, env = "LIGHTSOUT_BUNDLE", value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// Revocation list: refuse agents whose certificate it lists [default: HOME/crl.pem if
    /// it exists].
    #[arg(long, global = true, value_name = "FILE")]
    pub crl: Option<PathBuf>,
    /// Deadline per host (connect, handshake, answer): 5s, 500ms, 1m.
    #[arg(long, global = true, default_value = "5s", value_parser = duration::parse_timeout, allow_hyphen_values = true)]
    pub timeout: Duration,
    /// Most hosts contacted at once (at least 1).
    #[arg(long, global = true, default_value_t = 256, value_name = "N", value_parser = at_least_one)]
    pub parallel: usize,
    /// Name every agent certificate must match, instead of the host as typed.
    #[arg(long, global = true, value_name = "NAME")]
    pub tls_name: Option<String>,
    /// Print one JSON document instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// More diagnostics on stderr: -v lightsout's own decisions (debug), -vv lightsout at
    /// trace, -vvv the libraries' too (rustls, tokio). `RUST_LOG` overrides; `NO_COLOR` turns
    /// colour off.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print one JSON object per line, one per host, as results arrive.
    #[arg(long, global = true, conflicts_with = "json")]
    pub jsonl: bool,
    /// Inventory of hosts and groups: TOML, or an Ansible inventory (INI, YAML, or a
    /// directory) [default: HOME/inventory.toml if it exists].
    #[arg(
        long,
        global = true,
        env = "LIGHTSOUT_INVENTORY",
        value_name = "FILE|DIR"
    )]
    pub inventory: Option<PathBuf>,
}

/// What TARGET means, for every command's help.
const TARGETS: &str =
    "Hosts: NAME (from the inventory), @GROUP, all, ADDRESS, HOST:PORT, [IPv6]:PORT.";

/// The closing sections of the long help (`--help`, and the man pages generated from it) of
/// the commands that contact hosts: targets, durations, the inventory, exit codes. A macro so
/// that `concat!` can join it to each command's own text.
macro_rules! host_command_help {
    () => {
        "\
Targets:
  NAME          a host of the inventory (its address, port and MACs come from there)
  @GROUP        every host of an inventory group, nested groups included
  all           every host of the inventory
  ADDRESS       an IPv4 or IPv6 address, or a DNS name with a dot, on port 7474 (the
                inventory host with that address, if there is one)
  HOST:PORT     another port; IPv6 with a port as [IPv6]:PORT
  A host named several times (directly and through groups) is contacted once. With an
  inventory, a plain name it does not know is an error: a typo reaches no machine.

Durations: a number with a unit, s, m, h or d, combined largest first: 90s, 5m, 1h30m,
  2d. A bare number is seconds (--delay 90 is 90s). --timeout, --stagger and
  --wait-timeout also take milliseconds (500ms). A negative duration is refused.

Inventory: --inventory FILE|DIR, else $LIGHTSOUT_INVENTORY, else HOME/inventory.toml. TOML
  ([hosts.NAME] address, port, mac; [groups] NAME = [\"host\", \"@group\"]; see
  inventory.example.toml and the README's \"Inventory\" section), or an Ansible inventory
  (INI, YAML, or a directory with host_vars/ and group_vars/).

Exit codes:
  0  every host succeeded (hosts skipped on purpose are not failures)
  1  at least one host failed (unreachable, refused, an error reply, not back in time)
  2  usage or configuration error, or a refusal before anything was sent (a bad option,
     an unknown target, a missing certificate, no confirmation, this machine)"
    };
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Health check: each agent returns the payload and a health snapshot.
    #[command(after_long_help = host_command_help!())]
    Echo {
        #[arg(required = true, value_name = "TARGET", help = TARGETS)]
        targets: Vec<String>,
        /// Text the agents send back.
        #[arg(long, default_value = "ping")]
        payload: String,
    },
    /// Status board: one row per host — up/down, uptime, load, memory, users, OS, agent.
    #[command(after_long_help = host_command_help!())]
    Status {
        /// Hosts [default: all]. NAME, @GROUP, all, ADDRESS, HOST:PORT, [IPv6]:PORT.
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
    },
    /// Power machines off (asks for confirmation for more than one host).
    #[command(after_long_help = host_command_help!())]
    Shutdown(ShutdownArgs),
    /// Restart machines (asks for confirmation for more than one host).
    #[command(after_long_help = host_command_help!())]
    Restart(RestartArgs),
    /// Abort pending shutdowns and restarts.
    #[command(after_long_help = host_command_help!())]
    Cancel {
        #[arg(required = true, value_name = "TARGET", help = TARGETS)]
        targets: Vec<String>,
        /// Report what would be done, do nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Wake machines with Wake-on-LAN magic packets (MACs from the inventory).
    #[command(after_long_help = host_command_help!())]
    Wake(WakeArgs),
    /// Find agents on the LAN that answer discovery probes (`lightsout-agent --discoverable`).
    #[command(after_long_help = host_command_help!())]
    Discover(DiscoverArgs),
    /// The inventory: what targets resolve to; learning MAC addresses from the agents.
    #[command(subcommand, after_long_help = host_command_help!())]
    Inventory(InventoryCommand),
    /// Certificates: create the CA, issue agent and controller certificates.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write every page (one per subcommand) into a
    /// directory.
    Man {
        /// Write lightsout.1 and a page per subcommand (lightsout-shutdown.1, ...) here.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct PowerArgs {
    #[arg(required = true, value_name = "TARGET", help = TARGETS)]
    pub targets: Vec<String>,
    /// Wait before acting: 0 (now), 90 (seconds), 90s, 5m, 1h30m.
    #[arg(long, default_value = "0", value_parser = duration::parse_delay, allow_hyphen_values = true)]
    pub delay: Duration,
    /// Message shown to logged-in users.
    #[arg(long)]
    pub message: Option<String>,
    /// Report exactly what would run on each host, execute nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace an action already pending on a host instead of being refused.
    #[arg(long)]
    pub replace: bool,
    /// Do not ask for confirmation. Without a terminal, more than one host needs it.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Leave out hosts where someone is logged in (checked first with an echo); they are
    /// reported as skipped, not failed.
    #[arg(long)]
    pub skip_busy: bool,
    /// Send to N hosts at a time, or to P% of them (rounded up, at least 1): a rolling
    /// shutdown or restart, batch after batch in the order the targets resolved to.
    #[arg(long, value_name = "N|P%", value_parser = batch::parse_batch)]
    pub batch: Option<Share>,
    /// Pause between batches: 30s, 2m, 500ms.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = duration::parse_pause, requires = "batch", allow_hyphen_values = true)]
    pub stagger: Duration,
    /// Stop the rolling shutdown or restart when more than N hosts sent the action have
    /// failed so far, or more than P% of the last batch's hosts (Ansible's
    /// max_fail_percentage: exceeded, not equalled). Checked after each batch; the hosts of
    /// the batches not sent are reported as not sent, and the exit code is 1. `--max-fail 0`
    /// stops at the first failure.
    #[arg(long, value_name = "N|P%", value_parser = batch::parse_share, requires = "batch")]
    pub max_fail: Option<Share>,
    /// Allow the machine this controller runs on, when it is named explicitly (not through
    /// a group or `all`). Otherwise it is refused (named) or skipped (in a group).
    #[arg(long)]
    pub include_self: bool,
}

#[derive(Debug, Args)]
pub struct ShutdownArgs {
    #[command(flatten)]
    pub power: PowerArgs,
    /// After the shutdown is accepted, wait until each host stops answering once it is due;
    /// a host whose agent reports the shutdown failed, or where it was cancelled, fails at
    /// once.
    #[arg(long)]
    pub wait: bool,
    /// How long each host may keep answering after its shutdown is due before it counts as
    /// failed ("still up").
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = duration::parse_timeout, requires = "wait", allow_hyphen_values = true)]
    pub wait_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub power: PowerArgs,
    /// After the restart is accepted, wait until each host answers again with a new boot
    /// identity, and report how long it took; a host whose agent reports the restart failed,
    /// or where it was cancelled, fails at once.
    #[arg(long)]
    pub wait: bool,
    /// How long to wait for each host to come back, counted from when the restart is due.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration::parse_timeout, requires = "wait", allow_hyphen_values = true)]
    pub wait_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct WakeArgs {
    #[arg(required = true, value_name = "TARGET", help = TARGETS)]
    pub targets: Vec<String>,
    /// Broadcast address the magic packets go to.
    #[arg(long, value_name = "ADDR", default_value_t = Ipv4Addr::BROADCAST)]
    pub broadcast: Ipv4Addr,
    /// UDP port the magic packets go to.
    #[arg(long, default_value_t = lightsout_protocol::wake::DEFAULT_WAKE_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Ask this (awake) agent to send the packets, from inside the lab's LAN.
    #[arg(long, value_name = "HOST")]
    pub via: Option<String>,
    /// Report what would be sent, send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Broadcast address the probe goes to (--timeout is how long answers are awaited).
    #[arg(long, value_name = "ADDR", default_value_t = Ipv4Addr::BROADCAST)]
    pub broadcast: Ipv4Addr,
    /// The agents' port.
    #[arg(long, default_value_t = lightsout_protocol::DEFAULT_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Add the agents found to the inventory (TOML) unless their name or address is in it.
    #[arg(long)]
    pub write_inventory: bool,
    /// With --write-inventory: put the hosts added in this group of the inventory (created if
    /// needed; its other members are kept).
    #[arg(long, value_name = "NAME", requires = "write_inventory")]
    pub group: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Show the hosts targets resolve to [default: all].
    #[command(after_long_help = host_command_help!())]
    List {
        /// NAME, @GROUP, all, ADDRESS, HOST:PORT.
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
    },
    /// Ask agents for their MAC addresses and record them in the inventory (for `wake`).
    #[command(after_long_help = host_command_help!())]
    Learn {
        #[arg(required = true, value_name = "TARGET", help = TARGETS)]
        targets: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the lab CA in an empty home directory (plus this machine's agent and controller
    /// certificates). Refuses to run where a CA (or any part of a lab) already is.
    Init,
    /// Issue a certificate signed by the lab CA, for another machine (needs the CA key).
    #[command(subcommand)]
    Issue(IssueCommand),
    /// Issue a fresh certificate with the same names and role as the latest one issued under
    /// NAME (needs the CA key). Then install it, reload, and revoke the old one by --serial.
    #[command(subcommand)]
    Renew(RenewCommand),
    /// Revoke certificates (a lost laptop, a retired machine) and rewrite the CRL (needs the
    /// CA key). Then copy HOME/crl.pem to the agents and reload them (SIGHUP / systemctl
    /// reload).
    Revoke {
        /// Common name: every certificate issued under it is revoked.
        #[arg(required_unless_present_any = ["serial", "fingerprint"], conflicts_with_all = ["serial", "fingerprint"])]
        name: Option<String>,
        /// With NAME: revoke every certificate issued under NAME except the latest (after a
        /// renewal).
        #[arg(long, requires = "name")]
        superseded: bool,
        /// Revoke by serial number (hex; colons and leading zeros as openssl prints them are fine).
        #[arg(long, conflicts_with = "fingerprint")]
        serial: Option<String>,
        /// Revoke by SHA-256 fingerprint (hex).
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// List the certificates this CA issued: valid, expired or revoked, with their dates.
    List {
        /// Only certificates not revoked that expire within this time (or have expired):
        /// what is due for renewal, e.g. 60d.
        #[arg(long, value_name = "DURATION", value_parser = duration::parse, allow_hyphen_values = true)]
        expiring: Option<Duration>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RenewCommand {
    /// Renew an agent's certificate (same name, addresses and DNS names).
    Agent {
        /// The agent's name, as in `pki list`.
        name: String,
        /// An IP address to add (certificates issued before addresses were recorded in the
        /// index need theirs given again).
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// A DNS name to add.
        #[arg(long = "dns")]
        dns: Vec<String>,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Renew a controller's certificate (same name and role).
    Controller {
        /// The controller's name, as in `pki list`.
        name: String,
        #[command(flatten)]
        out: OutArgs,
    },
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
        /// Role carried in the certificate: monitor (echo), operator (echo, restart, cancel, wake),
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
    #[arg(long, conflicts_with = "bundle")]
    pub out: Option<PathBuf>,
    /// Write one file instead: the certificate, the CA certificate and the key (mode 0600),
    /// for `lightsout-agent --bundle FILE` (or `[tls] bundle`) and `lightsout --bundle FILE`
    /// (or LIGHTSOUT_BUNDLE).
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// Validity in days (at least 1).
    #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS, value_parser = clap::value_parser!(u32).range(1..))]
    pub days: u32,
    /// Overwrite an existing bundle or certificate and key (without it, an existing private
    /// key is never overwritten).
    #[arg(long)]
    pub replace: bool,
}

/// A role name that is not one.
#[derive(Debug, thiserror::Error)]
#[error("a role is 1-64 characters of a-z, 0-9, '-' and '_' (e.g. monitor, operator, admin)")]
pub struct RoleError;

fn parse_role(s: &str) -> Result<String, RoleError> {
    if !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        Ok(s.to_owned())
    } else {
        Err(RoleError)
    }
}

/// `--parallel` and other counts that must be at least one.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: expected a whole number of at least 1")]
pub struct CountError(String);

fn at_least_one(s: &str) -> Result<usize, CountError> {
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| CountError(s.to_owned()))
}
