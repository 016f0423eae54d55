//! The agent's validated configuration: everything is loaded and checked before the first
//! socket opens, so a bad certificate path fails at start-up, not at the first connection.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lightsout_protocol::TargetOs;

use crate::access::{Access, AccessState};
use crate::audit::AuditLog;
use crate::logind::LogindBus;
use crate::replay::ReplayMemory;

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
    /// Requests one connection may send per second (and in a burst); more are answered
    /// with `busy` and not carried out (see `crate::rate`).
    pub max_requests_per_sec: u32,
    /// TLS handshakes in progress from one source address; more are closed at once (see
    /// `crate::handshakes`).
    pub max_handshakes_per_ip: usize,
    /// Authenticated connections from one source address (an IPv4 address or an IPv6 /64);
    /// more are answered `busy` and closed (see [`crate::admission`]).
    pub max_connections_per_ip: usize,
    /// Authenticated connections with one certificate (fingerprint); more are answered `busy`
    /// and closed.
    pub max_connections_per_cert: usize,
    /// Of `max_connections`, the last slots that only `reserved_roles` may take; at most half
    /// of them (see [`Limits::reserved_slots`]).
    pub reserved_connections: usize,
    /// The roles that may take the reserved slots (by default `admin`).
    pub reserved_roles: Vec<String>,
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
            max_requests_per_sec: 100,
            max_handshakes_per_ip: 16,
            max_connections_per_ip: 64,
            max_connections_per_cert: 32,
            reserved_connections: 32,
            reserved_roles: vec!["admin".to_owned()],
        }
    }
}

/// Smallest `max_frame_len` accepted: an echo reply carries a health snapshot of about 1 KiB,
/// and every error reply must fit.
pub const MIN_FRAME_LEN: usize = 4096;

impl Limits {
    /// The slots kept for reserved roles: `reserved_connections`, but at most half of
    /// `max_connections`, so that a small connection cap (`--max-connections 4`) still
    /// admits other roles without having to lower the reserve as well.
    pub fn reserved_slots(&self) -> usize {
        self.reserved_connections.min(self.max_connections / 2)
    }

    /// Checks that the limits make sense together.
    ///
    /// # Errors
    /// Which limit is out of range and what is accepted. Names are the configuration names
    /// (`max_frame_len` is `--max-frame-len` on the command line).
    pub fn validate(&self) -> Result<(), LimitError> {
        let max_frame = lightsout_protocol::MAX_FRAME_LEN;
        let bad = |name, message: String| Err(LimitError { name, message });
        if !(MIN_FRAME_LEN..=max_frame).contains(&self.max_frame_len) {
            // Not above the protocol's maximum: controllers read at most that much, so a
            // larger reply could not be delivered.
            return bad(
                "max_frame_len",
                format!(
                    "max_frame_len {} is outside {MIN_FRAME_LEN}..={max_frame} bytes",
                    self.max_frame_len
                ),
            );
        }
        if self.max_echo_payload >= self.max_frame_len {
            return bad(
                "max_echo_payload",
                format!(
                    "max_echo_payload {} must be smaller than max_frame_len {}",
                    self.max_echo_payload, self.max_frame_len
                ),
            );
        }
        let positive = [
            ("max_connections", self.max_connections == 0),
            ("max_requests_per_sec", self.max_requests_per_sec == 0),
            ("max_handshakes_per_ip", self.max_handshakes_per_ip == 0),
            ("max_connections_per_ip", self.max_connections_per_ip == 0),
            (
                "max_connections_per_cert",
                self.max_connections_per_cert == 0,
            ),
            ("handshake_timeout", self.handshake_timeout.is_zero()),
            ("idle_timeout", self.idle_timeout.is_zero()),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, zero)| *zero) {
            return bad(name, format!("{name} must be greater than 0"));
        }
        if let Some(role) = self
            .reserved_roles
            .iter()
            .find(|r| r.is_empty() || r.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return bad(
                "reserved_roles",
                format!("reserved_roles: {role:?} is not a role name"),
            );
        }
        Ok(())
    }
}

/// A limit out of range: its name and a sentence saying what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LimitError {
    /// The limit's name (`max_frame_len`...).
    pub name: &'static str,
    /// What is wrong and what is accepted.
    pub message: String,
}

/// The standard Wake-on-LAN ports: echo (7) and discard (9).
pub const DEFAULT_WAKE_PORTS: [u16; 2] = [7, 9];

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// TLS configuration, policy and revocations; reloadable.
    pub access: Arc<Access>,
    /// The audit log; `None` disables auditing (in-process tests only: the binary always
    /// has one).
    pub audit: Option<Arc<AuditLog>>,
    /// Where the last accepted live power action is kept (see `crate::last_action`); `None`
    /// keeps nothing (in-process tests; the binary uses `HOME/last-action.json`).
    pub last_action: Option<PathBuf>,
    /// Rehearse every power action: answer with the argv and execute nothing.
    pub dry_run: bool,
    /// Whether power actions are permitted (root / elevated administrator).
    pub privileged: bool,
    /// Run this program instead of `argv[0]` of a power command (a harmless stand-in, for
    /// tests and demonstrations). The arguments are unchanged.
    pub power_command: Option<PathBuf>,
    /// How live power actions reach the system (chosen once, in configuration resolution).
    pub power_backend: PowerBackend,
    /// Whose `shutdown` syntax to use; the running OS unless a test says otherwise.
    pub target_os: TargetOs,
    /// Resource limits.
    pub limits: Limits,
    /// Test and demonstration facilities; all off in production.
    pub testing: Testing,
    /// UDP ports a relayed wake may be sent to (default [`DEFAULT_WAKE_PORTS`]).
    pub wake_ports: Vec<u16>,
    /// Replies to recent power requests (at-most-once). The binary keeps it in a file in the
    /// home directory, so that it survives a restart; [`Config::new`] keeps it in memory.
    pub replay: Arc<ReplayMemory>,
}

/// How live power actions reach the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerBackend {
    /// Run a command: the system's `shutdown` (the agent waits the sub-minute part of a
    /// delay), or the configured stand-in. Non-systemd machines, Windows, tests.
    Command,
    /// Hand the action to systemd-logind over D-Bus (`ScheduleShutdown`) before replying:
    /// exact due times, and a refusal when logind cannot take it.
    Logind(LogindBus),
}

impl PowerBackend {
    /// The name used in the configuration (`backend = ...`) and in logs.
    pub fn name(&self) -> &'static str {
        match self {
            PowerBackend::Command => "command",
            PowerBackend::Logind(_) => "logind",
        }
    }
}

/// Facilities for tests and demonstrations only (hidden command-line options, documented in
/// the README). None of them can make a real power action happen.
#[derive(Debug, Clone, Default)]
pub struct Testing {
    /// Report this many logged-in users instead of reading utmp.
    pub fake_logged_in_users: Option<u32>,
    /// Report that logged-in users cannot be counted.
    pub fake_users_unknown: bool,
    /// Dry-run agents only: after a (rehearsed) restart, pretend to reboot — stay unreachable
    /// for this long, then report a new boot identity.
    pub simulate_reboot: Option<Duration>,
    /// Report this boot id instead of the system's (to exercise the attribution of a reboot
    /// to the action that caused it, without rebooting).
    pub fake_boot_id: Option<String>,
    /// Read the interfaces from this directory instead of `/sys/class/net`.
    pub fake_sysfs_net: Option<std::path::PathBuf>,
}

impl Config {
    /// A configuration with the running OS, the real privilege probe, default limits, the
    /// built-in policy and no audit log — in **dry-run**: a program embedding the agent (a
    /// test, a benchmark) must say `dry_run = false` to power anything off. The binary sets
    /// it from its command line and configuration file.
    pub fn new(tls: Arc<rustls::ServerConfig>) -> Self {
        Self {
            access: Arc::new(Access::fixed(AccessState::new(tls))),
            audit: None,
            last_action: None,
            dry_run: true,
            privileged: crate::privilege::is_privileged(),
            power_command: None,
            power_backend: PowerBackend::Command,
            target_os: TargetOs::current(),
            limits: Limits::default(),
            testing: Testing::default(),
            replay: Arc::new(ReplayMemory::default()),
            wake_ports: DEFAULT_WAKE_PORTS.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_at_most_half_the_connections() {
        let limits = |max_connections| Limits {
            max_connections,
            ..Limits::default()
        };
        assert_eq!(limits(512).reserved_slots(), 32);
        assert_eq!(limits(20).reserved_slots(), 10);
        assert_eq!(limits(1).reserved_slots(), 0);
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Limits::default().validate(), Ok(()));
    }

    #[test]
    fn out_of_range_limits_are_named() {
        let cases: [(&str, Limits); 6] = [
            (
                "max_frame_len",
                Limits {
                    max_frame_len: lightsout_protocol::MAX_FRAME_LEN + 1,
                    ..Limits::default()
                },
            ),
            (
                "max_frame_len",
                Limits {
                    max_frame_len: 100,
                    max_echo_payload: 10,
                    ..Limits::default()
                },
            ),
            (
                "max_echo_payload",
                Limits {
                    max_echo_payload: lightsout_protocol::MAX_FRAME_LEN,
                    ..Limits::default()
                },
            ),
            (
                "max_connections",
                Limits {
                    max_connections: 0,
                    ..Limits::default()
                },
            ),
            (
                "max_requests_per_sec",
                Limits {
                    max_requests_per_sec: 0,
                    ..Limits::default()
                },
            ),
            (
                "reserved_roles",
                Limits {
                    reserved_roles: vec![String::new()],
                    ..Limits::default()
                },
            ),
        ];
        for (name, limits) in cases {
            let err = limits.validate().expect_err(name);
            assert_eq!(err.name, name);
            assert!(err.to_string().starts_with(name), "{name}: {err}");
        }
    }
}
