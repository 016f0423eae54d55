//! Routing one decoded frame to its command, and remembering power replies so a retried
//! request is answered from memory instead of being executed twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lightsout_pki::Identity;
use lightsout_protocol::{ErrorKind, Outcome, Request, RequestEnvelope, Response};
use tracing::{info, warn};

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

/// Decodes `body` and carries out the request. Returns the reply and, for an accepted power
/// action, the execution to start once the reply is on its way.
///
/// Never fails: a bad frame becomes an error reply and the connection stays usable.
pub async fn handle(
    shared: &Shared,
    caller: &Caller,
    body: &[u8],
) -> (Response, Option<Execution>) {
    let started = Instant::now();
    let envelope = match RequestEnvelope::decode(body) {
        Ok(envelope) => envelope,
        Err(e) => {
            warn!(error = %e, kind = %e.kind(), "refused undecodable request");
            return (
                Response::error(e.id().map(str::to_owned), e.kind(), e.to_string()),
                None,
            );
        }
    };
    let id = envelope.id.clone();
    let kind = envelope.request.kind();
    let dry_run = envelope.dry_run;
    let is_power = !matches!(envelope.request, Request::Echo { .. });
    let key = (caller.identity.fingerprint.clone(), id.clone());

    // Checking the memory and claiming the id is one step: a duplicate arriving while the
    // original is still being carried out (on another connection) must not run it again.
    let claim = if is_power {
        match shared.replies.claim(key) {
            Claim::Answered(previous) => {
                info!(request_id = %id, kind, "duplicate request id: answering from memory, not executing again");
                return (previous, None);
            }
            Claim::InProgress => {
                warn!(request_id = %id, kind, "duplicate request id while the original is in progress");
                return (in_progress(&id), None);
            }
            Claim::New(claim) => Some(claim),
        }
    } else {
        None
    };

    let (response, execution) = match envelope.request {
        Request::Echo { payload } => (cmd::echo::run(shared, &id, payload), None),
        Request::Shutdown(params) => cmd::shutdown::run(shared, caller, &id, &params, dry_run),
        Request::Restart(params) => cmd::restart::run(shared, caller, &id, &params, dry_run),
        Request::Cancel => (cmd::cancel::run(shared, caller, &id, dry_run).await, None),
    };
    if let Some(claim) = claim {
        claim.finish(response.clone());
    }
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match &response.outcome {
        Outcome::Ok(_) => info!(request_id = %id, kind, dry_run, elapsed_us, "request ok"),
        Outcome::Error(e) => {
            warn!(request_id = %id, kind, dry_run, error_kind = %e.kind, error = %e.message, "request refused")
        }
    }
    (response, execution)
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
            let mut inner = self.replies.lock();
            inner.in_progress.remove(&key);
            drop(inner);
            self.replies.insert(key, response);
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

    /// The reply remembered for `key`, if still within the window.
    pub fn get(&self, key: &ReplyKey) -> Option<Response> {
        let mut inner = self.lock();
        inner.expire();
        inner.replies.get(key).cloned()
    }

    /// Remembers `response` for `key`.
    pub fn insert(&self, key: ReplyKey, response: Response) {
        let mut inner = self.lock();
        inner.expire();
        while inner.order.len() >= REPLY_CAPACITY {
            if let Some((_, old)) = inner.order.pop_front() {
                inner.replies.remove(&old);
            }
        }
        if inner.replies.insert(key.clone(), response).is_none() {
            inner.order.push_back((Instant::now(), key));
        }
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
