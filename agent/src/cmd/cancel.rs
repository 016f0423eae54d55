//! `cancel`: abort a pending shutdown or restart.
//!
//! Unlike shutdown and restart, cancel is carried out *before* replying: it is harmless, and
//! the caller wants to know whether it worked. For the same reason it does not fail closed:
//! its audit line is written and synced before it runs, but when the log cannot be written it
//! runs anyway (cancelling can only keep a machine on) and the reply says the line is missing.

use lightsout_protocol::{Outcome, Reply, Response};

use crate::state::Shared;

/// Cancels (or rehearses cancelling) the pending action. `audit_missing`: why its audit line
/// could not be written, if it could not; the reply says so.
pub async fn run(
    shared: &Shared,
    id: &str,
    dry_run: bool,
    audit_missing: Option<&str>,
) -> Response {
    let mut response = match shared.power.cancel(id, dry_run).await {
        Ok(reply) => Response::ok(id, Reply::Cancel(reply)),
        Err(body) => crate::power::error_response(id, body),
    };
    if let Some(reason) = audit_missing {
        match &mut response.outcome {
            Outcome::Ok(Reply::Cancel(reply)) => reply.audit_missing = Some(reason.to_owned()),
            Outcome::Error(e) => e
                .message
                .push_str(&format!(" (and its audit line is missing: {reason})")),
            Outcome::Ok(_) => {}
        }
    }
    response
}
