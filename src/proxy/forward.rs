//! Phase 4: send the rewritten request to the node over the pooled client, and stream.
//!
//! Bodies are never collected: the request body streams to the node as the client sends
//! it and the response body streams back as the node sends it, with hyper's flow control
//! as backpressure. Dropping the response (the client went away) drops the upstream
//! exchange, which cancels it. Request body bytes are counted for metrics as each chunk
//! passes, so a long upload shows on `/metrics` while it streams.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::answer::{Answer, BoxError, ProxyBody};
use crate::upstream::{UpstreamBody, UpstreamClient, error_chain};

/// Sends `request` and waits at most `first_byte` for the node's response head.
///
/// # Errors
/// 504 when the head does not arrive in time, 502 when the node refuses, resets or
/// speaks something other than HTTP.
pub async fn send(
    client: &UpstreamClient,
    request: Request<UpstreamBody>,
    first_byte: Duration,
) -> Result<Response<Incoming>, Answer> {
    match tokio::time::timeout(first_byte, client.request(request)).await {
        Err(_) => Err(Answer::GatewayTimeout),
        Ok(Err(e)) => Err(Answer::BadGateway(error_chain(&e))),
        Ok(Ok(response)) => Ok(response),
    }
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
pub fn client_body(body: Incoming) -> ProxyBody {
    body.map_err(|e| -> BoxError { Box::new(e) }).boxed()
}
