//! One bounded GET to an editor node: a deadline for the whole exchange and a cap on the body.
//!
//! An editor that hangs, answers 500 or streams 50 MB must cost officeswitch a log line,
//! never a stuck task or a memory spike.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use url::Url;

use crate::upstream::{UpstreamClient, error_chain};

/// Why a fetch produced no usable body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// Connection refused, reset, DNS or TLS failure.
    #[error("request failed: {0}")]
    Request(String),
    /// No complete answer within the deadline.
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// The node answered with a non-2xx status.
    #[error("status {0}")]
    Status(StatusCode),
    /// The body exceeded the configured cap.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// The connection broke while reading the body.
    #[error("body read failed: {0}")]
    Body(String),
}

/// Fetches `url` and returns its body, within `timeout` and `max_body` bytes.
///
/// # Errors
/// [`FetchError`] for every way the node can fail to give a complete 2xx body.
pub async fn get(
    client: &UpstreamClient,
    url: &Url,
    timeout: Duration,
    max_body: usize,
) -> Result<Bytes, FetchError> {
    get_with_headers(client, url, &HeaderMap::new(), timeout, max_body).await
}

/// [`get`] with extra request headers: discovery fetches carry the forwarding headers the
/// proxy sends, so an editor that builds URLs from them announces what browsers will see.
///
/// # Errors
/// As [`get`].
pub async fn get_with_headers(
    client: &UpstreamClient,
    url: &Url,
    headers: &HeaderMap,
    timeout: Duration,
    max_body: usize,
) -> Result<Bytes, FetchError> {
    let exchange = async {
        let mut request = Request::get(url.as_str());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .header(
                header::USER_AGENT,
                concat!("officeswitch/", env!("CARGO_PKG_VERSION")),
            )
            .body(
                Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .map_err(|e| FetchError::Request(e.to_string()))?;
        let response = client
            .request(request)
            .await
            .map_err(|e| FetchError::Request(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status));
        }
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge(max_body)
                } else {
                    FetchError::Body(e.to_string())
                }
            })?;
        Ok(body.to_bytes())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}
