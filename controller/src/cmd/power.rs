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
//! 5. **Batches** (`--batch N|P% --stagger D --max-fail N|P%`): N hosts (or P% of them) at a
//!    time, a pause between batches; after a batch with more failures than `--max-fail` (see
//!    [`crate::batch`]) the rest are not sent (reported skipped, with the reason). With
//!    `--wait` each batch must be back before the next starts, and if any host of a batch does
//!    not come back the rest are not started (skipped) — a rolling restart stops at the
//!    first sign of trouble.
//! 6. **Wait** (`--wait`, in [`crate::wait`]): each accepted host is polled until its action
//!    visibly happened — a restarted host answers with a new boot identity, a shut-down one
//!    stops answering — within `--wait-timeout` after it was due, or visibly did not: the
//!    agent reports the command failed, or it was cancelled or replaced.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use lightsout_protocol::{PowerAction, PowerParams, Reply, Request, RequestEnvelope};

use crate::batch::Share;
use crate::duration::human;
use crate::fanout::{FanOut, echo_request, new_request_id};
use crate::inventory::Host;
use crate::local::LocalMachine;
use crate::print::{Live, Mode};
use crate::render::sanitize;
use crate::result::{HostOutcome, HostResult, Status};
use crate::wait::{Before, Befores, wait_for_all};

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
        "refusing to {verb} {host}: it is this machine (the controller runs here, host name {hostname}). Name it explicitly and add --include-self to really do it. No {action} was sent."
    )]
    ThisMachine {
        /// `shut down` or `restart`.
        verb: &'static str,
        /// `shutdown` or `restart`: what was not sent (an echo was: the self-check that
        /// asked whether its agent is a dry-run one).
        action: &'static str,
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
    /// Hosts per batch, a number or a share of them (all at once when `None`).
    pub batch: Option<Share>,
    /// When a rolling run stops: more than so many failures (see [`crate::batch`]).
    pub max_fail: Option<Share>,
    /// Pause between batches.
    pub stagger: Duration,
    /// Allow this machine when named explicitly.
    pub include_self: bool,
    /// `--wait`: how long after its due time each host may take to come back (restart) or
    /// to stop answering (shutdown).
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
                action: job.action.as_str(),
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
) -> (Vec<Host>, Befores) {
    let mut identities = Befores::new();
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
                    identities.insert(r.host.target.to_string(), Before::of(health));
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
    identities: &Befores,
    live: &Live,
) -> Vec<HostResult> {
    let request = match job.action {
        PowerAction::Shutdown => Request::Shutdown(job.params.clone()),
        PowerAction::Restart => Request::Restart(job.params.clone()),
    };
    let size = job
        .batch
        .map_or(to_send.len(), |b| b.batch_size(to_send.len()))
        .max(1);
    let batches: Vec<Vec<Host>> = to_send.chunks(size).map(<[Host]>::to_vec).collect();
    let count = batches.len();
    let mut out = Vec::new();
    let mut stop_reason: Option<String> = None;
    let mut failed_so_far = 0;
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
                    .any(|r| r.wait.as_ref().is_some_and(|w| !w.ok()))
                {
                    stop_reason = Some(format!(
                        "not started: {}",
                        crate::wait::batch_stop_reason(job.action, i + 1, count)
                    ));
                }
                results
            }
        };
        let failed_in_batch = results
            .iter()
            .filter(|r| r.status() == Status::Failed)
            .count();
        failed_so_far += failed_in_batch;
        if let Some(max) = job
            .max_fail
            .filter(|_| stop_reason.is_none() && i + 1 < count)
            && max.exceeded(failed_so_far, failed_in_batch, results.len())
        {
            let reason = format!(
                "not sent: stopped after batch {}/{count}, {failed_in_batch} of its {} hosts failed ({failed_so_far} so far), more than --max-fail {max}",
                i + 1,
                results.len()
            );
            live.note(&reason);
            stop_reason = Some(reason);
        }
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
        out.push_str(&crate::wait::describe(plan.action, limit));
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
