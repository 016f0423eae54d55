//! The result model: what happened for one host ([`HostResult`]), and the three ways a host
//! can end up ([`Status`]). The fan-out produces results, the commands refine them, and
//! `render` turns them into text.

use std::time::Duration;

use lightsout_protocol::{Outcome, Reply, Response};
use serde_json::Value;

use crate::error::ClientError;
use crate::inventory::Host;

/// What happened for one host.
#[derive(Debug)]
pub enum HostOutcome {
    /// The agent answered (which may itself be an error reply).
    Response(Response),
    /// No answer: why.
    Error(ClientError),
    /// Deliberately not contacted (busy, the controller's own machine, ...): why.
    Skipped(String),
    /// Done by the controller itself, no agent involved (a magic packet sent).
    Done {
        /// One line for the table.
        detail: String,
        /// The `response` object for `--json`.
        data: Value,
    },
}

/// How a `--wait` ended for one host (`restart --wait`, `shutdown --wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// Restart: the host answered again with a new boot identity.
    Back,
    /// Shutdown: the host stopped answering once its action was due.
    Off,
    /// A rehearsal: nothing runs, so there is nothing to wait for.
    NothingToWaitFor,
    /// The agent reported that the power command failed: it will not happen.
    ActionFailed,
    /// The action is no longer pending on the agent before it was due, and did not fail:
    /// cancelled or replaced by someone.
    Cancelled,
    /// Restart: not back with a new boot identity within the wait timeout.
    NotBack,
    /// Shutdown: still answering the wait timeout after its due time.
    StillUp,
}

impl WaitEnd {
    /// Whether the wait ended the way the command asked for.
    pub fn ok(self) -> bool {
        matches!(
            self,
            WaitEnd::Back | WaitEnd::Off | WaitEnd::NothingToWaitFor
        )
    }

    /// `back`, `off`, `nothing_to_wait_for`, `action_failed`, `cancelled`, `not_back`,
    /// `still_up` (the `end` of `--json`'s `wait` object).
    pub fn as_str(self) -> &'static str {
        match self {
            WaitEnd::Back => "back",
            WaitEnd::Off => "off",
            WaitEnd::NothingToWaitFor => "nothing_to_wait_for",
            WaitEnd::ActionFailed => "action_failed",
            WaitEnd::Cancelled => "cancelled",
            WaitEnd::NotBack => "not_back",
            WaitEnd::StillUp => "still_up",
        }
    }
}

/// After `restart --wait` or `shutdown --wait`: how the wait ended.
#[derive(Debug, Clone)]
pub struct WaitOutcome {
    /// How it ended.
    pub end: WaitEnd,
    /// From the action being accepted to the end of the wait.
    pub after: Duration,
    /// The new boot identity, the agent's error, or why the wait gave up.
    pub detail: String,
}

impl WaitOutcome {
    /// Whether the wait ended the way the command asked for.
    pub fn ok(&self) -> bool {
        self.end.ok()
    }
}

/// The three ways a host can end up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It worked.
    Ok,
    /// It did not.
    Failed,
    /// Not attempted, on purpose; not a failure.
    Skipped,
}

impl Status {
    /// `ok`, `failed`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// One host's outcome.
#[derive(Debug)]
pub struct HostResult {
    /// The host.
    pub host: Host,
    /// Time from the host's start to its outcome.
    pub elapsed: Duration,
    /// What happened.
    pub outcome: HostOutcome,
    /// `restart --wait` and `shutdown --wait` only.
    pub wait: Option<WaitOutcome>,
    /// The agent's certificate seen in the handshake (parsed only when its expiry is shown).
    pub agent_cert: Option<rustls_pki_types::CertificateDer<'static>>,
}

/// Below this many days left, the agent's certificate's expiry is shown (status board note,
/// `cert_expires_in_days` in JSON): time to `lightsout pki renew agent NAME`.
pub const CERT_WARNING_DAYS: i64 = 30;

impl HostResult {
    /// A result with no elapsed time.
    pub fn new(host: Host, outcome: HostOutcome) -> Self {
        Self {
            host,
            elapsed: Duration::ZERO,
            outcome,
            wait: None,
            agent_cert: None,
        }
    }

    /// Whole days left on the agent's certificate when fewer than [`CERT_WARNING_DAYS`].
    pub fn cert_expires_in_days(&self) -> Option<i64> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.agent_cert
            .as_ref()
            .and_then(lightsout_pki::load::not_after_unix)
            .map(|t| (t - now).div_euclid(86_400))
            .filter(|days| *days < CERT_WARNING_DAYS)
    }

    /// Ok, failed or skipped.
    pub fn status(&self) -> Status {
        let answered_ok = match &self.outcome {
            HostOutcome::Skipped(_) => return Status::Skipped,
            HostOutcome::Response(Response {
                outcome: Outcome::Ok(_),
                ..
            })
            | HostOutcome::Done { .. } => true,
            HostOutcome::Response(_) | HostOutcome::Error(_) => false,
        };
        if answered_ok && self.wait.as_ref().is_none_or(WaitOutcome::ok) {
            Status::Ok
        } else {
            Status::Failed
        }
    }

    /// True when the host succeeded.
    pub fn ok(&self) -> bool {
        self.status() == Status::Ok
    }

    /// The agent's successful reply, if that is the outcome.
    pub fn reply(&self) -> Option<&Reply> {
        match &self.outcome {
            HostOutcome::Response(Response {
                outcome: Outcome::Ok(reply),
                ..
            }) => Some(reply),
            _ => None,
        }
    }
}
