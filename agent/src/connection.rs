//! One client connection: TLS handshake under a deadline, admission (the caps on
//! authenticated connections; a refused one has its first request answered `busy`, naming
//! the cap), then a loop of framed requests, each answered before the next is read. Requests over the connection's rate limit are
//! answered `busy` without being carried out; a reply too large for a frame becomes an error
//! reply; a stopping agent abandons handshakes and idle connections at once.
//!
//! A client that vanishes (reset, half a frame, half a handshake) ends only its own task;
//! nothing here can take the agent down.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use lightsout_pki::tls::{Identity, identity};
use lightsout_protocol::frame::is_frame_too_large;
use lightsout_protocol::request::peek_id;
use lightsout_protocol::{ErrorKind, FrameCodec, Outcome, Response};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::admission::{Admission, Refusal};
use crate::audit::{AuditEntry, AuditOutcome, Event};
use crate::handshakes::HandshakeSlot;
use crate::rate::TokenBucket;
use crate::request::{self, Replier};
use crate::state::{Caller, Shared};

/// How long to wait for our close_notify and the peer's to be exchanged on the way out.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The answer to a request over the connection's rate limit: `busy`, nothing carried out.
fn rate_limited(body: &[u8], per_sec: u32) -> Response {
    Response::error(
        peek_id(body),
        ErrorKind::Busy,
        format!(
            "rate limit: at most {per_sec} requests per second on one connection; \
             this request was not carried out, send it again later"
        ),
    )
}

/// Requests of one connection refused by the rate limit and not yet written to the audit
/// log. A flood is summarised rather than written line by line (the disk must not fill),
/// at least once a minute and when the connection ends, so that nothing refused is missing
/// from the log.
struct RateLimitTally {
    count: u64,
    since: Instant,
}

/// How often a connection over its rate limit writes its summary line.
const RATE_SUMMARY_EVERY: Duration = Duration::from_secs(60);

impl RateLimitTally {
    fn new() -> Self {
        Self {
            count: 0,
            since: Instant::now(),
        }
    }

    fn is_due(&self) -> bool {
        self.count > 0 && self.since.elapsed() >= RATE_SUMMARY_EVERY
    }

    /// Writes the summary line, if any request was refused since the last one.
    fn write(&mut self, shared: &Shared, caller: &Caller, per_sec: u32) {
        if self.count > 0 {
            if let Some(log) = &shared.config.audit {
                let mut line = AuditEntry::request(caller.peer, &caller.identity, false);
                line.event = Event::RateLimit;
                line.refuse(format!(
                    "{} requests refused by the rate limit (at most {per_sec} per second on one connection)",
                    self.count
                ));
                line.outcome = AuditOutcome::Error(ErrorKind::Busy);
                log.write_best_effort(&line);
            }
            warn!(refused = self.count, "requests refused by the rate limit");
        }
        *self = Self::new();
    }
}

/// Audits a request refused before it reached the request path (revoked certificate,
/// oversized frame): the request's id and kind when they can be read.
fn audit_refusal(shared: &Shared, caller: &Caller, body: Option<&[u8]>, reply: &Response) {
    let Some(log) = &shared.config.audit else {
        return;
    };
    let mut line = AuditEntry::request(caller.peer, &caller.identity, shared.config.dry_run);
    line.request_id = body.and_then(peek_id);
    if let Outcome::Error(e) = &reply.outcome {
        line.refuse(e.message.clone());
    }
    line.outcome = AuditOutcome::of(reply);
    log.write_best_effort(&line);
}

/// The reply as one frame body, or an error reply when it would not fit in a frame.
///
/// The payload limit of an echo counts decoded bytes, but JSON writes a control character as
/// six (`\u0001`), so a request that fits in a frame can ask for a reply that does not. Without
/// this the codec would refuse to send it and the client would see the connection close with
/// no answer.
fn fit_reply(response: Response, max_frame_len: usize) -> bytes::Bytes {
    let bytes = response.to_bytes();
    if bytes.len() <= max_frame_len {
        return bytes;
    }
    warn!(
        reply_len = bytes.len(),
        max_frame_len, "reply over the frame limit, answering with an error instead"
    );
    Response::error(
        response.id,
        ErrorKind::BadRequest,
        format!(
            "the reply would be {} bytes, over the maximum frame of {max_frame_len} bytes \
             (an echo payload of control characters grows sixfold in JSON); send a shorter payload",
            bytes.len()
        ),
    )
    .to_bytes()
}

/// Sends replies as frames on this connection, each under the idle deadline. A reply that
/// cannot be sent ends the connection (after the request's handling is complete).
struct FrameReplier<'a> {
    framed: &'a mut Framed<tokio_rustls::server::TlsStream<TcpStream>, FrameCodec>,
    limits: &'a crate::config::Limits,
    failed: bool,
}

impl Replier for FrameReplier<'_> {
    async fn reply(&mut self, response: Response) {
        let frame = fit_reply(response, self.limits.max_frame_len);
        match timeout(self.limits.idle_timeout, self.framed.send(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "reply could not be sent");
                self.failed = true;
            }
            Err(_) => {
                debug!("reply write timed out");
                self.failed = true;
            }
        }
    }
}

/// Refuses an authenticated connection over a cap: audits it (rate-limited), answers its
/// first request — or, when none comes within [`CLOSE_TIMEOUT`], the connection — with `busy`
/// saying which cap, and closes. Reading the request first matters: a request left unread
/// when the socket closes turns the close into a reset, and the client would see "connection
/// reset" instead of the reason. Bounded: three [`CLOSE_TIMEOUT`]s at most.
async fn refuse(
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    caller: &Caller,
    refusal: &Refusal,
    shared: &Shared,
) {
    let reason = refusal.to_string();
    let logged = match &shared.config.audit {
        Some(audit) => audit.connection_refused(caller.peer, &caller.identity, &reason),
        None => true,
    };
    if logged {
        warn!(peer = %caller.peer, identity = %caller.identity.name,
              role = caller.identity.role.as_deref().unwrap_or("-"), %refusal,
              "authenticated connection refused");
    }
    let limits = &shared.config.limits;
    let mut framed = Framed::new(tls, FrameCodec::with_max_len(limits.max_frame_len));
    let id = match timeout(CLOSE_TIMEOUT, framed.next()).await {
        Ok(Some(Ok(body))) => lightsout_protocol::request::peek_id(&body),
        _ => None,
    };
    let reply = Response::error(id, ErrorKind::Busy, reason);
    let _ = timeout(CLOSE_TIMEOUT, framed.send(reply.to_bytes())).await;
    let _ = timeout(CLOSE_TIMEOUT, framed.get_mut().shutdown()).await;
}

/// Serves one accepted TCP connection to completion.
/// `handshake_slot` holds the peer address's place among handshakes in progress; it is
/// released once the connection is admitted, or when a refused one is closed (so refusals, too,
/// count against the per-address handshake cap while they last). `admission` gives the
/// authenticated connection its place, or refuses it.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    handshake_slot: HandshakeSlot,
    admission: Arc<Admission>,
    shared: Arc<Shared>,
) {
    // Small request/response frames would otherwise meet Nagle + delayed ACK (~40 ms).
    let _ = stream.set_nodelay(true);
    let limits = shared.config.limits.clone();
    // The acceptor comes from the current access state, so a reloaded CRL applies to every
    // handshake that starts after the reload.
    let acceptor = TlsAcceptor::from(shared.config.access.current().tls.clone());
    // A stopping agent abandons handshakes: they are no request in flight, and waiting for
    // them would let any client that connects and stays silent delay the exit by the whole
    // handshake timeout.
    let handshake = tokio::select! {
        biased;
        () = shared.stop.cancelled() => {
            debug!(%peer, "agent stopping: handshake abandoned");
            return;
        }
        handshake = timeout(limits.handshake_timeout, acceptor.accept(stream)) => handshake,
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let reason = format!("TLS handshake rejected: {e}");
            let logged = match &shared.config.audit {
                Some(audit) => audit.handshake_rejected(peer, &reason),
                None => true,
            };
            if logged {
                info!(%peer, error = %e, "TLS handshake rejected");
            }
            return;
        }
        Err(_) => {
            info!(%peer, timeout_secs = limits.handshake_timeout.as_secs(), "TLS handshake timed out");
            return;
        }
    };
    // The verifier requires a client certificate, so one is always present here.
    let who: Identity = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(cert) => identity(cert),
        None => return,
    };
    let caller = Caller {
        peer,
        identity: who,
    };
    let _admitted = match admission.try_admit(peer.ip(), &caller.identity) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            refuse(tls, &caller, &refusal, &shared).await;
            return;
        }
    };
    drop(handshake_slot);
    // A certificate's name is text its holder chose: never raw into a log line.
    let span = info_span!("conn", %peer, identity = %lightsout_protocol::text::sanitize(&caller.identity.name));
    async move {
        info!(fingerprint = %caller.identity.fingerprint,
              role = caller.identity.role.as_deref().unwrap_or("-"), "client connected");
        let mut framed = Framed::new(tls, FrameCodec::with_max_len(limits.max_frame_len));
        let mut served = 0u64;
        let mut bucket = TokenBucket::per_second(limits.max_requests_per_sec);
        let mut over_rate = RateLimitTally::new();
        loop {
            let next = tokio::select! {
                biased;
                () = shared.stop.cancelled() => break,
                next = timeout(limits.idle_timeout, framed.next()) => next,
            };
            let body = match next {
                Err(_) => {
                    debug!("idle timeout");
                    break;
                }
                Ok(None) => break,
                Ok(Some(Ok(body))) => body,
                Ok(Some(Err(e))) if is_frame_too_large(&e) => {
                    // The stream is out of sync after a refused header: say why, then close.
                    warn!(error = %e, "frame over the size limit");
                    let reply = Response::error(
                        None,
                        ErrorKind::BadRequest,
                        format!(
                            "frame exceeds the maximum of {} bytes",
                            limits.max_frame_len
                        ),
                    );
                    audit_refusal(&shared, &caller, None, &reply);
                    let _ = timeout(CLOSE_TIMEOUT, framed.send(reply.to_bytes())).await;
                    break;
                }
                Ok(Some(Err(e))) => {
                    debug!(error = %e, "connection read failed");
                    break;
                }
            };
            if shared.config.access.current().is_revoked(&caller.identity) {
                // Revoked after this connection was opened (CRL reloaded): no more requests.
                warn!("certificate revoked since the connection opened: closing");
                let reply = Response::error(
                    peek_id(&body),
                    ErrorKind::NotAllowed,
                    "your certificate has been revoked; this request was not carried out",
                );
                audit_refusal(&shared, &caller, Some(&body), &reply);
                let _ = timeout(CLOSE_TIMEOUT, framed.send(reply.to_bytes())).await;
                break;
            }
            served += 1;
            if over_rate.is_due() {
                over_rate.write(&shared, &caller, limits.max_requests_per_sec);
            }
            let mut replier = FrameReplier {
                framed: &mut framed,
                limits: &limits,
                failed: false,
            };
            if bucket.try_take() {
                // Boxed: the request path's state lives only while a request is handled, not
                // in every idle connection's task (about 2 KB each, times 1,000 connections).
                Box::pin(request::handle(&shared, &caller, &body, &mut replier)).await;
            } else {
                debug!("over the request rate limit");
                over_rate.count += 1;
                replier
                    .reply(rate_limited(&body, limits.max_requests_per_sec))
                    .await;
            }
            if replier.failed {
                break;
            }
        }
        over_rate.write(&shared, &caller, limits.max_requests_per_sec);
        let _ = timeout(CLOSE_TIMEOUT, framed.get_mut().shutdown()).await;
        debug!(requests = served, "client disconnected");
    }
    .instrument(span)
    .await;
}
