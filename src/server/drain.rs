//! Graceful stop: the timeline a stopping instance follows, shared by the signal handler,
//! the accept loops, `/readyz` and every WebSocket tunnel.
//!
//! ```text
//! SIGTERM ──► /readyz 503 ──(delay)──► listeners closed ──► requests finish ──(deadline)──► close frames, exit
//!    second SIGTERM: straight to "close frames, exit"
//! ```
//! The load balancer sees `/readyz` fail during `delay` and stops sending new clients while
//! the listeners still accept the stragglers. Requests in flight (a PutFile, say) run to
//! their end. Editors' WebSockets keep working until `deadline`; then each gets a close
//! frame (1001, going away) at a frame boundary, which makes the editor reconnect through
//! another instance, where the document's pin sends it to the same node.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::DrainConfig;

/// Time tunnels get to send their close frames before the process exits anyway.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where a stopping instance is on its timeline.
const RUNNING: u8 = 0;
const DRAINING: u8 = 1;
const HURRYING: u8 = 2;

/// The drain timeline of one instance.
pub struct Drain {
    settings: DrainConfig,
    phase: AtomicU8,
    /// Cancelled by the first stop request.
    began: CancellationToken,
    /// Cancelled when the listeners are to stop accepting (after `delay`).
    stop_accepting: CancellationToken,
    /// Cancelled at the deadline or by a second stop request: tunnels close now.
    close_now: CancellationToken,
    /// Every open tunnel, so the stop can wait for them.
    tunnels: TaskTracker,
}

impl Drain {
    /// A running (not yet draining) instance with these settings.
    pub fn new(settings: DrainConfig) -> Drain {
        Drain {
            settings,
            phase: AtomicU8::new(RUNNING),
            began: CancellationToken::new(),
            stop_accepting: CancellationToken::new(),
            close_now: CancellationToken::new(),
            tunnels: TaskTracker::new(),
        }
    }

    /// Asks the instance to stop: the first call starts the drain, a second one ends it at
    /// once (tunnels are closed without waiting for the deadline).
    pub fn request_stop(&self) {
        match self.phase.fetch_max(DRAINING, Ordering::AcqRel) {
            RUNNING => {
                crate::metrics::global().shutting_down(true);
                info!(
                    delay_secs = self.settings.delay.as_secs(),
                    deadline_secs = self.settings.deadline.as_secs(),
                    "draining: /readyz answers 503, listeners close after the delay, WebSockets are closed at the deadline"
                );
                self.began.cancel();
            }
            _ => {
                if self.phase.swap(HURRYING, Ordering::AcqRel) != HURRYING {
                    info!("second stop request: closing every connection now");
                }
                self.stop_accepting.cancel();
                self.close_now.cancel();
            }
        }
    }

    /// Whether a stop was requested (`/readyz` then answers 503).
    pub fn is_draining(&self) -> bool {
        self.phase.load(Ordering::Acquire) != RUNNING
    }

    /// Resolves when the listeners are to stop accepting.
    pub fn accepting_stopped(&self) -> WaitForCancellationFuture<'_> {
        self.stop_accepting.cancelled()
    }

    /// Resolves when whatever is still open is to be closed (deadline or second request).
    pub fn closing(&self) -> WaitForCancellationFuture<'_> {
        self.close_now.cancelled()
    }

    /// A token cancelled at the same moment as [`Drain::closing`], for tasks that outlive a
    /// borrow of the drain.
    pub fn closing_token(&self) -> CancellationToken {
        self.close_now.clone()
    }

    /// Runs `tunnel` as a task the stop waits for.
    pub fn spawn_tunnel<F>(&self, tunnel: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tunnels.spawn(tunnel);
    }

    /// Tunnels open now.
    pub fn open_tunnels(&self) -> usize {
        self.tunnels.len()
    }

    /// Follows the timeline once a stop was requested: waits the delay, stops the
    /// listeners, waits for `connections_done` and the tunnels until the deadline, closes
    /// what is left and gives it [`CLOSE_GRACE`]. Returns when the process may exit.
    pub async fn run(&self, connections_done: impl Future<Output = ()>) {
        self.began.cancelled().await;
        let began = Instant::now();
        tokio::select! {
            () = tokio::time::sleep(self.settings.delay) => {}
            () = self.close_now.cancelled() => {}
        }
        self.stop_accepting.cancel();
        info!(
            tunnels = self.open_tunnels(),
            "listeners closed; waiting for requests in flight and WebSockets"
        );
        self.tunnels.close();
        let everything_done = async {
            connections_done.await;
            self.tunnels.wait().await;
        };
        tokio::select! {
            () = everything_done => {
                info!("every request and WebSocket finished");
                return;
            }
            () = tokio::time::sleep_until(began + self.settings.deadline) => {
                info!(tunnels = self.open_tunnels(), "drain deadline reached: closing what is still open");
            }
            () = self.close_now.cancelled() => {}
        }
        self.close_now.cancel();
        if tokio::time::timeout(CLOSE_GRACE, self.tunnels.wait())
            .await
            .is_err()
        {
            info!(
                tunnels = self.open_tunnels(),
                "tunnels did not close in time; cutting them"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(delay: u64, deadline: u64) -> DrainConfig {
        DrainConfig {
            delay: Duration::from_secs(delay),
            deadline: Duration::from_secs(deadline),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn follows_delay_then_deadline() {
        let drain = std::sync::Arc::new(Drain::new(settings(5, 20)));
        let closing = drain.closing_token();
        let seen = closing.clone();
        drain.spawn_tunnel(async move { seen.cancelled().await });
        let timeline = tokio::spawn({
            let drain = drain.clone();
            async move { drain.run(std::future::pending()).await }
        });
        assert!(!drain.is_draining());
        let start = Instant::now();
        drain.request_stop();
        assert!(drain.is_draining());
        drain.accepting_stopped().await;
        assert_eq!(start.elapsed().as_secs(), 5);
        drain.closing().await;
        assert_eq!(start.elapsed().as_secs(), 20);
        timeline.await.unwrap();
        assert_eq!(drain.open_tunnels(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn ends_early_when_everything_finished() {
        let drain = std::sync::Arc::new(Drain::new(settings(1, 60)));
        drain.spawn_tunnel(tokio::time::sleep(Duration::from_secs(3)));
        let start = Instant::now();
        drain.request_stop();
        drain.run(async {}).await;
        assert_eq!(start.elapsed().as_secs(), 3);
        assert!(!drain.close_now.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn second_request_hurries() {
        let drain = std::sync::Arc::new(Drain::new(settings(30, 600)));
        let closing = drain.closing_token();
        drain.spawn_tunnel(async move { closing.cancelled().await });
        let start = Instant::now();
        drain.request_stop();
        let timeline = tokio::spawn({
            let drain = drain.clone();
            async move { drain.run(std::future::pending()).await }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        drain.request_stop();
        timeline.await.unwrap();
        assert_eq!(start.elapsed().as_secs(), 2);
    }
}
