//! Hostile input at every layer, against a running agent: what a broken or malicious client
//! can send before TLS, during the handshake, in the framing and in the JSON.
//!
//! Every case ends in one of two ways, never in a panic or a stall: a clear error reply when
//! the connection is still usable (and then it is used again), or a prompt close. Every test
//! then checks that a legitimate client is still served, promptly.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lightsout_protocol::{ErrorKind, MAX_FRAME_LEN, Reply, RequestEnvelope};
use tokio::io::AsyncWriteExt;

use lightsout_tests::*;

/// Limits that never fire during these tests unless a test lowers them: a close within
/// [`PATIENCE`] is then the agent reacting to the input, not a timeout.
fn patient(config: &mut lightsout_agent::Config) {
    config.limits.handshake_timeout = Duration::from_secs(30);
    config.limits.idle_timeout = Duration::from_secs(30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_garbage_on_the_tls_port_is_closed() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, patient).await;
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| u8::try_from(i * 7 % 251).unwrap())
        .collect();
    let mut stream = tcp(agent.addr).await;
    stream.write_all(&garbage).await.unwrap();
    let back = expect_closed(&mut stream, PATIENCE).await;
    // At most a TLS alert record comes back, never anything else.
    assert!(back.is_empty() || back[0] == 0x15, "{back:?}");
    assert_served(&lab, agent.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_request_on_the_tls_port_is_closed() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, patient).await;
    let mut stream = tcp(agent.addr).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: lab-01:7474\r\nUser-Agent: curl/8\r\n\r\n")
        .await
        .unwrap();
    let back = expect_closed(&mut stream, PATIENCE).await;
    assert!(!back.starts_with(b"HTTP/"), "{back:?}");
    assert!(back.is_empty() || back[0] == 0x15, "{back:?}");
    assert_served(&lab, agent.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_handshakes_are_cut_at_the_handshake_timeout() {
    let lab = Lab::new();
    let timeout = Duration::from_millis(800);
    let agent = InProc::start(&lab, |c| {
        patient(c);
        c.limits.handshake_timeout = timeout;
    })
    .await;
    let opened = Instant::now();
    // A ClientHello and then silence; and a connection that never says anything.
    let mut hello_then_silence = tcp(agent.addr).await;
    hello_then_silence
        .write_all(&client_hello(&lab))
        .await
        .unwrap();
    let mut silent = tcp(agent.addr).await;
    // While they hang, legitimate clients are served.
    assert_served(&lab, agent.addr).await;

    let back = expect_closed(&mut hello_then_silence, PATIENCE).await;
    let first = opened.elapsed();
    assert_eq!(back.first(), Some(&0x16), "the agent answered the hello");
    expect_closed(&mut silent, PATIENCE).await;
    let second = opened.elapsed();
    // Not before the deadline (a lower bound cannot be flaky), and well within patience.
    assert!(first >= timeout - Duration::from_millis(50), "{first:?}");
    assert!(second >= timeout - Duration::from_millis(50), "{second:?}");
    assert_served(&lab, agent.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_sends_a_frame_is_closed_at_the_idle_timeout() {
    let lab = Lab::new();
    let idle = Duration::from_millis(600);
    let agent = InProc::start(&lab, |c| {
        patient(c);
        c.limits.idle_timeout = idle;
    })
    .await;
    let mut quiet = tls(&lab, agent.addr).await;
    let handshaken = Instant::now();
    let back = expect_closed(&mut quiet, PATIENCE).await;
    assert!(back.is_empty(), "no data, only close_notify: {back:?}");
    assert!(handshaken.elapsed() >= idle - Duration::from_millis(50));

    // A client that sends a request and then goes quiet is closed the same way.
    let mut c = RawClient::connect(&lab, agent.addr).await;
    c.assert_usable().await;
    let served = Instant::now();
    let next = tokio::time::timeout(PATIENCE, c.framed.next())
        .await
        .expect("still open");
    assert!(next.as_ref().is_none_or(|r| r.is_err()), "{next:?}");
    assert!(served.elapsed() >= idle - Duration::from_millis(50));
    assert_served(&lab, agent.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_header_over_the_maximum_is_refused_and_closed() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, |c| {
        patient(c);
        c.limits.max_frame_len = 4096;
        c.limits.max_echo_payload = 1024;
    })
    .await;
    for announced in [u32::MAX, 4097] {
        let mut c = RawClient::connect(&lab, agent.addr).await;
        c.send_raw(&header(announced)).await;
        let response = c.response().await;
        assert_error(&response, ErrorKind::BadRequest, "maximum of 4096 bytes");
        assert_eq!(response.id, None);
        let next = tokio::time::timeout(PATIENCE, c.framed.next())
            .await
            .expect("closed after the refusal");
        assert!(next.as_ref().is_none_or(|r| r.is_err()), "{next:?}");
    }
    // Exactly the maximum is a frame (here not JSON): refused, and the connection lives on.
    let mut c = RawClient::connect(&lab, agent.addr).await;
    let response = c.call_body(vec![b' '; 4096]).await;
    assert_error(&response, ErrorKind::BadRequest, "not valid JSON");
    c.assert_usable().await;
    assert_served(&lab, agent.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_frame_then_close_ends_only_that_connection() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, patient).await;
    // Half a header; a header and part of a body; each followed by a clean TLS close.
    for partial in [&[0u8, 0][..], &[0, 0, 0, 100, b'{', b'"'][..]] {
        let mut t = tls(&lab, agent.addr).await;
        write_raw(&mut t, partial).await;
        t.shutdown().await.unwrap();
        let back = expect_closed(&mut t, PATIENCE).await;
        assert!(back.is_empty(), "{back:?}");
    }
    // The same, with the TCP connection reset instead.
    let mut t = tls(&lab, agent.addr).await;
    write_raw(&mut t, &[0, 0, 0, 100, b'{']).await;
    let (tcp, _) = t.into_inner();
    reset(tcp);
    assert_served(&lab, agent.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_bodies_get_bad_request_and_the_connection_stays_usable() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, patient).await;
    let mut c = RawClient::connect(&lab, agent.addr).await;
    let deep_array = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(5000), "}".repeat(5000));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"{\"version\":1,\"id\":\"\xff\xfe\"}".to_vec(),
            "not valid UTF-8",
        ),
        (b"\xc3\x28".to_vec(), "not valid UTF-8"),
        (Vec::new(), "not valid JSON"),
        (b"{\"version\":1,\"id\":".to_vec(), "not valid JSON"),
        (b"null".to_vec(), "not valid JSON"),
        (b"[1,2,3]".to_vec(), "not valid JSON"),
        (b"\"just a string\"".to_vec(), "not valid JSON"),
        (
            b"{\"version\":1,\"id\":\"x\"} trailing".to_vec(),
            "not valid JSON",
        ),
        (deep_array.into_bytes(), "not valid JSON"),
        // Fields the envelope does not know are skipped without recursion: no version.
        (deep_object.into_bytes(), "no protocol version"),
    ];
    for (body, needle) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
        let response = c.call_body(body).await;
        let e = error_of(&response);
        assert_eq!(e.kind, ErrorKind::BadRequest, "{shown}: {}", e.message);
        assert!(e.message.contains(needle), "{shown}: {}", e.message);
        assert_eq!(response.id, None, "{shown}");
    }
    c.assert_usable().await;
    assert_served(&lab, agent.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_kinds_and_wrong_types_are_bad_request_with_the_id() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, patient).await;
    let mut c = RawClient::connect(&lab, agent.addr).await;
    let deep_payload = format!(
        r#"{{"version":1,"id":"deep","request":{{"kind":"echo","payload":{}{}}}}}"#,
        "[".repeat(3000),
        "]".repeat(3000)
    );
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        (
            r#"{"version":1,"id":"k1","request":{"kind":"exec","cmd":"rm -rf /"}}"#.into(),
            Some("k1"),
            "unknown variant",
        ),
        (
            r#"{"version":1,"id":"k2","request":{"kind":"Shutdown"}}"#.into(),
            Some("k2"),
            "unknown variant",
        ),
        (
            r#"{"version":1,"id":"k3","request":{"payload":"no kind"}}"#.into(),
            Some("k3"),
            "missing field",
        ),
        (
            r#"{"version":1,"id":"f1","request":{"kind":"echo","payload":"x","cmd":"id"}}"#
                .into(),
            Some("f1"),
            "unknown field",
        ),
        (
            r#"{"version":1,"id":"f2","shell":true,"request":{"kind":"cancel"}}"#.into(),
            Some("f2"),
            "unknown field",
        ),
        (
            r#"{"version":1,"id":"f3","request":{"kind":"restart","argv":["reboot"]}}"#.into(),
            Some("f3"),
            "unknown field",
        ),
        (
            r#"{"version":1,"id":"t1","request":{"kind":"shutdown","delay_secs":"soon"}}"#
                .into(),
            Some("t1"),
            "invalid type",
        ),
        (
            r#"{"version":1,"id":"t2","request":{"kind":"shutdown","delay_secs":-5}}"#.into(),
            Some("t2"),
            "invalid value",
        ),
        (
            r#"{"version":1,"id":"t3","request":{"kind":"shutdown","delay_secs":1e99}}"#.into(),
            Some("t3"),
            "invalid type",
        ),
        (
            r#"{"version":1,"id":"t4","dry_run":"yes","request":{"kind":"cancel"}}"#.into(),
            Some("t4"),
            "invalid type",
        ),
        (
            r#"{"version":1,"id":"t5","request":"echo"}"#.into(),
            Some("t5"),
            "invalid type",
        ),
        (
            r#"{"version":1,"id":"t6","request":{"kind":"echo","payload":42}}"#.into(),
            Some("t6"),
            "invalid type",
        ),
        (
            r#"{"version":1,"id":42,"request":{"kind":"cancel"}}"#.into(),
            None,
            "invalid type",
        ),
        (
            r#"{"version":1,"id":"","request":{"kind":"cancel"}}"#.into(),
            None,
            "request id must be",
        ),
        (
            format!(
                r#"{{"version":1,"id":"{}","request":{{"kind":"cancel"}}}}"#,
                "i".repeat(129)
            ),
            None,
            "request id must be",
        ),
        (
            r#"{"version":1,"request":{"kind":"cancel"}}"#.into(),
            None,
            "missing field",
        ),
        (
            r#"{"id":"v0","request":{"kind":"cancel"}}"#.into(),
            Some("v0"),
            "no protocol version",
        ),
        (deep_payload, Some("deep"), "recursion limit"),
        // Validation after decoding: same kind, same id.
        (
            r#"{"version":1,"id":"m1","dry_run":true,"request":{"kind":"shutdown","message":"\u001b[2Jgotcha"}}"#
                .into(),
            Some("m1"),
            "control characters",
        ),
        (
            r#"{"version":1,"id":"m2","dry_run":true,"request":{"kind":"restart","message":"-c"}}"#
                .into(),
            Some("m2"),
            "must not start with '-'",
        ),
        (
            r#"{"version":1,"id":"d1","dry_run":true,"request":{"kind":"shutdown","delay_secs":604801}}"#
                .into(),
            Some("d1"),
            "exceeds the maximum",
        ),
    ];
    for (body, id, needle) in cases {
        let response = c.call_body(body.clone().into_bytes()).await;
        let e = error_of(&response);
        assert_eq!(e.kind, ErrorKind::BadRequest, "{body}: {}", e.message);
        assert!(e.message.contains(needle), "{body}: {}", e.message);
        assert_eq!(response.id.as_deref(), id, "{body}");
    }
    c.assert_usable().await;
    assert_served(&lab, agent.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_protocol_versions_get_unsupported_version() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, patient).await;
    let mut c = RawClient::connect(&lab, agent.addr).await;
    for (body, shown) in [
        (
            r#"{"version":2,"id":"v2","request":{"kind":"teleport","to":"mars"}}"#,
            "version 2",
        ),
        (
            r#"{"version":0,"id":"v2","request":{"kind":"echo"}}"#,
            "version 0",
        ),
        (
            r#"{"version":4294967296,"id":"v2","request":{"kind":"echo"}}"#,
            "version 4294967296",
        ),
        (
            r#"{"version":"1","id":"v2","request":{"kind":"echo"}}"#,
            "not a number",
        ),
        (
            r#"{"version":-1,"id":"v2","request":{"kind":"echo"}}"#,
            "not a number",
        ),
    ] {
        let response = c.call_body(body.as_bytes().to_vec()).await;
        assert_error(&response, ErrorKind::UnsupportedVersion, shown);
        assert!(
            error_of(&response).message.contains("speaks version 1"),
            "{body}"
        );
        assert_eq!(response.id.as_deref(), Some("v2"));
    }
    c.assert_usable().await;
    assert_served(&lab, agent.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_payload_limits() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, patient).await;
    let max = lightsout_agent::Limits::default().max_echo_payload;
    let mut c = RawClient::connect(&lab, agent.addr).await;
    for payload in [String::new(), "a".repeat(max), "é".repeat(max / 2)] {
        let response = c.call(&RequestEnvelope::echo(new_id(), &payload)).await;
        match reply_of(&response) {
            Reply::Echo { payload: back, .. } => assert!(back == &payload),
            other => panic!("{}", shorten(&format!("{other:?}"))),
        }
    }
    let response = c
        .call(&RequestEnvelope::echo(new_id(), "a".repeat(max + 1)))
        .await;
    assert_error(
        &response,
        ErrorKind::BadRequest,
        &format!("exceeds the maximum of {max} bytes"),
    );
    c.assert_usable().await;

    // Within the payload limit, within the frame limit, but every byte a control character:
    // JSON writes each as six bytes (\u0001), and the echoed reply, health snapshot included,
    // would not fit in a frame. The client must get an answer, not a silent close.
    let payload = "\u{1}".repeat((MAX_FRAME_LEN - 120) / 6);
    let request = RequestEnvelope::echo(new_id(), &payload);
    assert!(payload.len() <= max);
    assert!(request.to_bytes().len() <= MAX_FRAME_LEN);
    let response = c.call(&request).await;
    assert_error(&response, ErrorKind::BadRequest, "maximum frame");
    assert_eq!(response.id.as_deref(), Some(request.id.as_str()));
    c.assert_usable().await;
    assert_served(&lab, agent.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_connections_reset_at_once() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, patient).await;
    let hello = client_hello(&lab);
    let mut storm = tokio::task::JoinSet::new();
    for i in 0..300 {
        let addr = agent.addr;
        let hello = hello.clone();
        let tls_config = lab.client_tls();
        storm.spawn(async move {
            let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            match i % 3 {
                // Reset right after connecting.
                0 => {}
                // Reset in the middle of the handshake.
                1 => {
                    let _ = stream.write_all(&hello).await;
                }
                // Reset an established, authenticated connection.
                _ => {
                    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
                    if let Ok(t) = tokio_rustls::TlsConnector::from(tls_config)
                        .connect(name, stream)
                        .await
                    {
                        let (tcp, _) = t.into_inner();
                        reset(tcp);
                    }
                    return;
                }
            }
            reset(stream);
        });
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        while storm.join_next().await.is_some() {}
    })
    .await
    .expect("the storm itself stalled");
    assert!(agent.is_running());
    assert_served(&lab, agent.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_new_connections_are_closed_and_existing_ones_unaffected() {
    let lab = Lab::new();
    let cap = 4;
    let audit_path = lab.dir.path().join("audit.jsonl");
    let audit = std::sync::Arc::new(lightsout_agent::audit::AuditLog::new(&audit_path));
    let agent = InProc::start(&lab, |c| {
        patient(c);
        c.limits.max_connections = cap;
        c.audit = Some(audit);
    })
    .await;
    let mut admitted = Vec::new();
    for _ in 0..cap {
        let mut c = RawClient::connect(&lab, agent.addr).await;
        c.assert_usable().await;
        admitted.push(c);
    }
    // Over the cap: closed at once, before any TLS (nothing comes back), long before the
    // 30 s handshake timeout.
    for _ in 0..3 {
        let mut extra = tcp(agent.addr).await;
        let _ = extra.write_all(&client_hello(&lab)).await;
        let back = expect_closed(&mut extra, PATIENCE).await;
        assert!(back.is_empty(), "{back:?}");
    }
    for c in &mut admitted {
        c.assert_usable().await;
    }
    // Each refusal is in the audit log, naming the cap.
    let refused = Lab::audit_lines(&audit_path)
        .into_iter()
        .filter(|l| {
            l["event"] == "handshake"
                && l["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("(max_connections)"))
        })
        .count();
    assert_eq!(refused, 3);
    // A slot freed is a slot usable again (the release is asynchronous: retry briefly).
    drop(admitted.pop());
    assert_served_eventually(&lab, agent.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_rate_limit_get_busy_and_the_connection_stays_usable() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, |c| {
        patient(c);
        c.limits.max_requests_per_sec = 1;
    })
    .await;
    let mut c = RawClient::connect(&lab, agent.addr).await;
    let mut limited = 0;
    for i in 0..10 {
        let request = RequestEnvelope::echo(new_id(), "hammer");
        let response = c.call(&request).await;
        assert_eq!(response.id.as_deref(), Some(request.id.as_str()));
        if i == 0 {
            reply_of(&response);
        } else if let lightsout_protocol::Outcome::Error(e) = &response.outcome {
            assert_eq!(e.kind, ErrorKind::Busy);
            assert!(e.message.contains("rate limit"), "{}", e.message);
            limited += 1;
        }
    }
    // Ten requests in a row cannot all fit in a budget of one per second.
    assert!(limited > 0);
    // Patience restores service on the same connection.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.assert_usable().await;
    // Other connections have their own budget.
    assert_served(&lab, agent.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_1_2_client_is_refused() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, patient).await;
    let mut stream = tcp(agent.addr).await;
    stream.write_all(&tls12_only_client_hello()).await.unwrap();
    let back = expect_closed(&mut stream, PATIENCE).await;
    // A fatal alert (level 2) "protocol_version" (70), and nothing else.
    assert_eq!(back, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70], "{back:?}");
    assert_served(&lab, agent.addr).await;
}

/// The same with a real TLS 1.2 client, when `openssl` is installed (`.ci/run` installs it).
#[test]
fn openssl_s_client_tls_1_2_is_refused() {
    if !have("openssl", "version") {
        skip_missing("openssl", ".ci/run installs it");
        return;
    }
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let files = lab.controller_files();
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-tls1_2", "-connect", &agent.target()])
        .args(["-servername", "localhost", "-CAfile"])
        .arg(&files.ca)
        .arg("-cert")
        .arg(&files.cert)
        .arg("-key")
        .arg(&files.key)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("protocol version"), "{text}");
    // With TLS 1.3 the same client gets through the handshake (sanity check of the command).
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-tls1_3", "-connect", &agent.target()])
        .args(["-servername", "localhost", "-CAfile"])
        .arg(&files.ca)
        .arg("-cert")
        .arg(&files.cert)
        .arg("-key")
        .arg(&files.key)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TLSv1.3"), "{text}");
    let out = lab
        .controller_cmd()
        .args(["echo", &agent.target()])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_than_its_share_of_handshakes() {
    let lab = Lab::new();
    let agent = InProc::start(&lab, |c| {
        patient(c);
        c.limits.max_handshakes_per_ip = 3;
    })
    .await;
    // Three silent connections from 127.0.0.1 sit in the handshake phase...
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(tcp(agent.addr).await);
    }
    // ...so a fourth from the same address is closed at once, before any TLS.
    let mut extra = tcp(agent.addr).await;
    let _ = extra.write_all(&client_hello(&lab)).await;
    let back = expect_closed(&mut extra, PATIENCE).await;
    assert!(back.is_empty(), "{back:?}");
    // Another machine (127.0.0.2) is served meanwhile.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(agent.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(lab.client_tls())
        .connect(name, stream)
        .await
        .expect("a second address still gets its handshake");
    let mut other = RawClient::from_stream(tls);
    other.assert_usable().await;
    // When the silent connections go, their address may handshake again.
    drop(silent);
    assert_served_eventually(&lab, agent.addr).await;
}
