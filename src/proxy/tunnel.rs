//! WebSocket (and any other `Upgrade`) tunnels: bytes copied both ways, unchanged, until
//! either side closes, the tunnel has been silent both ways for the idle limit, or the
//! drain closes it.
//!
//! Idle editor sockets are the common case (thousands per instance, most of them quiet),
//! so a tunnel holds a copy buffer only while bytes are in flight: each direction takes
//! one when its source is readable and gives it back as soon as the source has nothing
//! more. When the drain closes a WebSocket, each direction first runs to the end of the
//! frame it is in (`frames`), then both peers get a close frame (1001, going away).

mod frames;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::access_log::AccessLog;
use crate::metrics::WebSocketMetrics;
use frames::FrameCursor;

/// Copy buffer size: a burst moves in chunks this large.
const BUFFER: usize = 16 * 1024;

/// Time a closing tunnel waits for both directions to reach a frame boundary.
const BOUNDARY_WAIT: Duration = Duration::from_secs(1);

/// Time a closing tunnel gives its close frames to leave.
const CLOSE_WRITE_WAIT: Duration = Duration::from_secs(1);

/// The close frame's reason, as editors show it.
const CLOSE_REASON: &[u8] = b"officeswitch restarting";

/// How a tunnel is to be run.
pub struct TunnelSettings {
    /// Silence (both ways) after which the tunnel is closed.
    pub idle: Duration,
    /// Whether the upgrade is a WebSocket (close frames on drain) or something else.
    pub websocket: bool,
    /// Cancelled when the drain closes every tunnel.
    pub closing: CancellationToken,
}

/// Waits for both sides to finish upgrading, then copies until the end; writes `log`
/// with the bytes sent to the client when done.
pub async fn run(client: OnUpgrade, upstream: OnUpgrade, settings: TunnelSettings, log: AccessLog) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            log.write(0, Some(&format!("upgrade failed: {e}")));
            return;
        }
    };
    let mut tunnel = Tunnel {
        client: TokioIo::new(client),
        upstream: TokioIo::new(upstream),
        to_node: Pump::new(settings.websocket),
        to_client: Pump::new(settings.websocket),
        last_activity: Instant::now(),
        metrics: crate::metrics::global().websocket_opened(log.pool(), log.node()),
        counted: (0, 0),
    };
    let outcome = tunnel.copy(settings.idle, &settings.closing).await;
    let outcome = match outcome {
        Outcome::Closing => tunnel.close(settings.websocket).await,
        other => other,
    };
    tunnel.count_bytes();
    let to_client = tunnel.to_client.moved;
    match outcome {
        Outcome::Finished => log.write(to_client, None),
        Outcome::Failed(e) => log.write(to_client, Some(&e.to_string())),
        Outcome::Idle => log.write(
            to_client,
            Some(&format!("idle for {}s, closed", settings.idle.as_secs())),
        ),
        Outcome::Closing | Outcome::ClosedByDrain => {
            log.write(to_client, Some("closed by the drain deadline"));
        }
    }
}

/// How the copying ended.
enum Outcome {
    /// Both sides closed.
    Finished,
    /// A read or write failed.
    Failed(io::Error),
    /// Silent both ways for the idle limit.
    Idle,
    /// The drain asks to close (then [`Tunnel::close`] runs).
    Closing,
    /// Closed by the drain.
    ClosedByDrain,
}

/// The two upgraded connections and a pump for each direction.
struct Tunnel {
    client: TokioIo<Upgraded>,
    upstream: TokioIo<Upgraded>,
    to_node: Pump,
    to_client: Pump,
    /// When bytes last moved either way.
    last_activity: Instant,
    /// Open-tunnel gauge and byte counters of this pool and node.
    metrics: WebSocketMetrics,
    /// Bytes already added to the counters (to the node, to the client).
    counted: (u64, u64),
}

impl Tunnel {
    /// Copies both ways until the end, the idle limit or `closing`.
    async fn copy(&mut self, idle: Duration, closing: &CancellationToken) -> Outcome {
        loop {
            let quiet_until = self.last_activity + idle;
            tokio::select! {
                result = poll_fn(|cx| self.poll_both(cx)) => {
                    return match result {
                        Ok(()) => Outcome::Finished,
                        Err(e) => Outcome::Failed(e),
                    };
                }
                () = tokio::time::sleep_until(quiet_until) => {
                    if self.last_activity + idle <= Instant::now() {
                        return Outcome::Idle;
                    }
                }
                () = closing.cancelled() => return Outcome::Closing,
            }
        }
    }

    /// Polls both directions; ready when both ended or one failed.
    fn poll_both(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (up, down) = (
            self.to_node.poll(cx, &mut self.client, &mut self.upstream),
            self.to_client
                .poll(cx, &mut self.upstream, &mut self.client),
        );
        if self.to_node.touched || self.to_client.touched {
            self.to_node.touched = false;
            self.to_client.touched = false;
            self.last_activity = Instant::now();
            self.count_bytes();
        }
        match (up, down) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    }

    /// Adds the bytes moved since the last call to the counters.
    fn count_bytes(&mut self) {
        let (to_node, to_client) = (self.to_node.moved, self.to_client.moved);
        self.metrics.to_node(to_node - self.counted.0);
        self.metrics.to_client(to_client - self.counted.1);
        self.counted = (to_node, to_client);
    }

    /// Ends the tunnel for the drain: each direction runs to a frame boundary, then each
    /// peer still listening gets a close frame and the end of the stream.
    async fn close(&mut self, websocket: bool) -> Outcome {
        if websocket {
            self.to_node.stop_at_boundary = true;
            self.to_client.stop_at_boundary = true;
            let settled =
                tokio::time::timeout(BOUNDARY_WAIT, poll_fn(|cx| self.poll_both(cx))).await;
            if let Ok(Err(e)) = settled {
                return Outcome::Failed(e);
            }
            if !(self.to_node.at_rest() && self.to_client.at_rest()) {
                // Mid-frame after the wait: a close frame now would corrupt the stream.
                return Outcome::ClosedByDrain;
            }
        }
        let (to_client, to_node) = (!self.to_client.ended, !self.to_node.ended);
        let send = async {
            if to_client {
                if websocket {
                    self.client
                        .write_all(&frames::close_frame(CLOSE_REASON))
                        .await?;
                }
                self.client.shutdown().await?;
            }
            if to_node {
                if websocket {
                    let frame = frames::masked_close_frame(CLOSE_REASON, frames::mask_key());
                    self.upstream.write_all(&frame).await?;
                }
                self.upstream.shutdown().await?;
            }
            Ok::<(), io::Error>(())
        };
        match tokio::time::timeout(CLOSE_WRITE_WAIT, send).await {
            Ok(Err(e)) => Outcome::Failed(e),
            _ => Outcome::ClosedByDrain,
        }
    }
}

/// One direction of a tunnel: reads from a source, writes to a destination.
struct Pump {
    /// Held only while bytes are in flight; an idle direction holds none.
    buffer: Option<Box<[u8]>>,
    /// Bytes read but not yet written: `buffer[start..end]`.
    start: usize,
    end: usize,
    /// Frame boundaries of what was written (WebSockets only).
    frames: Option<FrameCursor>,
    /// Bytes written to the destination.
    moved: u64,
    /// Bytes moved since the tunnel last looked.
    touched: bool,
    /// Written since the destination was last flushed.
    unflushed: bool,
    /// The source ended and the destination was shut down.
    ended: bool,
    /// Source at end of stream; the shutdown of the destination may be pending.
    eof: bool,
    /// Stop at the next frame boundary instead of copying on (drain).
    stop_at_boundary: bool,
}

impl Pump {
    fn new(websocket: bool) -> Pump {
        Pump {
            buffer: None,
            start: 0,
            end: 0,
            frames: websocket.then(FrameCursor::default),
            moved: 0,
            touched: false,
            unflushed: false,
            ended: false,
            eof: false,
            stop_at_boundary: false,
        }
    }

    /// Whether this direction can take a close frame now: ended, or what was written so
    /// far ends at a frame boundary (bytes read beyond it are dropped).
    fn at_rest(&self) -> bool {
        self.ended || self.frames.as_ref().is_none_or(FrameCursor::at_boundary)
    }

    /// Moves bytes from `src` to `dst` until `src` has nothing more for now (pending),
    /// `src` ended (ready), or, when stopping, the next frame boundary (ready).
    fn poll<R, W>(&mut self, cx: &mut Context<'_>, src: &mut R, dst: &mut W) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.ended {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.start < self.end {
                let mut len = self.end - self.start;
                if self.stop_at_boundary
                    && let Some(frames) = &self.frames
                {
                    let buffer = self.buffer.as_deref().unwrap_or_default();
                    len = frames.until_boundary(&buffer[self.start..self.end]);
                    if len == 0 {
                        return self.poll_flush(cx, dst);
                    }
                }
                let buffer = self.buffer.as_deref().unwrap_or_default();
                let chunk = &buffer[self.start..self.start + len];
                let written = ready!(Pin::new(&mut *dst).poll_write(cx, chunk))?;
                if written == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                if let Some(frames) = &mut self.frames {
                    frames.advance(&chunk[..written]);
                }
                self.start += written;
                self.moved += written as u64;
                self.touched = true;
                self.unflushed = true;
                continue;
            }
            if self.stop_at_boundary {
                spare::give(self.buffer.take());
                if self.frames.as_ref().is_none_or(FrameCursor::at_boundary) {
                    return self.poll_flush(cx, dst);
                }
            }
            if self.eof {
                ready!(Pin::new(&mut *dst).poll_shutdown(cx))?;
                self.ended = true;
                return Poll::Ready(Ok(()));
            }
            let buffer = self.buffer.get_or_insert_with(spare::take);
            let mut read = ReadBuf::new(buffer);
            match Pin::new(&mut *src).poll_read(cx, &mut read) {
                Poll::Pending => {
                    // Nothing to copy: give the buffer back while the source is quiet.
                    spare::give(self.buffer.take());
                    ready!(self.poll_flush(cx, dst))?;
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    if n == 0 {
                        spare::give(self.buffer.take());
                        self.eof = true;
                    }
                    self.start = 0;
                    self.end = n;
                }
            }
        }
    }

    fn poll_flush<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
    ) -> Poll<io::Result<()>> {
        if self.unflushed {
            ready!(Pin::new(dst).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}

/// Copy buffers between bursts: a few per worker thread, so an active tunnel does not
/// allocate on every message and an idle one holds none.
mod spare {
    use std::cell::RefCell;

    use super::BUFFER;

    /// Buffers kept per thread.
    const KEEP: usize = 16;

    thread_local! {
        static SPARE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer of [`BUFFER`] bytes.
    pub fn take() -> Box<[u8]> {
        SPARE
            .with_borrow_mut(Vec::pop)
            .unwrap_or_else(|| vec![0; BUFFER].into_boxed_slice())
    }

    /// Returns a buffer for the next burst.
    pub fn give(buffer: Option<Box<[u8]>>) {
        if let Some(buffer) = buffer {
            SPARE.with_borrow_mut(|spare| {
                if spare.len() < KEEP {
                    spare.push(buffer);
                }
            });
        }
    }
}
