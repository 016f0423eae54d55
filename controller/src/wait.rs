//! `--wait` after an accepted `restart` or `shutdown`: each host is polled with an echo
//! until the action has visibly happened, or has visibly not.
//!
//! An action can fail *after* the agent accepted it (the reply goes out before the command
//! runs, and the system can refuse it: `Failed to connect to bus`), and it can be cancelled
//! or replaced by someone else. Waiting out the whole timeout for a reboot that will not come
//! hides that, so every poll that reaches the agent also reads its health snapshot:
//! - the last command it ran was this request's and failed ⇒ [`WaitEnd::ActionFailed`] at
//!   once, with the agent's error;
//! - this request is no longer the pending one before it was due, without a failure, and the
//!   agent did not restart in between ⇒ [`WaitEnd::Cancelled`] (or replaced, naming by whom).
//!
//! Otherwise a restart ends [`WaitEnd::Back`] when the host answers with a new boot identity
//! (`boot_id`, else boot time), or [`WaitEnd::NotBack`] after the timeout; a shutdown ends
//! [`WaitEnd::Off`] when the host stops answering once it is due (two polls in a row: one
//! lost connection is not a powered-off machine), or [`WaitEnd::StillUp`] when it still
//! answers the timeout after its due time. The timeout counts from when the action is due.
//!
//! Rehearsals: a shutdown rehearsal has nothing to wait for. A restart rehearsed by an agent
//! in dry-run mode is waited for as a real one (such an agent may pretend to reboot,
//! `--simulate-reboot`); rehearsed on a live agent (`restart --dry-run`), nothing happens, so
//! there is nothing to wait for either.
//!
//! Polls run every [`POLL_INTERVAL`] once the action is due, and every [`PENDING_POLL`]
//! before (only a failure or a cancel can show then, and a wait of an hour should not cost
//! thousands of handshakes per host).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lightsout_protocol::{Health, PowerAction, PowerReply, Reply};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::board::agent_now;
use crate::duration::human;
use crate::fanout::{FanOut, echo_request};
use crate::print::Live;
use crate::render::sanitize;
use crate::result::{HostOutcome, HostResult, WaitEnd, WaitOutcome};
use crate::text::shorten;

/// How often a host is polled once its action is due.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How often a host is polled before its action is due.
const PENDING_POLL: Duration = Duration::from_secs(1);

/// Polls in a row without an answer after which a shut-down host counts as off.
const SILENT_POLLS_FOR_OFF: u32 = 2;

/// How much earlier than the controller's idea of the due time a host may stop answering and
/// still be on time (the agent counts from before its reply, in whole seconds).
const DUE_SLACK: Duration = Duration::from_secs(1);

/// Longest an agent's error is shown in a wait's detail.
const ERROR_CHARS: usize = 200;

/// A machine's boot identity, to tell that a restart really happened.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BootIdentity {
    boot_id: Option<String>,
    boot_time_unix: u64,
}

impl BootIdentity {
    fn of(h: &Health) -> Self {
        Self {
            boot_id: h.boot_id.clone(),
            boot_time_unix: h.boot_time_unix,
        }
    }

    /// A new boot: another boot_id, or (without one) a boot time that moved by more than
    /// the jitter of computing it from the uptime.
    fn is_new_since(&self, before: &BootIdentity) -> bool {
        match (&before.boot_id, &self.boot_id) {
            (Some(a), Some(b)) => a != b,
            _ => self.boot_time_unix.abs_diff(before.boot_time_unix) > 2,
        }
    }

    fn describe(&self) -> String {
        match &self.boot_id {
            Some(id) => format!("new boot_id {}", id.chars().take(36).collect::<String>()),
            None => format!("booted at unix time {}", self.boot_time_unix),
        }
    }
}

/// What the pre-flight echo saw of a host before its action was sent.
#[derive(Debug, Clone)]
pub struct Before {
    boot: BootIdentity,
    /// The agent process's start, Unix ms (a different one means the agent restarted).
    agent_started_unix_ms: Option<u64>,
    /// The agent runs in dry-run mode (it may simulate a reboot).
    dry_run_agent: bool,
}

impl Before {
    /// From the pre-flight health snapshot.
    pub fn of(h: &Health) -> Self {
        Self {
            boot: BootIdentity::of(h),
            agent_started_unix_ms: h.agent_started_unix_ms,
            dry_run_agent: h.dry_run,
        }
    }
}

/// Pre-flight snapshots, by target.
pub type Befores = HashMap<String, Before>;

/// Waits for every accepted action in `accepted` (at most `fanout.parallel` hosts at once)
/// and returns each result with its [`WaitOutcome`]; results that are not accepted actions
/// are returned as they are. `limit` is how long after its due time each host may take.
pub async fn wait_for_all(
    fanout: &FanOut,
    accepted: Vec<HostResult>,
    befores: &Befores,
    limit: Duration,
    live: &Live,
) -> Vec<HostResult> {
    let slots = Arc::new(Semaphore::new(fanout.parallel.max(1)));
    let mut set = JoinSet::new();
    let mut out = Vec::new();
    for result in accepted {
        let Some(Reply::Shutdown(reply) | Reply::Restart(reply)) = result.reply() else {
            // Refused or unreachable: nothing to wait for.
            live.done(&result);
            out.push(result);
            continue;
        };
        let reply = reply.clone();
        let before = befores.get(&result.host.target.to_string()).cloned();
        let fanout = fanout.clone();
        let slots = slots.clone();
        set.spawn(async move {
            let _slot = slots.acquire_owned().await;
            watch(&fanout, result, &reply, before, limit).await
        });
    }
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => {
                live.done(&r);
                out.push(r);
            }
            Err(e) => tracing::error!(error = %e, "a wait task panicked"),
        }
    }
    out
}

/// For the confirmation prompt: what `--wait` will wait for, and how long.
pub fn describe(action: PowerAction, limit: Duration) -> String {
    match action {
        PowerAction::Restart => format!(
            ", then wait up to {} for each to come back",
            human(limit.as_secs())
        ),
        PowerAction::Shutdown => format!(
            ", then wait for each to stop answering (up to {} after it is due)",
            human(limit.as_secs())
        ),
    }
}

/// Why the rest of a rolling action is not started: a host of batch `batch`/`count` did not
/// end its wait as asked.
pub fn batch_stop_reason(action: PowerAction, batch: usize, count: usize) -> String {
    match action {
        PowerAction::Restart => format!("a host of batch {batch}/{count} did not come back"),
        PowerAction::Shutdown => format!("a host of batch {batch}/{count} did not shut down"),
    }
}

/// What one poll that reached the agent says about the action, if it settles the wait.
///
/// `request_id` is the action's; `before_due` whether it is not due yet (by the controller's
/// clock, counted from the reply, so never earlier than the agent's due time).
fn verdict(
    health: &Health,
    request_id: &str,
    before: &Before,
    before_due: bool,
) -> Option<(WaitEnd, String)> {
    if let Some(last) = health
        .last_action
        .as_ref()
        .filter(|l| l.request_id == request_id)
    {
        if let Some(error) = &last.error {
            return Some((
                WaitEnd::ActionFailed,
                format!(
                    "the agent reports it failed: {}",
                    shorten(error, ERROR_CHARS)
                ),
            ));
        }
    }
    // A restarted agent forgets what it was waiting for (it hands the action to the system
    // first): its silence about the action is not a cancel.
    if health.agent_started_unix_ms != before.agent_started_unix_ms {
        return None;
    }
    match &health.pending {
        Some(p) if p.request_id == request_id => None,
        Some(p) => Some((
            WaitEnd::Cancelled,
            format!(
                "replaced by a {} requested by {} (request {}), due in {}",
                p.action,
                p.requested_by,
                p.request_id,
                human(p.due_unix.saturating_sub(agent_now(health)))
            ),
        )),
        None if before_due => Some((
            WaitEnd::Cancelled,
            "cancelled: no longer pending on the agent before its due time, and no failure reported (the agent's audit log says by whom)"
                .into(),
        )),
        None => None,
    }
}

/// How the watch of one host goes.
struct Watch {
    action: PowerAction,
    accepted: Instant,
    due: Instant,
    deadline: Instant,
    /// Polls in a row that got no answer, and when the first of them was sent.
    silent: (u32, Option<Instant>),
    /// What the last poll saw, for the timeout's detail.
    last: String,
}

impl Watch {
    fn end(&self, end: WaitEnd, detail: String) -> WaitOutcome {
        WaitOutcome {
            end,
            after: self.accepted.elapsed(),
            detail,
        }
    }

    /// The shut-down host stopped answering: when, relative to its due time. Within
    /// [`DUE_SLACK`] before it counts as on time: the agent's due time is a little earlier
    /// than ours (it started counting before the reply reached us).
    fn off(&self) -> WaitOutcome {
        let since = self.silent.1.unwrap_or_else(Instant::now);
        let detail = if since + DUE_SLACK >= self.due {
            format!(
                "stopped answering {:.1}s after its due time",
                since.saturating_duration_since(self.due).as_secs_f64()
            )
        } else {
            format!(
                "stopped answering {:.1}s BEFORE its due time",
                (self.due - since).as_secs_f64()
            )
        };
        self.end(WaitEnd::Off, detail)
    }

    fn timed_out(&self, limit: Duration) -> WaitOutcome {
        match self.action {
            PowerAction::Restart => self.end(
                WaitEnd::NotBack,
                format!(
                    "did not come back within {} ({})",
                    human(limit.as_secs().max(1)),
                    self.last
                ),
            ),
            PowerAction::Shutdown if self.silent.0 > 0 => self.off(),
            PowerAction::Shutdown => self.end(
                WaitEnd::StillUp,
                format!(
                    "still up {} after its due time ({})",
                    human(limit.as_secs().max(1)),
                    self.last
                ),
            ),
        }
    }
}

/// Polls one host until its accepted action settles; see the module docs.
async fn watch(
    fanout: &FanOut,
    mut result: HostResult,
    reply: &PowerReply,
    before: Option<Before>,
    limit: Duration,
) -> HostResult {
    let accepted = Instant::now();
    let due = accepted + Duration::from_secs(reply.delay_secs);
    let mut watch = Watch {
        action: reply.action,
        accepted,
        due,
        deadline: due + limit,
        silent: (0, None),
        last: "no answer yet".into(),
    };
    let request_id = match &result.outcome {
        HostOutcome::Response(r) => r.id.clone().unwrap_or_default(),
        _ => String::new(),
    };
    let Some(before) = before else {
        result.wait = Some(watch.end(
            WaitEnd::NotBack,
            format!(
                "its state before the {} is unknown (no pre-flight answer)",
                reply.action
            ),
        ));
        return result;
    };
    // Only an agent in dry-run mode may act out a rehearsal (a simulated reboot).
    let acted_out = reply.action == PowerAction::Restart && before.dry_run_agent;
    if reply.dry_run && !acted_out {
        result.wait = Some(watch.end(
            WaitEnd::NothingToWaitFor,
            "a rehearsal runs nothing, so there is nothing to wait for".into(),
        ));
        return result;
    }
    loop {
        let now = Instant::now();
        if now >= watch.deadline {
            break;
        }
        let interval = if now < due {
            PENDING_POLL
        } else {
            POLL_INTERVAL
        };
        tokio::time::sleep(interval.min(watch.deadline - now)).await;
        let sent = Instant::now();
        let probe = fanout.one(&result.host, &echo_request("wait")).await;
        let Some(Reply::Echo { health, .. }) = probe.reply() else {
            watch.silent = (watch.silent.0 + 1, watch.silent.1.or(Some(sent)));
            watch.last = format!("down ({})", crate::render::detail(&probe));
            if reply.action == PowerAction::Shutdown
                && sent >= due
                && watch.silent.0 >= SILENT_POLLS_FOR_OFF
            {
                result.wait = Some(watch.off());
                return result;
            }
            continue;
        };
        watch.silent = (0, None);
        let now_id = BootIdentity::of(health);
        if reply.action == PowerAction::Restart && now_id.is_new_since(&before.boot) {
            result.wait = Some(watch.end(WaitEnd::Back, now_id.describe()));
            return result;
        }
        if !reply.dry_run {
            if let Some((end, detail)) = verdict(health, &request_id, &before, sent < due) {
                result.wait = Some(watch.end(end, sanitize(&detail)));
                return result;
            }
        }
        watch.last = match reply.action {
            PowerAction::Restart => "answering, but still the same boot".into(),
            PowerAction::Shutdown => "still answering".into(),
        };
    }
    result.wait = Some(watch.timed_out(limit));
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightsout_protocol::PendingAction;
    use lightsout_protocol::health::ActionRecord;

    #[test]
    fn boot_identity_changes() {
        let a = BootIdentity {
            boot_id: Some("one".into()),
            boot_time_unix: 1000,
        };
        let b = BootIdentity {
            boot_id: Some("two".into()),
            boot_time_unix: 1000,
        };
        assert!(b.is_new_since(&a));
        assert!(!a.is_new_since(&a));
        let old = BootIdentity {
            boot_id: None,
            boot_time_unix: 1000,
        };
        let jitter = BootIdentity {
            boot_id: None,
            boot_time_unix: 1001,
        };
        let rebooted = BootIdentity {
            boot_id: None,
            boot_time_unix: 1300,
        };
        assert!(
            !jitter.is_new_since(&old),
            "a second of jitter is not a reboot"
        );
        assert!(rebooted.is_new_since(&old));
    }

    fn pending(id: &str, by: &str) -> PendingAction {
        PendingAction {
            action: PowerAction::Shutdown,
            request_id: id.into(),
            requested_by: by.into(),
            due_unix: 1_000_300,
            argv: vec!["shutdown".into(), "-h".into(), "+5".into()],
            message: None,
        }
    }

    fn record(id: &str, error: Option<&str>) -> ActionRecord {
        ActionRecord {
            request_id: id.into(),
            action: Some(PowerAction::Shutdown),
            argv: vec!["shutdown".into(), "-h".into(), "+5".into()],
            exit_code: Some(1),
            error: error.map(str::to_owned),
            finished_unix: 1_000_000,
        }
    }

    fn health(started: u64) -> Health {
        Health {
            boot_time_unix: 999_000,
            uptime_secs: 1000,
            agent_started_unix_ms: Some(started),
            ..Health::default()
        }
    }

    #[test]
    fn a_failure_of_this_request_ends_the_wait_with_the_agents_error() {
        let before = Before::of(&health(7));
        let mut h = health(7);
        h.last_action = Some(record(
            "mine",
            Some("shutdown failed: Failed to connect to bus"),
        ));
        let (end, detail) = verdict(&h, "mine", &before, true).unwrap();
        assert_eq!(end, WaitEnd::ActionFailed);
        assert!(detail.contains("Failed to connect to bus"), "{detail}");
        // Even after a restart of the agent, and after the due time.
        h.agent_started_unix_ms = Some(8);
        assert_eq!(
            verdict(&h, "mine", &before, false).unwrap().0,
            WaitEnd::ActionFailed
        );
        // Another request's failure is not ours.
        h.last_action = Some(record("other", Some("boom")));
        h.agent_started_unix_ms = Some(7);
        h.pending = Some(pending("mine", "alice"));
        assert_eq!(verdict(&h, "mine", &before, true), None);
    }

    #[test]
    fn gone_before_due_is_a_cancel_unless_the_agent_restarted() {
        let before = Before::of(&health(7));
        let mut h = health(7);
        h.pending = Some(pending("mine", "alice"));
        assert_eq!(verdict(&h, "mine", &before, true), None, "still pending");
        h.pending = None;
        h.last_action = Some(record("mine", None));
        let (end, detail) = verdict(&h, "mine", &before, true).unwrap();
        assert_eq!(end, WaitEnd::Cancelled);
        assert!(detail.contains("cancelled"), "{detail}");
        // After its due time a handed-over action is no longer pending: it happened.
        assert_eq!(verdict(&h, "mine", &before, false), None);
        // A restarted agent no longer shows it: not a cancel.
        h.agent_started_unix_ms = Some(9);
        assert_eq!(verdict(&h, "mine", &before, true), None);
    }

    #[test]
    fn replaced_names_who_replaced_it() {
        let before = Before::of(&health(7));
        let mut h = health(7);
        h.pending = Some(pending("theirs", "bob@desk"));
        let (end, detail) = verdict(&h, "mine", &before, true).unwrap();
        assert_eq!(end, WaitEnd::Cancelled);
        assert_eq!(
            detail,
            "replaced by a shutdown requested by bob@desk (request theirs), due in 5m"
        );
    }

    fn watch_due_in(due_in: Duration) -> Watch {
        let now = Instant::now();
        Watch {
            action: PowerAction::Shutdown,
            accepted: now,
            due: now + due_in,
            deadline: now + due_in + Duration::from_secs(60),
            silent: (2, Some(now)),
            last: String::new(),
        }
    }

    #[test]
    fn off_says_whether_it_was_on_time() {
        // Silent a moment before our due time: the agent's due time came first.
        let w = watch_due_in(Duration::from_millis(400));
        assert_eq!(w.off().end, WaitEnd::Off);
        assert_eq!(w.off().detail, "stopped answering 0.0s after its due time");
        // Well before: said loudly.
        let w = watch_due_in(Duration::from_secs(30));
        assert!(
            w.off().detail.contains("BEFORE its due time"),
            "{}",
            w.off().detail
        );
        // A shutdown that times out while the host is silent ended off; else still up.
        let mut w = watch_due_in(Duration::ZERO);
        assert_eq!(w.timed_out(Duration::from_secs(60)).end, WaitEnd::Off);
        w.silent = (0, None);
        w.last = "still answering".into();
        let still = w.timed_out(Duration::from_secs(60));
        assert_eq!(still.end, WaitEnd::StillUp);
        assert_eq!(
            still.detail,
            "still up 1m after its due time (still answering)"
        );
    }
}
