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
    record: &mut dyn FnMut() -> Result<(), String>,
) -> (Response, Option<Execution>) {
    match shared
        .power
        .schedule(caller, id, PowerAction::Restart, params, dry_run, record)
    {
        Ok((reply, execution)) => {
            // Tests and demos only: a dry-run agent may pretend to reboot (see
            // `health::simulate`). Never with a real execution.
            if let (Some(downtime), true, None) = (
                shared.config.testing.simulate_reboot,
                reply.dry_run && shared.config.dry_run,
                &execution,
            ) {
                shared
                    .health
                    .simulated
                    .schedule(std::time::Duration::from_secs(reply.delay_secs), downtime);
            }
            (Response::ok(id, Reply::Restart(reply)), execution)
        }
        Err(body) => (crate::power::error_response(id, body), None),
    }
}
