//! `lightsout wake`: Wake-on-LAN magic packets for the MAC addresses in the inventory, sent
//! by the controller itself or, with `--via HOST`, by an awake agent inside the lab's LAN.
//!
//! Packets only ever go to the broadcast address given (default `255.255.255.255`) and port
//! (default 9). One packet per MAC; a host with several cards gets one per card.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use lightsout_protocol::wake::{MAX_WAKE_MACS, broadcast_socket, send_magic_packets};
use lightsout_protocol::{MacAddr, Outcome, Reply, Request, RequestEnvelope, WakeParams};
use serde_json::json;

use crate::error::ClientError;
use crate::fanout::{FanOut, new_request_id};
use crate::inventory::Host;
use crate::print::{Live, Mode};
use crate::render;
use crate::result::{HostOutcome, HostResult};

/// Where the packets go.
/// Why no magic packet was sent at all (a host without a MAC is a failed host instead).
#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    /// The targets resolved to no host.
    #[error("no hosts to wake")]
    NoHosts,
    /// The controller cannot broadcast.
    #[error("cannot open a UDP socket for magic packets: {0}")]
    Socket(std::io::Error),
}

#[derive(Debug, Clone, Copy)]
pub struct Destination {
    /// Broadcast address.
    pub broadcast: Ipv4Addr,
    /// UDP port.
    pub port: u16,
}

fn no_mac(host: &Host) -> HostOutcome {
    HostOutcome::Error(ClientError::NoMac(format!(
        "no MAC address known for {}: add `mac = \"...\"` to its inventory entry, or run `lightsout inventory learn {}` while it is up",
        host.label(),
        host.label()
    )))
}

fn macs_text(macs: &[MacAddr]) -> String {
    macs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sends the packets from this machine.
///
/// # Errors
/// No hosts, or no UDP socket could be opened.
pub fn direct(
    hosts: &[Host],
    to: Destination,
    dry_run: bool,
    mode: Mode,
) -> Result<bool, WakeError> {
    if hosts.is_empty() {
        return Err(WakeError::NoHosts);
    }
    let socket = broadcast_socket().map_err(WakeError::Socket)?;
    let destination = SocketAddr::from((to.broadcast, to.port));
    let live = Live::new("wake", mode, hosts.len());
    let mut results = Vec::new();
    for host in hosts {
        let started = Instant::now();
        let outcome = if host.macs.is_empty() {
            no_mac(host)
        } else if dry_run {
            HostOutcome::Done {
                detail: format!(
                    "dry run: would send magic packets for {} to {destination}",
                    macs_text(&host.macs)
                ),
                data: json!({"kind": "wake", "sent": host.macs, "broadcast": to.broadcast,
                             "port": to.port, "dry_run": true, "via": null}),
            }
        } else {
            match send_magic_packets(&socket, &host.macs, destination) {
                Ok(sent) => HostOutcome::Done {
                    detail: format!(
                        "magic packets sent for {} to {destination}",
                        macs_text(&sent)
                    ),
                    data: json!({"kind": "wake", "sent": sent, "broadcast": to.broadcast,
                                 "port": to.port, "dry_run": false, "via": null}),
                },
                Err(e) => HostOutcome::Error(ClientError::Io(format!(
                    "cannot send to {destination}: {e}"
                ))),
            }
        };
        let mut r = HostResult::new(host.clone(), outcome);
        r.elapsed = started.elapsed();
        live.done(&r);
        results.push(r);
    }
    live.finish(&results);
    Ok(results.iter().all(HostResult::ok))
}

/// Asks the agent `via` to send the packets (one request per up to [`MAX_WAKE_MACS`] MACs).
///
/// # Errors
/// No hosts.
pub async fn via(
    fanout: &FanOut,
    relay: &Host,
    hosts: &[Host],
    to: Destination,
    dry_run: bool,
    mode: Mode,
) -> Result<bool, WakeError> {
    if hosts.is_empty() {
        return Err(WakeError::NoHosts);
    }
    let live = Live::new("wake", mode, hosts.len());
    let mut results = Vec::new();
    // Hosts grouped into requests of at most MAX_WAKE_MACS MACs.
    let mut chunks: Vec<Vec<&Host>> = vec![Vec::new()];
    let mut in_chunk = 0;
    for host in hosts {
        if host.macs.is_empty() {
            let r = HostResult::new(host.clone(), no_mac(host));
            live.done(&r);
            results.push(r);
            continue;
        }
        if in_chunk + host.macs.len() > MAX_WAKE_MACS && in_chunk > 0 {
            chunks.push(Vec::new());
            in_chunk = 0;
        }
        in_chunk += host.macs.len();
        if let Some(last) = chunks.last_mut() {
            last.push(host);
        }
    }
    let relay_label = relay.label();
    for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
        let macs: Vec<MacAddr> = chunk.iter().flat_map(|h| h.macs.clone()).collect();
        let request = RequestEnvelope::new(
            new_request_id(),
            dry_run,
            Request::Wake(WakeParams {
                macs,
                broadcast: Some(to.broadcast),
                port: Some(to.port),
            }),
        );
        let answer = fanout.one(relay, &request).await;
        for host in chunk {
            let outcome = match &answer.outcome {
                HostOutcome::Response(response) => match &response.outcome {
                    Outcome::Ok(Reply::Wake(w)) if host.macs.iter().all(|m| w.sent.contains(m)) => {
                        let mut data = serde_json::to_value(w).unwrap_or_default();
                        data["kind"] = json!("wake");
                        data["sent"] = json!(host.macs);
                        data["via"] = json!(relay_label);
                        HostOutcome::Done {
                            detail: render::wake_via_detail(
                                &lightsout_protocol::WakeReply {
                                    sent: host.macs.clone(),
                                    ..w.clone()
                                },
                                &relay_label,
                            ),
                            data,
                        }
                    }
                    Outcome::Ok(_) => HostOutcome::Error(ClientError::Protocol(format!(
                        "{relay_label} did not report sending this host's packets"
                    ))),
                    Outcome::Error(_) => HostOutcome::Response(response.clone()),
                },
                HostOutcome::Error(e) => HostOutcome::Error(e.clone()),
                HostOutcome::Skipped(s) => HostOutcome::Skipped(s.clone()),
                HostOutcome::Done { detail, data } => HostOutcome::Done {
                    detail: detail.clone(),
                    data: data.clone(),
                },
            };
            let mut r = HostResult::new(host.clone(), outcome);
            r.elapsed = answer.elapsed;
            live.done(&r);
            results.push(r);
        }
    }
    let order = |r: &HostResult| hosts.iter().position(|h| h.target == r.host.target);
    results.sort_by_key(order);
    live.finish(&results);
    Ok(results.iter().all(HostResult::ok))
}
