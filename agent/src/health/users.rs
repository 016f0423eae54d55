//! Counting logged-in users.
//!
//! On Linux the login records are in utmp (`/var/run/utmp`): fixed 384-byte records whose
//! type is at offset 0 and user name at offset 44 (glibc's `struct utmp` on every 64-bit and
//! 32-bit Linux ABI lightsout targets). We count distinct names of `USER_PROCESS` records.
//! Other platforms return `None` ("not known"), never a guess.

#[cfg(target_os = "linux")]
const UTMP_PATHS: [&str; 2] = ["/run/utmp", "/var/run/utmp"];
#[cfg(target_os = "linux")]
const RECORD_LEN: usize = 384;
#[cfg(target_os = "linux")]
const USER_PROCESS: i32 = 7;

/// Distinct users with a login session, when the platform tells it.
#[cfg(target_os = "linux")]
pub fn count() -> Option<u32> {
    let data = UTMP_PATHS.iter().find_map(|p| std::fs::read(p).ok())?;
    Some(count_records(&data))
}

/// Distinct users with a login session, when the platform tells it.
#[cfg(not(target_os = "linux"))]
pub fn count() -> Option<u32> {
    None
}

#[cfg(target_os = "linux")]
fn count_records(data: &[u8]) -> u32 {
    let mut users: Vec<&[u8]> = data
        .chunks_exact(RECORD_LEN)
        .filter(|r| i32::from_ne_bytes([r[0], r[1], r[2], r[3]]) == USER_PROCESS)
        .map(|r| {
            let name = &r[44..76];
            let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
            &name[..end]
        })
        .filter(|n| !n.is_empty())
        .collect();
    users.sort_unstable();
    users.dedup();
    u32::try_from(users.len()).unwrap_or(u32::MAX)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn record(kind: i32, user: &str) -> Vec<u8> {
        let mut r = vec![0u8; RECORD_LEN];
        r[..4].copy_from_slice(&kind.to_ne_bytes());
        r[44..44 + user.len()].copy_from_slice(user.as_bytes());
        r
    }

    #[test]
    fn counts_distinct_user_sessions_only() {
        let mut data = Vec::new();
        for (kind, user) in [
            (7, "alice"),
            (7, "bob"),
            (7, "alice"),
            (8, "carol"),
            (2, "reboot"),
        ] {
            data.extend(record(kind, user));
        }
        data.extend([1, 2, 3]); // a torn trailing record is ignored
        assert_eq!(count_records(&data), 2);
        assert_eq!(count_records(&[]), 0);
    }
}
