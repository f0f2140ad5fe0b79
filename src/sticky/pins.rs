//! Pins: which node a document is on, kept while nodes join, leave or fail, and shared by
//! every officeswitch instance through the [`PinStore`].
//!
//! Rendezvous hashing alone keeps a document on one node only while the node set never
//! changes. So the first request of a document picks a node (HRW over the nodes that take
//! new documents: healthy, not draining) and records the pin; later requests follow the pin
//! while its node is healthy, whatever joined since. A pin whose node is down is replaced
//! (compare-and-set, so instances that notice together agree), and pins of a node that
//! went down are released in the background: its editing sessions are lost anyway.
//!
//! Every request refreshes its pin's life, but not with a store write each time: this
//! instance remembers the pins it has seen and confirms one with the store at most every
//! `ttl / 8`, so assets and WebSocket traffic cost a map lookup. When the store cannot be
//! reached, routing goes on with the pins this instance remembers and HRW over healthy
//! nodes for the rest, logs the transition once, and says so in readiness ([`crate::readiness`]).
//!
//! Draining is shared the same way ([`Stickiness::set_draining`]): the mark goes to the
//! store, and every instance reads the store's marks every `pins.refresh_secs`
//! ([`Stickiness::run`]), so a node drained through one instance's admin listener takes no
//! new document from any of them. A mark the store could not take (it was down) is kept
//! here and written when the store is back, so the next read does not undo it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tracing::{debug, info, warn};
use url::Url;

use super::health::Health;
use super::hrw;
use super::store::{Pin, PinStore, StoreError};
use crate::config::{PinsConfig, PoolConfig};
use crate::topology::{Change, TopologyError, TopologyStore};

/// How often this instance confirms a pin it remembers with the store, as a fraction of
/// the pin's life.
const CONFIRM_FRACTION: u32 = 8;

/// A key no document has (file ids never contain `.`), read to see whether the store is
/// back.
const PROBE_KEY: &str = "officeswitch.store.probe.0000000";

/// While the store is unreachable, one operation per this period tries it again.
const RETRY_DOWN_STORE: Duration = Duration::from_secs(1);

/// Document pins, this instance's memory of them, and the nodes' health.
pub struct Stickiness {
    store: Arc<dyn PinStore>,
    health: Arc<Health>,
    /// The pools and nodes pins name (indices stay valid across topologies).
    topology: Arc<TopologyStore>,
    ttl: Duration,
    /// How often the shared drain marks are read.
    refresh: Duration,
    /// Drain marks set here that the store has not taken yet (it was down): node -> whether
    /// it drains. Written before the next read, which would otherwise undo them.
    unshared_drains: Mutex<HashMap<Pin, bool>>,
    /// File id -> pin (pool and node indices) and when the store last confirmed it.
    local: DashMap<String, Remembered>,
    /// Whether the last store operation worked (transitions are logged once).
    store_up: AtomicBool,
    /// While the store is down, operations are skipped until this many milliseconds
    /// after `started` (one probe per [`RETRY_DOWN_STORE`]), so requests do not each wait
    /// for the store's timeout.
    retry_at_ms: AtomicU64,
    started: Instant,
    /// Documents moved off a node that went down.
    repinned: AtomicU64,
    /// Failed store calls, by [`StoreOp`].
    store_errors: [AtomicU64; StoreOp::ALL.len()],
}

/// The store calls this instance makes, as the errors metric names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Reading a document's pin.
    Get,
    /// Pinning a new document.
    Create,
    /// Re-pinning a document whose node is down.
    Replace,
    /// Releasing the pins of a node that went down.
    Release,
    /// Counting pins (metrics, node list).
    Count,
    /// Trying whether a store that went away is back.
    Probe,
    /// Writing or reading the shared drain marks.
    Drain,
}

impl StoreOp {
    /// Every operation, in label order.
    pub const ALL: [StoreOp; 7] = [
        StoreOp::Get,
        StoreOp::Create,
        StoreOp::Replace,
        StoreOp::Release,
        StoreOp::Count,
        StoreOp::Probe,
        StoreOp::Drain,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::Create => "create",
            StoreOp::Replace => "replace",
            StoreOp::Release => "release",
            StoreOp::Count => "count",
            StoreOp::Probe => "probe",
            StoreOp::Drain => "drain",
        }
    }
}

/// A pin as this instance remembers it.
#[derive(Debug, Clone, Copy)]
struct Remembered {
    pool: usize,
    node: usize,
    confirmed: Instant,
}

/// What [`Stickiness::set_draining`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSet {
    /// Whether this instance's drain state changed.
    pub changed: bool,
    /// Whether the store took the mark (every instance follows it); `false` while the store
    /// is down (the mark is written once it is back).
    pub shared: bool,
}

/// A placed document: indices into the configured pools and that pool's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Pool index.
    pub pool: usize,
    /// Node index within the pool.
    pub node: usize,
}

impl Stickiness {
    /// Pins kept in `store` as `pins` says, following `health`, over the nodes of
    /// `topology`.
    pub fn new(
        store: Arc<dyn PinStore>,
        health: Arc<Health>,
        topology: Arc<TopologyStore>,
        pins: &PinsConfig,
    ) -> Arc<Stickiness> {
        Arc::new(Stickiness {
            store,
            health,
            topology,
            ttl: pins.ttl,
            refresh: pins.refresh,
            unshared_drains: Mutex::new(HashMap::new()),
            local: DashMap::new(),
            store_up: AtomicBool::new(true),
            retry_at_ms: AtomicU64::new(0),
            started: Instant::now(),
            repinned: AtomicU64::new(0),
            store_errors: Default::default(),
        })
    }

    /// The node health this placement follows.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The pin store.
    pub fn store(&self) -> &Arc<dyn PinStore> {
        &self.store
    }

    /// The pin of `file_id` while its node is healthy: an open follows it whatever the
    /// rules say now, so one document never has live sessions in two suites.
    pub async fn live_pin(&self, file_id: &str) -> Option<Placement> {
        let pin = self.current(file_id).await?;
        self.health.is_healthy(pin.pool, pin.node).then_some(pin)
    }

    /// The node of pool `pool` that document `file_id` goes to, among `allowed` (the
    /// organisation's nodes of that pool): its pin while the pinned node is healthy, else
    /// a new pin by rendezvous hashing over the allowed nodes that take new documents.
    /// `None` when no allowed node can take it.
    pub async fn node_for(&self, file_id: &str, pool: usize, allowed: &[Url]) -> Option<usize> {
        let pinned = self.current(file_id).await;
        if let Some(pin) = pinned
            && pin.pool == pool
            && self.health.is_healthy(pool, pin.node)
        {
            return Some(pin.node);
        }
        let chosen = self.pick(file_id, pool, allowed)?;
        let proposal = self.pin_of(chosen);
        let result = match pinned {
            // Another suite holds the document: this pool's traffic is routed, not pinned.
            Some(pin) if pin.pool != pool => return Some(chosen.node),
            Some(dead) => {
                let old = self.pin_of(dead);
                let outcome = self.guarded(
                    StoreOp::Replace,
                    self.store.replace(file_id, &old, &proposal, self.ttl),
                );
                let outcome = outcome.await;
                if outcome.as_ref().is_ok_and(|p| *p == proposal) {
                    self.repinned.fetch_add(1, Ordering::Relaxed);
                    info!(
                        pool = %proposal.pool,
                        from = %old.node,
                        to = %proposal.node,
                        "document re-pinned: its node is down"
                    );
                }
                outcome
            }
            None => {
                self.guarded(
                    StoreOp::Create,
                    self.store.create(file_id, &proposal, self.ttl),
                )
                .await
            }
        };
        let placed = match result {
            Ok(pin) => self.placement_of(&pin).unwrap_or(chosen),
            // The store is down: route by hash, and remember it here meanwhile.
            Err(_) => chosen,
        };
        self.remember(file_id, placed);
        Some(placed.node)
    }

    /// The node of pool `pool` for traffic of document `file_id` (its page, assets,
    /// WebSockets, downloads): as [`Stickiness::node_for`], except that a document without
    /// a pin gets none and is routed by rendezvous hashing alone. Only an open creates pins,
    /// so requests that name made-up documents cost no state (an anonymous client could
    /// otherwise grow the store without bound). A pin whose node is down is still replaced,
    /// so a live document moves off a crashed node.
    ///
    /// A document pinned in another pool of the same suite (several pools may run one
    /// suite) is followed there: its session is on that pool's node.
    pub async fn node_for_traffic(
        &self,
        file_id: &str,
        pool: usize,
        allowed: &[Url],
    ) -> Option<Placement> {
        match self.current(file_id).await {
            Some(pin) if pin.pool != pool && self.same_suite(pin.pool, pool) => {
                let topology = self.topology.current();
                let nodes = &topology.pools().get(pin.pool)?.nodes;
                let node = self.node_for(file_id, pin.pool, nodes).await?;
                Some(Placement {
                    pool: pin.pool,
                    node,
                })
            }
            Some(_) => {
                let node = self.node_for(file_id, pool, allowed).await?;
                Some(Placement { pool, node })
            }
            None => self.pick(file_id, pool, allowed),
        }
    }

    /// Whether pools `a` and `b` run the same suite.
    fn same_suite(&self, a: usize, b: usize) -> bool {
        let topology = self.topology.current();
        let kind = |p: usize| topology.pools().get(p).map(|pool| pool.kind);
        kind(a).is_some() && kind(a) == kind(b)
    }

    /// The pin in force: remembered here and recently confirmed, else from the store
    /// (which refreshes its life). When the store fails, what this instance remembers.
    async fn current(&self, file_id: &str) -> Option<Placement> {
        let remembered = self.local.get(file_id).map(|r| *r);
        if let Some(r) = remembered
            && r.confirmed.elapsed() < self.ttl / CONFIRM_FRACTION
        {
            return Some(Placement {
                pool: r.pool,
                node: r.node,
            });
        }
        match self
            .guarded(StoreOp::Get, self.store.get(file_id, self.ttl))
            .await
        {
            Ok(Some(pin)) => {
                let placed = self.placement_of(&pin)?;
                self.remember(file_id, placed);
                Some(placed)
            }
            Ok(None) => {
                self.local.remove(file_id);
                None
            }
            Err(_) => remembered.map(|r| Placement {
                pool: r.pool,
                node: r.node,
            }),
        }
    }

    /// Moves document `file_id` off node `refused` of `pool`, which refused the
    /// connection for its open (nothing reached it), onto the next node by rendezvous
    /// hashing among `allowed`: the pin is replaced (compare-and-set, so instances agree)
    /// and the new node returned. `None` when no other node can take it.
    pub async fn move_off(
        &self,
        file_id: &str,
        pool: usize,
        refused: usize,
        allowed: &[Url],
    ) -> Option<usize> {
        let chosen = self.pick_other(file_id, pool, allowed, Some(refused))?;
        let old = self.pin_of(Placement {
            pool,
            node: refused,
        });
        let proposal = self.pin_of(chosen);
        let outcome = self
            .guarded(
                StoreOp::Replace,
                self.store.replace(file_id, &old, &proposal, self.ttl),
            )
            .await;
        let placed = match outcome {
            Ok(pin) => self.placement_of(&pin).unwrap_or(chosen),
            Err(_) => chosen,
        };
        if placed == chosen {
            self.repinned.fetch_add(1, Ordering::Relaxed);
            info!(
                pool = %proposal.pool,
                from = %old.node,
                to = %proposal.node,
                "document re-pinned: its node refused the open"
            );
        }
        self.remember(file_id, placed);
        Some(placed.node)
    }

    /// Rendezvous pick among the allowed nodes of `pool` that take new documents.
    fn pick(&self, file_id: &str, pool: usize, allowed: &[Url]) -> Option<Placement> {
        self.pick_other(file_id, pool, allowed, None)
    }

    /// [`Stickiness::pick`] leaving out node `except`.
    fn pick_other(
        &self,
        file_id: &str,
        pool: usize,
        allowed: &[Url],
        except: Option<usize>,
    ) -> Option<Placement> {
        let topology = self.topology.current();
        let nodes = &topology.pools().get(pool)?.nodes;
        let index_of = |i: usize| nodes.iter().position(|n| *n == allowed[i]);
        let takes = |i: usize| {
            index_of(i).is_some_and(|node| {
                Some(node) != except && self.health.takes_new_documents(pool, node)
            })
        };
        let i = hrw::pick_where(file_id.as_bytes(), allowed, takes)?;
        Some(Placement {
            pool,
            node: index_of(i)?,
        })
    }

    /// Runs a store operation, noting (and logging once) whether the store answers, and
    /// counting its failures by `op`. While the store does not answer, most operations
    /// are not even tried (see [`RETRY_DOWN_STORE`]); those are not counted.
    async fn guarded<T>(
        &self,
        op: StoreOp,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if !self.store_up.load(Ordering::Relaxed) {
            let retry_at = self.retry_at_ms.load(Ordering::Relaxed);
            let next = now_ms + u64::try_from(RETRY_DOWN_STORE.as_millis()).unwrap_or(1000);
            if now_ms < retry_at
                || self
                    .retry_at_ms
                    .compare_exchange(retry_at, next, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                return Err(StoreError::Unavailable(
                    "skipped while the store is down".into(),
                ));
            }
        }
        let result = operation.await;
        if result.is_err() {
            self.count_error(op);
            let next = now_ms + u64::try_from(RETRY_DOWN_STORE.as_millis()).unwrap_or(1000);
            self.retry_at_ms.store(next, Ordering::Relaxed);
        }
        let up = result.is_ok();
        if self.store_up.swap(up, Ordering::Relaxed) != up {
            match &result {
                Ok(_) => info!(store = self.store.kind(), "pin store reachable again"),
                Err(e) => warn!(
                    store = self.store.kind(),
                    error = %e,
                    "pin store unreachable: routing by the pins this instance remembers and by hash"
                ),
            }
        }
        result
    }

    fn remember(&self, file_id: &str, placed: Placement) {
        self.local.insert(
            file_id.to_string(),
            Remembered {
                pool: placed.pool,
                node: placed.node,
                confirmed: Instant::now(),
            },
        );
    }

    fn pin_of(&self, placed: Placement) -> Pin {
        let topology = self.topology.current();
        let pool = &topology.pools()[placed.pool];
        Pin {
            pool: pool.name.clone(),
            node: pool.nodes[placed.node].to_string(),
        }
    }

    /// The indices of a stored pin; `None` for a pool or node no longer configured.
    fn placement_of(&self, pin: &Pin) -> Option<Placement> {
        let topology = self.topology.current();
        let pools = topology.pools();
        let pool = pools.iter().position(|p| p.name == pin.pool)?;
        let node = pools[pool]
            .nodes
            .iter()
            .position(|n| n.as_str() == pin.node)?;
        Some(Placement { pool, node })
    }

    /// Until `shutdown`: releases the pins of nodes that go down (their documents are
    /// re-pinned on next access), forgets remembered pins past their life, and probes a
    /// store that went away.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        let mut changes = self.health.subscribe();
        let mut sweep = tokio::time::interval(self.ttl.min(Duration::from_secs(60)));
        let mut probe = tokio::time::interval(RETRY_DOWN_STORE);
        let mut drains = tokio::time::interval(self.refresh);
        drains.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.release_down_nodes().await;
                }
                _ = sweep.tick() => {
                    let ttl = self.ttl;
                    self.local.retain(|_, r| r.confirmed.elapsed() < ttl);
                    self.retire_idle_nodes().await;
                }
                _ = drains.tick() => self.follow_shared_drains().await,
                _ = probe.tick() => {
                    // A store that went away is noticed back without waiting for traffic.
                    if !self.store_reachable() {
                        let probe = self.store.get(PROBE_KEY, self.ttl);
                        let _ = self.guarded(StoreOp::Probe, probe).await;
                    }
                }
            }
        }
    }

    /// Drains `node` of `pool` (indices) on this instance at once, and on every instance
    /// sharing the store within `pins.refresh_secs`. Returns whether this instance's state
    /// changed and whether the store took the mark (if not, it is written when the store is
    /// back).
    pub async fn set_draining(&self, pool: usize, node: usize, draining: bool) -> DrainSet {
        let changed = self.health.set_draining(pool, node, draining);
        let Some(mark) = self.node_pin(pool, node) else {
            return DrainSet {
                changed,
                shared: false,
            };
        };
        // A newer intent replaces an unshared older one, shared or not.
        self.lock_unshared().remove(&mark);
        let shared = self
            .guarded(StoreOp::Drain, self.store.set_draining(&mark, draining))
            .await
            .is_ok();
        if !shared {
            warn!(
                pool = %mark.pool,
                node = %mark.node,
                draining,
                "pin store unreachable: the drain holds on this instance now, on the others once the store is back"
            );
            self.lock_unshared().insert(mark, draining);
        }
        DrainSet { changed, shared }
    }

    /// Writes drain marks the store missed, then makes this instance's drain state the
    /// store's. Nothing changes while the store does not answer.
    async fn follow_shared_drains(&self) {
        let pending: Vec<(Pin, bool)> = self
            .lock_unshared()
            .iter()
            .map(|(pin, draining)| (pin.clone(), *draining))
            .collect();
        for (mark, draining) in pending {
            let write = self.store.set_draining(&mark, draining);
            if self.guarded(StoreOp::Drain, write).await.is_err() {
                return;
            }
            let mut unshared = self.lock_unshared();
            // Unless a newer intent arrived meanwhile.
            if unshared.get(&mark) == Some(&draining) {
                unshared.remove(&mark);
            }
        }
        let Ok(marks) = self.guarded(StoreOp::Drain, self.store.draining()).await else {
            return;
        };
        let unshared = self.lock_unshared().clone();
        let topology = self.topology.current();
        for (p, pool) in topology.pools().iter().enumerate() {
            for (n, node) in pool.nodes.iter().enumerate() {
                let mark = Pin::new(pool.name.as_str(), node.as_str());
                let draining = unshared
                    .get(&mark)
                    .copied()
                    .unwrap_or_else(|| marks.contains(&mark));
                self.health.set_draining(p, n, draining);
            }
        }
    }

    /// The store's name of node `node` of pool `pool`.
    fn node_pin(&self, pool: usize, node: usize) -> Option<Pin> {
        let topology = self.topology.current();
        let config = topology.pools().get(pool)?;
        let url = config.nodes.get(node)?;
        Some(Pin::new(config.name.as_str(), url.as_str()))
    }

    fn lock_unshared(&self) -> std::sync::MutexGuard<'_, HashMap<Pin, bool>> {
        self.unshared_drains
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-reads the node lists from the settings (SIGHUP) and makes health follow: nodes
    /// that joined are checked and take new documents once healthy, nodes that left finish
    /// their documents.
    ///
    /// # Errors
    /// Why the settings were not used (the running topology stays).
    pub fn reload_topology(&self) -> Result<Vec<Change>, TopologyError> {
        let changes = self.topology.reload()?;
        self.health.follow(&self.topology.current());
        Ok(changes)
    }

    /// Makes `nodes` what DNS found for pool `pool` ([`crate::topology::dns`]) and makes
    /// health follow.
    ///
    /// # Errors
    /// Not expected: the pools stay the same.
    pub fn set_resolved_nodes(
        &self,
        pool: &str,
        nodes: Vec<Url>,
    ) -> Result<Vec<Change>, TopologyError> {
        let changes = self.topology.resolved(pool, nodes)?;
        self.health.follow(&self.topology.current());
        Ok(changes)
    }

    /// Makes `wanted` the pools' listed nodes (as the settings would), as
    /// [`Stickiness::reload_topology`] does with the settings file's.
    ///
    /// # Errors
    /// [`TopologyError::PoolsChanged`] when `wanted` has other pools.
    pub fn list_nodes(&self, wanted: &[PoolConfig]) -> Result<Vec<Change>, TopologyError> {
        let changes = self.topology.list(wanted)?;
        self.health.follow(&self.topology.current());
        Ok(changes)
    }

    /// The topology pins and health follow.
    pub fn topology(&self) -> &Arc<TopologyStore> {
        &self.topology
    }

    /// Leaving nodes no pin names any more are gone: nothing routes to them. Asks the store
    /// for its counts only while some node is leaving.
    async fn retire_idle_nodes(&self) {
        let topology = self.topology.current();
        let leaving = topology.leaving();
        if leaving.is_empty() {
            return;
        }
        let Ok(counts) = self.guarded(StoreOp::Count, self.store.counts()).await else {
            return;
        };
        let mut retired = false;
        for (p, n) in leaving {
            let Some(name) = self.node_pin(p, n) else {
                continue;
            };
            let pinned_here = self.local.iter().any(|r| r.pool == p && r.node == n);
            if !pinned_here && !counts.iter().any(|(pin, _)| *pin == name) {
                retired |= self.topology.retire(p, n);
            }
        }
        if retired {
            self.health.follow(&self.topology.current());
        }
    }

    /// Releases every pin on a node that is down, here and in the store.
    async fn release_down_nodes(&self) {
        let topology = self.topology.current();
        for (p, pool) in topology.pools().iter().enumerate() {
            for (n, node) in pool.nodes.iter().enumerate() {
                // A gone node had no pin left when it went.
                if self.health.is_healthy(p, n) || !self.health.is_member(p, n) {
                    continue;
                }
                self.local.retain(|_, r| !(r.pool == p && r.node == n));
                match self
                    .guarded(
                        StoreOp::Release,
                        self.store.release_node(&pool.name, node.as_str()),
                    )
                    .await
                {
                    Ok(0) | Err(_) => {}
                    Ok(released) => warn!(
                        pool = %pool.name,
                        node = %node,
                        released,
                        "released the pins of a node that is down; its documents move on next access"
                    ),
                }
            }
        }
    }

    fn count_error(&self, op: StoreOp) {
        // `ALL` lists every variant in declaration order.
        self.store_errors[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Failed store calls so far (this instance), for every operation.
    pub fn store_errors(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        StoreOp::ALL.iter().map(|&op| {
            (
                op.as_str(),
                self.store_errors[op as usize].load(Ordering::Relaxed),
            )
        })
    }

    /// Live pins per pool and node as the store counts them, or `None` when it fails or
    /// takes longer than `within` (counted as a failed `count`). Not skipped while the
    /// store is down, and it leaves the store's up/down state alone: an operator or a
    /// scrape asks for it, not a request.
    pub async fn count_pins(&self, within: Duration) -> Option<Vec<(Pin, u64)>> {
        match tokio::time::timeout(within, self.store.counts()).await {
            Ok(Ok(counts)) => Some(counts),
            Ok(Err(e)) => {
                debug!(error = %e, "pin store could not count pins");
                self.count_error(StoreOp::Count);
                None
            }
            Err(_) => {
                debug!("pin store did not count pins in time");
                self.count_error(StoreOp::Count);
                None
            }
        }
    }

    /// Documents moved off a failed node so far (this instance).
    pub fn repinned(&self) -> u64 {
        self.repinned.load(Ordering::Relaxed)
    }

    /// The readiness detail line about pins.
    pub fn report(&self) -> String {
        let state = if self.store_up.load(Ordering::Relaxed) {
            "reachable"
        } else {
            "UNREACHABLE, routing by remembered pins and hash"
        };
        format!(
            "pins: {} store {state}; {} remembered here, {} re-pinned",
            self.store.kind(),
            self.local.len(),
            self.repinned()
        )
    }

    /// Whether the store answered the last operation.
    pub fn store_reachable(&self) -> bool {
        self.store_up.load(Ordering::Relaxed)
    }
}
