//! `lightsout status`: the status board, one row per host from its health snapshot.

use lightsout_protocol::Request;

use crate::fanout::FanOut;
use crate::inventory::Host;
use crate::print::Mode;
use crate::render;

/// Asks every host for its health; returns whether every host is up.
pub async fn run(fanout: &FanOut, hosts: &[Host], mode: Mode) -> bool {
    let request = Request::Echo {
        payload: "status".into(),
    };
    let (live, results) = super::send_to_all(fanout, "status", hosts, request, false, mode).await;
    if mode == Mode::Table {
        live.clear();
        crate::out!("{}", render::status_board(&results));
    } else {
        live.finish(&results);
    }
    results.iter().all(|r| r.ok())
}
