//! The subcommands, one file each (mini-redis's `cmd/`). Each receives what the binary has
//! already validated (settings, hosts resolved, the fan-out's TLS configuration loaded) and
//! returns whether every host succeeded.
//!
//! # Layout
//! - [`echo`]: `echo`, a health check.
//! - [`status`]: `status`, the status board.
//! - [`cancel`]: `cancel`, cancelling a pending action.
//! - [`power`]: `shutdown` and `restart`, the safe power workflow.
//! - [`wake`]: `wake`, Wake-on-LAN, directly or through an agent (`--via`).
//! - [`discover`]: `discover`, finding agents on the LAN.
//! - [`inventory`]: `inventory list` and `inventory learn`.
//! - [`pki`]: `pki ...`, the CA and certificates for other machines.

pub mod cancel;
pub mod discover;
pub mod echo;
pub mod inventory;
pub mod pki;
pub mod power;
pub mod status;
pub mod wake;

use lightsout_protocol::{Request, RequestEnvelope};

use crate::fanout::{FanOut, new_request_id};
use crate::inventory::Host;
use crate::print::{Live, Mode};
use crate::result::HostResult;

/// One request to every host, each result reported as it arrives; the caller prints the end.
async fn send_to_all(
    fanout: &FanOut,
    name: &str,
    hosts: &[Host],
    request: Request,
    dry_run: bool,
    mode: Mode,
) -> (Live, Vec<HostResult>) {
    let live = Live::new(name, mode, hosts.len());
    let results = fanout
        .run(
            hosts,
            |_| RequestEnvelope::new(new_request_id(), dry_run, request.clone()),
            |r| live.done(r),
        )
        .await;
    (live, results)
}
