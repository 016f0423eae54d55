//! At-most-once power actions: a retried request (same id, same client certificate) is
//! answered with the original outcome and never executed again; a second action while one
//! is pending is refused with `busy` and the pending action's details; a cancel with nothing
//! pending says so.
//!
//! Every agent here runs a stand-in power command that only appends its arguments to a log,
//! so "executed" is counted in log lines.

use std::time::Duration;

use lightsout_protocol::{ErrorKind, PowerAction, PowerParams, Reply, Request, RequestEnvelope};
use lightsout_tests::Lab;

use lightsout_tests::*;

fn power(id: &str, request: Request) -> RequestEnvelope {
    RequestEnvelope::new(id, false, request)
}

fn shutdown(delay_secs: u64) -> Request {
    Request::Shutdown(PowerParams {
        delay_secs,
        message: Some("lab closes".into()),
        replace: false,
    })
}

/// An agent running `stand_in` for power commands (never dry-run, never the system's).
async fn agent_with(lab: &Lab, stand_in: &std::path::Path) -> InProc {
    let stand_in = stand_in.to_path_buf();
    InProc::start(lab, move |c| {
        c.dry_run = false;
        c.privileged = true;
        c.power_command = Some(stand_in);
    })
    .await
}

/// Waits until the agent reports the last power command as finished (echo health), so
/// that its bookkeeping is settled.
async fn wait_last_action(lab: &Lab, agent: &InProc, request_id: &str) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let mut c = RawClient::connect(lab, agent.addr).await;
        let response = c.call(&RequestEnvelope::echo(new_id(), "status")).await;
        if let Reply::Echo { health, .. } = reply_of(&response) {
            if health
                .last_action
                .as_ref()
                .is_some_and(|a| a.request_id == request_id)
            {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{request_id} never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_request_id_returns_the_original_outcome_and_does_not_execute_again() {
    let lab = Lab::new();
    let (stand_in, log) = lab.stand_in("power", 0);
    let agent = agent_with(&lab, &stand_in).await;
    let request = power("retry-me", shutdown(0));

    let mut first = RawClient::connect(&lab, agent.addr).await;
    let original = first.call(&request).await;
    match reply_of(&original) {
        Reply::Shutdown(r) => {
            assert_eq!(r.action, PowerAction::Shutdown);
            assert_eq!(r.argv, ["shutdown", "-h", "now", "lab closes"]);
            assert!(!r.dry_run);
        }
        other => panic!("{other:?}"),
    }
    wait_last_action(&lab, &agent, "retry-me").await;
    assert_eq!(log_lines(&log), ["-h now lab closes"]);

    // The retry a controller sends after losing the reply: a new connection, same id.
    let mut retry = RawClient::connect(&lab, agent.addr).await;
    assert_eq!(retry.call(&request).await, original);
    // And on the same connection, twice more.
    assert_eq!(first.call(&request).await, original);
    assert_eq!(first.call(&request).await, original);
    // Nothing more ran (give a second execution every chance to show up).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(log_lines(&log), ["-h now lab closes"]);

    // A retry of a refused request is the same refusal, also from memory.
    let busy = first.call(&power("refused", shutdown(60))).await;
    assert_eq!(error_of(&busy).kind, ErrorKind::Busy);
    assert_eq!(retry.call(&power("refused", shutdown(60))).await, busy);
    assert_eq!(log_lines(&log), ["-h now lab closes"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_from_another_certificate_is_another_request() {
    let lab = Lab::new();
    let (stand_in, log) = lab.stand_in("power", 0);
    let agent = agent_with(&lab, &stand_in).await;
    let mut c = RawClient::connect(&lab, agent.addr).await;
    let response = c.call(&power("shared-id", Request::Cancel)).await;
    reply_of(&response);
    // Another controller (its own certificate) happens to use the same id: it is not
    // answered from the first one's memory, its cancel runs.
    let bob = lab.controller("bob@laptop", Some("admin"));
    let t = tls_connect(agent.addr, client_config(&bob)).await.unwrap();
    let mut bob_conn = RawClient::from_stream(t);
    reply_of(&bob_conn.call(&power("shared-id", Request::Cancel)).await);
    assert_eq!(log_lines(&log), ["-c", "-c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_execute_once() {
    let lab = Lab::new();
    // Cancel runs its command before replying: with a 1 s stand-in, a duplicate sent
    // meanwhile arrives while the original is still being carried out.
    let (stand_in, log) = slow_stand_in(&lab, 1.0);
    let agent = agent_with(&lab, &stand_in).await;
    let request = power("twice-at-once", Request::Cancel);
    let mut a = RawClient::connect(&lab, agent.addr).await;
    let mut b = RawClient::connect(&lab, agent.addr).await;
    let first = {
        let request = request.clone();
        tokio::spawn(async move { a.call(&request).await })
    };
    wait_until("the original to start", || {
        log_lines(&log).iter().any(|l| l == "start -c")
    })
    .await;
    let second = b.call(&request).await;
    let first = first.await.unwrap();
    reply_of(&first);
    assert_eq!(second.id.as_deref(), Some("twice-at-once"));
    let e = error_of(&second);
    assert_eq!(e.kind, ErrorKind::Busy);
    assert!(
        e.message.contains("already being carried out"),
        "{}",
        e.message
    );
    // Once finished, the duplicate gets the original outcome.
    assert_eq!(b.call(&request).await, first);
    assert_eq!(log_lines(&log), ["start -c", "done -c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_action_while_one_is_pending_is_busy_with_the_pending_details() {
    let lab = Lab::new();
    let (stand_in, log) = lab.stand_in("power", 0);
    let agent = agent_with(&lab, &stand_in).await;
    let mut c = RawClient::connect(&lab, agent.addr).await;
    // 120 s: handed to the system at once as `shutdown -h +2` (no agent-side wait).
    reply_of(&c.call(&power("first", shutdown(120))).await);
    wait_last_action(&lab, &agent, "first").await;

    let restart = Request::Restart(PowerParams {
        delay_secs: 0,
        message: None,
        replace: false,
    });
    let response = c.call(&power("second", restart)).await;
    let e = error_of(&response);
    assert_eq!(e.kind, ErrorKind::Busy);
    assert!(e.message.contains("replace"), "{}", e.message);
    let pending = e.pending.as_ref().expect("busy carries the pending action");
    assert_eq!(pending.request_id, "first");
    assert_eq!(pending.action, PowerAction::Shutdown);
    assert_eq!(pending.argv, ["shutdown", "-h", "+2", "lab closes"]);
    assert_eq!(pending.message.as_deref(), Some("lab closes"));
    assert!(
        pending.requested_by.contains('@'),
        "{}",
        pending.requested_by
    );
    assert_eq!(log_lines(&log), ["-h +2 lab closes"]);

    // The health snapshot shows the same pending action.
    match reply_of(&c.call(&RequestEnvelope::echo(new_id(), "status")).await) {
        Reply::Echo { health, .. } => {
            assert_eq!(health.pending.as_ref(), Some(&**pending));
        }
        other => panic!("{other:?}"),
    }

    // With replace, the system's action is cancelled first, then the new one scheduled.
    let replace = Request::Restart(PowerParams {
        delay_secs: 0,
        message: None,
        replace: true,
    });
    reply_of(&c.call(&power("third", replace)).await);
    wait_last_action(&lab, &agent, "third").await;
    assert_eq!(log_lines(&log), ["-h +2 lab closes", "-c", "-r now"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_nothing_pending_says_so() {
    let lab = Lab::new();
    let (stand_in, log) = lab.stand_in("power", 0);
    let agent = agent_with(&lab, &stand_in).await;
    let mut c = RawClient::connect(&lab, agent.addr).await;
    let response = c.call(&power("nothing", Request::Cancel)).await;
    match reply_of(&response) {
        Reply::Cancel(r) => {
            assert_eq!(r.cancelled, None);
            assert_eq!(r.argv, ["shutdown", "-c"]);
            // The system's cancel still ran: an action may predate this agent.
            assert_eq!(r.exit_code, Some(0));
            assert_eq!(
                r.outcome,
                Some(lightsout_protocol::response::CancelOutcome::NothingPending)
            );
            assert!(!r.dry_run);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(log_lines(&log), ["-c"]);

    // With something pending, the reply names it.
    reply_of(&c.call(&power("pending", shutdown(300))).await);
    wait_last_action(&lab, &agent, "pending").await;
    match reply_of(&c.call(&power("cancel-it", Request::Cancel)).await) {
        Reply::Cancel(r) => {
            let cancelled = r.cancelled.as_ref().expect("names what it cancelled");
            assert_eq!(cancelled.request_id, "pending");
        }
        other => panic!("{other:?}"),
    }
    // And a dry-run agent says the same without running anything.
    let dry = InProc::start(&lab, |_| {}).await;
    let mut d = RawClient::connect(&lab, dry.addr).await;
    match reply_of(&d.call(&power("dry", Request::Cancel)).await) {
        Reply::Cancel(r) => {
            assert_eq!(r.cancelled, None);
            assert!(r.dry_run);
            assert_eq!(r.exit_code, None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(log_lines(&log), ["-c", "-h +5 lab closes", "-c"]);
}
