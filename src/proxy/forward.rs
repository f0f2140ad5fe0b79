//! Phase 4: send the rewritten request to the node over the pooled client, and stream.
//!
//! Bodies are never collected: the request body streams to the node as the client sends
//! it and the response body streams back as the node sends it, with hyper's flow control
//! as backpressure. Dropping the response (the client went away) drops the upstream
//! exchange, which cancels it.

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

/// A client request body, as the upstream client sends it.
pub fn upstream_body<B>(body: B) -> UpstreamBody
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    body.boxed()
}

/// A node's response body, as officeswitch sends it on.
pub fn client_body(body: Incoming) -> ProxyBody {
    body.map_err(|e| -> BoxError { Box::new(e) }).boxed()
}
