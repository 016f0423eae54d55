//! What floods cost an agent process: memory stays bounded with a thousand half-open
//! connections, a flood of handshakes, hundreds of idle authenticated connections and a peer
//! announcing a 4 GiB frame.
//!
//! The figures the README quotes (memory holding 1,000 idle TLS connections, how long slow
//! clients survive the default deadlines) are measured by the benchmark (`bench/`), against
//! release builds.

use lightsout_protocol::ErrorKind;
use lightsout_tests::Lab;
use tokio::io::AsyncWriteExt;

use lightsout_tests::*;

/// Growth allowed over the idle agent's resident memory. Generous: the point is "bounded",
/// not a figure (a leak or a buffered 4 GiB frame would be far beyond it).
const MAX_GROWTH_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_floods() {
    let lab = Lab::new();
    // Every flood comes from 127.0.0.1 with one certificate here, standing for many
    // machines: lift the per-address and per-certificate caps (tested in hostile.rs and
    // caps.rs).
    let agent = spawn_agent(
        &lab,
        &[
            "--dry-run",
            "--max-connections",
            "2000",
            "--max-handshakes-per-ip",
            "2000",
            "--max-connections-per-ip",
            "2000",
            "--max-connections-per-cert",
            "2000",
        ],
    );
    let pid = agent.child.id();
    // Counted before any client: a connection just closed may still hold a descriptor.
    let sockets = open_sockets(pid);
    assert_served(&lab, agent.addr).await;
    let baseline = rss_kib(pid);
    let mut figures = vec![("idle agent", baseline)];

    // A thousand half-open connections: TCP up, TLS never started.
    let mut half_open = Vec::new();
    for _ in 0..1000 {
        half_open.push(tcp(agent.addr).await);
    }
    wait_sockets(pid, sockets + 1000, true).await;
    figures.push(("1000 half-open connections", rss_kib(pid)));
    assert_served(&lab, agent.addr).await;
    drop(half_open);
    wait_sockets(pid, sockets + 10, false).await;

    // A peer announcing a 4 GiB frame: refused from the header, nothing buffered.
    let mut c = RawClient::connect(&lab, agent.addr).await;
    c.send_raw(&header(u32::MAX)).await;
    c.stream().write_all(&[b'x'; 16 * 1024]).await.ok();
    let response = c.response().await;
    assert_error(&response, ErrorKind::BadRequest, "exceeds the maximum");
    figures.push(("after a 4 GiB frame header", rss_kib(pid)));

    // A flood of handshakes, each connection closed right after.
    let flood = tls_many(&lab, agent.addr, 300, 50).await;
    drop(flood);
    figures.push(("after 300 handshakes", rss_kib(pid)));

    // Hundreds of authenticated connections held idle.
    let idle = tls_many(&lab, agent.addr, 300, 50).await;
    wait_sockets(pid, sockets + 300, true).await;
    figures.push(("300 idle TLS connections", rss_kib(pid)));
    assert_served(&lab, agent.addr).await;
    drop(idle);

    for (what, kib) in &figures {
        eprintln!("agent RSS, {what}: {kib} KiB");
        assert!(
            kib.saturating_sub(baseline) < MAX_GROWTH_KIB,
            "{what}: {kib} KiB against {baseline} KiB idle"
        );
    }
}
