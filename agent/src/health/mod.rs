//! The health snapshot returned with every echo.
//!
//! Values that never change while the agent runs (OS, kernel, CPU count) are read once; the
//! rest is read per request from cheap sources (/proc on Linux).

mod macs;
pub mod simulate;
mod users;

use std::sync::{Mutex, PoisonError};

use lightsout_protocol::Health;
use sysinfo::{MemoryRefreshKind, System};

use crate::config::Config;
use crate::power::PowerController;
use simulate::SimulatedBoot;

/// Produces health snapshots.
#[derive(Debug)]
pub struct HealthProbe {
    /// The pretend reboot of `--simulate-reboot` (tests and demos only).
    pub simulated: SimulatedBoot,
    /// `None` when sysinfo cannot read memory on this platform.
    memory: Mutex<Option<System>>,
    os_name: Option<String>,
    os_version: Option<String>,
    kernel: Option<String>,
    arch: String,
    cpu_count: usize,
}

impl Default for HealthProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthProbe {
    /// Reads the static facts once.
    pub fn new() -> Self {
        Self {
            simulated: SimulatedBoot::default(),
            memory: Mutex::new(System::new().ok()),
            os_name: System::name().ok(),
            os_version: System::os_version().ok(),
            kernel: System::kernel_version().ok(),
            arch: System::cpu_arch(),
            cpu_count: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        }
    }

    /// A fresh snapshot.
    pub fn snapshot(&self, config: &Config, power: &PowerController) -> Health {
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
        let (pending, last_action) = power.status();
        let uptime_secs = System::uptime().unwrap_or(0);
        let (boot_id, boot_time_unix, uptime_secs) = match self.simulated.identity() {
            Some((id, at)) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                (Some(id), at, now.saturating_sub(at))
            }
            None => (boot_id(), System::boot_time().unwrap_or(0), uptime_secs),
        };
        Health {
            hostname: System::host_name().unwrap_or_else(|_| "unknown".into()),
            os_name: self.os_name.clone(),
            os_version: self.os_version.clone(),
            kernel: self.kernel.clone(),
            arch: self.arch.clone(),
            uptime_secs,
            boot_time_unix,
            boot_id,
            load_avg: load.map_or([0.0; 3], |l| [l.one, l.five, l.fifteen]),
            cpu_count: self.cpu_count,
            memory_total_bytes,
            memory_available_bytes,
            logged_in_users: config.testing.fake_logged_in_users.or_else(users::count),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            privileged: config.privileged,
            dry_run: config.dry_run,
            pending,
            last_action,
            macs: macs::read(),
        }
    }
}

/// Linux's random per-boot id.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
