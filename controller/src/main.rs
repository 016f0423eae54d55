//! `lightsout`: the controller CLI. Flags become validated [`settings`] before any socket
//! opens; the exit code says all-ok (0), some-failed (1) or usage/configuration error (2).
//! The binary's edge is the only place errors are `anyhow`.

use std::process::ExitCode;

use clap::Parser;
use lightsout_cli::report;
use lightsout_controller::cli::Cli;
use lightsout_controller::cmd::{
    cancel, discover, echo, inventory as inventory_cmd, pki, power, status, wake,
};
use lightsout_controller::local::LocalMachine;
use lightsout_controller::stdout;

mod settings;

use settings::{Settings, Work};

/// Failure before any host was contacted (or a refusal): exit code 2.
struct UsageError(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for UsageError {
    fn from(e: E) -> Self {
        UsageError(e.into())
    }
}

/// Validates everything (parameters, inventory, targets, certificates) before anything is
/// sent, then runs the command; `Ok(false)` when a host failed.
async fn run(cli: Cli) -> Result<bool, UsageError> {
    let Settings { mode, work } = Settings::new(cli)?;
    Ok(match work {
        Work::Completions(shell) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into memory first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "lightsout", &mut script);
            stdout::bytes(&script);
            true
        }
        Work::Man(out_dir) => {
            lightsout_controller::man::manual().run(out_dir.as_deref())?;
            true
        }
        Work::Pki { cmd, home } => {
            pki::run(&cmd, home.as_deref())?;
            true
        }
        Work::Echo {
            fanout,
            hosts,
            payload,
        } => echo::run(&fanout, &hosts, payload, mode).await,
        Work::Status { fanout, hosts } => status::run(&fanout, &hosts, mode).await,
        Work::Cancel {
            fanout,
            hosts,
            dry_run,
        } => cancel::run(&fanout, &hosts, dry_run, mode).await,
        Work::Power { fanout, hosts, job } => {
            power::run(&fanout, hosts, &job, mode, &LocalMachine::probe()).await?
        }
        Work::WakeDirect { hosts, to, dry_run } => wake::direct(&hosts, to, dry_run, mode)?,
        Work::WakeVia {
            fanout,
            relay,
            hosts,
            to,
            dry_run,
        } => wake::via(&fanout, &relay, &hosts, to, dry_run, mode).await?,
        Work::Discover {
            inventory,
            args,
            window,
        } => {
            discover::run(
                &inventory,
                args.broadcast,
                args.port,
                window,
                args.write_inventory,
                args.group.as_deref(),
                mode,
            )
            .await?
        }
        Work::InventoryList { inventory, hosts } => {
            inventory_cmd::list(&inventory, &hosts, mode);
            true
        }
        Work::InventoryLearn {
            fanout,
            inventory,
            hosts,
        } => inventory_cmd::learn(&fanout, &inventory, hosts, mode).await?,
    })
}

/// A fan-out holds one socket per host in flight: make room for `--parallel` of them. The
/// usual soft limit of 1,024 open files would otherwise fail a fan-out of that width with
/// "too many open files"; the hard limit is the ceiling, and failing to raise is harmless
/// (hosts beyond it report an I/O error of their own).
#[cfg(unix)]
fn raise_open_files_limit(parallel: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let want = u64::try_from(parallel)
        .unwrap_or(u64::MAX)
        .saturating_add(64);
    if limit.current.is_some_and(|current| current < want) {
        limit.current = Some(limit.maximum.map_or(want, |max| want.min(max)));
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

#[cfg(not(unix))]
fn raise_open_files_limit(_parallel: usize) {}

/// What `-v` shows (`RUST_LOG` overrides): `-v` is lightsout's own decisions at debug,
/// `-vv` lightsout at trace, `-vvv` everything (rustls' handshakes, tokio) at trace; the
/// libraries stay at warn below that.
fn log_directives(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn",
        1 => "lightsout=debug,warn",
        2 => "lightsout=trace,warn",
        _ => "trace",
    }
}

/// <https://no-color.org>: `NO_COLOR` set and not empty turns colour off.
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_open_files_limit(cli.global.parallel);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && !no_color())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(log_directives(cli.global.verbose))
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
    let status = match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(UsageError(e)) => return report::fail("lightsout", &e),
    };
    // A closed pipe is a normal end (the status stands); any other write error is not.
    report::finish("lightsout", status)
}
