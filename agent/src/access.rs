//! The parts of the configuration that can change while the agent runs: the TLS
//! configuration (with its CRL), the policy, and the revoked serials. Reloaded on SIGHUP
//! without dropping connections that are still allowed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use lightsout_pki::{Identity, TlsFiles};

use crate::policy::{Policy, PolicyFile};

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
}

impl AccessState {
    /// A state with no CRL and the built-in policy.
    pub fn new(tls: Arc<rustls::ServerConfig>) -> Self {
        Self {
            tls,
            policy: Policy::default(),
            revoked: HashSet::new(),
        }
    }

    /// Whether `who`'s certificate is revoked.
    pub fn is_revoked(&self, who: &Identity) -> bool {
        self.revoked.contains(&who.serial)
    }
}

/// Where the reloadable state comes from.
#[derive(Clone)]
pub struct AccessSources {
    /// CA, certificate and key.
    pub tls: TlsFiles,
    /// The CRL file, if any.
    pub crl: Option<PathBuf>,
    /// Whether `crl` must exist. A CRL configured explicitly that is missing is an error,
    /// never "no CRL"; the home directory's `crl.pem` is used when (and once) it exists, so
    /// the first revocation takes effect on the next reload.
    pub crl_required: bool,
    /// Reads the policy afresh (the `[policy]` section of the configuration file).
    pub policy: Arc<dyn Fn() -> Result<PolicyFile, String> + Send + Sync>,
}

impl std::fmt::Debug for AccessSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessSources")
            .field("tls", &self.tls)
            .field("crl", &self.crl)
            .finish_non_exhaustive()
    }
}

impl AccessSources {
    /// Loads and validates everything.
    ///
    /// # Errors
    /// A readable reason naming the file at fault.
    pub fn load(&self) -> Result<AccessState, String> {
        let crls = match &self.crl {
            Some(path) if self.crl_required || path.exists() => {
                lightsout_pki::crl::load(path).map_err(|e| e.to_string())?
            }
            _ => Vec::new(),
        };
        let revoked = lightsout_pki::crl::revoked_serials(&crls);
        let tls = lightsout_pki::tls::server_config_with_crls(&self.tls, crls)
            .map_err(|e| e.to_string())?;
        let policy = Policy::from_file(&(self.policy)()?)?;
        Ok(AccessState {
            tls,
            policy,
            revoked,
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
    pub fn from_sources(sources: AccessSources) -> Result<Self, String> {
        let state = sources.load()?;
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

    /// Reloads from the sources; on error the current state stays in force.
    ///
    /// # Errors
    /// Why the new state was not taken.
    pub fn reload(&self) -> Result<(), String> {
        let Some(sources) = &self.sources else {
            return Err("this agent's access state is fixed".into());
        };
        let state = sources.load()?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(state);
        Ok(())
    }
}
