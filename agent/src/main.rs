//! `lightsout-agent`: command line + configuration file → validated [`Config`], then
//! [`lightsout_agent::run`]. SIGHUP reloads the CRL and policy; SIGTERM/Ctrl-C stop gracefully.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use lightsout_agent::access::Access;
use lightsout_agent::audit::{self, AuditLog};
use lightsout_agent::cli::{AgentCommand, Args, AuditCommand, LogFormat};
use lightsout_agent::discovery::Responder;
use lightsout_agent::resolve::{self, Resolved};
use lightsout_agent::settings::FileSettings;
use lightsout_agent::{Config, listener, outln, stdout};
use lightsout_cli::report;
use lightsout_pki::load::CertInfo;

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

/// Reloads the configuration file's `[policy]` and `[tls] crl` (and the CRL itself) and
/// reopens the audit log on every SIGHUP.
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
            tracing::info!(path = %audit.path().display(), "SIGHUP: the audit log is reopened at its next line (log rotation)");
            match access.reload() {
                None => {}
                Some(Ok(reloaded)) => {
                    tracing::info!(
                        crl = %reloaded.crl.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "none".into()),
                        revoked = reloaded.revoked,
                        "SIGHUP: reloaded the CRL and policy"
                    );
                    if !reloaded.restart_needed.is_empty() {
                        tracing::warn!(
                            keys = %reloaded.restart_needed.join(", "),
                            "SIGHUP: these settings changed in the configuration file and take effect only when the agent restarts"
                        );
                    }
                }
                Some(Err(e)) => {
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
        tls,
    } = resolved;
    warn_if_expiring(&tls.cert);
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
    outln!("listening on {bound}");
    lightsout_agent::run(listener, config, stop_signal()).await;
    Ok(())
}

/// A certificate close to its end is worth a line in the journal at every start: rustls
/// will refuse it at the first handshake after its date.
fn warn_if_expiring(cert: &std::path::Path) {
    let Ok(info) = CertInfo::from_file(cert) else {
        return;
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let days_left = info.days_left(now);
    if let Err(e) = info.check_valid(cert, now) {
        tracing::error!(error = %e, "controllers will refuse this certificate");
    } else if days_left < 30 {
        tracing::warn!(
            name = %info.name,
            days_left,
            cert = %cert.display(),
            "the agent's certificate expires soon: renew it (lightsout pki renew agent NAME)"
        );
    }
}

fn audit_tail(args: &Args, file: &FileSettings, lines: usize, json: bool) -> anyhow::Result<()> {
    let home = resolve::home(args, file)?;
    let path = resolve::audit_path(args, file, &home);
    let entries = audit::tail(&path, lines)
        .with_context(|| format!("cannot read the audit log {}", path.display()))?;
    for entry in entries {
        match entry {
            Ok(e) if json => outln!("{}", serde_json::to_string(&e).unwrap_or_default()),
            Ok(e) => outln!("{}", audit::format_entry(&e)),
            Err(damaged) => eprintln!(
                "lightsout-agent: warning: {}: {damaged}, skipped",
                path.display()
            ),
        }
    }
    Ok(())
}

fn check_config(args: &Args, file: &FileSettings) -> anyhow::Result<()> {
    let resolved = Config::resolve(args, file)?;
    resolve::check_audit_log(args, file, &resolved.audit)?;
    let state = resolved.access.current();
    // The TLS files loaded (key modes checked); now their dates, which rustls would only
    // refuse at the first handshake.
    let cert = &resolved.tls.cert;
    let info = CertInfo::from_file(cert)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    outln!(
        "certificate: {} ({}), fingerprint {}, {} days left (until {})",
        info.name,
        cert.display(),
        info.fingerprint,
        info.days_left(now),
        lightsout_pki::load::date(info.not_after_unix)
    );
    info.check_valid(cert, now)?;
    outln!("configuration OK");
    outln!("  listen: {}", resolved.listen);
    outln!("  home: {}", resolved.home.dir().display());
    outln!("  audit log: {}", resolved.audit.path().display());
    outln!("  dry run: {}", resolved.config.dry_run);
    outln!("  power backend: {}", resolved.config.power_backend.name());
    outln!("  revoked certificates in CRL: {}", state.revoked.len());
    Ok(())
}

fn init_logging(args: &Args, file: &FileSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_directives(args)));
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
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && !no_color())
            .init(),
    }
}

/// What `-v`/`-q` show (`RUST_LOG` overrides): `-v` is lightsout's own decisions at debug
/// and the libraries at info, `-vv` lightsout at trace, `-vvv` everything at trace (rustls'
/// handshake internals, tokio). The libraries' chatter would bury the agent's own lines.
fn log_directives(args: &Args) -> &'static str {
    match (args.verbose, args.quiet) {
        (0, 0) => "info",
        (1, _) => "lightsout=debug,info",
        (2, _) => "lightsout=trace,info",
        (v, _) if v >= 3 => "trace",
        (_, 1) => "warn",
        _ => "error",
    }
}

/// <https://no-color.org>: `NO_COLOR` set and not empty turns colour off.
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Some(AgentCommand::Completions { shell }) => {
            let mut cmd = <Args as clap::CommandFactory>::command();
            // Into memory first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "lightsout-agent", &mut script);
            stdout::bytes(&script);
            return Ok(());
        }
        Some(AgentCommand::Man { out_dir }) => {
            lightsout_agent::man::manual().run(out_dir.as_deref())?;
            return Ok(());
        }
        _ => {}
    }
    let file = resolve::file_settings(args)?;
    init_logging(args, &file);
    match &args.command {
        Some(AgentCommand::Audit(AuditCommand::Tail { lines, json })) => {
            audit_tail(args, &file, *lines, *json)
        }
        _ if args.check_config => check_config(args, &file),
        _ => {
            let resolved = Config::resolve(args, &file)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the runtime")?;
            runtime.block_on(serve(resolved))
        }
    }
}

/// The name errors start with.
const PROGRAM: &str = "lightsout-agent";

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        return report::fail(PROGRAM, &e);
    }
    // A closed pipe is a normal end (`audit tail | head`); any other write error is not.
    report::finish(PROGRAM, std::process::ExitCode::SUCCESS)
}
