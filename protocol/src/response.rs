//! Responses: the typed result of a request, or an error with a stable machine-readable kind.

use serde::{Deserialize, Serialize};

use crate::PROTOCOL_VERSION;
use crate::health::Health;
pub use crate::power::PendingAction;
use crate::power::PowerAction;
use crate::wake::MacAddr;

/// One response as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version spoken by the agent.
    pub version: u32,
    /// The id of the request answered; absent when the request was too broken to read one.
    pub id: Option<String>,
    /// What happened.
    pub outcome: Outcome,
}

/// Success or failure of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The request was carried out (or, in dry-run, rehearsed).
    Ok(Reply),
    /// The request was refused or failed.
    Error(ErrorBody),
}

/// The typed result of a successful request, one variant per request kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// Answer to `echo`.
    Echo {
        /// The payload, unchanged.
        payload: String,
        /// The agent's health snapshot.
        health: Box<Health>,
    },
    /// Answer to `shutdown`: accepted (and about to be executed) or rehearsed.
    Shutdown(PowerReply),
    /// Answer to `restart`: accepted (and about to be executed) or rehearsed.
    Restart(PowerReply),
    /// Answer to `cancel`.
    Cancel(CancelReply),
    /// Answer to `wake`.
    Wake(WakeReply),
}

/// What an agent sent (or, rehearsing, would send) for a `wake`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeReply {
    /// One magic packet went out for each of these (duplicates removed).
    pub sent: Vec<MacAddr>,
    /// Destination address.
    pub broadcast: std::net::Ipv4Addr,
    /// Destination port.
    pub port: u16,
    /// True when the request was a rehearsal and nothing was sent.
    pub dry_run: bool,
}

/// What an agent does (or, in dry-run, would do) for a shutdown or restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerReply {
    /// Shutdown or restart.
    pub action: PowerAction,
    /// Requested delay in seconds.
    pub delay_secs: u64,
    /// Message for logged-in users, if any.
    pub message: Option<String>,
    /// Seconds the agent itself waits before running `argv` (sub-minute part of the delay on
    /// systems whose `shutdown` only counts minutes).
    pub agent_wait_secs: u64,
    /// The exact command line run after `agent_wait_secs`.
    pub argv: Vec<String>,
    /// True when nothing is executed (agent in dry-run mode, or the request's own flag).
    pub dry_run: bool,
    /// When the machine goes down, as Unix seconds.
    pub due_unix: u64,
}

/// What an agent did (or would do) for a cancel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelReply {
    /// The exact command line run (or that would run) to cancel at the system level.
    pub argv: Vec<String>,
    /// True when nothing is executed.
    pub dry_run: bool,
    /// The action this agent had pending and has now cancelled; `None` when it knew of none.
    pub cancelled: Option<PendingAction>,
    /// Exit status of the cancel command, when it ran.
    pub exit_code: Option<i32>,
    /// Why the cancel's audit line is missing: a cancel runs even when the audit log cannot
    /// be written (it can only keep a machine on). Absent when the line was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_missing: Option<String>,
    /// What the cancel did on this machine (absent from agents that predate it, and from
    /// rehearsals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<CancelOutcome>,
}

/// What a live cancel did: the three cases an administrator needs told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The system held the action (logind's schedule, or `shutdown`'s) and it was withdrawn.
    Withdrawn,
    /// The action was still waiting in the agent and never reached the system: stopped there,
    /// nothing had to be withdrawn from the system.
    StoppedBeforeSystem,
    /// Nothing was pending, neither in the agent nor (as far as the system said) in the system.
    NothingPending,
    /// An outcome this build does not know (sent by a newer agent).
    #[serde(other)]
    Unknown,
}

/// A refused or failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable kind.
    pub kind: ErrorKind,
    /// Human-readable explanation.
    pub message: String,
    /// For `busy`: the action already pending. Boxed: error bodies travel in `Result`s
    /// through the agent, and most have none (the same JSON either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Box<PendingAction>>,
}

/// Stable machine-readable error kinds. Scripts match on these; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A power request reached an agent that is not running as root / elevated administrator.
    NotPrivileged,
    /// The caller's identity or this agent's policy does not allow the request.
    NotAllowed,
    /// The request is malformed or outside the accepted limits.
    BadRequest,
    /// The request speaks a protocol version this agent does not.
    UnsupportedVersion,
    /// Another power action is pending, or the agent is over a rate limit.
    Busy,
    /// The agent failed while carrying out an accepted request.
    Internal,
    /// The system cannot carry out the action now (e.g. systemd-logind is not reachable on
    /// the system bus, or refused it). Nothing was scheduled: the machine stays up.
    Unavailable,
    /// A kind this build does not know (sent by a newer agent).
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// The wire name, e.g. `not_privileged`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotPrivileged => "not_privileged",
            ErrorKind::NotAllowed => "not_allowed",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::UnsupportedVersion => "unsupported_version",
            ErrorKind::Busy => "busy",
            ErrorKind::Internal => "internal",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Response {
    /// A successful response to request `id`.
    pub fn ok(id: impl Into<String>, reply: Reply) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            id: Some(id.into()),
            outcome: Outcome::Ok(reply),
        }
    }

    /// An error response; `id` is `None` when the request could not be read.
    pub fn error(id: Option<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            id,
            outcome: Outcome::Error(ErrorBody {
                kind,
                message: message.into(),
                pending: None,
            }),
        }
    }

    /// Serialises to the JSON body of one frame.
    pub fn to_bytes(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .map(bytes::Bytes::from)
            .unwrap_or_default()
    }

    /// Decodes the JSON body of one frame. Unknown fields are tolerated so that an older
    /// controller can read a newer agent's richer replies.
    ///
    /// # Errors
    /// The serde error when the body is not a response.
    pub fn decode(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shape_is_stable() {
        let r = Response::error(Some("9".into()), ErrorKind::NotPrivileged, "run as root");
        assert_eq!(
            String::from_utf8(r.to_bytes().to_vec()).unwrap(),
            r#"{"version":1,"id":"9","outcome":{"error":{"kind":"not_privileged","message":"run as root"}}}"#
        );
        assert_eq!(Response::decode(&r.to_bytes()).unwrap(), r);
    }

    #[test]
    fn unknown_error_kind_from_a_newer_agent_is_readable() {
        let r = Response::decode(
            br#"{"version":1,"id":null,"outcome":{"error":{"kind":"quota","message":"m","extra":1}}}"#,
        )
        .expect("tolerant");
        match r.outcome {
            Outcome::Error(e) => assert_eq!(e.kind, ErrorKind::Unknown),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn power_reply_round_trip() {
        let reply = Reply::Restart(PowerReply {
            action: PowerAction::Restart,
            delay_secs: 30,
            message: None,
            agent_wait_secs: 30,
            argv: vec!["shutdown".into(), "-r".into(), "now".into()],
            dry_run: true,
            due_unix: 1,
        });
        let r = Response::ok("x", reply);
        assert_eq!(Response::decode(&r.to_bytes()).unwrap(), r);
    }
}
