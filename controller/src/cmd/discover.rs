//! `lightsout discover`: broadcast a probe, list the agents that answer, and optionally add
//! them to the inventory.
//!
//! Only agents started with `--discoverable` answer. An answer is a hint, not a proof: the
//! certificate is verified against the lab CA when the controller connects, as for any
//! host. Everything an answer says is sanitised before it is shown, and its name must be a
//! valid inventory name before it is written.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use lightsout_protocol::discovery::{Announcement, PROBE_LEN, probe};
use serde_json::json;
use tokio::net::UdpSocket;

use crate::cmd::inventory::paste_where;
use crate::inventory::ansible::paste_snippet;
use crate::inventory::toml_file::{NewHost, add_hosts};
use crate::inventory::{Inventory, InventoryError, check_name};
use crate::print::Mode;
use crate::render::{self, render_table, sanitize};
use crate::text::natural_cmp;

/// How many times the probe is sent during the listening window (UDP may lose one).
const PROBES: u32 = 3;

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The probe could not be sent or answers received.
    #[error("discovery probe to {broadcast}:{port} failed: {error}")]
    Probe {
        /// Where the probe went.
        broadcast: Ipv4Addr,
        /// The agents' port.
        port: u16,
        /// Why.
        error: std::io::Error,
    },
    /// Writing the hosts found to the inventory.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
}

/// One agent that answered.
#[derive(Debug, Clone)]
pub struct Found {
    /// What it said.
    pub announcement: Announcement,
    /// Where the answer came from.
    pub source: SocketAddr,
}

/// Sends probes to `broadcast:port` and collects answers for `window`.
///
/// # Errors
/// The UDP socket cannot be opened or the probe not sent.
pub async fn probe_lan(
    broadcast: Ipv4Addr,
    port: u16,
    window: Duration,
) -> std::io::Result<Vec<Found>> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    socket.set_broadcast(true)?;
    let destination = SocketAddr::from((broadcast, port));
    let started = Instant::now();
    let deadline = started + window;
    let mut found: Vec<Found> = Vec::new();
    let mut buf = vec![0u8; PROBE_LEN + 1];
    let mut sent = 0;
    loop {
        // Probes at 0, 1/3 and 2/3 of the window.
        let next_probe = started + window * sent / PROBES;
        if sent < PROBES && Instant::now() >= next_probe {
            socket.send_to(&probe(), destination).await?;
            sent += 1;
            continue;
        }
        let until = if sent < PROBES {
            next_probe.min(deadline)
        } else {
            deadline
        };
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match tokio::time::timeout(
            until.saturating_duration_since(now),
            socket.recv_from(&mut buf),
        )
        .await
        {
            Err(_) => continue,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "discovery receive failed");
                continue;
            }
            Ok(Ok((n, source))) => {
                let Ok(a) = Announcement::parse(&buf[..n]) else {
                    tracing::debug!(%source, "ignoring a datagram that is not an announcement");
                    continue;
                };
                let duplicate = found.iter().any(|f| {
                    f.announcement.address == a.address
                        && f.announcement.port == a.port
                        && f.announcement.fingerprint == a.fingerprint
                });
                if !duplicate {
                    found.push(Found {
                        announcement: a,
                        source,
                    });
                }
            }
        }
    }
    found.sort_by(|a, b| {
        natural_cmp(&a.announcement.name, &b.announcement.name)
            .then(a.announcement.address.cmp(&b.announcement.address))
    });
    Ok(found)
}

/// Whether the inventory already has this agent (same name, or same address and port).
fn known(inventory: &Inventory, a: &Announcement) -> Option<String> {
    if inventory.host(&a.name).is_some() {
        return Some(a.name.clone());
    }
    let address = a.address.to_string();
    inventory
        .hosts()
        .find(|h| {
            h.address.as_deref() == Some(address.as_str())
                && h.port.unwrap_or(inventory.default_port) == a.port
        })
        .map(|h| h.name.clone())
}

/// Runs `discover`: probe, print, and with `write` add new agents to the inventory (to
/// `group` too, when given).
///
/// # Errors
/// Sockets, or writing the inventory. With an Ansible inventory, `write` prints the lines to
/// paste into it instead of editing it.
pub async fn run(
    inventory: &Inventory,
    broadcast: Ipv4Addr,
    port: u16,
    window: Duration,
    write: bool,
    group: Option<&str>,
    mode: Mode,
) -> Result<bool, DiscoverError> {
    let ansible = inventory.format.filter(|f| f.is_ansible());
    if mode == Mode::Table {
        eprintln!(
            "probing {broadcast}:{port} for {:.1}s ...",
            window.as_secs_f64()
        );
    }
    let found = probe_lan(broadcast, port, window)
        .await
        .map_err(|error| DiscoverError::Probe {
            broadcast,
            port,
            error,
        })?;
    let today = time::OffsetDateTime::now_utc().date();
    let mut new_hosts = Vec::new();
    let mut rows = Vec::new();
    let mut objects = Vec::new();
    for f in &found {
        let a = &f.announcement;
        let status = match (known(inventory, a), check_name("host", &a.name)) {
            (Some(existing), _) => format!("in inventory as {existing}"),
            (None, Err(_)) => "name not usable in an inventory".to_string(),
            (None, Ok(())) if write => {
                new_hosts.push(NewHost {
                    name: a.name.clone(),
                    address: a.address.to_string(),
                    port: (a.port != inventory.default_port).then_some(a.port),
                    tls_name: (a.name != a.address.to_string()).then(|| a.name.clone()),
                    comment: Some(format!(
                        "found by `lightsout discover` on {today}; certificate SHA-256 {}",
                        a.fingerprint
                    )),
                });
                if ansible.is_some() {
                    "to paste into the inventory".to_string()
                } else {
                    "added to the inventory".to_string()
                }
            }
            (None, Ok(())) => "not in inventory".to_string(),
        };
        rows.push(vec![
            sanitize(&a.name),
            a.address.to_string(),
            a.port.to_string(),
            format!("{}…", &a.fingerprint[..16]),
            status.clone(),
        ]);
        objects.push(json!({
            "name": a.name, "address": a.address, "port": a.port,
            "fingerprint": a.fingerprint, "source": f.source.to_string(), "inventory": status,
        }));
    }
    let paste = ansible.filter(|_| !new_hosts.is_empty()).map(|format| {
        let hosts: Vec<(String, Vec<(&'static str, String)>)> = new_hosts
            .iter()
            .map(|h| {
                let mut vars = vec![("ansible_host", h.address.clone())];
                if let Some(port) = h.port {
                    vars.push(("lightsout_port", port.to_string()));
                }
                if let Some(tls_name) = &h.tls_name {
                    vars.push(("lightsout_tls_name", tls_name.clone()));
                }
                (h.name.clone(), vars)
            })
            .collect();
        (format, paste_snippet(format, &hosts))
    });
    if ansible.is_none() && !new_hosts.is_empty() {
        add_hosts(&inventory.path, &new_hosts, group)?;
    }
    match mode {
        Mode::Table => {
            if found.is_empty() {
                crate::outln!("no agent answered (agents answer only with --discoverable)");
            } else {
                crate::out!(
                    "{}",
                    render_table(
                        &["NAME", "ADDRESS", "PORT", "FINGERPRINT", "INVENTORY"],
                        &rows,
                        &[2]
                    )
                );
                crate::outln!("{} agent{} found", found.len(), plural(found.len()));
            }
            if let Some((format, text)) = &paste {
                crate::outln!(
                    "\nlightsout does not edit Ansible inventories; add these to {} ({}):\n{text}",
                    display(&inventory.path),
                    paste_where(*format)
                );
            } else if !new_hosts.is_empty() {
                crate::outln!(
                    "added {} host{} to {}",
                    new_hosts.len(),
                    plural(new_hosts.len()),
                    display(&inventory.path)
                );
            }
        }
        Mode::Json => crate::outln!(
            "{}",
            render::json_text(&json!({
                "command": "discover", "agents": objects,
                "added": if paste.is_some() { 0 } else { new_hosts.len() },
                "paste": paste.as_ref().map(|(_, text)| text),
            }))
        ),
        Mode::Jsonl => {
            for o in objects {
                crate::outln!("{}", render::json_text(&o));
            }
        }
    }
    Ok(true)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
