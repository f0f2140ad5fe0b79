//! The in-process pin store: enough for a single officeswitch instance (pins are not
//! shared). A graceful restart carries them over through the state dir
//! ([`crate::sticky::persist`]); after a crash, documents are re-pinned on their next request.
//!
//! A [`DashMap`] (sharded locks: requests for different documents rarely wait on each other)
//! maps each key to its pin and the instant it expires. Expiry is checked on every read, so
//! an expired pin is never returned. Expired entries are also removed without anyone reading
//! them again, so memory follows the number of open documents rather than growing for ever:
//! every write queues its key with its deadline, and each operation looks at a few of the
//! oldest queued keys (at most [`SWEEP_PER_CALL`]), removing those that have expired and
//! re-queueing those that a read has extended. The work per call is bounded, and since every
//! write queues one key and sweeps up to several, the queue drains faster than it fills.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;

use super::{Pin, PinStore, StoreFuture, sorted_counts, sorted_nodes};

/// Queued keys examined by one operation, at most.
pub const SWEEP_PER_CALL: usize = 8;

/// One pin and its life.
#[derive(Debug)]
struct Entry {
    pin: Pin,
    expires: Instant,
    /// The token of this entry's one item in the sweep queue; items with another token are
    /// left over from an entry that was removed and are dropped when met.
    token: u64,
}

/// An item of the sweep queue: look at `key` again at `due`.
#[derive(Debug)]
struct Due {
    due: Instant,
    key: String,
    token: u64,
}

/// The in-process pin store (`store = "memory"`).
#[derive(Debug, Default)]
pub struct MemoryStore {
    pins: DashMap<String, Entry>,
    /// Keys in write order with their deadline at write time (see the module docs).
    queue: Mutex<VecDeque<Due>>,
    next_token: AtomicU64,
    /// Nodes marked draining (one instance: only its own marks).
    draining: Mutex<HashSet<Pin>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held, expired or not (for tests of the sweep).
    pub fn len(&self) -> usize {
        self.pins.len()
    }

    /// Whether the store holds no entry at all.
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }

    fn get_now(&self, key: &str, ttl: Duration) -> Option<Pin> {
        let now = Instant::now();
        self.sweep(now);
        {
            let mut entry = self.pins.get_mut(key)?;
            if entry.expires > now {
                entry.expires = now + ttl;
                return Some(entry.pin.clone());
            }
        }
        // Expired: remove it now (unless replaced meanwhile), the shard lock released above.
        self.pins.remove_if(key, |_, e| e.expires <= now);
        None
    }

    fn create_now(&self, key: &str, pin: &Pin, ttl: Duration) -> Pin {
        let now = Instant::now();
        self.sweep(now);
        let entry = self.pins.entry(key.to_owned());
        if let MapEntry::Occupied(e) = &entry
            && e.get().expires > now
        {
            return e.get().pin.clone();
        }
        // No pin, or an expired one: this one takes its place.
        entry.insert(self.fresh(key, pin, now + ttl));
        pin.clone()
    }

    /// A new entry for `key`, queued for expiry at `expires`.
    fn fresh(&self, key: &str, pin: &Pin, expires: Instant) -> Entry {
        Entry {
            pin: pin.clone(),
            expires,
            token: self.enqueue(key, expires),
        }
    }

    fn replace_now(&self, key: &str, old: &Pin, new: &Pin, ttl: Duration) -> Pin {
        let now = Instant::now();
        self.sweep(now);
        match self.pins.entry(key.to_owned()) {
            MapEntry::Occupied(mut e) => {
                let entry = e.get_mut();
                if entry.expires > now && entry.pin != *old {
                    return entry.pin.clone();
                }
                if entry.expires <= now {
                    // An expired entry counts as no pin; its queue item may already be gone.
                    entry.token = self.enqueue(key, now + ttl);
                }
                entry.pin = new.clone();
                entry.expires = now + ttl;
                new.clone()
            }
            MapEntry::Vacant(e) => {
                e.insert(self.fresh(key, new, now + ttl));
                new.clone()
            }
        }
    }

    fn release_node_now(&self, pool: &str, node: &str) -> u64 {
        let now = Instant::now();
        let mut released = 0;
        // Walks every shard once (not a hot path); drops expired entries on the way.
        self.pins.retain(|_, e| {
            if e.expires <= now {
                return false;
            }
            if e.pin.pool == pool && e.pin.node == node {
                released += 1;
                return false;
            }
            true
        });
        released
    }

    fn counts_now(&self) -> Vec<(Pin, u64)> {
        let now = Instant::now();
        let mut counts = std::collections::HashMap::<Pin, u64>::new();
        for e in self.pins.iter() {
            if e.expires > now {
                *counts.entry(e.pin.clone()).or_default() += 1;
            }
        }
        sorted_counts(counts)
    }

    /// Queues `key` to be looked at again at `due`; returns the item's token.
    fn enqueue(&self, key: &str, due: Instant) -> u64 {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(Due {
                due,
                key: key.to_owned(),
                token,
            });
        token
    }

    /// Looks at up to [`SWEEP_PER_CALL`] queued keys whose deadline has passed: removes the
    /// expired, re-queues the extended, drops items left over from removed entries.
    ///
    /// The queue lock is never held while a map shard is locked by this thread, and a map
    /// shard is never locked while the queue is (callers enqueue while holding a shard, so the
    /// reverse order could deadlock).
    fn sweep(&self, now: Instant) {
        for _ in 0..SWEEP_PER_CALL {
            let item = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                match queue.front() {
                    Some(front) if front.due <= now => queue.pop_front(),
                    _ => None,
                }
            };
            let Some(item) = item else { return };
            let mut again = None;
            self.pins.remove_if_mut(&item.key, |_, e| {
                if e.token != item.token {
                    false
                } else if e.expires <= now {
                    true
                } else {
                    again = Some(e.expires);
                    false
                }
            });
            if let Some(due) = again {
                // Still the entry's one item (same token): back of the queue, new deadline.
                self.queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_back(Due { due, ..item });
            }
        }
    }
}

impl PinStore for MemoryStore {
    fn get(&self, key: &str, ttl: Duration) -> StoreFuture<'_, Option<Pin>> {
        let result = self.get_now(key, ttl);
        Box::pin(std::future::ready(Ok(result)))
    }

    fn create(&self, key: &str, pin: &Pin, ttl: Duration) -> StoreFuture<'_, Pin> {
        let result = self.create_now(key, pin, ttl);
        Box::pin(std::future::ready(Ok(result)))
    }

    fn replace(&self, key: &str, old: &Pin, new: &Pin, ttl: Duration) -> StoreFuture<'_, Pin> {
        let result = self.replace_now(key, old, new, ttl);
        Box::pin(std::future::ready(Ok(result)))
    }

    fn release_node(&self, pool: &str, node: &str) -> StoreFuture<'_, u64> {
        let result = self.release_node_now(pool, node);
        Box::pin(std::future::ready(Ok(result)))
    }

    fn counts(&self) -> StoreFuture<'_, Vec<(Pin, u64)>> {
        let result = self.counts_now();
        Box::pin(std::future::ready(Ok(result)))
    }

    fn set_draining(&self, node: &Pin, draining: bool) -> StoreFuture<'_, ()> {
        let mut marks = self.draining.lock().unwrap_or_else(PoisonError::into_inner);
        if draining {
            marks.insert(node.clone());
        } else {
            marks.remove(node);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn draining(&self) -> StoreFuture<'_, Vec<Pin>> {
        let marks = self.draining.lock().unwrap_or_else(PoisonError::into_inner);
        let result = sorted_nodes(marks.iter().cloned());
        Box::pin(std::future::ready(Ok(result)))
    }

    fn export(&self) -> Vec<(String, Pin, Duration)> {
        let now = Instant::now();
        self.pins
            .iter()
            .filter(|e| e.expires > now)
            .map(|e| (e.key().clone(), e.pin.clone(), e.expires - now))
            .collect()
    }

    fn import(&self, pins: Vec<(String, Pin, Duration)>) {
        for (key, pin, life) in pins {
            self.create_now(&key, &pin, life);
        }
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(n: u32) -> Pin {
        Pin::new("collabora", format!("http://cool-{n}:9980/"))
    }

    #[test]
    fn expired_pins_are_swept_without_being_read_again() {
        let store = MemoryStore::new();
        let ttl = Duration::from_millis(20);
        for i in 0..100 {
            store.create_now(&format!("key-{i}"), &pin(1), ttl);
        }
        assert_eq!(store.len(), 100);
        std::thread::sleep(Duration::from_millis(40));
        // Each write sweeps a few; a steady trickle of new documents keeps the map at about
        // the number of live ones.
        for i in 0..100 {
            store.create_now(&format!("new-{i}"), &pin(2), Duration::from_secs(60));
        }
        assert_eq!(store.len(), 100, "the 100 expired entries are gone");
        assert_eq!(store.counts_now(), vec![(pin(2), 100)]);
    }

    #[test]
    fn a_refreshed_pin_survives_its_first_deadline() {
        let store = MemoryStore::new();
        let ttl = Duration::from_millis(1000);
        store.create_now("key", &pin(1), ttl);
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(store.get_now("key", ttl), Some(pin(1)));
        std::thread::sleep(Duration::from_millis(600));
        // The first deadline has passed: the sweep re-queues the key rather than dropping it.
        store.create_now("other", &pin(2), ttl);
        assert_eq!(store.get_now("key", ttl), Some(pin(1)));
        assert_eq!(store.queue.lock().unwrap().len(), 2);
    }

    #[test]
    fn leftover_queue_items_of_removed_entries_are_dropped() {
        let store = MemoryStore::new();
        let ttl = Duration::from_millis(10);
        store.create_now("key", &pin(1), ttl);
        assert_eq!(store.release_node_now("collabora", &pin(1).node), 1);
        // A new entry under the same key gets its own item; the old one must not remove it.
        store.create_now("key", &pin(2), Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
        store.sweep(Instant::now());
        assert_eq!(store.get_now("key", ttl), Some(pin(2)));
        assert_eq!(store.queue.lock().unwrap().len(), 1);
    }
}
