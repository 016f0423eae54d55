//! `echo`: the health check. Returns the payload unchanged with a health snapshot.

use lightsout_protocol::{ErrorKind, Reply, Response};

use crate::state::Shared;

/// Answers an echo.
pub async fn run(shared: &Shared, id: &str, payload: String) -> Response {
    let max = shared.config.limits.max_echo_payload;
    if payload.len() > max {
        return Response::error(
            Some(id.to_owned()),
            ErrorKind::BadRequest,
            format!(
                "echo payload of {} bytes exceeds the maximum of {max} bytes",
                payload.len()
            ),
        );
    }
    let health = shared.health.snapshot(&shared.config, &shared.power).await;
    Response::ok(
        id,
        Reply::Echo {
            payload,
            health: Box::new(health),
        },
    )
}
