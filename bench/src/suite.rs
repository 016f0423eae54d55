//! The benchmark run: start the agents, measure, compare with the floor, report.
//!
//! Everything runs on loopback (127.0.0.0/8), every agent in `--dry-run`, and the only request
//! ever sent is `echo`. Every loop is bounded in count and in time.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lightsout_controller::{Client, Target};
use lightsout_protocol::RequestEnvelope;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::floor::{self, FloorConn};
use crate::procs::{self, ProcSample, Spawned};
use crate::report::{Report, Row, Verdict};
use crate::stats::{Series, human, ratio};

/// The name every agent certificate carries (`ensure_local` issues localhost/127.0.0.1/::1).
const TLS_NAME: &str = "localhost";
/// First agent port; agent `i` listens on `127.0.(1 + i/250).(1 + i%250):(BASE_PORT + i)`,
/// below Linux's ephemeral range so client sockets never take them.
const BASE_PORT: u16 = 20_000;
/// The fan-out sizes.
const SIZES: [usize; 3] = [10, 100, 1000];
/// Concurrent clients in the requests/second measurement.
const RPS_CONNECTIONS: usize = 64;
/// Idle connections held open in the memory measurement.
const HELD_CONNECTIONS: usize = 1000;
/// Deadline per host for every fan-out (also bounds a hung run).
const HOST_TIMEOUT: &str = "10s";

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Fewer runs and shorter windows (about a minute in all).
    pub quick: bool,
    /// Largest fan-out (the sizes are 10, 100, 1000, capped by this).
    pub max_agents: usize,
    /// Where to write the JSON results.
    pub json_out: PathBuf,
    /// Use the binaries in this directory instead of building them.
    pub bin_dir: Option<PathBuf>,
}

/// How many times each figure is taken.
#[derive(Debug, Clone, Copy)]
struct Plan {
    fanout_runs: [usize; 3],
    single_runs: usize,
    round_trips: usize,
    rps_window: Duration,
    idle_window: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                fanout_runs: [7, 5, 3],
                single_runs: 11,
                round_trips: 1000,
                rps_window: Duration::from_secs(1),
                idle_window: Duration::from_secs(5),
            }
        } else {
            Self {
                fanout_runs: [21, 15, 9],
                single_runs: 41,
                round_trips: 5000,
                rps_window: Duration::from_secs(3),
                idle_window: Duration::from_secs(60),
            }
        }
    }
}

/// The three binaries.
#[derive(Debug)]
struct Bins {
    agent: PathBuf,
    controller: PathBuf,
    bench: PathBuf,
}

impl Bins {
    /// Builds the agent and controller (release) next to this binary unless `dir` is given.
    fn locate(dir: Option<&Path>) -> anyhow::Result<Self> {
        let bench = std::env::current_exe().context("cannot find this executable")?;
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => {
                if cfg!(debug_assertions) {
                    bail!(
                        "this is a debug build: figures would mean nothing. Run `cargo run --release -p lightsout-bench`"
                    );
                }
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
                eprintln!("building lightsout-agent and lightsout (release)...");
                // This package is named too, so dependency features unify exactly as in the
                // `cargo run -p lightsout-bench` that started us: nothing is rebuilt twice.
                let mut build = Command::new(cargo);
                // `cargo run` gave us the package's variables (CARGO_PKG_NAME, ...); build
                // scripts such as ring's rerun when they change, so the build would start over.
                for (key, _) in std::env::vars_os() {
                    let k = key.to_string_lossy();
                    if k.starts_with("CARGO_PKG_")
                        || k.starts_with("CARGO_MANIFEST_")
                        || matches!(
                            &*k,
                            "CARGO_CRATE_NAME"
                                | "CARGO_BIN_NAME"
                                | "CARGO_PRIMARY_PACKAGE"
                                | "CARGO_RUSTC_CURRENT_DIR"
                                | "OUT_DIR"
                        )
                    {
                        build.env_remove(&key);
                    }
                }
                let status = build
                    .args(["build", "--release", "--bins", "--manifest-path"])
                    .arg(&manifest)
                    .args(["-p", "lightsout-agent", "-p", "lightsout-controller"])
                    .args(["-p", env!("CARGO_PKG_NAME")])
                    .status()
                    .context("failed to run cargo")?;
                if !status.success() {
                    bail!("building the binaries failed");
                }
                procs::exe_dir()?
            }
        };
        let bins = Self {
            agent: dir.join(format!("lightsout-agent{}", std::env::consts::EXE_SUFFIX)),
            controller: dir.join(format!("lightsout{}", std::env::consts::EXE_SUFFIX)),
            bench,
        };
        for p in [&bins.agent, &bins.controller] {
            if !p.is_file() {
                bail!("{} not found", p.display());
            }
        }
        Ok(bins)
    }
}

/// The temporary lab: the tests' lab (one home with the certificates), a log directory, the
/// client config.
struct Lab {
    tests: lightsout_tests::Lab,
    home: PathBuf,
    logs: PathBuf,
    tls: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl Lab {
    fn new() -> anyhow::Result<Self> {
        // Once, before any agent starts: they all find the files and create nothing.
        let tests = lightsout_tests::Lab::new();
        procs::register_scratch(tests.dir.path());
        let home = tests.home.dir().to_path_buf();
        let logs = tests.dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        Ok(Self {
            tls: tests.client_tls(),
            name: ServerName::try_from(TLS_NAME)?.to_owned(),
            tests,
            home,
            logs,
        })
    }

    fn log(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }
}

/// Agent `i`'s address: distinct address and port for each.
fn agent_addr(i: usize) -> SocketAddr {
    let (hi, lo) = (i / 250, i % 250);
    let ip = Ipv4Addr::new(
        127,
        0,
        u8::try_from(1 + hi).unwrap_or(u8::MAX),
        u8::try_from(1 + lo).unwrap_or(u8::MAX),
    );
    SocketAddr::from((
        ip,
        BASE_PORT + u16::try_from(i).unwrap_or(u16::MAX - BASE_PORT),
    ))
}

/// Starts a dry-run agent on `listen` (not waiting for it).
fn spawn_agent(
    bins: &Bins,
    lab: &Lab,
    name: &str,
    listen: SocketAddr,
    extra: &[&str],
) -> anyhow::Result<Spawned> {
    let mut cmd = procs::command(&bins.agent);
    // --dry-run always: the benchmark must never be able to power anything off.
    // The per-connection rate limit (100/s by default), the per-address handshake cap (16)
    // and the per-address and per-certificate caps on connections (64, 32) protect agents
    // from one noisy client; the round-trip, throughput and held-connection loops are that
    // client on purpose (one address and one certificate standing for many).
    cmd.arg("--dry-run")
        .arg("--listen")
        .arg(listen.to_string())
        .args(["--max-requests-per-sec", "1000000"])
        .args(["--max-handshakes-per-ip", "100000"])
        .args(["--max-connections-per-ip", "100000"])
        .args(["--max-connections-per-cert", "100000"])
        .args(extra)
        .env("LIGHTSOUT_HOME", &lab.home)
        .env_remove("RUST_LOG");
    procs::start(cmd, &lab.log(name))
}

fn start_agent(
    bins: &Bins,
    lab: &Lab,
    name: &str,
    listen: SocketAddr,
    extra: &[&str],
) -> anyhow::Result<(Spawned, SocketAddr)> {
    let mut agent = spawn_agent(bins, lab, name, listen, extra)?;
    agent.ready()?;
    let addr = agent.listen_addr()?;
    Ok((agent, addr))
}

/// Floor server `i`'s address: like [`agent_addr`], ten /24s further on.
fn floor_addr(i: usize) -> SocketAddr {
    let agent = agent_addr(i);
    let std::net::IpAddr::V4(ip) = agent.ip() else {
        return agent;
    };
    let [a, b, c, d] = ip.octets();
    SocketAddr::from((
        Ipv4Addr::new(a, b, c.saturating_add(10), d),
        agent.port().saturating_add(2000),
    ))
}

/// Many children stopped in one pass when dropped.
struct FleetGuard(Vec<Spawned>);

impl FleetGuard {
    /// Waits for every member to be ready; their addresses, in order.
    fn ready(&mut self) -> anyhow::Result<Vec<SocketAddr>> {
        self.0
            .iter_mut()
            .map(|s| {
                s.ready()?;
                s.listen_addr()
            })
            .collect()
    }
}

impl Drop for FleetGuard {
    fn drop(&mut self) {
        procs::stop_all(std::mem::take(&mut self.0));
    }
}

fn spawn_floor_server(
    bins: &Bins,
    lab: &Lab,
    name: &str,
    listen: SocketAddr,
) -> anyhow::Result<Spawned> {
    let mut cmd = procs::command(&bins.bench);
    cmd.args(["floor-server", "--home"])
        .arg(&lab.home)
        .arg("--listen")
        .arg(listen.to_string());
    procs::start(cmd, &lab.log(name))
}

fn start_floor_server(
    bins: &Bins,
    lab: &Lab,
    name: &str,
    listen: SocketAddr,
) -> anyhow::Result<(Spawned, SocketAddr)> {
    let mut server = spawn_floor_server(bins, lab, name, listen)?;
    server.ready()?;
    let addr = server.listen_addr()?;
    Ok((server, addr))
}

/// One timed child process: wall time from spawn to exit, and its CPU time.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: Duration,
}

fn time_process(cmd: &mut Command) -> anyhow::Result<Run> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cpu_before = procs::reaped_children_cpu();
    let started = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("failed to run {:?}", cmd.get_program()))?;
    let wall = started.elapsed();
    let cpu = procs::reaped_children_cpu().saturating_sub(cpu_before);
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        bail!(
            "{:?} failed ({}):\n{}",
            cmd.get_program(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(Run { wall, cpu })
}

/// `lightsout COMMAND TARGETS...` (`echo` or `status`).
fn controller_cmd(bins: &Bins, lab: &Lab, targets: &[SocketAddr], command: &str) -> Command {
    let mut cmd = Command::new(&bins.controller);
    cmd.env("LIGHTSOUT_HOME", &lab.home)
        .env_remove("RUST_LOG")
        .args(["--tls-name", TLS_NAME, "--timeout", HOST_TIMEOUT])
        .args(["--parallel", &targets.len().max(1).to_string()])
        .arg(command)
        .args(targets.iter().map(ToString::to_string));
    cmd
}

fn floor_client_cmd(bins: &Bins, lab: &Lab, targets: &[SocketAddr]) -> Command {
    let mut cmd = Command::new(&bins.bench);
    cmd.args(["floor-client", "--home"])
        .arg(&lab.home)
        .args(["--tls-name", TLS_NAME, "--timeout", "10"])
        .args(["--parallel", &targets.len().max(1).to_string()])
        .args(targets.iter().map(ToString::to_string));
    cmd
}

/// Timed runs of one figure: lightsout, the floor client against the same agents, and the
/// floor client against floor servers (the full floor).
#[derive(Debug, Default)]
struct Compared {
    ours: Vec<Run>,
    floor_client: Vec<Run>,
    floor: Vec<Run>,
}

/// `runs` rounds of the three processes in turn (after one warm-up each), so drift on a
/// shared machine hits all three alike.
fn compare_processes(
    bins: &Bins,
    lab: &Lab,
    agents: &[SocketAddr],
    floor_servers: &[SocketAddr],
    runs: usize,
    command: &str,
) -> anyhow::Result<Compared> {
    time_process(&mut controller_cmd(bins, lab, agents, command)).context("controller warm-up")?;
    time_process(&mut floor_client_cmd(bins, lab, agents)).context("floor warm-up")?;
    time_process(&mut floor_client_cmd(bins, lab, floor_servers)).context("floor warm-up")?;
    let mut c = Compared::default();
    for _ in 0..runs {
        c.ours.push(time_process(&mut controller_cmd(
            bins, lab, agents, command,
        ))?);
        c.floor_client
            .push(time_process(&mut floor_client_cmd(bins, lab, agents))?);
        c.floor.push(time_process(&mut floor_client_cmd(
            bins,
            lab,
            floor_servers,
        ))?);
    }
    Ok(c)
}

/// Table rows and the JSON object for one comparison; `verdict` judges lightsout's median
/// and its ratio to the full floor.
fn push_comparison(
    report: &mut Report,
    figure: String,
    c: &Compared,
    verdict: impl Fn(Duration, f64) -> Verdict,
) -> Value {
    let (ours, client, floor) = (walls(&c.ours), walls(&c.floor_client), walls(&c.floor));
    let r = ratio(ours.median(), floor.median());
    let r_client = ratio(ours.median(), client.median());
    report.rows.push(Row::new(
        figure,
        human(ours.median()),
        human(floor.median()),
        Some(r),
        verdict(ours.median(), r),
    ));
    report.rows.push(Row::note(
        "  floor client → the same agents",
        format!(
            "{} (lightsout/this {r_client:.2}×: what the controller adds)",
            human(client.median())
        ),
    ));
    for (label, series, runs) in [
        ("  spread, lightsout", &ours, &c.ours),
        ("  spread, floor client → agents", &client, &c.floor_client),
        ("  spread, floor", &floor, &c.floor),
    ] {
        report.rows.push(Row::note(
            label,
            format!("{}; {}", spread(series), show_cpu(runs)),
        ));
    }
    json!({
        "lightsout": ours.to_json(),
        "lightsout_cpu_ms_mean": crate::stats::ms(mean_cpu(&c.ours)),
        "floor_client_to_agents": client.to_json(),
        "floor_client_to_agents_cpu_ms_mean": crate::stats::ms(mean_cpu(&c.floor_client)),
        "floor": floor.to_json(),
        "floor_cpu_ms_mean": crate::stats::ms(mean_cpu(&c.floor)),
        "ratio_to_floor": r,
        "ratio_to_floor_client": r_client,
    })
}

/// Mean CPU per run, when the runs together used enough clock ticks to say.
fn show_cpu(runs: &[Run]) -> String {
    let total: Duration = runs.iter().map(|r| r.cpu).sum();
    if total < Duration::from_millis(200) {
        "CPU below the 10 ms tick resolution".into()
    } else {
        format!("CPU {} (mean)", human(mean_cpu(runs)))
    }
}

fn walls(runs: &[Run]) -> Series {
    Series::new(runs.iter().map(|r| r.wall).collect())
}

/// Mean CPU time per run. Each run's figure is a difference of two clock-tick-rounded
/// totals; the rounding errors average out over the runs, a median would keep them.
fn mean_cpu(runs: &[Run]) -> Duration {
    let total: Duration = runs.iter().map(|r| r.cpu).sum();
    total / u32::try_from(runs.len().max(1)).unwrap_or(u32::MAX)
}

fn spread(s: &Series) -> String {
    format!(
        "p10–p90 {}–{}, min–max {}–{}",
        human(s.percentile(10.0)),
        human(s.percentile(90.0)),
        human(s.min()),
        human(s.max())
    )
}

fn target(addr: SocketAddr) -> Target {
    Target {
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

async fn client(lab: &Lab, addr: SocketAddr) -> anyhow::Result<Client> {
    Client::connect(&target(addr), lab.tls.clone(), Some(TLS_NAME))
        .await
        .with_context(|| format!("failed to connect to {addr}"))
}

async fn call(client: &mut Client, id: String) -> anyhow::Result<()> {
    let response = client.call(&RequestEnvelope::echo(id, "ping")).await?;
    if !matches!(response.outcome, lightsout_protocol::Outcome::Ok(_)) {
        bail!("echo refused: {:?}", response.outcome);
    }
    Ok(())
}

/// Batches the round trips are split into; the three kinds take turns batch by batch, so
/// a burst of load from elsewhere on a shared machine hits all three alike.
const RTT_BATCHES: usize = 10;

/// Round trips on established connections, `count` of each kind (after a warm-up batch):
/// `lightsout_controller::Client` → agent, floor → floor server, floor → agent.
async fn round_trips(
    lab: &Lab,
    agent: SocketAddr,
    floor_server: SocketAddr,
    count: usize,
) -> anyhow::Result<[Vec<Duration>; 3]> {
    let request = floor::echo_frame();
    let mut ours = client(lab, agent).await?;
    let mut to_floor = FloorConn::connect(lab.tls.clone(), lab.name.clone(), floor_server).await?;
    let mut to_agent = FloorConn::connect(lab.tls.clone(), lab.name.clone(), agent).await?;
    let per_batch = (count / RTT_BATCHES).max(1);
    let mut samples: [Vec<Duration>; 3] = Default::default();
    // Batch 0 is the warm-up and is not recorded.
    for batch in 0..=RTT_BATCHES {
        let keep = batch > 0;
        for i in 0..per_batch {
            let t = Instant::now();
            call(&mut ours, format!("rtt-{batch}-{i}")).await?;
            if keep {
                samples[0].push(t.elapsed());
            }
        }
        for (k, conn) in [(1, &mut to_floor), (2, &mut to_agent)] {
            for _ in 0..per_batch {
                let t = Instant::now();
                conn.call(&request).await?;
                if keep {
                    samples[k].push(t.elapsed());
                }
            }
        }
    }
    ours.close(Duration::from_millis(200)).await;
    to_floor.close().await;
    to_agent.close().await;
    Ok(samples)
}

/// Requests/second: `RPS_CONNECTIONS` clients calling back to back for `window`.
async fn client_rps(lab: &Lab, addr: SocketAddr, window: Duration) -> anyhow::Result<f64> {
    let mut clients = Vec::new();
    for _ in 0..RPS_CONNECTIONS {
        clients.push(client(lab, addr).await?);
    }
    let started = Instant::now();
    let deadline = started + window;
    let mut set = JoinSet::new();
    for (n, mut c) in clients.into_iter().enumerate() {
        set.spawn(async move {
            let mut done = 0u64;
            // Bounded by the deadline and, to be sure, by a count.
            while Instant::now() < deadline && done < 10_000_000 {
                call(&mut c, format!("rps-{n}-{done}")).await?;
                done += 1;
            }
            c.close(Duration::from_millis(200)).await;
            anyhow::Ok(done)
        });
    }
    let mut total = 0u64;
    while let Some(joined) = set.join_next().await {
        total += joined??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Opens `HELD_CONNECTIONS` connections (100 handshakes at a time), each with one exchange,
/// and returns them open.
async fn hold_client_connections(lab: &Lab, addr: SocketAddr) -> anyhow::Result<Vec<Client>> {
    let slots = Arc::new(Semaphore::new(100));
    let mut set = JoinSet::new();
    for i in 0..HELD_CONNECTIONS {
        let (tls, slots) = (lab.tls.clone(), slots.clone());
        set.spawn(async move {
            let _slot = slots.acquire_owned().await?;
            let mut c = Client::connect(&target(addr), tls, Some(TLS_NAME)).await?;
            call(&mut c, format!("hold-{i}")).await?;
            anyhow::Ok(c)
        });
    }
    let mut held = Vec::new();
    while let Some(joined) = set.join_next().await {
        held.push(joined??);
    }
    Ok(held)
}

async fn hold_floor_connections(lab: &Lab, addr: SocketAddr) -> anyhow::Result<Vec<FloorConn>> {
    let request: Arc<[u8]> = floor::echo_frame().into();
    let slots = Arc::new(Semaphore::new(100));
    let mut set = JoinSet::new();
    for _ in 0..HELD_CONNECTIONS {
        let (tls, name, slots, request) = (
            lab.tls.clone(),
            lab.name.clone(),
            slots.clone(),
            request.clone(),
        );
        set.spawn(async move {
            let _slot = slots.acquire_owned().await?;
            let mut c = FloorConn::connect(tls, name, addr).await?;
            c.call(&request).await?;
            anyhow::Ok(c)
        });
    }
    let mut held = Vec::new();
    while let Some(joined) = set.join_next().await {
        held.push(joined??);
    }
    Ok(held)
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn show_mb(kib: u64) -> String {
    format!("{:.1} MB", mb(kib))
}

/// Two samples of an idle process.
#[derive(Debug, Clone, Copy)]
struct Idle {
    before: ProcSample,
    after: ProcSample,
    window: Duration,
}

impl Idle {
    fn wakeups(&self) -> u64 {
        (self.after.voluntary_switches + self.after.involuntary_switches)
            .saturating_sub(self.before.voluntary_switches + self.before.involuntary_switches)
    }

    fn wakeups_per_sec(&self) -> f64 {
        self.wakeups() as f64 / self.window.as_secs_f64()
    }

    fn cpu(&self) -> Duration {
        self.after.cpu.saturating_sub(self.before.cpu)
    }

    fn to_json(self) -> Value {
        json!({
            "window_s": self.window.as_secs_f64(),
            "rss_kib": self.after.rss_kib,
            "rss_kib_start": self.before.rss_kib,
            "cpu_ms": crate::stats::ms(self.cpu()),
            "threads": self.after.threads,
            "voluntary_switches": self.after.voluntary_switches.saturating_sub(self.before.voluntary_switches),
            "involuntary_switches": self.after.involuntary_switches.saturating_sub(self.before.involuntary_switches),
            "wakeups_per_s": self.wakeups_per_sec(),
        })
    }
}

fn stop_signal_watcher(rt: &Runtime) {
    rt.spawn(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{Signal, SignalKind, signal};
            // A signal whose handler cannot be installed keeps its default action (exit), and
            // then the parent-death signal stops the children.
            async fn received(s: &mut std::io::Result<Signal>) {
                match s {
                    Ok(s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending().await,
                }
            }
            let mut term = signal(SignalKind::terminate());
            let mut hup = signal(SignalKind::hangup());
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = received(&mut term) => {}
                () = received(&mut hup) => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("\ninterrupted: stopping every agent the benchmark started");
        procs::kill_all_registered();
        std::process::exit(130);
    });
}

fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    out.status.success().then(|| {
        let c = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if dirty { format!("{c}-dirty") } else { c }
    })
}

/// Runs the whole benchmark and writes the report: one step per measurement, in order.
///
/// # Errors
/// Anything that stops a figure from being measured; every child is stopped first.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let mut suite = Suite::new(opts)?;
    // The idle agent and idle floor server: started first, left alone while the rest runs.
    let idle = suite.start_idle()?;
    // Slow clients wait out the default deadlines (30 s) alongside everything else.
    let slow = suite.start_slow_clients()?;
    let fleet = suite.start_fleet()?;
    suite.fanout(&fleet)?;
    suite.status_fanout(&fleet)?;
    suite.single_process(&fleet)?;
    drop(fleet.floor);
    suite.round_trip_and_throughput(&fleet.addrs)?;
    suite.fleet_rss(fleet.agents);
    suite.idle(&idle)?;
    suite.held_connections(idle)?;
    suite.slow_clients(slow)?;
    suite.binary_sizes();
    suite.finish()
}

/// What every measurement needs: the binaries, the lab, the runtime, the plan, the report.
struct Suite {
    started: Instant,
    plan: Plan,
    sizes: Vec<usize>,
    fleet_size: usize,
    json_out: PathBuf,
    rt: Runtime,
    bins: Bins,
    lab: Lab,
    report: Report,
}

/// The idle agent and idle floor server, and their first samples.
struct IdlePair {
    agent: Spawned,
    agent_addr: SocketAddr,
    floor: Spawned,
    floor_addr: SocketAddr,
    started: Instant,
    agent_before: ProcSample,
    floor_before: ProcSample,
}

/// The slow clients' agent and the task timing their connections' closes.
struct SlowClients {
    agent: Spawned,
    closed: tokio::task::JoinHandle<[Duration; 3]>,
}

/// N agents and N floor servers, their addresses in order.
struct Fleet {
    agents: FleetGuard,
    addrs: Vec<SocketAddr>,
    floor: FleetGuard,
    floor_addrs: Vec<SocketAddr>,
}

impl Suite {
    fn new(opts: &Options) -> anyhow::Result<Self> {
        let started = Instant::now();
        let nofile = procs::raise_nofile_limit();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        stop_signal_watcher(&rt);
        let bins = Bins::locate(opts.bin_dir.as_deref())?;
        let lab = Lab::new()?;
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let max_agents = opts.max_agents.clamp(1, 1000);
        let mut sizes: Vec<usize> = SIZES.into_iter().filter(|n| *n <= max_agents).collect();
        if sizes.last() != Some(&max_agents) {
            sizes.push(max_agents);
        }
        if let Some(limit) = nofile {
            // The controller holds one socket per host in flight; the benchmark holds 1,000.
            if limit < (max_agents.max(HELD_CONNECTIONS) as u64) + 200 {
                eprintln!(
                    "warning: the open-files limit is {limit}; fan-outs and held connections may fail"
                );
            }
        }
        let mut report = Report::new(opts.quick, cpus, git_commit());
        report.json["open_files_limit"] = json!(nofile);
        Ok(Self {
            started,
            plan: Plan::new(opts.quick),
            sizes,
            fleet_size: max_agents,
            json_out: opts.json_out.clone(),
            rt,
            bins,
            lab,
            report,
        })
    }

    /// 1. The idle pair, after one exchange each; the idle window starts a second later.
    fn start_idle(&mut self) -> anyhow::Result<IdlePair> {
        let (bins, lab) = (&self.bins, &self.lab);
        let (agent, agent_addr) = start_agent(
            bins,
            lab,
            "idle-agent",
            "127.0.0.2:0".parse()?,
            &["--max-connections", "1100", "--idle-timeout", "600"],
        )?;
        let (floor, floor_addr) =
            start_floor_server(bins, lab, "idle-floor", "127.0.0.3:0".parse()?)?;
        self.rt.block_on(async {
            let mut c = client(lab, agent_addr).await?;
            call(&mut c, "idle-first".into()).await?;
            c.close(Duration::from_millis(200)).await;
            let mut f = FloorConn::connect(lab.tls.clone(), lab.name.clone(), floor_addr).await?;
            f.call(&floor::echo_frame()).await?;
            f.close().await;
            anyhow::Ok(())
        })?;
        std::thread::sleep(Duration::from_secs(1));
        Ok(IdlePair {
            started: Instant::now(),
            agent_before: procs::sample(agent.pid())?,
            floor_before: procs::sample(floor.pid())?,
            agent,
            agent_addr,
            floor,
            floor_addr,
        })
    }

    /// 2. The fleet: N agents and N floor servers, distinct addresses and ports. Start-up is
    ///    not measured.
    fn start_fleet(&mut self) -> anyhow::Result<Fleet> {
        let (bins, lab, n) = (&self.bins, &self.lab, self.fleet_size);
        eprintln!("starting {n} agents...");
        let started = Instant::now();
        let mut agents = FleetGuard(Vec::with_capacity(n));
        for i in 0..n {
            let name = format!("agent-{i}");
            agents
                .0
                .push(spawn_agent(bins, lab, &name, agent_addr(i), &[])?);
        }
        let addrs = agents.ready()?;
        eprintln!(
            "{n} agents up in {} (not counted)",
            human(started.elapsed())
        );
        self.report.json["agent_startup_ms"] = json!(crate::stats::ms(started.elapsed()));
        let mut floor = FleetGuard(Vec::with_capacity(n));
        for i in 0..n {
            let name = format!("floor-{i}");
            floor
                .0
                .push(spawn_floor_server(bins, lab, &name, floor_addr(i))?);
        }
        let floor_addrs = floor.ready()?;
        Ok(Fleet {
            agents,
            addrs,
            floor,
            floor_addrs,
        })
    }

    /// 3. Fan-out: a whole `lightsout echo` process to N agents, next to the floor client
    ///    against the same agents and against N floor servers.
    fn fanout(&mut self, fleet: &Fleet) -> anyhow::Result<()> {
        let mut fanouts = Vec::new();
        for (k, &n) in self.sizes.clone().iter().enumerate() {
            let runs = self.plan.fanout_runs[k.min(2)];
            fanouts.push(self.compare_fanout(fleet, n, runs, "echo", |median, r| {
                if n == 1000 {
                    Verdict::check(
                        median < Duration::from_secs(1) && r <= 2.0,
                        "< 1 s and ≤ 2× floor",
                    )
                } else {
                    Verdict::none()
                }
            })?);
        }
        self.report.json["fanout"] = json!(fanouts);
        Ok(())
    }

    /// The status board: the same echo underneath, plus the table of health fields.
    fn status_fanout(&mut self, fleet: &Fleet) -> anyhow::Result<()> {
        let Some(&n) = self.sizes.last() else {
            return Ok(());
        };
        let runs = self.plan.fanout_runs[(self.sizes.len() - 1).min(2)];
        self.report.json["status_fanout"] =
            self.compare_fanout(fleet, n, runs, "status", |_, _| Verdict::none())?;
        Ok(())
    }

    /// `runs` rounds of `lightsout COMMAND` to the first `n` agents against the floor: the
    /// table rows, and the JSON object.
    fn compare_fanout(
        &mut self,
        fleet: &Fleet,
        n: usize,
        runs: usize,
        command: &str,
        verdict: impl Fn(Duration, f64) -> Verdict,
    ) -> anyhow::Result<Value> {
        eprintln!("fan-out `lightsout {command}` to {n} agents, {runs} rounds...");
        let c = compare_processes(
            &self.bins,
            &self.lab,
            &fleet.addrs[..n],
            &fleet.floor_addrs[..n],
            runs,
            command,
        )?;
        let mut doc = push_comparison(
            &mut self.report,
            format!("fan-out `lightsout {command}`, {n} agents (median)"),
            &c,
            verdict,
        );
        doc["agents"] = json!(n);
        Ok(doc)
    }

    /// 4. One `lightsout echo HOST` process, start to exit.
    fn single_process(&mut self, fleet: &Fleet) -> anyhow::Result<()> {
        let runs = self.plan.single_runs;
        eprintln!("single `lightsout echo HOST` process, {runs} rounds...");
        let c = compare_processes(
            &self.bins,
            &self.lab,
            &fleet.addrs[..1],
            &fleet.floor_addrs[..1],
            runs,
            "echo",
        )?;
        self.report.json["single_process"] = push_comparison(
            &mut self.report,
            "one `lightsout echo HOST` process (median)".into(),
            &c,
            |median, _| Verdict::check(median < Duration::from_millis(10), "< 10 ms"),
        );
        Ok(())
    }

    /// 5. Round trip on an established connection: lightsout's Client against an agent, the
    ///    floor client against the floor server, and the floor client against the agent (the
    ///    agent's own share); 6. requests/second one agent sustains from many clients, against
    ///    the same floor server.
    fn round_trip_and_throughput(&mut self, addrs: &[SocketAddr]) -> anyhow::Result<()> {
        let (floor_server, floor_addr) = start_floor_server(
            &self.bins,
            &self.lab,
            "floor-server",
            "127.0.0.4:0".parse()?,
        )?;
        self.round_trip(addrs[0], floor_addr)?;
        self.requests_per_second(addrs[0], floor_addr)?;
        drop(floor_server);
        Ok(())
    }

    fn round_trip(&mut self, agent: SocketAddr, floor_server: SocketAddr) -> anyhow::Result<()> {
        let count = self.plan.round_trips;
        eprintln!("round trips on one connection, {count}...");
        let [ours, floor, raw_agent] = self
            .rt
            .block_on(round_trips(&self.lab, agent, floor_server, count))?
            .map(Series::new);
        for (p, label) in [(50.0, "p50"), (99.0, "p99")] {
            self.report.rows.push(Row::new(
                format!("round trip, established connection, {label}"),
                human(ours.percentile(p)),
                human(floor.percentile(p)),
                Some(ratio(ours.percentile(p), floor.percentile(p))),
                Verdict::none(),
            ));
        }
        self.report.rows.push(Row::note(
            "  floor client → real agent, p50/p99",
            format!(
                "{} / {} (the agent's share: echo builds a health snapshot)",
                human(raw_agent.median()),
                human(raw_agent.percentile(99.0))
            ),
        ));
        self.report.json["round_trip"] = json!({
            "lightsout_client_to_agent": ours.to_json(),
            "floor_client_to_floor_server": floor.to_json(),
            "floor_client_to_agent": raw_agent.to_json(),
        });
        Ok(())
    }

    fn requests_per_second(
        &mut self,
        agent: SocketAddr,
        floor_server: SocketAddr,
    ) -> anyhow::Result<()> {
        let window = self.plan.rps_window;
        eprintln!(
            "requests/second, {RPS_CONNECTIONS} connections, {} each in 3 alternating turns...",
            human(window)
        );
        // Three turns each, alternating, for the same reason as the round-trip batches.
        let turn = window / 3;
        let lab = &self.lab;
        let (ours, fl) = self.rt.block_on(async {
            let (mut ours, mut fl) = (0.0, 0.0);
            for _ in 0..3 {
                ours += client_rps(lab, agent, turn).await? / 3.0;
                fl += floor::load(
                    lab.tls.clone(),
                    lab.name.clone(),
                    floor_server,
                    RPS_CONNECTIONS,
                    turn,
                )
                .await?
                    / 3.0;
            }
            anyhow::Ok((ours, fl))
        })?;
        self.report.rows.push(Row::new(
            format!("requests/s, one agent, {RPS_CONNECTIONS} connections"),
            format!("{ours:.0}"),
            format!("{fl:.0}"),
            Some(ours / fl),
            Verdict::none(),
        ));
        self.report.json["requests_per_second"] = json!({
            "connections": RPS_CONNECTIONS, "window_s": window.as_secs_f64(),
            "lightsout": ours, "floor": fl,
        });
        Ok(())
    }

    /// The fleet after serving every fan-out: mean RSS, then stop it.
    fn fleet_rss(&mut self, fleet: FleetGuard) {
        let rss: Vec<u64> = fleet
            .0
            .iter()
            .filter_map(|a| procs::sample(a.pid()).ok().map(|s| s.rss_kib))
            .collect();
        let mean = rss.iter().sum::<u64>() / (rss.len().max(1) as u64);
        self.report.rows.push(Row::note(
            "  fleet agents after the runs, mean RSS",
            format!("{} ({} agents)", show_mb(mean), rss.len()),
        ));
        self.report.json["fleet_mean_rss_kib"] = json!(mean);
    }

    /// 7. The idle window ends (at least `plan.idle_window` after it began).
    fn idle(&mut self, idle: &IdlePair) -> anyhow::Result<()> {
        if let Some(rest) = self.plan.idle_window.checked_sub(idle.started.elapsed()) {
            eprintln!("idle window: {} more...", human(rest));
            std::thread::sleep(rest);
        }
        let window = idle.started.elapsed();
        let ours = Idle {
            before: idle.agent_before,
            after: procs::sample(idle.agent.pid())?,
            window,
        };
        let fl = Idle {
            before: idle.floor_before,
            after: procs::sample(idle.floor.pid())?,
            window,
        };
        self.report.rows.push(Row::new(
            "idle agent RSS".into(),
            show_mb(ours.after.rss_kib),
            show_mb(fl.after.rss_kib),
            Some(ours.after.rss_kib as f64 / fl.after.rss_kib.max(1) as f64),
            Verdict::check(mb(ours.after.rss_kib) < 8.0, "< 8 MB"),
        ));
        self.report.rows.push(Row::new(
            format!("idle agent CPU time over {:.0} s", window.as_secs_f64()),
            human(ours.cpu()),
            human(fl.cpu()),
            None,
            Verdict::none(),
        ));
        self.report.rows.push(Row::new(
            "idle agent wake-ups/s (all threads)".into(),
            format!("{:.2}", ours.wakeups_per_sec()),
            format!("{:.2}", fl.wakeups_per_sec()),
            None,
            Verdict::check(ours.wakeups() == 0, "zero"),
        ));
        self.report.json["idle"] = json!({ "agent": ours.to_json(), "floor": fl.to_json() });
        Ok(())
    }

    /// 8. Memory holding 1,000 idle TLS connections (one echo each, then silence), and how
    ///    long their handshakes took; the idle pair is stopped after.
    fn held_connections(&mut self, idle: IdlePair) -> anyhow::Result<()> {
        eprintln!("holding {HELD_CONNECTIONS} idle connections...");
        let lab = &self.lab;
        let agent_base = procs::sample(idle.agent.pid())?.rss_kib;
        let opened = Instant::now();
        let held = self
            .rt
            .block_on(hold_client_connections(lab, idle.agent_addr))?;
        let agent_opening = opened.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        let agent_held = procs::sample(idle.agent.pid())?.rss_kib;
        drop(held);
        let floor_base = procs::sample(idle.floor.pid())?.rss_kib;
        let opened = Instant::now();
        let held = self
            .rt
            .block_on(hold_floor_connections(lab, idle.floor_addr))?;
        let floor_opening = opened.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        let floor_held = procs::sample(idle.floor.pid())?.rss_kib;
        drop(held);
        self.report.rows.push(Row::new(
            format!("agent RSS holding {HELD_CONNECTIONS} idle TLS connections"),
            show_mb(agent_held),
            show_mb(floor_held),
            Some(agent_held as f64 / floor_held.max(1) as f64),
            Verdict::none(),
        ));
        let per_conn = |held: u64, base: u64| {
            held.saturating_sub(base) as f64 * 1024.0 / HELD_CONNECTIONS as f64 / 1000.0
        };
        self.report.rows.push(Row::note(
            "  per connection",
            format!(
                "lightsout {:.1} kB, floor {:.1} kB",
                per_conn(agent_held, agent_base),
                per_conn(floor_held, floor_base)
            ),
        ));
        self.report.rows.push(Row::note(
            "  opening them (100 handshakes at a time)",
            format!(
                "lightsout {}, floor {}",
                human(agent_opening),
                human(floor_opening)
            ),
        ));
        self.report.json["held_connections"] = json!({
            "connections": HELD_CONNECTIONS,
            "agent_rss_kib_before": agent_base, "agent_rss_kib": agent_held,
            "floor_rss_kib_before": floor_base, "floor_rss_kib": floor_held,
            "agent_open_ms": crate::stats::ms(agent_opening),
            "floor_open_ms": crate::stats::ms(floor_opening),
        });
        Ok(())
    }

    /// 9. How long slow clients survive an agent with default settings: a ClientHello then
    ///    silence, a connection that never sends a byte, and a TLS session with no request,
    ///    all opened together and each closed by a default deadline. Started early, they wait
    ///    in the background while the other figures are taken.
    fn start_slow_clients(&mut self) -> anyhow::Result<SlowClients> {
        let (agent, addr) = start_agent(
            &self.bins,
            &self.lab,
            "slow-clients",
            // The agent certificate names 127.0.0.1, which the raw clients verify.
            "127.0.0.1:0".parse()?,
            &[],
        )?;
        let hello = lightsout_tests::client_hello(&self.lab.tests);
        let tls = self.lab.tests.client_tls();
        let closed = self.rt.spawn(async move {
            use lightsout_tests::{expect_closed, tcp, tls_connect, write_raw};
            let long = Duration::from_secs(120);
            let opened = Instant::now();
            let mut hello_then_silence = tcp(addr).await;
            write_raw(&mut hello_then_silence, &hello).await;
            let mut silent = tcp(addr).await;
            let mut quiet = tls_connect(addr, tls).await.expect("TLS handshake");
            let mut closed = [Duration::ZERO; 3];
            expect_closed(&mut hello_then_silence, long).await;
            closed[0] = opened.elapsed();
            expect_closed(&mut silent, long).await;
            closed[1] = opened.elapsed();
            expect_closed(&mut quiet, long).await;
            closed[2] = opened.elapsed();
            closed
        });
        Ok(SlowClients { agent, closed })
    }

    fn slow_clients(&mut self, slow: SlowClients) -> anyhow::Result<()> {
        eprintln!("slow clients: waiting for the default deadlines...");
        let closed = self.rt.block_on(slow.closed)?;
        drop(slow.agent);
        let labels = [
            "ClientHello then silence",
            "connected, never a byte",
            "TLS established, no request",
        ];
        for (label, took) in labels.iter().zip(closed) {
            self.report.rows.push(Row::note(
                &format!("slow client, default settings: {label}"),
                format!("closed after {}", human(took)),
            ));
        }
        self.report.json["slow_clients_closed_after_ms"] = json!({
            "client_hello_then_silence": crate::stats::ms(closed[0]),
            "connected_never_a_byte": crate::stats::ms(closed[1]),
            "tls_no_request": crate::stats::ms(closed[2]),
        });
        Ok(())
    }

    /// 10. Binary sizes.
    fn binary_sizes(&mut self) {
        let (agent, controller) = (
            procs::file_size(&self.bins.agent),
            procs::file_size(&self.bins.controller),
        );
        self.report.rows.push(Row::note(
            "release binary sizes",
            format!(
                "lightsout-agent {:.1} MB, lightsout {:.1} MB (floor program in tls-floor.md: 3.0 MB)",
                agent as f64 / 1e6,
                controller as f64 / 1e6
            ),
        ));
        self.report.json["binary_bytes"] =
            json!({ "lightsout-agent": agent, "lightsout": controller });
    }

    /// The table on stdout, the JSON document on disk.
    fn finish(mut self) -> anyhow::Result<()> {
        self.report.json["total_s"] = json!(self.started.elapsed().as_secs_f64());
        print!("{}", self.report.table());
        self.report.write(&self.json_out)?;
        eprintln!(
            "wrote {} ({} in all)",
            self.json_out.display(),
            human(self.started.elapsed())
        );
        Ok(())
    }
}
