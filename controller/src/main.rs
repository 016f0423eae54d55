//! `lightsout`: the controller CLI. Flags become a validated plan before any socket opens;
//! the exit code says all-ok (0), some-failed (1) or usage/configuration error (2).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use lightsout_controller::cli::{Cli, Command, Global, InventoryCommand, PowerArgs};
use lightsout_controller::cmd::power::PowerJob;
use lightsout_controller::cmd::{discover, inventory as inventory_cmd, pki, power, wake};
use lightsout_controller::fanout::new_request_id;
use lightsout_controller::inventory::{Host, Inventory};
use lightsout_controller::local::LocalMachine;
use lightsout_controller::print::{Live, Mode};
use lightsout_controller::{FanOut, render};
use lightsout_pki::{Home, TlsFiles};
use lightsout_protocol::{PowerAction, PowerParams, Request, RequestEnvelope};

/// Failure before any host was contacted (or a refusal): exit code 2.
struct UsageError(anyhow::Error);

impl From<anyhow::Error> for UsageError {
    fn from(e: anyhow::Error) -> Self {
        UsageError(e)
    }
}

impl From<power::PowerError> for UsageError {
    fn from(e: power::PowerError) -> Self {
        UsageError(e.into())
    }
}

fn home(global: &Global) -> anyhow::Result<Home> {
    Ok(Home::resolve(global.home.as_deref())?)
}

fn inventory(global: &Global) -> anyhow::Result<Inventory> {
    let home = home(global)?;
    Ok(Inventory::open(global.inventory.as_deref(), home.dir())?)
}

fn resolve(inventory: &Inventory, targets: &[String]) -> anyhow::Result<Vec<Host>> {
    let hosts = inventory.resolve(targets)?;
    if hosts.is_empty() {
        anyhow::bail!("{} resolves to no host", targets.join(" "));
    }
    Ok(hosts)
}

fn tls_files(global: &Global) -> anyhow::Result<(TlsFiles, Option<PathBuf>)> {
    let home = home(global)?;
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

fn fanout(global: &Global) -> anyhow::Result<FanOut> {
    let (files, crl) = tls_files(global)?;
    let crls = match &crl {
        Some(path) => lightsout_pki::crl::load(path).context("failed to load the CRL")?,
        None => Vec::new(),
    };
    let tls = lightsout_pki::tls::client_config_with_crls(&files, crls)
        .context("failed to load the controller's TLS files")?;
    Ok(FanOut {
        tls,
        tls_name: global.tls_name.clone(),
        timeout: global.timeout,
        parallel: global.parallel,
    })
}

fn power_job(args: &PowerArgs, action: PowerAction) -> anyhow::Result<PowerJob> {
    let params = PowerParams {
        delay_secs: args.delay.as_secs(),
        message: args.message.clone(),
        replace: args.replace,
    };
    params.validate().map_err(anyhow::Error::msg)?;
    Ok(PowerJob {
        action,
        params,
        dry_run: args.dry_run,
        yes: args.yes,
        skip_busy: args.skip_busy,
        batch: args.batch.map(|n| n as usize),
        stagger: args.stagger,
        include_self: args.include_self,
        wait: None,
    })
}

/// One request to every host; the plain commands (echo, cancel, status).
async fn simple(
    global: &Global,
    name: &str,
    hosts: &[Host],
    request: Request,
    dry_run: bool,
) -> anyhow::Result<bool> {
    let fanout = fanout(global)?;
    let mode = Mode::from_flags(global.json, global.jsonl);
    let live = Live::new(name, mode, hosts.len());
    let results = fanout
        .run(
            hosts,
            |_| RequestEnvelope::new(new_request_id(), dry_run, request.clone()),
            |r| live.done(r),
        )
        .await;
    if name == "status" && mode == Mode::Table {
        live.clear();
        print!("{}", render::status_board(&results));
    } else {
        live.finish(&results);
    }
    Ok(results.iter().all(|r| r.ok()))
}

fn all_if_empty(targets: &[String]) -> Vec<String> {
    if targets.is_empty() {
        vec!["all".to_owned()]
    } else {
        targets.to_vec()
    }
}

async fn run(cli: Cli) -> Result<bool, UsageError> {
    let global = &cli.global;
    let mode = Mode::from_flags(global.json, global.jsonl);
    // Everything is validated (parameters, inventory, targets) before anything is sent.
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "lightsout", &mut std::io::stdout());
            Ok(true)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(|e| UsageError(e.into()))?;
            Ok(true)
        }
        Command::Pki(cmd) => {
            pki::run(cmd, global.home.as_deref())?;
            Ok(true)
        }
        Command::Echo { targets, payload } => {
            let hosts = resolve(&inventory(global)?, targets)?;
            let request = Request::Echo {
                payload: payload.clone(),
            };
            Ok(simple(global, "echo", &hosts, request, false).await?)
        }
        Command::Status { targets } => {
            let hosts = resolve(&inventory(global)?, &all_if_empty(targets))?;
            let request = Request::Echo {
                payload: "status".into(),
            };
            Ok(simple(global, "status", &hosts, request, false).await?)
        }
        Command::Cancel { targets, dry_run } => {
            let hosts = resolve(&inventory(global)?, targets)?;
            Ok(simple(global, "cancel", &hosts, Request::Cancel, *dry_run).await?)
        }
        Command::Shutdown(args) => {
            let plan = power_job(args, PowerAction::Shutdown)?;
            let hosts = resolve(&inventory(global)?, &args.targets)?;
            let fanout = fanout(global)?;
            Ok(power::run(&fanout, hosts, &plan, mode, &LocalMachine::probe()).await?)
        }
        Command::Restart(args) => {
            let mut plan = power_job(&args.power, PowerAction::Restart)?;
            plan.wait = args.wait.then_some(args.wait_timeout);
            let hosts = resolve(&inventory(global)?, &args.power.targets)?;
            let fanout = fanout(global)?;
            Ok(power::run(&fanout, hosts, &plan, mode, &LocalMachine::probe()).await?)
        }
        Command::Wake(args) => {
            let inventory = inventory(global)?;
            let hosts = resolve(&inventory, &args.targets)?;
            let to = wake::Destination {
                broadcast: args.broadcast,
                port: args.port,
            };
            match &args.via {
                None => Ok(wake::direct(&hosts, to, args.dry_run, mode)?),
                Some(via) => {
                    let relays = resolve(&inventory, std::slice::from_ref(via))?;
                    let [relay] = relays.as_slice() else {
                        return Err(UsageError(anyhow::anyhow!(
                            "--via {via} must name one host, not {}",
                            relays.len()
                        )));
                    };
                    let fanout = fanout(global)?;
                    Ok(wake::via(&fanout, relay, &hosts, to, args.dry_run, mode).await?)
                }
            }
        }
        Command::Discover(args) => {
            // Discovery may create the inventory it writes to.
            let inventory = match &global.inventory {
                Some(path) if args.write_inventory && !path.exists() => Inventory::absent(path),
                _ => inventory(global)?,
            };
            Ok(discover::run(
                &inventory,
                args.broadcast,
                args.port,
                global.timeout,
                args.write_inventory,
                mode,
            )
            .await?)
        }
        Command::Inventory(InventoryCommand::List { targets }) => {
            let inventory = inventory(global)?;
            if targets.is_empty() && !inventory.is_loaded() {
                return Err(UsageError(anyhow::anyhow!(
                    "no inventory at {} (see inventory.example.toml, or pass --inventory FILE)",
                    inventory.path.display()
                )));
            }
            let hosts = inventory
                .resolve(&all_if_empty(targets))
                .map_err(anyhow::Error::from)?;
            inventory_cmd::list(&inventory, &hosts, mode);
            Ok(true)
        }
        Command::Inventory(InventoryCommand::Learn { targets }) => {
            let inventory = inventory(global)?;
            let hosts = resolve(&inventory, targets)?;
            let fanout = fanout(global)?;
            Ok(inventory_cmd::learn(&fanout, &inventory, hosts, mode).await?)
        }
    }
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_open_files_limit(cli.global.parallel);
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
