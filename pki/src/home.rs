//! The lightsout home directory: one place where both binaries find their certificates.

use std::path::{Path, PathBuf};

use crate::{PkiError, Result};

/// Environment variable that overrides the home directory.
pub const HOME_ENV: &str = "LIGHTSOUT_HOME";

/// The home directory and the well-known file names inside it.
///
/// ```text
/// ca.pem, ca-key.pem                  the lab CA (the key stays on the admin machine)
/// agent.pem, agent-key.pem            this machine's agent identity
/// controller.pem, controller-key.pem  this machine's controller identity
/// issued/                             certificates issued for other machines
/// issued.jsonl, revoked.jsonl         what the CA issued and revoked
/// crl.pem                             the revocation list agents and controllers load
/// audit.jsonl                         the agent's audit log (default location)
/// ```
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// `explicit` if given, else `$LIGHTSOUT_HOME`, else the per-user config directory
    /// (`~/.config/lightsout` on Linux).
    ///
    /// # Errors
    /// [`PkiError::NoHome`] when none of these exists.
    pub fn resolve(explicit: Option<&Path>) -> Result<Self> {
        let dir = match explicit {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
                Some(v) => PathBuf::from(v),
                None => dirs::config_dir()
                    .ok_or(PkiError::NoHome)?
                    .join("lightsout"),
            },
        };
        Ok(Self { dir })
    }

    /// A home at exactly `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// CA private key.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }

    /// This machine's agent certificate.
    pub fn agent_cert(&self) -> PathBuf {
        self.dir.join("agent.pem")
    }

    /// This machine's agent key.
    pub fn agent_key(&self) -> PathBuf {
        self.dir.join("agent-key.pem")
    }

    /// This machine's controller certificate.
    pub fn controller_cert(&self) -> PathBuf {
        self.dir.join("controller.pem")
    }

    /// This machine's controller key.
    pub fn controller_key(&self) -> PathBuf {
        self.dir.join("controller-key.pem")
    }

    /// The certificate revocation list, signed by the CA.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    /// Every certificate issued by this CA (one JSON line each), for revocation by name.
    pub fn issued_index(&self) -> PathBuf {
        self.dir.join("issued.jsonl")
    }

    /// Every certificate revoked (one JSON line each); the CRL is rebuilt from it.
    pub fn revoked_index(&self) -> PathBuf {
        self.dir.join("revoked.jsonl")
    }

    /// Where certificates issued for other machines are written.
    pub fn issued_dir(&self) -> PathBuf {
        self.dir.join("issued")
    }
}
