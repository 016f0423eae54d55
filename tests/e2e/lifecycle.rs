//! The agent process as a whole: graceful stop, stop while an action waits, restart on the
//! same port.

use lightsout_tests::{AgentProcess, Lab, PATIENCE, RawClient, log_lines};
use serde_json::json;

#[tokio::test]
async fn sigterm_stops_the_agent_with_exit_status_0() {
    let lab = Lab::new();
    let mut agent = AgentProcess::start(&lab, &["--dry-run"]);
    // An idle client must not hold the agent up (its idle timeout is 30 s).
    let mut idle = RawClient::connect(&lab, agent.addr).await;
    idle.echo_ok("before-stop").await;
    let status = agent
        .terminate(PATIENCE)
        .expect("the agent stops on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", agent.logs());
    assert_eq!(status.code(), Some(0));
    assert!(idle.recv().await.is_none(), "the idle connection is closed");
    let logs = agent.wait_for_logs("the stop", |l| l.contains("agent stopped"));
    assert!(logs.contains("SIGTERM received"), "{logs}");
}

#[test]
fn stopping_during_the_agent_wait_hands_the_action_to_the_system_rounded_up() {
    let lab = Lab::new();
    let (script, log) = lab.stand_in("standin", 0);
    let mut agent = AgentProcess::start(&lab, &["--power-command", script.to_str().unwrap()]);
    let doc = lab.lightsout_json(&["shutdown", &agent.target(), "--delay", "90"], 0);
    let response = &doc["results"][0]["response"];
    assert_eq!(response["agent_wait_secs"], 30);
    assert_eq!(response["argv"], json!(["shutdown", "-h", "+1"]));
    assert!(log_lines(&log).is_empty(), "still waiting in the agent");

    // The agent goes away 30 s early: the action is neither dropped nor brought forward.
    let status = agent
        .terminate(PATIENCE)
        .expect("the agent stops on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", agent.logs());
    assert_eq!(log_lines(&log), ["-h +2"]);
}

#[test]
fn an_agent_restarted_right_after_sigkill_binds_the_same_port() {
    let lab = Lab::new();
    let mut first = AgentProcess::start(&lab, &["--dry-run"]);
    let port = first.addr.port();
    // Leave connection state behind on the port: one finished exchange, one still open.
    lab.lightsout_json(&["echo", &first.target()], 0);
    let open = std::net::TcpStream::connect(first.addr).unwrap();
    first.kill();

    let listen = format!("127.0.0.1:{port}");
    let second = AgentProcess::start(&lab, &["--dry-run", "--listen", &listen]);
    assert_eq!(second.addr.port(), port);
    let doc = lab.lightsout_json(&["--timeout", "3s", "echo", &listen], 0);
    assert_eq!(doc["results"][0]["ok"], true);
    drop(open);
}
