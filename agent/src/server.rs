//! The accept loop: connection cap, graceful shutdown.
//!
//! Connections are admitted here before anyone has proved who they are (the connection and
//! handshake caps); once the handshake tells who they are, `connection` takes their place in
//! the per-address, per-certificate and reserved-slot counts of `admission`.
//!
//! [`run`] takes an already bound listener and a stop future, so `main` stays thin and tests
//! start agents in-process on `127.0.0.1:0` with no sleeps and no port races.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admission::Admission;
use crate::config::Config;
use crate::handshakes::PendingHandshakes;
use crate::health::HealthProbe;
use crate::power::PowerController;
use crate::rate::WakeBudget;
use crate::state::Shared;

/// Records a connection closed at accept (before any TLS) in the audit log, with the handshake
/// rejections: rate-limited with a summary, so a flood costs neither the disk nor the journal.
/// Returns whether this one was written (the caller logs at the same rate).
fn refused_at_accept(shared: &Shared, peer: std::net::SocketAddr, reason: &str) -> bool {
    match &shared.config.audit {
        Some(audit) => audit.handshake_rejected(peer, reason),
        None => true,
    }
}

/// Serves `listener` until `shutdown` completes, then stops accepting, lets in-flight
/// requests finish and reply (within `limits.shutdown_grace`), and returns.
///
/// Errors on individual connections are logged and never end the loop.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) {
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let shared = Arc::new(Shared {
        power: PowerController::new(&config, stop.clone(), tasks.clone()),
        health: HealthProbe::new(&config),
        replay: config.replay.clone(),
        wake_budget: WakeBudget::default(),
        stop: stop.clone(),
        config,
    });
    if let (Some(path), Some(boot_id)) = (
        &shared.config.last_action,
        crate::last_action::boot_id(&shared.config),
    ) {
        crate::last_action::attribute_reboot(path, &boot_id, shared.config.audit.as_deref());
    }
    // Before the first request: an action systemd-logind still holds is pending again.
    shared.power.restore().await;
    let slots = Arc::new(Semaphore::new(shared.config.limits.max_connections));
    let handshakes = PendingHandshakes::new(shared.config.limits.max_handshakes_per_ip);
    let admission = Admission::new(&shared.config.limits);
    info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        dry_run = shared.config.dry_run,
        privileged = shared.config.privileged,
        power_backend = shared.config.power_backend.name(),
        "agent listening"
    );

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if shared.health.simulated.is_down() {
                        // `--simulate-reboot` (tests and demos): "rebooting", so unreachable.
                        drop(stream);
                        continue;
                    }
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        // Closing at once is the cheapest possible answer and leaves the
                        // connections already admitted untouched.
                        let limit = shared.config.limits.max_connections;
                        if refused_at_accept(&shared, peer, &format!(
                            "closed before the TLS handshake: the agent serves at most {limit} connections (max_connections)"
                        )) {
                            warn!(%peer, limit, "connection limit reached, closing new connection");
                        }
                        drop(stream);
                        continue;
                    };
                    let shared = shared.clone();
                    let Some(handshake) = handshakes.try_begin(peer.ip()) else {
                        let limit = shared.config.limits.max_handshakes_per_ip;
                        if refused_at_accept(&shared, peer, &format!(
                            "closed before the TLS handshake: {limit} handshakes already in progress from this address (max_handshakes_per_ip)"
                        )) {
                            warn!(%peer, limit,
                                  "too many handshakes in progress from this address, closing new connection");
                        }
                        drop(stream);
                        continue;
                    };
                    let admission = admission.clone();
                    tasks.spawn(async move {
                        crate::connection::serve(stream, peer, handshake, admission, shared).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Typically EMFILE/ENFILE: back off instead of spinning; the error is
                    // about this accept, not the listener.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }

    info!("stopping: no new connections, finishing in-flight requests");
    drop(listener);
    stop.cancel();
    tasks.close();
    if tokio::time::timeout(shared.config.limits.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        warn!(
            grace_secs = shared.config.limits.shutdown_grace.as_secs(),
            "some connections did not finish in time"
        );
    }
    info!("agent stopped");
}
