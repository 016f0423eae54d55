//! Property tests: whatever bytes arrive, decoding either yields a valid request or an error,
//! never a panic; and every valid envelope survives encode → frame → decode unchanged.

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use lightsout_protocol::request::MAX_ID_LEN;
use lightsout_protocol::{
    DecodeError, ErrorKind, FrameCodec, PROTOCOL_VERSION, PowerParams, Request, RequestEnvelope,
    Response,
};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

/// What a successful decode promises.
fn assert_valid(envelope: &RequestEnvelope) {
    assert_eq!(envelope.version, PROTOCOL_VERSION);
    assert!(!envelope.id.is_empty() && envelope.id.len() <= MAX_ID_LEN);
    // A decoded request re-encodes to something that decodes to the same request.
    assert_eq!(
        &RequestEnvelope::decode(&envelope.to_bytes()).unwrap(),
        envelope
    );
}

/// What a failed decode promises: a kind a reply can carry, an id only when one was sent.
fn assert_sensible(err: &DecodeError, body: &[u8]) {
    assert!(matches!(
        err.kind(),
        ErrorKind::BadRequest | ErrorKind::UnsupportedVersion
    ));
    assert!(!err.to_string().is_empty());
    if let Some(id) = err.id() {
        assert!(id.len() <= MAX_ID_LEN);
        let text = String::from_utf8_lossy(body);
        // The id came from the body (JSON escapes aside, its first character is in it).
        assert!(
            id.is_empty() || text.contains(id) || text.contains('\\'),
            "{id:?} not in {text:?}"
        );
    }
}

fn decode_checked(body: &[u8]) {
    match RequestEnvelope::decode(body) {
        Ok(envelope) => assert_valid(&envelope),
        Err(err) => assert_sensible(&err, body),
    }
}

/// Arbitrary JSON values, nested a few levels, with the envelope's own keys and kinds
/// over-represented so that decoding gets past the first checks often.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("version".to_owned()),
        Just("id".to_owned()),
        Just("dry_run".to_owned()),
        Just("request".to_owned()),
        Just("kind".to_owned()),
        Just("payload".to_owned()),
        Just("delay_secs".to_owned()),
        Just("message".to_owned()),
        Just("replace".to_owned()),
        "[a-z_]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::from(1)),
        prop_oneof![
            Just("echo"),
            Just("shutdown"),
            Just("restart"),
            Just("cancel"),
            Just("exec"),
        ]
        .prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|fields| serde_json::Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn power_params() -> impl Strategy<Value = PowerParams> {
    (any::<u64>(), proptest::option::of(".{0,40}"), any::<bool>()).prop_map(
        |(delay_secs, message, replace)| PowerParams {
            delay_secs,
            message,
            replace,
        },
    )
}

/// Valid wake requests: unicast MACs (first byte even), any broadcast address and port.
fn wake_params() -> impl Strategy<Value = lightsout_protocol::WakeParams> {
    let mac = (any::<[u8; 6]>(), any::<bool>()).prop_map(|(mut b, dashes)| {
        b[0] &= 0xfe; // unicast
        b[5] |= 0x01; // never all zeros
        let sep = if dashes { "-" } else { ":" };
        let text = b
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(sep);
        lightsout_protocol::wake::MacAddr::parse(&text).unwrap()
    });
    (
        prop::collection::vec(mac, 1..8),
        prop::option::of(any::<[u8; 4]>()),
        prop::option::of(any::<u16>()),
    )
        .prop_map(|(macs, broadcast, port)| lightsout_protocol::WakeParams {
            macs,
            broadcast: broadcast.map(std::net::Ipv4Addr::from),
            port,
        })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        ".{0,200}".prop_map(|payload| Request::Echo { payload }),
        power_params().prop_map(Request::Shutdown),
        power_params().prop_map(Request::Restart),
        Just(Request::Cancel),
        wake_params().prop_map(Request::Wake),
    ]
}

/// Ids of 1 to 128 characters from the id alphabet.
fn request_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,128}".prop_filter("id length", |id| id.len() <= MAX_ID_LEN)
}

fn envelope() -> impl Strategy<Value = RequestEnvelope> {
    (request_id(), any::<bool>(), request())
        .prop_map(|(id, dry_run, request)| RequestEnvelope::new(id, dry_run, request))
}

/// Frames `bodies` with the codec, as one byte stream.
fn framed(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut codec = FrameCodec::new();
    for body in bodies {
        codec
            .encode(Bytes::copy_from_slice(body), &mut out)
            .unwrap();
    }
    out.to_vec()
}

/// Feeds `stream` to a codec limited to `max` in chunks cut at `cuts`; returns the frames
/// decoded and whether it stopped on an error. Panics on nothing.
fn feed(stream: &[u8], cuts: &[usize], max: usize) -> (Vec<BytesMut>, bool) {
    let mut codec = FrameCodec::with_max_len(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut fed = 0;
    for point in points {
        buf.extend_from_slice(&stream[fed..point]);
        fed = point;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max);
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
                    return (frames, true);
                }
            }
        }
    }
    // End of stream: whatever is left is an incomplete frame, reported by decode_eof.
    match codec.decode_eof(&mut buf) {
        Ok(Some(frame)) => frames.push(frame),
        Ok(None) => {}
        Err(_) => return (frames, true),
    }
    (frames, false)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_decode_or_fail_cleanly(body in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_checked(&body);
    }

    #[test]
    fn any_json_decodes_or_fails_cleanly(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        decode_checked(&body);
        // Wrapped as the envelope's request, to reach the request decoding itself.
        let wrapped = serde_json::json!({"version": 1, "id": "p", "request": value});
        decode_checked(&serde_json::to_vec(&wrapped).unwrap());
    }

    #[test]
    fn mutated_valid_envelopes_decode_or_fail_cleanly(
        env in envelope(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut body = env.to_bytes().to_vec();
        for (at, byte) in flips {
            let at = at % body.len();
            body[at] = byte;
        }
        decode_checked(&body);
        decode_checked(&body[..cut % (body.len() + 1)]);
    }

    #[test]
    fn valid_envelopes_round_trip(env in envelope()) {
        let back = RequestEnvelope::decode(&env.to_bytes()).unwrap();
        prop_assert_eq!(back, env);
    }

    #[test]
    fn valid_envelopes_round_trip_through_frames_cut_anywhere(
        envs in prop::collection::vec(envelope(), 1..5),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let bodies: Vec<Vec<u8>> = envs.iter().map(|e| e.to_bytes().to_vec()).collect();
        let (frames, failed) = feed(&framed(&bodies), &cuts, lightsout_protocol::MAX_FRAME_LEN);
        prop_assert!(!failed);
        let decoded: Vec<RequestEnvelope> = frames
            .iter()
            .map(|f| RequestEnvelope::decode(f).unwrap())
            .collect();
        prop_assert_eq!(decoded, envs);
    }

    #[test]
    fn any_byte_stream_through_the_codec_never_panics(
        stream in prop::collection::vec(any::<u8>(), 0..1024),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        max in 0usize..300,
    ) {
        let (frames, _) = feed(&stream, &cuts, max);
        for frame in frames {
            decode_checked(&frame);
        }
    }

    #[test]
    fn headers_over_the_limit_are_refused_before_the_body(len in 301u32.., max in 0usize..=300) {
        // Only the header: refused at once, without waiting for (or buffering) the body.
        let (frames, failed) = feed(&len.to_be_bytes(), &[], max);
        prop_assert!(frames.is_empty());
        prop_assert!(failed);
    }

    #[test]
    fn any_bytes_as_a_response_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        // The controller's side of the same question: a hostile or broken agent.
        if let Ok(response) = Response::decode(&body) {
            prop_assert_eq!(Response::decode(&response.to_bytes()).unwrap(), response);
        }
    }
}
