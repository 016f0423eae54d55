//! Raw bytes at the wire, before any request: what a port scanner, a browser, a stray client
//! or an impostor sends. Each is turned away, and the agent keeps serving real controllers.

use std::time::{Duration, Instant};

use lightsout_pki::{CertKind, TlsFiles};
use lightsout_protocol::RequestEnvelope;
use lightsout_tests::{
    AgentProcess, Lab, RawClient, client_config, client_config_without_cert, client_hello,
    plain_exchange, try_echo,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Asserts the agent answers a legitimate controller.
async fn still_serves(lab: &Lab, agent: &AgentProcess) {
    let response = try_echo(agent.addr, client_config(&lab.controller_files()))
        .await
        .expect("a valid controller must still be served");
    assert!(
        lightsout_tests::error_kind(&response).is_none(),
        "{response:?}"
    );
}

/// Asserts the agent logged `count` refused handshakes for `reason`, and admitted only the
/// legitimate controllers of [`still_serves`] (one per refusal).
fn assert_rejections(agent: &AgentProcess, count: usize, reason: &str) {
    let refused = |logs: &str| {
        logs.lines()
            .filter(|l| l.contains("TLS handshake rejected"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let logs = agent.wait_for_logs("the refusals and the admissions", |logs| {
        refused(logs).len() >= count && logs.matches("client connected").count() >= count
    });
    assert_eq!(refused(&logs).len(), count, "{logs}");
    assert!(refused(&logs).iter().all(|l| l.contains(reason)), "{logs}");
    assert_eq!(logs.matches("client connected").count(), count, "{logs}");
}

/// What comes back for non-TLS bytes is at most a TLS alert record (content type 21), never
/// anything else, and then the connection is closed.
fn assert_alert_or_nothing(got: &[u8], sent: &str) {
    assert!(
        got.is_empty() || got[0] == 0x15,
        "after {sent}: expected a TLS alert or nothing, got {got:?}"
    );
    assert!(
        !String::from_utf8_lossy(got).contains("HTTP/"),
        "after {sent}: the agent answered like a web server: {got:?}"
    );
}

#[tokio::test]
async fn plaintext_garbage_and_http_are_refused() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);

    let got = plain_exchange(agent.addr, b"hello agent, please shut down\r\n\r\n").await;
    assert_alert_or_nothing(&got, "plaintext garbage");
    still_serves(&lab, &agent).await;

    let got = plain_exchange(
        agent.addr,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
    )
    .await;
    assert_alert_or_nothing(&got, "an HTTP request");
    still_serves(&lab, &agent).await;

    // A frame that would be a valid request, sent without TLS.
    let body = RequestEnvelope::echo("plain", "x").to_bytes();
    let mut framed = (body.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    let got = plain_exchange(agent.addr, &framed).await;
    assert_alert_or_nothing(&got, "a request frame without TLS");
    still_serves(&lab, &agent).await;

    assert_rejections(&agent, 3, "corrupt message");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let err = try_echo(agent.addr, client_config_without_cert(&lab.home.ca_cert()))
        .await
        .expect_err("no client certificate must mean no answer");
    assert!(!err.is_empty());
    still_serves(&lab, &agent).await;
    assert_rejections(&agent, 1, "peer sent no certificates");
}

#[tokio::test]
async fn a_client_certificate_from_a_foreign_ca_is_refused() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    // The impostor trusts our CA (so it accepts the agent), but its own certificate comes
    // from another CA, with the right key usage and an admin-looking name.
    let foreign = lab.foreign(CertKind::Controller, "admin@elsewhere");
    let impostor = TlsFiles {
        ca: lab.home.ca_cert(),
        cert: foreign.cert,
        key: foreign.key,
    };
    try_echo(agent.addr, client_config(&impostor))
        .await
        .expect_err("a foreign client certificate must mean no answer");
    still_serves(&lab, &agent).await;
    assert_rejections(&agent, 1, "UnknownIssuer");
}

#[tokio::test]
async fn an_agent_certificate_cannot_be_used_as_a_controller() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    // Signed by the right CA, but its EKU is serverAuth only: whoever steals a lab machine's
    // key must not be able to command the other machines with it.
    let stolen = TlsFiles {
        ca: lab.home.ca_cert(),
        cert: lab.home.agent_cert(),
        key: lab.home.agent_key(),
    };
    let err = try_echo(agent.addr, client_config(&stolen))
        .await
        .expect_err("an agent certificate must not be accepted from a client");
    assert!(!err.is_empty());
    still_serves(&lab, &agent).await;
    assert_rejections(&agent, 1, "extended key usage for client authentication");
}

#[tokio::test]
async fn abrupt_disconnects_never_disturb_other_clients() {
    let lab = Lab::new();
    let mut agent = AgentProcess::start(&lab, &["--dry-run"]);
    let addr = agent.addr;
    let mut steady = RawClient::connect(&lab, addr).await;
    steady.echo_ok("before").await;

    // Mid-handshake: part of a ClientHello (or all of it), then a reset.
    let hello = client_hello(&lab);
    for cut in [0, 1, 5, hello.len() / 2, hello.len()] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&hello[..cut]).await.unwrap();
        tcp.set_zero_linger().unwrap();
        drop(tcp);
        steady.echo_ok(&format!("after-hello-{cut}")).await;
    }

    // Mid-frame: a verified client sends part of a header, or a header and part of the body,
    // then vanishes without close_notify.
    for partial in [&[0u8, 0][..], &[0, 0, 0, 80, b'{', b'"', b'v']] {
        let mut c = RawClient::connect(&lab, addr).await;
        c.send_raw(partial).await;
        c.reset();
        steady.echo_ok("after-partial-frame").await;
    }

    // A whole request, then a reset before the answer can be read.
    let mut c = RawClient::connect(&lab, addr).await;
    c.send_body(RequestEnvelope::echo("gone", "x").to_bytes())
        .await
        .unwrap();
    c.reset();

    // A verified client that says nothing and vanishes.
    RawClient::connect(&lab, addr).await.reset();

    steady.echo_ok("after-all").await;
    RawClient::connect(&lab, addr)
        .await
        .echo_ok("newcomer")
        .await;
    assert!(agent.is_running());
}

#[tokio::test]
async fn a_silent_or_stalled_handshake_is_cut_off_by_the_deadline() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run", "--handshake-timeout", "1"]);
    let mut steady = RawClient::connect(&lab, agent.addr).await;

    // Nothing at all, and half a ClientHello: both hold a connection open until the agent's
    // handshake deadline closes it (plain_exchange panics if it never does).
    let hello = client_hello(&lab);
    for bytes in [&[][..], &hello[..hello.len() / 2]] {
        let started = Instant::now();
        plain_exchange(agent.addr, bytes).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(5),
            "closed after {took:?}"
        );
    }
    // The established connection is not subject to the handshake deadline.
    steady.echo_ok("still-here").await;
    agent.wait_for_logs("the handshake deadline", |logs| {
        logs.matches("TLS handshake timed out").count() == 2
    });
}
