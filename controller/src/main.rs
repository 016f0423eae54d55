//! `lightsout`: the controller CLI. Flags become a validated plan before any socket opens;
//! the exit code says all-ok (0), some-failed (1) or usage/configuration error (2).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use lightsout_controller::cli::{Cli, Command, Global, PowerArgs};
use lightsout_controller::fanout::new_request_id;
use lightsout_controller::{FanOut, Target, pki_cmd, report};
use lightsout_pki::{Home, TlsFiles};
use lightsout_protocol::{PowerParams, Request, RequestEnvelope};

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
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "lightsout", &mut std::io::stdout());
            return Ok(true);
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            return clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map(|()| true)
                .map_err(|e| UsageError(e.into()));
        }
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
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(match cli.global.verbose {
                    0 => "warn",
                    1 => "debug",
                    _ => "trace",
                })
            }),
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
