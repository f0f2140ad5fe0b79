//! Kept-alive HTTP/1.1 connections, one pool per origin (scheme and authority).
//!
//! A connection is a hyper `SendRequest` whose connection task runs on its own. It goes
//! back to its origin's idle list only when it can carry another request: its response
//! body was read to the end and hyper says the connection is ready again
//! ([`SendRequest::poll_ready`]). An upgraded connection (101) or one whose body was dropped
//! half-read never goes back; hyper closes those. Idle lists are capped per origin and
//! entries expire; one reaper task per client closes expired ones and forgets pools no
//! one uses.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;
use http::uri::Authority;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use super::UpstreamBody;

/// Idle connections kept per origin: enough for the bursts of one busy node (an editor
/// page loads dozens of assets at once); more are closed after their response.
pub const MAX_IDLE_PER_ORIGIN: usize = 32;

/// How long a connection may sit idle before it is closed (hyper-util's default; nodes
/// and hosts keep connections alive for at least as long in their defaults).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How often the reaper looks for expired and closed idle connections.
const REAP_EVERY: Duration = Duration::from_secs(30);

/// The sending half of one connection.
pub type Sender = SendRequest<UpstreamBody>;

/// An idle connection and since when.
struct Idle {
    sender: Sender,
    since: Instant,
}

/// The idle connections to one origin.
pub struct Pool {
    /// Most recently used last: checkout takes the warmest one.
    idle: Mutex<Vec<Idle>>,
    /// `scheme://authority/`, what the connector dials.
    origin: Uri,
}

impl Pool {
    /// The URI the connector dials for this origin.
    pub fn origin(&self) -> &Uri {
        &self.origin
    }

    /// An idle connection ready for a request, if one is left; stale ones met on the way
    /// are dropped (which closes them).
    pub fn checkout(&self) -> Option<Sender> {
        let mut idle = lock(&self.idle);
        while let Some(entry) = idle.pop() {
            if entry.sender.is_ready() && entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Keeps `sender` for the next request, unless the origin has enough idle ones.
    fn put(&self, sender: Sender) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_PER_ORIGIN {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Drops expired and closed idle connections; whether any is left.
    fn reap(&self, now: Instant) -> bool {
        let mut idle = lock(&self.idle);
        idle.retain(|e| !e.sender.is_closed() && now.duration_since(e.since) < IDLE_TIMEOUT);
        !idle.is_empty()
    }

    /// Idle connections kept now (tests).
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }
}

/// Pools by origin: read-locked for a lookup, write-locked only when an origin is first
/// seen or by the reaper.
#[derive(Default)]
pub struct Pools {
    origins: RwLock<Origins>,
}

/// Origin maps, one per scheme, keyed by authority text: a lookup hashes the request's
/// authority as it is, without building a key.
#[derive(Default)]
struct Origins {
    http: HashMap<Box<str>, Arc<Pool>, Fnv>,
    https: HashMap<Box<str>, Arc<Pool>, Fnv>,
}

impl Origins {
    fn side(&mut self, https: bool) -> &mut HashMap<Box<str>, Arc<Pool>, Fnv> {
        if https {
            &mut self.https
        } else {
            &mut self.http
        }
    }
}

impl Pools {
    /// The pool of `https`/`authority`, created on first use.
    ///
    /// # Errors
    /// When the two do not make a URI (not for an authority parsed from a URI).
    pub fn get(&self, https: bool, authority: &Authority) -> Result<Arc<Pool>, http::Error> {
        {
            let origins = self.origins.read().unwrap_or_else(PoisonError::into_inner);
            let side = if https { &origins.https } else { &origins.http };
            if let Some(pool) = side.get(authority.as_str()) {
                return Ok(Arc::clone(pool));
            }
        }
        let origin = Uri::builder()
            .scheme(if https { "https" } else { "http" })
            .authority(authority.clone())
            .path_and_query("/")
            .build()?;
        let mut origins = self.origins.write().unwrap_or_else(PoisonError::into_inner);
        let pool = origins
            .side(https)
            .entry(authority.as_str().into())
            .or_insert_with(|| {
                Arc::new(Pool {
                    idle: Mutex::new(Vec::new()),
                    origin,
                })
            });
        Ok(Arc::clone(pool))
    }

    /// Closes expired idle connections and forgets pools nobody holds that have none.
    fn reap(&self) {
        let now = Instant::now();
        let mut guard = self.origins.write().unwrap_or_else(PoisonError::into_inner);
        let origins = &mut *guard;
        for side in [&mut origins.http, &mut origins.https] {
            side.retain(|_, pool| pool.reap(now) || Arc::strong_count(pool) > 1);
        }
    }

    /// Starts the reaper of `pools` on the current runtime (none outside one: nothing to
    /// reap then); it ends when the pools are dropped.
    pub fn start_reaper(pools: &Arc<Pools>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Pools> = Arc::downgrade(pools);
        runtime.spawn(async move {
            let mut every = tokio::time::interval(REAP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                match weak.upgrade() {
                    Some(pools) => pools.reap(),
                    None => return,
                }
            }
        });
    }
}

/// FNV-1a: origins are a handful of short, configured or admitted names, not
/// attacker-chosen keys, so a SipHash per lookup buys nothing.
struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = self.0;
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The map hasher built from [`FnvHasher`].
type Fnv = BuildHasherDefault<FnvHasher>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection on loan to one response, and the pool it goes back to.
struct Lease {
    sender: Sender,
    pool: Arc<Pool>,
    /// Set once the request body was sent whole; `None`: the request had none.
    sent: Option<Arc<AtomicBool>>,
}

/// A response body from a node or host. Once read to the end, it hands its connection
/// back to the pool as soon as hyper has it ready for the next request, before it gives
/// out its last frame (a body of known length) or its end (a chunked one): the client's
/// next request then finds the connection idle, and no task waits per request. Dropped
/// before the end, it lets hyper close the connection.
pub struct Body {
    inner: Incoming,
    /// The inner body gave its last frame or its end.
    ended: bool,
    /// The last frame, held while the connection goes back.
    last: Option<Frame<Bytes>>,
    /// The connection, while it may still go back.
    lease: Option<Lease>,
}

impl Body {
    /// `inner`, read over `sender`'s connection of `pool` (`None` for a connection that
    /// must not go back: an upgrade); `sent` tells when the request body was sent whole.
    pub fn new(
        inner: Incoming,
        lease: Option<(Sender, Arc<Pool>)>,
        sent: Option<Arc<AtomicBool>>,
    ) -> Body {
        Body {
            inner,
            ended: false,
            last: None,
            lease: lease.map(|(sender, pool)| Lease { sender, pool, sent }),
        }
    }

    /// A response without a body (204, 304, an answer to HEAD): its connection goes back
    /// now, since nothing may ever poll this body.
    pub async fn release_if_empty(&mut self) {
        if self.lease.is_some() && self.inner.is_end_stream() {
            self.ended = true;
            std::future::poll_fn(|cx| self.poll_release(cx)).await;
        }
    }

    /// Hands the connection back once hyper has it ready; drops it when hyper closed it or
    /// when the request body is still being sent (hyper finishes or closes the connection
    /// after it, and the response must not wait for that).
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(lease) = &mut self.lease else {
            return Poll::Ready(());
        };
        if lease
            .sent
            .as_ref()
            .is_some_and(|s| !s.load(Ordering::Acquire))
        {
            self.lease = None;
            return Poll::Ready(());
        }
        match lease.sender.poll_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(())) => {
                if let Some(Lease { sender, pool, .. }) = self.lease.take() {
                    pool.put(sender);
                }
            }
            // Closed by the node (`Connection: close`) or by hyper.
            Poll::Ready(Err(_)) => self.lease = None,
        }
        Poll::Ready(())
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("inner", &self.inner)
            .field("ended", &self.ended)
            .field("leased", &self.lease.is_some())
            .finish()
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if !this.ended {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    if this.lease.is_none() || !this.inner.is_end_stream() {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    this.last = Some(frame);
                    this.ended = true;
                }
                Poll::Ready(Some(Err(e))) => {
                    this.lease = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => this.ended = true,
            }
        }
        if this.poll_release(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(this.last.take().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.lease.is_none() && self.last.is_none() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        if let Some(data) = self.last.as_ref().and_then(Frame::data_ref) {
            let held = data.len() as u64;
            hint.set_lower(hint.lower().saturating_add(held));
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper.saturating_add(held));
            }
        }
        hint
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        // A consumer that stopped at the last byte without asking for more: the connection
        // still goes back if hyper already has it ready.
        if let Some(Lease { sender, pool, sent }) = self.lease.take()
            && (self.ended || self.inner.is_end_stream())
            && sent.is_none_or(|s| s.load(Ordering::Acquire))
            && sender.is_ready()
        {
            pool.put(sender);
        }
    }
}
