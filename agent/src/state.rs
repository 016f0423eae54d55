//! What every step of a request's handling may read: the agent's shared state and who is
//! asking. Everything that handles requests imports this module; it imports only the parts
//! it holds (configuration, power, health, replay memory, rate limits), never a handler.

use std::net::SocketAddr;

use lightsout_pki::Identity;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health::HealthProbe;
use crate::power::PowerController;
use crate::rate::WakeBudget;
use crate::replay::ReplayMemory;

/// State shared by every connection of one agent.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// Pending power actions and their execution.
    pub power: PowerController,
    /// Health snapshots.
    pub health: HealthProbe,
    /// Replies to recent power requests, so that none is executed twice.
    pub replay: std::sync::Arc<ReplayMemory>,
    /// The agent-wide allowance of Wake-on-LAN packets.
    pub wake_budget: WakeBudget,
    /// Cancelled when the agent stops.
    pub stop: CancellationToken,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Who sent a request: the network peer and the verified certificate identity.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Network peer.
    pub peer: SocketAddr,
    /// Verified certificate identity.
    pub identity: Identity,
}
