//! Occupancy, defined once: whether someone is using the machine, and who.
//!
//! A machine is occupied when systemd-logind lists a session of class `user` (or
//! `user-early`: systemd 256 and later give root's login that class, and someone logged in as
//! root at the console is at the machine) in state `active`, `online` or `opening` (logind
//! lists a login as `opening` until the user's service manager is up: seen for several
//! seconds in the VM suite, and the person is at the machine already). Greeters (the login screen), lock screens, the per-user service
//! manager and background sessions (cron) are not people at the machine; a `closing` session
//! is someone who has logged out. Where logind does not run (or the agent uses the command
//! power backend, see below), a utmp login record is a session. Each session comes with its
//! idle time, for policies that want "idle longer than N".
//!
//! The health snapshot (and so `--skip-busy` and the status board's USERS column) reads it
//! here; later the timetable and the desktop countdown will too. The source follows the power
//! backend chosen once in configuration: logind's sessions, on the same bus, where the agent
//! schedules its power actions with logind; utmp otherwise. So an agent started by a test
//! (always with a stand-in or `--dry-run`, hence the command backend) never reads the real
//! system bus, and one with `--logind-bus` reads its fake logind's sessions.

mod utmp;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lightsout_protocol::health::{Session, SessionState};
use tracing::warn;

use crate::config::PowerBackend;
use crate::logind::{Logind, RawSession};

/// Longest the health snapshot waits for logind's sessions: an echo must stay quick even
/// when the system bus hangs (then occupancy is unknown, which `--skip-busy` treats as busy).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Who occupies the machine; `None`s when it cannot be told (which `--skip-busy` treats as
/// busy: it is a safety promise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// The occupying sessions.
    pub sessions: Option<Vec<Session>>,
}

impl Occupancy {
    /// Distinct users among the occupying sessions.
    pub fn users(&self) -> Option<u32> {
        let sessions = self.sessions.as_ref()?;
        let mut users: Vec<&str> = sessions.iter().map(|s| s.user.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        Some(u32::try_from(users.len()).unwrap_or(u32::MAX))
    }
}

/// The rule: does a logind session of this class in this state occupy the machine?
pub fn occupies(class: &str, state: &str) -> Option<SessionState> {
    if !matches!(class, "user" | "user-early") {
        return None;
    }
    match state {
        "active" => Some(SessionState::Active),
        "online" => Some(SessionState::Online),
        "opening" => Some(SessionState::Opening),
        _ => None,
    }
}

/// The occupying sessions among logind's, at `now_usec` (CLOCK_REALTIME, µs).
pub fn from_logind(raw: &[RawSession], now_usec: u64) -> Vec<Session> {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    raw.iter()
        .filter_map(|r| {
            let state = occupies(&r.class, &r.state)?;
            let idle_secs = if r.idle_hint && r.idle_since_usec > 0 {
                now_usec.saturating_sub(r.idle_since_usec) / 1_000_000
            } else {
                0
            };
            Some(Session {
                user: r.user.clone(),
                tty: some(&r.tty),
                seat: some(&r.seat),
                remote_host: if r.remote { some(&r.remote_host) } else { None },
                state: Some(state),
                idle_secs: Some(idle_secs),
            })
        })
        .collect()
}

/// Reads the occupancy from the source that goes with `backend` (see the module docs).
pub async fn read(backend: &PowerBackend) -> Occupancy {
    let sessions = match backend {
        PowerBackend::Command => utmp::sessions(),
        PowerBackend::Logind(bus) => {
            let listed = tokio::time::timeout(READ_TIMEOUT, async {
                Logind::connect(bus).await?.sessions().await
            })
            .await;
            match listed {
                Ok(Ok(raw)) => Some(from_logind(&raw, now_usec())),
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot list logind's sessions: occupancy unknown");
                    None
                }
                Err(_) => {
                    warn!(
                        secs = READ_TIMEOUT.as_secs(),
                        "logind did not list its sessions in time: occupancy unknown"
                    );
                    None
                }
            }
        }
    };
    Occupancy { sessions }
}

fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(user: &str, class: &str, state: &str) -> RawSession {
        RawSession {
            id: user.into(),
            user: user.into(),
            class: class.into(),
            state: state.into(),
            tty: "tty1".into(),
            seat: "seat0".into(),
            ..RawSession::default()
        }
    }

    #[test]
    fn only_user_sessions_that_are_active_online_or_opening_occupy() {
        assert_eq!(occupies("user", "active"), Some(SessionState::Active));
        assert_eq!(occupies("user", "online"), Some(SessionState::Online));
        // Root's console login on systemd 256+ (Debian 13), seen in the VM suite.
        assert_eq!(occupies("user-early", "active"), Some(SessionState::Active));
        assert_eq!(occupies("user-early", "online"), Some(SessionState::Online));
        // A console login while logind still sets it up (seen for seconds in the VM suite).
        assert_eq!(occupies("user", "opening"), Some(SessionState::Opening));
        for (class, state) in [
            ("user", "closing"),
            ("greeter", "active"),
            ("lock-screen", "active"),
            ("manager", "online"),
            ("background", "active"),
            ("user-early", "bogus"),
            ("user-early", "closing"),
            ("manager-early", "online"),
            ("greeter", "opening"),
        ] {
            assert_eq!(occupies(class, state), None, "{class}/{state}");
        }
    }

    #[test]
    fn idle_time_and_remote_host_are_reported() {
        let mut alice = raw("alice", "user", "active");
        alice.idle_hint = true;
        alice.idle_since_usec = 1_000_000_000;
        let mut bob = raw("bob", "user", "online");
        bob.tty = "pts/0".into();
        bob.seat = String::new();
        bob.remote = true;
        bob.remote_host = "10.0.0.5".into();
        let greeter = raw("lightdm", "greeter", "active");
        let manager = raw("alice", "manager", "online");
        let now = 1_000_000_000 + 180 * 1_000_000;
        let sessions = from_logind(&[alice, greeter, bob, manager], now);
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        assert_eq!(sessions[0].user, "alice");
        assert_eq!(sessions[0].idle_secs, Some(180));
        assert_eq!(sessions[0].place(), "tty1");
        assert_eq!(sessions[1].idle_secs, Some(0), "not idle");
        assert_eq!(sessions[1].place(), "pts/0 from 10.0.0.5");
        let occupancy = Occupancy {
            sessions: Some(sessions),
        };
        assert_eq!(occupancy.users(), Some(2));
        assert_eq!(Occupancy::default().users(), None);
    }
}
