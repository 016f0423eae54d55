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
#[derive(Debug, Clone, Default, Deserialize)]
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
}

/// `[tls]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The audit log file.
    pub path: Option<PathBuf>,
}

/// `[limits]`
#[derive(Debug, Clone, Default, Deserialize)]
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
        crate::policy::Policy::from_file(&settings.policy).map_err(invalid)?;
        let limits = &settings.limits;
        for (key, value) in [
            (
                "limits.max_connections",
                limits.max_connections.map(|v| v as u64),
            ),
            (
                "limits.handshake_timeout_secs",
                limits.handshake_timeout_secs,
            ),
            ("limits.idle_timeout_secs", limits.idle_timeout_secs),
            (
                "limits.max_frame_bytes",
                limits.max_frame_bytes.map(|v| v as u64),
            ),
        ] {
            if value == Some(0) {
                return Err(invalid(format!("{key} must be greater than 0")));
            }
        }
        if let Some(max) = limits.max_frame_bytes {
            if max > lightsout_protocol::MAX_FRAME_LEN * 16 {
                return Err(invalid(format!(
                    "limits.max_frame_bytes = {max} is larger than {} (16x the protocol default)",
                    lightsout_protocol::MAX_FRAME_LEN * 16
                )));
            }
        }
        let tls = &settings.tls;
        let given = [&tls.ca, &tls.cert, &tls.key]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if given != 0 && given != 3 {
            return Err(invalid("tls.ca, tls.cert and tls.key go together".into()));
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
            s.tls.ca.as_deref(),
            Some(Path::new("/etc/lightsout/ca.pem"))
        );
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

        let err = FileSettings::parse("[limits]\nmax_connections = 0\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.max_connections"), "{err}");

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
