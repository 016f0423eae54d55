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

use anyhow::bail;
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

/// Everything the command line says about one shutdown or restart run.
#[derive(Debug, Clone)]
pub struct PowerPlan {
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

/// Runs the workflow against `hosts`; returns whether every host that was not skipped
/// succeeded.
///
/// # Errors
/// Refusals before anything is sent (no confirmation possible, this machine named without
/// `--include-self`, the operator said no): exit code 2.
pub async fn run(
    fanout: &FanOut,
    hosts: Vec<Host>,
    plan: &PowerPlan,
    mode: Mode,
    local: &LocalMachine,
) -> anyhow::Result<bool> {
    let name = plan.action.as_str();
    let verb = match plan.action {
        PowerAction::Shutdown => "shut down",
        PowerAction::Restart => "restart",
    };
    if hosts.is_empty() {
        bail!("no hosts to {verb}");
    }
    let total = hosts.len();
    let ask = total > 1 && !plan.dry_run && !plan.yes;
    let stdin_is_terminal = std::io::stdin().is_terminal();
    if ask && !stdin_is_terminal {
        bail!(
            "refusing to {verb} {total} hosts without confirmation: stdin is not a terminal to ask on. Pass --yes to confirm (or --dry-run to rehearse). Nothing was sent."
        );
    }
    let order: HashMap<String, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.target.to_string(), i))
        .collect();
    let mut finished: Vec<HostResult> = Vec::new();

    // 2. Self-protection.
    let mut candidates = Vec::new();
    if plan.dry_run {
        candidates = hosts;
    } else {
        let checks =
            futures_util::future::join_all(hosts.iter().map(|h| local.is_self(h, fanout.timeout)))
                .await;
        let mut check_dry_run = Vec::new();
        for (host, is_self) in hosts.into_iter().zip(checks) {
            if !is_self || (host.explicit && plan.include_self) {
                candidates.push(host);
            } else {
                check_dry_run.push(host);
            }
        }
        for r in fanout
            .run(&check_dry_run, |_| echo_request("self-check"), |_| {})
            .await
        {
            let agent_dry_run =
                matches!(r.reply(), Some(Reply::Echo { health, .. }) if health.dry_run);
            if agent_dry_run {
                candidates.push(r.host);
            } else if r.host.explicit {
                bail!(
                    "refusing to {verb} {}: it is this machine (the controller runs here, host name {}). Name it explicitly and add --include-self to really do it. Nothing was sent.",
                    sanitize(&r.host.label()),
                    sanitize(local.hostname())
                );
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
    }

    // 3. Pre-flight echo.
    let mut identities: HashMap<String, BootIdentity> = HashMap::new();
    let mut to_send = Vec::new();
    if plan.skip_busy || plan.wait.is_some() {
        for r in fanout
            .run(&candidates, |_| echo_request("pre-flight"), |_| {})
            .await
        {
            match r.reply() {
                Some(Reply::Echo { health, .. }) => {
                    let users = health.logged_in_users.unwrap_or(0);
                    if plan.skip_busy && users > 0 {
                        let reason = format!(
                            "busy: {users} user{} logged in",
                            if users == 1 { "" } else { "s" }
                        );
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
        // Keep the order the targets were given in.
        to_send.sort_by_key(|h| order.get(&h.target.to_string()).copied());
    } else {
        to_send = candidates;
    }

    // 4. Confirmation.
    if ask && !to_send.is_empty() {
        eprint!("{}", describe_plan(plan, &to_send, &finished));
        eprint!("Proceed? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            bail!("aborted: no {name} was sent");
        }
    }

    // 5. Batches, 6. wait.
    let live = Live::new(name, mode, total);
    for r in &finished {
        live.done(r);
    }
    let request = match plan.action {
        PowerAction::Shutdown => Request::Shutdown(plan.params.clone()),
        PowerAction::Restart => Request::Restart(plan.params.clone()),
    };
    let size = plan.batch.unwrap_or(to_send.len()).max(1);
    let batches: Vec<Vec<Host>> = to_send.chunks(size).map(<[Host]>::to_vec).collect();
    let count = batches.len();
    let mut stop_reason: Option<String> = None;
    for (i, batch) in batches.into_iter().enumerate() {
        if let Some(reason) = &stop_reason {
            for host in batch {
                let r = HostResult::new(host, HostOutcome::Skipped(reason.clone()));
                live.done(&r);
                finished.push(r);
            }
            continue;
        }
        if i > 0 && !plan.stagger.is_zero() {
            live.note(&format!(
                "pausing {} before batch {}/{count}",
                human_duration(plan.stagger),
                i + 1
            ));
            tokio::time::sleep(plan.stagger).await;
        }
        if count > 1 {
            let names: Vec<String> = batch.iter().map(Host::label).collect();
            live.note(&format!("batch {}/{count}: {}", i + 1, names.join(", ")));
        }
        let make = |_: &Host| RequestEnvelope::new(new_request_id(), plan.dry_run, request.clone());
        let results = match plan.wait {
            None => fanout.run(&batch, make, |r| live.done(r)).await,
            Some(limit) => {
                let accepted = fanout.run(&batch, make, |_| {}).await;
                let results = wait_for_all(fanout, accepted, &identities, limit, &live).await;
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
        finished.extend(results);
    }
    finished.sort_by_key(|r| order.get(&r.host.target.to_string()).copied());
    live.finish(&finished);
    Ok(finished.iter().all(|r| r.status() != Status::Failed))
}

fn human_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 && d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        human(d.as_secs())
    }
}

/// What is about to happen, for the confirmation prompt.
fn describe_plan(plan: &PowerPlan, to_send: &[Host], skipped: &[HostResult]) -> String {
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

/// Waits, for each accepted restart, until the host is back with a new boot identity.
async fn wait_for_all(
    fanout: &FanOut,
    accepted: Vec<HostResult>,
    identities: &HashMap<String, BootIdentity>,
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
