//! `lightsout-agent`: command line, validated configuration, then [`lightsout_agent::run`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use lightsout_agent::{Config, Limits, listener};
use lightsout_pki::{Home, TlsFiles};
use lightsout_protocol::DEFAULT_PORT;

/// The lightsout agent: answers health checks and carries out whitelisted power actions
/// (shutdown, restart, cancel) for controllers holding a certificate from the lab CA.
#[derive(Debug, Parser)]
#[command(name = "lightsout-agent", version, about, long_about = None)]
struct Args {
    /// Address to listen on: ADDR:PORT, ADDR (default port) or PORT. `[::]` listens on all
    /// interfaces, IPv4 and IPv6.
    #[arg(long, env = "LIGHTSOUT_LISTEN", default_value_t = format!("[::]:{DEFAULT_PORT}"))]
    listen: String,

    /// Home directory holding the certificates [default: $LIGHTSOUT_HOME, else
    /// ~/.config/lightsout]. Created, with a new CA, on first use.
    #[arg(long, env = "LIGHTSOUT_HOME")]
    home: Option<PathBuf>,

    /// CA certificate controllers must chain to [default: HOME/ca.pem].
    #[arg(long, requires_all = ["cert", "key"])]
    ca: Option<PathBuf>,
    /// This agent's certificate [default: HOME/agent.pem].
    #[arg(long, requires_all = ["ca", "key"])]
    cert: Option<PathBuf>,
    /// This agent's private key [default: HOME/agent-key.pem].
    #[arg(long, requires_all = ["ca", "cert"])]
    key: Option<PathBuf>,

    /// Rehearse: answer every power request with the exact command line, execute nothing.
    #[arg(long)]
    dry_run: bool,

    /// Run this program instead of the system's `shutdown`, with the same arguments. For
    /// tests and demonstrations: a harmless stand-in exercises the real execution path.
    #[arg(long, value_name = "PATH")]
    power_command: Option<PathBuf>,

    /// Most connections served at once; more are closed immediately.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Seconds a client has to complete the TLS handshake.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().handshake_timeout.as_secs())]
    handshake_timeout: u64,
    /// Seconds a connection may stay silent between requests.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().idle_timeout.as_secs())]
    idle_timeout: u64,
    /// Largest frame accepted, in bytes (4096 to 65536); a larger one is refused and the
    /// connection closed.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_frame_len)]
    max_frame_len: usize,
    /// Largest echo payload accepted, in bytes (below --max-frame-len).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_echo_payload)]
    max_echo_payload: usize,
    /// Requests one connection may send per second (and at once); more are answered with
    /// `busy` and not carried out.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_requests_per_sec)]
    max_requests_per_sec: u32,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().shutdown_grace.as_secs())]
    shutdown_grace: u64,
}

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
    bail!("--listen {s:?}: expected ADDR:PORT, ADDR or PORT (e.g. 0.0.0.0:{DEFAULT_PORT})")
}

fn config(args: &Args) -> anyhow::Result<Config> {
    let files = match (&args.ca, &args.cert, &args.key) {
        (Some(ca), Some(cert), Some(key)) => TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => {
            let home = Home::resolve(args.home.as_deref())?;
            lightsout_pki::ca::ensure_local(&home).with_context(|| {
                format!("failed to set up certificates in {}", home.dir().display())
            })?;
            TlsFiles::agent(&home)
        }
    };
    let tls = lightsout_pki::tls::server_config(&files)
        .context("failed to load the agent's TLS files")?;
    if let Some(cmd) = &args.power_command {
        if !cmd.is_file() {
            bail!("--power-command {}: no such file", cmd.display());
        }
    }
    let mut config = Config::new(tls);
    config.dry_run = args.dry_run;
    config.power_command = args.power_command.clone();
    config.limits = Limits {
        max_connections: args.max_connections.max(1),
        handshake_timeout: Duration::from_secs(args.handshake_timeout.max(1)),
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        max_frame_len: args.max_frame_len,
        max_echo_payload: args.max_echo_payload,
        max_requests_per_sec: args.max_requests_per_sec,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
    };
    config
        .limits
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid limit: {e}"))?;
    Ok(config)
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

async fn main_async(args: Args) -> anyhow::Result<()> {
    let config = config(&args)?;
    let addr = parse_listen(&args.listen)?;
    let default_listen = args.listen == format!("[::]:{DEFAULT_PORT}");
    let listener = if default_listen {
        listener::bind_any(addr.port())
    } else {
        listener::bind(addr)
    }
    .with_context(|| format!("failed to listen on {addr}"))?;
    let bound = listener.local_addr()?;
    // One line on stdout for scripts and tests that started us on port 0.
    println!("listening on {bound}");
    lightsout_agent::run(listener, config, stop_signal()).await;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lightsout-agent: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lightsout-agent: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
