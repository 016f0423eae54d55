//! Frame + request decoding, as the agent does it on bytes from the network.
//!
//! The first input byte is a knob: its low two bits choose the codec's frame limit, the rest
//! how many bytes arrive per read. The remaining bytes are the stream: split into frames by
//! `FrameCodec`, each frame decoded as a `RequestEnvelope` (and, for the controller's side,
//! as a `Response`). The whole stream is also decoded as one body, so the JSON decoding is
//! fuzzed directly too. Any panic is a bug; so is a decoded request that does not survive
//! re-encoding.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use lightsout_protocol::request::{MAX_ID_LEN, is_valid_id, peek_id};
use lightsout_protocol::{FrameCodec, MAX_FRAME_LEN, PROTOCOL_VERSION, RequestEnvelope, Response};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&knob, stream)) = data.split_first() else {
        return;
    };
    let max = [16, 256, 4096, MAX_FRAME_LEN][usize::from(knob & 3)];
    let per_read = usize::from(knob >> 2) + 1;
    let mut codec = FrameCodec::with_max_len(max);
    let mut buf = BytesMut::new();
    'stream: for piece in stream.chunks(per_read) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max, "frame over the limit");
                    check_body(&frame);
                }
                Ok(None) => break,
                // Over the limit: the agent answers and closes; nothing more to decode.
                Err(_) => break 'stream,
            }
        }
    }
    let _ = codec.decode_eof(&mut buf);
    check_body(stream);
});

fn check_body(body: &[u8]) {
    match RequestEnvelope::decode(body) {
        Ok(envelope) => {
            assert_eq!(envelope.version, PROTOCOL_VERSION);
            assert!(!envelope.id.is_empty() && envelope.id.len() <= MAX_ID_LEN);
            assert!(is_valid_id(&envelope.id), "only ids of the safe alphabet decode");
            let again = RequestEnvelope::decode(&envelope.to_bytes())
                .expect("a re-encoded request decodes");
            assert_eq!(again, envelope);
        }
        Err(e) => {
            // Everything an error reply is built from.
            let _ = (e.kind(), e.id(), e.to_string());
        }
    }
    let _ = peek_id(body);
    if let Ok(response) = Response::decode(body) {
        let _ = response.to_bytes();
    }
}
