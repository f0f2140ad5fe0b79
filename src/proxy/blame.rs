//! Whose fault a failed exchange with a node is: passive health may count only what the
//! node did.
//!
//! A node that refuses or resets a connection, or that has the whole request and does not
//! answer in time, is evidence about the node; officeswitch counts it towards `fall`
//! ([`crate::sticky::health`]). What a client does to its own request is not: an upload
//! cut off mid-body, a chunk size hyper cannot parse, a body that stalls until the node
//! gives up. Counting those let twelve anonymous requests mark every node of two pools
//! down. So the request body is watched as it streams ([`BodyProgress`]), and a failure is
//! blamed on the node only when the client's side of the exchange was complete and sound.
//! A node's 5xx answer is no evidence either: the node is alive, and a client can provoke
//! one; the active checks judge answers.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::answer::Answer;

/// The request body is still streaming.
const SENDING: u8 = 0;
/// The whole body went to the node.
const COMPLETE: u8 = 1;
/// The client's body failed (cut off, malformed chunk).
const CLIENT_FAILED: u8 = 2;

/// How far a request body got on its way to the node; shared by the body and the proxy.
/// A request without a body (most: assets, pages) is complete from the start and
/// allocates nothing (`None`).
#[derive(Debug, Clone)]
pub struct BodyProgress(Option<Arc<AtomicU8>>);

impl BodyProgress {
    /// Wraps `body` so its progress can be read after the exchange.
    pub fn track<B>(body: B) -> (Tracked<B>, BodyProgress)
    where
        B: Body<Data = Bytes>,
    {
        let progress = if body.is_end_stream() {
            BodyProgress::complete()
        } else {
            BodyProgress(Some(Arc::new(AtomicU8::new(SENDING))))
        };
        (
            Tracked {
                inner: body,
                progress: progress.clone(),
            },
            progress,
        )
    }

    /// Progress of a request whose body is already whole (a form officeswitch rewrote).
    pub fn complete() -> BodyProgress {
        BodyProgress(None)
    }

    fn state(&self) -> u8 {
        self.0
            .as_ref()
            .map_or(COMPLETE, |state| state.load(Ordering::Acquire))
    }

    fn set(&self, state: u8) {
        if let Some(shared) = &self.0 {
            shared.store(state, Ordering::Release);
        }
    }
}

/// A request body that records its [`BodyProgress`].
#[derive(Debug)]
pub struct Tracked<B> {
    inner: B,
    progress: BodyProgress,
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let state = match &polled {
            Poll::Ready(None) => Some(COMPLETE),
            Poll::Ready(Some(Err(_))) => Some(CLIENT_FAILED),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => Some(COMPLETE),
            _ => None,
        };
        if let Some(state) = state {
            self.progress.set(state);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Who failed an exchange that ended in `answer`.
#[derive(Debug)]
pub enum Blame {
    /// The node: count it (why, for the health log line).
    Node(String),
    /// The client, which gets this answer instead; the node is not counted.
    Client(Answer),
}

/// Blames the failure `answer` of an exchange whose body got as far as `progress`.
pub fn blame(answer: Answer, progress: &BodyProgress) -> Blame {
    match (progress.state(), answer) {
        (CLIENT_FAILED, _) => Blame::Client(Answer::ClientBodyFailed),
        // The node waited for the rest of a body that never came.
        (SENDING, Answer::GatewayTimeout) => Blame::Client(Answer::ClientBodyStalled),
        (_, answer) => Blame::Node(answer.reason().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    fn failing_body() -> impl Body<Data = Bytes, Error = std::io::Error> + Unpin {
        let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"0123456789"))),
            Err(std::io::Error::other("connection reset by the client")),
        ];
        StreamBody::new(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn progress_follows_the_body() {
        let (body, progress) = BodyProgress::track(Full::new(Bytes::from_static(b"form")));
        assert_eq!(progress.state(), SENDING);
        body.collect().await.unwrap();
        assert_eq!(progress.state(), COMPLETE);

        let (body, progress) = BodyProgress::track(failing_body());
        assert!(body.collect().await.is_err());
        assert_eq!(progress.state(), CLIENT_FAILED);

        let (_, empty) = BodyProgress::track(http_body_util::Empty::<Bytes>::new());
        assert_eq!(empty.state(), COMPLETE);
    }

    #[test]
    fn only_what_the_node_did_is_the_nodes() {
        let sending = BodyProgress(Some(Arc::new(AtomicU8::new(SENDING))));
        let failed = BodyProgress(Some(Arc::new(AtomicU8::new(CLIENT_FAILED))));
        let complete = BodyProgress::complete();
        let refused = || Answer::BadGateway("connection refused".into());
        assert!(matches!(
            blame(refused(), &failed),
            Blame::Client(Answer::ClientBodyFailed)
        ));
        assert!(matches!(
            blame(Answer::GatewayTimeout, &sending),
            Blame::Client(Answer::ClientBodyStalled)
        ));
        assert!(matches!(
            blame(Answer::GatewayTimeout, &complete),
            Blame::Node(_)
        ));
        assert!(matches!(blame(refused(), &sending), Blame::Node(why) if why.contains("refused")));
    }
}
