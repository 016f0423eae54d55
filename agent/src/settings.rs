//! The agent's configuration file (TOML; `--config FILE`).
//!
//! Precedence, highest first: command line, environment (`LIGHTSOUT_*`), this file,
//! built-in defaults. Relative paths in the file are relative to the file's directory.
//! Unknown keys are errors (a typo must not silently leave a default in force), reported with
//! the file, line and key. `agent.example.toml` at the repository root documents every key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::PolicyFile;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// Listen address (`ADDR:PORT`, `ADDR` or `PORT`).
    pub listen: Option<String>,
    /// Home directory (certificates, default audit log).
    pub home: Option<PathBuf>,
    /// Rehearse every power action.
    pub dry_run: Option<bool>,
    /// Stand-in for the system's `shutdown` (tests, demonstrations).
    pub power_command: Option<PathBuf>,
    /// Log format: `text` or `json`.
    pub log_format: Option<crate::cli::LogFormat>,
    /// Answer LAN discovery probes.
    pub discoverable: Option<bool>,
    /// Certificates and revocation list.
    #[serde(default)]
    pub tls: TlsSection,
    /// Audit log.
    #[serde(default)]
    pub audit: AuditSection,
    /// Resource limits.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Who may do what.
    #[serde(default)]
    pub policy: PolicyFile,
    /// Relaying Wake-on-LAN packets.
    #[serde(default)]
    pub wake: WakeSection,
    /// How power actions reach the system.
    #[serde(default)]
    pub power: PowerSection,
}

/// `[power]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerSection {
    /// `auto` (default), `logind` or `command`.
    pub backend: Option<crate::cli::BackendChoice>,
}

/// `[wake]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WakeSection {
    /// UDP ports magic packets may be sent to (default 7 and 9).
    pub ports: Option<Vec<u16>>,
}

/// `[tls]`: a bundle, or the three separate files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// One file: this agent's certificate, the CA certificate, the key.
    pub bundle: Option<PathBuf>,
    /// CA certificate controllers must chain to.
    pub ca: Option<PathBuf>,
    /// This agent's certificate.
    pub cert: Option<PathBuf>,
    /// This agent's private key.
    pub key: Option<PathBuf>,
    /// Certificate revocation list.
    pub crl: Option<PathBuf>,
}

/// `[audit]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The audit log file.
    pub path: Option<PathBuf>,
}

/// `[limits]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Connections served at once.
    pub max_connections: Option<usize>,
    /// Seconds to complete the TLS handshake.
    pub handshake_timeout_secs: Option<u64>,
    /// Seconds a connection may stay silent between requests.
    pub idle_timeout_secs: Option<u64>,
    /// Largest frame accepted, bytes.
    pub max_frame_bytes: Option<usize>,
    /// Largest echo payload accepted, bytes.
    pub max_echo_payload_bytes: Option<usize>,
    /// Seconds in-flight requests get to finish on stop.
    pub shutdown_grace_secs: Option<u64>,
    /// Requests one connection may send per second.
    pub max_requests_per_sec: Option<u32>,
    /// TLS handshakes in progress from one source address.
    pub max_handshakes_per_ip: Option<usize>,
    /// Authenticated connections from one source address.
    pub max_connections_per_ip: Option<usize>,
    /// Authenticated connections with one certificate.
    pub max_connections_per_cert: Option<usize>,
    /// Connections kept for the reserved roles.
    pub reserved_connections: Option<usize>,
    /// Roles that may take the reserved connections.
    pub reserved_roles: Option<Vec<String>>,
}

/// `Limits::validate` names the limits as the command line does; say it with the file's keys.
fn file_key_names(message: &str) -> String {
    [
        ("max_frame_len", "max_frame_bytes"),
        ("max_echo_payload", "max_echo_payload_bytes"),
        ("handshake_timeout", "handshake_timeout_secs"),
        ("idle_timeout", "idle_timeout_secs"),
    ]
    .iter()
    .fold(message.to_owned(), |m, (flag, key)| m.replace(flag, key))
}

impl LimitsSection {
    /// `base` with every limit this section sets replaced.
    pub fn apply(&self, base: &crate::Limits) -> crate::Limits {
        let secs =
            |v: Option<u64>, d: std::time::Duration| v.map_or(d, std::time::Duration::from_secs);
        crate::Limits {
            max_connections: self.max_connections.unwrap_or(base.max_connections),
            handshake_timeout: secs(self.handshake_timeout_secs, base.handshake_timeout),
            idle_timeout: secs(self.idle_timeout_secs, base.idle_timeout),
            max_frame_len: self.max_frame_bytes.unwrap_or(base.max_frame_len),
            max_echo_payload: self.max_echo_payload_bytes.unwrap_or(base.max_echo_payload),
            max_requests_per_sec: self
                .max_requests_per_sec
                .unwrap_or(base.max_requests_per_sec),
            shutdown_grace: secs(self.shutdown_grace_secs, base.shutdown_grace),
            max_handshakes_per_ip: self
                .max_handshakes_per_ip
                .unwrap_or(base.max_handshakes_per_ip),
            max_connections_per_ip: self
                .max_connections_per_ip
                .unwrap_or(base.max_connections_per_ip),
            max_connections_per_cert: self
                .max_connections_per_cert
                .unwrap_or(base.max_connections_per_cert),
            reserved_connections: self
                .reserved_connections
                .unwrap_or(base.reserved_connections),
            reserved_roles: self
                .reserved_roles
                .clone()
                .unwrap_or_else(|| base.reserved_roles.clone()),
        }
    }
}

impl FileSettings {
    /// The keys that differ between `self` and `newer` and take effect only when the agent
    /// restarts (everything but `[policy]` and `[tls] crl`, which a reload applies).
    pub fn restart_needed(&self, newer: &FileSettings) -> Vec<&'static str> {
        let tls = |t: &TlsSection| TlsSection {
            crl: None,
            ..t.clone()
        };
        [
            ("listen", self.listen != newer.listen),
            ("home", self.home != newer.home),
            ("dry_run", self.dry_run != newer.dry_run),
            ("power_command", self.power_command != newer.power_command),
            ("log_format", self.log_format != newer.log_format),
            ("discoverable", self.discoverable != newer.discoverable),
            ("tls", tls(&self.tls) != tls(&newer.tls)),
            ("audit", self.audit != newer.audit),
            ("limits", self.limits != newer.limits),
            ("wake", self.wake != newer.wake),
            ("power", self.power != newer.power),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message: line, column, key and what was expected.
        message: String,
    },
    /// A value is out of range or names something unknown.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key and why.
        message: String,
    },
}

impl FileSettings {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// [`SettingsError`] naming the file, and the line and key where toml can tell.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text` as if read from `path`.
    ///
    /// # Errors
    /// See [`FileSettings::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, SettingsError> {
        let mut settings: FileSettings =
            toml::from_str(text).map_err(|e| SettingsError::Parse {
                path: path.to_path_buf(),
                message: e.to_string().trim_end().to_owned(),
            })?;
        let invalid = |message: String| SettingsError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        crate::policy::Policy::from_file(&settings.policy).map_err(|e| invalid(e.to_string()))?;
        settings
            .limits
            .apply(&crate::Limits::default())
            .validate()
            .map_err(|e| invalid(format!("[limits]: {}", file_key_names(&e.to_string()))))?;
        if settings
            .wake
            .ports
            .as_ref()
            .is_some_and(|p| p.is_empty() || p.contains(&0))
        {
            return Err(invalid(
                "wake.ports: list at least one port, each 1-65535 (the standard ones are 7 and 9)"
                    .into(),
            ));
        }
        let tls = &settings.tls;
        let given = [&tls.ca, &tls.cert, &tls.key]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if given != 0 && given != 3 {
            return Err(invalid("tls.ca, tls.cert and tls.key go together".into()));
        }
        if given != 0 && tls.bundle.is_some() {
            return Err(invalid(
                "tls.bundle replaces tls.ca, tls.cert and tls.key: give one or the other".into(),
            ));
        }
        // Relative paths are relative to the file, not to wherever the agent was started.
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut Option<PathBuf>| {
            if let Some(p) = p.as_mut() {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        };
        rebase(&mut settings.home);
        rebase(&mut settings.power_command);
        rebase(&mut settings.tls.bundle);
        rebase(&mut settings.tls.ca);
        rebase(&mut settings.tls.cert);
        rebase(&mut settings.tls.key);
        rebase(&mut settings.tls.crl);
        rebase(&mut settings.audit.path);
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses() {
        let example = include_str!("../../agent.example.toml");
        let s = FileSettings::parse(example, Path::new("/etc/lightsout/agent.toml")).unwrap();
        assert_eq!(
            s.tls.bundle.as_deref(),
            Some(Path::new("/etc/lightsout/agent-bundle.pem"))
        );
        assert_eq!(s.log_format, Some(crate::cli::LogFormat::Text));
        let limits = s.limits.apply(&crate::Limits::default());
        assert_eq!(limits.max_connections_per_ip, 64);
        assert_eq!(limits.max_connections_per_cert, 32);
        assert_eq!(limits.reserved_connections, 32);
        assert_eq!(limits.reserved_roles, ["admin"]);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let err = FileSettings::parse(
            "dry_run = true\n[limits]\nmax_conections = 5\n",
            Path::new("/x/agent.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("/x/agent.toml: "), "{err}");
        assert!(
            err.contains("line 3") && err.contains("max_conections"),
            "{err}"
        );

        let err = FileSettings::parse(
            "[limits]\nidle_timeout_secs = \"soon\"\n",
            Path::new("a.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 2") && err.contains("idle_timeout_secs"),
            "{err}"
        );

        let err = FileSettings::parse("[policy]\nallow = [\"exec\"]\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("policy.allow") && err.contains("exec"),
            "{err}"
        );

        let err = FileSettings::parse("[limits]\nmax_frame_bytes = 100\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_frame_bytes 100"),
            "the file's own key: {err}"
        );

        let err = FileSettings::parse("[limits]\nmax_connections = 0\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[limits]") && err.contains("max_connections"),
            "{err}"
        );

        let err = FileSettings::parse("[tls]\nca = \"ca.pem\"\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("go together"), "{err}");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let s = FileSettings::parse(
            "[audit]\npath = \"log/audit.jsonl\"\n",
            Path::new("/etc/lightsout/agent.toml"),
        )
        .unwrap();
        assert_eq!(
            s.audit.path.as_deref(),
            Some(Path::new("/etc/lightsout/log/audit.jsonl"))
        );
    }
}
