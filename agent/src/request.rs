//! One request, from its frame to its action: decode, decide, remember, reserve, audit, hand
//! over, commit, reply, execute — in that order, each step visible in [`handle`] and [`power_path`].
//!
//! A power action (shutdown, restart) takes the longest path, and its order is the point:
//! 1. **decide**: the policy allows this caller this kind of request;
//! 2. **remember**: a request id seen before is answered from the replay memory, never
//!    carried out twice;
//! 3. **reserve**: privilege, limits and the pending slot are checked, and the slot is held;
//! 4. **audit**: the action's line is written and synced — if it cannot be, the reservation is
//!    dropped and the request refused (power actions fail closed);
//! 5. **hand over**: with the logind backend, systemd-logind is given the action with its
//!    exact due time — if it cannot take it, the reservation is dropped and the request
//!    refused (`unavailable`, with an `execution` line saying why): never an "ok" for an
//!    action that will not happen, never a fallback to something earlier;
//! 6. **commit**: the reservation becomes the pending action;
//! 7. **reply**: the controller learns the action was accepted;
//! 8. **execute**: with the command backend, the agent-side timer starts, then the command
//!    runs (with logind there is nothing left to do).
//!
//! A live cancel is audited (synced) before it runs, like a power action, but does not fail
//! closed: cancelling can only keep a machine on, so it runs even when its line cannot be
//! written, and the reply says the line is missing. What the command did is in its
//! `execution` line.
//!
//! Everything else (echo, wake, rehearsed cancels) is decided and remembered the same way,
//! carried out at once, then audited and answered. Nothing here calls back up: data goes down, the reply
//! goes out through the [`Replier`] the caller passes in, so a trigger without a connection
//! can enter at "reserve" with the same guarantees.

use std::future::Future;
use std::time::Instant;

use lightsout_protocol::{
    ErrorKind, Outcome, PowerAction, PowerParams, Reply, Request, RequestEnvelope, RequestKind,
    Response,
};
use tracing::{error, info, warn};

use crate::audit::AuditEntry;
use crate::cmd;
use crate::power::Reserved;
use crate::replay::{Claim, InProgress};
use crate::state::{Caller, Shared};

/// Where a request's reply goes.
pub trait Replier {
    /// Sends `response`. A failure to deliver is the replier's to note; the request's
    /// handling goes on (an accepted action runs even when its reply is lost — see
    /// [`crate::power`]).
    fn reply(&mut self, response: Response) -> impl Future<Output = ()> + Send;
}

/// Handles one frame body from `caller`: every outcome, refusals included, is audited and
/// answered through `replier`.
///
/// Never fails: a bad frame or a refusal becomes an error reply and the connection stays
/// usable.
pub async fn handle(shared: &Shared, caller: &Caller, body: &[u8], replier: &mut impl Replier) {
    let started = Instant::now();
    let mut line = AuditEntry::request(caller.peer, &caller.identity, shared.config.dry_run);

    let envelope = match RequestEnvelope::decode(body) {
        Ok(envelope) => envelope,
        Err(e) => {
            // serde's message quotes what was sent (an unknown kind, a field name): made safe
            // here, once, for the log, the audit line and the reply alike.
            let message = lightsout_protocol::text::sanitize(&e.to_string());
            warn!(error = %message, kind = %e.kind(), "refused undecodable request");
            let response = Response::error(e.id().map(str::to_owned), e.kind(), message.clone());
            line.request_id = e.id().map(str::to_owned);
            line.refuse(message);
            audit_best_effort(shared, line, &response, started);
            return replier.reply(response).await;
        }
    };
    let kind = envelope.request.kind();
    // The agent's dry-run mode rehearses what takes machines down; wake is not affected.
    let rehearsed = envelope.dry_run || (shared.config.dry_run && kind != RequestKind::Wake);
    line.describe(&envelope, rehearsed);

    // 1. Decide.
    if let Err(denied) = shared
        .config
        .access
        .current()
        .policy
        .authorize(&caller.identity, kind)
    {
        warn!(request_id = %envelope.id, %kind, reason = %denied, "request not allowed");
        let response = Response::error(
            Some(envelope.id.clone()),
            ErrorKind::NotAllowed,
            denied.to_string(),
        );
        line.refuse(denied.to_string());
        audit_best_effort(shared, line, &response, started);
        return replier.reply(response).await;
    }
    line.allow();

    let RequestEnvelope {
        id,
        dry_run,
        request,
        ..
    } = envelope;
    match request {
        Request::Shutdown(params) => {
            let request = PowerRequest::new(&id, PowerAction::Shutdown, &params, dry_run);
            power_path(shared, caller, request, line, started, replier).await;
        }
        Request::Restart(params) => {
            let request = PowerRequest::new(&id, PowerAction::Restart, &params, dry_run);
            power_path(shared, caller, request, line, started, replier).await;
        }
        Request::Echo { payload } => {
            let response = cmd::echo::run(shared, &id, payload).await;
            conclude(shared, line, response, started, replier).await;
        }
        Request::Cancel => {
            let Memory::Proceed(claim) =
                remember(shared, caller, &id, &line, started, replier).await
            else {
                return;
            };
            cancel_path(shared, &id, dry_run, claim, line, started, replier).await;
        }
        Request::Wake(params) => {
            let Memory::Proceed(claim) =
                remember(shared, caller, &id, &line, started, replier).await
            else {
                return;
            };
            let response = cmd::wake::run(
                &id,
                &params,
                dry_run,
                &shared.config.wake_ports,
                &shared.wake_budget,
            );
            finish(claim, &response);
            conclude(shared, line, response, started, replier).await;
        }
    }
}

/// Steps 4 to 7 for a cancel: a live cancel's line is written and synced before it runs; if it
/// cannot be, the cancel runs all the same (it can only keep a machine on) and the reply says
/// the audit line is missing. Rehearsals and unprivileged agents (which refuse it) are
/// audited after, like any request that changes nothing.
async fn cancel_path(
    shared: &Shared,
    id: &str,
    dry_run: bool,
    claim: Option<InProgress<'_>>,
    mut line: AuditEntry,
    started: Instant,
    replier: &mut impl Replier,
) {
    if line.dry_run || !shared.config.privileged {
        let response = cmd::cancel::run(shared, id, dry_run, None).await;
        finish(claim, &response);
        return conclude(shared, line, response, started, replier).await;
    }
    line.accept(started);
    let missing = durable(shared, &line).err();
    if let Some(reason) = &missing {
        error!(request_id = %id, error = %reason, "audit log cannot be written: cancelling all the same");
    }
    let response = cmd::cancel::run(shared, id, dry_run, missing.as_deref()).await;
    finish(claim, &response);
    log_result(id, RequestKind::Cancel, line.dry_run, &response, started);
    replier.reply(response).await;
}

/// A power request that was not accepted, and whether its audit line is still to be
/// written.
enum Refused {
    /// Refused before its line was written: the line is written with the refusal.
    Before(Response),
    /// Refused after its line and the hand-over's `execution` line were written.
    After(Response),
}

/// A decoded shutdown or restart.
#[derive(Debug, Clone, Copy)]
struct PowerRequest<'a> {
    id: &'a str,
    action: PowerAction,
    params: &'a PowerParams,
    /// The request's own rehearsal flag (the agent's dry-run mode is applied by `reserve`).
    dry_run: bool,
}

impl<'a> PowerRequest<'a> {
    fn new(id: &'a str, action: PowerAction, params: &'a PowerParams, dry_run: bool) -> Self {
        Self {
            id,
            action,
            params,
            dry_run,
        }
    }
}

/// Steps 2 to 7 for a shutdown or restart (see the module documentation).
async fn power_path(
    shared: &Shared,
    caller: &Caller,
    request: PowerRequest<'_>,
    mut line: AuditEntry,
    started: Instant,
    replier: &mut impl Replier,
) {
    let PowerRequest {
        id,
        action,
        params,
        dry_run,
    } = request;
    let kind = RequestKind::from(action);
    // 2. Remember.
    let Memory::Proceed(claim) = remember(shared, caller, id, &line, started, replier).await else {
        return;
    };
    // 3 to 6 hold the pending slot: no other power request gets between them.
    let accepted = 'decided: {
        // 3. Reserve.
        let mut reservation = match shared
            .power
            .reserve(id, &caller.identity.name, action, params, dry_run)
            .await
        {
            Err(body) => {
                break 'decided Err(Refused::Before(crate::power::error_response(id, body)));
            }
            Ok(Reserved::Rehearsal(reply)) => {
                simulate_reboot_after(shared, &reply);
                break 'decided Err(Refused::Before(Response::ok(
                    id,
                    power_reply(action, reply),
                )));
            }
            Ok(Reserved::Live(reservation)) => reservation,
        };
        // 4. Audit, synced, and remember across restarts, synced. The line's outcome is "ok":
        // the action is accepted once both are written.
        line.accept(started);
        let accepted = Response::ok(id, power_reply(action, reservation.reply().clone()));
        let written = durable(shared, &line).and_then(|()| match &claim {
            Some(claim) => claim
                .persist(&accepted)
                .map_err(|e| format!("replay memory: {e}")),
            None => Ok(()),
        });
        if let Err(reason) = written {
            drop(reservation);
            error!(request_id = %id, %kind, error = %reason, "audit log cannot be written: power action refused");
            line.refuse(format!("audit log cannot be written: {reason}"));
            break 'decided Err(Refused::Before(crate::power::error_response(
                id,
                lightsout_protocol::ErrorBody {
                    kind: ErrorKind::Internal,
                    message: format!(
                        "the audit log cannot be written ({reason}); power actions fail closed"
                    ),
                    pending: None,
                },
            )));
        }
        // 5. Hand over (logind backend: the system holds it from here on; its `execution`
        // line is written either way). A refusal replaces the remembered reply, so that a
        // retry after a restart gets the same refusal.
        if let Err(body) = reservation.hand_over().await {
            drop(reservation);
            let refusal = crate::power::error_response(id, body);
            if let Some(Err(e)) = claim.as_ref().map(|c| c.persist(&refusal)) {
                warn!(request_id = %id, error = %e, "cannot remember the refusal across restarts");
            }
            break 'decided Err(Refused::After(refusal));
        }
        // 6. Commit.
        Ok(reservation.commit())
    };
    let (response, execution) = match accepted {
        Ok((reply, execution)) => (
            Response::ok(id, power_reply(action, reply)),
            Some(execution),
        ),
        Err(Refused::Before(response)) => {
            // Not accepted: its line is written now (best effort).
            audit_best_effort(shared, line, &response, started);
            (response, None)
        }
        // Its request line and its `execution` line (the failure) are written.
        Err(Refused::After(response)) => (response, None),
    };
    finish(claim, &response);
    log_result(id, kind, dry_run, &response, started);
    // 7. Reply.
    replier.reply(response).await;
    // 8. Execute (command backend: the agent-side timer, then the command).
    if let Some(execution) = execution {
        execution.start(&shared.power);
    }
}

fn power_reply(action: PowerAction, reply: lightsout_protocol::PowerReply) -> Reply {
    match action {
        PowerAction::Shutdown => Reply::Shutdown(reply),
        PowerAction::Restart => Reply::Restart(reply),
    }
}

/// Tests and demos only: a dry-run agent may pretend to reboot after a rehearsed restart (see
/// [`crate::health::simulate`]). Never with a real execution: only rehearsals get here.
fn simulate_reboot_after(shared: &Shared, reply: &lightsout_protocol::PowerReply) {
    if let (PowerAction::Restart, Some(downtime), true) = (
        reply.action,
        shared.config.testing.simulate_reboot,
        reply.dry_run && shared.config.dry_run,
    ) {
        shared
            .health
            .simulated
            .schedule(std::time::Duration::from_secs(reply.delay_secs), downtime);
    }
}

/// What step 2 decided.
enum Memory<'a> {
    /// Carry the request out, then finish the claim with its reply. No claim for a
    /// rehearsal: it changes nothing, so it is not remembered (and cannot fill the memory).
    Proceed(Option<InProgress<'a>>),
    /// Answered (from memory, or refused because the memory is full): nothing more to do.
    Done,
}

/// Step 2: claims the request in the replay memory, unless `line` says it is a rehearsal.
/// A request seen before (or being carried out on another connection, or over the memory's
/// capacity) is audited and answered here.
async fn remember<'a>(
    shared: &'a Shared,
    caller: &Caller,
    id: &str,
    line: &AuditEntry,
    started: Instant,
    replier: &mut impl Replier,
) -> Memory<'a> {
    if line.dry_run {
        return Memory::Proceed(None);
    }
    let kind = line.kind.map_or("request", RequestKind::as_str);
    let key = (caller.identity.fingerprint.clone(), id.to_owned());
    let (response, reason) = match shared.replay.claim(key) {
        Claim::New(claim) => return Memory::Proceed(Some(claim)),
        Claim::Answered(previous) => {
            info!(request_id = %id, kind, "duplicate request id: answering from memory, not executing again");
            (
                previous,
                "duplicate request id: original reply returned, not executed again".to_owned(),
            )
        }
        Claim::InProgress => {
            warn!(request_id = %id, kind, "duplicate request id while the original is in progress");
            (
                in_progress(id),
                "duplicate request id while the original is in progress".to_owned(),
            )
        }
        Claim::Full { retry_after_secs } => {
            warn!(request_id = %id, kind, retry_after_secs, "replay memory full for this certificate: refused");
            let message = format!(
                "this agent remembers at most {} requests per certificate for {} minutes, so that none runs twice, and yours is full; this request was not carried out — send it again in {retry_after_secs}s",
                crate::replay::PER_IDENTITY,
                crate::replay::WINDOW.as_secs() / 60
            );
            (
                Response::error(Some(id.to_owned()), ErrorKind::Busy, message.clone()),
                message,
            )
        }
    };
    let mut line = line.clone();
    line.refuse(reason);
    audit_best_effort(shared, line, &response, started);
    replier.reply(response).await;
    Memory::Done
}

/// Remembers `response` as the reply to a claimed request.
fn finish(claim: Option<InProgress<'_>>, response: &Response) {
    if let Some(claim) = claim {
        claim.finish(response.clone());
    }
}

/// Audits (best effort), logs and sends the reply of a request that has nothing left to run.
async fn conclude(
    shared: &Shared,
    line: AuditEntry,
    response: Response,
    started: Instant,
    replier: &mut impl Replier,
) {
    let (id, kind, dry_run) = (line.request_id.clone(), line.kind, line.dry_run);
    audit_best_effort(shared, line, &response, started);
    if let (Some(id), Some(kind)) = (id, kind) {
        log_result(&id, kind, dry_run, &response, started);
    }
    replier.reply(response).await;
}

fn log_result(id: &str, kind: RequestKind, dry_run: bool, response: &Response, started: Instant) {
    let elapsed_us = crate::audit::micros_since(started);
    match &response.outcome {
        Outcome::Ok(_) => info!(request_id = %id, %kind, dry_run, elapsed_us, "request ok"),
        Outcome::Error(e) => {
            warn!(request_id = %id, %kind, dry_run, error_kind = %e.kind, error = %e.message, "request refused")
        }
    }
}

/// Writes and syncs `line`; the reason it could not be, naming the file.
fn durable(shared: &Shared, line: &AuditEntry) -> Result<(), String> {
    let Some(log) = &shared.config.audit else {
        return Ok(());
    };
    log.write(line, true)
        .map_err(|e| format!("{}: {e}", log.path().display()))
}

/// Completes `line` with the outcome of `response` and writes it without waiting for the
/// disk; a failure is logged, not returned (it must not block the request it describes).
fn audit_best_effort(shared: &Shared, mut line: AuditEntry, response: &Response, started: Instant) {
    let Some(log) = &shared.config.audit else {
        return;
    };
    line.end(response, started);
    log.write_best_effort(&line);
}

/// The answer to a duplicate of a request that is still being carried out.
fn in_progress(id: &str) -> Response {
    Response::error(
        Some(id.to_owned()),
        ErrorKind::Busy,
        format!(
            "request {id} is already being carried out (sent twice at once?); \
             send it again for its outcome"
        ),
    )
}
