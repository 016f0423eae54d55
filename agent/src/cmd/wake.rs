//! `wake`: send Wake-on-LAN magic packets on the controller's behalf.
//!
//! A controller outside a lab's LAN cannot broadcast into it; an awake agent inside can. The
//! request carries only MAC addresses (parsed strictly by the protocol), a broadcast address
//! and a port, and the agent sends only to addresses that are broadcasts of its own networks:
//! the limited broadcast `255.255.255.255`, the directed broadcast of one of its IPv4
//! networks, or loopback (harmless; used by tests). A fixed 102-byte packet per MAC to a
//! broadcast address is all it can be made to send, and only to the standard Wake-on-LAN
//! ports (7 and 9) unless the agent's configuration allows others (`[wake] ports`): a
//! certificate that may wake cannot aim packets at other UDP services.
//!
//! Waking machines runs no command and takes no machine down, so the agent's dry-run mode
//! does not apply; the request's own `dry_run` flag rehearses it. No privilege is needed.

use std::net::{Ipv4Addr, SocketAddr};

use lightsout_protocol::wake::{broadcast_socket, send_magic_packets};
use lightsout_protocol::{ErrorKind, Reply, Response, WakeParams, WakeReply};
use tracing::info;

use crate::rate::{BUDGET_WINDOW, PACKETS_PER_WINDOW, WakeBudget};

/// Sends (or rehearses) the magic packets to one of `ports`, within the agent-wide `budget`.
pub fn run(
    id: &str,
    params: &WakeParams,
    dry_run: bool,
    ports: &[u16],
    budget: &WakeBudget,
) -> Response {
    let refuse = |kind, message: String| Response::error(Some(id.to_owned()), kind, message);
    if let Err(e) = params.validate() {
        return refuse(ErrorKind::BadRequest, e.to_string());
    }
    let (broadcast, port) = params.destination();
    if !ports.contains(&port) {
        let allowed: Vec<String> = ports.iter().map(ToString::to_string).collect();
        return refuse(
            ErrorKind::BadRequest,
            format!(
                "port {port} is not a Wake-on-LAN port this agent sends to ({}); an administrator can allow others with [wake] ports in the agent's configuration",
                allowed.join(", ")
            ),
        );
    }
    if let Err((kind, e)) = check_destination(broadcast) {
        return refuse(kind, e);
    }
    // Each MAC once, in the order given: what `send_magic_packets` sends, rehearsed or not.
    let mut macs = Vec::with_capacity(params.macs.len());
    for mac in &params.macs {
        if !macs.contains(mac) {
            macs.push(*mac);
        }
    }
    if dry_run {
        info!(request_id = %id, count = macs.len(), %broadcast, port, "dry run: would send magic packets");
        return Response::ok(
            id,
            Reply::Wake(WakeReply {
                sent: macs,
                broadcast,
                port,
                dry_run: true,
            }),
        );
    }
    if !budget.try_take(macs.len()) {
        return refuse(
            ErrorKind::Busy,
            format!(
                "wake rate limit: this agent sends at most {PACKETS_PER_WINDOW} magic packets per {}s; send the rest later",
                BUDGET_WINDOW.as_secs()
            ),
        );
    }
    let result = broadcast_socket()
        .and_then(|socket| send_magic_packets(&socket, &macs, SocketAddr::from((broadcast, port))));
    match result {
        Ok(sent) => {
            info!(request_id = %id, count = sent.len(), %broadcast, port, "magic packets sent");
            Response::ok(
                id,
                Reply::Wake(WakeReply {
                    sent,
                    broadcast,
                    port,
                    dry_run: false,
                }),
            )
        }
        Err(e) => refuse(
            ErrorKind::Internal,
            format!("cannot send magic packets to {broadcast}:{port}: {e}"),
        ),
    }
}

/// Whether this agent may send to `addr`: see the module documentation. The error says
/// whose fault it is: `bad_request` for a destination that is not allowed, `internal` when
/// this machine's networks cannot be listed.
fn check_destination(addr: Ipv4Addr) -> Result<(), (ErrorKind, String)> {
    if addr == Ipv4Addr::BROADCAST || addr.is_loopback() {
        return Ok(());
    }
    let networks = if_addrs::get_if_addrs().map_err(|e| {
        (
            ErrorKind::Internal,
            format!("cannot list this machine's networks: {e}"),
        )
    })?;
    let directed: Vec<Ipv4Addr> = networks
        .iter()
        .filter_map(|i| match &i.addr {
            if_addrs::IfAddr::V4(v4) if !v4.ip.is_loopback() => Some(directed_broadcast(v4)),
            _ => None,
        })
        .collect();
    if directed.contains(&addr) {
        Ok(())
    } else {
        let known: Vec<String> = directed.iter().map(ToString::to_string).collect();
        Err((
            ErrorKind::BadRequest,
            format!(
                "{addr} is not a broadcast address of this machine's networks (255.255.255.255{}{})",
                if known.is_empty() { "" } else { ", " },
                known.join(", ")
            ),
        ))
    }
}

fn directed_broadcast(v4: &if_addrs::Ifv4Addr) -> Ipv4Addr {
    v4.broadcast
        .unwrap_or_else(|| Ipv4Addr::from(u32::from(v4.ip) | !u32::from(v4.netmask)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_broadcast_destinations() {
        assert!(check_destination(Ipv4Addr::BROADCAST).is_ok());
        assert!(check_destination(Ipv4Addr::LOCALHOST).is_ok());
        // A unicast address on no network of this machine (documentation range).
        let (kind, err) = check_destination(Ipv4Addr::new(192, 0, 2, 1)).unwrap_err();
        assert_eq!(kind, ErrorKind::BadRequest);
        assert!(err.contains("not a broadcast address"), "{err}");
    }

    #[test]
    fn rehearsal_sends_nothing_and_bad_destinations_are_refused() {
        let params = WakeParams {
            macs: vec!["52:54:00:00:00:01".parse().unwrap()],
            broadcast: Some(Ipv4Addr::new(192, 0, 2, 1)),
            port: None,
        };
        match run("w1", &params, true, &[9], &WakeBudget::default()).outcome {
            lightsout_protocol::Outcome::Error(e) => assert_eq!(e.kind, ErrorKind::BadRequest),
            other => panic!("{other:?}"),
        }
        let params = WakeParams {
            broadcast: Some(Ipv4Addr::LOCALHOST),
            ..params
        };
        match run("w2", &params, true, &[9], &WakeBudget::default()).outcome {
            lightsout_protocol::Outcome::Ok(Reply::Wake(w)) => {
                assert!(w.dry_run);
                assert_eq!((w.broadcast, w.port), (Ipv4Addr::LOCALHOST, 9));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_the_allowed_ports() {
        let params = WakeParams {
            macs: vec!["52:54:00:00:00:01".parse().unwrap()],
            broadcast: Some(Ipv4Addr::LOCALHOST),
            port: Some(53),
        };
        match run("w4", &params, true, &[7, 9], &WakeBudget::default()).outcome {
            lightsout_protocol::Outcome::Error(e) => {
                assert_eq!(e.kind, ErrorKind::BadRequest);
                assert!(
                    e.message.contains("port 53") && e.message.contains("7, 9"),
                    "{}",
                    e.message
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run("w5", &params, true, &[53], &WakeBudget::default()).outcome,
            lightsout_protocol::Outcome::Ok(_)
        ));
    }

    #[test]
    fn the_agent_wide_budget_refuses_a_storm() {
        let budget = WakeBudget::default();
        assert!(budget.try_take(PACKETS_PER_WINDOW as usize - 1));
        assert!(budget.try_take(1));
        assert!(!budget.try_take(1), "the window's allowance is spent");
        // A real (not rehearsed) request is then refused with busy before anything is sent.
        let params = WakeParams {
            macs: vec!["52:54:00:00:00:01".parse().unwrap()],
            broadcast: Some(Ipv4Addr::LOCALHOST),
            port: None,
        };
        match run("w3", &params, false, &[9], &budget).outcome {
            lightsout_protocol::Outcome::Error(e) => {
                assert_eq!(e.kind, ErrorKind::Busy);
                assert!(e.message.contains("wake rate limit"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
    }
}
