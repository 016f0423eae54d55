//! `lightsout-agent`: command line + configuration file → validated [`Config`], then
//! [`lightsout_agent::run`]. SIGHUP reloads the CRL and policy; SIGTERM/Ctrl-C stop gracefully.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use lightsout_agent::access::{Access, AccessSources};
use lightsout_agent::audit::{self, AuditLog};
use lightsout_agent::cli::{AgentCommand, Args, AuditCommand, LogFormat};
use lightsout_agent::discovery::{AgentIdentity, Responder};
use lightsout_agent::policy::PolicyFile;
use lightsout_agent::settings::{FileSettings, LimitsSection};
use lightsout_agent::{Config, Limits, listener};
use lightsout_pki::{Home, TlsFiles};
use lightsout_protocol::DEFAULT_PORT;

fn parse_listen(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)));
    }
    bail!(
        "listen address {s:?} (--listen, or `listen` in the config file): expected ADDR:PORT, ADDR or PORT (e.g. 0.0.0.0:{DEFAULT_PORT})"
    )
}

/// Everything decided from the command line, environment and file, before any I/O.
struct Resolved {
    listen: SocketAddr,
    default_listen: bool,
    home: Home,
    config: Config,
    access: Arc<Access>,
    audit: Arc<AuditLog>,
    /// What `--discoverable` announces; `None` when not discoverable.
    discovery: Option<AgentIdentity>,
}

fn file_settings(args: &Args) -> anyhow::Result<FileSettings> {
    match &args.config {
        Some(path) => Ok(FileSettings::load(path)?),
        None => Ok(FileSettings::default()),
    }
}

fn resolve_home(args: &Args, file: &FileSettings) -> anyhow::Result<Home> {
    Ok(Home::resolve(
        args.home.as_deref().or(file.home.as_deref()),
    )?)
}

fn audit_path(args: &Args, file: &FileSettings, home: &Home) -> PathBuf {
    args.audit_log
        .clone()
        .or_else(|| file.audit.path.clone())
        .unwrap_or_else(|| home.dir().join("audit.jsonl"))
}

fn resolve(args: &Args, file: &FileSettings) -> anyhow::Result<Resolved> {
    let home = resolve_home(args, file)?;
    let tls = match (&args.ca, &args.cert, &args.key, &file.tls) {
        _ if args.bundle.is_some() => TlsFiles::bundle(args.bundle.clone().unwrap_or_default()),
        (Some(ca), Some(cert), Some(key), _) => TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        },
        (_, _, _, t) if t.bundle.is_some() && args.ca.is_none() => {
            TlsFiles::bundle(t.bundle.clone().unwrap_or_default())
        }
        (_, _, _, t) if t.ca.is_some() => TlsFiles {
            ca: t.ca.clone().unwrap_or_default(),
            cert: t.cert.clone().unwrap_or_default(),
            key: t.key.clone().unwrap_or_default(),
        },
        _ => {
            lightsout_pki::ca::ensure_local(&home).with_context(|| {
                format!("failed to set up certificates in {}", home.dir().display())
            })?;
            TlsFiles::agent(&home)
        }
    };
    let discovery = if args.discoverable || file.discoverable.unwrap_or(false) {
        Some(
            AgentIdentity::from_cert_file(&tls.cert)
                .context("--discoverable: cannot read the agent certificate")?,
        )
    } else {
        None
    };
    let explicit_crl = args.crl.clone().or_else(|| file.tls.crl.clone());
    let crl_required = explicit_crl.is_some();
    let crl = Some(explicit_crl.unwrap_or_else(|| home.crl()));
    let config_path = args.config.clone();
    let policy_loader: Arc<dyn Fn() -> Result<PolicyFile, String> + Send + Sync> =
        Arc::new(move || match &config_path {
            Some(path) => FileSettings::load(path)
                .map(|f| f.policy)
                .map_err(|e| e.to_string()),
            None => Ok(PolicyFile::default()),
        });
    let access = Arc::new(
        Access::from_sources(AccessSources {
            tls,
            crl,
            crl_required,
            policy: policy_loader,
        })
        .map_err(anyhow::Error::msg)
        .context("failed to load the agent's TLS files, CRL or policy")?,
    );
    let power_command = args
        .power_command
        .clone()
        .or_else(|| file.power_command.clone());
    if let Some(cmd) = &power_command {
        if !cmd.is_file() {
            bail!("power command {}: no such file", cmd.display());
        }
    }
    let audit = Arc::new(AuditLog::new(audit_path(args, file, &home)));
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
    };
    let limits = from_command_line.apply(&file.limits.apply(&Limits::default()));
    limits
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid limit: {e}"))?;
    let listen_text = args.listen.clone().or_else(|| file.listen.clone());
    let default_listen = listen_text.is_none();
    let listen = match &listen_text {
        Some(text) => parse_listen(text)?,
        None => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, DEFAULT_PORT)),
    };
    let tls_config = access.current().tls.clone();
    let mut config = Config::new(tls_config);
    config.access = access.clone();
    config.audit = Some(audit.clone());
    config.dry_run = args.dry_run || file.dry_run.unwrap_or(false);
    config.power_command = power_command;
    config.limits = limits;
    config.testing.fake_logged_in_users = args.fake_logged_in_users;
    if args.simulate_reboot {
        if !config.dry_run {
            bail!("--simulate-reboot is a test facility for dry-run agents: add --dry-run");
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
    })
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("interrupt received");
    }
}

/// Reloads the CRL and policy and reopens the audit log on every SIGHUP.
#[cfg(unix)]
fn spawn_reloader(access: Arc<Access>, audit: Arc<AuditLog>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload by restarting the agent");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            audit.reopen();
            match access.reload() {
                Ok(()) => tracing::info!("SIGHUP: reloaded the CRL and policy"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: reload failed, the previous CRL and policy stay in force")
                }
            }
        }
    });
}

#[cfg(not(unix))]
fn spawn_reloader(_access: Arc<Access>, _audit: Arc<AuditLog>) {}

async fn serve(resolved: Resolved) -> anyhow::Result<()> {
    let Resolved {
        listen,
        default_listen,
        home,
        config,
        access,
        audit,
        discovery,
    } = resolved;
    let listener = if default_listen {
        listener::bind_any(listen.port())
    } else {
        listener::bind(listen)
    }
    .with_context(|| format!("failed to listen on {listen}"))?;
    let bound = listener.local_addr()?;
    if let Some(identity) = discovery {
        let responder = Responder::bind(bound, identity)
            .with_context(|| format!("--discoverable: cannot bind UDP port {}", bound.port()))?;
        tokio::spawn(responder.serve(std::future::pending()));
    }
    tracing::info!(home = %home.dir().display(), audit = %audit.path().display(), "starting");
    spawn_reloader(access, audit);
    // One line on stdout for scripts and tests that started us on port 0.
    println!("listening on {bound}");
    lightsout_agent::run(listener, config, stop_signal()).await;
    Ok(())
}

fn audit_tail(args: &Args, file: &FileSettings, lines: usize, json: bool) -> anyhow::Result<()> {
    let home = resolve_home(args, file)?;
    let path = audit_path(args, file, &home);
    let entries = audit::tail(&path, lines)
        .with_context(|| format!("cannot read the audit log {}", path.display()))?;
    for entry in entries {
        match entry {
            Ok(e) if json => println!("{}", serde_json::to_string(&e).unwrap_or_default()),
            Ok(e) => println!("{}", audit::format_entry(&e)),
            Err(bad) => println!("!! {}", lightsout_protocol::text::sanitize(&bad)),
        }
    }
    Ok(())
}

fn check_config(args: &Args, file: &FileSettings) -> anyhow::Result<()> {
    let resolved = resolve(args, file)?;
    let state = resolved.access.current();
    println!("configuration OK");
    println!("  listen: {}", resolved.listen);
    println!("  home: {}", resolved.home.dir().display());
    println!("  audit log: {}", resolved.audit.path().display());
    println!("  dry run: {}", resolved.config.dry_run);
    println!("  revoked certificates in CRL: {}", state.revoked.len());
    Ok(())
}

fn init_logging(args: &Args, file: &FileSettings) {
    let level = match (args.verbose, args.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match args
        .log_format
        .or(file.log_format)
        .unwrap_or(LogFormat::Text)
    {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Some(AgentCommand::Completions { shell }) => {
            let mut cmd = <Args as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "lightsout-agent", &mut std::io::stdout());
            return Ok(());
        }
        Some(AgentCommand::Man) => {
            let cmd = <Args as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .section("8")
                .render(&mut std::io::stdout())?;
            return Ok(());
        }
        _ => {}
    }
    let file = file_settings(args)?;
    init_logging(args, &file);
    match &args.command {
        Some(AgentCommand::Audit(AuditCommand::Tail { lines, json })) => {
            audit_tail(args, &file, *lines, *json)
        }
        _ if args.check_config => check_config(args, &file),
        _ => {
            let resolved = resolve(args, &file)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the runtime")?;
            runtime.block_on(serve(resolved))
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lightsout-agent: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
