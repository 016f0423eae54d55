//! The agent's validated configuration: everything is loaded and checked before the first
//! socket opens, so a bad certificate path fails at start-up, not at the first connection.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lightsout_protocol::TargetOs;

use crate::access::{Access, AccessState};
use crate::audit::AuditLog;

/// Resource limits. Each bounds what one client, or many, can cost the agent.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; beyond it new connections are closed at once.
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a connection may stay silent between frames.
    pub idle_timeout: Duration,
    /// Largest frame accepted, in bytes.
    pub max_frame_len: usize,
    /// Largest echo payload accepted, in bytes.
    pub max_echo_payload: usize,
    /// How long in-flight requests may take to finish after a stop signal.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_frame_len: lightsout_protocol::MAX_FRAME_LEN,
            max_echo_payload: 16 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// TLS configuration, policy and revocations; reloadable.
    pub access: Arc<Access>,
    /// The audit log; `None` disables auditing (in-process tests only: the binary always
    /// has one).
    pub audit: Option<Arc<AuditLog>>,
    /// Rehearse every power action: answer with the argv and execute nothing.
    pub dry_run: bool,
    /// Whether power actions are permitted (root / elevated administrator).
    pub privileged: bool,
    /// Run this program instead of `argv[0]` of a power command (a harmless stand-in, for
    /// tests and demonstrations). The arguments are unchanged.
    pub power_command: Option<PathBuf>,
    /// Whose `shutdown` syntax to use; the running OS unless a test says otherwise.
    pub target_os: TargetOs,
    /// Resource limits.
    pub limits: Limits,
    /// Test and demonstration facilities; all off in production.
    pub testing: Testing,
}

/// Facilities for tests and demonstrations only (hidden command-line options, documented in
/// the README). None of them can make a real power action happen.
#[derive(Debug, Clone, Default)]
pub struct Testing {
    /// Report this many logged-in users instead of reading utmp.
    pub fake_logged_in_users: Option<u32>,
    /// Dry-run agents only: after a (rehearsed) restart, pretend to reboot — stay unreachable
    /// for this long, then report a new boot identity.
    pub simulate_reboot: Option<Duration>,
}

impl Config {
    /// A configuration with the running OS, the real privilege probe, default limits, the
    /// built-in policy and no audit log.
    pub fn new(tls: Arc<rustls::ServerConfig>) -> Self {
        Self {
            access: Arc::new(Access::fixed(AccessState::new(tls))),
            audit: None,
            dry_run: false,
            privileged: crate::privilege::is_privileged(),
            power_command: None,
            target_os: TargetOs::current(),
            limits: Limits::default(),
            testing: Testing::default(),
        }
    }
}
