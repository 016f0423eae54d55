//! `lightsout-bench`: how fast lightsout is on loopback, next to the mutual-TLS floor.
//!
//! ```sh
//! cargo run --release -p lightsout-bench -- [--quick] [--max-agents N] [--json-out FILE]
//! ```
//!
//! Starts real `lightsout-agent` processes (always `--dry-run`) on distinct 127.0.x.y addresses
//! and ports, times whole `lightsout echo` processes fanned out to 10, 100 and 1,000 of them,
//! one `lightsout echo HOST`, round trips on an established connection, requests/second,
//! an idle agent's memory, CPU and wake-ups, and the memory for 1,000 idle connections. Each
//! figure is set next to the floor: the same TLS stack and certificates with nothing else
//! (see [`floor`]). Prints a table, writes JSON (default `target/bench/latest.json`).
//!
//! # Layout
//! - [`suite`]: the run: agents, measurements, in order.
//! - [`floor`]: the minimal mTLS client and server (the `floor-client` / `floor-server` modes).
//! - [`procs`]: child processes (stopped on every exit path) and `/proc` samples.
//! - [`stats`]: medians and percentiles.
//! - [`report`]: the table and the JSON document.

mod floor;
mod procs;
mod report;
mod stats;
mod suite;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Benchmarks lightsout on loopback against a minimal mutual-TLS floor.
#[derive(Debug, Parser)]
#[command(name = "lightsout-bench", version, about, long_about = None)]
struct Cli {
    /// Fewer runs and a 5 s idle window instead of 60 s (about a minute in all).
    #[arg(long)]
    quick: bool,
    /// Largest fan-out: the sizes are 10, 100 and 1000, capped at N.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=1000))]
    max_agents: u16,
    /// Where to write the results as JSON [default: target/bench/latest.json].
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// Use the lightsout-agent and lightsout binaries in DIR instead of building them.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    #[command(subcommand)]
    mode: Option<Mode>,
}

/// The floor programs, run by the benchmark as separate processes.
#[derive(Debug, Subcommand)]
enum Mode {
    /// Minimal mTLS client: one echo exchange with every target, in parallel.
    #[command(name = "floor-client", hide = true)]
    Client {
        /// Lightsout home holding ca.pem and controller.pem / controller-key.pem.
        #[arg(long)]
        home: PathBuf,
        /// Name the agents' certificates must match.
        #[arg(long, default_value = "localhost")]
        tls_name: String,
        /// Most hosts at once.
        #[arg(long, default_value_t = 256)]
        parallel: usize,
        /// Deadline per host, seconds.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// ADDR:PORT of each host.
        #[arg(required = true)]
        targets: Vec<SocketAddr>,
    },
    /// Load generator: CONNECTIONS floor clients sending echo frames back to back to one
    /// agent or floor server for SECONDS (at most 60), then prints requests/second. For
    /// profiling an agent under load.
    #[command(name = "floor-load", hide = true)]
    Load {
        /// Lightsout home holding ca.pem and controller.pem / controller-key.pem.
        #[arg(long)]
        home: PathBuf,
        /// Name the certificate must match.
        #[arg(long, default_value = "localhost")]
        tls_name: String,
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Duration, seconds.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
        seconds: u64,
        /// ADDR:PORT.
        target: SocketAddr,
    },
    /// Minimal mTLS server: answers every frame with a fixed success frame.
    #[command(name = "floor-server", hide = true)]
    Server {
        /// Lightsout home holding ca.pem and agent.pem / agent-key.pem.
        #[arg(long)]
        home: PathBuf,
        /// Addresses to listen on (repeatable).
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
    },
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.mode {
        Some(Mode::Client {
            home,
            tls_name,
            parallel,
            timeout,
            targets,
        }) => runtime().map_err(anyhow::Error::from).and_then(|rt| {
            rt.block_on(floor::client_main(
                &home,
                &tls_name,
                parallel,
                Duration::from_secs(timeout),
                &targets,
            ))
        }),
        Some(Mode::Load {
            home,
            tls_name,
            connections,
            seconds,
            target,
        }) => runtime().map_err(anyhow::Error::from).and_then(|rt| {
            rt.block_on(async {
                let tls = floor::client_config(&home)?;
                let name = rustls_pki_types::ServerName::try_from(tls_name)?;
                let rps = floor::load(tls, name, target, connections, Duration::from_secs(seconds))
                    .await?;
                println!("{rps:.0} requests/s");
                anyhow::Ok(true)
            })
        }),
        Some(Mode::Server { home, listen }) => runtime()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(floor::server_main(&home, &listen)))
            .map(|()| true),
        None => {
            let opts = suite::Options {
                quick: cli.quick,
                max_agents: usize::from(cli.max_agents),
                json_out: cli
                    .json_out
                    .unwrap_or_else(|| default_json_out().join("latest.json")),
                bin_dir: cli.bin_dir,
            };
            suite::run(&opts).map(|()| true)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("lightsout-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `target/bench` of this workspace (next to the binaries), else `./target/bench`.
fn default_json_out() -> PathBuf {
    procs::exe_dir()
        .ok()
        .and_then(|d| d.parent().map(|t| t.join("bench")))
        .unwrap_or_else(|| PathBuf::from("target/bench"))
}
