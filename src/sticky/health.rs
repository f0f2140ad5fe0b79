//! Which nodes may take documents: health (active checks plus passive reports from proxied
//! requests) and draining (set by an operator before maintenance).
//!
//! Why both kinds of evidence: active checks find a dead node even when no traffic reaches
//! it, passive reports find it within a few requests instead of a check interval. Only
//! active checks bring a node back (`rise` in a row), so one lucky request cannot make a
//! sick node flap. A node is marked down after `fall` consecutive failures of either kind.
//!
//! Every node starts healthy, so traffic flows before the first round of checks. Routing
//! asks on every request, so [`Health::is_healthy`] and [`Health::is_draining`] are one
//! atomic load each; the counting lives behind a per-node mutex taken only by checks and
//! failure reports (and by a success report after a failure).
//!
//! One log line per state change (down at warn; up and draining at info), none per check.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use futures_util::future::join_all;
use tokio::sync::watch;
use tracing::{info, warn};
use url::Url;

use crate::config::{HealthConfig, PoolConfig, SuiteKind};
use crate::discovery::fetch;
use crate::topology::{Membership, Topology};
use crate::upstream::UpstreamClient;
use crate::wopi::token::unix_now;

/// Largest health-check body read: Collabora's capabilities are a few KiB, OnlyOffice's
/// `true` four bytes. Reading the body lets the connection be reused.
const CHECK_BODY_LIMIT: usize = 1024 * 1024;

/// Longest failure reason kept and logged: errors are for people, and a caller's message
/// must not bloat every readiness answer.
const MAX_REASON_CHARS: usize = 300;

/// Health and drain state of every node of every pool, indexed as the configured pools are
/// (pool index into `&[PoolConfig]`, node index into `pool.nodes`).
///
/// Indices out of range are never a panic: such a node is neither healthy nor draining,
/// and changes to it are ignored.
pub struct Health {
    /// Grows when nodes join ([`Health::follow`]): a node keeps its state, and its index,
    /// across topologies.
    pools: ArcSwap<Vec<PoolHealth>>,
    settings: HealthConfig,
    /// Bumped on every health or drain change.
    changes: watch::Sender<u64>,
    /// One round of checks at a time, so a SIGHUP round during a timer round does not count
    /// each check twice.
    rounds: tokio::sync::Mutex<()>,
}

/// One pool's nodes.
#[derive(Clone)]
struct PoolHealth {
    name: String,
    kind: SuiteKind,
    nodes: Vec<Arc<NodeHealth>>,
}

/// One node: the flags routing reads, and the counts behind them.
struct NodeHealth {
    url: Url,
    /// What an active check asks for; an error if the URL cannot be built (then every check
    /// fails with it).
    check_url: Result<Url, String>,
    healthy: AtomicBool,
    draining: AtomicBool,
    /// Whether the topology lists it (a leaving or gone node takes no new document).
    listed: AtomicBool,
    /// Whether it is gone from the topology: nothing routes to it, nothing checks it.
    gone: AtomicBool,
    /// Whether `state.failures > 0`, so a passive success on a clean node (the common
    /// case, once per proxied request) takes no lock.
    failing: AtomicBool,
    state: Mutex<NodeState>,
}

/// What one observation of a node was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome<'a> {
    /// An active check got a 2xx answer.
    CheckPassed,
    /// A proxied request went through.
    Served,
    /// A check or a proxied request failed, for this reason.
    Failed(&'a str),
}

/// A change of a node's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    /// Marked down.
    Down,
    /// Back up after `rise` checks; it had been down since this Unix second.
    Up { down_since: u64 },
}

/// The counting behind one node's health: a pure state machine, so the rules are tested
/// without sockets or clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeState {
    healthy: bool,
    draining: bool,
    /// Consecutive failures (checks or reports), reset by any success.
    failures: u32,
    /// Consecutive passed checks while down, reset by any failure.
    successes: u32,
    /// Consecutive failures when it was last marked down.
    down_after: u32,
    /// Unix second it was last marked down.
    down_since: u64,
    /// Reason of the latest failure; kept while the node fails or is down.
    last_error: Option<String>,
    /// Unix second of the last change of health or draining.
    since: u64,
    /// Unix second draining was last turned on.
    draining_since: u64,
}

impl NodeHealth {
    /// A node of a pool of `kind`: healthy (traffic flows before the first check), listed,
    /// not draining.
    fn new(url: &Url, kind: SuiteKind) -> NodeHealth {
        NodeHealth {
            url: url.clone(),
            check_url: url
                .join(check_path(kind))
                .map_err(|e| format!("cannot build the health check URL of {url}: {e}")),
            healthy: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            listed: AtomicBool::new(true),
            gone: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            state: Mutex::new(NodeState::new(unix_now())),
        }
    }

    fn membership(&self) -> Membership {
        if self.gone.load(Ordering::Acquire) {
            Membership::Gone
        } else if self.listed.load(Ordering::Acquire) {
            Membership::Listed
        } else {
            Membership::Leaving
        }
    }

    fn takes_new_documents(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
            && self.listed.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
    }
}

impl NodeState {
    /// Healthy, not draining, no history.
    fn new(now: u64) -> Self {
        Self {
            healthy: true,
            draining: false,
            failures: 0,
            successes: 0,
            down_after: 0,
            down_since: now,
            last_error: None,
            since: now,
            draining_since: now,
        }
    }

    /// Counts one observation; `fall` and `rise` below 1 count as 1.
    fn observe(
        &mut self,
        outcome: Outcome<'_>,
        fall: u32,
        rise: u32,
        now: u64,
    ) -> Option<Transition> {
        match outcome {
            Outcome::Failed(why) => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                self.last_error = Some(truncate(why));
                if self.healthy && self.failures >= fall.max(1) {
                    self.healthy = false;
                    self.down_after = self.failures;
                    self.down_since = now;
                    self.since = now;
                    return Some(Transition::Down);
                }
                None
            }
            Outcome::Served => {
                self.failures = 0;
                if self.healthy {
                    self.last_error = None;
                }
                None
            }
            Outcome::CheckPassed => {
                self.failures = 0;
                if self.healthy {
                    self.last_error = None;
                    return None;
                }
                self.successes = self.successes.saturating_add(1);
                if self.successes < rise.max(1) {
                    return None;
                }
                let down_since = self.down_since;
                self.healthy = true;
                self.successes = 0;
                self.last_error = None;
                self.since = now;
                Some(Transition::Up { down_since })
            }
        }
    }

    /// Sets draining; whether it changed.
    fn set_draining(&mut self, draining: bool, now: u64) -> bool {
        if self.draining == draining {
            return false;
        }
        self.draining = draining;
        self.since = now;
        if draining {
            self.draining_since = now;
        }
        true
    }

    /// The readiness detail line of a node that is down or draining; `None` for one in service.
    fn report(&self, head: &str, rise: u32, now: u64) -> Option<String> {
        if self.healthy && !self.draining {
            return None;
        }
        if self.healthy {
            return Some(format!(
                "{head}: draining since {}",
                clock(self.draining_since, now)
            ));
        }
        let mut line = format!(
            "{head}: down since {} after {} failures: {}",
            clock(self.down_since, now),
            self.down_after,
            self.last_error.as_deref().unwrap_or("unknown error"),
        );
        if self.successes > 0 {
            line.push_str(&format!(
                "; recovering, {} of {} checks passed",
                self.successes,
                rise.max(1)
            ));
        }
        if self.draining {
            line.push_str("; draining");
        }
        Some(line)
    }
}

/// Snapshot of one node for readiness, the admin API and `officeswitch nodes`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    /// Name of the node's pool.
    pub pool: String,
    /// Suite of the pool (`collabora`, `onlyoffice`).
    pub suite: &'static str,
    /// The node's base URL, as configured.
    pub node: String,
    /// Whether it passes checks (false once marked down, until `rise` checks pass).
    pub healthy: bool,
    /// Whether an operator keeps new documents off it.
    pub draining: bool,
    /// `listed`, `leaving` (removed from the settings, finishing its documents) or `gone`.
    pub membership: &'static str,
    /// Failures (checks or proxied requests) since the last success.
    pub consecutive_failures: u32,
    /// Reason of the latest failure, while it fails or is down.
    pub last_error: Option<String>,
    /// Unix second of the last change of health or draining (start-up if none).
    pub since_unix: u64,
}

impl Health {
    /// Every node starts healthy (traffic flows before the first check) and not draining.
    pub fn new(pools: &[PoolConfig], config: &HealthConfig) -> Arc<Health> {
        let pools = pools
            .iter()
            .map(|pool| PoolHealth {
                name: pool.name.clone(),
                kind: pool.kind,
                nodes: pool
                    .nodes
                    .iter()
                    .map(|url| Arc::new(NodeHealth::new(url, pool.kind)))
                    .collect(),
            })
            .collect();
        Arc::new(Health {
            pools: ArcSwap::from_pointee(pools),
            settings: config.clone(),
            changes: watch::Sender::new(0),
            rounds: tokio::sync::Mutex::new(()),
        })
    }

    /// Follows `topology`: nodes that joined get a state (healthy until checked), every
    /// node's membership is copied. Nodes never move, so indices stay valid.
    pub fn follow(&self, topology: &Topology) {
        let mut pools = Vec::clone(&self.pools.load());
        for (p, (pool, config)) in pools.iter_mut().zip(topology.pools()).enumerate() {
            for url in config.nodes.iter().skip(pool.nodes.len()) {
                pool.nodes.push(Arc::new(NodeHealth::new(url, config.kind)));
            }
            for (n, node) in pool.nodes.iter().enumerate() {
                let membership = topology.membership(p, n);
                node.listed
                    .store(membership == Membership::Listed, Ordering::Release);
                node.gone
                    .store(membership == Membership::Gone, Ordering::Release);
            }
        }
        self.pools.store(Arc::new(pools));
        self.changes.send_modify(|g| *g += 1);
    }

    fn node(&self, pool: usize, node: usize) -> Option<Arc<NodeHealth>> {
        self.pools.load().get(pool)?.nodes.get(node).cloned()
    }

    /// Runs `read` on node `node` of pool `pool` without taking a reference count (the
    /// per-request questions); `None` for indices out of range.
    fn read<R>(&self, pool: usize, node: usize, read: impl FnOnce(&NodeHealth) -> R) -> Option<R> {
        let pools = self.pools.load();
        pools.get(pool)?.nodes.get(node).map(|n| read(n))
    }

    /// Whether anything may still be routed to the node (it is not gone from the
    /// topology): the documents pinned to a leaving node still are.
    pub fn is_member(&self, pool: usize, node: usize) -> bool {
        self.read(pool, node, |n| !n.gone.load(Ordering::Acquire))
            .unwrap_or(false)
    }

    /// Whether the node passes its checks. One atomic load: asked on every request.
    pub fn is_healthy(&self, pool: usize, node: usize) -> bool {
        self.read(pool, node, |n| {
            n.healthy.load(Ordering::Acquire) && !n.gone.load(Ordering::Acquire)
        })
        .unwrap_or(false)
    }

    /// Whether an operator keeps new documents off the node (open ones stay).
    pub fn is_draining(&self, pool: usize, node: usize) -> bool {
        self.read(pool, node, |n| n.draining.load(Ordering::Acquire))
            .unwrap_or(false)
    }

    /// Healthy, listed and not draining: may take NEW documents (and stateless work).
    pub fn takes_new_documents(&self, pool: usize, node: usize) -> bool {
        self.read(pool, node, NodeHealth::takes_new_documents)
            .unwrap_or(false)
    }

    /// Whether `pool` has a node that takes new documents (suite failover uses it).
    pub fn pool_takes_new_documents(&self, pool: usize) -> bool {
        self.pools
            .load()
            .get(pool)
            .is_some_and(|p| p.nodes.iter().any(|n| n.takes_new_documents()))
    }

    /// Turns draining on or off. Returns whether it changed. Logs one line on change.
    pub fn set_draining(&self, pool: usize, node: usize, draining: bool) -> bool {
        let Some(n) = self.node(pool, node) else {
            return false;
        };
        let mut state = lock(&n.state);
        if !state.set_draining(draining, unix_now()) {
            return false;
        }
        n.draining.store(draining, Ordering::Release);
        drop(state);
        let pools = self.pools.load();
        let p = &pools[pool];
        if draining {
            info!(pool = %p.name, suite = p.kind.as_str(), node = %n.url,
                "node draining: no new documents go to it, open ones stay");
        } else {
            info!(pool = %p.name, suite = p.kind.as_str(), node = %n.url,
                "node no longer draining: takes new documents again");
        }
        self.changes.send_modify(|g| *g += 1);
        true
    }

    /// The (pool, node) indices of a node URL, for the admin endpoint / CLI. A missing
    /// trailing `/` is forgiven (`http://host:9980` finds `http://host:9980/`).
    pub fn find(&self, node: &Url) -> Option<(usize, usize)> {
        let wanted = node.as_str().trim_end_matches('/');
        self.pools.load().iter().enumerate().find_map(|(p, pool)| {
            pool.nodes
                .iter()
                .position(|n| n.url == *node || n.url.as_str().trim_end_matches('/') == wanted)
                .map(|n| (p, n))
        })
    }

    /// Passive marking: a proxied request could not connect / got a 5xx from the node.
    /// `fall` consecutive failures (checks or reports) mark the node down. `why` is logged
    /// on the transition, so it must never hold a URL query or token.
    pub fn report_failure(&self, pool: usize, node: usize, why: &str) {
        self.observe(pool, node, Outcome::Failed(why));
    }

    /// Passive success: resets the consecutive-failure count (does not bring a down node
    /// back: only `rise` consecutive successful ACTIVE checks do, so one lucky request does
    /// not flap it). No lock unless the node has failed since its last success.
    pub fn report_success(&self, pool: usize, node: usize) {
        if self
            .read(pool, node, |n| n.failing.load(Ordering::Acquire))
            .unwrap_or(false)
        {
            self.observe(pool, node, Outcome::Served);
        }
    }

    /// Counts one observation, flips the flags and logs if the health changed.
    fn observe(&self, pool: usize, node: usize, outcome: Outcome<'_>) {
        let Some(n) = self.node(pool, node) else {
            return;
        };
        let now = unix_now();
        let mut state = lock(&n.state);
        let transition = state.observe(outcome, self.settings.fall, self.settings.rise, now);
        n.failing.store(state.failures > 0, Ordering::Release);
        let Some(transition) = transition else {
            return;
        };
        n.healthy.store(state.healthy, Ordering::Release);
        let (failures, error) = (state.down_after, state.last_error.clone());
        drop(state);
        let pools = self.pools.load();
        let p = &pools[pool];
        match transition {
            Transition::Down => warn!(
                pool = %p.name, suite = p.kind.as_str(), node = %n.url, failures,
                error = error.as_deref().unwrap_or(""),
                "node marked down: no new documents go to it until it passes its checks again"
            ),
            Transition::Up { down_since } => info!(
                pool = %p.name, suite = p.kind.as_str(), node = %n.url,
                checks = self.settings.rise, down_secs = now.saturating_sub(down_since),
                "node back up: passes its checks again"
            ),
        }
        self.changes.send_modify(|g| *g += 1);
    }

    /// Active checks until `shutdown` resolves: every `interval`, each node is checked
    /// concurrently with `timeout`: Collabora `GET {node}hosting/capabilities`, OnlyOffice
    /// `GET {node}healthcheck`, 2xx = success. The first round starts at once.
    pub async fn run(
        self: Arc<Self>,
        client: UpstreamClient,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        tokio::pin!(shutdown);
        loop {
            let started = tokio::time::Instant::now();
            tokio::select! {
                () = &mut shutdown => return,
                () = self.check_all(&client) => {}
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep_until(started + self.settings.interval) => {}
            }
        }
    }

    /// One round of checks of every node now (tests, and SIGHUP). Takes at most about
    /// `timeout` (after a round already running); a hung node delays no other.
    pub async fn check_all(&self, client: &UpstreamClient) {
        let _one_round = self.rounds.lock().await;
        let pools = self.pools.load_full();
        let checks = pools.iter().enumerate().flat_map(|(p, pool)| {
            pool.nodes
                .iter()
                .enumerate()
                .filter(|(_, node)| !node.gone.load(Ordering::Acquire))
                .map(move |(n, node)| self.check(client, p, n, node))
        });
        join_all(checks).await;
    }

    /// Checks one node and counts the result.
    async fn check(&self, client: &UpstreamClient, pool: usize, node: usize, n: &NodeHealth) {
        let result = match &n.check_url {
            Ok(url) => fetch::get(client, url, self.settings.timeout, CHECK_BODY_LIMIT)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        match result {
            Ok(()) => self.observe(pool, node, Outcome::CheckPassed),
            Err(e) => self.observe(pool, node, Outcome::Failed(&e)),
        }
    }

    /// Bumped on every health or drain change (lets other parts react, e.g. release pins
    /// of a failed node).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Snapshot for readiness, the admin API and `officeswitch nodes`, in settings order.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        self.pools
            .load()
            .iter()
            .flat_map(|pool| {
                pool.nodes.iter().map(|n| {
                    let state = lock(&n.state);
                    NodeStatus {
                        pool: pool.name.clone(),
                        suite: pool.kind.as_str(),
                        node: n.url.to_string(),
                        healthy: state.healthy,
                        draining: state.draining,
                        membership: n.membership().as_str(),
                        consecutive_failures: state.failures,
                        last_error: state.last_error.clone(),
                        since_unix: state.since,
                    }
                })
            })
            .collect()
    }

    /// Readiness detail lines: one per node that is down or draining, e.g.
    /// `node http://10.0.0.2:9980/ (collabora): down since 12:03:01Z after 3 failures:
    /// connection refused`. Times are UTC; a date is added when over a day old.
    pub fn report(&self) -> Vec<String> {
        let now = unix_now();
        self.pools
            .load()
            .iter()
            .flat_map(|pool| {
                pool.nodes.iter().filter_map(move |n| {
                    let head = format!("node {} ({})", n.url, pool.kind.as_str());
                    match n.membership() {
                        Membership::Gone => None,
                        Membership::Leaving => Some(format!(
                            "{head}: leaving (no longer in the settings): finishes the documents pinned to it"
                        )),
                        Membership::Listed => {
                            lock(&n.state).report(&head, self.settings.rise, now)
                        }
                    }
                })
            })
            .collect()
    }
}

/// What an active check asks a node of this suite for: Collabora has no dedicated health
/// endpoint that proves the WOPI service answers, its capabilities do; OnlyOffice's
/// `/healthcheck` answers `true` once DocService is up.
fn check_path(kind: SuiteKind) -> &'static str {
    match kind {
        SuiteKind::Collabora => "hosting/capabilities",
        SuiteKind::OnlyOffice => "healthcheck",
    }
}

/// A node's state, even if a thread panicked holding it: the counts stay usable.
fn lock(state: &Mutex<NodeState>) -> MutexGuard<'_, NodeState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `why`, cut to [`MAX_REASON_CHARS`] characters.
fn truncate(why: &str) -> String {
    match why.char_indices().nth(MAX_REASON_CHARS) {
        Some((end, _)) => format!("{}...", &why[..end]),
        None => why.to_owned(),
    }
}

/// `HH:MM:SSZ` (UTC) of `unix`, with the date in front (`YYYY-MM-DDT`) when it is more than
/// a day before `now`, so an old outage does not read as today's.
fn clock(unix: u64, now: u64) -> String {
    let (hour, minute, second) = crate::civil::time_of_day(unix);
    let time = format!("{hour:02}:{minute:02}:{second:02}Z");
    if now.saturating_sub(unix) < 86_400 {
        return time;
    }
    let (year, month, day) = crate::civil::date(unix / 86_400);
    format!("{year:04}-{month:02}-{day:02}T{time}")
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::time::Duration;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::{TcpListener, TcpSocket, TcpStream};
    use tokio::task::{JoinHandle, JoinSet};
    use tokio::time::Instant;

    use super::*;
    use crate::config::{ProofPolicy, UpstreamConfig};

    const FALL: u32 = 3;
    const RISE: u32 = 2;

    fn pool(name: &str, kind: SuiteKind, nodes: &[&str]) -> PoolConfig {
        PoolConfig {
            name: name.to_owned(),
            kind,
            nodes: nodes.iter().map(|n| Url::parse(n).expect("URL")).collect(),
            proof: ProofPolicy::default(),
        }
    }

    fn two_pools() -> Vec<PoolConfig> {
        vec![
            pool(
                "collabora",
                SuiteKind::Collabora,
                &["http://10.0.0.1:9980/", "http://10.0.0.2:9980/"],
            ),
            pool(
                "onlyoffice",
                SuiteKind::OnlyOffice,
                &["http://10.0.1.1/onlyoffice/"],
            ),
        ]
    }

    fn settings(fall: u32, rise: u32, timeout: Duration) -> HealthConfig {
        HealthConfig {
            interval: Duration::from_millis(50),
            timeout,
            fall,
            rise,
        }
    }

    fn health() -> Arc<Health> {
        Health::new(&two_pools(), &settings(FALL, RISE, Duration::from_secs(1)))
    }

    fn fail(state: &mut NodeState, now: u64) -> Option<Transition> {
        state.observe(Outcome::Failed("connection refused"), FALL, RISE, now)
    }

    fn pass(state: &mut NodeState, now: u64) -> Option<Transition> {
        state.observe(Outcome::CheckPassed, FALL, RISE, now)
    }

    #[test]
    fn fall_failures_mark_down_and_rise_checks_bring_back() {
        let mut state = NodeState::new(100);
        assert_eq!(fail(&mut state, 101), None);
        assert_eq!(fail(&mut state, 102), None);
        assert!(state.healthy, "two failures of three");
        assert_eq!(fail(&mut state, 103), Some(Transition::Down));
        assert!(!state.healthy);
        assert_eq!((state.since, state.down_after), (103, 3));
        assert_eq!(
            fail(&mut state, 104),
            None,
            "already down: no second change"
        );
        assert_eq!(state.failures, 4);
        assert_eq!(pass(&mut state, 105), None, "one check of two");
        assert!(!state.healthy);
        assert_eq!(state.failures, 0);
        assert_eq!(
            pass(&mut state, 106),
            Some(Transition::Up { down_since: 103 })
        );
        assert!(state.healthy);
        assert_eq!(state.since, 106);
        assert_eq!(state.last_error, None);
    }

    #[test]
    fn a_success_between_failures_restarts_the_fall_count() {
        let mut state = NodeState::new(0);
        fail(&mut state, 1);
        fail(&mut state, 2);
        assert_eq!(pass(&mut state, 3), None);
        assert_eq!((state.failures, state.last_error.as_deref()), (0, None));
        fail(&mut state, 4);
        fail(&mut state, 5);
        assert!(state.healthy, "the count restarted after the pass");
        assert_eq!(fail(&mut state, 6), Some(Transition::Down));
    }

    #[test]
    fn a_failure_while_recovering_restarts_the_rise_count() {
        let mut state = NodeState::new(0);
        for t in 1..=3 {
            fail(&mut state, t);
        }
        assert_eq!(pass(&mut state, 4), None);
        assert_eq!(fail(&mut state, 5), None);
        assert_eq!(pass(&mut state, 6), None, "one pass since the failure");
        assert!(!state.healthy);
        assert_eq!(pass(&mut state, 7), Some(Transition::Up { down_since: 3 }));
    }

    #[test]
    fn passive_success_resets_failures_but_never_revives() {
        let mut state = NodeState::new(0);
        fail(&mut state, 1);
        fail(&mut state, 2);
        assert_eq!(state.observe(Outcome::Served, FALL, RISE, 3), None);
        assert_eq!((state.failures, state.last_error.as_deref()), (0, None));
        for t in 4..=6 {
            fail(&mut state, t);
        }
        assert!(!state.healthy);
        for t in 7..=20 {
            assert_eq!(state.observe(Outcome::Served, FALL, RISE, t), None);
        }
        assert!(!state.healthy, "only active checks bring a node back");
        assert_eq!(state.failures, 0);
        assert_eq!(
            state.last_error.as_deref(),
            Some("connection refused"),
            "a down node keeps the reason it is down"
        );
    }

    #[test]
    fn fall_and_rise_of_zero_count_as_one() {
        let mut state = NodeState::new(0);
        assert_eq!(
            state.observe(Outcome::Failed("x"), 0, 0, 1),
            Some(Transition::Down)
        );
        assert_eq!(
            state.observe(Outcome::CheckPassed, 0, 0, 2),
            Some(Transition::Up { down_since: 1 })
        );
    }

    #[test]
    fn every_node_starts_healthy_and_not_draining() {
        let health = health();
        for (pool, node) in [(0, 0), (0, 1), (1, 0)] {
            assert!(health.is_healthy(pool, node));
            assert!(!health.is_draining(pool, node));
            assert!(health.takes_new_documents(pool, node));
        }
        assert!(health.pool_takes_new_documents(0));
        assert!(health.pool_takes_new_documents(1));
        assert!(health.report().is_empty());
    }

    #[test]
    fn passive_reports_mark_a_node_down_and_notify() {
        let health = health();
        let mut changes = health.subscribe();
        for _ in 0..FALL - 1 {
            health.report_failure(0, 1, "connection refused");
        }
        assert!(health.is_healthy(0, 1));
        assert!(!changes.has_changed().expect("sender alive"));
        health.report_failure(0, 1, "connection refused");
        assert!(!health.is_healthy(0, 1));
        assert!(!health.takes_new_documents(0, 1));
        assert!(health.is_healthy(0, 0), "other nodes are unaffected");
        assert!(health.pool_takes_new_documents(0));
        assert!(changes.has_changed().expect("sender alive"));
        assert_eq!(*changes.borrow_and_update(), 1);
        health.report_success(0, 1);
        assert!(
            !health.is_healthy(0, 1),
            "a lucky request does not revive it"
        );
        assert!(!changes.has_changed().expect("sender alive"));

        health.report_failure(0, 0, "status 502");
        health.report_success(0, 0);
        let status = &health.nodes()[0];
        assert_eq!((status.consecutive_failures, status.healthy), (0, true));
    }

    #[test]
    fn draining_keeps_new_documents_off_a_healthy_node() {
        let health = health();
        let mut changes = health.subscribe();
        assert!(health.set_draining(1, 0, true));
        assert!(!health.set_draining(1, 0, true), "no change, no bump");
        assert!(health.is_draining(1, 0));
        assert!(health.is_healthy(1, 0));
        assert!(!health.takes_new_documents(1, 0));
        assert!(!health.pool_takes_new_documents(1));
        assert_eq!(*changes.borrow_and_update(), 1);
        assert!(health.set_draining(1, 0, false));
        assert!(health.takes_new_documents(1, 0));
        assert_eq!(*changes.borrow_and_update(), 2);
    }

    #[test]
    fn a_pool_of_down_or_draining_nodes_takes_no_new_documents() {
        let health = health();
        for _ in 0..FALL {
            health.report_failure(0, 0, "connection refused");
        }
        assert!(health.pool_takes_new_documents(0));
        health.set_draining(0, 1, true);
        assert!(!health.pool_takes_new_documents(0));
    }

    #[test]
    fn out_of_range_indices_are_neither_healthy_nor_a_panic() {
        let health = health();
        assert!(!health.is_healthy(1, 1));
        assert!(!health.is_draining(2, 0));
        assert!(!health.takes_new_documents(7, 7));
        assert!(!health.pool_takes_new_documents(2));
        assert!(!health.set_draining(1, 1, true));
        health.report_failure(2, 0, "x");
        health.report_success(0, 9);
        assert_eq!(*health.subscribe().borrow(), 0);
    }

    #[test]
    fn find_names_a_configured_node() {
        let health = health();
        let url = |s: &str| Url::parse(s).expect("URL");
        assert_eq!(health.find(&url("http://10.0.0.2:9980/")), Some((0, 1)));
        assert_eq!(health.find(&url("http://10.0.0.2:9980")), Some((0, 1)));
        assert_eq!(
            health.find(&url("http://10.0.1.1/onlyoffice")),
            Some((1, 0)),
            "a prefix without its trailing slash"
        );
        assert_eq!(health.find(&url("http://10.0.0.3:9980/")), None);
        assert_eq!(health.find(&url("https://10.0.0.1:9980/")), None);
        assert_eq!(health.find(&url("http://10.0.1.1/")), None);
    }

    #[test]
    fn report_lines_name_down_and_draining_nodes() {
        let head = "node http://10.0.0.2:9980/ (collabora)";
        let now = 1_700_000_000; // 2023-11-14T22:13:20Z
        let mut state = NodeState::new(now - 100);
        assert_eq!(state.report(head, RISE, now), None);
        state.set_draining(true, now - 60);
        assert_eq!(
            state.report(head, RISE, now).as_deref(),
            Some("node http://10.0.0.2:9980/ (collabora): draining since 22:12:20Z")
        );
        for t in [now - 3, now - 2, now - 1] {
            fail(&mut state, t);
        }
        state.set_draining(false, now);
        assert_eq!(
            state.report(head, RISE, now).as_deref(),
            Some(
                "node http://10.0.0.2:9980/ (collabora): down since 22:13:19Z after 3 failures: connection refused"
            )
        );
        pass(&mut state, now);
        state.set_draining(true, now);
        assert_eq!(
            state.report(head, RISE, now).as_deref(),
            Some(
                "node http://10.0.0.2:9980/ (collabora): down since 22:13:19Z after 3 failures: \
                 connection refused; recovering, 1 of 2 checks passed; draining"
            )
        );
    }

    #[test]
    fn health_report_has_one_line_per_node_out_of_service() {
        let health = health();
        for _ in 0..FALL {
            health.report_failure(0, 1, "status 503");
        }
        health.set_draining(1, 0, true);
        let lines = health.report();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("node http://10.0.0.2:9980/ (collabora): down since "),
            "{lines:?}"
        );
        assert!(
            lines[0].ends_with("Z after 3 failures: status 503"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("node http://10.0.1.1/onlyoffice/ (onlyoffice): draining since "),
            "{lines:?}"
        );
    }

    #[test]
    fn nodes_snapshot_follows_settings_order() {
        let health = health();
        health.report_failure(0, 0, "connection reset");
        let nodes = health.nodes();
        let names: Vec<_> = nodes
            .iter()
            .map(|n| (n.pool.as_str(), n.suite, n.node.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("collabora", "collabora", "http://10.0.0.1:9980/"),
                ("collabora", "collabora", "http://10.0.0.2:9980/"),
                ("onlyoffice", "onlyoffice", "http://10.0.1.1/onlyoffice/"),
            ]
        );
        assert_eq!(nodes[0].consecutive_failures, 1);
        assert_eq!(nodes[0].last_error.as_deref(), Some("connection reset"));
        assert!(nodes[0].healthy && !nodes[0].draining);
        assert!(nodes[1].since_unix > 1_600_000_000);
        let json = serde_json::to_value(&nodes[0]).expect("serialises");
        assert_eq!(json["consecutive_failures"], 1);
    }

    #[test]
    fn long_reasons_are_cut() {
        let long = "é".repeat(MAX_REASON_CHARS + 10);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS + 3);
        assert!(cut.ends_with("..."));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn clock_is_utc_with_a_date_once_a_day_old() {
        let now = 1_700_000_000;
        assert_eq!(clock(now, now), "22:13:20Z");
        assert_eq!(clock(now - 86_399, now), "22:13:21Z");
        assert_eq!(clock(now - 86_400, now), "2023-11-13T22:13:20Z");
        assert_eq!(clock(0, now), "1970-01-01T00:00:00Z");
    }

    // Real sockets from here on.

    fn client() -> UpstreamClient {
        crate::upstream::client(&UpstreamConfig {
            ca_file: None,
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(5),
            websocket_idle_timeout: Duration::from_secs(60),
        })
        .expect("client")
    }

    /// A loopback HTTP server answering every request with `status`, recording paths.
    struct TestNode {
        addr: SocketAddr,
        paths: Arc<Mutex<Vec<String>>>,
        task: JoinHandle<()>,
    }

    impl TestNode {
        /// Binds `addr` (port 0 for any) with `SO_REUSEADDR`, so a stopped node can come
        /// back on its port.
        fn start(addr: SocketAddr, status: StatusCode) -> Self {
            let socket = TcpSocket::new_v4().expect("socket");
            socket.set_reuseaddr(true).expect("SO_REUSEADDR");
            socket.bind(addr).expect("bind");
            let listener = socket.listen(64).expect("listen");
            let addr = listener.local_addr().expect("address");
            let paths = Arc::new(Mutex::new(Vec::new()));
            let seen = paths.clone();
            let task = tokio::spawn(async move {
                // Dropped with the task on `stop`, which aborts every connection.
                let mut connections = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    let seen = seen.clone();
                    let service = service_fn(move |req: Request<Incoming>| {
                        seen.lock()
                            .expect("paths")
                            .push(req.uri().path().to_owned());
                        let mut response = Response::new(Full::new(Bytes::from_static(b"true")));
                        *response.status_mut() = status;
                        async move { Ok::<_, Infallible>(response) }
                    });
                    connections.spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service),
                    );
                }
            });
            Self { addr, paths, task }
        }

        fn url(&self) -> String {
            format!("http://{}/", self.addr)
        }

        /// Stops accepting and closes every connection, as a crashed editor would.
        async fn stop(self) -> SocketAddr {
            self.task.abort();
            let _ = self.task.await;
            self.addr
        }
    }

    /// A node that accepts connections and never answers.
    async fn hung_node() -> (String, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let mut held: Vec<TcpStream> = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn checks_mark_a_stopped_node_down_and_a_restarted_one_up() {
        let node = TestNode::start(([127, 0, 0, 1], 0).into(), StatusCode::OK);
        let pools = [pool("collabora", SuiteKind::Collabora, &[&node.url()])];
        let health = Health::new(&pools, &settings(2, 2, Duration::from_secs(2)));
        let client = client();
        let mut changes = health.subscribe();

        health.check_all(&client).await;
        assert!(health.is_healthy(0, 0));
        assert!(!changes.has_changed().expect("sender alive"));
        assert_eq!(
            *node.paths.lock().expect("paths"),
            ["/hosting/capabilities"]
        );

        let addr = node.stop().await;
        health.check_all(&client).await;
        assert!(health.is_healthy(0, 0), "one failure of two");
        health.check_all(&client).await;
        assert!(!health.is_healthy(0, 0), "{:?}", health.nodes());
        assert_eq!(*changes.borrow_and_update(), 1);
        let status = &health.nodes()[0];
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("request failed")),
            "{status:?}"
        );
        assert_eq!(health.report().len(), 1);

        let node = TestNode::start(addr, StatusCode::OK);
        health.check_all(&client).await;
        assert!(!health.is_healthy(0, 0), "one passed check of two");
        health.check_all(&client).await;
        assert!(health.is_healthy(0, 0), "{:?}", health.nodes());
        assert_eq!(*changes.borrow_and_update(), 2);
        assert!(health.report().is_empty());
        assert_eq!(node.paths.lock().expect("paths").len(), 2);
        node.stop().await;
    }

    #[tokio::test]
    async fn onlyoffice_is_asked_for_healthcheck_and_a_5xx_fails() {
        let good = TestNode::start(([127, 0, 0, 1], 0).into(), StatusCode::OK);
        let sick = TestNode::start(([127, 0, 0, 1], 0).into(), StatusCode::SERVICE_UNAVAILABLE);
        let pools = [pool(
            "onlyoffice",
            SuiteKind::OnlyOffice,
            &[&good.url(), &sick.url()],
        )];
        let health = Health::new(&pools, &settings(1, 1, Duration::from_secs(2)));
        health.check_all(&client()).await;
        assert!(health.is_healthy(0, 0));
        assert!(!health.is_healthy(0, 1));
        assert_eq!(*good.paths.lock().expect("paths"), ["/healthcheck"]);
        assert_eq!(
            health.nodes()[1].last_error.as_deref(),
            Some("status 503 Service Unavailable")
        );
        good.stop().await;
        sick.stop().await;
    }

    #[tokio::test]
    async fn a_node_that_never_answers_times_out_without_delaying_others() {
        let timeout = Duration::from_millis(400);
        let mut hung = Vec::new();
        for _ in 0..3 {
            hung.push(hung_node().await);
        }
        let good = TestNode::start(([127, 0, 0, 1], 0).into(), StatusCode::OK);
        let hung_urls: Vec<&str> = hung.iter().map(|(url, _)| url.as_str()).collect();
        let good_url = good.url();
        let pools = [
            pool("collabora", SuiteKind::Collabora, &hung_urls),
            pool("onlyoffice", SuiteKind::OnlyOffice, &[&good_url]),
        ];
        let health = Health::new(&pools, &settings(1, 1, timeout));
        let started = Instant::now();
        health.check_all(&client()).await;
        let took = started.elapsed();
        assert!(took >= timeout, "{took:?}");
        assert!(
            took < timeout * 2,
            "three hung nodes are checked at once, not one after another: {took:?}"
        );
        for node in 0..3 {
            assert!(!health.is_healthy(0, node));
        }
        assert!(health.is_healthy(1, 0));
        assert_eq!(
            health.nodes()[0].last_error.as_deref(),
            Some("no complete answer within 400ms")
        );
        for (_, task) in hung {
            task.abort();
        }
        good.stop().await;
    }

    #[tokio::test]
    async fn run_checks_every_interval_until_shutdown() {
        let node = TestNode::start(([127, 0, 0, 1], 0).into(), StatusCode::OK);
        let pools = [pool("collabora", SuiteKind::Collabora, &[&node.url()])];
        let health = Health::new(&pools, &settings(2, 1, Duration::from_secs(1)));
        let mut changes = health.subscribe();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(health.clone().run(client(), async {
            let _ = stopped.await;
        }));
        node.stop().await;
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .expect("marked down within a few intervals")
            .expect("sender alive");
        assert!(!health.is_healthy(0, 0));
        stop.send(()).expect("run is waiting");
        tokio::time::timeout(Duration::from_secs(2), running)
            .await
            .expect("run returns on shutdown")
            .expect("run does not panic");
    }
}
