//! Sending one kind of request to many hosts at once.
//!
//! Every host gets an outcome: a slow or dead host costs its own deadline and nothing else,
//! and the run never stops at the first failure. Concurrency is capped (`parallel`), and a
//! host's deadline starts when it gets a slot, so hosts waiting their turn do not time out.
//! Hosts run on spawned tasks so the TLS handshakes use every core, and each outcome is handed
//! to the caller as soon as it is known (progress bar, `--jsonl`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use lightsout_protocol::{Request, RequestEnvelope};
use rustls::ClientConfig;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::Client;
use crate::error::ClientError;
use crate::inventory::Host;
use crate::result::{HostOutcome, HostResult};

/// How to reach the hosts.
#[derive(Debug, Clone)]
pub struct FanOut {
    /// Client TLS configuration (our certificate, the CA).
    pub tls: Arc<ClientConfig>,
    /// Name every agent's certificate must match instead of the host as typed (overrides
    /// the inventory's per-host `tls_name`).
    pub tls_name: Option<String>,
    /// Deadline per host: connect, handshake, request and response together.
    pub timeout: Duration,
    /// Most hosts in flight at once.
    pub parallel: usize,
}

/// A fresh request id: unique per host and per attempt, so agents can recognise a retry.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A health check request.
pub fn echo_request(payload: &str) -> RequestEnvelope {
    RequestEnvelope::new(
        new_request_id(),
        false,
        Request::Echo {
            payload: payload.to_owned(),
        },
    )
}

impl FanOut {
    /// One request to one host, under the deadline.
    pub async fn one(&self, host: &Host, request: &RequestEnvelope) -> HostResult {
        let started = Instant::now();
        let tls_name = self.tls_name.as_deref().or(host.tls_name.as_deref());
        let exchange = async {
            let mut client = Client::connect(&host.target, self.tls.clone(), tls_name).await?;
            let not_after = client.peer_cert().cloned();
            let response = client.call(request).await?;
            client.close(Duration::from_millis(200)).await;
            Ok((response, not_after))
        };
        let (outcome, agent_cert) = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok((response, not_after))) => (HostOutcome::Response(response), not_after),
            Ok(Err(e)) => (HostOutcome::Error(e), None),
            Err(_) => (HostOutcome::Error(ClientError::Timeout(self.timeout)), None),
        };
        HostResult {
            host: host.clone(),
            elapsed: started.elapsed(),
            outcome,
            wait: None,
            agent_cert,
        }
    }

    /// Sends `make_request(host)` to every host, calling `on_done` with each result as it
    /// arrives; returns the results in the hosts' order.
    pub async fn run<F, D>(
        &self,
        hosts: &[Host],
        make_request: F,
        mut on_done: D,
    ) -> Vec<HostResult>
    where
        F: Fn(&Host) -> RequestEnvelope,
        D: FnMut(&HostResult),
    {
        let slots = Arc::new(Semaphore::new(self.parallel.max(1)));
        let mut set = JoinSet::new();
        for (index, host) in hosts.iter().enumerate() {
            let request = make_request(host);
            let this = self.clone();
            let host = host.clone();
            let slots = slots.clone();
            set.spawn(async move {
                // The semaphore is never closed, so acquiring only waits.
                let _slot = slots.acquire_owned().await;
                (index, this.one(&host, &request).await)
            });
        }
        let mut results: Vec<Option<HostResult>> = hosts.iter().map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((index, result)) => {
                    on_done(&result);
                    results[index] = Some(result);
                }
                Err(e) => tracing::error!(error = %e, "a host task panicked"),
            }
        }
        results
            .into_iter()
            .zip(hosts)
            .map(|(r, h)| {
                r.unwrap_or_else(|| {
                    HostResult::new(
                        h.clone(),
                        HostOutcome::Error(ClientError::Protocol(
                            "internal error: host task failed".into(),
                        )),
                    )
                })
            })
            .collect()
    }
}
