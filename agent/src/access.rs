//! The parts of the configuration that can change while the agent runs: the TLS
//! configuration (with its CRL), the policy, and the revoked serials. Reloaded on SIGHUP
//! without dropping connections that are still allowed.
//!
//! A reload never weakens revocation by accident: once a CRL was in force, a reload that
//! cannot read one (the file was deleted, or its key removed from the configuration file)
//! fails and the previous revocations stay.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use lightsout_pki::{Identity, TlsFiles};

use crate::policy::Policy;
use crate::settings::FileSettings;

/// One consistent snapshot of what decides who gets in and what they may do.
#[derive(Debug)]
pub struct AccessState {
    /// TLS server configuration, with the CRL applied at the handshake.
    pub tls: Arc<rustls::ServerConfig>,
    /// Who may do what.
    pub policy: Policy,
    /// Serials (lower-case hex) listed in the CRL: connections of these certificates opened
    /// before a reload are closed at their next request.
    pub revoked: HashSet<String>,
    /// The CRL file in force, if any.
    pub crl: Option<PathBuf>,
    /// The configuration file as read at this load (defaults without one).
    pub file: FileSettings,
}

impl AccessState {
    /// A state with no CRL and the built-in policy.
    pub fn new(tls: Arc<rustls::ServerConfig>) -> Self {
        Self {
            tls,
            policy: Policy::default(),
            revoked: HashSet::new(),
            crl: None,
            file: FileSettings::default(),
        }
    }

    /// Whether `who`'s certificate is revoked.
    pub fn is_revoked(&self, who: &Identity) -> bool {
        self.revoked.contains(&who.serial)
    }
}

/// Where the reloadable state comes from.
///
/// On reload the certificate, key and CA files are read again, and the configuration file's
/// `[policy]` and `[tls] crl` are applied; everything else in it takes effect at the next start (reported by
/// [`Reloaded::restart_needed`]).
#[derive(Debug, Clone)]
pub struct AccessSources {
    /// CA, certificate and key: read again on every reload, so a renewed certificate
    /// installed in place takes effect on SIGHUP without a restart (the README's rotation).
    pub tls: TlsFiles,
    /// The configuration file, if any: its `[policy]` and `[tls] crl` are re-read on reload.
    pub config_file: Option<PathBuf>,
    /// `--crl` from the command line: outranks the file's `[tls] crl`.
    pub crl_override: Option<PathBuf>,
    /// The home directory's `crl.pem`, used when neither names a CRL, when (and once) it
    /// exists, so the first revocation takes effect on the next reload.
    pub default_crl: PathBuf,
}

/// Why the access state could not be (re)loaded. On reload, the previous state stays.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The configuration file cannot be read or is invalid.
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    /// The CRL cannot be read.
    #[error("CRL {path}: {source}")]
    Crl {
        /// The CRL file.
        path: PathBuf,
        /// Why.
        source: lightsout_pki::PkiError,
    },
    /// A CRL was in force and can no longer be found: revoked certificates must not become
    /// acceptable again because a file went missing.
    #[error(
        "the CRL in force was {previous} and {path} cannot be read ({reason}); keeping the previous revocations — restore the file, or restart the agent to run without a CRL"
    )]
    CrlVanished {
        /// The CRL loaded before.
        previous: PathBuf,
        /// The CRL looked for now.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The configuration file no longer names the CRL that is in force.
    #[error(
        "{file}: [tls] crl was removed; keeping the revocations of {previous} — name a CRL again, or restart the agent to run without one"
    )]
    CrlKeyRemoved {
        /// The configuration file.
        file: PathBuf,
        /// The CRL in force.
        previous: PathBuf,
    },
    /// The TLS files cannot be used.
    #[error("TLS: {0}")]
    Tls(#[source] lightsout_pki::PkiError),
}

/// What a successful reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// The CRL now in force, if any.
    pub crl: Option<PathBuf>,
    /// Revoked serials now in force.
    pub revoked: usize,
    /// Keys of the configuration file that changed but take effect only at restart.
    pub restart_needed: Vec<&'static str>,
}

impl AccessSources {
    /// Loads and validates everything; `previous` is the state in force (on reload).
    ///
    /// # Errors
    /// An [`AccessError`] naming the file at fault.
    pub fn load(&self, previous: Option<&AccessState>) -> Result<AccessState, AccessError> {
        let file = match &self.config_file {
            Some(path) => FileSettings::load(path)?,
            None => FileSettings::default(),
        };
        let explicit = self.crl_override.clone().or_else(|| file.tls.crl.clone());
        if let Some(previous) = previous {
            if let (Some(in_force), None, Some(_)) =
                (&previous.crl, &explicit, &previous.file.tls.crl)
            {
                return Err(AccessError::CrlKeyRemoved {
                    file: self.config_file.clone().unwrap_or_default(),
                    previous: in_force.clone(),
                });
            }
        }
        let (path, required) = match explicit {
            Some(path) => (path, true),
            None => (self.default_crl.clone(), false),
        };
        let crls = match lightsout_pki::crl::load(&path) {
            Ok(crls) => Some(crls),
            Err(e) => match previous.and_then(|p| p.crl.as_ref()) {
                // Once a CRL was in force, losing it is an error whatever the reason.
                Some(previous) => {
                    return Err(AccessError::CrlVanished {
                        previous: previous.clone(),
                        path,
                        reason: e.to_string(),
                    });
                }
                None if required || path.exists() => {
                    return Err(AccessError::Crl { path, source: e });
                }
                None => None,
            },
        };
        let crl = crls.as_ref().map(|_| path);
        let crls = crls.unwrap_or_default();
        let revoked = lightsout_pki::crl::revoked_serials(&crls);
        let tls = lightsout_pki::tls::server_config_with_crls(&self.tls, crls)
            .map_err(AccessError::Tls)?;
        let policy = Policy::from_file(&file.policy).map_err(|e| {
            crate::settings::SettingsError::Invalid {
                path: self.config_file.clone().unwrap_or_default(),
                message: e.to_string(),
            }
        })?;
        Ok(AccessState {
            tls,
            policy,
            revoked,
            crl,
            file,
        })
    }
}

/// The live access state, swapped as a whole on reload.
#[derive(Debug)]
pub struct Access {
    current: RwLock<Arc<AccessState>>,
    sources: Option<AccessSources>,
}

impl Access {
    /// Fixed state that cannot be reloaded (in-process tests).
    pub fn fixed(state: AccessState) -> Self {
        Self {
            current: RwLock::new(Arc::new(state)),
            sources: None,
        }
    }

    /// State loaded from `sources`, reloadable.
    ///
    /// # Errors
    /// See [`AccessSources::load`].
    pub fn from_sources(sources: AccessSources) -> Result<Self, AccessError> {
        let state = sources.load(None)?;
        Ok(Self {
            current: RwLock::new(Arc::new(state)),
            sources: Some(sources),
        })
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<AccessState> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reloads from the sources; on error the current state stays in force. `None` for a
    /// fixed state (nothing to reload).
    ///
    /// # Errors
    /// Why the new state was not taken.
    pub fn reload(&self) -> Option<Result<Reloaded, AccessError>> {
        let sources = self.sources.as_ref()?;
        let previous = self.current();
        Some(sources.load(Some(&previous)).map(|state| {
            let reloaded = Reloaded {
                crl: state.crl.clone(),
                revoked: state.revoked.len(),
                restart_needed: previous.file.restart_needed(&state.file),
            };
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(state);
            reloaded
        }))
    }
}
