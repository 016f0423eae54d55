//! `lightsout cancel`: cancel a pending shutdown or restart.

use lightsout_protocol::Request;

use crate::fanout::FanOut;
use crate::inventory::Host;
use crate::print::Mode;

/// Sends a cancel to every host; returns whether every host succeeded.
pub async fn run(fanout: &FanOut, hosts: &[Host], dry_run: bool, mode: Mode) -> bool {
    let (live, results) =
        super::send_to_all(fanout, "cancel", hosts, Request::Cancel, dry_run, mode).await;
    live.finish(&results);
    results.iter().all(|r| r.ok())
}
