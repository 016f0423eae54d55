//! `lightsout`: the controller CLI. Flags become a validated plan before any socket opens;
//! the exit code says all-ok (0), some-failed (1) or usage/configuration error (2).

mod pki_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use lightsout_controller::fanout::new_request_id;
use lightsout_controller::{FanOut, Target, duration, report};
use lightsout_pki::{Home, TlsFiles};
use lightsout_protocol::{PowerParams, Request, RequestEnvelope};

/// lightsout: health checks, shutdown and restart for a room of lab machines, over mutual TLS.
#[derive(Debug, Parser)]
#[command(name = "lightsout", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Home directory holding the certificates [default: $LIGHTSOUT_HOME, else
    /// ~/.config/lightsout]. Created, with a new CA, on first use.
    #[arg(long, global = true, env = "LIGHTSOUT_HOME")]
    home: Option<PathBuf>,
    /// CA certificate agents must chain to [default: HOME/ca.pem].
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// Our client certificate [default: HOME/controller.pem].
    #[arg(long, global = true)]
    cert: Option<PathBuf>,
    /// Our private key [default: HOME/controller-key.pem].
    #[arg(long, global = true)]
    key: Option<PathBuf>,
    /// Revocation list: refuse agents whose certificate it lists [default: HOME/crl.pem if
    /// it exists].
    #[arg(long, global = true, value_name = "FILE")]
    crl: Option<PathBuf>,
    /// Deadline per host (connect, handshake, answer): 5s, 500ms, 1m.
    #[arg(long, global = true, default_value = "5s", value_parser = duration::parse_timeout)]
    timeout: Duration,
    /// Most hosts contacted at once.
    #[arg(long, global = true, default_value_t = 256)]
    parallel: usize,
    /// Name every agent certificate must match, instead of the host as typed.
    #[arg(long, global = true, value_name = "NAME")]
    tls_name: Option<String>,
    /// Print one JSON document instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Health check: each agent returns the payload and a health snapshot.
    Echo {
        /// Hosts: HOST, HOST:PORT, [IPv6]:PORT.
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
        /// Text the agents send back.
        #[arg(long, default_value = "ping")]
        payload: String,
    },
    /// Power machines off.
    Shutdown(PowerArgs),
    /// Restart machines.
    Restart(PowerArgs),
    /// Abort pending shutdowns and restarts.
    Cancel {
        /// Hosts: HOST, HOST:PORT, [IPv6]:PORT.
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
        /// Report what would be done, do nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Certificates: create the CA, issue agent and controller certificates.
    #[command(subcommand)]
    Pki(pki_cmd::PkiCommand),
}

#[derive(Debug, Args)]
struct PowerArgs {
    /// Hosts: HOST, HOST:PORT, [IPv6]:PORT.
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<String>,
    /// Wait before acting: 90 (seconds), 90s, 5m, 1h.
    #[arg(long, default_value = "0", value_parser = duration::parse)]
    delay: Duration,
    /// Message shown to logged-in users.
    #[arg(long)]
    message: Option<String>,
    /// Report exactly what would run on each host, execute nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace an action already pending on a host instead of being refused.
    #[arg(long)]
    replace: bool,
}

/// Failure before any host was contacted: exit code 2.
struct UsageError(anyhow::Error);

fn targets(raw: &[String]) -> Result<Vec<Target>, UsageError> {
    raw.iter()
        .map(|t| {
            Target::parse_default(t).map_err(|e| UsageError(anyhow::anyhow!("invalid target {e}")))
        })
        .collect()
}

fn tls_files(global: &Global) -> anyhow::Result<(TlsFiles, Option<PathBuf>)> {
    let home = Home::resolve(global.home.as_deref())?;
    let files = match (&global.ca, &global.cert, &global.key) {
        (Some(ca), Some(cert), Some(key)) => TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        },
        (None, None, None) => {
            lightsout_pki::ca::ensure_local(&home).with_context(|| {
                format!("failed to set up certificates in {}", home.dir().display())
            })?;
            TlsFiles::controller(&home)
        }
        _ => anyhow::bail!("--ca, --cert and --key go together"),
    };
    let crl = global
        .crl
        .clone()
        .or_else(|| Some(home.crl()).filter(|p| p.exists()));
    Ok((files, crl))
}

fn fanout(global: &Global) -> Result<FanOut, UsageError> {
    let (files, crl) = tls_files(global).map_err(UsageError)?;
    let crls = match &crl {
        Some(path) => lightsout_pki::crl::load(path)
            .context("failed to load the CRL")
            .map_err(UsageError)?,
        None => Vec::new(),
    };
    let tls = lightsout_pki::tls::client_config_with_crls(&files, crls)
        .context("failed to load the controller's TLS files")
        .map_err(UsageError)?;
    Ok(FanOut {
        tls,
        tls_name: global.tls_name.clone(),
        timeout: global.timeout,
        parallel: global.parallel,
    })
}

fn power_request(args: &PowerArgs, restart: bool) -> Result<(Request, bool), UsageError> {
    let params = PowerParams {
        delay_secs: args.delay.as_secs(),
        message: args.message.clone(),
        replace: args.replace,
    };
    params
        .validate()
        .map_err(|e| UsageError(anyhow::anyhow!("{e}")))?;
    let request = if restart {
        Request::Restart(params)
    } else {
        Request::Shutdown(params)
    };
    Ok((request, args.dry_run))
}

async fn run(cli: Cli) -> Result<bool, UsageError> {
    let (name, raw_targets, request, dry_run) = match &cli.command {
        Command::Pki(cmd) => {
            return pki_cmd::run(cmd, cli.global.home.as_deref())
                .map(|()| true)
                .map_err(UsageError);
        }
        Command::Echo { targets, payload } => (
            "echo",
            targets,
            Request::Echo {
                payload: payload.clone(),
            },
            false,
        ),
        Command::Shutdown(args) => {
            let (r, d) = power_request(args, false)?;
            ("shutdown", &args.targets, r, d)
        }
        Command::Restart(args) => {
            let (r, d) = power_request(args, true)?;
            ("restart", &args.targets, r, d)
        }
        Command::Cancel { targets, dry_run } => ("cancel", targets, Request::Cancel, *dry_run),
    };
    let hosts = targets(raw_targets)?;
    let fanout = fanout(&cli.global)?;
    let results = fanout
        .run(&hosts, |_| {
            RequestEnvelope::new(new_request_id(), dry_run, request.clone())
        })
        .await;
    if cli.global.json {
        println!("{}", report::json(name, &results));
    } else {
        print!("{}", report::table(&results));
    }
    Ok(results.iter().all(|r| r.ok()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lightsout: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(UsageError(e)) => {
            eprintln!("lightsout: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
