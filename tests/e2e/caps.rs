//! The caps on authenticated connections: per source address, per certificate, and the
//! last slots kept for reserved roles. A certificate that may only ask for echoes must not be
//! able to hold every connection an agent has and lock the administrators out.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lightsout_agent::audit::{AuditLog, Event};
use lightsout_protocol::{ErrorKind, Outcome, RequestEnvelope};
use lightsout_tests::{
    InProc, Lab, PATIENCE, RawClient, assert_error, assert_served_eventually, expect_closed,
    new_id, wait_until,
};

/// One monitor connection from `from` that got its echo answered, or `None` when the agent
/// refused it (closed, or answered `busy`).
async fn monitor_connection(
    config: Arc<rustls::ClientConfig>,
    from: IpAddr,
    addr: std::net::SocketAddr,
) -> Option<RawClient> {
    let mut c = RawClient::connect_from(config, from, addr).await?;
    c.send_body(RequestEnvelope::echo(new_id(), "flood").to_bytes())
        .await
        .ok()?;
    let response = c.recv().await?;
    matches!(response.outcome, Outcome::Ok(_)).then_some(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_flooding_from_twenty_addresses_cannot_lock_the_admin_out() {
    let lab = Lab::new();
    let audit = Arc::new(AuditLog::new(lab.dir.path().join("audit.jsonl")));
    let agent = InProc::start(&lab, |c| {
        // Fewer slots than the default 512 so that the flood fills them quickly; the other
        // caps keep their defaults.
        c.limits.max_connections = 128;
        c.audit = Some(audit.clone());
    })
    .await;
    let monitor = lightsout_tests::client_config(&lab.controller("watcher", Some("monitor")));
    // Two workers per address (127.0.0.2 ... 127.0.0.21), each opening connections and
    // holding every one that gets its echo answered, retrying whenever one is refused.
    let held = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for host in 2..22u8 {
        for _ in 0..2 {
            let (monitor, held, refused) = (monitor.clone(), held.clone(), refused.clone());
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, host));
            let addr = agent.addr;
            flood.spawn(async move {
                let mut kept = Vec::new();
                loop {
                    match monitor_connection(monitor.clone(), from, addr).await {
                        Some(c) => {
                            kept.push(c);
                            held.fetch_add(1, Ordering::SeqCst);
                        }
                        None => {
                            refused.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            });
        }
    }
    // The flood has met its wall: it holds what it can and keeps knocking.
    wait_until("the monitor's flood to be refused repeatedly", || {
        refused.load(Ordering::SeqCst) >= 100
    })
    .await;

    // While it goes on, the admin's `lightsout echo` (default --timeout) is answered.
    let admin_lab = Arc::new(lab);
    let run = {
        let lab = admin_lab.clone();
        let target = agent.addr.to_string();
        tokio::task::spawn_blocking(move || lab.lightsout(&["echo", &target]))
            .await
            .unwrap()
    };
    assert_eq!(run.code, Some(0), "{run:?}");
    let lab = admin_lab;

    let limit = lightsout_agent::Limits::default().max_connections_per_cert;
    assert!(
        held.load(Ordering::SeqCst) <= limit,
        "one certificate held {} connections, over its cap of {limit}",
        held.load(Ordering::SeqCst)
    );
    flood.abort_all();
    // Every refusal is in the audit log (rate-limited: the first ones of the window).
    let refusals: Vec<_> = lightsout_agent::audit::tail(&lab.dir.path().join("audit.jsonl"), 1000)
        .unwrap()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.event == Event::Connection)
        .collect();
    assert!(!refusals.is_empty());
    assert!(refusals.iter().all(|e| {
        e.identity.as_deref() == Some("watcher")
            && e.reason
                .as_deref()
                .is_some_and(|r| r.contains("max_connections_per_cert"))
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_a_cap_are_answered_busy_naming_it_and_admins_keep_their_slots() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, |c| {
        c.limits.max_connections = 8;
        c.limits.reserved_connections = 4;
        c.limits.max_connections_per_cert = 2;
        c.limits.max_connections_per_ip = 5;
    })
    .await;
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let refused_with = |mut c: RawClient, needle: &'static str| async move {
        let request = RequestEnvelope::echo(new_id(), "let me in");
        let response = c.call(&request).await;
        assert_eq!(response.id.as_deref(), Some(request.id.as_str()));
        assert_error(&response, ErrorKind::Busy, needle);
        expect_closed(c.stream(), PATIENCE).await;
    };
    let config =
        |name: &str, role: &str| lightsout_tests::client_config(&lab.controller(name, Some(role)));

    // Per certificate: a monitor's third connection.
    let monitor = config("mon", "monitor");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = RawClient::connect_from(monitor.clone(), local, agent.addr)
            .await
            .unwrap();
        c.assert_usable().await;
        held.push(c);
    }
    let third = RawClient::connect_from(monitor, local, agent.addr)
        .await
        .unwrap();
    refused_with(third, "max_connections_per_cert").await;

    // Reserved slots: other roles stop at 8 - 4 = 4 connections...
    for name in ["op1", "op2"] {
        let mut c = RawClient::connect_from(config(name, "operator"), local, agent.addr)
            .await
            .unwrap();
        c.assert_usable().await;
        held.push(c);
    }
    let over = RawClient::connect_from(
        config("op3", "operator"),
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        agent.addr,
    )
    .await
    .unwrap();
    refused_with(over, "reserved_connections").await;
    // ...and an admin still gets in.
    let mut admin = RawClient::connect(&lab, agent.addr).await;
    admin.assert_usable().await;

    // Per address: 127.0.0.1 now holds 5; the admin's next connection from it is refused,
    // from another address it is served.
    let again = RawClient::connect_from(lab.client_tls(), local, agent.addr)
        .await
        .unwrap();
    refused_with(again, "max_connections_per_ip").await;
    let mut elsewhere = RawClient::connect_from(
        lab.client_tls(),
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
        agent.addr,
    )
    .await
    .unwrap();
    elsewhere.assert_usable().await;

    // Closed connections give their places back (the admin certificate holds its 2 now).
    drop((held, admin, elsewhere));
    assert_served_eventually(&lab, agent.addr).await;
}
