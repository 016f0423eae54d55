//! Login sessions from utmp, where systemd-logind does not run.
//!
//! On Linux the login records are in utmp (`/run/utmp`): fixed 384-byte records whose type
//! is at offset 0, terminal (`ut_line`) at 8, user name at 44 and remote host at 76 (glibc's
//! `struct utmp` on every 64-bit and 32-bit Linux ABI lightsout targets). Every
//! `USER_PROCESS` record is a session; its idle time is the terminal's last access, as `w`
//! reports it. Other platforms return `None` ("not known"), never a guess. Debian 13 has no
//! utmp at all: there logind is the source (see the parent module).

use lightsout_protocol::health::Session;

#[cfg(target_os = "linux")]
const UTMP_PATHS: [&str; 2] = ["/run/utmp", "/var/run/utmp"];
#[cfg(target_os = "linux")]
const RECORD_LEN: usize = 384;
#[cfg(target_os = "linux")]
const USER_PROCESS: i32 = 7;

/// The utmp login sessions, when the platform tells them.
#[cfg(target_os = "linux")]
pub fn sessions() -> Option<Vec<Session>> {
    let data = UTMP_PATHS.iter().find_map(|p| std::fs::read(p).ok())?;
    let now = std::time::SystemTime::now();
    Some(
        parse_records(&data)
            .into_iter()
            .map(|mut s| {
                s.idle_secs = s.tty.as_deref().and_then(|tty| tty_idle(tty, now));
                s
            })
            .collect(),
    )
}

/// The utmp login sessions, when the platform tells them.
#[cfg(not(target_os = "linux"))]
pub fn sessions() -> Option<Vec<Session>> {
    None
}

/// Seconds since the terminal's last access (`/dev/TTY`'s atime).
#[cfg(target_os = "linux")]
fn tty_idle(tty: &str, now: std::time::SystemTime) -> Option<u64> {
    if tty.contains("..") {
        return None;
    }
    let accessed = std::fs::metadata(format!("/dev/{tty}"))
        .ok()?
        .accessed()
        .ok()?;
    Some(now.duration_since(accessed).map_or(0, |d| d.as_secs()))
}

#[cfg(target_os = "linux")]
fn text(field: &[u8]) -> Option<String> {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    let s = String::from_utf8_lossy(&field[..end]).trim().to_owned();
    (!s.is_empty()).then_some(s)
}

#[cfg(target_os = "linux")]
fn parse_records(data: &[u8]) -> Vec<Session> {
    data.chunks_exact(RECORD_LEN)
        .filter(|r| i32::from_ne_bytes([r[0], r[1], r[2], r[3]]) == USER_PROCESS)
        .filter_map(|r| {
            Some(Session {
                user: text(&r[44..76])?,
                tty: text(&r[8..40]),
                seat: None,
                remote_host: text(&r[76..332]),
                state: None,
                idle_secs: None,
            })
        })
        .collect()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn record(kind: i32, user: &str, line: &str, host: &str) -> Vec<u8> {
        let mut r = vec![0u8; RECORD_LEN];
        r[..4].copy_from_slice(&kind.to_ne_bytes());
        r[8..8 + line.len()].copy_from_slice(line.as_bytes());
        r[44..44 + user.len()].copy_from_slice(user.as_bytes());
        r[76..76 + host.len()].copy_from_slice(host.as_bytes());
        r
    }

    #[test]
    fn user_process_records_only() {
        let mut data = Vec::new();
        for (kind, user, line, host) in [
            (7, "alice", "tty1", ""),
            (7, "bob", "pts/0", "10.0.0.5"),
            (7, "alice", "pts/1", ""),
            (8, "carol", "tty2", ""),
            (2, "reboot", "~", ""),
        ] {
            data.extend(record(kind, user, line, host));
        }
        data.extend([1, 2, 3]); // a torn trailing record is ignored
        let sessions = parse_records(&data);
        let users: Vec<&str> = sessions.iter().map(|s| s.user.as_str()).collect();
        assert_eq!(users, ["alice", "bob", "alice"]);
        assert_eq!(sessions[1].place(), "pts/0 from 10.0.0.5");
        assert_eq!(sessions[0].place(), "tty1");
        assert!(parse_records(&[]).is_empty());
    }
}
