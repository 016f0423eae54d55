//! Requests: the envelope every request travels in, and the closed set of request kinds.

use serde::{Deserialize, Serialize};

use crate::response::ErrorKind;
use crate::wake::WakeParams;
use crate::{PROTOCOL_VERSION, PowerAction};

/// Longest request id accepted; ids are chosen by the controller (a UUID is 36 bytes).
pub const MAX_ID_LEN: usize = 128;
/// Longest message shown to logged-in users. Windows caps `/c` at 512 characters; wall
/// messages longer than a couple of lines are not read anyway.
pub const MAX_MESSAGE_CHARS: usize = 256;
/// Longest delay accepted for a power action: one week.
pub const MAX_DELAY_SECS: u64 = 7 * 24 * 3600;

/// One request as it travels on the wire.
///
/// Unknown fields are refused: this is a whitelist protocol, and a field the agent does not
/// know could be a caller believing it asked for something it did not get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestEnvelope {
    /// Protocol version spoken by the sender.
    pub version: u32,
    /// Chosen by the controller; echoed in the response and used by the agent to recognise a
    /// retried power request (it is answered from memory, not executed twice).
    pub id: String,
    /// When set, the agent reports what it would do and executes nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// What is asked.
    pub request: Request,
}

/// The whitelist: every request an agent will ever act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Health check: the payload comes back with a health snapshot.
    Echo {
        /// Arbitrary text returned unchanged.
        #[serde(default)]
        payload: String,
    },
    /// Power the machine off, now or after a delay.
    Shutdown(PowerParams),
    /// Restart the machine, now or after a delay.
    Restart(PowerParams),
    /// Abort a pending shutdown or restart.
    Cancel,
    /// Send Wake-on-LAN magic packets for these MAC addresses (on the controller's behalf,
    /// from inside a LAN it cannot broadcast into).
    Wake(WakeParams),
}

/// Options shared by shutdown and restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerParams {
    /// Seconds before the action happens; 0 means now.
    #[serde(default)]
    pub delay_secs: u64,
    /// Shown to logged-in users (wall on Unix, the shutdown comment on Windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Replace an action that is already pending instead of being refused with `busy`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
}

impl PowerParams {
    /// Checks the limits every agent enforces, so a controller can refuse bad input before
    /// sending it and an agent can answer it with `bad_request`.
    ///
    /// # Errors
    /// A [`ParamsError`] when the delay is too long or the message is unsafe to show: a
    /// character [`text::is_unsafe`](crate::text::is_unsafe) refuses (terminal escapes on every
    /// logged-in terminal, bidirectional overrides that make it read differently), a leading
    /// `-` (it would be read as an option by `shutdown`) or more than [`MAX_MESSAGE_CHARS`].
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.delay_secs > MAX_DELAY_SECS {
            return Err(ParamsError::DelayTooLong {
                delay_secs: self.delay_secs,
            });
        }
        if let Some(message) = &self.message {
            if message.chars().count() > MAX_MESSAGE_CHARS {
                return Err(ParamsError::MessageTooLong);
            }
            if let Some(c) = message.chars().find(|c| crate::text::is_unsafe(*c)) {
                return Err(ParamsError::MessageUnsafeChar { code: u32::from(c) });
            }
            if message.starts_with('-') {
                return Err(ParamsError::MessageLeadingDash);
            }
        }
        Ok(())
    }
}

/// Why the parameters of a shutdown or restart are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// The delay is over [`MAX_DELAY_SECS`].
    #[error("delay of {delay_secs}s exceeds the maximum of {MAX_DELAY_SECS}s (7 days)")]
    DelayTooLong {
        /// The delay asked for.
        delay_secs: u64,
    },
    /// The message is over [`MAX_MESSAGE_CHARS`].
    #[error("message exceeds the maximum of {MAX_MESSAGE_CHARS} characters")]
    MessageTooLong,
    /// The message holds a control character, a bidirectional override or a line separator.
    #[error(
        "message contains control characters or invisible formatting (U+{code:04X}); send plain text"
    )]
    MessageUnsafeChar {
        /// The first such character's code point.
        code: u32,
    },
    /// The message starts with `-`.
    #[error("message must not start with '-'")]
    MessageLeadingDash,
}

impl Request {
    /// The request's kind, as named on the wire, in logs and in policies.
    pub fn kind(&self) -> RequestKind {
        match self {
            Request::Echo { .. } => RequestKind::Echo,
            Request::Shutdown(_) => RequestKind::Shutdown,
            Request::Restart(_) => RequestKind::Restart,
            Request::Cancel => RequestKind::Cancel,
            Request::Wake(_) => RequestKind::Wake,
        }
    }
}

/// The kinds of [`Request`], without their parameters: what a policy grants and an audit
/// line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// [`Request::Echo`].
    Echo,
    /// [`Request::Shutdown`].
    Shutdown,
    /// [`Request::Restart`].
    Restart,
    /// [`Request::Cancel`].
    Cancel,
    /// [`Request::Wake`].
    Wake,
}

impl From<PowerAction> for RequestKind {
    fn from(action: PowerAction) -> Self {
        match action {
            PowerAction::Shutdown => RequestKind::Shutdown,
            PowerAction::Restart => RequestKind::Restart,
        }
    }
}

impl RequestKind {
    /// Every kind, in wire order.
    pub const ALL: [RequestKind; 5] = [
        RequestKind::Echo,
        RequestKind::Shutdown,
        RequestKind::Restart,
        RequestKind::Cancel,
        RequestKind::Wake,
    ];

    /// The wire name, e.g. `shutdown`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Echo => "echo",
            RequestKind::Shutdown => "shutdown",
            RequestKind::Restart => "restart",
            RequestKind::Cancel => "cancel",
            RequestKind::Wake => "wake",
        }
    }

    /// The power action of a shutdown or restart; `None` for the other kinds.
    pub fn power_action(self) -> Option<PowerAction> {
        match self {
            RequestKind::Shutdown => Some(PowerAction::Shutdown),
            RequestKind::Restart => Some(PowerAction::Restart),
            RequestKind::Echo | RequestKind::Cancel | RequestKind::Wake => None,
        }
    }

    /// Whether the request can take the machine down (and so is executed at most once and
    /// rehearsed by an agent in dry-run mode). Wake runs no command on this machine.
    pub fn takes_machine_down(self) -> bool {
        matches!(self, RequestKind::Shutdown | RequestKind::Restart)
    }
}

impl std::fmt::Display for RequestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`RequestKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown request kind {name:?} (known: echo, shutdown, restart, cancel, wake)")]
pub struct UnknownKind {
    /// The name as given.
    pub name: String,
}

impl std::str::FromStr for RequestKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RequestKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind { name: s.to_owned() })
    }
}

impl RequestEnvelope {
    /// A request in the current protocol version.
    pub fn new(id: impl Into<String>, dry_run: bool, request: Request) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            id: id.into(),
            dry_run,
            request,
        }
    }

    /// An echo (health check) carrying `payload`, not a rehearsal.
    pub fn echo(id: impl Into<String>, payload: impl Into<String>) -> Self {
        Self::new(
            id,
            false,
            Request::Echo {
                payload: payload.into(),
            },
        )
    }

    /// Serialises to the JSON body of one frame.
    pub fn to_bytes(&self) -> bytes::Bytes {
        // Serialising these plain structs cannot fail: no maps with non-string keys.
        serde_json::to_vec(self)
            .map(bytes::Bytes::from)
            .unwrap_or_default()
    }

    /// Decodes the JSON body of one frame.
    ///
    /// The version is looked at first, on its own, so that a newer controller whose request
    /// shape this agent cannot parse still gets `unsupported_version` rather than a confusing
    /// parse error. The request id is recovered whenever possible so the error reply can
    /// carry it.
    ///
    /// # Errors
    /// A [`DecodeError`] saying what was wrong; never panics, whatever the bytes.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let text = std::str::from_utf8(body).map_err(|e| DecodeError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        let probe: Probe = serde_json::from_str(text).map_err(DecodeError::Json)?;
        let id = probe.id();
        match probe.version.as_ref().map(|v| v.as_u64()) {
            None => return Err(DecodeError::MissingVersion { id }),
            Some(Some(v)) if v == u64::from(PROTOCOL_VERSION) => {}
            Some(other) => {
                return Err(DecodeError::UnsupportedVersion {
                    id,
                    version: other.map_or_else(|| "not a number".into(), |v| v.to_string()),
                });
            }
        }
        let envelope: RequestEnvelope =
            serde_json::from_str(text).map_err(|source| DecodeError::Invalid { id, source })?;
        if !is_valid_id(&envelope.id) {
            return Err(DecodeError::BadId {
                len: envelope.id.len(),
            });
        }
        Ok(envelope)
    }
}

/// Just enough of the envelope to answer a request that cannot (or will not) be carried out.
#[derive(Deserialize)]
struct Probe {
    version: Option<serde_json::Value>,
    id: Option<serde_json::Value>,
}

impl Probe {
    fn id(&self) -> Option<String> {
        self.id
            .as_ref()
            .and_then(|v| v.as_str())
            .filter(|s| is_valid_id(s))
            .map(str::to_owned)
    }
}

/// Whether `id` is an acceptable request id: 1 to [`MAX_ID_LEN`] characters from
/// `A-Z a-z 0-9 - _ . :` (a UUID, a ULID, `host:123`). Ids are written to logs and audit
/// lines and echoed in replies; a narrow alphabet keeps newlines, terminal escapes and
/// look-alike characters out of all of them.
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The request id of a frame body, when it has a readable one, without decoding the request
/// itself: for replies to requests that are refused before being looked at (rate limit).
pub fn peek_id(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Probe>(body)
        .ok()
        .and_then(|probe| probe.id())
}

/// Why a frame body is not a request this agent accepts.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame is not UTF-8, so it cannot be JSON.
    #[error("request is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The frame is not a JSON object.
    #[error("request is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The frame has no `version` field.
    #[error("request has no protocol version; this agent speaks version {PROTOCOL_VERSION}")]
    MissingVersion {
        /// The request id, when one could be read.
        id: Option<String>,
    },
    /// The sender speaks another protocol version.
    #[error(
        "protocol version {version} is not supported; this agent speaks version {PROTOCOL_VERSION}"
    )]
    UnsupportedVersion {
        /// The request id, when one could be read.
        id: Option<String>,
        /// The version the sender announced.
        version: String,
    },
    /// The request id is empty, too long, or has a character outside the id alphabet.
    #[error(
        "request id must be 1 to {MAX_ID_LEN} characters from A-Z a-z 0-9 - _ . : (got {len} bytes); a UUID fits"
    )]
    BadId {
        /// Length of the id received.
        len: usize,
    },
    /// Valid JSON in the right version, but not a request of the whitelist.
    #[error("invalid request: {source}")]
    Invalid {
        /// The request id, when one could be read.
        id: Option<String>,
        /// What serde found wrong (unknown kind, unknown field, wrong type...).
        source: serde_json::Error,
    },
}

impl DecodeError {
    /// The request id the error reply should carry, when one could be recovered.
    pub fn id(&self) -> Option<&str> {
        match self {
            DecodeError::MissingVersion { id }
            | DecodeError::UnsupportedVersion { id, .. }
            | DecodeError::Invalid { id, .. } => id.as_deref(),
            DecodeError::NotUtf8 { .. } | DecodeError::Json(_) | DecodeError::BadId { .. } => None,
        }
    }

    /// The stable error kind to answer with.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DecodeError::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            _ => ErrorKind::BadRequest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<RequestEnvelope, DecodeError> {
        RequestEnvelope::decode(s.as_bytes())
    }

    #[test]
    fn round_trip_every_kind() {
        let kinds = [
            Request::Echo {
                payload: "hi".into(),
            },
            Request::Shutdown(PowerParams {
                delay_secs: 90,
                message: Some("lab closes".into()),
                replace: false,
            }),
            Request::Restart(PowerParams::default()),
            Request::Cancel,
            Request::Wake(WakeParams {
                macs: vec!["52:54:00:00:00:01".parse().unwrap()],
                broadcast: Some("10.0.0.255".parse().unwrap()),
                port: Some(7),
            }),
        ];
        for request in kinds {
            let env = RequestEnvelope::new("id-1", true, request);
            let back = RequestEnvelope::decode(&env.to_bytes()).expect("round trip");
            assert_eq!(back, env);
        }
    }

    #[test]
    fn wire_shape_is_stable() {
        let env = RequestEnvelope::new("7", false, Request::Cancel);
        assert_eq!(
            String::from_utf8(env.to_bytes().to_vec()).unwrap(),
            r#"{"version":1,"id":"7","dry_run":false,"request":{"kind":"cancel"}}"#
        );
        let env = decode(r#"{"version":1,"id":"x","request":{"kind":"shutdown","delay_secs":5}}"#)
            .expect("dry_run and message default");
        assert_eq!(
            env.request,
            Request::Shutdown(PowerParams {
                delay_secs: 5,
                ..Default::default()
            })
        );
        assert!(!env.dry_run);
    }

    #[test]
    fn unknown_kind_is_bad_request_with_id() {
        let err = decode(r#"{"version":1,"id":"a1","request":{"kind":"exec","cmd":"rm -rf /"}}"#)
            .expect_err("not on the whitelist");
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        assert_eq!(err.id(), Some("a1"));
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    #[test]
    fn wake_carries_only_mac_addresses() {
        let env = decode(
            r#"{"version":1,"id":"w","request":{"kind":"wake","macs":["52:54:00:AA:00:01"]}}"#,
        )
        .expect("a MAC");
        assert_eq!(env.request.kind(), RequestKind::Wake);
        for body in [
            r#"{"version":1,"id":"w","request":{"kind":"wake","macs":["$(reboot)"]}}"#,
            r#"{"version":1,"id":"w","request":{"kind":"wake","macs":["52:54:00:aa:00:01","lab-01"]}}"#,
            r#"{"version":1,"id":"w","request":{"kind":"wake","macs":["52:54:00:aa:00:01"],"host":"x"}}"#,
            r#"{"version":1,"id":"w","request":{"kind":"wake","macs":["52:54:00:aa:00:01"],"port":70000}}"#,
        ] {
            let err = decode(body).expect_err(body);
            assert_eq!(err.kind(), ErrorKind::BadRequest, "{body}");
            assert_eq!(err.id(), Some("w"));
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        for body in [
            r#"{"version":1,"id":"a","request":{"kind":"echo","payload":"","cmd":"x"}}"#,
            r#"{"version":1,"id":"a","request":{"kind":"restart","command":"x"}}"#,
            r#"{"version":1,"id":"a","shell":true,"request":{"kind":"cancel"}}"#,
        ] {
            let err = decode(body).expect_err(body);
            assert!(err.to_string().contains("unknown field"), "{body}: {err}");
        }
    }

    #[test]
    fn wrong_types_are_bad_request() {
        let err =
            decode(r#"{"version":1,"id":"a","request":{"kind":"shutdown","delay_secs":"soon"}}"#)
                .expect_err("string delay");
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        let err = decode(r#"{"version":1,"id":"a","request":{"kind":"shutdown","delay_secs":-1}}"#)
            .expect_err("negative delay");
        assert_eq!(err.kind(), ErrorKind::BadRequest);
    }

    #[test]
    fn version_is_checked_before_shape() {
        let err = decode(r#"{"version":2,"id":"v2","request":{"kind":"teleport"}}"#)
            .expect_err("future version");
        assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);
        assert_eq!(err.id(), Some("v2"));
        assert!(err.to_string().contains("version 2"), "{err}");
        let err = decode(r#"{"id":"nov","request":{"kind":"cancel"}}"#).expect_err("no version");
        assert!(matches!(err, DecodeError::MissingVersion { .. }));
        let err = decode(r#"{"version":"1","id":"s","request":{"kind":"cancel"}}"#)
            .expect_err("string version");
        assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);
    }

    #[test]
    fn malformed_input_never_panics() {
        for body in [
            &b""[..],
            b"\xff\xfe",
            b"null",
            b"[]",
            b"{",
            b"{\"version\":1}",
            b"{\"version\":1,\"id\":\"\",\"request\":{\"kind\":\"cancel\"}}",
        ] {
            assert!(RequestEnvelope::decode(body).is_err(), "{body:?}");
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(decode(&deep), Err(DecodeError::Json(_))));
    }

    #[test]
    fn peek_id_reads_only_the_id() {
        assert_eq!(
            peek_id(br#"{"version":9,"id":"p1","request":{"kind":"teleport"}}"#).as_deref(),
            Some("p1")
        );
        assert_eq!(peek_id(br#"{"id":7}"#), None);
        assert_eq!(peek_id(b"\xff"), None);
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_ID_LEN + 1));
        assert_eq!(peek_id(long.as_bytes()), None);
    }

    #[test]
    fn not_utf8_reports_offset() {
        let err = RequestEnvelope::decode(b"{\"a\xff").expect_err("bad utf8");
        assert!(matches!(err, DecodeError::NotUtf8 { offset: 3 }));
    }

    #[test]
    fn power_params_validation() {
        let ok = PowerParams {
            delay_secs: 60,
            message: Some("Saving time!".into()),
            replace: false,
        };
        assert!(ok.validate().is_ok());
        for bad in [
            PowerParams {
                delay_secs: MAX_DELAY_SECS + 1,
                ..Default::default()
            },
            PowerParams {
                message: Some("-c".into()),
                ..Default::default()
            },
            PowerParams {
                message: Some("\u{1b}[2Jgotcha".into()),
                ..Default::default()
            },
            PowerParams {
                message: Some("x".repeat(MAX_MESSAGE_CHARS + 1)),
                ..Default::default()
            },
            // Invisible formatting: a right-to-left override and a line separator.
            PowerParams {
                message: Some("Saving \u{202e}txt.exe".into()),
                ..Default::default()
            },
            PowerParams {
                message: Some("line\u{2028}break".into()),
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let err = PowerParams {
            message: Some("a\u{202e}b".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err, ParamsError::MessageUnsafeChar { code: 0x202e });
        assert!(err.to_string().contains("U+202E"), "{err}");
    }

    #[test]
    fn request_ids_are_limited_to_a_safe_alphabet() {
        for good in [
            "7",
            "dup-1",
            "9b2f6c1e-3a4d-4b8e-9f00-0123456789ab",
            "lab-01:42",
            "a_b.c",
        ] {
            assert!(is_valid_id(good), "{good}");
        }
        for bad in [
            "",
            "a\nb",
            "x\u{1b}[2J",
            "id with space",
            "caf\u{e9}",
            "a\u{202e}b",
        ] {
            assert!(!is_valid_id(bad), "{bad:?}");
            let body = format!(
                r#"{{"version":{PROTOCOL_VERSION},"id":{},"request":{{"kind":"cancel"}}}}"#,
                serde_json::to_string(bad).unwrap()
            );
            let err = RequestEnvelope::decode(body.as_bytes()).unwrap_err();
            assert!(matches!(err, DecodeError::BadId { .. }), "{bad:?}: {err}");
            assert_eq!(err.kind(), ErrorKind::BadRequest);
            assert_eq!(err.id(), None, "an unsafe id is never echoed back");
        }
        assert!(!is_valid_id(&"a".repeat(MAX_ID_LEN + 1)));
    }

    #[test]
    fn request_kinds_round_trip_their_names() {
        for kind in RequestKind::ALL {
            assert_eq!(kind.as_str().parse::<RequestKind>(), Ok(kind));
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{kind}\""));
        }
        assert!("reboot".parse::<RequestKind>().is_err());
    }
}
