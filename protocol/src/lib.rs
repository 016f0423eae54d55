//! The lightsout wire protocol, shared by the agent and the controller.
//!
//! One TLS connection carries any number of request/response exchanges. Each message is one
//! frame: a 4-byte big-endian length followed by that many bytes of UTF-8 JSON. Every message
//! carries [`PROTOCOL_VERSION`] so that an agent can answer a controller it does not understand
//! with a clear `unsupported_version` error instead of silence.
//!
//! The set of things a controller may ask is the closed enum [`Request`]: that enum *is* the
//! whitelist. Anything that is not one of its variants fails to decode and is answered with
//! `bad_request`; there is no variant that carries a command line.
//!
//! # Layout
//! - [`frame`]: the length-delimited codec and its limits.
//! - [`request`]: [`RequestEnvelope`] and [`Request`], and their decoding with typed errors.
//! - [`response`]: [`Response`], [`Reply`] and the stable [`ErrorKind`]s.
//! - [`health`]: the health snapshot returned by `echo`.
//! - [`text`]: making text from the other side safe on a terminal.
//! - [`power`]: pure mapping from a power request to the exact argv for each OS.
//! - [`wake`]: MAC addresses, the `wake` request's parameters, the Wake-on-LAN magic packet.
//! - [`discovery`]: the LAN discovery probe and the announcement opted-in agents answer with.

pub mod discovery;
pub mod frame;
pub mod health;
pub mod power;
pub mod request;
pub mod response;
pub mod text;
pub mod wake;

pub use frame::{FrameCodec, MAX_FRAME_LEN};
pub use health::{Health, InterfaceMac};
pub use power::{PowerAction, PowerPlan, TargetOs};
pub use request::{
    DecodeError, ParamsError, PowerParams, Request, RequestEnvelope, RequestKind, UnknownKind,
};
pub use response::{
    ErrorBody, ErrorKind, Outcome, PendingAction, PowerReply, Reply, Response, WakeReply,
};
pub use wake::{MacAddr, WakeParams};

/// Version of the wire protocol spoken by this build. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// TCP port the agent listens on unless told otherwise (documented in the README).
pub const DEFAULT_PORT: u16 = 7474;
