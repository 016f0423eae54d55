//! `lightsout inventory list` and `lightsout inventory learn`.

use std::path::PathBuf;

use lightsout_protocol::{InterfaceMac, MacAddr, Reply};
use serde_json::json;

use crate::error::ClientError;
use crate::fanout::{FanOut, echo_request};
use crate::inventory::ansible::paste_snippet;
use crate::inventory::toml_file::record_macs;
use crate::inventory::{Host, Inventory, InventoryError};
use crate::print::{Live, Mode};
use crate::render::{self, render_table, sanitize};
use crate::result::{HostOutcome, HostResult, Status};

/// Interface name prefixes of virtual links (containers, VMs, VPNs, bridges): their MACs
/// cannot wake the machine, so `learn` leaves them out.
/// Why `inventory learn` cannot record MAC addresses.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// There is no inventory file to record them in.
    #[error(
        "no inventory at {} to record MAC addresses in (see inventory.example.toml, or `lightsout discover --write-inventory`)",
        .0.display()
    )]
    NoInventory(PathBuf),
    /// Writing the inventory.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
}

const VIRTUAL_PREFIXES: [&str; 20] = [
    "docker",
    "veth",
    "br-",
    "virbr",
    "vnet",
    "tun",
    "tap",
    "lxc",
    "lxd",
    "cni",
    "flannel",
    "cali",
    "vxlan",
    "wg",
    "zt",
    "tailscale",
    "kube",
    "vmnet",
    "vboxnet",
    "dummy",
];

/// The MACs worth recording from an agent's list: valid, unicast, not of a virtual link.
pub fn usable_macs(reported: &[InterfaceMac]) -> Vec<MacAddr> {
    let mut macs: Vec<MacAddr> = reported
        .iter()
        .filter(|m| !VIRTUAL_PREFIXES.iter().any(|p| m.interface.starts_with(p)))
        .filter_map(|m| MacAddr::parse(&m.mac).ok())
        .collect();
    macs.dedup();
    macs
}

/// `inventory list`: what the targets resolve to.
pub fn list(inventory: &Inventory, hosts: &[Host], mode: Mode) {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            let groups = h
                .name
                .as_deref()
                .map(|n| inventory.groups_of(n).join(","))
                .unwrap_or_default();
            vec![
                sanitize(h.name.as_deref().unwrap_or("-")),
                sanitize(&h.target.host),
                h.target.port.to_string(),
                h.macs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                sanitize(h.tls_name.as_deref().unwrap_or("")),
                groups,
                sanitize(&address_source(h)),
            ]
        })
        .collect();
    let objects: Vec<serde_json::Value> = hosts
        .iter()
        .map(|h| {
            json!({
                "name": h.name, "address": h.target.host, "port": h.target.port,
                "target": h.target.to_string(), "macs": h.macs, "tls_name": h.tls_name,
                "address_source": address_source(h),
                "groups": h.name.as_deref().map(|n| inventory.groups_of(n)).unwrap_or_default(),
            })
        })
        .collect();
    match mode {
        Mode::Table => {
            crate::out!(
                "{}",
                render_table(
                    &[
                        "NAME",
                        "ADDRESS",
                        "PORT",
                        "MAC",
                        "TLS-NAME",
                        "GROUPS",
                        "ADDRESS-FROM"
                    ],
                    &rows,
                    &[2]
                )
            );
            let source = match inventory.format {
                Some(f) => format!("{} ({f})", inventory.path.display()),
                None => format!("no inventory at {}", inventory.path.display()),
            };
            crate::outln!(
                "{} host{} — {source}",
                hosts.len(),
                if hosts.len() == 1 { "" } else { "s" }
            );
        }
        Mode::Json => crate::outln!(
            "{}",
            render::json_text(&json!({
                "inventory": inventory.path, "format": inventory.format.map(|f| f.to_string()),
                "hosts": objects,
            }))
        ),
        Mode::Jsonl => {
            for o in objects {
                crate::outln!("{}", render::json_text(&o));
            }
        }
    }
}

/// `inventory learn`: echo the hosts, record their MACs in a TOML inventory, or print the
/// lines to paste into an Ansible inventory (which lightsout does not edit).
///
/// # Errors
/// There is no inventory, or the TOML file cannot be written.
pub async fn learn(
    fanout: &FanOut,
    inventory: &Inventory,
    hosts: Vec<Host>,
    mode: Mode,
) -> Result<bool, LearnError> {
    let ansible = match inventory.format {
        Some(f) if f.is_ansible() => Some(f),
        Some(_) => None,
        None => return Err(LearnError::NoInventory(inventory.path.clone())),
    };
    let live = Live::new("learn", mode, hosts.len());
    let (known, unknown): (Vec<Host>, Vec<Host>) =
        hosts.into_iter().partition(|h| h.name.is_some());
    let mut results: Vec<HostResult> = unknown
        .into_iter()
        .map(|h| {
            let r = HostResult::new(
                h,
                HostOutcome::Skipped("not in the inventory: add it first".into()),
            );
            live.done(&r);
            r
        })
        .collect();
    let echoed = fanout.run(&known, |_| echo_request("learn"), |_| {}).await;
    let mut updates = Vec::new();
    for mut r in echoed {
        if let Some(Reply::Echo { health, .. }) = r.reply() {
            let macs = usable_macs(&health.macs);
            r.outcome = if macs.is_empty() {
                HostOutcome::Error(ClientError::NoMac(
                    "the agent reports no usable MAC address (this platform may not tell)".into(),
                ))
            } else {
                let name = r.host.name.clone().unwrap_or_default();
                let text = macs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                let already = r.host.macs == macs;
                let detail = match (already, ansible) {
                    (true, _) => format!("already recorded: {text}"),
                    (false, None) => format!("recorded {text}"),
                    (false, Some(_)) => format!("to paste: {text}"),
                };
                let paste = ansible.filter(|_| !already).map(|f| {
                    paste_snippet(
                        f,
                        &[(name.clone(), vec![("lightsout_mac", mac_list(&macs))])],
                    )
                });
                if !already {
                    updates.push((name, macs.clone()));
                }
                HostOutcome::Done {
                    detail,
                    data: json!({"kind": "learn", "macs": macs, "paste": paste}),
                }
            };
        }
        live.done(&r);
        results.push(r);
    }
    match ansible {
        None if !updates.is_empty() => record_macs(&inventory.path, &updates)?,
        _ => {}
    }
    live.finish(&results);
    if let Some(format) = ansible.filter(|_| !updates.is_empty() && mode == Mode::Table) {
        let hosts: Vec<(String, Vec<(&'static str, String)>)> = updates
            .iter()
            .map(|(name, macs)| (name.clone(), vec![("lightsout_mac", mac_list(macs))]))
            .collect();
        crate::outln!(
            "\nlightsout does not edit Ansible inventories; add these to {} ({}):\n{}",
            inventory.path.display(),
            paste_where(format),
            paste_snippet(format, &hosts)
        );
    }
    Ok(results.iter().all(|r| r.status() != Status::Failed))
}

/// Where a host's address comes from: the inventory's setting, else its name, else the target
/// as typed.
fn address_source(h: &Host) -> String {
    match (&h.address_source, &h.name) {
        (Some(source), _) => source.clone(),
        (None, Some(_)) => "the host's name".to_owned(),
        (None, None) => "the target as typed".to_owned(),
    }
}

/// MACs as one comma-separated value, as `lightsout_mac` takes them.
fn mac_list(macs: &[MacAddr]) -> String {
    macs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Where the lines of [`paste_snippet`] go.
pub(crate) fn paste_where(format: crate::inventory::Format) -> &'static str {
    if format == crate::inventory::Format::Ansible {
        "the variables at the end of each host's line"
    } else {
        "under a group's `hosts:`, or as the contents of host_vars/NAME.yml without the first line"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_and_invalid_macs_are_left_out() {
        let m = |i: &str, mac: &str| InterfaceMac {
            interface: i.into(),
            mac: mac.into(),
        };
        let got = usable_macs(&[
            m("eth0", "52:54:00:00:00:01"),
            m("docker0", "02:42:ac:11:00:01"),
            m("veth12ab", "9a:00:00:00:00:01"),
            m("wlan0", "not-a-mac"),
            m("enp3s0", "01:00:5e:00:00:01"),
            m("enp4s0", "52:54:00:00:00:02"),
        ]);
        assert_eq!(
            got.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["52:54:00:00:00:01", "52:54:00:00:00:02"]
        );
    }
}
