//! The audit log: one JSON line per request, and per refused handshake.
//!
//! Power actions fail closed: the line of an accepted shutdown or restart is written and
//! fsynced *before* the action runs, and if it cannot be written the action is refused. Other
//! lines (echo, refusals, rehearsals) are written without fsync and a failure to write them
//! is logged but refuses nothing — a full disk must not stop health checks. A live cancel's
//! line is written and synced before it runs too, but a cancel is never refused for it (it
//! can only keep a machine on): its reply says the line is missing. Every command the agent
//! runs gets an `execution` line with its outcome.
//!
//! Handshake rejections come from the network, not from an authenticated caller, and
//! connections refused over a connection cap come in floods by nature, so both are
//! rate-limited (each in its own window): a flood cannot fill the disk, and what is not
//! written is counted in a summary line.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use lightsout_pki::Identity;
use lightsout_protocol::{ErrorKind, Outcome, RequestEnvelope, RequestKind, Response};
use serde::{Deserialize, Serialize};
use tracing::warn;

/// Handshake rejections written per window; the rest are counted and summarised.
const REJECTIONS_PER_WINDOW: u32 = 20;
const REJECTION_WINDOW: Duration = Duration::from_secs(10);

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339 time, UTC.
    pub ts: String,
    /// What happened.
    pub event: Event,
    /// Request id (requests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Network peer.
    pub peer: String,
    /// Certificate common name (requests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Certificate SHA-256 fingerprint (requests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Role from the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Request kind, when the request could be decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RequestKind>,
    /// The request's arguments as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// The command line run (executions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// The command's exit status, when it exited (executions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The request's dry-run flag, or the agent's dry-run mode.
    pub dry_run: bool,
    /// Whether the request was let through.
    pub decision: Decision,
    /// Why it was refused; for an execution, why it failed or what became of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `ok`, or the error kind of the reply; for an execution `ok` or `failed`.
    pub outcome: AuditOutcome,
    /// Time spent handling the request, microseconds.
    pub duration_us: u64,
}

/// What an audit line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A request from an authenticated caller.
    Request,
    /// A refused TLS handshake (no identity).
    Handshake,
    /// Requests of one connection refused by its rate limit, counted in the reason: one
    /// line per connection at least once a minute and at its end, not one per request.
    RateLimit,
    /// An authenticated connection refused over a connection cap (per address, per
    /// certificate, or the slots reserved for other roles).
    Connection,
    /// A command the agent ran for an accepted request (shutdown, restart, cancel), and how
    /// it ended; or, at start-up, an accepted action that took the machine down.
    Execution,
}

/// Whether the agent let a request through (policy, replay memory, limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Carried out (or rehearsed).
    Allowed,
    /// Not carried out.
    Refused,
}

/// How a request ended: `ok`, the error kind of its reply, or `tls` for a refused handshake.
/// Written as one lower-case word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    /// The request succeeded (a power action: it was accepted).
    Ok,
    /// The reply was an error of this kind.
    Error(ErrorKind),
    /// The TLS handshake failed.
    Tls,
    /// An execution failed: the command could not run, exited non-zero or timed out.
    Failed,
}

impl AuditOutcome {
    /// The outcome of a request answered with `response`.
    pub fn of(response: &Response) -> Self {
        match &response.outcome {
            Outcome::Ok(_) => AuditOutcome::Ok,
            Outcome::Error(e) => AuditOutcome::Error(e.kind),
        }
    }

    /// The word written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Error(kind) => kind.as_str(),
            AuditOutcome::Tls => "tls",
            AuditOutcome::Failed => "failed",
        }
    }
}

impl std::fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AuditOutcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuditOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = String::deserialize(d)?;
        Ok(match word.as_str() {
            "ok" => AuditOutcome::Ok,
            "tls" => AuditOutcome::Tls,
            "failed" => AuditOutcome::Failed,
            // Unknown words read as ErrorKind::Unknown: an older reader keeps reading.
            other => AuditOutcome::Error(
                serde_json::from_value(serde_json::Value::String(other.to_owned()))
                    .unwrap_or(ErrorKind::Unknown),
            ),
        })
    }
}

impl AuditEntry {
    /// The line of a request from `caller`, refused until [`allowed`](Self::allow); the
    /// request's own fields are filled in by [`describe`](Self::describe) once it is decoded.
    pub fn request(peer: SocketAddr, who: &Identity, agent_dry_run: bool) -> Self {
        Self {
            ts: now_rfc3339(),
            event: Event::Request,
            request_id: None,
            peer: peer.to_string(),
            identity: Some(who.name.clone()),
            fingerprint: Some(who.fingerprint.clone()),
            role: who.role.clone(),
            kind: None,
            args: None,
            argv: None,
            exit_code: None,
            dry_run: agent_dry_run,
            decision: Decision::Refused,
            reason: None,
            outcome: AuditOutcome::Ok,
            duration_us: 0,
        }
    }

    /// The line of a command run for request `request_id` (of `kind`): `argv`, and its exit
    /// status, or why it failed (`error`: could not run, non-zero exit, timeout).
    pub fn execution(
        request_id: &str,
        kind: RequestKind,
        argv: &[String],
        exit_code: Option<i32>,
        error: Option<String>,
    ) -> Self {
        Self {
            ts: now_rfc3339(),
            event: Event::Execution,
            request_id: Some(request_id.to_owned()),
            peer: "local".into(),
            identity: None,
            fingerprint: None,
            role: None,
            kind: Some(kind),
            args: None,
            argv: Some(argv.to_vec()),
            exit_code,
            dry_run: false,
            decision: Decision::Allowed,
            outcome: if error.is_none() {
                AuditOutcome::Ok
            } else {
                AuditOutcome::Failed
            },
            reason: error,
            duration_us: 0,
        }
    }

    /// The line written at start-up when the boot id changed since request `request_id` (of
    /// `kind`) was accepted: that action took the machine down.
    pub fn took_down(request_id: &str, kind: RequestKind, from: &str, to: &str) -> Self {
        let mut line = Self::execution(request_id, kind, &[], None, None);
        line.argv = None;
        line.reason = Some(format!(
            "request {request_id} took the machine down (boot id {from} → {to})"
        ));
        line
    }

    /// Fills in what `envelope` asks. `rehearsed` is whether it is a rehearsal (its own flag,
    /// or the agent's dry-run mode for kinds that mode covers).
    pub fn describe(&mut self, envelope: &RequestEnvelope, rehearsed: bool) {
        self.request_id = Some(envelope.id.clone());
        self.kind = Some(envelope.request.kind());
        self.args = serde_json::to_value(&envelope.request).ok();
        self.dry_run = rehearsed;
    }

    /// Marks the request as let through.
    pub fn allow(&mut self) {
        self.decision = Decision::Allowed;
    }

    /// Marks the request as refused for `reason`.
    pub fn refuse(&mut self, reason: impl Into<String>) {
        self.decision = Decision::Refused;
        self.reason = Some(reason.into());
    }

    /// Records that the request was accepted (outcome `ok`) after the time since `started`.
    pub fn accept(&mut self, started: Instant) {
        self.outcome = AuditOutcome::Ok;
        self.duration_us = micros_since(started);
    }

    /// Records how the request ended (the reply's error message as the reason when none was
    /// given) and how long it took.
    pub fn end(&mut self, response: &Response, started: Instant) {
        self.outcome = AuditOutcome::of(response);
        if let Outcome::Error(e) = &response.outcome {
            if self.reason.is_none() {
                self.reason = Some(e.message.clone());
            }
        }
        self.duration_us = micros_since(started);
    }
}

/// Microseconds since `started`, saturating.
pub fn micros_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Current time in RFC 3339.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The audit log file, opened lazily and reopened after errors or on reload (log rotation).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<Option<OpenLog>>,
    rejections: Mutex<RejectionWindow>,
    refusals: Mutex<RejectionWindow>,
}

#[derive(Debug)]
struct RejectionWindow {
    started: Instant,
    written: u32,
    suppressed: u32,
}

impl RejectionWindow {
    fn new() -> Mutex<Self> {
        Mutex::new(Self {
            started: Instant::now(),
            written: 0,
            suppressed: 0,
        })
    }

    /// Whether one more line may be written in this window, and how many were suppressed
    /// in the window that just ended (if one ended with suppressed lines).
    fn admit(window: &Mutex<Self>) -> (bool, Option<u32>) {
        let mut w = window.lock().unwrap_or_else(PoisonError::into_inner);
        let mut summary = None;
        if w.started.elapsed() >= REJECTION_WINDOW {
            if w.suppressed > 0 {
                summary = Some(w.suppressed);
            }
            *w = Self {
                started: Instant::now(),
                written: 0,
                suppressed: 0,
            };
        }
        if w.written < REJECTIONS_PER_WINDOW {
            w.written += 1;
            (true, summary)
        } else {
            w.suppressed += 1;
            (false, summary)
        }
    }
}

impl AuditLog {
    /// An audit log at `path` (created on first write, mode 0600).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: Mutex::new(None),
            rejections: RejectionWindow::new(),
            refusals: RejectionWindow::new(),
        }
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the file so the next write reopens it (after log rotation, on SIGHUP).
    pub fn reopen(&self) {
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Opens the file as [`write`](Self::write) would (creating it if missing) and closes it
    /// again: whether lines can be written there at all.
    ///
    /// # Errors
    /// The file cannot be opened for appending (missing or read-only directory, permissions).
    pub fn check_writable(&self) -> std::io::Result<()> {
        open(&self.path).map(drop)
    }

    /// Appends `entry`; with `durable`, also waits until it is on disk. The single writer of
    /// the log.
    ///
    /// A failed append leaves the file as it was: a line torn by a full disk is truncated
    /// away, so the next line does not start in the middle of it (and become unreadable).
    ///
    /// # Errors
    /// The file cannot be opened, written or synced.
    pub fn write(&self, entry: &AuditEntry, durable: bool) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut slot = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let result = (|| {
            if slot.is_none() {
                *slot = Some(open(&self.path)?);
            }
            let log = slot
                .as_mut()
                .ok_or_else(|| std::io::Error::other("audit file not open"))?;
            // The length is tracked rather than asked for (one system call less per line):
            // the agent is the file's only writer, and a reopen (rotation) measures it afresh.
            let before = log.len;
            let appended = log.file.write_all(&line).and_then(|()| {
                if durable {
                    log.file.sync_data()
                } else {
                    Ok(())
                }
            });
            if let Err(e) = appended {
                // Put the file back as it was. A line that could not be synced goes too: the
                // caller treats it as not written (a power action is then refused).
                if let Err(t) = log.file.set_len(before) {
                    warn!(path = %self.path.display(), error = %t, "cannot truncate a failed audit line");
                }
                return Err(e);
            }
            log.len += line.len() as u64;
            Ok(())
        })();
        if result.is_err() {
            // Start afresh next time: the disk may have been freed, the file recreated.
            *slot = None;
        }
        result
    }

    /// Writes `entry`, logging (not returning) a failure. For lines that must not block the
    /// request they describe.
    pub fn write_best_effort(&self, entry: &AuditEntry) {
        if let Err(e) = self.write(entry, false) {
            warn!(path = %self.path.display(), error = %e, "cannot write the audit log");
        }
    }

    /// Records a refused TLS handshake, at most `REJECTIONS_PER_WINDOW` per 10 s; beyond,
    /// rejections are counted and one summary line is written when the window ends.
    /// Returns whether this one was written (callers log at the same rate).
    pub fn handshake_rejected(&self, peer: SocketAddr, reason: &str) -> bool {
        let (write, summary) = RejectionWindow::admit(&self.rejections);
        if let Some(n) = summary {
            warn!(
                suppressed = n,
                "handshake rejections were rate-limited in the last window"
            );
            self.write_best_effort(&handshake_entry(
                peer,
                &format!("{n} further handshake rejections suppressed (rate limit)"),
            ));
        }
        if write {
            self.write_best_effort(&handshake_entry(peer, reason));
        }
        write
    }

    /// Records an authenticated connection from `peer` as `who` refused over a connection
    /// cap, at the same rate as handshake rejections (in a window of its own). Returns whether
    /// this one was written (callers log at the same rate).
    pub fn connection_refused(&self, peer: SocketAddr, who: &Identity, reason: &str) -> bool {
        let (write, summary) = RejectionWindow::admit(&self.refusals);
        if let Some(n) = summary {
            warn!(
                suppressed = n,
                "connection refusals were rate-limited in the last window"
            );
            let mut entry = connection_entry(peer, who, "");
            entry.reason = Some(format!(
                "{n} further connection refusals suppressed (rate limit)"
            ));
            entry.identity = None;
            entry.fingerprint = None;
            entry.role = None;
            self.write_best_effort(&entry);
        }
        if write {
            self.write_best_effort(&connection_entry(peer, who, reason));
        }
        write
    }
}

fn connection_entry(peer: SocketAddr, who: &Identity, reason: &str) -> AuditEntry {
    let mut entry = AuditEntry::request(peer, who, false);
    entry.event = Event::Connection;
    entry.reason = Some(reason.to_owned());
    entry.outcome = AuditOutcome::Error(ErrorKind::Busy);
    entry
}

/// Opens the log for appending (created with mode 0600). A file that does not end with a
/// newline (a line torn by a crash) gets one first, so that fragment stays a line of its own.
/// The open audit file and its length.
#[derive(Debug)]
struct OpenLog {
    file: File,
    len: u64,
}

fn open(path: &Path) -> std::io::Result<OpenLog> {
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).read(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(path)?;
    let len = file.metadata()?.len();
    #[cfg(unix)]
    if len > 0 {
        let mut last = [0u8];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut last, len - 1)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
            return Ok(OpenLog { file, len: len + 1 });
        }
    }
    Ok(OpenLog { file, len })
}

fn handshake_entry(peer: SocketAddr, reason: &str) -> AuditEntry {
    AuditEntry {
        ts: now_rfc3339(),
        event: Event::Handshake,
        request_id: None,
        peer: peer.to_string(),
        identity: None,
        fingerprint: None,
        role: None,
        kind: None,
        args: None,
        argv: None,
        exit_code: None,
        dry_run: false,
        decision: Decision::Refused,
        reason: Some(reason.to_owned()),
        outcome: AuditOutcome::Tls,
        duration_us: 0,
    }
}

/// A line of the audit log that cannot be read (torn by a crash or a full disk, edited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedLine {
    /// Its line number in the file, from 1.
    pub number: usize,
    /// Why it cannot be read.
    pub reason: String,
}

impl std::fmt::Display for DamagedLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} is damaged ({})", self.number, self.reason)
    }
}

/// The last `n` lines of the audit log at `path`, oldest first: entries, and damaged lines in
/// place (so the reader can report them and go on; one bad line never hides the others).
///
/// # Errors
/// The file cannot be read.
pub fn tail(path: &Path, n: usize) -> std::io::Result<Vec<Result<AuditEntry, DamagedLine>>> {
    // Bytes, not a string: a line torn inside a multi-byte character is not UTF-8, and must
    // not make the whole file unreadable.
    let bytes = std::fs::read(path)?;
    let lines: Vec<(usize, &[u8])> = bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.trim_ascii().is_empty())
        .map(|(i, l)| (i + 1, l))
        .collect();
    let start = lines.len().saturating_sub(n);
    Ok(lines[start..]
        .iter()
        .map(|&(number, l)| {
            serde_json::from_slice(l).map_err(|e| DamagedLine {
                number,
                reason: e.to_string(),
            })
        })
        .collect())
}

/// One entry as a readable line.
pub fn format_entry(e: &AuditEntry) -> String {
    let who = match (&e.identity, &e.role) {
        (Some(name), Some(role)) => format!("{name} ({role})"),
        (Some(name), None) => format!("{name} (no role)"),
        _ => "-".into(),
    };
    let what = match (e.kind, e.event) {
        (Some(kind), _) => kind.as_str(),
        (None, Event::Request) => "request",
        (None, Event::Handshake) => "handshake",
        (None, Event::RateLimit) => "rate_limit",
        (None, Event::Connection) => "connect",
        (None, Event::Execution) => "execution",
    };
    let decision = match (e.event, e.decision) {
        (Event::Execution, _) => "executed",
        (_, Decision::Allowed) => "allowed",
        (_, Decision::Refused) => "refused",
    };
    let argv = e
        .argv
        .as_ref()
        .map(|a| format!(" `{}`", a.join(" ")))
        .unwrap_or_default();
    let exit = e
        .exit_code
        .map(|c| format!(" exit {c}"))
        .unwrap_or_default();
    let dry = if e.dry_run { " [dry-run]" } else { "" };
    let reason = e
        .reason
        .as_deref()
        .map(|r| format!(" — {r}"))
        .unwrap_or_default();
    lightsout_protocol::text::sanitize(&format!(
        "{}  {:<8} {:<9} {:<28} {:<22} {} ({} us){dry}{argv}{exit}{reason}",
        e.ts, decision, what, who, e.peer, e.outcome, e.duration_us
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: RequestKind) -> AuditEntry {
        AuditEntry {
            ts: now_rfc3339(),
            event: Event::Request,
            request_id: Some("r1".into()),
            peer: "127.0.0.1:1".into(),
            identity: Some("alice".into()),
            fingerprint: Some("ff".into()),
            role: Some("admin".into()),
            kind: Some(kind),
            args: Some(serde_json::json!({"delay_secs": 0})),
            argv: None,
            exit_code: None,
            dry_run: false,
            decision: Decision::Allowed,
            reason: None,
            outcome: AuditOutcome::Ok,
            duration_us: 12,
        }
    }

    #[test]
    fn writes_lines_and_tails_them() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"));
        for kind in [
            RequestKind::Echo,
            RequestKind::Shutdown,
            RequestKind::Cancel,
        ] {
            log.write(&entry(kind), kind != RequestKind::Echo).unwrap();
        }
        let last = tail(log.path(), 2).unwrap();
        let kinds: Vec<_> = last
            .iter()
            .map(|e| e.as_ref().unwrap().kind.unwrap())
            .collect();
        assert_eq!(kinds, [RequestKind::Shutdown, RequestKind::Cancel]);
        let raw = std::fs::read_to_string(log.path()).unwrap();
        assert!(
            raw.contains(r#""event":"request""#)
                && raw.contains(r#""decision":"allowed""#)
                && raw.contains(r#""outcome":"ok""#)
                && raw.contains(r#""kind":"cancel""#),
            "the wire words stay as they were: {raw}"
        );
        assert!(format_entry(last[0].as_ref().unwrap()).contains("alice (admin)"));
    }

    #[test]
    fn unwritable_log_reports_an_error() {
        let log = AuditLog::new("/dev/full");
        assert!(log.write(&entry(RequestKind::Shutdown), true).is_err());
    }

    #[test]
    fn a_fragment_left_by_a_crash_stays_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, b"{\"ts\":\"2024-01-01T00:0").unwrap();
        let log = AuditLog::new(&path);
        log.write(&entry(RequestKind::Shutdown), true).unwrap();
        let lines = tail(&path, 10).unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].as_ref().unwrap_err().number, 1);
        assert_eq!(lines[1].as_ref().unwrap().kind, Some(RequestKind::Shutdown));
    }

    #[test]
    fn tail_reads_past_a_line_that_is_not_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"));
        log.write(&entry(RequestKind::Echo), false).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .unwrap();
        file.write_all(b"{\"reason\":\"\xe2\x80\n").unwrap();
        log.write(&entry(RequestKind::Cancel), false).unwrap();
        let lines = tail(log.path(), 10).unwrap();
        assert!(lines[0].is_ok() && lines[2].is_ok(), "{lines:?}");
        assert_eq!(lines[1].as_ref().unwrap_err().number, 2);
    }

    #[test]
    fn handshake_rejections_are_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"));
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let written = (0..100)
            .filter(|_| log.handshake_rejected(peer, "no certificate"))
            .count();
        assert_eq!(written, REJECTIONS_PER_WINDOW as usize);
        assert_eq!(
            tail(log.path(), 1000).unwrap().len(),
            REJECTIONS_PER_WINDOW as usize
        );
    }

    #[test]
    fn connection_refusals_are_rate_limited_apart_from_handshakes() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"));
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for _ in 0..100 {
            log.handshake_rejected(peer, "no certificate");
        }
        let who = Identity {
            name: "mon".into(),
            fingerprint: "ff".into(),
            role: Some("monitor".into()),
            serial: "01".into(),
        };
        let written = (0..100)
            .filter(|_| log.connection_refused(peer, &who, "per certificate"))
            .count();
        assert_eq!(written, REJECTIONS_PER_WINDOW as usize);
        let last = tail(log.path(), 1).unwrap().pop().unwrap().unwrap();
        assert_eq!(last.event, Event::Connection);
        assert_eq!(last.outcome, AuditOutcome::Error(ErrorKind::Busy));
        assert_eq!(last.role.as_deref(), Some("monitor"));
        assert!(format_entry(&last).contains("connect"));
    }
}
