//! The health snapshot an agent returns with every echo.

use serde::{Deserialize, Serialize};

use crate::power::{PendingAction, PowerAction};

/// What an administrator wants to know about a lab machine at a glance.
///
/// Fields a platform cannot tell are `None` rather than a made-up value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Host name as the machine knows itself.
    pub hostname: String,
    /// Operating system name, e.g. "Debian GNU/Linux".
    pub os_name: Option<String>,
    /// Operating system version, e.g. "12".
    pub os_version: Option<String>,
    /// Kernel version.
    pub kernel: Option<String>,
    /// CPU architecture, e.g. "x86_64".
    pub arch: String,
    /// Seconds since boot.
    pub uptime_secs: u64,
    /// Boot time, Unix seconds.
    pub boot_time_unix: u64,
    /// Linux's per-boot random id: changes on every boot, so a controller can tell that a
    /// restart really happened.
    pub boot_id: Option<String>,
    /// 1, 5 and 15 minute load averages.
    pub load_avg: [f64; 3],
    /// Logical CPUs.
    pub cpu_count: usize,
    /// Total memory in bytes.
    pub memory_total_bytes: u64,
    /// Available memory in bytes.
    pub memory_available_bytes: u64,
    /// Distinct users logged in, when the platform tells it.
    pub logged_in_users: Option<u32>,
    /// Version of the agent binary.
    pub agent_version: String,
    /// Whether the agent runs as root / elevated administrator (can power the machine off).
    pub privileged: bool,
    /// Whether the agent runs in dry-run mode (executes no power action).
    pub dry_run: bool,
    /// A power action accepted and not yet carried out.
    #[serde(default)]
    pub pending: Option<PendingAction>,
    /// How the last executed power command ended.
    #[serde(default)]
    pub last_action: Option<ActionRecord>,
    /// When this agent process started, Unix milliseconds (two starts within one second
    /// must differ). A controller waiting on an action
    /// tells "the agent restarted and lost track of it" from "someone cancelled it" by it.
    /// Optional on the wire (agents before it omit it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_started_unix_ms: Option<u64>,
    /// MAC addresses of the machine's network interfaces (loopback and all-zero addresses
    /// left out), for Wake-on-LAN. Empty when the platform does not tell.
    #[serde(default)]
    pub macs: Vec<InterfaceMac>,
}

/// One network interface's hardware address.
///
/// The MAC is a plain string here: it comes from the agent, and the controller parses it
/// strictly (`crate::wake::MacAddr`) before it is ever used or stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceMac {
    /// Interface name, e.g. `eth0`, `enp3s0`.
    pub interface: String,
    /// Its MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
}

/// The outcome of a power command the agent executed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Id of the request that caused it.
    pub request_id: String,
    /// The action the command carried out (shutdown or restart), so the status board can
    /// say "last shutdown FAILED" without guessing from an OS-specific argv. Optional on
    /// the wire (agents before it omit it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<PowerAction>,
    /// The command line run.
    pub argv: Vec<String>,
    /// Exit status, when the command ran to completion.
    pub exit_code: Option<i32>,
    /// Why it could not be run or did not succeed, if so.
    pub error: Option<String>,
    /// When it finished, Unix seconds.
    pub finished_unix: u64,
}
