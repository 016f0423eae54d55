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
    /// Distinct users occupying the machine (see [`Session`]), when the platform tells it.
    pub logged_in_users: Option<u32>,
    /// The sessions that occupy the machine, each with its idle time; `None` when they cannot
    /// be listed (only counted, or not even that). Absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<Session>>,
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

/// A login session that occupies the machine.
///
/// Occupied means (defined once, in the agent's `occupancy` module): systemd-logind lists a
/// session of class `user` in state `active` or `online` (greeters, the user manager and
/// background sessions do not count); where logind does not run, a utmp login record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The user's login name.
    pub user: String,
    /// Terminal (`tty1`, `pts/0`), when the session has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<String>,
    /// Seat (`seat0`) of a local graphical or console session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat: Option<String>,
    /// Where a remote session (ssh) comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    /// logind's state; `None` where the source has none (utmp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SessionState>,
    /// Seconds since the session's last input, when known (`None` also when it is not idle
    /// according to logind: then it is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_secs: Option<u64>,
}

/// The logind session states that occupy a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// In the foreground of its seat (or a remote session being used).
    Active,
    /// Logged in, not in the foreground.
    Online,
    /// Logging in: logind lists the session while it is still being set up (the user's
    /// service manager starting). Seconds on real hardware, much longer on a slow machine; the
    /// person is at the machine already (older controllers read it as `Unknown`).
    Opening,
    /// A state this build does not know.
    #[serde(other)]
    Unknown,
}

impl SessionState {
    /// logind's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Active => "active",
            SessionState::Online => "online",
            SessionState::Opening => "opening",
            SessionState::Unknown => "unknown",
        }
    }
}

impl Session {
    /// Where the session is, for people: `tty1`, `seat0`, `pts/0 from 10.0.0.5`.
    pub fn place(&self) -> String {
        let local = self
            .tty
            .as_deref()
            .or(self.seat.as_deref())
            .unwrap_or("a session");
        match &self.remote_host {
            Some(host) if !host.is_empty() => format!("{local} from {host}"),
            _ => local.to_owned(),
        }
    }
}
