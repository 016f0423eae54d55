//! The audit log: one JSON line per request, and per refused handshake.
//!
//! Power actions fail closed: the line of an accepted shutdown or restart is written and
//! fsynced *before* the action runs, and if it cannot be written the action is refused. Other
//! lines (echo, refusals, rehearsals) are written without fsync and a failure to write them
//! is logged but refuses nothing — a full disk must not stop health checks.
//!
//! Handshake rejections come from the network, not from an authenticated caller, so they are
//! rate-limited: a flood cannot fill the disk.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

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
    /// `request` or `handshake`.
    pub event: String,
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
    /// Request kind (`echo`, `shutdown`...), when the request could be decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The request's arguments as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// The request's dry-run flag, or the agent's dry-run mode.
    pub dry_run: bool,
    /// `allowed` or `refused`.
    pub decision: String,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `ok`, or the error kind of the reply.
    pub outcome: String,
    /// Time spent handling the request, microseconds.
    pub duration_us: u64,
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
    file: Mutex<Option<File>>,
    rejections: Mutex<RejectionWindow>,
}

#[derive(Debug)]
struct RejectionWindow {
    started: Instant,
    written: u32,
    suppressed: u32,
}

impl AuditLog {
    /// An audit log at `path` (created on first write, mode 0600).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: Mutex::new(None),
            rejections: Mutex::new(RejectionWindow {
                started: Instant::now(),
                written: 0,
                suppressed: 0,
            }),
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

    /// Appends `entry`; with `durable`, also waits until it is on disk.
    ///
    /// # Errors
    /// The file cannot be opened, written or synced.
    pub fn write(&self, entry: &AuditEntry, durable: bool) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut slot = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let result = (|| {
            if slot.is_none() {
                let mut opts = std::fs::OpenOptions::new();
                opts.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                *slot = Some(opts.open(&self.path)?);
            }
            let file = slot
                .as_mut()
                .ok_or_else(|| std::io::Error::other("audit file not open"))?;
            file.write_all(&line)?;
            if durable {
                file.sync_data()?;
            }
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

    /// Records a refused TLS handshake, at most [`REJECTIONS_PER_WINDOW`] per 10 s; beyond,
    /// rejections are counted and one summary line is written when the window ends.
    /// Returns whether this one was written (callers log at the same rate).
    pub fn handshake_rejected(&self, peer: SocketAddr, reason: &str) -> bool {
        let (write, summary) = {
            let mut w = self
                .rejections
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut summary = None;
            if w.started.elapsed() >= REJECTION_WINDOW {
                if w.suppressed > 0 {
                    summary = Some(w.suppressed);
                }
                *w = RejectionWindow {
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
        };
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
}

fn handshake_entry(peer: SocketAddr, reason: &str) -> AuditEntry {
    AuditEntry {
        ts: now_rfc3339(),
        event: "handshake".into(),
        request_id: None,
        peer: peer.to_string(),
        identity: None,
        fingerprint: None,
        role: None,
        kind: None,
        args: None,
        dry_run: false,
        decision: "refused".into(),
        reason: Some(reason.to_owned()),
        outcome: "tls".into(),
        duration_us: 0,
    }
}

/// The last `n` entries of the audit log at `path`, oldest first. Unreadable lines are
/// returned as errors in place, so a damaged line is visible rather than skipped.
///
/// # Errors
/// The file cannot be read.
pub fn tail(path: &Path, n: usize) -> std::io::Result<Vec<Result<AuditEntry, String>>> {
    let text = std::fs::read_to_string(path)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    Ok(lines[start..]
        .iter()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("unreadable line ({e}): {l}")))
        .collect())
}

/// One entry as a readable line.
pub fn format_entry(e: &AuditEntry) -> String {
    let who = match (&e.identity, &e.role) {
        (Some(name), Some(role)) => format!("{name} ({role})"),
        (Some(name), None) => format!("{name} (no role)"),
        _ => "-".into(),
    };
    let what = e.kind.clone().unwrap_or_else(|| e.event.clone());
    let dry = if e.dry_run { " [dry-run]" } else { "" };
    let reason = e
        .reason
        .as_deref()
        .map(|r| format!(" — {r}"))
        .unwrap_or_default();
    lightsout_protocol::text::sanitize(&format!(
        "{}  {:<8} {:<9} {:<28} {:<22} {} ({} us){dry}{reason}",
        e.ts, e.decision, what, who, e.peer, e.outcome, e.duration_us
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str) -> AuditEntry {
        AuditEntry {
            ts: now_rfc3339(),
            event: "request".into(),
            request_id: Some("r1".into()),
            peer: "127.0.0.1:1".into(),
            identity: Some("alice".into()),
            fingerprint: Some("ff".into()),
            role: Some("admin".into()),
            kind: Some(kind.into()),
            args: Some(serde_json::json!({"delay_secs": 0})),
            dry_run: false,
            decision: "allowed".into(),
            reason: None,
            outcome: "ok".into(),
            duration_us: 12,
        }
    }

    #[test]
    fn writes_lines_and_tails_them() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"));
        for kind in ["echo", "shutdown", "cancel"] {
            log.write(&entry(kind), kind != "echo").unwrap();
        }
        let last = tail(log.path(), 2).unwrap();
        let kinds: Vec<_> = last
            .iter()
            .map(|e| e.as_ref().unwrap().kind.clone().unwrap())
            .collect();
        assert_eq!(kinds, ["shutdown", "cancel"]);
        assert!(format_entry(last[0].as_ref().unwrap()).contains("alice (admin)"));
    }

    #[test]
    fn unwritable_log_reports_an_error() {
        let log = AuditLog::new("/dev/full");
        assert!(log.write(&entry("shutdown"), true).is_err());
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
}
