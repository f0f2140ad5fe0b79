//! Deadlines on a client connection: its first request, then idleness.
//!
//! hyper's header timeout starts once it reads a request head; before that, the
//! HTTP/1-or-2 detection of hyper-util waits for bytes without a deadline, and HTTP/2 has
//! no header timeout at all. A client that connects and stays silent (or sends the HTTP/2
//! preface and nothing more) would hold a socket forever; so would a kept-alive HTTP/1.1
//! or HTTP/2 connection that never sends another request (1,100 idle h2c connections
//! starved every other client). This wrapper of the connection's stream:
//!
//! - fails reads once the header deadline passes unless the first request has arrived;
//! - afterwards ends the stream (EOF, which closes the connection cleanly) once no request
//!   is in flight and no byte has moved either way for the idle time.
//!
//! A connection that became a WebSocket tunnel is left alone: the tunnel has its own idle
//! timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the request handler tells the connection's stream about its requests.
#[derive(Clone, Debug, Default)]
pub struct Requests(Arc<State>);

#[derive(Debug, Default)]
struct State {
    first_arrived: AtomicBool,
    upgraded: AtomicBool,
    in_flight: AtomicUsize,
}

/// A request in flight on a connection: the connection is not idle until it drops (when
/// its response has ended).
#[derive(Debug)]
pub struct InFlight(Requests);

impl Requests {
    /// A request arrived: the header deadline no longer applies, and the connection is
    /// busy until the returned guard drops.
    pub fn started(&self) -> InFlight {
        self.0.first_arrived.store(true, Ordering::Relaxed);
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// The connection became a tunnel: no idle deadline from here on.
    pub fn upgraded(&self) {
        self.0.upgraded.store(true, Ordering::Relaxed);
    }

    fn has_arrived(&self) -> bool {
        self.0.first_arrived.load(Ordering::Relaxed)
    }

    fn busy(&self) -> bool {
        self.0.upgraded.load(Ordering::Relaxed) || self.0.in_flight.load(Ordering::Acquire) > 0
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
/// touched tokio's timer wheel twice per request); when it fires, it is set again from the
/// last byte, so the connection still closes `idle` after it.
pub struct Deadline<S> {
    inner: S,
    timer: Pin<Box<Sleep>>,
    idle: Duration,
    /// When a byte last moved once the first request was in.
    last_active: Option<Instant>,
    requests: Requests,
}

impl<S> Deadline<S> {
    /// Wraps `inner`: the first request must arrive within `header`, and the connection
    /// closes after `idle` without a request or a byte; `requests` is shared with the
    /// request handler.
    pub fn new(inner: S, header: Duration, idle: Duration, requests: Requests) -> Deadline<S> {
        Deadline {
            inner,
            timer: Box::pin(tokio::time::sleep(header)),
            idle,
            last_active: None,
            requests,
        }
    }

    /// Bytes moved: the idle time starts again (once the first request is in).
    fn active(&mut self) {
        if self.requests.has_arrived() {
            self.last_active = Some(Instant::now());
        }
    }

    /// Waits for the deadline: `Ready(Err)` when the first request did not come in time,
    /// `Ready(Ok)` when the connection has been idle for the idle time (the stream ends),
    /// `Pending` otherwise (the timer set again to the next point worth looking).
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.timer.as_mut().poll(cx).is_ready() {
            if !self.requests.has_arrived() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request received in time",
                )));
            }
            let now = Instant::now();
            let next = match self.last_active.take() {
                // Bytes moved since the timer was set: idle counts from the last one.
                Some(at) if at + self.idle > now => at + self.idle,
                _ if self.requests.busy() => now + self.idle,
                // Nothing read: end of stream, and the connection closes.
                _ => return Poll::Ready(Ok(())),
            };
            self.timer.as_mut().reset(next);
        }
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
                    self.active();
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
            self.active();
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
            self.active();
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
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, duplex};

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
        let busy = requests.started();
        // Busy: the idle time passes and the stream keeps waiting for bytes.
        let read = tokio::time::timeout(IDLE * 2, stream.read(&mut [0; 8])).await;
        assert!(read.is_err(), "a connection with a request in flight stays");
        drop(busy);
        let start = Instant::now();
        assert_eq!(stream.read(&mut [0; 8]).await.unwrap(), 0, "end of stream");
        assert!(start.elapsed() <= IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_moving_keep_a_connection_until_the_idle_time_after_the_last() {
        let (mut client, server) = duplex(64);
        let requests = Requests::default();
        let mut stream = Deadline::new(server, HEADER, IDLE, requests.clone());
        client.write_all(b"GET").await.unwrap();
        assert_eq!(stream.read(&mut [0; 8]).await.unwrap(), 3);
        drop(requests.started());
        // A byte every half idle time, past both deadlines: still open.
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
        drop(requests.started());
        requests.upgraded();
        let read = tokio::time::timeout(IDLE * 3, stream.read(&mut [0; 8])).await;
        assert!(read.is_err(), "still open");
    }
}
