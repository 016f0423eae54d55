//! Routing one decoded frame to its command, and remembering power replies so a retried
//! request is answered from memory instead of being executed twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lightsout_pki::Identity;
use lightsout_protocol::{ErrorKind, Outcome, Request, RequestEnvelope, Response};
use tracing::{error, info, warn};

use crate::audit::{AuditEntry, now_rfc3339};

use crate::cmd;
use crate::power::Execution;
use crate::server::Shared;

/// Who sent a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Network peer.
    pub peer: SocketAddr,
    /// Verified certificate identity.
    pub identity: Identity,
}

/// Decodes `body`, checks the policy, carries out the request and audits it. Returns the
/// reply and, for an accepted power action, the execution to start once the reply is on its
/// way.
///
/// Never fails: a bad frame or a refusal becomes an error reply and the connection stays
/// usable.
pub async fn handle(
    shared: &Shared,
    caller: &Caller,
    body: &[u8],
) -> (Response, Option<Execution>) {
    let started = Instant::now();
    let mut audit = AuditEntry {
        ts: now_rfc3339(),
        event: "request".into(),
        request_id: None,
        peer: caller.peer.to_string(),
        identity: Some(caller.identity.name.clone()),
        fingerprint: Some(caller.identity.fingerprint.clone()),
        role: caller.identity.role.clone(),
        kind: None,
        args: None,
        dry_run: shared.config.dry_run,
        decision: "refused".into(),
        reason: None,
        outcome: String::new(),
        duration_us: 0,
    };
    let envelope = match RequestEnvelope::decode(body) {
        Ok(envelope) => envelope,
        Err(e) => {
            warn!(error = %e, kind = %e.kind(), "refused undecodable request");
            let response = Response::error(e.id().map(str::to_owned), e.kind(), e.to_string());
            audit.request_id = e.id().map(str::to_owned);
            audit.reason = Some(e.to_string());
            finish(shared, audit, &response, started);
            return (response, None);
        }
    };
    let id = envelope.id.clone();
    let kind = envelope.request.kind();
    let dry_run = envelope.dry_run;
    audit.request_id = Some(id.clone());
    audit.kind = Some(kind.to_owned());
    audit.args = serde_json::to_value(&envelope.request).ok();
    // The agent's dry-run mode rehearses what takes machines down; wake is not affected.
    audit.dry_run = dry_run || (shared.config.dry_run && kind != "wake");

    if let Err(reason) = shared
        .config
        .access
        .current()
        .policy
        .authorize(&caller.identity, kind)
    {
        warn!(request_id = %id, kind, %reason, "request not allowed");
        let response = Response::error(Some(id), ErrorKind::NotAllowed, reason.clone());
        audit.reason = Some(reason);
        finish(shared, audit, &response, started);
        return (response, None);
    }
    audit.decision = "allowed".into();

    let is_power = !matches!(envelope.request, Request::Echo { .. });
    let key = (caller.identity.fingerprint.clone(), id.clone());

    // Checking the memory and claiming the id is one step: a duplicate arriving while the
    // original is still being carried out (on another connection) must not run it again.
    let claim = if is_power {
        match shared.replies.claim(key) {
            Claim::Answered(previous) => {
                info!(request_id = %id, kind, "duplicate request id: answering from memory, not executing again");
                audit.reason = Some(
                    "duplicate request id: original reply returned, not executed again".into(),
                );
                finish(shared, audit, &previous, started);
                return (previous, None);
            }
            Claim::InProgress => {
                warn!(request_id = %id, kind, "duplicate request id while the original is in progress");
                let response = in_progress(&id);
                audit.reason =
                    Some("duplicate request id while the original is in progress".into());
                finish(shared, audit, &response, started);
                return (response, None);
            }
            Claim::New(claim) => Some(claim),
        }
    } else {
        None
    };

    // Fail closed: an accepted power action's audit line is written and synced before the
    // action is recorded as pending (`PowerController::schedule` calls this at that point).
    let mut audit_failure: Option<String> = None;
    let mut record = || -> Result<(), String> {
        let Some(log) = &shared.config.audit else {
            return Ok(());
        };
        let mut line = audit.clone();
        line.outcome = "ok".into();
        line.duration_us = micros(started);
        log.write(&line, true).map_err(|e| {
            let reason = format!("{}: {e}", log.path().display());
            audit_failure = Some(reason.clone());
            reason
        })
    };
    let (response, execution) = match envelope.request {
        Request::Echo { payload } => (cmd::echo::run(shared, &id, payload), None),
        Request::Shutdown(params) => {
            cmd::shutdown::run(shared, caller, &id, &params, dry_run, &mut record)
        }
        Request::Restart(params) => {
            cmd::restart::run(shared, caller, &id, &params, dry_run, &mut record)
        }
        Request::Cancel => (cmd::cancel::run(shared, caller, &id, dry_run).await, None),
        Request::Wake(params) => (
            cmd::wake::run(&id, &params, dry_run, &shared.wake_budget),
            None,
        ),
    };

    // An accepted action's line is already on disk; everything else is written now.
    if execution.is_none() {
        if let Some(e) = audit_failure {
            error!(request_id = %id, kind, error = %e, "audit log cannot be written: power action refused");
            audit.decision = "refused".into();
            audit.reason = Some(format!("audit log cannot be written: {e}"));
        }
        finish(shared, audit, &response, started);
    }
    if let Some(claim) = claim {
        claim.finish(response.clone());
    }
    let elapsed_us = micros(started);
    match &response.outcome {
        Outcome::Ok(_) => info!(request_id = %id, kind, dry_run, elapsed_us, "request ok"),
        Outcome::Error(e) => {
            warn!(request_id = %id, kind, dry_run, error_kind = %e.kind, error = %e.message, "request refused")
        }
    }
    (response, execution)
}

fn micros(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Completes and writes a best-effort audit line for `response`.
fn finish(shared: &Shared, mut audit: AuditEntry, response: &Response, started: Instant) {
    let Some(log) = &shared.config.audit else {
        return;
    };
    audit.outcome = match &response.outcome {
        Outcome::Ok(_) => "ok".into(),
        Outcome::Error(e) => {
            if audit.reason.is_none() {
                audit.reason = Some(e.message.clone());
            }
            e.kind.as_str().into()
        }
    };
    audit.duration_us = micros(started);
    log.write_best_effort(&audit);
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

/// How long a power reply is remembered (a controller retry comes within seconds; a window
/// of minutes covers a flaky network with room to spare).
const REPLY_WINDOW: Duration = Duration::from_secs(600);
/// Most replies remembered; bounds memory whatever the request rate.
const REPLY_CAPACITY: usize = 4096;

/// Replies to recent power requests, keyed by (caller fingerprint, request id).
#[derive(Debug, Default)]
pub struct RecentReplies {
    inner: Mutex<RecentInner>,
}

type ReplyKey = (String, String);

#[derive(Debug, Default)]
struct RecentInner {
    replies: HashMap<ReplyKey, Response>,
    order: VecDeque<(Instant, ReplyKey)>,
    /// Requests being carried out now. At most one per connection, so bounded by the
    /// connection limit.
    in_progress: HashSet<ReplyKey>,
}

/// What [`RecentReplies::claim`] found.
#[derive(Debug)]
pub enum Claim<'a> {
    /// The request was answered before: this is the reply.
    Answered(Response),
    /// The same request is being carried out right now, on another connection.
    InProgress,
    /// A new request, now marked in progress: carry it out, then [`InProgress::finish`].
    New(InProgress<'a>),
}

/// A request marked in progress. Finishing records its reply; dropping it unfinished (the
/// handler was cancelled) lets a retry carry the request out.
#[derive(Debug)]
#[must_use = "finish the claim with the reply"]
pub struct InProgress<'a> {
    replies: &'a RecentReplies,
    key: Option<ReplyKey>,
}

impl InProgress<'_> {
    /// Remembers `response` as the reply to the claimed request.
    pub fn finish(mut self, response: Response) {
        if let Some(key) = self.key.take() {
            // One lock for both steps: a duplicate arriving in between must find either the
            // request in progress or its reply, never neither (it would run again).
            let mut inner = self.replies.lock();
            inner.in_progress.remove(&key);
            inner.remember(key, response);
        }
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.replies.lock().in_progress.remove(&key);
        }
    }
}

impl RecentReplies {
    /// The reply remembered for `key`; else, unless the same request is in progress, marks
    /// it in progress. One step under one lock, so two duplicates cannot both be new.
    pub fn claim(&self, key: ReplyKey) -> Claim<'_> {
        let mut inner = self.lock();
        inner.expire();
        if let Some(previous) = inner.replies.get(&key) {
            return Claim::Answered(previous.clone());
        }
        if !inner.in_progress.insert(key.clone()) {
            return Claim::InProgress;
        }
        Claim::New(InProgress {
            replies: self,
            key: Some(key),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecentInner> {
        // A panic while holding this lock cannot leave the map inconsistent in a way that
        // matters more than refusing to serve; recover the data.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RecentInner {
    /// Remembers `response` for `key`, forgetting the oldest replies beyond the capacity.
    fn remember(&mut self, key: ReplyKey, response: Response) {
        self.expire();
        while self.order.len() >= REPLY_CAPACITY {
            if let Some((_, old)) = self.order.pop_front() {
                self.replies.remove(&old);
            }
        }
        if self.replies.insert(key.clone(), response).is_none() {
            self.order.push_back((Instant::now(), key));
        }
    }

    fn expire(&mut self) {
        while let Some((at, _)) = self.order.front() {
            if at.elapsed() < REPLY_WINDOW {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.replies.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> ReplyKey {
        ("fingerprint".into(), id.into())
    }

    #[test]
    fn a_claim_is_exclusive_until_finished_or_dropped() {
        let replies = RecentReplies::default();
        let Claim::New(first) = replies.claim(key("a")) else {
            panic!("new id")
        };
        assert!(matches!(replies.claim(key("a")), Claim::InProgress));
        assert!(matches!(replies.claim(key("b")), Claim::New(_)));
        let reply = Response::error(Some("a".into()), ErrorKind::Busy, "x");
        first.finish(reply.clone());
        match replies.claim(key("a")) {
            Claim::Answered(r) => assert_eq!(r, reply),
            other => panic!("{other:?}"),
        }
        // An abandoned claim (handler cancelled) does not block a retry.
        let Claim::New(abandoned) = replies.claim(key("c")) else {
            panic!("new id")
        };
        drop(abandoned);
        assert!(matches!(replies.claim(key("c")), Claim::New(_)));
    }
}
