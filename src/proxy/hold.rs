//! WOPI calls held while the host cannot be reached, so a save made during a Nextcloud
//! restart lands once it is back.
//!
//! Editors do not retry: ONLYOFFICE Docs 9.2.1 gives up on a failed PutFile at once (its
//! exit saves end in its "forgotten" files). So when the connection to the host cannot be
//! **opened** (refused, reset or timed out while connecting), officeswitch sends the same
//! call again, after 250 ms, then doubling up to 2 s, until `wopi.host_timeout`. Nothing
//! reached the host on such an attempt, so sending again cannot write twice; the same signed
//! head is sent (richdocuments accepts a proof 20 minutes old). The body is never buffered:
//! it is handed back ([`Reclaimable`]) only if nothing read it, which holds whenever no
//! connection opened; once a byte was read, a failure is the editor's 502 as before.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::answer::Answer;
use super::forward;
use crate::upstream::{self, Destination, UpstreamBody, UpstreamClient};

/// Wait before the first repeat.
const FIRST_WAIT: Duration = Duration::from_millis(250);

/// Longest wait between two attempts: a host back on its feet is reached within this.
const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// Sends a WOPI call to the host within `within`, repeating it while the host's connection
/// cannot be opened and its body is untouched.
///
/// # Errors
/// 504 when the deadline passes during an attempt; 502 when the host failed otherwise,
/// or still refused connections when the next attempt would have been past the deadline.
pub async fn send(
    client: &UpstreamClient,
    request: Request<UpstreamBody>,
    within: Duration,
) -> Result<Response<upstream::Body>, Answer> {
    let deadline = Instant::now() + within;
    let (head, mut body) = request.into_parts();
    let mut wait = FIRST_WAIT;
    loop {
        let (reclaimable, reclaim) = Reclaimable::new(body);
        let attempt = Request::from_parts(head.clone(), reclaimable.boxed());
        let sent = forward::send_until(client, Destination::Uri, attempt, deadline).await;
        let unopened = matches!(&sent, Ok(Err(e)) if forward::not_opened(e));
        let again = match reclaim.take() {
            Some(untouched) if unopened && Instant::now() + wait < deadline => untouched,
            _ => return forward::into_answer(sent),
        };
        if wait == FIRST_WAIT {
            tracing::warn!(
                host = head.uri.authority().map_or("", |a| a.as_str()),
                call = %describe(&head),
                within_secs = deadline.saturating_duration_since(Instant::now()).as_secs(),
                "WOPI host unreachable: holding the call, sending it again once the host accepts connections"
            );
        }
        tokio::time::sleep(wait).await;
        crate::metrics::global().host_retry();
        wait = (wait * 2).min(LONGEST_WAIT);
        body = again;
    }
}

/// The call for the log line: method and `X-WOPI-Override` (the URL carries the host's
/// token, so it is not logged).
fn describe(head: &http::request::Parts) -> String {
    let over = head
        .headers
        .get("x-wopi-override")
        .and_then(|v| v.to_str().ok());
    match over {
        Some(over) => format!("{} {over}", head.method),
        None => head.method.to_string(),
    }
}

/// A request body that is handed back, through its [`Reclaim`], when it is dropped
/// before anything read it.
pub struct Reclaimable<B> {
    /// The body; emptied only by `drop`.
    body: Option<B>,
    /// Whether a frame was asked for: from then on the body belongs to this request.
    read: bool,
    /// Where an unread body goes when this is dropped.
    slot: Arc<Mutex<Option<B>>>,
}

/// Takes back the body of a [`Reclaimable`] that was dropped unread.
pub struct Reclaim<B>(Arc<Mutex<Option<B>>>);

impl<B> Reclaimable<B> {
    /// Wraps `body`; the handle gets it back if the wrapper is dropped unread.
    pub fn new(body: B) -> (Reclaimable<B>, Reclaim<B>) {
        let slot = Arc::new(Mutex::new(None));
        let reclaim = Reclaim(Arc::clone(&slot));
        let body = Reclaimable {
            body: Some(body),
            read: false,
            slot,
        };
        (body, reclaim)
    }
}

impl<B> Reclaim<B> {
    /// The body, untouched, if its wrapper was dropped before anything read it; `None`
    /// while the wrapper lives or once a frame was asked for.
    pub fn take(&self) -> Option<B> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl<B> Drop for Reclaimable<B> {
    fn drop(&mut self) {
        if !self.read
            && let Some(body) = self.body.take()
        {
            *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(body);
        }
    }
}

impl<B: Body + Unpin> Body for Reclaimable<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.read = true;
        match self.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Full, StreamBody};

    fn chunks(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = std::io::Error> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_dropped_unread_comes_back_whole() {
        let (wrapped, reclaim) = Reclaimable::new(chunks(&["one ", "two ", "three"]));
        assert!(
            reclaim.take().is_none(),
            "nothing back while the wrapper lives"
        );
        assert!(!wrapped.is_end_stream());
        drop(wrapped);
        let back = reclaim.take().expect("the unread body");
        let bytes = back.collect().await.expect("collect").to_bytes();
        assert_eq!(&bytes[..], b"one two three");
        assert!(reclaim.take().is_none(), "handed back once");
    }

    #[tokio::test]
    async fn a_body_read_from_is_never_handed_back() {
        let (mut wrapped, reclaim) = Reclaimable::new(chunks(&["one ", "two"]));
        let first = wrapped.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().ok().as_deref(), Some(&b"one "[..]));
        drop(wrapped);
        assert!(reclaim.take().is_none(), "a read body is not sent again");
    }

    #[test]
    fn the_wrapper_reports_what_the_body_reports() {
        let (wrapped, _reclaim) = Reclaimable::new(Full::new(Bytes::from_static(b"12345")));
        assert_eq!(wrapped.size_hint().exact(), Some(5));
        assert!(!wrapped.is_end_stream());
        let (empty, _reclaim) = Reclaimable::new(http_body_util::Empty::<Bytes>::new());
        assert!(empty.is_end_stream());
    }
}
