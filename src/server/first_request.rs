//! A deadline on a connection's first request, however little of it arrives.
//!
//! hyper's header timeout starts once it reads a request head; before that, the
//! HTTP/1-or-2 detection of hyper-util waits for bytes without a deadline, and HTTP/2 has
//! no header timeout at all. A client that connects and stays silent (or sends the HTTP/2
//! preface and nothing more) would hold a socket forever. This wrapper fails reads once
//! the deadline passes unless the first request has reached the handler.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Set by the request handler when the connection's first request arrives.
#[derive(Clone, Default)]
pub struct FirstRequest(Arc<AtomicBool>);

impl FirstRequest {
    /// Marks the first request as received: the deadline no longer applies.
    pub fn arrived(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn has_arrived(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A stream whose reads fail with `TimedOut` after `limit` unless a request arrived.
pub struct Deadline<S> {
    inner: S,
    timer: Option<Pin<Box<Sleep>>>,
    first: FirstRequest,
}

impl<S> Deadline<S> {
    /// Wraps `inner`; `first` is shared with the request handler.
    pub fn new(inner: S, limit: Duration, first: FirstRequest) -> Deadline<S> {
        Deadline {
            inner,
            timer: Some(Box::pin(tokio::time::sleep(limit))),
            first,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.first.has_arrived() {
            self.timer = None;
        }
        if let Some(timer) = self.timer.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request received in time",
            )));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
