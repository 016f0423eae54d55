//! Faults: peers that die mid-request, an agent killed and restarted, an agent stopped while
//! requests are in flight. The agent frees what a dead peer held, keeps serving, and on
//! SIGTERM finishes and answers what it accepted before it exits 0.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lightsout_tests::{AgentProcess, Lab};
use tokio::io::AsyncWriteExt;

use lightsout_tests::*;

/// Echoes through the real controller until it succeeds; panics after [`PATIENCE`].
fn echo_eventually(lab: &Lab, target: &str) -> Duration {
    let started = Instant::now();
    loop {
        let run = lab.lightsout(&["--json", "--timeout", "3s", "echo", target]);
        let doc = run.json();
        if run.code == Some(0) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "agent not serving again within {PATIENCE:?}: {doc}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_frame_then_the_peer_dies_frees_its_connection_at_once() {
    let lab = Lab::new();
    // One slot, and timeouts far beyond the test: the slot can only come back because the
    // agent noticed the peer is gone.
    let agent = InProc::start(&lab, |c| {
        c.limits.max_connections = 1;
        c.limits.handshake_timeout = Duration::from_secs(60);
        c.limits.idle_timeout = Duration::from_secs(60);
    })
    .await;
    // The socket dies with a reset (process killed with unread data, machine gone).
    let mut t = tls(&lab, agent.addr).await;
    write_raw(&mut t, &[0, 0, 1, 0, b'{', b'"', b'v']).await;
    let (tcp, _) = t.into_inner();
    reset(tcp);
    assert_served_eventually(&lab, agent.addr).await;

    // The socket is closed (FIN) without a TLS close_notify, half a frame sent. (The slot
    // of the echo just served is freed asynchronously: connect until admitted.)
    let mut t = tls_eventually(&lab, agent.addr).await;
    write_raw(&mut t, &[0, 0, 1, 0, b'{']).await;
    drop(t);
    assert_served_eventually(&lab, agent.addr).await;
    assert!(agent.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_does_not_wait_for_handshakes_or_idle_clients() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, |c| {
        c.limits.handshake_timeout = Duration::from_secs(60);
        c.limits.idle_timeout = Duration::from_secs(60);
        c.limits.shutdown_grace = Duration::from_secs(60);
    })
    .await;
    // A slowloris mid-handshake, a connection that never spoke, an idle authenticated one.
    let mut slowloris = tcp(agent.addr).await;
    slowloris.write_all(&client_hello(&lab)).await.unwrap();
    let mut silent = tcp(agent.addr).await;
    let mut idle = RawClient::connect(&lab, agent.addr).await;
    idle.assert_usable().await;
    let took = agent.stop().await;
    // Nothing in flight: the stop is immediate, not the 60 s of any timeout or grace.
    assert!(took < PATIENCE / 2, "stop took {took:?}");
    expect_closed(&mut slowloris, PATIENCE).await;
    expect_closed(&mut silent, PATIENCE).await;
    expect_closed(idle.stream(), PATIENCE).await;
}

#[test]
fn a_controller_killed_mid_request_leaves_the_agent_serving() {
    let lab = Lab::new();
    let (stand_in, log) = slow_stand_in(&lab, 2.0);
    let mut agent = AgentProcess::start(
        &lab,
        &[
            "--power-command",
            stand_in.to_str().unwrap(),
            "--max-connections",
            "1",
        ],
    );
    // `cancel` runs its command before answering: the controller waits ~2 s for the reply.
    let mut controller = lab
        .controller_cmd()
        .args(["--timeout", "30s", "cancel", &agent.target()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_line(&log, "start -c");
    controller.kill().unwrap(); // SIGKILL, mid-request.
    controller.wait().unwrap();
    // The request it sent is carried out to the end, the reply goes nowhere, the slot is
    // freed and the next controller is served.
    echo_eventually(&lab, &agent.target());
    assert_eq!(log_lines(&log), ["start -c", "done -c"]);
    assert!(agent.is_running());
}

#[test]
fn an_agent_killed_and_restarted_on_the_same_port_binds_at_once() {
    let lab = Lab::new();
    let mut first = AgentProcess::start(&lab, &["--dry-run"]);
    let target = first.target();
    echo_eventually(&lab, &target);
    // Connections open when it dies leave the port with TIME_WAIT state behind.
    let mut held: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(first.addr).unwrap())
        .collect();
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    for s in &mut held {
        let _ = s.set_read_timeout(Some(PATIENCE));
        let _ = s.read(&mut [0u8; 16]);
    }
    drop(held);
    let started = Instant::now();
    let second = AgentProcess::start(&lab, &["--dry-run", "--listen", &target]);
    assert_eq!(second.addr, first.addr);
    echo_eventually(&lab, &target);
    assert!(started.elapsed() < PATIENCE);
}

#[test]
fn sigterm_lets_in_flight_requests_finish_reply_and_exit_0() {
    let lab = Lab::new();
    let (stand_in, log) = slow_stand_in(&lab, 1.0);
    let mut agent = AgentProcess::start(&lab, &["--power-command", stand_in.to_str().unwrap()]);
    // Also pending at SIGTERM: a slowloris and an idle TCP connection. Neither is an
    // in-flight request, so neither may hold up the exit.
    let mut slowloris = std::net::TcpStream::connect(agent.addr).unwrap();
    slowloris.write_all(&client_hello(&lab)).unwrap();
    let _silent = std::net::TcpStream::connect(agent.addr).unwrap();

    let controller = lab
        .controller_cmd()
        .args(["--json", "--timeout", "30s", "cancel", &agent.target()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&log, "start -c");
    let status = agent.terminate(PATIENCE).expect("agent did not exit");
    assert_eq!(status.code(), Some(0));
    // The in-flight cancel finished and its reply arrived.
    let out = controller.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let response = &doc["results"][0]["response"];
    assert_eq!(response["kind"], "cancel", "{doc}");
    assert_eq!(response["exit_code"], 0, "{doc}");
    assert_eq!(log_lines(&log), ["start -c", "done -c"]);
    // And the agent stopped listening.
    assert!(std::net::TcpStream::connect(agent.addr).is_err());
}
