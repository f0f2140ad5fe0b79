//! WebSocket (and any other `Upgrade`) tunnels: bytes copied both ways, unchanged, until
//! either side closes or the tunnel has been silent both ways for the idle limit.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::access_log::AccessLog;

/// Per-direction copy buffer. Small on purpose: idle editor sockets are the common case,
/// and each tunnel holds two.
const BUFFER: usize = 4096;

/// Waits for both sides to finish upgrading, then copies until the end; writes `log`
/// with the bytes sent to the client when done.
pub async fn run(client: OnUpgrade, upstream: OnUpgrade, idle: Duration, log: AccessLog) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            log.write(0, Some(&format!("upgrade failed: {e}")));
            return;
        }
    };
    let pool = log.pool().to_string();
    crate::metrics::global().websocket(&pool, 1);
    let activity = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut client = Tracked::new(TokioIo::new(client), activity.clone(), started);
    let mut upstream = Tracked::new(TokioIo::new(upstream), activity.clone(), started);
    let outcome = {
        let copy =
            tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER, BUFFER);
        tokio::pin!(copy);
        loop {
            let last = Duration::from_millis(activity.load(Ordering::Relaxed));
            tokio::select! {
                result = &mut copy => {
                    break result.map(|(_, to_client)| to_client).map_err(|e| e.to_string());
                }
                () = tokio::time::sleep_until(started + last + idle) => {
                    if activity.load(Ordering::Relaxed) == last.as_millis() as u64 {
                        break Err(format!("idle for {}s, closed", idle.as_secs()));
                    }
                }
            }
        }
    };
    crate::metrics::global().websocket(&pool, -1);
    match outcome {
        Ok(to_client) => log.write(to_client, None),
        Err(e) => log.write(client.read_by_peer(), Some(&e)),
    }
}

/// A stream that records when it last moved bytes (both directions share one clock).
struct Tracked<S> {
    inner: S,
    activity: Arc<AtomicU64>,
    started: Instant,
    written: u64,
}

impl<S> Tracked<S> {
    fn new(inner: S, activity: Arc<AtomicU64>, started: Instant) -> Self {
        Tracked {
            inner,
            activity,
            started,
            written: 0,
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(ms, Ordering::Relaxed);
    }

    /// Bytes written to this side so far.
    fn read_by_peer(&self) -> u64 {
        self.written
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            self.written += n as u64;
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
