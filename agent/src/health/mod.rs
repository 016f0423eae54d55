//! The health snapshot returned with every echo.
//!
//! Facts that never change while the agent runs (OS, kernel, CPU count, boot time and boot
//! id) are read once. The rest (memory, load, users, interfaces, host name) is read at most
//! once a second and shared by the echoes of that second: profiling showed the /proc reads
//! were most of an echo's cost, and a health check does not need sub-second freshness.
//! Who occupies the machine comes from [`crate::occupancy`] (logind or utmp).

mod macs;
pub mod simulate;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lightsout_protocol::Health;
use lightsout_protocol::health::{InterfaceMac, Session};
use sysinfo::{MemoryRefreshKind, System};

use crate::config::Config;
use crate::power::PowerController;
use simulate::SimulatedBoot;

/// How long a reading of the changing facts is reused.
const FRESHNESS: Duration = Duration::from_secs(1);

/// Produces health snapshots.
#[derive(Debug)]
pub struct HealthProbe {
    /// The pretend reboot of `--simulate-reboot` (tests and demos only).
    pub simulated: SimulatedBoot,
    /// `None` when sysinfo cannot read memory on this platform.
    memory: Mutex<Option<System>>,
    recent: Mutex<Option<Reading>>,
    os_name: Option<String>,
    os_version: Option<String>,
    kernel: Option<String>,
    arch: String,
    cpu_count: usize,
    boot_time_unix: u64,
    boot_id: Option<String>,
    /// When this process started (read with the other static facts, at start).
    started_unix_ms: u64,
}

/// The facts that change, as read at `at`.
#[derive(Debug, Clone)]
struct Reading {
    at: Instant,
    hostname: String,
    memory_total_bytes: u64,
    memory_available_bytes: u64,
    load_avg: [f64; 3],
    logged_in_users: Option<u32>,
    sessions: Option<Vec<Session>>,
    macs: Vec<InterfaceMac>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl HealthProbe {
    /// Reads the static facts once; the boot id is `config`'s fake one if it has one.
    pub fn new(config: &Config) -> Self {
        Self {
            simulated: SimulatedBoot::default(),
            memory: Mutex::new(System::new().ok()),
            recent: Mutex::new(None),
            os_name: System::name().ok(),
            os_version: System::os_version().ok(),
            kernel: System::kernel_version().ok(),
            arch: System::cpu_arch(),
            cpu_count: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            boot_time_unix: System::boot_time().unwrap_or(0),
            boot_id: crate::last_action::boot_id(config),
            started_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    async fn read(&self, config: &Config) -> Reading {
        let (memory_total_bytes, memory_available_bytes) = {
            let mut sys = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
            match sys.as_mut() {
                Some(sys) => {
                    sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
                    (sys.total_memory(), sys.available_memory())
                }
                None => (0, 0),
            }
        };
        let load = System::load_average().ok();
        let (logged_in_users, sessions) = if config.testing.fake_users_unknown {
            (None, None)
        } else if let Some(n) = config.testing.fake_logged_in_users {
            (Some(n), None)
        } else {
            let occupancy = crate::occupancy::read(&config.power_backend).await;
            (occupancy.users(), occupancy.sessions)
        };
        Reading {
            at: Instant::now(),
            hostname: System::host_name().unwrap_or_else(|_| "unknown".into()),
            memory_total_bytes,
            memory_available_bytes,
            load_avg: load.map_or([0.0; 3], |l| [l.one, l.five, l.fifteen]),
            logged_in_users,
            sessions,
            macs: macs::read(config.testing.fake_sysfs_net.as_deref()),
        }
    }

    /// The changing facts, read now or reused from the last second. Two echoes of the same
    /// moment may both read: cheaper than holding a lock across the occupancy read.
    async fn recent(&self, config: &Config) -> Reading {
        {
            let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(r) = recent.as_ref().filter(|r| r.at.elapsed() < FRESHNESS) {
                return r.clone();
            }
        }
        let r = self.read(config).await;
        *self.recent.lock().unwrap_or_else(PoisonError::into_inner) = Some(r.clone());
        r
    }

    /// A snapshot (the changing facts at most a second old; see the module docs).
    pub async fn snapshot(&self, config: &Config, power: &PowerController) -> Health {
        let r = self.recent(config).await;
        let (pending, last_action) = power.status();
        let (boot_id, boot_time_unix) = match self.simulated.identity() {
            Some((id, at)) => (Some(id), at),
            None => (self.boot_id.clone(), self.boot_time_unix),
        };
        let uptime_secs = if boot_time_unix > 0 {
            now_unix().saturating_sub(boot_time_unix)
        } else {
            System::uptime().unwrap_or(0)
        };
        Health {
            hostname: r.hostname,
            os_name: self.os_name.clone(),
            os_version: self.os_version.clone(),
            kernel: self.kernel.clone(),
            arch: self.arch.clone(),
            uptime_secs,
            boot_time_unix,
            boot_id,
            load_avg: r.load_avg,
            cpu_count: self.cpu_count,
            memory_total_bytes: r.memory_total_bytes,
            memory_available_bytes: r.memory_available_bytes,
            logged_in_users: r.logged_in_users,
            sessions: r.sessions,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            privileged: config.privileged,
            dry_run: config.dry_run,
            pending,
            last_action,
            agent_started_unix_ms: Some(self.started_unix_ms),
            macs: r.macs,
        }
    }
}
