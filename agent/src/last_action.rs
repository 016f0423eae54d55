//! The last accepted live power action, kept in a small synced file so that the next start
//! can tell whether it took the machine down.
//!
//! A shutdown or restart that works leaves no trace of its own: the agent is killed with the
//! machine, usually before the command's exit status is seen. So when an action is committed
//! its request id and the current boot id are written (and synced) to `last-action.json` in
//! the agent's home; a failed command or a successful cancel removes the file. At start-up, a
//! file naming another boot id means the action took the machine down: the agent writes an
//! `execution` line saying so (see [`crate::audit::AuditEntry::took_down`]) and removes the
//! file once that line is on disk.

use std::io::Write;
use std::path::Path;

use lightsout_protocol::RequestKind;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::audit::{AuditEntry, AuditLog};
use crate::config::Config;

/// Linux's random per-boot id (or the fake one of `--fake-boot-id`).
pub fn boot_id(config: &Config) -> Option<String> {
    if let Some(fake) = &config.testing.fake_boot_id {
        return Some(fake.clone());
    }
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastAction {
    /// The request that was accepted.
    pub request_id: String,
    /// Shutdown or restart.
    pub kind: RequestKind,
    /// The boot id when it was accepted.
    pub boot_id: String,
    /// Who asked (the certificate name): an agent restarted while systemd-logind still holds
    /// the action says so again. Absent in files written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// When it is due, Unix seconds: how a restarted agent recognises the action logind holds
    /// as this one. Absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_unix: Option<u64>,
    /// The message for the people at the machine: the status board shows it again after an
    /// agent restart. Absent in older files and when none was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Writes `last` to `path` and syncs it (written aside, then renamed: never half a file).
///
/// # Errors
/// The file cannot be written, synced or renamed.
pub fn record(path: &Path, last: &LastAction) -> std::io::Result<()> {
    let aside = path.with_extension("json.new");
    let mut file = std::fs::File::create(&aside)?;
    file.write_all(&serde_json::to_vec(last).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&aside, path)?;
    if let Some(dir) = path.parent() {
        // The rename itself is durable only once the directory is synced.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Removes the file if it names `request_id` (`None`: whatever it names).
pub fn forget(path: &Path, request_id: Option<&str>) {
    let names_it = match (load(path), request_id) {
        (Ok(Some(last)), Some(id)) => last.request_id == id,
        (Ok(Some(_)), None) => true,
        (Ok(None), _) => false,
        // Unreadable: it cannot attribute anything.
        (Err(_), _) => true,
    };
    if names_it {
        if let Err(e) = std::fs::remove_file(path) {
            warn!(path = %path.display(), error = %e, "cannot remove the last-action file");
        }
    }
}

/// The file's content; `None` when there is none.
///
/// # Errors
/// The file exists but cannot be read or parsed.
pub fn load(path: &Path) -> std::io::Result<Option<LastAction>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// At start-up: if the last accepted action was accepted in another boot, writes (and syncs)
/// the line saying it took the machine down, then removes the file. A line that cannot be
/// written leaves the file for the next start.
pub fn attribute_reboot(path: &Path, boot_id: &str, audit: Option<&AuditLog>) {
    let last = match load(path) {
        Ok(Some(last)) if last.boot_id != boot_id => last,
        Ok(_) => return,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "unreadable last-action file, removed");
            forget(path, None);
            return;
        }
    };
    info!(request_id = %last.request_id, from = %last.boot_id, to = %boot_id,
          "the last accepted power action took the machine down");
    let line = AuditEntry::took_down(&last.request_id, last.kind, &last.boot_id, boot_id);
    if let Some(audit) = audit {
        if let Err(e) = audit.write(&line, true) {
            warn!(path = %audit.path().display(), error = %e, "cannot write the audit log");
            return;
        }
    }
    forget(path, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_boot_id_attributes_the_reboot_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last-action.json");
        let audit = AuditLog::new(dir.path().join("audit.jsonl"));
        let last = LastAction {
            request_id: "r1".into(),
            kind: RequestKind::Restart,
            boot_id: "A".into(),
            requested_by: None,
            due_unix: None,
            message: None,
        };
        record(&path, &last).unwrap();
        attribute_reboot(&path, "A", Some(&audit));
        assert_eq!(
            load(&path).unwrap(),
            Some(last),
            "same boot: nothing to say yet"
        );
        attribute_reboot(&path, "B", Some(&audit));
        attribute_reboot(&path, "C", Some(&audit));
        let lines = crate::audit::tail(audit.path(), 10).unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = lines[0].as_ref().unwrap();
        assert_eq!(line.request_id.as_deref(), Some("r1"));
        assert_eq!(
            line.reason.as_deref(),
            Some("request r1 took the machine down (boot id A → B)")
        );
        assert!(load(&path).unwrap().is_none());
    }

    #[test]
    fn a_file_from_before_the_new_fields_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last-action.json");
        std::fs::write(
            &path,
            r#"{"request_id":"r1","kind":"shutdown","boot_id":"A"}"#,
        )
        .unwrap();
        let last = load(&path).unwrap().unwrap();
        assert_eq!(last.request_id, "r1");
        assert_eq!((last.requested_by, last.due_unix), (None, None));
    }

    #[test]
    fn forget_removes_only_the_named_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last-action.json");
        let last = LastAction {
            request_id: "r1".into(),
            kind: RequestKind::Shutdown,
            boot_id: "A".into(),
            requested_by: None,
            due_unix: None,
            message: None,
        };
        record(&path, &last).unwrap();
        forget(&path, Some("r2"));
        assert!(load(&path).unwrap().is_some());
        forget(&path, Some("r1"));
        assert!(load(&path).unwrap().is_none());
    }
}
