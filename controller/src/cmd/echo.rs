//! `lightsout echo`: a health check of every host.

use lightsout_protocol::Request;

use crate::fanout::FanOut;
use crate::inventory::Host;
use crate::print::Mode;

/// Sends `payload` to every host; returns whether every host answered.
pub async fn run(fanout: &FanOut, hosts: &[Host], payload: String, mode: Mode) -> bool {
    let (live, results) = super::send_to_all(
        fanout,
        "echo",
        hosts,
        Request::Echo { payload },
        false,
        mode,
    )
    .await;
    live.finish(&results);
    results.iter().all(|r| r.ok())
}
