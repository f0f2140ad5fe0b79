//! Deadlines on a client connection: its request heads, then idleness.
//!
//! hyper's own header timeout arms a fresh timer for every request head (an allocation
//! and two trips to tokio's timer wheel per request) and counts a kept-alive
//! connection's idle wait as head time; before the first request, the HTTP/1-or-2
//! detection of hyper-util waits for bytes without a deadline, and HTTP/2 has no header
//! timeout at all. A client that connects and stays silent (or sends the HTTP/2 preface
//! and nothing more) would hold a socket forever; so would a kept-alive HTTP/1.1 or
//! HTTP/2 connection that never sends another request (1,100 idle h2c connections
//! starved every other client). This wrapper of the connection's stream, with one timer
//! per connection that bytes never move:
//!
//! - fails reads once the header time passes unless the first request has arrived;
//! - on HTTP/1, fails reads when a later request head, begun with a byte while no request
//!   was in flight, is still not complete the header time after that byte (checked at
//!   least every header time, so cut between one and two header times);
//! - ends the stream (EOF, which closes the connection cleanly) once no request is in
//!   flight and no byte has moved either way for the idle time.
//!
//! A connection that became a WebSocket tunnel is left alone: the tunnel has its own idle
//! timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the request handler tells the connection's stream about its requests.
#[derive(Clone, Debug, Default)]
pub struct Requests(Arc<State>);

#[derive(Debug, Default)]
struct State {
    /// Requests started so far.
    started: AtomicUsize,
    /// Whether the connection speaks HTTP/2 (streams, no heads between requests).
    http2: AtomicBool,
    upgraded: AtomicBool,
    in_flight: AtomicUsize,
}

/// A request in flight on a connection: the connection is not idle until it drops (when
/// its response has ended).
#[derive(Debug)]
pub struct InFlight(Requests);

impl Requests {
    /// A request arrived (over HTTP/2 when `http2`): its head is complete, and the
    /// connection is busy until the returned guard drops.
    pub fn started(&self, http2: bool) -> InFlight {
        if http2 {
            self.0.http2.store(true, Ordering::Relaxed);
        }
        self.0.started.fetch_add(1, Ordering::Release);
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// The connection became a tunnel: no idle deadline from here on.
    pub fn upgraded(&self) {
        self.0.upgraded.store(true, Ordering::Relaxed);
    }

    /// Requests started so far.
    fn started_count(&self) -> usize {
        self.0.started.load(Ordering::Acquire)
    }

    fn has_arrived(&self) -> bool {
        self.started_count() > 0
    }

    /// Whether bytes read now may be a request head: an HTTP/1 connection with no request
    /// in flight.
    fn awaits_head(&self) -> bool {
        !self.0.http2.load(Ordering::Relaxed) && !self.busy()
    }

    fn busy(&self) -> bool {
        self.0.upgraded.load(Ordering::Relaxed) || self.0.in_flight.load(Ordering::Acquire) > 0
    }
}

impl InFlight {
    /// `body`, the connection busy until it ends or is dropped.
    pub fn until_end_of<B>(self, body: B) -> BusyBody<B> {
        BusyBody {
            body,
            _in_flight: self,
        }
    }
}

/// A response body that keeps its request in flight ([`InFlight::until_end_of`]): a
/// wrapper, not a mapped and boxed body, so a response costs no extra allocation.
#[derive(Debug)]
pub struct BusyBody<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for BusyBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream with the connection's deadlines.
///
/// Bytes moving only note the time: the timer is not moved on every read and write (that
/// touched tokio's timer wheel twice per request); when it fires, it is set again from
/// what was noted, so the connection still closes `idle` after the last byte.
pub struct Deadline<S> {
    inner: S,
    timer: Pin<Box<Sleep>>,
    header: Duration,
    idle: Duration,
    /// When a byte last moved once the first request was in.
    last_active: Option<Instant>,
    /// When the first byte of a request head came in on a kept-alive HTTP/1 connection,
    /// and how many requests had started then (a later count: that head is complete).
    head: Option<(Instant, usize)>,
    /// The task the timer wakes, once polled since it was last set: polling it again
    /// from that task (every read that waits) would only register the same waker again.
    armed_for: Option<Waker>,
    requests: Requests,
}

impl<S> Deadline<S> {
    /// Wraps `inner`: each request head must be complete within `header` (the first one
    /// counted from now), and the connection closes after `idle` without a request or a
    /// byte; `requests` is shared with the request handler.
    pub fn new(inner: S, header: Duration, idle: Duration, requests: Requests) -> Deadline<S> {
        Deadline {
            inner,
            timer: Box::pin(tokio::time::sleep(header)),
            header,
            idle,
            last_active: None,
            head: None,
            armed_for: None,
            requests,
        }
    }

    /// Bytes moved: the idle time starts again (once the first request is in); a read
    /// while no request is in flight begins a head, unless one is under way.
    fn active(&mut self, read: bool) {
        if !self.requests.has_arrived() {
            return;
        }
        let now = Instant::now();
        self.last_active = Some(now);
        if read && self.requests.awaits_head() {
            let started = self.requests.started_count();
            if !matches!(self.head, Some((_, count)) if count == started) {
                self.head = Some((now, started));
            }
        }
    }

    /// Whether a head begun on a kept-alive connection is overdue at `now`.
    fn head_overdue(&self, now: Instant) -> bool {
        self.head.is_some_and(|(since, count)| {
            count == self.requests.started_count()
                && self.requests.awaits_head()
                && since + self.header <= now
        })
    }

    /// Waits for the deadline: `Ready(Err)` when a request head did not come in time,
    /// `Ready(Ok)` when the connection has been idle for the idle time (the stream ends),
    /// `Pending` otherwise (the timer set again to the next point worth looking).
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let armed = self
            .armed_for
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if armed && !self.timer.is_elapsed() {
            return Poll::Pending;
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if !self.requests.has_arrived() || self.head_overdue(now) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no complete request head received in time",
                )));
            }
            let idle_ends = self.last_active.map_or(now, |at| at + self.idle);
            let next = if idle_ends > now {
                idle_ends
            } else if self.requests.busy() {
                now + self.idle
            } else {
                // Nothing moved for the idle time: end of stream, and the connection closes.
                return Poll::Ready(Ok(()));
            };
            // A head may begin with any byte while nothing is in flight: look again
            // within the header time.
            let next = if self.requests.awaits_head() {
                next.min(now + self.header)
            } else {
                next
            };
            self.timer.as_mut().reset(next);
        }
        self.armed_for = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.active(true);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // Nothing to read yet: the deadline decides how long that may last.
            Poll::Pending => self.poll_deadline(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.active(false);
        }
        polled
    }

    /// Passed on, so hyper writes a response's head and body in one call without first
    /// copying the body into its own buffer.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.active(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream, duplex};

    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(75);

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_fails_at_the_header_deadline() {
        let (_client, server) = duplex(64);
        let mut stream = Deadline::new(server, HEADER, IDLE, Requests::default());
        let error = stream.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_kept_alive_connection_ends_after_the_idle_time_only_when_nothing_is_in_flight()
    {
        let (mut client, server) = duplex(64);
        let requests = Requests::default();
        let mut stream = Deadline::new(server, HEADER, IDLE, requests.clone());
        client.write_all(b"GET").await.unwrap();
        assert_eq!(stream.read(&mut [0; 8]).await.unwrap(), 3);
        let busy = requests.started(false);
        // Busy: the idle time passes and the stream keeps waiting for bytes.
        let read = tokio::time::timeout(IDLE * 2, stream.read(&mut [0; 8])).await;
        assert!(read.is_err(), "a connection with a request in flight stays");
        drop(busy);
        let start = Instant::now();
        assert_eq!(stream.read(&mut [0; 8]).await.unwrap(), 0, "end of stream");
        assert!(start.elapsed() <= IDLE);
    }

    /// A connection whose first request (over HTTP/2 when `http2`) was read and answered:
    /// the client's end, the wrapped server end and what the handler tells it.
    async fn served_one_request(http2: bool) -> (DuplexStream, Deadline<DuplexStream>, Requests) {
        let (mut client, server) = duplex(64);
        let requests = Requests::default();
        let mut stream = Deadline::new(server, HEADER, IDLE, requests.clone());
        client.write_all(b"GET").await.unwrap();
        assert_eq!(stream.read(&mut [0; 8]).await.unwrap(), 3);
        drop(requests.started(http2));
        (client, stream, requests)
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_moving_keep_an_http2_connection_until_the_idle_time_after_the_last() {
        let (mut client, mut stream, _) = served_one_request(true).await;
        // A frame every half idle time, past both deadlines: still open.
        for _ in 0..4 {
            tokio::time::sleep(IDLE / 2).await;
            client.write_all(b"x").await.unwrap();
            assert_eq!(stream.read(&mut [0; 8]).await.unwrap(), 1);
        }
        let last = Instant::now();
        assert_eq!(stream.read(&mut [0; 8]).await.unwrap(), 0, "end of stream");
        let waited = last.elapsed();
        assert!(
            waited >= IDLE && waited <= IDLE + Duration::from_millis(2),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_waits_the_idle_time_for_its_next_request() {
        let (mut client, mut stream, requests) = served_one_request(false).await;
        // Silent for most of the idle time, far past the header time: the next request
        // is still read.
        tokio::time::sleep(IDLE - HEADER).await;
        client.write_all(b"GET").await.unwrap();
        assert_eq!(stream.read(&mut [0; 8]).await.unwrap(), 3);
        let busy = requests.started(false);
        let read = tokio::time::timeout(IDLE * 2, stream.read(&mut [0; 8])).await;
        assert!(read.is_err(), "a connection with a request in flight stays");
        drop(busy);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_head_dripping_in_fails_between_one_and_two_header_times() {
        let (mut client, mut stream, _) = served_one_request(false).await;
        tokio::time::sleep(HEADER / 3).await;
        // The next head: a byte every second, never complete.
        let began = Instant::now();
        let error = loop {
            client.write_all(b"x").await.unwrap();
            assert_eq!(stream.read(&mut [0; 8]).await.unwrap(), 1);
            // Waiting for the next byte, as hyper does.
            match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut [0; 8])).await {
                Err(_) => {}
                Ok(Ok(n)) => panic!("read {n} bytes"),
                Ok(Err(e)) => break e,
            }
            assert!(began.elapsed() < HEADER * 3, "never cut");
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let cut = began.elapsed();
        assert!(cut >= HEADER && cut <= HEADER * 2, "{cut:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_completes_in_time_is_not_cut() {
        let (mut client, server) = duplex(64);
        let requests = Requests::default();
        let mut stream = Deadline::new(server, HEADER, IDLE, requests.clone());
        for _ in 0..5 {
            client.write_all(b"GE").await.unwrap();
            assert_eq!(stream.read(&mut [0; 8]).await.unwrap(), 2);
            // The rest of the head just inside the header time.
            tokio::time::sleep(HEADER - Duration::from_secs(1)).await;
            client.write_all(b"T").await.unwrap();
            assert_eq!(stream.read(&mut [0; 8]).await.unwrap(), 1);
            drop(requests.started(false));
        }
    }

    #[tokio::test]
    async fn vectored_writes_reach_the_socket_as_one_write() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        let mut stream = Deadline::new(socket, HEADER, IDLE, Requests::default());
        assert!(
            stream.is_write_vectored(),
            "hyper would copy bodies otherwise"
        );
        let parts = [io::IoSlice::new(b"head "), io::IoSlice::new(b"body")];
        assert_eq!(stream.write_vectored(&parts).await.unwrap(), 9);
        let mut got = [0; 9];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"head body");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_has_no_idle_deadline() {
        let (_client, server) = duplex(64);
        let requests = Requests::default();
        let mut stream = Deadline::new(server, HEADER, IDLE, requests.clone());
        drop(requests.started(false));
        requests.upgraded();
        let read = tokio::time::timeout(IDLE * 3, stream.read(&mut [0; 8])).await;
        assert!(read.is_err(), "still open");
    }
}
