//! `shutdown`: power the machine off, now or after a delay.

use lightsout_protocol::{PowerAction, PowerParams, Reply, Response};

use crate::dispatch::Caller;
use crate::power::Execution;
use crate::server::Shared;

/// Accepts (or rehearses) a shutdown; the execution starts after the reply is sent.
pub fn run(
    shared: &Shared,
    caller: &Caller,
    id: &str,
    params: &PowerParams,
    dry_run: bool,
    record: &mut dyn FnMut() -> Result<(), String>,
) -> (Response, Option<Execution>) {
    match shared
        .power
        .schedule(caller, id, PowerAction::Shutdown, params, dry_run, record)
    {
        Ok((reply, execution)) => (Response::ok(id, Reply::Shutdown(reply)), execution),
        Err(body) => (crate::power::error_response(id, body), None),
    }
}
