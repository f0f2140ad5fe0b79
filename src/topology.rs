//! The editor fleet as officeswitch routes to it: pools, their nodes and whether each node
//! is a member, as one value swapped whole while requests run.
//!
//! # Membership changes without moving documents
//! A node's position in its pool never changes while the process runs: a node that joins
//! is appended, a node that leaves the settings stays where it is and **leaves**
//! ([`Membership::Leaving`]): it takes no new document, but the documents pinned to it go
//! on being edited there. Once no pin names it any more (its documents went idle), it is
//! **gone** ([`Membership::Gone`]): nothing routes to it and it is no longer checked.
//! Listing it again brings it back. So the (pool, node) indices that routing, pins, health
//! and discovery use stay valid across every change, a request finishes on the topology it
//! started with, and no open document moves because a node joined or left.
//!
//! A new topology comes from the settings file (`SIGHUP`, [`TopologyStore::reload`]) or
//! from DNS ([`dns`]: a pool's nodes are the addresses of a name); a
//! file that cannot be used (invalid, or changing the pools themselves, which needs a
//! restart) keeps the running topology and says why: one log line, the readiness detail
//! and a metric. Only the node lists of the pools take effect live; every other setting
//! still needs a restart.

pub mod dns;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tracing::{error, info};
use url::Url;

use crate::config::{Config, PoolConfig};
use crate::metrics::NodeSeries;
use crate::upstream::node_address::NodeAddress;

/// Whether a node is part of its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Listed in the settings: takes new documents while healthy and not draining.
    Listed,
    /// Removed from the settings: finishes the documents pinned to it, takes no new one.
    Leaving,
    /// Removed and idle: nothing routes to it, nothing checks it.
    Gone,
}

impl Membership {
    /// The word readiness, logs and the admin API use.
    pub fn as_str(self) -> &'static str {
        match self {
            Membership::Listed => "listed",
            Membership::Leaving => "leaving",
            Membership::Gone => "gone",
        }
    }
}

/// One state of the fleet.
#[derive(Debug)]
pub struct Topology {
    /// The pools in settings order; each pool's `nodes` holds every node it ever had in
    /// this process, in the order they joined.
    pools: Vec<PoolConfig>,
    /// Per pool, per node: its membership.
    membership: Vec<Vec<Membership>>,
    /// Per pool, per node: its base URL taken apart for forwarding, or why it cannot be.
    addresses: Vec<Vec<Result<NodeAddress, String>>>,
    /// Per pool, per node: its request metrics.
    series: Vec<Vec<Arc<NodeSeries>>>,
    /// Counts the topologies of this process, from 1.
    generation: u64,
}

/// Per pool, per node: what `make` prepares for it; `kept` holds what an earlier
/// topology prepared for the nodes it had (nodes keep their positions, new ones are
/// appended), which is reused.
fn prepared<T: Clone>(
    kept: &[Vec<T>],
    pools: &[PoolConfig],
    make: impl Fn(&PoolConfig, &Url) -> T,
) -> Vec<Vec<T>> {
    pools
        .iter()
        .enumerate()
        .map(|(p, pool)| {
            let kept = kept.get(p).map_or(&[][..], Vec::as_slice);
            let new = pool
                .nodes
                .iter()
                .skip(kept.len())
                .map(|node| make(pool, node));
            kept.iter().cloned().chain(new).collect()
        })
        .collect()
}

/// A node's base URL taken apart for forwarding.
fn address(_: &PoolConfig, node: &Url) -> Result<NodeAddress, String> {
    NodeAddress::of(node)
}

/// A node's request metrics.
fn series(pool: &PoolConfig, node: &Url) -> Arc<NodeSeries> {
    Arc::new(crate::metrics::global().node_series(&pool.name, node.as_str()))
}

/// A node that joined, left or came back, for the log and the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The pool's name.
    pub pool: String,
    /// The node's base URL.
    pub node: Url,
    /// Its membership now.
    pub now: Membership,
}

/// Why a settings file cannot become the running topology.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TopologyError {
    /// The file does not load or validate (the message locates the problem).
    #[error("{0}")]
    Invalid(String),
    /// The file adds, removes, renames or changes the kind of a pool: only node lists
    /// change live.
    #[error("{0}: pools can only change at a restart (node lists change live)")]
    PoolsChanged(String),
}

impl Topology {
    /// The topology of freshly read settings: every node listed.
    pub fn new(pools: Vec<PoolConfig>) -> Topology {
        let membership = pools
            .iter()
            .map(|p| vec![Membership::Listed; p.nodes.len()])
            .collect();
        Topology {
            addresses: prepared(&[], &pools, address),
            series: prepared(&[], &pools, series),
            pools,
            membership,
            generation: 1,
        }
    }

    /// The pools, each with every node it had in this process.
    pub fn pools(&self) -> &[PoolConfig] {
        &self.pools
    }

    /// Node `node` of pool `pool`'s address for forwarding, or why its URL cannot be one.
    ///
    /// # Errors
    /// That reason; also for indices out of range.
    pub fn address(&self, pool: usize, node: usize) -> Result<&NodeAddress, &str> {
        match self.addresses.get(pool).and_then(|p| p.get(node)) {
            Some(Ok(address)) => Ok(address),
            Some(Err(why)) => Err(why),
            None => Err("no such node"),
        }
    }

    /// Node `node` of pool `pool`'s request metrics; `None` for indices out of range.
    pub fn series(&self, pool: usize, node: usize) -> Option<&Arc<NodeSeries>> {
        self.series.get(pool).and_then(|p| p.get(node))
    }

    /// Node `node` of pool `pool`; [`Membership::Gone`] for indices out of range.
    pub fn membership(&self, pool: usize, node: usize) -> Membership {
        self.membership
            .get(pool)
            .and_then(|p| p.get(node))
            .copied()
            .unwrap_or(Membership::Gone)
    }

    /// Counts the topologies of this process, from 1.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The topology once the settings list `wanted`: nodes new to a pool are appended as
    /// listed, members no longer listed leave, listed-again ones come back. Returns it with
    /// the nodes whose membership changed.
    ///
    /// # Errors
    /// [`TopologyError::PoolsChanged`] when `wanted` does not have the same pools (names,
    /// kinds, proof policies, in the same order).
    pub fn listing(&self, wanted: &[PoolConfig]) -> Result<(Topology, Vec<Change>), TopologyError> {
        let same_pools = self.pools.len() == wanted.len()
            && self
                .pools
                .iter()
                .zip(wanted)
                .all(|(a, b)| a.name == b.name && a.kind == b.kind && a.proof == b.proof);
        if !same_pools {
            let names = |pools: &[PoolConfig]| {
                pools
                    .iter()
                    .map(|p| format!("{} ({})", p.name, p.kind.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(TopologyError::PoolsChanged(format!(
                "the settings name the pools {} instead of {}",
                names(wanted),
                names(&self.pools)
            )));
        }
        let mut pools = self.pools.clone();
        let mut membership = self.membership.clone();
        let mut changes = Vec::new();
        for ((pool, states), listed) in pools.iter_mut().zip(&mut membership).zip(wanted) {
            for (node, state) in pool.nodes.iter().zip(states.iter_mut()) {
                let now = match (listed.nodes.contains(node), *state) {
                    (true, _) => Membership::Listed,
                    (false, Membership::Listed) => Membership::Leaving,
                    (false, other) => other,
                };
                if now != *state {
                    changes.push(Change {
                        pool: pool.name.clone(),
                        node: node.clone(),
                        now,
                    });
                    *state = now;
                }
            }
            for node in &listed.nodes {
                if !pool.nodes.contains(node) {
                    pool.nodes.push(node.clone());
                    states.push(Membership::Listed);
                    changes.push(Change {
                        pool: pool.name.clone(),
                        node: node.clone(),
                        now: Membership::Listed,
                    });
                }
            }
        }
        let next = Topology {
            addresses: prepared(&self.addresses, &pools, address),
            series: prepared(&self.series, &pools, series),
            pools,
            membership,
            generation: self.generation + 1,
        };
        Ok((next, changes))
    }

    /// The topology with leaving node `node` of pool `pool` gone; `None` if it is not
    /// leaving (listed again meanwhile, or gone already).
    fn without(&self, pool: usize, node: usize) -> Option<Topology> {
        if self.membership(pool, node) != Membership::Leaving {
            return None;
        }
        let mut membership = self.membership.clone();
        membership[pool][node] = Membership::Gone;
        Some(Topology {
            pools: self.pools.clone(),
            addresses: self.addresses.clone(),
            series: self.series.clone(),
            membership,
            generation: self.generation + 1,
        })
    }

    /// Every leaving node: (pool index, node index).
    pub fn leaving(&self) -> Vec<(usize, usize)> {
        self.membership
            .iter()
            .enumerate()
            .flat_map(|(p, nodes)| {
                nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| **m == Membership::Leaving)
                    .map(move |(n, _)| (p, n))
            })
            .collect()
    }
}

/// The running topology, swapped whole; readers keep the one they loaded.
pub struct TopologyStore {
    current: ArcSwap<Topology>,
    /// The settings file node lists are reloaded from.
    settings: std::path::PathBuf,
    /// What lists nodes: the settings (pools and their static nodes) and DNS (nodes per
    /// pool); a pool's listed nodes are the union.
    sources: Mutex<Sources>,
    /// Sends each new topology's generation.
    changes: watch::Sender<u64>,
    /// Serialises changes (a reload and a node going idle at once).
    changing: Mutex<()>,
    /// Why the last reload was refused, until one succeeds.
    last_error: Mutex<Option<TopologyError>>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

impl TopologyStore {
    /// A store serving the pools of `config`, reloading from its settings file.
    pub fn new(config: &Config) -> Arc<TopologyStore> {
        TopologyStore::of(config.pools.clone(), config.path.clone())
    }

    /// A store serving `pools`, reloading node lists from the settings file `settings`.
    pub fn of(pools: Vec<PoolConfig>, settings: std::path::PathBuf) -> Arc<TopologyStore> {
        Arc::new(TopologyStore {
            current: ArcSwap::from_pointee(Topology::new(pools.clone())),
            settings,
            sources: Mutex::new(Sources {
                settings: pools,
                resolved: HashMap::new(),
            }),
            changes: watch::Sender::new(1),
            changing: Mutex::new(()),
            last_error: Mutex::new(None),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// The topology in force now.
    pub fn current(&self) -> Arc<Topology> {
        self.current.load_full()
    }

    /// Tells each new topology's generation.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Re-reads the node lists from the settings file. A file that cannot be used keeps the
    /// running topology; the error is logged, kept for readiness and counted.
    ///
    /// # Errors
    /// Why the file was not used.
    pub fn reload(&self) -> Result<Vec<Change>, TopologyError> {
        let result = Config::from_file(&self.settings)
            .map_err(|e| TopologyError::Invalid(e.to_string()))
            .and_then(|config| self.list(&config.pools));
        match &result {
            Ok(changes) => {
                self.reloads.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_error) = None;
                info!(
                    changes = changes.len(),
                    settings = %self.settings.display(),
                    "node lists reloaded"
                );
            }
            Err(e) => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                *lock(&self.last_error) = Some(e.clone());
                error!(error = %e, failures, "node lists not reloaded; the running ones stay in force");
            }
        }
        result
    }

    /// Makes `pools` what the settings list (see [`Topology::listing`]; nodes DNS found
    /// stay listed) and logs each change.
    ///
    /// # Errors
    /// [`TopologyError::PoolsChanged`] when `pools` are other pools.
    pub fn list(&self, pools: &[PoolConfig]) -> Result<Vec<Change>, TopologyError> {
        let _one = lock(&self.changing);
        let mut sources = lock(&self.sources);
        let wanted = Sources {
            settings: pools.to_vec(),
            resolved: sources.resolved.clone(),
        };
        let changes = self.relist(&wanted)?;
        *sources = wanted;
        Ok(changes)
    }

    /// Makes `nodes` what DNS found for pool `pool` (its settings' nodes stay listed) and
    /// logs each change.
    ///
    /// # Errors
    /// Not expected: the pools stay the same.
    pub fn resolved(&self, pool: &str, nodes: Vec<Url>) -> Result<Vec<Change>, TopologyError> {
        let _one = lock(&self.changing);
        let mut sources = lock(&self.sources);
        sources.resolved.insert(pool.to_string(), nodes);
        self.relist(&sources)
    }

    /// Lists what `sources` want and swaps the result in.
    fn relist(&self, sources: &Sources) -> Result<Vec<Change>, TopologyError> {
        let (next, changes) = self.current().listing(&sources.wanted())?;
        for change in &changes {
            match change.now {
                Membership::Listed => info!(pool = %change.pool, node = %change.node,
                    "node joins: it takes new documents once it passes its checks"),
                Membership::Leaving => info!(pool = %change.pool, node = %change.node,
                    "node leaves: no new documents, its open documents stay until they go idle"),
                Membership::Gone => {}
            }
        }
        if !changes.is_empty() {
            self.swap(next);
        }
        Ok(changes)
    }

    /// Marks leaving node `node` of `pool` gone (its documents went idle). Returns whether
    /// it changed anything.
    pub fn retire(&self, pool: usize, node: usize) -> bool {
        let _one = lock(&self.changing);
        let current = self.current();
        let Some(next) = current.without(pool, node) else {
            return false;
        };
        if let Some(p) = current.pools().get(pool) {
            info!(pool = %p.name, node = %p.nodes[node], "node gone: no document is pinned to it any more; nothing routes to it");
        }
        self.swap(next);
        true
    }

    fn swap(&self, next: Topology) {
        let generation = next.generation;
        self.current.store(Arc::new(next));
        self.changes.send_replace(generation);
    }

    /// Successful reloads since start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Refused reloads since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The readiness detail line: the generation, and why the last reload was refused.
    pub fn report(&self) -> String {
        let current = self.current();
        let count = |wanted: Membership| {
            current
                .membership
                .iter()
                .flatten()
                .filter(|m| **m == wanted)
                .count()
        };
        let head = format!(
            "topology: generation {}, nodes: {} listed, {} leaving",
            current.generation,
            count(Membership::Listed),
            count(Membership::Leaving)
        );
        match &*lock(&self.last_error) {
            Some(e) => format!(
                "{head}; the last node list reload failed ({} failures so far), the running one stays: {e}",
                self.failures()
            ),
            None => head,
        }
    }
}

/// What lists a pool's nodes.
struct Sources {
    /// The pools as the settings file lists them.
    settings: Vec<PoolConfig>,
    /// Pool name -> nodes its DNS name resolved to last.
    resolved: HashMap<String, Vec<Url>>,
}

impl Sources {
    /// The settings' pools with DNS nodes added.
    fn wanted(&self) -> Vec<PoolConfig> {
        let mut pools = self.settings.clone();
        for pool in &mut pools {
            for node in self.resolved.get(&pool.name).into_iter().flatten() {
                if !pool.nodes.contains(node) {
                    pool.nodes.push(node.clone());
                }
            }
        }
        pools
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProofPolicy, SuiteKind};

    fn pool(nodes: &[&str]) -> PoolConfig {
        PoolConfig {
            name: "collabora".into(),
            kind: SuiteKind::Collabora,
            nodes: nodes.iter().map(|n| Url::parse(n).unwrap()).collect(),
            proof: ProofPolicy::default(),
        }
    }

    const A: &str = "http://10.0.0.1:9980/";
    const B: &str = "http://10.0.0.2:9980/";
    const C: &str = "http://10.0.0.3:9980/";

    #[test]
    fn joins_append_leaves_stay_in_place_and_indices_never_move() {
        let start = Topology::new(vec![pool(&[A, B])]);
        let (joined, changes) = start.listing(&[pool(&[A, B, C])]).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].now, Membership::Listed);
        assert_eq!(joined.pools()[0].nodes[2].as_str(), C);

        // B leaves: still at index 1, leaving; C keeps index 2.
        let (left, changes) = joined.listing(&[pool(&[C, A])]).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(left.membership(0, 1), Membership::Leaving);
        assert_eq!(left.pools()[0].nodes[1].as_str(), B);
        assert_eq!(left.membership(0, 2), Membership::Listed);
        assert_eq!(left.leaving(), vec![(0, 1)]);

        // Gone once idle; listed again, it comes back at its old index.
        let gone = left.without(0, 1).unwrap();
        assert_eq!(gone.membership(0, 1), Membership::Gone);
        assert!(gone.without(0, 1).is_none(), "only a leaving node goes");
        let (back, changes) = gone.listing(&[pool(&[A, B, C])]).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(back.membership(0, 1), Membership::Listed);
        assert_eq!(back.pools()[0].nodes.len(), 3);
        assert_eq!(back.generation(), 5);
        assert_eq!(back.membership(0, 9), Membership::Gone);
    }

    #[test]
    fn every_node_keeps_its_address_and_metrics_across_listings() {
        let start = Topology::new(vec![pool(&[A, B])]);
        let (joined, _) = start.listing(&[pool(&[C, A])]).unwrap();
        for (i, url) in [A, B, C].into_iter().enumerate() {
            let address = joined.address(0, i).unwrap();
            assert_eq!(address.host(), &url[7..url.len() - 1], "{url}");
            assert_eq!(joined.series(0, i).unwrap().node(), url);
        }
        for i in 0..2 {
            assert!(
                Arc::ptr_eq(start.series(0, i).unwrap(), joined.series(0, i).unwrap()),
                "node {i}'s counters are kept, not resolved again"
            );
        }
        assert!(joined.address(0, 3).is_err());
        assert!(joined.series(1, 0).is_none());
    }

    #[test]
    fn the_same_list_changes_nothing_and_other_pools_are_refused() {
        let start = Topology::new(vec![pool(&[A, B])]);
        let (same, changes) = start.listing(&[pool(&[B, A])]).unwrap();
        assert!(changes.is_empty());
        assert_eq!(same.pools()[0].nodes, start.pools()[0].nodes);

        let mut renamed = pool(&[A]);
        renamed.name = "cool".into();
        let err = start.listing(&[renamed]).unwrap_err();
        assert!(
            err.to_string()
                .contains("pools can only change at a restart"),
            "{err}"
        );
        assert!(start.listing(&[]).is_err());
    }
}
