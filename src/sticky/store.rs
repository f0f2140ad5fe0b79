//! The pin store: where a document is pinned (document -> pool and node), behind one small
//! trait with two implementations, [`MemoryStore`] (one instance) and [`RedisStore`] (every
//! instance behind a load balancer shares one Redis).
//!
//! # Why pins, when rendezvous hashing already agrees
//! [`hrw`](super::hrw) gives every instance the same node for a document as long as they see
//! the same set of nodes. They do not always: a node joins and the hash now prefers it, a node
//! flaps and one instance marks it down a few seconds before another. An open document must
//! stay on the node that holds its editing session through all of that, so the node chosen
//! when the document is first routed is written down, and later requests read it back.
//!
//! # The rules the trait encodes
//! - **First writer wins** ([`PinStore::create`]): two instances (or two requests) that route
//!   a new document at the same moment may pick different nodes. Both try to create the pin;
//!   only the first succeeds and both get *its* pin back, so both send their request to the
//!   same node. Neither ever overwrites a pin it did not read.
//! - **Compare-and-set on re-pin** ([`PinStore::replace`]): when a pinned node is down, the
//!   document must move. Several instances notice at once and each picks a new node; a blind
//!   write would let the last one win while the others already sent co-editors elsewhere. The
//!   replacement therefore only happens while the pin is still the one the caller saw; a caller
//!   that lost gets the pin in force and follows it.
//! - **TTL, refreshed on read** ([`PinStore::get`]): a pin only matters while its document is
//!   being edited. Each read extends its life to the full TTL, so an active document keeps
//!   its pin however long the session lasts, and a closed one's pin disappears on its own
//!   after a TTL without requests: the store holds about as many pins as there are open
//!   documents, with no clean-up job.
//! - **Release on failure** ([`PinStore::release_node`]): when a node is declared failed, its
//!   pins are dropped at once, so its documents are re-pinned on their next request rather
//!   than each waiting for a failed attempt.
//! - **Drain marks are shared** ([`PinStore::set_draining`], [`PinStore::draining`]): an
//!   operator drains a node through one instance's admin listener, and every instance that
//!   shares the store must stop placing new documents on it; each reads the marks every
//!   `pins.refresh_secs`. A mark stays until it is cleared (no TTL): a drain outlives
//!   restarts of the instances.
//!
//! # Failure of the store itself
//! Every operation is bounded in time (`pins.timeout_ms`) and returns a [`StoreError`] rather
//! than waiting: officeswitch must start, and keep serving, while Redis is down. The caller
//! then routes by hashing alone, which is what every instance would agree on anyway, and logs
//! the store's state change once; the store itself logs nothing per operation.

pub mod memory;
pub mod redis;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{PinStoreConfig, PinsConfig};

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;

/// Where a document is pinned: its pool's name and its node's base URL (as
/// `PoolConfig::nodes` writes it, ending in `/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pin {
    /// The pool's name (`[[pool]] name`).
    pub pool: String,
    /// The node's base URL, as the pool's settings write it.
    pub node: String,
}

impl Pin {
    /// A pin of `pool` and `node`.
    pub fn new(pool: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            pool: pool.into(),
            node: node.into(),
        }
    }

    /// The stored form, `pool\nnode` (neither a pool name nor a URL holds a newline).
    pub(crate) fn encode(&self) -> String {
        let mut s = String::with_capacity(self.pool.len() + 1 + self.node.len());
        s.push_str(&self.pool);
        s.push('\n');
        s.push_str(&self.node);
        s
    }

    /// Reads the stored form back. Errors never quote the stored value (it is not ours to
    /// print), only its length.
    pub(crate) fn decode(value: &str) -> Result<Self, StoreError> {
        match value.split_once('\n') {
            Some((pool, node)) if !pool.is_empty() && !node.is_empty() && !node.contains('\n') => {
                Ok(Self::new(pool, node))
            }
            _ => Err(StoreError::Corrupt(format!(
                "a stored pin of {} bytes is not `pool\\nnode`",
                value.len()
            ))),
        }
    }
}

/// Why a store operation failed. The caller routes without the store and logs the state
/// change once; the message says enough for that one line (which store, what went wrong)
/// and never prints a stored value beyond a pin's pool and node.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or refused the operation (connection refused or lost,
    /// authentication, a Redis error reply, an unusable URL).
    #[error("pin store unavailable: {0}")]
    Unavailable(String),
    /// The operation did not finish within `pins.timeout_ms`.
    #[error("pin store did not answer in time")]
    Timeout,
    /// The store answered with something that is not a pin.
    #[error("pin store holds a malformed pin: {0}")]
    Corrupt(String),
}

/// The future every store operation returns: boxed so [`PinStore`] is object safe, `Send` so
/// it can be awaited from any task.
pub type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The pin store. One per process, shared (`Arc<dyn PinStore>`) by every request.
pub trait PinStore: Send + Sync {
    /// The pin of `key` (a 32-char file id), extending its life to `ttl` (GETEX PX in Redis).
    fn get(&self, key: &str, ttl: Duration) -> StoreFuture<'_, Option<Pin>>;

    /// Creates the pin if the key has none (first writer wins: SET NX PX); returns the pin in
    /// force afterwards, ours or the earlier writer's. An existing pin's life is left as is.
    fn create(&self, key: &str, pin: &Pin, ttl: Duration) -> StoreFuture<'_, Pin>;

    /// Replaces the pin only while it is still `old` (compare-and-set; Lua script in Redis);
    /// returns the pin in force afterwards. A key with no pin any more (expired, or released
    /// with its node) counts as still `old`: `new` is written, as a re-pin would want.
    fn replace(&self, key: &str, old: &Pin, new: &Pin, ttl: Duration) -> StoreFuture<'_, Pin>;

    /// Removes every pin on `node` of `pool` (a failed node's documents are re-pinned on next
    /// access); returns how many.
    fn release_node(&self, pool: &str, node: &str) -> StoreFuture<'_, u64>;

    /// Live pins per (pool, node), for `officeswitch nodes` and draining, sorted by pool then
    /// node. Nodes without a pin are not listed.
    fn counts(&self) -> StoreFuture<'_, Vec<(Pin, u64)>>;

    /// Marks `node` (a pool name and node base URL, as a [`Pin`] names them) draining for
    /// every instance sharing this store, or clears the mark.
    fn set_draining(&self, node: &Pin, draining: bool) -> StoreFuture<'_, ()>;

    /// Every node marked draining, sorted by pool then node.
    fn draining(&self) -> StoreFuture<'_, Vec<Pin>>;

    /// `memory` or `redis`, for logs and readiness.
    fn kind(&self) -> &'static str;

    /// Every live pin with its remaining life, to carry over a restart. Only a store that
    /// dies with the process (memory) needs this; Redis keeps its pins itself.
    fn export(&self) -> Vec<(String, Pin, Duration)> {
        Vec::new()
    }

    /// Takes back what [`PinStore::export`] gave (after a restart); existing pins win.
    fn import(&self, _pins: Vec<(String, Pin, Duration)>) {}
}

/// Opens the configured store: memory needs nothing; Redis connects lazily (officeswitch must
/// start, and keep serving, while Redis is down), so this only fails on a URL it cannot use.
/// Callable inside or outside a Tokio runtime; the operations must run inside one.
pub fn open(config: &PinsConfig) -> Result<Arc<dyn PinStore>, StoreError> {
    Ok(match &config.store {
        PinStoreConfig::Memory => Arc::new(MemoryStore::new()),
        PinStoreConfig::Redis(url) => Arc::new(RedisStore::open(url, config.timeout)?),
    })
}

/// `draining` output order: by pool, then node.
pub(crate) fn sorted_nodes(nodes: impl IntoIterator<Item = Pin>) -> Vec<Pin> {
    let mut v: Vec<Pin> = nodes.into_iter().collect();
    v.sort_by(|a, b| (&a.pool, &a.node).cmp(&(&b.pool, &b.node)));
    v
}

/// `counts` output order: by pool, then node.
pub(crate) fn sorted_counts(counts: impl IntoIterator<Item = (Pin, u64)>) -> Vec<(Pin, u64)> {
    let mut v: Vec<(Pin, u64)> = counts.into_iter().collect();
    v.sort_by(|(a, _), (b, _)| (&a.pool, &a.node).cmp(&(&b.pool, &b.node)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_round_trip_and_bad_values_are_named_without_their_content() {
        let pin = Pin::new("collabora", "http://cool-1:9980/");
        assert_eq!(pin.encode(), "collabora\nhttp://cool-1:9980/");
        assert_eq!(Pin::decode(&pin.encode()).unwrap(), pin);
        for bad in ["", "collabora", "\nhttp://x/", "collabora\n", "a\nb\nc"] {
            let err = Pin::decode(bad).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)), "{bad:?}: {err}");
        }
        let err = Pin::decode("secret-value-without-newline").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn open_memory_and_redis_without_a_server() {
        let mut config = PinsConfig {
            store: PinStoreConfig::Memory,
            ttl: Duration::from_secs(60),
            timeout: Duration::from_millis(250),
            refresh: Duration::from_secs(2),
        };
        assert_eq!(open(&config).unwrap().kind(), "memory");
        // Nothing listens there, and nothing is contacted: Redis connects on first use.
        config.store = PinStoreConfig::Redis("redis://127.0.0.1:1/0".into());
        assert_eq!(open(&config).unwrap().kind(), "redis");
        config.store = PinStoreConfig::Redis("redis+sentinel://127.0.0.1:1/mymaster".into());
        assert_eq!(open(&config).unwrap().kind(), "redis");
        config.store = PinStoreConfig::Redis("redis+sentinel://127.0.0.1:1/".into());
        assert!(matches!(open(&config), Err(StoreError::Unavailable(_))));
    }

    #[test]
    fn counts_are_sorted() {
        let v = sorted_counts([
            (Pin::new("b", "http://1/"), 1),
            (Pin::new("a", "http://2/"), 2),
            (Pin::new("a", "http://1/"), 3),
        ]);
        let names: Vec<_> = v
            .iter()
            .map(|(p, n)| (p.pool.as_str(), p.node.as_str(), *n))
            .collect();
        assert_eq!(
            names,
            [
                ("a", "http://1/", 3),
                ("a", "http://2/", 2),
                ("b", "http://1/", 1)
            ]
        );
    }
}
