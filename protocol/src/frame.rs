//! Framing: a 4-byte big-endian length prefix, then the JSON body.
//!
//! Framing is delegated to tokio-util's [`LengthDelimitedCodec`]: an incomplete frame means
//! "wait for more bytes", a frame announcing more than the maximum is an error *before* any
//! of its body is buffered (so a peer announcing 4 GiB costs nothing), and a clean EOF between
//! frames ends the stream.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Hard maximum size of one frame body, in bytes. Large enough for any legitimate request or
/// response (an echo payload is capped well below it), small enough that a hostile peer
/// cannot make either side buffer much.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Length-delimited codec with lightsout's settings.
///
/// A thin wrapper so both sides are guaranteed to agree on the header layout and the limit.
#[derive(Debug)]
pub struct FrameCodec {
    inner: LengthDelimitedCodec,
}

impl FrameCodec {
    /// A codec that refuses frames longer than [`MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::with_max_len(MAX_FRAME_LEN)
    }

    /// A codec with a custom maximum frame length (the agent's limit is configurable).
    pub fn with_max_len(max: usize) -> Self {
        Self {
            inner: LengthDelimitedCodec::builder()
                .length_field_type::<u32>()
                .max_frame_length(max)
                .new_codec(),
        }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, std::io::Error> {
        self.inner.decode(src)
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        self.inner.encode(item, dst)
    }
}

/// Whether an I/O error from the codec means "the peer announced a frame over the limit".
///
/// tokio-util reports this as `InvalidData` wrapping its `LengthDelimitedCodecError`.
pub fn is_frame_too_large(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::InvalidData
        && err
            .get_ref()
            .is_some_and(|e| e.is::<tokio_util::codec::LengthDelimitedCodecError>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        FrameCodec::new()
            .encode(Bytes::copy_from_slice(body), &mut buf)
            .expect("encode");
        buf
    }

    #[test]
    fn round_trip() {
        let mut buf = framed(b"{\"a\":1}");
        assert_eq!(&buf[..4], &[0, 0, 0, 7]);
        let got = FrameCodec::new().decode(&mut buf).expect("decode");
        assert_eq!(got.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_frame_waits_for_more() {
        let full = framed(b"hello world");
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::new();
        // Bytes arrive in pieces: half a header, the rest of it, part of the body.
        let mut fed = 0;
        for cut in [2usize, 4, 9] {
            buf.extend_from_slice(&full[fed..cut]);
            fed = cut;
            assert!(
                codec.decode(&mut buf).expect("decode").is_none(),
                "cut {cut}"
            );
        }
        buf.extend_from_slice(&full[fed..]);
        assert_eq!(
            codec.decode(&mut buf).expect("decode").as_deref(),
            Some(&b"hello world"[..])
        );
    }

    #[test]
    fn two_frames_in_one_read() {
        let mut buf = framed(b"one");
        buf.extend_from_slice(&framed(b"two"));
        let mut codec = FrameCodec::new();
        assert_eq!(
            codec.decode(&mut buf).unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(
            codec.decode(&mut buf).unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn oversized_header_is_rejected_without_buffering() {
        // A header announcing 4 GiB - 1 with no body at all: rejected at once.
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let err = FrameCodec::new().decode(&mut buf).expect_err("too large");
        assert!(is_frame_too_large(&err), "{err}");
    }

    #[test]
    fn limit_is_inclusive() {
        let mut codec = FrameCodec::with_max_len(8);
        let mut ok = framed(b"12345678");
        assert!(codec.decode(&mut ok).unwrap().is_some());
        let mut too_big = framed(b"123456789");
        assert!(is_frame_too_large(&codec.decode(&mut too_big).unwrap_err()));
    }

    #[test]
    fn encoding_over_the_limit_fails() {
        let mut buf = BytesMut::new();
        let err = FrameCodec::with_max_len(4)
            .encode(Bytes::from_static(b"12345"), &mut buf)
            .expect_err("too large to send");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
