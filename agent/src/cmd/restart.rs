//! `restart`: reboot the machine, now or after a delay.

use lightsout_protocol::{PowerAction, PowerParams, Reply, Response};

use crate::dispatch::Caller;
use crate::power::Execution;
use crate::server::Shared;

/// Accepts (or rehearses) a restart; the execution starts after the reply is sent.
pub fn run(
    shared: &Shared,
    caller: &Caller,
    id: &str,
    params: &PowerParams,
    dry_run: bool,
) -> (Response, Option<Execution>) {
    match shared
        .power
        .schedule(caller, id, PowerAction::Restart, params, dry_run)
    {
        Ok((reply, execution)) => (Response::ok(id, Reply::Restart(reply)), execution),
        Err(body) => (crate::power::error_response(id, body), None),
    }
}
