//! Power actions as pure data: which exact command line carries out a request on each OS.
//!
//! Keeping this a pure function means the mapping for Windows, Linux and macOS is unit-tested
//! on any host, and the agent's execution code only ever runs an argv produced here.
//!
//! # Delays under a minute on Linux and macOS
//! Their `shutdown` counts in whole minutes (`+M`). A delay of `D` seconds is split: the agent
//! itself waits `D mod 60` seconds ([`PowerPlan::agent_wait_secs`]), then runs
//! `shutdown -h +(D / 60)` (or `now` when that is zero), so the machine goes down after exactly
//! `D` seconds and the system's own countdown, wall messages and `shutdown -c` handle the
//! whole minutes. Windows takes seconds directly (`/t D`), so the agent never waits there.

use serde::{Deserialize, Serialize};

/// A power action accepted and not yet carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAction {
    /// Shutdown or restart.
    pub action: PowerAction,
    /// Id of the request that scheduled it.
    pub request_id: String,
    /// Identity (certificate name) of the caller that scheduled it.
    pub requested_by: String,
    /// When it is due, as Unix seconds.
    pub due_unix: u64,
    /// The command line that carries it out.
    pub argv: Vec<String>,
    /// The message shown to logged-in users, if the request gave one: the status board
    /// shows it beside who asked. Optional on the wire (agents before it omit it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Shutdown or restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    /// Power off.
    Shutdown,
    /// Reboot.
    Restart,
}

impl PowerAction {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Shutdown => "shutdown",
            PowerAction::Restart => "restart",
        }
    }
}

impl std::fmt::Display for PowerAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operating systems whose `shutdown` command lightsout knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetOs {
    /// Linux (systemd or sysvinit `shutdown`).
    Linux,
    /// macOS (BSD `shutdown`).
    MacOs,
    /// Windows (`shutdown.exe`).
    Windows,
}

impl TargetOs {
    /// The OS this binary was built for. Other Unixes use the Linux mapping, which is the
    /// common POSIX-ish `shutdown` syntax.
    pub fn current() -> Self {
        if cfg!(windows) {
            TargetOs::Windows
        } else if cfg!(target_os = "macos") {
            TargetOs::MacOs
        } else {
            TargetOs::Linux
        }
    }
}

/// How a power request is carried out: wait this long in the agent, then run this argv.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerPlan {
    /// Seconds the agent waits before running `argv`.
    pub agent_wait_secs: u64,
    /// The command line; `argv[0]` is the program (`shutdown`).
    pub argv: Vec<String>,
}

/// Maps a power request to the exact command line for `os`.
///
/// `message` is passed as one argv element (never through a shell); callers validate it
/// first with [`crate::PowerParams::validate`].
pub fn plan(
    action: PowerAction,
    delay_secs: u64,
    message: Option<&str>,
    os: TargetOs,
) -> PowerPlan {
    let message = message.filter(|m| !m.is_empty());
    match os {
        TargetOs::Windows => {
            let flag = match action {
                PowerAction::Shutdown => "/s",
                PowerAction::Restart => "/r",
            };
            let mut argv = vec![
                "shutdown".into(),
                flag.into(),
                "/t".into(),
                delay_secs.to_string(),
            ];
            if let Some(m) = message {
                argv.push("/c".into());
                argv.push(m.into());
            }
            PowerPlan {
                agent_wait_secs: 0,
                argv,
            }
        }
        TargetOs::Linux | TargetOs::MacOs => {
            let flag = match action {
                PowerAction::Shutdown => "-h",
                PowerAction::Restart => "-r",
            };
            let minutes = delay_secs / 60;
            let when = if minutes == 0 {
                "now".to_string()
            } else {
                format!("+{minutes}")
            };
            let mut argv = vec!["shutdown".into(), flag.into(), when];
            if let Some(m) = message {
                argv.push(m.into());
            }
            PowerPlan {
                agent_wait_secs: delay_secs % 60,
                argv,
            }
        }
    }
}

/// systemd-logind's name for `action` in `ScheduleShutdown` (and its `ScheduledShutdown`
/// property).
pub fn logind_kind(action: PowerAction) -> &'static str {
    match action {
        PowerAction::Shutdown => "poweroff",
        PowerAction::Restart => "reboot",
    }
}

/// How the logind backend carries out a power request, as an argv-like description for
/// replies, rehearsals and the audit log: `["logind", "ScheduleShutdown", "poweroff", "+90s"]`.
/// The agent never waits itself: logind is handed the exact due time (no minute rounding).
pub fn logind_plan(action: PowerAction, delay_secs: u64) -> PowerPlan {
    PowerPlan {
        agent_wait_secs: 0,
        argv: vec![
            "logind".into(),
            "ScheduleShutdown".into(),
            logind_kind(action).into(),
            format!("+{delay_secs}s"),
        ],
    }
}

/// The description of the logind backend's cancel (`CancelScheduledShutdown`).
pub fn logind_cancel_argv() -> Vec<String> {
    vec!["logind".into(), "CancelScheduledShutdown".into()]
}

/// The command line that aborts a pending shutdown or restart on `os`.
///
/// macOS's BSD `shutdown` has no `-c`: a scheduled shutdown *is* a waiting `shutdown`
/// process, and `man shutdown` says to cancel it by signalling that process.
pub fn cancel_argv(os: TargetOs) -> Vec<String> {
    match os {
        TargetOs::Windows => vec!["shutdown".into(), "/a".into()],
        TargetOs::Linux => vec!["shutdown".into(), "-c".into()],
        TargetOs::MacOs => vec!["killall".into(), "shutdown".into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PowerAction::*;
    use TargetOs::*;

    fn argv(a: PowerAction, d: u64, m: Option<&str>, os: TargetOs) -> (u64, Vec<&'static str>) {
        let p = plan(a, d, m, os);
        let leaked: Vec<&'static str> = p
            .argv
            .into_iter()
            .map(|s| &*Box::leak(s.into_boxed_str()))
            .collect();
        (p.agent_wait_secs, leaked)
    }

    #[test]
    fn windows_mapping() {
        assert_eq!(
            argv(Shutdown, 0, None, Windows),
            (0, vec!["shutdown", "/s", "/t", "0"])
        );
        assert_eq!(
            argv(Restart, 0, None, Windows),
            (0, vec!["shutdown", "/r", "/t", "0"])
        );
        assert_eq!(
            argv(Shutdown, 90, Some("Lab closes"), Windows),
            (0, vec!["shutdown", "/s", "/t", "90", "/c", "Lab closes"])
        );
        assert_eq!(cancel_argv(Windows), vec!["shutdown", "/a"]);
    }

    #[test]
    fn linux_mapping() {
        assert_eq!(
            argv(Shutdown, 0, None, Linux),
            (0, vec!["shutdown", "-h", "now"])
        );
        assert_eq!(
            argv(Restart, 0, None, Linux),
            (0, vec!["shutdown", "-r", "now"])
        );
        assert_eq!(
            argv(Shutdown, 300, Some("Save your work"), Linux),
            (0, vec!["shutdown", "-h", "+5", "Save your work"])
        );
        assert_eq!(cancel_argv(Linux), vec!["shutdown", "-c"]);
    }

    #[test]
    fn sub_minute_delays_wait_in_the_agent() {
        // 30 s: the agent waits all of it, then powers off now.
        assert_eq!(
            argv(Restart, 30, None, Linux),
            (30, vec!["shutdown", "-r", "now"])
        );
        // 90 s: the agent waits 30 s, then the system counts the last minute.
        assert_eq!(
            argv(Shutdown, 90, Some("m"), Linux),
            (30, vec!["shutdown", "-h", "+1", "m"])
        );
        assert_eq!(
            argv(Shutdown, 59, None, MacOs),
            (59, vec!["shutdown", "-h", "now"])
        );
        // Every delay is honoured exactly: agent wait + system minutes == requested delay.
        for d in [0, 1, 59, 60, 61, 119, 120, 3599, 3600, 86_401] {
            let p = plan(Shutdown, d, None, Linux);
            let minutes: u64 = match p.argv[2].as_str() {
                "now" => 0,
                m => m.trim_start_matches('+').parse().unwrap(),
            };
            assert_eq!(p.agent_wait_secs + minutes * 60, d, "delay {d}");
        }
    }

    #[test]
    fn macos_mapping() {
        assert_eq!(
            argv(Restart, 120, None, MacOs),
            (0, vec!["shutdown", "-r", "+2"])
        );
        assert_eq!(
            argv(Shutdown, 0, Some("bye"), MacOs),
            (0, vec!["shutdown", "-h", "now", "bye"])
        );
        assert_eq!(cancel_argv(MacOs), vec!["killall", "shutdown"]);
    }

    #[test]
    fn logind_plans_exact_seconds_and_never_waits_in_the_agent() {
        let p = logind_plan(Shutdown, 90);
        assert_eq!(p.agent_wait_secs, 0);
        assert_eq!(p.argv, ["logind", "ScheduleShutdown", "poweroff", "+90s"]);
        assert_eq!(logind_plan(Restart, 0).argv[2..], ["reboot", "+0s"]);
        assert_eq!(logind_cancel_argv(), ["logind", "CancelScheduledShutdown"]);
    }

    #[test]
    fn empty_message_is_no_message() {
        assert_eq!(
            argv(Shutdown, 0, Some(""), Linux),
            (0, vec!["shutdown", "-h", "now"])
        );
        assert_eq!(
            argv(Shutdown, 0, Some(""), Windows),
            (0, vec!["shutdown", "/s", "/t", "0"])
        );
    }
}
