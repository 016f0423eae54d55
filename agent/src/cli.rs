//! The command line, as clap types. Kept in the library so that shell completions and man
//! pages are generated from the very definitions the binary parses.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The lightsout agent: answers health checks and carries out whitelisted power actions
/// (shutdown, restart, cancel) and Wake-on-LAN relays for controllers holding a certificate
/// from the lab CA.
#[derive(Debug, Parser)]
#[command(name = "lightsout-agent", version, about, long_about = None)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,

    /// Configuration file (TOML; see agent.example.toml). Command-line options and
    /// environment variables override it.
    #[arg(long, global = true, env = "LIGHTSOUT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format on stderr: `text` for people, `json` for log shippers [default: text].
    #[arg(long, global = true, env = "LIGHTSOUT_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// More log output: -v the agent's own decisions (debug), -vv the agent at trace, -vvv the
    /// libraries too (rustls, tokio). `RUST_LOG` overrides both -v and -q. `NO_COLOR` turns colour off.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (-q warnings, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,

    /// Validate the configuration (file, certificates, CRL, policy) and exit: 0 if usable,
    /// 2 with a precise message if not.
    #[arg(long)]
    pub check_config: bool,

    /// Address to listen on: ADDR:PORT, ADDR (default port) or PORT. `[::]` listens on all
    /// interfaces, IPv4 and IPv6 [default: [::]:7474].
    #[arg(long, env = "LIGHTSOUT_LISTEN")]
    pub listen: Option<String>,

    /// Home directory holding the certificates [default: $LIGHTSOUT_HOME, else
    /// ~/.config/lightsout]. An empty one gets a new lab CA on first use; a partial one is an
    /// error (see the README's home directory rules).
    #[arg(long, global = true, env = "LIGHTSOUT_HOME")]
    pub home: Option<PathBuf>,

    /// One file holding this agent's certificate, the CA certificate and the key, as written
    /// by `lightsout pki issue agent NAME --bundle FILE`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ca", "cert", "key"])]
    pub bundle: Option<PathBuf>,
    /// CA certificate controllers must chain to [default: HOME/ca.pem].
    #[arg(long, requires_all = ["cert", "key"])]
    pub ca: Option<PathBuf>,
    /// This agent's certificate [default: HOME/agent.pem].
    #[arg(long, requires_all = ["ca", "key"])]
    pub cert: Option<PathBuf>,
    /// This agent's private key [default: HOME/agent-key.pem].
    #[arg(long, requires_all = ["ca", "cert"])]
    pub key: Option<PathBuf>,
    /// Certificate revocation list [default: HOME/crl.pem if it exists]. Reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub crl: Option<PathBuf>,

    /// Audit log, one JSON line per request [default: HOME/audit.jsonl].
    #[arg(long, global = true, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// Rehearse: answer every power request with the exact command line, execute nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Run this program instead of the system's `shutdown`, with the same arguments. For
    /// tests and demonstrations: a harmless stand-in exercises the real execution path.
    #[arg(long, value_name = "PATH")]
    pub power_command: Option<PathBuf>,

    /// How live power actions reach the system: `logind` hands them to systemd-logind over
    /// D-Bus (exact due times; refused when logind cannot take them), `command` runs
    /// `shutdown` (or --power-command); `auto` picks logind on a machine booted with systemd
    /// when no stand-in is configured and the agent is not in dry-run [default: auto].
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub power_backend: Option<BackendChoice>,

    /// Most connections served at once; more are closed immediately [default: 512].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Seconds a client has to complete the TLS handshake [default: 10].
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout: Option<u64>,
    /// Seconds a connection may stay silent between requests [default: 30].
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,
    /// Largest frame accepted, in bytes (4096 to 65536); a larger one is refused and the
    /// connection closed [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub max_frame_len: Option<usize>,
    /// Largest echo payload accepted, in bytes (below --max-frame-len) [default: 16384].
    #[arg(long, value_name = "BYTES")]
    pub max_echo_payload: Option<usize>,
    /// Requests one connection may send per second (and at once); more are answered with
    /// `busy` and not carried out [default: 100].
    #[arg(long, value_name = "N")]
    pub max_requests_per_sec: Option<u32>,
    /// TLS handshakes in progress from one source address; more connections from it are
    /// closed at once [default: 16].
    #[arg(long, value_name = "N")]
    pub max_handshakes_per_ip: Option<usize>,
    /// UDP ports this agent sends Wake-on-LAN packets to when relaying, comma-separated
    /// [default: 7,9, the standard Wake-on-LAN ports]. Any other port is refused, so a
    /// certificate that may wake cannot aim packets at other UDP services.
    #[arg(
        long,
        value_name = "PORTS",
        value_delimiter = ',',
        env = "LIGHTSOUT_WAKE_PORTS"
    )]
    pub wake_ports: Option<Vec<u16>>,
    /// Authenticated connections from one source address (an IPv4 address or an IPv6 /64);
    /// more are answered `busy` and closed [default: 64].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Authenticated connections with one certificate; more are answered `busy` and closed
    /// [default: 32].
    #[arg(long, value_name = "N")]
    pub max_connections_per_cert: Option<usize>,
    /// Of --max-connections, the last ones only --reserved-roles may take, so that an
    /// administrator always gets in; at most half of --max-connections [default: 32].
    #[arg(long, value_name = "N")]
    pub reserved_connections: Option<usize>,
    /// Roles that may take the reserved connections, comma-separated [default: admin].
    #[arg(long, value_name = "ROLE,...", value_delimiter = ',')]
    pub reserved_roles: Option<Vec<String>>,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C [default: 10].
    #[arg(long, value_name = "SECS")]
    pub shutdown_grace: Option<u64>,

    /// Answer LAN discovery probes (UDP on the listen port) with this agent's certificate
    /// name, address, port and certificate fingerprint, nothing else; rate-limited. Off by
    /// default.
    #[arg(long)]
    pub discoverable: bool,

    /// TESTS AND DEMOS ONLY: report N logged-in users in the health snapshot instead of
    /// reading utmp (to exercise `lightsout shutdown --skip-busy` without real logins).
    #[arg(long, value_name = "N", hide = true)]
    pub fake_logged_in_users: Option<u32>,

    /// TESTS AND DEMOS ONLY: report that logged-in users cannot be counted, as on a machine
    /// without utmp (to exercise `--skip-busy`'s "users unknown").
    #[arg(long, hide = true, conflicts_with = "fake_logged_in_users")]
    pub fake_users_unknown: bool,

    /// TESTS AND DEMOS ONLY: use the logind power backend on this D-Bus address (a private
    /// bus with a fake logind) instead of the system bus — exclusively, never falling back to
    /// the system bus.
    #[arg(
        long,
        value_name = "ADDRESS",
        hide = true,
        conflicts_with = "power_command"
    )]
    pub logind_bus: Option<String>,

    /// TESTS AND DEMOS ONLY: report this boot id instead of the system's (to exercise the
    /// audit line that attributes a reboot to the accepted action that caused it).
    #[arg(long, value_name = "ID", hide = true)]
    pub fake_boot_id: Option<String>,

    /// TESTS AND DEMOS ONLY: read the network interfaces (their MACs) from DIR laid out as
    /// /sys/class/net instead (an agent in a network namespace has only virtual links, which
    /// are not reported).
    #[arg(long, value_name = "DIR", hide = true)]
    pub fake_sysfs_net: Option<std::path::PathBuf>,

    /// TESTS AND DEMOS ONLY, needs --dry-run: after a rehearsed restart, pretend to reboot
    /// when it is due — refuse connections for --simulate-downtime, then report a new
    /// boot_id (to exercise `lightsout restart --wait`).
    #[arg(long, hide = true)]
    pub simulate_reboot: bool,

    /// TESTS AND DEMOS ONLY: how long a simulated reboot stays unreachable, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500, hide = true)]
    pub simulate_downtime_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write every page (one per subcommand) into a
    /// directory.
    Man {
        /// Write lightsout-agent.8 and a page per subcommand (lightsout-agent-audit-tail.8,
        /// ...) here.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Read the audit log: the packaged service's (its configuration,
    /// /etc/lightsout/agent.toml, says where) unless --config, --home or --audit-log names
    /// another.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the most recent entries, oldest first.
    Tail {
        /// How many entries.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Print the raw JSON lines.
        #[arg(long)]
        json: bool,
    },
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[power] backend` setting (`--power-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// logind on a machine booted with systemd, without a stand-in, not in dry-run; else
    /// the command.
    Auto,
    /// systemd-logind over D-Bus; an error where systemd is not running.
    Logind,
    /// `shutdown` (or the stand-in).
    Command,
}
