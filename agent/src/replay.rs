//! The replay memory: replies to recent power requests, keyed by the caller's certificate and
//! the request id, so that a retried request is answered from memory instead of being carried
//! out twice (at-most-once execution).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[cfg(test)]
use lightsout_protocol::ErrorKind;
use lightsout_protocol::Response;

/// How long a power reply is remembered (a controller retry comes within seconds; a window
/// of minutes covers a flaky network with room to spare).
const REPLY_WINDOW: Duration = Duration::from_secs(600);
/// Most replies remembered; bounds memory whatever the request rate.
const REPLY_CAPACITY: usize = 4096;

/// Replies to recent power requests, keyed by (caller fingerprint, request id).
#[derive(Debug, Default)]
pub struct ReplayMemory {
    inner: Mutex<Inner>,
}

pub type ReplyKey = (String, String);

#[derive(Debug, Default)]
struct Inner {
    replies: HashMap<ReplyKey, Response>,
    order: VecDeque<(Instant, ReplyKey)>,
    /// Requests being carried out now. At most one per connection, so bounded by the
    /// connection limit.
    in_progress: HashSet<ReplyKey>,
}

/// What [`ReplayMemory::claim`] found.
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
    replies: &'a ReplayMemory,
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

impl ReplayMemory {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent in a way that
        // matters more than refusing to serve; recover the data.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
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
        let replies = ReplayMemory::default();
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
