//! Phase 4: send the rewritten request to the node over the pooled client, and stream.
//!
//! Bodies are never collected: the request body streams to the node as the client sends
//! it and the response body streams back as the node sends it, with hyper's flow control
//! as backpressure. Dropping the response (the client went away) drops the upstream
//! exchange, which cancels it. Request body bytes are counted for metrics as each chunk
//! passes, so a long upload shows on `/metrics` while it streams.

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Body as _;
use tokio::time::Instant;
use tokio::time::error::Elapsed;

use super::answer::{Answer, BoxError, ProxyBody};
use crate::upstream::{self, Destination, UpstreamBody, UpstreamClient, error_chain};

/// What one send ended with: the response, the client's error, or the deadline passed.
pub type Sent = Result<Result<Response<upstream::Body>, upstream::Error>, Elapsed>;

/// Sends `request` and waits for the response head until `deadline`; the outcome is not
/// yet an answer ([`into_answer`]), so callers can look at the error first (the host calls
/// of [`super::hold`], an open page's retry on another node).
///
/// A node may close a kept-alive connection right after answering on it without saying so
/// (coolwsd does after some 404s); a request that meets that connection gets "connection
/// closed before message completed" with no response byte. An idempotent request without
/// a body is then sent once more, on a new connection (another pooled one may be as
/// stale): the node never answered it.
pub async fn send_until(
    client: &UpstreamClient,
    to: Destination<'_>,
    request: Request<UpstreamBody>,
    deadline: Instant,
) -> Sent {
    let again = replayable(&request);
    let first = tokio::time::timeout_at(deadline, client.send(to, request, true)).await;
    match (first, again) {
        (Ok(Err(e)), Some(again)) if closed_unanswered(&e) => {
            crate::metrics::global().upstream_retry();
            tokio::time::timeout_at(deadline, client.send(to, again, false)).await
        }
        (first, _) => first,
    }
}

/// The answer for a send's outcome: 504 past the deadline, 502 when the node refuses,
/// resets or speaks something other than HTTP.
///
/// # Errors
/// Those two.
pub fn into_answer(sent: Sent) -> Result<Response<upstream::Body>, Answer> {
    match sent {
        Err(_) => Err(Answer::GatewayTimeout),
        Ok(Err(e)) => Err(Answer::BadGateway(error_chain(&e))),
        Ok(Ok(response)) => Ok(response),
    }
}

/// A copy of `request` to send again, when it is idempotent and has no body.
fn replayable(request: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    let idempotent = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !idempotent || !request.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(Empty::new().map_err(|never| match never {}).boxed());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// Whether the exchange failed because a reused connection closed before the response.
fn closed_unanswered(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(hyper_error) = e.downcast_ref::<hyper::Error>() {
            return hyper_error.is_incomplete_message();
        }
        source = e.source();
    }
    false
}

/// A client request body of a `class` request, as the upstream client sends it, counted
/// into `officeswitch_request_bytes_total` chunk by chunk.
pub fn upstream_body<B>(body: B, class: &'static str) -> UpstreamBody
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    // Most requests have no body: no counter, no per-frame closure.
    if body.is_end_stream() {
        return body.boxed();
    }
    let counter = crate::metrics::global().request_bytes(class);
    body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            counter.inc_by(data.len() as u64);
        }
        frame
    })
    .boxed()
}

/// A node's response body, as officeswitch sends it on.
pub fn client_body(body: upstream::Body) -> ProxyBody {
    body.map_err(|e| -> BoxError { Box::new(e) }).boxed()
}

/// Whether the client could not open a connection (to a node or the host), so nothing of
/// the request left officeswitch: refused, reset or aborted while connecting, timed out, unreachable.
/// Refusals of TLS (a bad certificate) are not among them: repeating does not cure those.
pub fn not_opened(error: &upstream::Error) -> bool {
    use std::io::ErrorKind;
    if !error.is_connect() {
        return false;
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::TimedOut
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            );
        }
        source = e.source();
    }
    false
}
