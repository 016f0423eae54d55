//! The lightsout home directory: one place where both binaries find their certificates.

use std::path::{Path, PathBuf};

use crate::{PkiError, Result};

/// Environment variable that overrides the home directory.
pub const HOME_ENV: &str = "LIGHTSOUT_HOME";

/// The user's configuration directory (`$XDG_CONFIG_HOME`, else `$HOME/.config`), only from
/// the environment: a process started without `HOME` (a bare service, `env -i`) is told to
/// say where its home is, rather than writing a CA into the account database's home of
/// whoever it runs as.
fn user_config_dir() -> Option<PathBuf> {
    let set = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if set("XDG_CONFIG_HOME").is_none() && set("HOME").is_none() {
        return None;
    }
    dirs::config_dir()
}

/// The home directory and the well-known file names inside it.
///
/// ```text
/// ca.pem, ca-key.pem                  the lab CA (the key stays on the CA machine only)
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
                None => user_config_dir().ok_or(PkiError::NoHome)?.join("lightsout"),
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

/// Which binary a home directory serves: each needs its own certificate and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `lightsout-agent`: `agent.pem` + `agent-key.pem`.
    Agent,
    /// `lightsout`: `controller.pem` + `controller-key.pem`.
    Controller,
}

impl Side {
    /// `agent` or `controller`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Agent => "agent",
            Side::Controller => "controller",
        }
    }
}

/// What a home directory holds, judged for one [`Side`]. The rules, in one place:
///
/// - **Empty** (none of the CA, certificate, key, index or CRL files): a first run may create
///   a new lab CA here, and this machine's agent and controller certificates.
/// - **Ready**: the CA certificate and this side's certificate and key are here. The CA key is
///   not needed (a second controller holds exactly `ca.pem`, its certificate and its key).
/// - **CanIssue**: the CA (certificate *and* key) is here but this side's certificate and key
///   are both absent: they can be issued without touching anything that exists.
///
/// Anything else is partial (a CA key without its certificate, a certificate without its
/// key, a CA certificate and nothing this side can use) and is a [`PkiError::Incomplete`]
/// naming what is missing: nothing is created or overwritten over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeState {
    /// Nothing of a lab here yet.
    Empty,
    /// Everything this side needs is here.
    Ready,
    /// The CA is here; this side's certificate and key are to be issued.
    CanIssue,
}

impl Home {
    /// This side's certificate and key.
    pub fn pair(&self, side: Side) -> (PathBuf, PathBuf) {
        match side {
            Side::Agent => (self.agent_cert(), self.agent_key()),
            Side::Controller => (self.controller_cert(), self.controller_key()),
        }
    }

    /// Every file whose presence means "a lab lives here".
    fn lab_files(&self) -> [PathBuf; 9] {
        [
            self.ca_cert(),
            self.ca_key(),
            self.agent_cert(),
            self.agent_key(),
            self.controller_cert(),
            self.controller_key(),
            self.issued_index(),
            self.revoked_index(),
            self.crl(),
        ]
    }

    /// Judges the home for `side`; see [`HomeState`] for the rules. Reads only.
    ///
    /// # Errors
    /// [`PkiError::Incomplete`] for a partial home, naming what is missing and what to do.
    pub fn check(&self, side: Side) -> Result<HomeState> {
        let incomplete = |problem: String| PkiError::Incomplete {
            dir: self.dir.clone(),
            problem,
        };
        if !self.lab_files().iter().any(|p| p.exists()) {
            return Ok(HomeState::Empty);
        }
        let (ca, ca_key) = (self.ca_cert(), self.ca_key());
        if ca_key.exists() && !ca.exists() {
            return Err(incomplete(format!(
                "the CA key {} is here but the CA certificate {} is missing: restore ca.pem from \
                 the CA backup (see the README's \"Backing up the CA\"); a new CA would cut off \
                 every agent of the lab",
                ca_key.display(),
                ca.display()
            )));
        }
        for pair_side in [Side::Agent, Side::Controller] {
            let (cert, key) = self.pair(pair_side);
            match (cert.exists(), key.exists()) {
                (true, false) => {
                    return Err(incomplete(format!(
                        "{} is here but its private key {} is missing: restore the key, or \
                         install a new certificate and key for this machine",
                        cert.display(),
                        key.display()
                    )));
                }
                (false, true) => {
                    return Err(incomplete(format!(
                        "the private key {} is here but its certificate {} is missing: restore \
                         the certificate, or install a new certificate and key for this machine",
                        key.display(),
                        cert.display()
                    )));
                }
                _ => {}
            }
        }
        if !ca.exists() {
            return Err(incomplete(format!(
                "the lab's CA certificate {} is missing: copy the lab's ca.pem here",
                ca.display()
            )));
        }
        let (cert, key) = self.pair(side);
        if cert.exists() {
            return Ok(HomeState::Ready);
        }
        if ca_key.exists() {
            return Ok(HomeState::CanIssue);
        }
        let side = side.as_str();
        Err(incomplete(format!(
            "the lab's ca.pem is here but no {side} certificate and key ({}, {}): on the \
             machine that holds the CA run `lightsout pki issue {side} NAME{} --bundle FILE`, \
             copy FILE here and use it with --bundle FILE, or copy its certificate and key \
             here as {} and {}",
            cert.display(),
            key.display(),
            if side == "controller" {
                " --role ROLE"
            } else {
                ""
            },
            cert.file_name().unwrap_or_default().to_string_lossy(),
            key.file_name().unwrap_or_default().to_string_lossy(),
        )))
    }
}
