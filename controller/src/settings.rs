//! The command line turned into validated settings before any work starts (ripgrep's
//! low-args → high-args): the output mode, the inventory loaded, targets resolved to hosts,
//! power parameters checked, certificates and the CRL loaded into the fan-out's TLS
//! configuration. A bad flag, file or target is an error here, before the first socket
//! opens; the checks run in the order a user meets them (parameters, inventory, targets,
//! certificates).

use std::path::PathBuf;

use anyhow::Context;
use lightsout_controller::FanOut;
use lightsout_controller::cli::{
    Cli, Command, Global, InventoryCommand, PkiCommand, PowerArgs, RestartArgs, ShutdownArgs,
    WakeArgs,
};
use lightsout_controller::cmd::power::PowerJob;
use lightsout_controller::cmd::wake::Destination;
use lightsout_controller::inventory::{Host, Inventory};
use lightsout_controller::print::Mode;
use lightsout_controller::result::CERT_WARNING_DAYS;
use lightsout_pki::ca::Setup;
use lightsout_pki::load::CertInfo;
use lightsout_pki::{Home, Side, TlsFiles};
use lightsout_protocol::{PowerAction, PowerParams};

/// Everything a command needs, validated.
#[derive(Debug)]
pub struct Settings {
    /// Table, `--json` or `--jsonl`.
    pub mode: Mode,
    /// The command and its validated inputs.
    pub work: Work,
}

/// A command ready to run.
#[derive(Debug)]
pub enum Work {
    /// `completions SHELL`.
    Completions(clap_complete::Shell),
    /// `man [--out-dir DIR]`.
    Man(Option<PathBuf>),
    /// `pki ...`: it finds its home directory itself.
    Pki {
        cmd: PkiCommand,
        home: Option<PathBuf>,
    },
    /// `echo`.
    Echo {
        fanout: FanOut,
        hosts: Vec<Host>,
        payload: String,
    },
    /// `status`.
    Status { fanout: FanOut, hosts: Vec<Host> },
    /// `cancel`.
    Cancel {
        fanout: FanOut,
        hosts: Vec<Host>,
        dry_run: bool,
    },
    /// `shutdown` and `restart`.
    Power {
        fanout: FanOut,
        hosts: Vec<Host>,
        job: PowerJob,
    },
    /// `wake` without `--via`.
    WakeDirect {
        hosts: Vec<Host>,
        to: Destination,
        dry_run: bool,
    },
    /// `wake --via RELAY`.
    WakeVia {
        fanout: FanOut,
        relay: Host,
        hosts: Vec<Host>,
        to: Destination,
        dry_run: bool,
    },
    /// `discover`.
    Discover {
        inventory: Inventory,
        args: lightsout_controller::cli::DiscoverArgs,
        window: std::time::Duration,
    },
    /// `inventory list`.
    InventoryList {
        inventory: Inventory,
        hosts: Vec<Host>,
    },
    /// `inventory learn`.
    InventoryLearn {
        fanout: FanOut,
        inventory: Inventory,
        hosts: Vec<Host>,
    },
}

impl Settings {
    /// Validates the command line.
    ///
    /// # Errors
    /// Any usage or configuration error (exit code 2).
    pub fn new(cli: Cli) -> anyhow::Result<Self> {
        let global = &cli.global;
        let mode = Mode::from_flags(global.json, global.jsonl);
        let work = match cli.command {
            Command::Completions { shell } => Work::Completions(shell),
            Command::Man { out_dir } => Work::Man(out_dir),
            Command::Pki(cmd) => Work::Pki {
                cmd,
                home: global.home.clone(),
            },
            Command::Echo { targets, payload } => {
                let hosts = resolve(&inventory(global)?, &targets)?;
                Work::Echo {
                    fanout: fanout(global)?,
                    hosts,
                    payload,
                }
            }
            Command::Status { targets } => {
                let hosts = resolve(&inventory(global)?, &all_if_empty(&targets))?;
                Work::Status {
                    fanout: fanout(global)?,
                    hosts,
                }
            }
            Command::Cancel { targets, dry_run } => {
                let hosts = resolve(&inventory(global)?, &targets)?;
                Work::Cancel {
                    fanout: fanout(global)?,
                    hosts,
                    dry_run,
                }
            }
            Command::Shutdown(ShutdownArgs {
                power,
                wait,
                wait_timeout,
            }) => {
                let mut job = power_job(&power, PowerAction::Shutdown)?;
                job.wait = wait.then_some(wait_timeout);
                let hosts = resolve(&inventory(global)?, &power.targets)?;
                Work::Power {
                    fanout: fanout(global)?,
                    hosts,
                    job,
                }
            }
            Command::Restart(RestartArgs {
                power,
                wait,
                wait_timeout,
            }) => {
                let mut job = power_job(&power, PowerAction::Restart)?;
                job.wait = wait.then_some(wait_timeout);
                let hosts = resolve(&inventory(global)?, &power.targets)?;
                Work::Power {
                    fanout: fanout(global)?,
                    hosts,
                    job,
                }
            }
            Command::Wake(args) => wake(global, args)?,
            Command::Discover(args) => {
                if let Some(group) = &args.group {
                    lightsout_controller::inventory::check_name("group", group)?;
                }
                // Discovery may create the inventory it writes to.
                let inventory = match &global.inventory {
                    Some(path) if args.write_inventory && !path.exists() => Inventory::absent(path),
                    _ => inventory(global)?,
                };
                Work::Discover {
                    inventory,
                    args,
                    window: global.timeout,
                }
            }
            Command::Inventory(InventoryCommand::List { targets }) => {
                let inventory = inventory(global)?;
                if targets.is_empty() && !inventory.is_loaded() {
                    anyhow::bail!(
                        "no inventory at {} (see inventory.example.toml, or pass --inventory FILE)",
                        inventory.path.display()
                    );
                }
                let hosts = inventory.resolve(&all_if_empty(&targets))?;
                Work::InventoryList { inventory, hosts }
            }
            Command::Inventory(InventoryCommand::Learn { targets }) => {
                let inventory = inventory(global)?;
                let hosts = resolve(&inventory, &targets)?;
                Work::InventoryLearn {
                    fanout: fanout(global)?,
                    inventory,
                    hosts,
                }
            }
        };
        Ok(Self { mode, work })
    }
}

fn wake(global: &Global, args: WakeArgs) -> anyhow::Result<Work> {
    let inventory = inventory(global)?;
    let hosts = resolve(&inventory, &args.targets)?;
    let to = Destination {
        broadcast: args.broadcast,
        port: args.port,
    };
    let Some(via) = &args.via else {
        return Ok(Work::WakeDirect {
            hosts,
            to,
            dry_run: args.dry_run,
        });
    };
    let relays = resolve(&inventory, std::slice::from_ref(via))?;
    let [relay] = relays.as_slice() else {
        anyhow::bail!("--via {via} must name one host, not {}", relays.len());
    };
    Ok(Work::WakeVia {
        fanout: fanout(global)?,
        relay: relay.clone(),
        hosts,
        to,
        dry_run: args.dry_run,
    })
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

fn all_if_empty(targets: &[String]) -> Vec<String> {
    if targets.is_empty() {
        vec!["all".to_owned()]
    } else {
        targets.to_vec()
    }
}

fn tls_files(global: &Global) -> anyhow::Result<(TlsFiles, Option<PathBuf>)> {
    let home = home(global)?;
    let files = match (&global.ca, &global.cert, &global.key) {
        _ if global.bundle.is_some() => {
            if global.ca.is_some() || global.cert.is_some() || global.key.is_some() {
                anyhow::bail!(
                    "--bundle holds the CA, the certificate and the key: drop --ca, --cert and --key"
                );
            }
            let bundle = global.bundle.clone().unwrap_or_default();
            if !bundle.exists() {
                anyhow::bail!(
                    "bundle {} (--bundle or LIGHTSOUT_BUNDLE): no such file; issue one on the CA machine (`lightsout pki issue controller NAME --role ROLE --bundle FILE`) and copy it here",
                    bundle.display()
                );
            }
            TlsFiles::bundle(bundle)
        }
        (Some(ca), Some(cert), Some(key)) => TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        },
        (None, None, None) => {
            let setup = lightsout_pki::ca::ensure_local(&home, Side::Controller)?;
            if setup == Setup::NewCa {
                eprintln!("lightsout: {}", lightsout_pki::ca::new_ca_notice(&home));
            }
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
    check_dates(&files.cert)?;
    Ok(FanOut {
        tls,
        tls_name: global.tls_name.clone(),
        timeout: global.timeout,
        parallel: global.parallel,
    })
}

/// Our own certificate's dates, said once on stderr: out of its dates, every agent will refuse
/// the handshake (and says so, which is why this is a warning and not an error); within a
/// month of its end, it is time to renew (the lab's certificates all age together).
fn check_dates(cert: &std::path::Path) -> anyhow::Result<()> {
    let info = CertInfo::from_file(cert)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let renew = format!(
        "renew it (`lightsout pki renew controller {}` on the CA machine)",
        info.name
    );
    if let Err(e) = info.check_valid(cert, now) {
        eprintln!("lightsout: warning: {e}: agents will refuse it; {renew}");
    } else if info.days_left(now) < CERT_WARNING_DAYS {
        eprintln!(
            "lightsout: warning: our certificate {} ({}) expires in {} days: {renew}",
            cert.display(),
            info.name,
            info.days_left(now)
        );
    }
    Ok(())
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
        batch: args.batch,
        max_fail: args.max_fail,
        stagger: args.stagger,
        include_self: args.include_self,
        wait: None,
    })
}
