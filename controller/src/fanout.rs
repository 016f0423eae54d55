//! Sending one kind of request to many hosts at once.
//!
//! Every host gets an outcome: a slow or dead host costs its own deadline and nothing else,
//! and the run never stops at the first failure. Concurrency is capped (`parallel`), and a
//! host's deadline starts when it gets a slot, so hosts waiting their turn do not time out.
//! Hosts run on spawned tasks so the TLS handshakes use every core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lightsout_protocol::{Outcome, RequestEnvelope, Response};
use rustls::ClientConfig;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::Client;
use crate::error::ClientError;
use crate::target::Target;

/// How to reach the hosts.
#[derive(Debug, Clone)]
pub struct FanOut {
    /// Client TLS configuration (our certificate, the CA).
    pub tls: Arc<ClientConfig>,
    /// Name the agents' certificates must match instead of the host as typed.
    pub tls_name: Option<String>,
    /// Deadline per host: connect, handshake, request and response together.
    pub timeout: Duration,
    /// Most hosts in flight at once.
    pub parallel: usize,
}

/// One host's outcome.
#[derive(Debug)]
pub struct HostResult {
    /// The host as given.
    pub target: Target,
    /// Time from the host's start to its outcome.
    pub elapsed: Duration,
    /// The agent's response (which may itself be an error), or why there is none.
    pub outcome: Result<Response, ClientError>,
}

impl HostResult {
    /// True when the agent answered with success.
    pub fn ok(&self) -> bool {
        matches!(
            &self.outcome,
            Ok(Response {
                outcome: Outcome::Ok(_),
                ..
            })
        )
    }
}

/// A fresh request id: unique per host and per attempt, so agents can recognise a retry.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl FanOut {
    /// One request to one host, under the deadline.
    pub async fn one(&self, target: &Target, request: &RequestEnvelope) -> HostResult {
        let started = Instant::now();
        let exchange = async {
            let mut client =
                Client::connect(target, self.tls.clone(), self.tls_name.as_deref()).await?;
            let response = client.call(request).await?;
            client.close(Duration::from_millis(200)).await;
            Ok(response)
        };
        let outcome = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout(self.timeout)),
        };
        HostResult {
            target: target.clone(),
            elapsed: started.elapsed(),
            outcome,
        }
    }

    /// Sends `make_request(host)` to every target; results come back in the targets' order.
    pub async fn run<F>(&self, targets: &[Target], make_request: F) -> Vec<HostResult>
    where
        F: Fn(&Target) -> RequestEnvelope,
    {
        let slots = Arc::new(Semaphore::new(self.parallel.max(1)));
        let mut set = JoinSet::new();
        for (index, target) in targets.iter().enumerate() {
            let request = make_request(target);
            let this = self.clone();
            let target = target.clone();
            let slots = slots.clone();
            set.spawn(async move {
                // The semaphore is never closed, so acquiring only waits.
                let _slot = slots.acquire_owned().await;
                (index, this.one(&target, &request).await)
            });
        }
        let mut results: Vec<Option<HostResult>> = targets.iter().map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((index, result)) => results[index] = Some(result),
                Err(e) => tracing::error!(error = %e, "a host task panicked"),
            }
        }
        results
            .into_iter()
            .zip(targets)
            .map(|(r, t)| {
                r.unwrap_or_else(|| HostResult {
                    target: t.clone(),
                    elapsed: Duration::ZERO,
                    outcome: Err(ClientError::Protocol(
                        "internal error: host task failed".into(),
                    )),
                })
            })
            .collect()
    }
}
