//! The configuration's precedence, in one place: command line > environment (clap reads
//! `LIGHTSOUT_*` into the same [`Args`]) > configuration file > built-in defaults. The result
//! is one validated [`Resolved`], built before the first socket opens.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lightsout_pki::ca::Setup;
use lightsout_pki::{Home, PkiError, Side, TlsFiles};
use lightsout_protocol::DEFAULT_PORT;

use crate::access::{Access, AccessError, AccessSources};
use crate::audit::AuditLog;
use crate::cli::{AgentCommand, Args, BackendChoice};
use crate::config::{Config, LimitError, Limits, PowerBackend};
use crate::discovery::AgentIdentity;
use crate::logind::LogindBus;
use crate::replay::ReplayMemory;

use crate::settings::{FileSettings, LimitsSection};

/// The replay memory's file, in the home directory.
pub const REPLAY_FILE: &str = "replay.jsonl";

/// The packaged service's configuration file (the unit runs `lightsout-agent --config` with
/// it). `audit tail` reads it when told no other place, so that `sudo lightsout-agent audit
/// tail` on a packaged machine shows the service's log rather than root's own home.
pub const SERVICE_CONFIG: &str = "/etc/lightsout/agent.toml";

/// Everything decided from the command line, environment and file, before any I/O on the
/// network.
#[derive(Debug)]
pub struct Resolved {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Whether `listen` is the default (any address, IPv4 fallback allowed).
    pub default_listen: bool,
    /// The home directory.
    pub home: Home,
    /// The agent's configuration.
    pub config: Config,
    /// The reloadable access state (also in `config`).
    pub access: Arc<Access>,
    /// The audit log (also in `config`).
    pub audit: Arc<AuditLog>,
    /// What `--discoverable` announces; `None` when not discoverable.
    pub discovery: Option<AgentIdentity>,
    /// The agent's CA, certificate and key (or bundle).
    pub tls: TlsFiles,
}

/// A configuration that cannot be used; each names the option or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file cannot be read or is invalid.
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    /// The home directory cannot be found.
    #[error(transparent)]
    Home(PkiError),
    /// The bundle named by `--bundle` or `[tls] bundle` does not exist.
    #[error(
        "bundle {} ({from}): no such file; issue one on the CA machine (`lightsout pki issue agent NAME --ip ADDRESS --bundle FILE`) and copy it here",
        .path.display()
    )]
    MissingBundle {
        /// The file.
        path: PathBuf,
        /// Where it was named: `--bundle` or `[tls] bundle`.
        from: &'static str,
    },
    /// First-run certificates cannot be created.
    #[error("{source}")]
    Certificates {
        /// The home directory.
        dir: PathBuf,
        /// Why.
        source: PkiError,
    },
    /// `--discoverable` needs the agent certificate's identity.
    #[error("--discoverable: cannot read the agent certificate: {0}")]
    Discoverable(#[source] PkiError),
    /// The TLS files, CRL or policy cannot be loaded.
    #[error("failed to load the agent's TLS files, CRL or policy: {0}")]
    Access(#[from] AccessError),
    /// The stand-in power command does not exist.
    #[error("power command {}: no such file", .0.display())]
    PowerCommand(PathBuf),
    /// `--wake-ports` lists no port, or port 0.
    #[error("--wake-ports: list at least one port, each 1-65535 (the standard ones are 7 and 9)")]
    WakePorts,
    /// A limit is out of range.
    #[error("invalid limit: {0}")]
    Limit(#[from] LimitError),
    /// The listen address cannot be parsed.
    #[error(
        "listen address {0:?} (--listen, or `listen` in the config file): expected ADDR:PORT, ADDR or PORT (e.g. 0.0.0.0:{DEFAULT_PORT})"
    )]
    Listen(String),
    /// The audit log cannot be opened for writing where it is configured: power actions
    /// would all be refused.
    #[error(
        "audit log {}: cannot be opened for writing ({key}): {source}; create its directory or make it writable, or choose another path",
        path.display()
    )]
    AuditLog {
        /// The file.
        path: PathBuf,
        /// Where the path came from: the option or key to change.
        key: String,
        /// Why.
        source: std::io::Error,
    },
    /// `backend = "logind"` on a machine not booted with systemd.
    #[error(
        "power backend \"logind\" (--power-backend, or [power] backend in the config file): this machine was not booted with systemd ({SYSTEMD_BOOTED} does not exist), so there is no systemd-logind to hand power actions to; use \"command\" or \"auto\""
    )]
    NoSystemd,
    /// A stand-in command with a backend that does not run commands.
    #[error(
        "power_command (a stand-in for `shutdown`) is only run by the \"command\" power backend; remove it or set [power] backend = \"command\""
    )]
    StandInNeedsCommandBackend,
    /// `--logind-bus` with the command backend.
    #[error(
        "--logind-bus is for the logind power backend; do not combine it with backend \"command\""
    )]
    LogindBusNeedsLogind,
    /// `--simulate-reboot` on an agent that would power off for real.
    #[error("--simulate-reboot is a test facility for dry-run agents: add --dry-run")]
    SimulateRebootNeedsDryRun,
}

/// Exists when the machine was booted with systemd (what `sd_booted()` checks).
pub const SYSTEMD_BOOTED: &str = "/run/systemd/system";

/// What the power backend choice depends on, gathered by [`Config::resolve`].
#[derive(Debug, Clone, Copy)]
pub struct BackendFacts<'a> {
    /// `--power-backend`, else the file's `[power] backend`.
    pub choice: Option<BackendChoice>,
    /// A stand-in command is configured.
    pub stand_in: bool,
    /// The agent rehearses everything.
    pub dry_run: bool,
    /// `SYSTEMD_BOOTED` exists (and this is Linux).
    pub systemd_booted: bool,
    /// The hidden test option `--logind-bus`.
    pub logind_bus: Option<&'a str>,
}

/// Chooses the power backend, once. `auto` never picks logind for an agent with a stand-in or
/// in dry-run — as every test agent is — so a test agent never reaches the real system bus;
/// `--logind-bus` names the only bus the agent may use.
///
/// # Errors
/// [`ConfigError::NoSystemd`], [`ConfigError::StandInNeedsCommandBackend`],
/// [`ConfigError::LogindBusNeedsLogind`].
pub fn choose_backend(facts: BackendFacts<'_>) -> Result<PowerBackend, ConfigError> {
    let choice = facts.choice.unwrap_or(BackendChoice::Auto);
    if let Some(address) = facts.logind_bus {
        return match choice {
            BackendChoice::Command => Err(ConfigError::LogindBusNeedsLogind),
            _ if facts.stand_in => Err(ConfigError::StandInNeedsCommandBackend),
            _ => Ok(PowerBackend::Logind(LogindBus::Address(address.to_owned()))),
        };
    }
    match choice {
        BackendChoice::Command => Ok(PowerBackend::Command),
        BackendChoice::Logind if facts.stand_in => Err(ConfigError::StandInNeedsCommandBackend),
        BackendChoice::Logind if !facts.systemd_booted => Err(ConfigError::NoSystemd),
        BackendChoice::Logind => Ok(PowerBackend::Logind(LogindBus::System)),
        BackendChoice::Auto if facts.systemd_booted && !facts.stand_in && !facts.dry_run => {
            Ok(PowerBackend::Logind(LogindBus::System))
        }
        BackendChoice::Auto => Ok(PowerBackend::Command),
    }
}

fn systemd_booted() -> bool {
    cfg!(target_os = "linux") && std::path::Path::new(SYSTEMD_BOOTED).is_dir()
}

/// Parses a listen address: `ADDR:PORT`, `ADDR` (default port) or `PORT` (any address).
///
/// # Errors
/// [`ConfigError::Listen`].
pub fn parse_listen(s: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)));
    }
    Err(ConfigError::Listen(s.to_owned()))
}

/// The configuration file named by `--config`, or defaults. `audit tail` told neither
/// `--config`, `--home` nor `--audit-log` reads the packaged service's file
/// ([`SERVICE_CONFIG`]) when there is one: the log an administrator means is the service's.
///
/// # Errors
/// The file cannot be read or is invalid.
pub fn file_settings(args: &Args) -> Result<FileSettings, ConfigError> {
    match &args.config {
        Some(path) => Ok(FileSettings::load(path)?),
        None => match service_config_for(args) {
            Some(path) => Ok(FileSettings::load(path)?),
            None => Ok(FileSettings::default()),
        },
    }
}

/// The service's configuration file, when `args` is an `audit` command that names no other
/// place and the file exists.
fn service_config_for(args: &Args) -> Option<&'static Path> {
    service_config_at(args, Path::new(SERVICE_CONFIG))
}

fn service_config_at<'a>(args: &Args, path: &'a Path) -> Option<&'a Path> {
    let reads_audit = matches!(args.command, Some(AgentCommand::Audit(_)));
    let told_where = args.home.is_some() || args.audit_log.is_some();
    (reads_audit && !told_where && path.is_file()).then_some(path)
}

/// The home directory: `--home`, else the file's `home`, else the default.
///
/// # Errors
/// No home directory can be determined.
pub fn home(args: &Args, file: &FileSettings) -> Result<Home, ConfigError> {
    Home::resolve(args.home.as_deref().or(file.home.as_deref())).map_err(ConfigError::Home)
}

/// The audit log's path: `--audit-log`, else the file's `[audit] path`, else in the home.
pub fn audit_path(args: &Args, file: &FileSettings, home: &Home) -> PathBuf {
    args.audit_log
        .clone()
        .or_else(|| file.audit.path.clone())
        .unwrap_or_else(|| home.dir().join("audit.jsonl"))
}

/// Checks that the audit log opens for writing as the agent will open it (created if
/// missing, mode 0600): a missing or read-only directory is found now, not at the first
/// refused power action.
///
/// # Errors
/// [`ConfigError::AuditLog`] naming the option or key that set the path.
pub fn check_audit_log(
    args: &Args,
    file: &FileSettings,
    audit: &AuditLog,
) -> Result<(), ConfigError> {
    audit.check_writable().map_err(|source| {
        let key = if args.audit_log.is_some() {
            "--audit-log".to_owned()
        } else if file.audit.path.is_some() {
            match &args.config {
                Some(config) => format!("[audit] path in {}", config.display()),
                None => "[audit] path".to_owned(),
            }
        } else {
            "the default HOME/audit.jsonl: `home` in the configuration file, --home or LIGHTSOUT_HOME; or set [audit] path".to_owned()
        };
        ConfigError::AuditLog {
            path: audit.path().to_path_buf(),
            key,
            source,
        }
    })
}

fn tls_files(args: &Args, file: &FileSettings, home: &Home) -> Result<TlsFiles, ConfigError> {
    if let Some(bundle) = &args.bundle {
        return existing_bundle(bundle, "--bundle");
    }
    if let (Some(ca), Some(cert), Some(key)) = (&args.ca, &args.cert, &args.key) {
        return Ok(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    let t = &file.tls;
    if let (Some(bundle), None) = (&t.bundle, &args.ca) {
        return existing_bundle(bundle, "[tls] bundle");
    }
    if let (Some(ca), Some(cert), Some(key)) = (&t.ca, &t.cert, &t.key) {
        return Ok(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    let setup = lightsout_pki::ca::ensure_local(home, Side::Agent).map_err(|source| {
        ConfigError::Certificates {
            dir: home.dir().to_path_buf(),
            source,
        }
    })?;
    if setup == Setup::NewCa {
        eprintln!(
            "lightsout-agent: {}",
            lightsout_pki::ca::new_ca_notice(home)
        );
    }
    Ok(TlsFiles::agent(home))
}

/// A bundle that is not there is the usual first mistake on a new machine: say what to do.
fn existing_bundle(path: &Path, from: &'static str) -> Result<TlsFiles, ConfigError> {
    if path.exists() {
        Ok(TlsFiles::bundle(path.to_path_buf()))
    } else {
        Err(ConfigError::MissingBundle {
            path: path.to_path_buf(),
            from,
        })
    }
}

fn limits(args: &Args, file: &FileSettings) -> Result<Limits, ConfigError> {
    // Command line over file over defaults: the same section type, applied in that order.
    let from_command_line = LimitsSection {
        max_connections: args.max_connections,
        handshake_timeout_secs: args.handshake_timeout,
        idle_timeout_secs: args.idle_timeout,
        max_frame_bytes: args.max_frame_len,
        max_echo_payload_bytes: args.max_echo_payload,
        shutdown_grace_secs: args.shutdown_grace,
        max_requests_per_sec: args.max_requests_per_sec,
        max_handshakes_per_ip: args.max_handshakes_per_ip,
        max_connections_per_ip: args.max_connections_per_ip,
        max_connections_per_cert: args.max_connections_per_cert,
        reserved_connections: args.reserved_connections,
        reserved_roles: args.reserved_roles.clone(),
    };
    let limits = from_command_line.apply(&file.limits.apply(&Limits::default()));
    limits.validate()?;
    Ok(limits)
}

impl Config {
    /// Builds the validated configuration from the command line (and environment) and the
    /// configuration file, in that order of precedence.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the option, key or file at fault.
    pub fn resolve(args: &Args, file: &FileSettings) -> Result<Resolved, ConfigError> {
        let home = home(args, file)?;
        let tls = tls_files(args, file, &home)?;
        let discovery = if args.discoverable || file.discoverable.unwrap_or(false) {
            Some(AgentIdentity::from_cert_file(&tls.cert).map_err(ConfigError::Discoverable)?)
        } else {
            None
        };
        let access = Arc::new(Access::from_sources(AccessSources {
            tls: tls.clone(),
            config_file: args.config.clone(),
            crl_override: args.crl.clone(),
            default_crl: home.crl(),
        })?);
        let power_command = args
            .power_command
            .clone()
            .or_else(|| file.power_command.clone());
        if let Some(cmd) = &power_command {
            if !cmd.is_file() {
                return Err(ConfigError::PowerCommand(cmd.clone()));
            }
        }
        let audit = Arc::new(AuditLog::new(audit_path(args, file, &home)));
        let replay_path = home.dir().join(REPLAY_FILE);
        let replay = ReplayMemory::open(&replay_path).unwrap_or_else(|e| {
            tracing::error!(path = %replay_path.display(), error = %e,
                "cannot use the replay memory's file: power actions will be refused until it is fixed and the agent restarted");
            ReplayMemory::unusable(&replay_path, &e)
        });
        let limits = limits(args, file)?;
        let listen_text = args.listen.clone().or_else(|| file.listen.clone());
        let default_listen = listen_text.is_none();
        let listen = match &listen_text {
            Some(text) => parse_listen(text)?,
            None => SocketAddr::from((Ipv6Addr::UNSPECIFIED, DEFAULT_PORT)),
        };
        let mut config = Config::new(access.current().tls.clone());
        config.access = access.clone();
        config.audit = Some(audit.clone());
        config.last_action = Some(home.dir().join("last-action.json"));
        config.dry_run = args.dry_run || file.dry_run.unwrap_or(false);
        config.power_backend = choose_backend(BackendFacts {
            choice: args.power_backend.or(file.power.backend),
            stand_in: power_command.is_some(),
            dry_run: config.dry_run,
            systemd_booted: systemd_booted(),
            logind_bus: args.logind_bus.as_deref(),
        })?;
        config.power_command = power_command;
        config.limits = limits;
        config.replay = Arc::new(replay);
        if let Some(ports) = args.wake_ports.clone().or_else(|| file.wake.ports.clone()) {
            if ports.is_empty() || ports.contains(&0) {
                return Err(ConfigError::WakePorts);
            }
            config.wake_ports = ports;
        }
        config.testing.fake_logged_in_users = args.fake_logged_in_users;
        config.testing.fake_users_unknown = args.fake_users_unknown;
        config.testing.fake_boot_id = args.fake_boot_id.clone();
        config.testing.fake_sysfs_net = args.fake_sysfs_net.clone();
        if args.simulate_reboot {
            if !config.dry_run {
                return Err(ConfigError::SimulateRebootNeedsDryRun);
            }
            config.testing.simulate_reboot = Some(Duration::from_millis(args.simulate_downtime_ms));
        }
        Ok(Resolved {
            listen,
            default_listen,
            home,
            config,
            access,
            audit,
            discovery,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::Path;

    fn args(extra: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("lightsout-agent").chain(extra.iter().copied()))
            .unwrap()
    }

    #[test]
    fn audit_tail_reads_the_service_config_unless_told_another_place() {
        let dir = tempfile::tempdir().unwrap();
        let service = dir.path().join("agent.toml");
        std::fs::write(&service, "home = \"/var/lib/lightsout\"\n").unwrap();
        let with = |extra: &[&str]| {
            // LIGHTSOUT_HOME in the test's environment would count as --home.
            let mut a = args(extra);
            if !extra.contains(&"--home") {
                a.home = None;
            }
            service_config_at(&a, &service).map(Path::to_path_buf)
        };
        assert_eq!(with(&["audit", "tail"]), Some(service.clone()));
        assert_eq!(with(&["audit", "tail", "--home", "/x"]), None);
        assert_eq!(with(&["audit", "tail", "--audit-log", "/x/a.jsonl"]), None);
        assert_eq!(with(&[]), None, "the agent itself reads only --config");
        assert_eq!(with(&["--check-config"]), None);
        let a = args(&["audit", "tail"]);
        let missing = dir.path().join("missing.toml");
        assert!(
            a.home.is_some() || service_config_at(&a, &missing).is_none(),
            "no file, no default"
        );
    }

    #[test]
    fn an_unwritable_audit_log_names_where_its_path_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let log = AuditLog::new(missing.join("audit.jsonl"));
        let name =
            |a: &Args, f: &FileSettings| check_audit_log(a, f, &log).unwrap_err().to_string();
        let none = FileSettings::default();
        let err = name(&args(&[]), &none);
        assert!(
            err.contains("HOME/audit.jsonl") && err.contains("`home`"),
            "{err}"
        );
        assert!(
            err.contains(&missing.join("audit.jsonl").display().to_string()),
            "{err}"
        );
        let err = name(&args(&["--audit-log", "x"]), &none);
        assert!(err.contains("(--audit-log)"), "{err}");
        let file = FileSettings::parse(
            "[audit]\npath = \"a.jsonl\"\n",
            &dir.path().join("agent.toml"),
        )
        .unwrap();
        let err = name(&args(&["--config", "/etc/x.toml"]), &file);
        assert!(err.contains("[audit] path in /etc/x.toml"), "{err}");

        let writable = AuditLog::new(dir.path().join("audit.jsonl"));
        assert!(check_audit_log(&args(&[]), &none, &writable).is_ok());
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert_eq!(parse_listen("[::1]").unwrap().port(), DEFAULT_PORT);
        assert_eq!(parse_listen("7000").unwrap(), "[::]:7000".parse().unwrap());
        let err = parse_listen("lab-01").unwrap_err().to_string();
        assert!(
            err.contains("\"lab-01\"") && err.contains("ADDR:PORT"),
            "{err}"
        );
    }

    #[test]
    fn command_line_outranks_the_file_which_outranks_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let file = FileSettings::parse(
            "listen = \"127.0.0.1:7001\"\ndry_run = true\n[limits]\nmax_connections = 7\nidle_timeout_secs = 3\nreserved_roles = [\"admin\", \"ops\"]\nmax_connections_per_cert = 5\n[audit]\npath = \"from-file.jsonl\"\n",
            &dir.path().join("agent.toml"),
        )
        .unwrap();
        let home_arg = home.to_str().unwrap();
        let r = Config::resolve(
            &args(&[
                "--home",
                home_arg,
                "--max-connections",
                "9",
                "--reserved-roles",
                "admin,oncall",
            ]),
            &file,
        )
        .unwrap();
        assert_eq!(r.config.limits.reserved_roles, ["admin", "oncall"]);
        assert_eq!(r.config.limits.max_connections_per_cert, 5, "file");
        assert_eq!(
            r.listen,
            "127.0.0.1:7001".parse().unwrap(),
            "file over default"
        );
        assert!(!r.default_listen);
        assert!(r.config.dry_run, "file's dry_run");
        assert_eq!(r.config.limits.max_connections, 9, "command line over file");
        assert_eq!(r.config.limits.idle_timeout, Duration::from_secs(3), "file");
        assert_eq!(
            r.config.limits.max_requests_per_sec,
            Limits::default().max_requests_per_sec,
            "default"
        );
        assert_eq!(r.audit.path(), dir.path().join("from-file.jsonl"));
        assert_eq!(r.home.dir(), Path::new(home_arg));

        let r = Config::resolve(
            &args(&[
                "--home",
                home_arg,
                "--listen",
                "127.0.0.1:7002",
                "--audit-log",
                "/tmp/x.jsonl",
            ]),
            &file,
        )
        .unwrap();
        assert_eq!(r.listen, "127.0.0.1:7002".parse().unwrap());
        assert_eq!(r.audit.path(), Path::new("/tmp/x.jsonl"));

        let r = Config::resolve(&args(&["--home", home_arg]), &FileSettings::default()).unwrap();
        assert!(r.default_listen);
        assert_eq!(r.listen.port(), DEFAULT_PORT);
        assert!(
            !r.config.dry_run,
            "the binary's default is live, not dry-run"
        );
        assert_eq!(r.audit.path(), home.join("audit.jsonl"));
    }

    #[test]
    fn the_backend_is_chosen_once_and_tests_never_get_the_system_bus() {
        let facts = |choice, stand_in, dry_run, systemd_booted, logind_bus| BackendFacts {
            choice,
            stand_in,
            dry_run,
            systemd_booted,
            logind_bus,
        };
        let system = Ok(PowerBackend::Logind(LogindBus::System));
        let pick = |f| choose_backend(f).map_err(|e| e.to_string());
        // auto: logind only on a live systemd machine without a stand-in.
        assert_eq!(pick(facts(None, false, false, true, None)), system.clone());
        assert_eq!(
            pick(facts(Some(BackendChoice::Auto), false, false, false, None)),
            Ok(PowerBackend::Command)
        );
        // What every test agent has: a stand-in or --dry-run, even on a systemd machine.
        assert_eq!(
            pick(facts(None, true, false, true, None)),
            Ok(PowerBackend::Command)
        );
        assert_eq!(
            pick(facts(None, false, true, true, None)),
            Ok(PowerBackend::Command)
        );
        // Explicit choices.
        assert_eq!(
            pick(facts(
                Some(BackendChoice::Command),
                false,
                false,
                true,
                None
            )),
            Ok(PowerBackend::Command)
        );
        assert_eq!(
            pick(facts(Some(BackendChoice::Logind), false, true, true, None)),
            system
        );
        let err = pick(facts(
            Some(BackendChoice::Logind),
            false,
            false,
            false,
            None,
        ))
        .unwrap_err();
        assert!(
            err.contains("not booted with systemd") && err.contains(SYSTEMD_BOOTED),
            "{err}"
        );
        let err = pick(facts(Some(BackendChoice::Logind), true, false, true, None)).unwrap_err();
        assert!(err.contains("power_command"), "{err}");
        // --logind-bus: that bus and no other, systemd or not.
        let fake = Ok(PowerBackend::Logind(LogindBus::Address(
            "unix:path=/t/bus".into(),
        )));
        assert_eq!(
            pick(facts(None, false, false, false, Some("unix:path=/t/bus"))),
            fake
        );
        assert_eq!(
            pick(facts(None, false, true, true, Some("unix:path=/t/bus"))),
            fake
        );
        let err = pick(facts(
            Some(BackendChoice::Command),
            false,
            false,
            true,
            Some("unix:path=/t/bus"),
        ))
        .unwrap_err();
        assert!(err.contains("--logind-bus"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let home_arg = home.to_str().unwrap();
        let file = FileSettings::default();
        let err = Config::resolve(
            &args(&["--home", home_arg, "--max-connections", "0"]),
            &file,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_connections"), "{err}");
        let err = Config::resolve(
            &args(&[
                "--home",
                home_arg,
                "--power-command",
                "/nonexistent/stand-in",
            ]),
            &file,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/stand-in"), "{err}");
        let err =
            Config::resolve(&args(&["--home", home_arg, "--simulate-reboot"]), &file).unwrap_err();
        assert!(
            matches!(err, ConfigError::SimulateRebootNeedsDryRun),
            "{err}"
        );
    }
}
