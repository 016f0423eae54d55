//! Whether this process may power the machine off.

/// True when the agent runs as root (effective uid 0) on Unix, or with an elevated
/// administrator token on Windows.
#[cfg(unix)]
pub fn is_privileged() -> bool {
    rustix::process::geteuid().is_root()
}

/// True when the agent runs as root (effective uid 0) on Unix, or with an elevated
/// administrator token on Windows.
#[cfg(windows)]
pub fn is_privileged() -> bool {
    is_elevated::is_elevated()
}

/// Other platforms have no known privilege model: power actions are refused.
#[cfg(not(any(unix, windows)))]
pub fn is_privileged() -> bool {
    false
}

/// A short description of who we run as, for error messages.
pub fn describe() -> String {
    #[cfg(unix)]
    {
        format!("uid {}", rustix::process::geteuid().as_raw())
    }
    #[cfg(not(unix))]
    {
        "a non-elevated user".to_string()
    }
}
