//! The status board's NOTE for one host: what is pending (which action, when it is due, who
//! asked, the message), whether the last power command failed (and how long ago, with the
//! agent's error), the machine's own host name when it is not the inventory's, and an agent
//! certificate close to its end. The same facts go to `--json` as fields.
//!
//! A power action can fail after the agent accepted it (the reply goes out before the
//! command runs); the board is where the administrator learns of it afterwards:
//! "last shutdown FAILED 2m ago: …".
//!
//! Times are counted on the agent's clock ([`agent_now`]), so a controller whose clock is
//! off does not show a wrong "in 4m10s".

use lightsout_protocol::health::ActionRecord;
use lightsout_protocol::{Health, PendingAction};
use serde_json::{Value, json};

use crate::duration::human;
use crate::text::{same_host_name, shorten};

/// Longest a pending action's message is shown on the board (the full one is in `--json`).
const MESSAGE_CHARS: usize = 60;

/// Longest an agent's error is shown on the board (the full one is in `--json`).
const ERROR_CHARS: usize = 100;

/// The agent's clock when it took the snapshot: its boot time plus its uptime (the agent
/// computes the uptime from the boot time), so due times compare without clock skew. Without
/// a boot time, the controller's clock.
pub fn agent_now(h: &Health) -> u64 {
    if h.boot_time_unix > 0 {
        h.boot_time_unix + h.uptime_secs
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The facts behind one host's NOTE.
#[derive(Debug, Clone, PartialEq)]
pub struct Note<'a> {
    pending: Option<&'a PendingAction>,
    /// The last power command, when it failed.
    failed: Option<&'a ActionRecord>,
    /// The machine's own host name, when it is not the inventory's name for it.
    hostname: Option<&'a str>,
    cert_expires_in_days: Option<i64>,
    now: u64,
}

impl<'a> Note<'a> {
    /// The note for `health`, reported by the host the inventory calls `label`.
    pub fn of(label: &str, health: &'a Health, cert_expires_in_days: Option<i64>) -> Self {
        Self {
            pending: health.pending.as_ref(),
            failed: health.last_action.as_ref().filter(|l| l.error.is_some()),
            hostname: (!same_host_name(&health.hostname, label)).then_some(&*health.hostname),
            cert_expires_in_days,
            now: agent_now(health),
        }
    }

    /// The NOTE column (not yet sanitised): parts separated by `; `, the pending action
    /// first. E.g. `shutdown in 4m10s by alice@laptop: The lab closes`.
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = self.pending {
            let due_in = p.due_unix.saturating_sub(self.now);
            let when = if due_in == 0 {
                "due now".to_string()
            } else {
                format!("in {}", human(due_in))
            };
            let mut part = format!("{} {when} by {}", p.action, p.requested_by);
            if let Some(m) = p.message.as_deref().filter(|m| !m.is_empty()) {
                part.push_str(&format!(": {}", shorten(m, MESSAGE_CHARS)));
            }
            parts.push(part);
        }
        if let Some(f) = self.failed {
            let what = f.action.map_or("power command", |a| a.as_str());
            parts.push(format!(
                "last {what} FAILED {} ago: {}",
                human(self.now.saturating_sub(f.finished_unix)),
                shorten(f.error.as_deref().unwrap_or_default(), ERROR_CHARS)
            ));
        }
        if let Some(h) = self.hostname {
            parts.push(format!("hostname {h}"));
        }
        if let Some(days) = self.cert_expires_in_days {
            parts.push(format!("certificate expires in {days} days"));
        }
        parts.join("; ")
    }

    /// The `note` object of `--json`: `text` (the NOTE column), `pending` (with
    /// `due_in_secs`), `last_failure` (with `ago_secs`), `hostname` (when it differs); absent
    /// facts are `null`.
    pub fn json(&self) -> Value {
        json!({
            "text": self.text(),
            "pending": self.pending.map(|p| json!({
                "action": p.action,
                "request_id": p.request_id,
                "requested_by": p.requested_by,
                "message": p.message,
                "due_unix": p.due_unix,
                "due_in_secs": p.due_unix.saturating_sub(self.now),
            })),
            "last_failure": self.failed.map(|f| json!({
                "action": f.action,
                "request_id": f.request_id,
                "error": f.error,
                "exit_code": f.exit_code,
                "finished_unix": f.finished_unix,
                "ago_secs": self.now.saturating_sub(f.finished_unix),
            })),
            "hostname": self.hostname,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightsout_protocol::PowerAction;

    const NOW: u64 = 1_700_000_000;

    fn health() -> Health {
        Health {
            hostname: "lab-01.example.edu".into(),
            boot_time_unix: NOW - 3600,
            uptime_secs: 3600,
            ..Health::default()
        }
    }

    fn pending(message: Option<&str>) -> PendingAction {
        PendingAction {
            action: PowerAction::Shutdown,
            request_id: "r1".into(),
            requested_by: "alice@laptop".into(),
            due_unix: NOW + 250,
            argv: vec!["shutdown".into(), "-h".into(), "+4".into()],
            message: message.map(str::to_owned),
        }
    }

    fn failure(action: Option<PowerAction>, error: &str) -> ActionRecord {
        ActionRecord {
            request_id: "r0".into(),
            action,
            argv: vec!["shutdown".into(), "-h".into(), "now".into()],
            exit_code: Some(1),
            error: Some(error.into()),
            finished_unix: NOW - 130,
        }
    }

    #[test]
    fn pending_says_what_when_who_and_the_message() {
        let mut h = health();
        h.pending = Some(pending(Some("The lab closes")));
        let note = Note::of("lab-01", &h, None);
        assert_eq!(
            note.text(),
            "shutdown in 4m10s by alice@laptop: The lab closes"
        );
        h.pending = Some(pending(None));
        assert_eq!(
            Note::of("lab-01", &h, None).text(),
            "shutdown in 4m10s by alice@laptop"
        );
        // Past its due time (handed to the system, not yet carried out).
        h.pending = Some(PendingAction {
            due_unix: NOW - 2,
            ..pending(None)
        });
        assert_eq!(
            Note::of("lab-01", &h, None).text(),
            "shutdown due now by alice@laptop"
        );
    }

    #[test]
    fn a_failed_last_action_is_shown_after_the_pending_one() {
        let mut h = health();
        h.last_action = Some(failure(
            Some(PowerAction::Shutdown),
            "shutdown failed (exit status: 1): Failed to connect to bus: No such file or directory",
        ));
        assert_eq!(
            Note::of("lab-01", &h, None).text(),
            "last shutdown FAILED 2m10s ago: shutdown failed (exit status: 1): Failed to connect to bus: No such file or directory"
        );
        h.pending = Some(pending(Some("The lab closes")));
        let text = Note::of("lab-01", &h, Some(12)).text();
        assert_eq!(
            text,
            "shutdown in 4m10s by alice@laptop: The lab closes; last shutdown FAILED 2m10s ago: shutdown failed (exit status: 1): Failed to connect to bus: No such file or directory; certificate expires in 12 days"
        );
        // A long error is cut on the board (whole in --json).
        let long = "x".repeat(300);
        h.pending = None;
        h.last_action = Some(failure(Some(PowerAction::Restart), &long));
        let text = Note::of("lab-01", &h, None).text();
        assert!(
            text.starts_with("last restart FAILED 2m10s ago: xxx"),
            "{text}"
        );
        assert!(text.ends_with('…') && text.chars().count() < 150, "{text}");
        assert_eq!(
            Note::of("lab-01", &h, None).json()["last_failure"]["error"],
            long
        );
        // An agent that does not say which action it was.
        h.pending = None;
        h.last_action = Some(failure(None, "boom\nsecond line"));
        assert_eq!(
            Note::of("lab-01", &h, None).text(),
            "last power command FAILED 2m10s ago: boom second line"
        );
    }

    #[test]
    fn a_successful_last_action_is_not_news() {
        let mut h = health();
        h.last_action = Some(ActionRecord {
            error: None,
            exit_code: Some(0),
            ..failure(Some(PowerAction::Restart), "")
        });
        assert_eq!(Note::of("lab-01", &h, None).text(), "");
        assert_eq!(
            Note::of("lab-01", &h, None).json()["last_failure"],
            Value::Null
        );
    }

    #[test]
    fn host_names_are_compared_without_domain() {
        let h = health();
        assert_eq!(Note::of("LAB-01", &h, None).text(), "");
        assert_eq!(
            Note::of("lab-02", &h, None).text(),
            "hostname lab-01.example.edu"
        );
        assert_eq!(
            Note::of("10.0.0.21", &h, None).json()["hostname"],
            "lab-01.example.edu"
        );
    }

    #[test]
    fn json_carries_the_same_facts() {
        let mut h = health();
        h.pending = Some(pending(Some("The lab closes")));
        h.last_action = Some(failure(Some(PowerAction::Shutdown), "boom"));
        let v = Note::of("lab-01", &h, None).json();
        assert_eq!(v["pending"]["due_in_secs"], 250);
        assert_eq!(v["pending"]["requested_by"], "alice@laptop");
        assert_eq!(v["pending"]["message"], "The lab closes");
        assert_eq!(v["pending"]["action"], "shutdown");
        assert_eq!(v["last_failure"]["ago_secs"], 130);
        assert_eq!(v["last_failure"]["error"], "boom");
        assert_eq!(v["last_failure"]["action"], "shutdown");
        assert_eq!(v["hostname"], Value::Null);
        assert_eq!(v["text"], Note::of("lab-01", &h, None).text());
    }
}
