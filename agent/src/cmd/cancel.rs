//! `cancel`: abort a pending shutdown or restart.
//!
//! Unlike shutdown and restart, cancel is carried out *before* replying: it is harmless, and
//! the caller wants to know whether it worked.

use lightsout_protocol::{Reply, Response};

use crate::state::Shared;

/// Cancels (or rehearses cancelling) the pending action.
pub async fn run(shared: &Shared, id: &str, dry_run: bool) -> Response {
    match shared.power.cancel(id, dry_run).await {
        Ok(reply) => Response::ok(id, Reply::Cancel(reply)),
        Err(body) => crate::power::error_response(id, body),
    }
}
