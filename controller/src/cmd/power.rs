//! The safe power workflow for `shutdown` and `restart`.
//!
//! In order, before anything that can take a machine down is sent:
//! 1. **Confirmation gate**: more than one host, not `--dry-run`, no `--yes`, and no terminal
//!    on stdin to ask on → refused at once (exit 2), nothing sent at all.
//! 2. **Self-protection**: a host that is the machine this controller runs on (see
//!    [`crate::local`]) is sent nothing unless it is named explicitly *and* `--include-self`
//!    is given. Named explicitly without the flag: the whole command is refused (exit 2).
//!    Reached through a group or `all`: that host is skipped, the others proceed. Rehearsals
//!    are exempt — `--dry-run`, or an agent that reports it runs in dry-run mode (asked with
//!    an echo first), since nothing can happen.
//! 3. **Pre-flight echo** (`--skip-busy`, `--wait`): busy hosts (logged-in users) are
//!    skipped, each host's boot identity is recorded; a host that does not answer is failed
//!    and sent nothing.
//! 4. **Confirmation** on the terminal: what will happen, to which hosts, which are skipped.
//! 5. **Batches** (`--batch N --stagger D`): N hosts at a time, a pause between batches; with
//!    `--wait` each batch must be back before the next starts, and if any host of a batch does
//!    not come back the rest are not started (skipped) — a rolling restart stops at the
//!    first sign of trouble.
//! 6. **Wait** (`restart --wait`): each accepted host is polled until it answers with a new
//!    boot identity (`boot_id`, else boot time), within `--wait-timeout` after it was due.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lightsout_protocol::{Health, PowerAction, PowerParams, Reply, Request, RequestEnvelope};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::duration::human;
use crate::fanout::{FanOut, echo_request, new_request_id};
use crate::inventory::Host;
use crate::local::LocalMachine;
use crate::print::{Live, Mode};
use crate::render::sanitize;
use crate::result::{HostOutcome, HostResult, Status, WaitOutcome};

/// How often a restarting host is asked whether it is back.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Why a shutdown or restart was refused before anything was sent (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The targets resolved to no host.
    #[error("no hosts to {verb}")]
    NoHosts {
        /// `shut down` or `restart`.
        verb: &'static str,
    },
    /// Several hosts, no `--yes`, and no terminal to ask on.
    #[error(
        "refusing to {verb} {total} hosts without confirmation: stdin is not a terminal to ask on. Pass --yes to confirm (or --dry-run to rehearse). Nothing was sent."
    )]
    NoConfirmation {
        /// `shut down` or `restart`.
        verb: &'static str,
        /// How many hosts.
        total: usize,
    },
    /// This machine was named explicitly without `--include-self`.
    #[error(
        "refusing to {verb} {host}: it is this machine (the controller runs here, host name {hostname}). Name it explicitly and add --include-self to really do it. Nothing was sent."
    )]
    ThisMachine {
        /// `shut down` or `restart`.
        verb: &'static str,
        /// The host as named (sanitised).
        host: String,
        /// This machine's host name (sanitised).
        hostname: String,
    },
    /// The operator did not say yes.
    #[error("aborted: no {action} was sent")]
    Aborted {
        /// `shutdown` or `restart`.
        action: &'static str,
    },
    /// The answer to the confirmation could not be read.
    #[error(transparent)]
    Stdin(#[from] std::io::Error),
}

/// Everything the command line says about one shutdown or restart run. (Not the
/// protocol's `PowerPlan`, which is the argv an agent runs.)
#[derive(Debug, Clone)]
pub struct PowerJob {
    /// Shutdown or restart.
    pub action: PowerAction,
    /// Delay, message, replace.
    pub params: PowerParams,
    /// Rehearse only.
    pub dry_run: bool,
    /// Skip the confirmation.
    pub yes: bool,
    /// Skip hosts with logged-in users.
    pub skip_busy: bool,
    /// Hosts per batch (all at once when `None`).
    pub batch: Option<usize>,
    /// Pause between batches.
    pub stagger: Duration,
    /// Allow this machine when named explicitly.
    pub include_self: bool,
    /// `restart --wait`: how long each host may take to come back after it was due.
    pub wait: Option<Duration>,
}

impl PowerJob {
    fn verb(&self) -> &'static str {
        match self.action {
            PowerAction::Shutdown => "shut down",
            PowerAction::Restart => "restart",
        }
    }
}

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

/// Boot identities before the action, by target.
type Identities = HashMap<String, BootIdentity>;

/// Runs the workflow against `hosts`, the six steps of the module docs in order; returns
/// whether every host that was not skipped succeeded.
///
/// # Errors
/// Refusals before anything is sent (no confirmation possible, this machine named without
/// `--include-self`, the operator said no): exit code 2.
pub async fn run(
    fanout: &FanOut,
    hosts: Vec<Host>,
    job: &PowerJob,
    mode: Mode,
    local: &LocalMachine,
) -> Result<bool, PowerError> {
    let total = hosts.len();
    let ask = confirmation_gate(job, total)?;
    let order: HashMap<String, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.target.to_string(), i))
        .collect();
    // Hosts that end before the action is sent: skipped, or failed their pre-flight.
    let mut finished: Vec<HostResult> = Vec::new();
    let candidates = protect_self(fanout, hosts, job, local, &mut finished).await?;
    let (to_send, identities) = preflight(fanout, candidates, job, &order, &mut finished).await;
    if ask && !to_send.is_empty() {
        confirm(job, &to_send, &finished)?;
    }
    let live = Live::new(job.action.as_str(), mode, total);
    for r in &finished {
        live.done(r);
    }
    finished.extend(send_in_batches(fanout, to_send, job, &identities, &live).await);
    finished.sort_by_key(|r| order.get(&r.host.target.to_string()).copied());
    live.finish(&finished);
    Ok(finished.iter().all(|r| r.status() != Status::Failed))
}

/// 1. Whether to ask for confirmation; refused at once when it is needed and there is no
///    terminal to ask on.
fn confirmation_gate(job: &PowerJob, total: usize) -> Result<bool, PowerError> {
    let verb = job.verb();
    if total == 0 {
        return Err(PowerError::NoHosts { verb });
    }
    let ask = total > 1 && !job.dry_run && !job.yes;
    if ask && !std::io::stdin().is_terminal() {
        return Err(PowerError::NoConfirmation { verb, total });
    }
    Ok(ask)
}

/// 2. Self-protection: the hosts that may be sent the action. This machine reached through
///    a group is skipped (into `finished`) unless its agent is a dry-run one; named
///    explicitly without `--include-self`, the whole command is refused.
async fn protect_self(
    fanout: &FanOut,
    hosts: Vec<Host>,
    job: &PowerJob,
    local: &LocalMachine,
    finished: &mut Vec<HostResult>,
) -> Result<Vec<Host>, PowerError> {
    if job.dry_run {
        return Ok(hosts);
    }
    let checks =
        futures_util::future::join_all(hosts.iter().map(|h| local.is_self(h, fanout.timeout)))
            .await;
    let mut candidates = Vec::new();
    let mut check_dry_run = Vec::new();
    for (host, is_self) in hosts.into_iter().zip(checks) {
        if !is_self || (host.explicit && job.include_self) {
            candidates.push(host);
        } else {
            check_dry_run.push(host);
        }
    }
    for r in fanout
        .run(&check_dry_run, |_| echo_request("self-check"), |_| {})
        .await
    {
        let agent_dry_run = matches!(r.reply(), Some(Reply::Echo { health, .. }) if health.dry_run);
        if agent_dry_run {
            candidates.push(r.host);
        } else if r.host.explicit {
            return Err(PowerError::ThisMachine {
                verb: job.verb(),
                host: sanitize(&r.host.label()),
                hostname: sanitize(local.hostname()),
            });
        } else {
            finished.push(HostResult::new(
                r.host,
                HostOutcome::Skipped(
                    "this is the controller's own machine: name it explicitly and add --include-self"
                        .into(),
                ),
            ));
        }
    }
    Ok(candidates)
}

/// 3. Pre-flight echo (`--skip-busy`, `--wait`): the hosts to send the action to, in the
///    order given, and their boot identities. Busy hosts are skipped and hosts that do not
///    answer failed (into `finished`).
async fn preflight(
    fanout: &FanOut,
    candidates: Vec<Host>,
    job: &PowerJob,
    order: &HashMap<String, usize>,
    finished: &mut Vec<HostResult>,
) -> (Vec<Host>, Identities) {
    let mut identities = Identities::new();
    if !job.skip_busy && job.wait.is_none() {
        return (candidates, identities);
    }
    let mut to_send = Vec::new();
    for r in fanout
        .run(&candidates, |_| echo_request("pre-flight"), |_| {})
        .await
    {
        match r.reply() {
            Some(Reply::Echo { health, .. }) => {
                if let Some(reason) = job.skip_busy.then(|| busy(health)).flatten() {
                    finished.push(HostResult::new(r.host, HostOutcome::Skipped(reason)));
                } else {
                    identities.insert(r.host.target.to_string(), BootIdentity::of(health));
                    to_send.push(r.host);
                }
            }
            // Unreachable or refusing even a health check: not sent the action either.
            _ => finished.push(r),
        }
    }
    to_send.sort_by_key(|h| order.get(&h.target.to_string()).copied());
    (to_send, identities)
}

/// Why `--skip-busy` leaves a host alone, if it does: someone occupies it (named, with their
/// terminal and idle time, when the agent lists the sessions), or the host cannot tell whether
/// anyone does. The flag is a safety promise, so "cannot tell" fails safe.
fn busy(health: &lightsout_protocol::Health) -> Option<String> {
    match (health.logged_in_users, health.sessions.as_deref()) {
        (None, _) => Some(
            "users unknown: the machine cannot count its logged-in users, so --skip-busy leaves it alone"
                .into(),
        ),
        (Some(0), _) => None,
        (Some(_), Some(sessions)) if !sessions.is_empty() => Some(format!(
            "busy — {}",
            sessions
                .iter()
                .map(crate::render::session_summary)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        (Some(users), _) => Some(format!(
            "busy: {users} user{} logged in",
            if users == 1 { "" } else { "s" }
        )),
    }
}

/// 4. Confirmation on the terminal: what will happen, to which hosts, which are skipped.
fn confirm(job: &PowerJob, to_send: &[Host], skipped: &[HostResult]) -> Result<(), PowerError> {
    eprint!("{}", describe_job(job, to_send, skipped));
    eprint!("Proceed? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(PowerError::Aborted {
            action: job.action.as_str(),
        })
    }
}

/// 5. Batches: `--batch` hosts at a time, `--stagger` apart; with `--wait` (step 6, in
///    [`wait_for_all`]) a batch whose hosts do not all come back stops the rest.
async fn send_in_batches(
    fanout: &FanOut,
    to_send: Vec<Host>,
    job: &PowerJob,
    identities: &Identities,
    live: &Live,
) -> Vec<HostResult> {
    let request = match job.action {
        PowerAction::Shutdown => Request::Shutdown(job.params.clone()),
        PowerAction::Restart => Request::Restart(job.params.clone()),
    };
    let size = job.batch.unwrap_or(to_send.len()).max(1);
    let batches: Vec<Vec<Host>> = to_send.chunks(size).map(<[Host]>::to_vec).collect();
    let count = batches.len();
    let mut out = Vec::new();
    let mut stop_reason: Option<String> = None;
    for (i, batch) in batches.into_iter().enumerate() {
        if let Some(reason) = &stop_reason {
            for host in batch {
                let r = HostResult::new(host, HostOutcome::Skipped(reason.clone()));
                live.done(&r);
                out.push(r);
            }
            continue;
        }
        if i > 0 && !job.stagger.is_zero() {
            live.note(&format!(
                "pausing {} before batch {}/{count}",
                human_duration(job.stagger),
                i + 1
            ));
            tokio::time::sleep(job.stagger).await;
        }
        if count > 1 {
            let names: Vec<String> = batch.iter().map(Host::label).collect();
            live.note(&format!("batch {}/{count}: {}", i + 1, names.join(", ")));
        }
        let make = |_: &Host| RequestEnvelope::new(new_request_id(), job.dry_run, request.clone());
        let results = match job.wait {
            None => fanout.run(&batch, make, |r| live.done(r)).await,
            Some(limit) => {
                let accepted = fanout.run(&batch, make, |_| {}).await;
                let results = wait_for_all(fanout, accepted, identities, limit, live).await;
                if results
                    .iter()
                    .any(|r| r.wait.as_ref().is_some_and(|w| !w.back))
                {
                    stop_reason = Some(format!(
                        "not started: a host of batch {}/{count} did not come back",
                        i + 1
                    ));
                }
                results
            }
        };
        out.extend(results);
    }
    out
}

fn human_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 && d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        human(d.as_secs())
    }
}

/// What is about to happen, for the confirmation prompt.
fn describe_job(plan: &PowerJob, to_send: &[Host], skipped: &[HostResult]) -> String {
    let when = if plan.params.delay_secs == 0 {
        "now".to_string()
    } else {
        format!("in {}", human(plan.params.delay_secs))
    };
    let mut out = format!(
        "About to {} {} host{} {when}",
        plan.action.as_str().to_uppercase(),
        to_send.len(),
        if to_send.len() == 1 { "" } else { "s" }
    );
    if let Some(m) = &plan.params.message {
        out.push_str(&format!(", message {:?}", sanitize(m)));
    }
    if let Some(n) = plan.batch {
        out.push_str(&format!(
            ", {n} at a time, {} apart",
            human_duration(plan.stagger)
        ));
    }
    if let Some(limit) = plan.wait {
        out.push_str(&format!(
            ", then wait up to {} for each to come back",
            human(limit.as_secs())
        ));
    }
    out.push_str(":\n");
    for h in to_send {
        out.push_str(&format!(
            "  {}  ({})\n",
            sanitize(&h.label()),
            sanitize(&h.target.to_string())
        ));
    }
    for r in skipped {
        out.push_str(&format!(
            "  {}  NOT SENT: {}\n",
            sanitize(&r.host.label()),
            crate::render::detail(r)
        ));
    }
    out
}

/// 6. Wait (`restart --wait`): for each accepted restart, waits until the host is back with a new boot identity.
async fn wait_for_all(
    fanout: &FanOut,
    accepted: Vec<HostResult>,
    identities: &Identities,
    limit: Duration,
    live: &Live,
) -> Vec<HostResult> {
    let slots = Arc::new(Semaphore::new(fanout.parallel.max(1)));
    let mut set = JoinSet::new();
    let mut out = Vec::new();
    for result in accepted {
        let delay = match result.reply() {
            Some(Reply::Restart(p)) => Duration::from_secs(p.delay_secs),
            _ => {
                // Refused or unreachable: nothing to wait for.
                live.done(&result);
                out.push(result);
                continue;
            }
        };
        let before = identities.get(&result.host.target.to_string()).cloned();
        let fanout = fanout.clone();
        let slots = slots.clone();
        set.spawn(async move {
            let _slot = slots.acquire_owned().await;
            wait_back(&fanout, result, before, delay, limit).await
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

async fn wait_back(
    fanout: &FanOut,
    mut result: HostResult,
    before: Option<BootIdentity>,
    delay: Duration,
    limit: Duration,
) -> HostResult {
    let accepted = Instant::now();
    let deadline = accepted + delay + limit;
    let mut last = "no answer yet".to_string();
    let Some(before) = before else {
        result.wait = Some(WaitOutcome {
            back: false,
            after: Duration::ZERO,
            detail: "its boot identity before the restart is unknown".into(),
        });
        return result;
    };
    // Nothing can have happened before the restart is due.
    tokio::time::sleep(delay).await;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        let probe = fanout.one(&result.host, &echo_request("wait")).await;
        match probe.reply() {
            Some(Reply::Echo { health, .. }) => {
                let now_id = BootIdentity::of(health);
                if now_id.is_new_since(&before) {
                    result.wait = Some(WaitOutcome {
                        back: true,
                        after: accepted.elapsed(),
                        detail: now_id.describe(),
                    });
                    return result;
                }
                last = "answering, but still the same boot".into();
            }
            _ => last = format!("down ({})", crate::render::detail(&probe)),
        }
    }
    result.wait = Some(WaitOutcome {
        back: false,
        after: accepted.elapsed(),
        detail: format!(
            "did not come back within {} ({last})",
            human(limit.as_secs().max(1))
        ),
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
