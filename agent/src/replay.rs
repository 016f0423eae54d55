//! The replay memory: replies to recent power requests, so that a retried request is answered
//! from memory instead of being carried out twice (at-most-once execution).
//!
//! What it promises: for the whole [`WINDOW`], a request id already carried out for a
//! certificate is never carried out again for it, whatever else arrives.
//! - **Per certificate.** Each certificate (fingerprint) has its own memory of at most
//!   [`PER_IDENTITY`] requests. Nothing is ever forgotten early to make room: a full memory
//!   refuses *new* power requests with `busy` until entries age out, so one caller cannot
//!   push another's (or its own) past requests out of memory.
//! - **Only what acts.** Echoes and rehearsals are not remembered (they change nothing, so
//!   running them twice is harmless): they cannot fill the memory.
//! - **Across restarts.** Accepted shutdowns and restarts are also appended, synced, to a
//!   file in the agent's state directory before they are committed (see `crate::request`),
//!   and read back at start-up: a restart retried after the machine came back is answered
//!   from memory, not carried out again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lightsout_protocol::Response;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// How long a reply is remembered (a controller retry comes within seconds; a machine that
/// restarts is back within minutes).
pub const WINDOW: Duration = Duration::from_secs(600);
/// Most requests remembered per certificate within [`WINDOW`]: far beyond what a controller
/// sends one machine in ten minutes (one or two power requests per command).
pub const PER_IDENTITY: usize = 1024;
/// Most requests remembered in all: bounds memory whatever the number of certificates.
pub const TOTAL: usize = 16 * 1024;

/// (caller fingerprint, request id).
pub type ReplyKey = (String, String);

/// Replies to recent power requests, keyed by (caller fingerprint, request id).
#[derive(Debug)]
pub struct ReplayMemory {
    inner: Mutex<Inner>,
    /// Where accepted power actions are kept across restarts; `None` for memory only.
    store: Option<Mutex<Store>>,
}

impl Default for ReplayMemory {
    /// A memory kept in this process only.
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            store: None,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    replies: HashMap<ReplyKey, Response>,
    /// Oldest first: (unix seconds remembered, key).
    order: VecDeque<(u64, ReplyKey)>,
    per_identity: HashMap<String, usize>,
    /// Requests being carried out now. At most one per connection, so bounded by the
    /// connection limit.
    in_progress: HashSet<ReplyKey>,
}

#[derive(Debug)]
struct Store {
    path: PathBuf,
    /// Open for appending; `None` after an error until the next attempt reopens it.
    file: Option<File>,
    /// Why the file could not be loaded at start-up: then nothing is ever appended (power
    /// actions fail closed) rather than risk forgetting what ran before.
    unusable: Option<String>,
}

/// One remembered reply, as a line of the state file.
#[derive(Debug, Serialize, Deserialize)]
struct StoredReply {
    fingerprint: String,
    id: String,
    at: u64,
    response: Response,
}

/// What [`ReplayMemory::claim`] found.
#[derive(Debug)]
pub enum Claim<'a> {
    /// The request was answered before: this is the reply.
    Answered(Response),
    /// The same request is being carried out right now, on another connection.
    InProgress,
    /// The caller's memory (or the agent's) is full: new power requests wait until entries
    /// age out. The number of seconds until the oldest does.
    Full {
        /// Seconds until there is room again.
        retry_after_secs: u64,
    },
    /// A new request, now marked in progress: carry it out, then [`InProgress::finish`].
    New(InProgress<'a>),
}

/// A request marked in progress. Finishing records its reply; dropping it unfinished (the
/// handler was cancelled) lets a retry carry the request out.
#[derive(Debug)]
#[must_use = "finish the claim with the reply"]
pub struct InProgress<'a> {
    memory: &'a ReplayMemory,
    key: Option<ReplyKey>,
}

impl InProgress<'_> {
    /// Makes `response` survive a restart of the agent: appended to the state file and
    /// synced. Called for an accepted shutdown or restart *before* it is committed, so an
    /// action that runs is always remembered.
    ///
    /// # Errors
    /// The state file cannot be written or synced (the action must then be refused).
    pub fn persist(&self, response: &Response) -> std::io::Result<()> {
        let (Some(store), Some((fingerprint, id))) = (&self.memory.store, &self.key) else {
            return Ok(());
        };
        let line = StoredReply {
            fingerprint: fingerprint.clone(),
            id: id.clone(),
            at: now_unix(),
            response: response.clone(),
        };
        lock(store).append(&line)
    }

    /// Remembers `response` as the reply to the claimed request.
    pub fn finish(mut self, response: Response) {
        if let Some(key) = self.key.take() {
            // One lock for both steps: a duplicate arriving in between must find either the
            // request in progress or its reply, never neither (it would run again).
            let mut inner = lock(&self.memory.inner);
            inner.in_progress.remove(&key);
            inner.remember(key, now_unix(), response);
        }
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.memory.inner).in_progress.remove(&key);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent in a way that
    // matters more than refusing to serve; recover the data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ReplayMemory {
    /// A memory kept across restarts in `path`: the replies still inside the window are read
    /// back, and the file is rewritten with only those (synced) before it is appended to.
    /// Damaged lines (a crash mid-append) are skipped with a warning.
    ///
    /// # Errors
    /// The file exists but cannot be read, or cannot be rewritten.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut inner = Inner::default();
        let now = now_unix();
        match File::open(path) {
            Ok(file) => {
                for (n, line) in BufReader::new(file).lines().enumerate() {
                    let line = line?;
                    match serde_json::from_str::<StoredReply>(&line) {
                        Ok(r) if r.at + WINDOW.as_secs() > now => {
                            inner.remember((r.fingerprint, r.id), r.at, r.response);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            warn!(path = %path.display(), line = n + 1, error = %e, "replay memory: damaged line skipped")
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut store = Store {
            path: path.to_path_buf(),
            file: None,
            unusable: None,
        };
        store.rewrite(&inner)?;
        info!(path = %path.display(), remembered = inner.order.len(), "replay memory loaded");
        Ok(Self {
            inner: Mutex::new(inner),
            store: Some(Mutex::new(store)),
        })
    }

    /// A memory whose file at `path` could not be opened (`why`): requests are remembered in
    /// this process, and every [`InProgress::persist`] fails with `why`, so live power
    /// actions are refused (an agent that cannot run them anyway — unprivileged, dry-run —
    /// still starts and serves).
    pub fn unusable(path: &Path, why: &std::io::Error) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            store: Some(Mutex::new(Store {
                path: path.to_path_buf(),
                file: None,
                unusable: Some(why.to_string()),
            })),
        }
    }

    /// The reply remembered for `key`; else, unless the same request is in progress or the
    /// memory is full, marks it in progress. One step under one lock, so two duplicates
    /// cannot both be new.
    pub fn claim(&self, key: ReplyKey) -> Claim<'_> {
        let mut inner = lock(&self.inner);
        let now = now_unix();
        inner.expire(now);
        if let Some(previous) = inner.replies.get(&key) {
            return Claim::Answered(previous.clone());
        }
        if inner.in_progress.contains(&key) {
            return Claim::InProgress;
        }
        let mine = inner.per_identity.get(&key.0).copied().unwrap_or(0)
            + inner.in_progress.iter().filter(|k| k.0 == key.0).count();
        if mine >= PER_IDENTITY || inner.order.len() + inner.in_progress.len() >= TOTAL {
            let oldest = inner
                .order
                .iter()
                .find(|(_, k)| mine < PER_IDENTITY || k.0 == key.0)
                .map_or(now, |(at, _)| *at);
            return Claim::Full {
                retry_after_secs: (oldest + WINDOW.as_secs()).saturating_sub(now).max(1),
            };
        }
        inner.in_progress.insert(key.clone());
        Claim::New(InProgress {
            memory: self,
            key: Some(key),
        })
    }
}

impl Inner {
    fn remember(&mut self, key: ReplyKey, at: u64, response: Response) {
        if self.replies.insert(key.clone(), response).is_none() {
            *self.per_identity.entry(key.0.clone()).or_default() += 1;
            self.order.push_back((at, key));
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some((at, _)) = self.order.front() {
            if at + WINDOW.as_secs() > now {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.replies.remove(&key);
                if let Some(n) = self.per_identity.get_mut(&key.0) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_identity.remove(&key.0);
                    }
                }
            }
        }
    }
}

impl Store {
    fn open_append(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            let mut opts = OpenOptions::new();
            opts.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            self.file = Some(opts.open(&self.path)?);
        }
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("replay memory file not open"))
    }

    fn append(&mut self, reply: &StoredReply) -> std::io::Result<()> {
        if let Some(why) = &self.unusable {
            return Err(std::io::Error::other(format!(
                "{} could not be loaded at start-up ({why}); fix it and restart the agent",
                self.path.display()
            )));
        }
        let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let result = self.open_append().and_then(|file| {
            let before = file.metadata()?.len();
            let written = file.write_all(&line).and_then(|()| file.sync_data());
            if written.is_err() {
                // Leave no fragment for the next line to be glued to.
                let _ = file.set_len(before);
            }
            written
        });
        if result.is_err() {
            self.file = None;
        }
        result
    }

    /// Replaces the file with the remembered replies (written aside, synced, renamed).
    fn rewrite(&mut self, inner: &Inner) -> std::io::Result<()> {
        let aside = self.path.with_extension("jsonl.new");
        {
            let mut opts = OpenOptions::new();
            opts.create(true).write(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut file = opts.open(&aside)?;
            for (at, key) in &inner.order {
                if let Some(response) = inner.replies.get(key) {
                    let line = StoredReply {
                        fingerprint: key.0.clone(),
                        id: key.1.clone(),
                        at: *at,
                        response: response.clone(),
                    };
                    serde_json::to_writer(&mut file, &line).map_err(std::io::Error::other)?;
                    file.write_all(b"\n")?;
                }
            }
            file.sync_all()?;
        }
        std::fs::rename(&aside, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // The rename itself must survive a crash.
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        self.file = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightsout_protocol::ErrorKind;

    fn key(who: &str, id: &str) -> ReplyKey {
        (who.into(), id.into())
    }

    fn reply(id: &str) -> Response {
        Response::error(Some(id.into()), ErrorKind::Busy, "x")
    }

    #[test]
    fn a_claim_is_exclusive_until_finished_or_dropped() {
        let memory = ReplayMemory::default();
        let Claim::New(first) = memory.claim(key("f", "a")) else {
            panic!("new id")
        };
        assert!(matches!(memory.claim(key("f", "a")), Claim::InProgress));
        assert!(matches!(memory.claim(key("f", "b")), Claim::New(_)));
        first.finish(reply("a"));
        match memory.claim(key("f", "a")) {
            Claim::Answered(r) => assert_eq!(r, reply("a")),
            other => panic!("{other:?}"),
        }
        // An abandoned claim (handler cancelled) does not block a retry.
        let Claim::New(abandoned) = memory.claim(key("f", "c")) else {
            panic!("new id")
        };
        drop(abandoned);
        assert!(matches!(memory.claim(key("f", "c")), Claim::New(_)));
    }

    #[test]
    fn a_full_memory_refuses_new_requests_and_forgets_nothing() {
        let memory = ReplayMemory::default();
        for n in 0..PER_IDENTITY {
            let id = format!("flood-{n}");
            let Claim::New(c) = memory.claim(key("mallory", &id)) else {
                panic!("{id}")
            };
            c.finish(reply(&id));
        }
        assert!(matches!(
            memory.claim(key("mallory", "one-more")),
            Claim::Full { retry_after_secs } if retry_after_secs > 0
        ));
        // The first request is still remembered: never carried out again.
        assert!(matches!(
            memory.claim(key("mallory", "flood-0")),
            Claim::Answered(_)
        ));
        // Another certificate is not affected.
        assert!(matches!(memory.claim(key("alice", "a")), Claim::New(_)));
    }

    #[test]
    fn persisted_replies_survive_a_restart_and_damaged_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.jsonl");
        {
            let memory = ReplayMemory::open(&path).unwrap();
            let Claim::New(c) = memory.claim(key("f", "restart-1")) else {
                panic!()
            };
            c.persist(&reply("restart-1")).unwrap();
            c.finish(reply("restart-1"));
        }
        // A crash mid-append left half a line.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"fingerprint":"f","id":"tor"#).unwrap();
        drop(file);
        let memory = ReplayMemory::open(&path).unwrap();
        assert!(matches!(
            memory.claim(key("f", "restart-1")),
            Claim::Answered(r) if r == reply("restart-1")
        ));
        // The rewrite dropped the damaged line.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
