//! Raw frames from a verified controller: every malformed request gets an error reply with a
//! stable kind, the connection survives what it can survive, and the framing limits hold.

use lightsout_protocol::{
    ErrorKind, MAX_FRAME_LEN, Outcome, PROTOCOL_VERSION, Reply, RequestEnvelope,
};
use lightsout_tests::{AgentProcess, Lab, RawClient, error_of};

async fn dry_run_agent() -> (Lab, AgentProcess, RawClient) {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let client = RawClient::connect(&lab, agent.addr).await;
    (lab, agent, client)
}

#[tokio::test]
async fn bad_json_then_a_valid_echo_on_the_same_connection() {
    let (_lab, _agent, mut client) = dry_run_agent().await;
    let response = client.call_body(&b"{\"version\":1,\"id\":"[..]).await;
    let error = error_of(&response);
    assert_eq!(error.kind, ErrorKind::BadRequest);
    assert!(error.message.contains("not valid JSON"), "{error:?}");
    assert_eq!(response.id, None, "no id can be read from broken JSON");
    assert_eq!(response.version, PROTOCOL_VERSION);
    client.echo_ok("after-bad-json").await;
}

/// Each malformed request, on ONE connection, followed each time by a valid echo: a request
/// the agent cannot read is answered and costs nothing else.
#[tokio::test]
async fn every_recoverable_error_is_answered_and_the_connection_keeps_working() {
    let (_lab, _agent, mut client) = dry_run_agent().await;
    // (body, expected kind, expected id echoed, fragment of the message)
    let cases: &[(&[u8], ErrorKind, Option<&str>, &str)] = &[
        (b"", ErrorKind::BadRequest, None, "not valid JSON"),
        (b"null", ErrorKind::BadRequest, None, "not valid JSON"),
        (b"\xff\xfe{}", ErrorKind::BadRequest, None, "UTF-8"),
        (
            br#"{"version":1,"id":"k1","request":{"kind":"exec","cmd":"rm -rf /"}}"#,
            ErrorKind::BadRequest,
            Some("k1"),
            "unknown variant",
        ),
        (
            br#"{"version":2,"id":"v2","request":{"kind":"echo"}}"#,
            ErrorKind::UnsupportedVersion,
            Some("v2"),
            "version 2",
        ),
        (
            br#"{"version":"1","id":"vs","request":{"kind":"echo"}}"#,
            ErrorKind::UnsupportedVersion,
            Some("vs"),
            "not supported",
        ),
        (
            br#"{"id":"nv","request":{"kind":"echo"}}"#,
            ErrorKind::BadRequest,
            Some("nv"),
            "no protocol version",
        ),
        (
            br#"{"version":1,"id":"f1","request":{"kind":"echo","payload":"x","command":"id"}}"#,
            ErrorKind::BadRequest,
            Some("f1"),
            "unknown field",
        ),
        (
            br#"{"version":1,"id":"f2","shell":true,"request":{"kind":"cancel"}}"#,
            ErrorKind::BadRequest,
            Some("f2"),
            "unknown field",
        ),
        (
            br#"{"version":1,"id":"t1","request":{"kind":"shutdown","delay_secs":"soon"}}"#,
            ErrorKind::BadRequest,
            Some("t1"),
            "invalid",
        ),
        (
            br#"{"version":1,"id":"","request":{"kind":"echo"}}"#,
            ErrorKind::BadRequest,
            None,
            "request id",
        ),
        // Whitelisted kinds with values outside the limits.
        (
            br#"{"version":1,"id":"m1","request":{"kind":"shutdown","message":"-c"}}"#,
            ErrorKind::BadRequest,
            Some("m1"),
            "must not start with '-'",
        ),
        (
            br#"{"version":1,"id":"m2","request":{"kind":"restart","message":"\u001b[2Jhi"}}"#,
            ErrorKind::BadRequest,
            Some("m2"),
            "control characters",
        ),
        (
            br#"{"version":1,"id":"d1","request":{"kind":"shutdown","delay_secs":999999999}}"#,
            ErrorKind::BadRequest,
            Some("d1"),
            "exceeds the maximum",
        ),
    ];
    for (i, (body, kind, id, fragment)) in cases.iter().enumerate() {
        let response = client.call_body(body.to_vec()).await;
        let shown = String::from_utf8_lossy(body);
        let error = error_of(&response);
        assert_eq!(error.kind, *kind, "{shown}: {error:?}");
        assert_eq!(response.id.as_deref(), *id, "{shown}");
        assert!(
            error.message.contains(fragment),
            "{shown}: {:?} lacks {fragment:?}",
            error.message
        );
        client.echo_ok(&format!("after-case-{i}")).await;
    }
}

#[tokio::test]
async fn an_echo_payload_over_its_limit_is_refused_and_the_connection_stays() {
    let (_lab, _agent, mut client) = dry_run_agent().await;
    let big = "x".repeat(16 * 1024 + 1);
    let response = client.call(&RequestEnvelope::echo("big", &big)).await;
    assert_eq!(error_of(&response).kind, ErrorKind::BadRequest);
    assert_eq!(response.id.as_deref(), Some("big"));
    client.echo_ok("after-big").await;
}

#[tokio::test]
async fn a_frame_of_exactly_the_maximum_size_is_served() {
    let (_lab, _agent, mut client) = dry_run_agent().await;
    let mut body = RequestEnvelope::echo("max", "edge").to_bytes().to_vec();
    // JSON allows trailing whitespace: pad to exactly the limit.
    body.resize(MAX_FRAME_LEN, b' ');
    let response = client.call_body(body).await;
    assert!(
        matches!(&response.outcome, Outcome::Ok(Reply::Echo { payload, .. }) if payload == "edge"),
        "{response:?}"
    );
}

#[tokio::test]
async fn an_oversized_frame_header_gets_bad_request_then_close() {
    let (lab, agent, mut client) = dry_run_agent().await;
    // Only the header: the agent must refuse it before any body arrives.
    let announced = u32::try_from(MAX_FRAME_LEN + 1).unwrap();
    client.send_raw(&announced.to_be_bytes()).await;
    let response = client.recv().await.expect("an error reply before closing");
    let error = error_of(&response);
    assert_eq!(error.kind, ErrorKind::BadRequest);
    assert!(error.message.contains("exceeds the maximum"), "{error:?}");
    assert_eq!(response.id, None);
    assert!(
        client.recv().await.is_none(),
        "the connection must be closed"
    );

    // A 4 GiB announcement on a fresh connection: the same, immediately.
    let mut client = RawClient::connect(&lab, agent.addr).await;
    client.send_raw(&[0xff, 0xff, 0xff, 0xff]).await;
    let response = client.recv().await.expect("an error reply before closing");
    assert_eq!(error_of(&response).kind, ErrorKind::BadRequest);
    assert!(client.recv().await.is_none());

    RawClient::connect(&lab, agent.addr)
        .await
        .echo_ok("after-oversized")
        .await;
}

#[tokio::test]
async fn a_truncated_frame_then_close_gets_no_reply_and_harms_nothing() {
    let (lab, mut agent, mut client) = dry_run_agent().await;
    let mut other = RawClient::connect(&lab, agent.addr).await;
    // Announce 100 bytes, send 10, then close cleanly (TLS close_notify + FIN).
    client.send_raw(&[0, 0, 0, 100]).await;
    client.send_raw(br#"{"version""#).await;
    {
        use tokio::io::AsyncWriteExt;
        client.framed.get_mut().shutdown().await.unwrap();
    }
    assert!(
        client.recv().await.is_none(),
        "half a request must not be answered"
    );
    other.echo_ok("other-client").await;
    RawClient::connect(&lab, agent.addr)
        .await
        .echo_ok("newcomer")
        .await;
    assert!(agent.is_running());
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_lab, _agent, mut client) = dry_run_agent().await;
    // Three frames in a single write: a bad one between two good ones.
    let mut bytes = Vec::new();
    for body in [
        RequestEnvelope::echo("p1", "one").to_bytes().to_vec(),
        b"garbage".to_vec(),
        RequestEnvelope::echo("p3", "three").to_bytes().to_vec(),
    ] {
        bytes.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(&body);
    }
    client.send_raw(&bytes).await;
    let ids: Vec<Option<String>> = [
        client.recv().await.unwrap(),
        client.recv().await.unwrap(),
        client.recv().await.unwrap(),
    ]
    .into_iter()
    .map(|r| r.id)
    .collect();
    assert_eq!(ids, [Some("p1".into()), None, Some("p3".into())]);
}
