//! The live discovery catalog: fetches every pool, keeps the last good answer, merges.
//!
//! A refresh asks every node of every pool at once (each bounded by a deadline and a body
//! cap). The first node in settings order that gives a valid discovery speaks for its pool;
//! nodes that disagree (a rolling upgrade) are logged. A pool whose nodes all fail keeps its
//! last good discovery, from memory or from the state dir. The merged document and
//! capabilities are rendered once per refresh and swapped in atomically, so serving them
//! costs one pointer load.
//!
//! Every fetch carries the forwarding headers the proxy sends, and each node's answer is
//! checked for the origin it announces ([`super::announced`]): a node that
//! names another origin than `public_url` is listed in the readiness detail and logged once per
//! change (not per refresh).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::future::join_all;
use http::HeaderMap;
use serde_json::{Map, Value};
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};
use url::Url;

use super::announced::{self, Misconfig};
use super::capabilities;
use super::document::{Discovery, ParseError, ProofKeyPair};
use super::fetch::{self, FetchError};
use super::last_good::{self, SavedPool};
use super::merge::{self, Merged, PoolDiscovery};
use crate::config::{Config, DiscoveryConfig, PoolConfig, SuiteKind};
use crate::rules::watch::RulesStore;
use crate::topology::{Membership, TopologyStore};
use crate::upstream::UpstreamClient;

/// Shortest gap between two refreshes asked for by requests (not by the timer), so a
/// burst of requests during an editor outage does not become a burst of fetches.
const MIN_ON_DEMAND_GAP: Duration = Duration::from_secs(2);

/// A pool's discovery as currently served.
#[derive(Debug)]
pub struct PoolSource {
    /// Node that served it.
    pub node: Url,
    /// The parsed document.
    pub discovery: Discovery,
    /// The document as served, for the state dir.
    pub raw: String,
    /// The node's capabilities object, if valid.
    pub capabilities: Option<Map<String, Value>>,
    /// When it was fetched.
    pub fetched_at: SystemTime,
    /// Loaded from the state dir rather than fetched by this process.
    pub from_disk: bool,
    /// The asset versions the node serves, read once here rather than per asset request.
    pub assets: ServedAssets,
}

/// What tells which static assets a node serves: Collabora puts its version hash in every
/// `urlsrc` path (`/browser/<hash>/`), OnlyOffice names its `productVersion` in the
/// capabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServedAssets {
    /// Every distinct path segment of the discovery's `urlsrc`s (a handful), sorted.
    pub urlsrc_segments: Vec<Box<str>>,
    /// The capabilities' `productVersion`, if any.
    pub product_version: Option<String>,
}

impl ServedAssets {
    /// Reads them from a node's discovery and capabilities.
    pub fn of(discovery: &Discovery, capabilities: Option<&Map<String, Value>>) -> ServedAssets {
        let mut urlsrc_segments: Vec<Box<str>> = discovery
            .apps
            .iter()
            .flat_map(|a| &a.actions)
            .filter_map(|a| Url::parse(&a.urlsrc).ok())
            .flat_map(|u| {
                u.path()
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(Box::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        urlsrc_segments.sort_unstable();
        urlsrc_segments.dedup();
        let product_version = capabilities
            .and_then(|c| c.get("productVersion"))
            .and_then(Value::as_str)
            .map(str::to_string);
        ServedAssets {
            urlsrc_segments,
            product_version,
        }
    }
}

/// One configured pool and what officeswitch knows of it.
#[derive(Debug, Clone)]
pub struct PoolState {
    /// Pool name.
    pub name: String,
    /// Suite of the pool.
    pub kind: SuiteKind,
    /// The discovery served for it, if any was ever obtained.
    pub source: Option<Arc<PoolSource>>,
    /// Each configured node's last good answer, in settings order (for per-node asset
    /// versions and `urlsrc`s).
    pub nodes: Vec<Option<Arc<PoolSource>>>,
    /// Why the last refresh got nothing from it, if it did not.
    pub last_error: Option<String>,
}

/// Everything `/hosting/*` and readiness need, swapped as one value.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Every configured pool, in settings order.
    pub pools: Vec<PoolState>,
    /// The merged document and its owners; `None` while no pool has a discovery.
    pub merged: Option<Merged>,
    /// `merged` rendered as XML.
    pub discovery_xml: Option<Bytes>,
    /// Merged capabilities rendered as JSON; `None` while no pool has capabilities.
    pub capabilities_json: Option<Bytes>,
    /// Nodes whose last good discovery announces another origin than `public_url`, in
    /// settings order: editing breaks for every document they take.
    pub announced: Vec<NodeMisconfig>,
}

/// A node that announces the wrong origin ([`announced::announced_origin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMisconfig {
    /// Its pool.
    pub pool: String,
    /// The node, as configured.
    pub node: Url,
    /// What it announced and the setting to change.
    pub misconfig: Misconfig,
}

impl Catalog {
    /// Whether every pool has a discovery (live or last good).
    pub fn is_complete(&self) -> bool {
        self.pools.iter().all(|p| p.source.is_some())
    }

    /// One line per pool saying what is served for it and why, then one per node that
    /// announces the wrong origin, for the readiness detail.
    pub fn report(&self) -> Vec<String> {
        let misconfigured = self.announced.iter().map(|m| {
            format!(
                "pool {} node {}: misconfigured: {}",
                m.pool, m.node, m.misconfig
            )
        });
        self.pools
            .iter()
            .map(|p| {
                let head = format!("pool {} ({})", p.name, p.kind.as_str());
                match (&p.source, &p.last_error) {
                    (None, None) => format!("{head}: no discovery: not fetched yet"),
                    (None, Some(e)) => format!("{head}: no discovery: {e}"),
                    (Some(s), None) if s.from_disk => {
                        format!("{head}: ok, last good discovery of {} from the state dir", s.node)
                    }
                    (Some(s), None) => format!("{head}: ok, discovery of {}", s.node),
                    (Some(s), Some(e)) => format!(
                        "{head}: degraded, serving the last good discovery of {}; last refresh failed: {e}",
                        s.node
                    ),
                }
            })
            .chain(misconfigured)
            .collect()
    }
}

/// Fetches, keeps and merges the pools' discoveries.
pub struct DiscoveryService {
    /// The pools and nodes to fetch from (nodes join and leave while it runs).
    topology: Arc<TopologyStore>,
    public_url: Url,
    state_dir: PathBuf,
    settings: DiscoveryConfig,
    rules: Arc<RulesStore>,
    keys: ProofKeyPair,
    client: UpstreamClient,
    /// The forwarding headers every fetch carries ([`announced::forwarding_headers`]).
    forwarding: HeaderMap,
    catalog: ArcSwap<Catalog>,
    wake: Notify,
    generation: watch::Sender<u64>,
    /// Serialises [`DiscoveryService::publish`] between refreshes and rules reloads.
    publishing: std::sync::Mutex<()>,
    /// Fetches of each pool's nodes so far, in settings order (for metrics).
    fetches: Vec<FetchCounts>,
}

/// How one pool's discovery fetches went.
#[derive(Debug, Default)]
struct FetchCounts {
    /// A node gave a valid discovery.
    ok: AtomicU64,
    /// A node failed to (refused, timed out, bad status, invalid document).
    error: AtomicU64,
}

impl DiscoveryService {
    /// A service with an empty catalog; call [`DiscoveryService::load_last_good`] and
    /// [`DiscoveryService::run`] next.
    pub fn new(
        config: &Config,
        topology: Arc<TopologyStore>,
        rules: Arc<RulesStore>,
        keys: ProofKeyPair,
        client: UpstreamClient,
    ) -> Arc<Self> {
        let pools: Vec<PoolState> = config
            .pools
            .iter()
            .map(|p| PoolState {
                name: p.name.clone(),
                kind: p.kind,
                source: None,
                nodes: vec![None; p.nodes.len()],
                last_error: None,
            })
            .collect();
        let service = DiscoveryService {
            topology,
            public_url: config.public_url.clone(),
            state_dir: config.state_dir.clone(),
            settings: config.discovery.clone(),
            rules,
            keys,
            client,
            forwarding: announced::forwarding_headers(&config.public_url),
            catalog: ArcSwap::from_pointee(Catalog::default()),
            wake: Notify::new(),
            generation: watch::Sender::new(0),
            publishing: std::sync::Mutex::new(()),
            fetches: config
                .pools
                .iter()
                .map(|_| FetchCounts::default())
                .collect(),
        };
        service.publish(pools, Vec::new());
        Arc::new(service)
    }

    /// The catalog as of the last refresh.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    /// The catalog, after a prompt refresh if some pool has no discovery yet (bounded by
    /// the fetch timeout): a Nextcloud asking right after an editor came up gets it.
    pub async fn catalog_fresh_if_incomplete(&self) -> Arc<Catalog> {
        let catalog = self.catalog();
        if catalog.is_complete() {
            return catalog;
        }
        let mut generation = self.generation.subscribe();
        generation.mark_unchanged();
        self.wake.notify_one();
        let wait = self.settings.fetch_timeout + Duration::from_millis(500);
        // Timing out is fine: the caller serves what there is.
        let _ = tokio::time::timeout(wait, generation.changed()).await;
        self.catalog()
    }

    /// Discovery fetches so far, per pool in settings order: (pool, valid answers,
    /// failures). Each node asked in a refresh counts once.
    pub fn fetches(&self) -> Vec<(String, u64, u64)> {
        let topology = self.topology.current();
        topology
            .pools()
            .iter()
            .zip(&self.fetches)
            .map(|(pool, counts)| {
                (
                    pool.name.clone(),
                    counts.ok.load(Ordering::Relaxed),
                    counts.error.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Asks the background loop for a refresh now (SIGHUP, admin).
    pub fn request_refresh(&self) {
        self.wake.notify_one();
    }

    /// Seeds the catalog from the state dir, so a restart during an editor outage still
    /// serves the last good discovery.
    pub async fn load_last_good(&self) {
        let mut pools = self.catalog().pools.clone();
        for pool in &mut pools {
            match last_good::load(&self.state_dir, &pool.name).await {
                Ok(None) => {}
                Ok(Some(saved)) => match source_from_saved(saved) {
                    Ok(source) => {
                        info!(pool = %pool.name, node = %source.node, "loaded last good discovery from the state dir");
                        pool.source = Some(Arc::new(source));
                    }
                    Err(e) => warn!(pool = %pool.name, error = %e, "ignoring saved discovery"),
                },
                Err(e) => warn!(pool = %pool.name, error = %e, "ignoring saved discovery"),
            }
        }
        self.publish(pools, self.catalog().announced.clone());
    }

    /// Refreshes now, then every `refresh` period or when woken, until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut topology = self.topology.subscribe();
        loop {
            let started = tokio::time::Instant::now();
            self.refresh().await;
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep_until(started + self.settings.refresh) => {}
                // Nodes that join serve their own asset versions and urlsrcs: ask them now.
                Ok(()) = topology.changed() => {}
                () = self.wake.notified() => {
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep_until(started + MIN_ON_DEMAND_GAP) => {}
                    }
                }
            }
        }
    }

    /// Re-merges with the new rules after every successful rules reload (ownership of
    /// formats may have changed), until `shutdown` resolves.
    pub async fn follow_rules(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut generation = self.rules.subscribe();
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                changed = generation.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.republish();
                }
            }
        }
    }

    /// One round: fetch every pool, keep what is good, publish the merge.
    pub async fn refresh(&self) {
        let previous = self.catalog();
        let topology = self.topology.current();
        let rounds = topology
            .pools()
            .iter()
            .enumerate()
            .zip(previous.pools.iter())
            .zip(&self.fetches)
            .map(|(((p, config), state), counts)| {
                let topology = &topology;
                let asked = move |n: usize| topology.membership(p, n) != Membership::Gone;
                self.refresh_pool(config, asked, state, counts)
            });
        let (pools, checks): (Vec<PoolState>, Vec<Vec<NodeCheck>>) =
            join_all(rounds).await.into_iter().unzip();
        let announced = self.track_announced(topology.pools(), &previous.announced, checks);
        self.publish(pools, announced);
        self.generation.send_modify(|g| *g += 1);
    }

    /// The misconfigured nodes after this round's `checks` (per pool, nodes that answered),
    /// logging each node whose state changed, once: a warning when it starts (or changes
    /// what it) announces wrong, an info line when it is fixed. Nodes that did not answer
    /// keep their previous state.
    fn track_announced(
        &self,
        pools: &[PoolConfig],
        previous: &[NodeMisconfig],
        checks: Vec<Vec<NodeCheck>>,
    ) -> Vec<NodeMisconfig> {
        let mut out = Vec::new();
        for (config, checks) in pools.iter().zip(checks) {
            for node in &config.nodes {
                let before = previous
                    .iter()
                    .find(|m| m.pool == config.name && &m.node == node);
                let Some((_, now)) = checks.iter().find(|(n, _)| n == node) else {
                    out.extend(before.cloned());
                    continue;
                };
                match (before, now) {
                    (Some(b), Some(now)) if &b.misconfig == now => {}
                    (_, Some(now)) => warn!(
                        pool = %config.name, node = %node, announced = %now.announced.join(", "),
                        expected = %now.expected, fix = %now.fix,
                        "node announces another origin than public_url: editing breaks for its documents"
                    ),
                    (Some(_), None) => info!(
                        pool = %config.name, node = %node,
                        "node now announces public_url"
                    ),
                    (None, None) => {}
                }
                if let Some(misconfig) = now {
                    out.push(NodeMisconfig {
                        pool: config.name.clone(),
                        node: node.clone(),
                        misconfig: misconfig.clone(),
                    });
                }
            }
        }
        out
    }

    /// One pool's round: asks each node for which `asked(index)` holds (nodes gone from
    /// the topology are not).
    async fn refresh_pool(
        &self,
        config: &PoolConfig,
        asked: impl Fn(usize) -> bool,
        state: &PoolState,
        counts: &FetchCounts,
    ) -> (PoolState, Vec<NodeCheck>) {
        let members: Vec<(usize, &Url)> = config
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| asked(*i))
            .collect();
        let answers = join_all(members.iter().map(|(_, n)| self.fetch_node(n))).await;
        let mut failures = Vec::new();
        let mut good: Vec<(usize, NodeAnswer)> = Vec::new();
        for ((i, node), answer) in members.into_iter().zip(answers) {
            match answer {
                Ok(answer) => {
                    counts.ok.fetch_add(1, Ordering::Relaxed);
                    good.push((i, answer));
                }
                Err(e) => {
                    counts.error.fetch_add(1, Ordering::Relaxed);
                    failures.push(format!("{node}: {e}"));
                }
            }
        }
        if good.is_empty() {
            let summary = failures.join("; ");
            match &state.source {
                Some(last) => error!(
                    pool = %config.name, errors = %summary, last_good_node = %last.node,
                    "no node answered discovery; serving the last good one"
                ),
                None => error!(
                    pool = %config.name, errors = %summary,
                    "no node answered discovery and none was ever obtained; pool left out of discovery"
                ),
            }
            let state = PoolState {
                last_error: Some(summary),
                ..state.clone()
            };
            return (state, Vec::new());
        }
        for failure in &failures {
            warn!(pool = %config.name, error = %failure, "discovery fetch failed on a node; using another node");
        }
        log_disagreement(&config.name, good.iter().map(|(_, a)| &a.source));
        let checks: Vec<NodeCheck> = good
            .iter()
            .map(|(_, a)| {
                let check =
                    announced::announced_origin(config.kind, &a.source.discovery, &self.public_url);
                (a.source.node.clone(), check.err())
            })
            .collect();
        if let Some((_, first)) = good.first()
            && let Some(e) = &first.capabilities_error
        {
            warn!(pool = %config.name, node = %first.source.node, error = %e,
                "capabilities unusable; keeping the last good capabilities of this pool");
        }
        // Nodes that failed this round keep what they last served (their asset version).
        let mut nodes = state.nodes.clone();
        nodes.resize(config.nodes.len(), None);
        let mut chosen = None;
        for (i, answer) in good {
            let mut source = answer.source;
            if source.capabilities.is_none()
                && let Some(last) = nodes[i].as_ref().or(state.source.as_ref())
            {
                source.capabilities.clone_from(&last.capabilities);
            }
            let source = Arc::new(source);
            chosen.get_or_insert_with(|| source.clone());
            nodes[i] = Some(source);
        }
        let Some(chosen) = chosen else {
            return (state.clone(), checks);
        };
        let changed = state.source.as_ref().is_none_or(|last| {
            last.from_disk || last.raw != chosen.raw || last.capabilities != chosen.capabilities
        });
        if changed {
            info!(pool = %config.name, node = %chosen.node, apps = chosen.discovery.apps.len(), "discovery updated");
            self.save(&config.name, &chosen).await;
        }
        let state = PoolState {
            source: Some(chosen),
            nodes,
            last_error: None,
            ..state.clone()
        };
        (state, checks)
    }

    /// Fetches and parses one node's discovery and capabilities. A node whose discovery
    /// fails is an error; its capabilities failing is reported alongside, so the caller
    /// logs it once and only for the node it uses.
    async fn fetch_node(&self, node: &Url) -> Result<NodeAnswer, String> {
        let (timeout, cap) = (self.settings.fetch_timeout, self.settings.max_body_bytes);
        let capabilities_url = node
            .join("hosting/capabilities")
            .map_err(|e| e.to_string())?;
        let (discovery, capabilities) = tokio::join!(
            fetch_discovery(&self.client, node, &self.forwarding, &self.settings),
            fetch::get_with_headers(
                &self.client,
                &capabilities_url,
                &self.forwarding,
                timeout,
                cap
            ),
        );
        let NodeDiscovery {
            raw,
            discovery: parsed,
        } = discovery.map_err(|e| e.to_string())?;
        let capabilities = capabilities.map_err(|e| e.to_string()).and_then(|body| {
            serde_json::from_slice::<Map<String, Value>>(&body)
                .map_err(|e| format!("not a JSON object: {e}"))
        });
        let (capabilities, capabilities_error) = match capabilities {
            Ok(map) => (Some(map), None),
            Err(e) => (None, Some(e)),
        };
        Ok(NodeAnswer {
            source: PoolSource {
                node: node.clone(),
                assets: ServedAssets::of(&parsed, capabilities.as_ref()),
                discovery: parsed,
                raw,
                capabilities,
                fetched_at: SystemTime::now(),
                from_disk: false,
            },
            capabilities_error,
        })
    }

    async fn save(&self, pool: &str, source: &PoolSource) {
        let saved = SavedPool {
            node: source.node.to_string(),
            fetched_at_unix: source
                .fetched_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            discovery: source.raw.clone(),
            capabilities: source.capabilities.clone(),
        };
        if let Err(e) = last_good::save(&self.state_dir, pool, &saved).await {
            warn!(pool, dir = %last_good::dir(&self.state_dir).display(), error = %e,
                "cannot save last good discovery; a restart during an editor outage will not have it");
        }
    }

    /// Merges the pools' discoveries and capabilities and swaps the result in.
    fn publish(&self, pools: Vec<PoolState>, announced: Vec<NodeMisconfig>) {
        let _one_at_a_time = self.lock_publishing();
        self.publish_locked(pools, announced);
    }

    /// Merges the current pools again (after a rules change).
    fn republish(&self) {
        let _one_at_a_time = self.lock_publishing();
        let catalog = self.catalog();
        self.publish_locked(catalog.pools.clone(), catalog.announced.clone());
    }

    fn lock_publishing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.publishing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish_locked(&self, pools: Vec<PoolState>, announced: Vec<NodeMisconfig>) {
        let rules = self.rules.current();
        let with_source: Vec<(&PoolState, &PoolSource)> = pools
            .iter()
            .filter_map(|p| p.source.as_deref().map(|s| (p, s)))
            .collect();
        let merged = (!with_source.is_empty()).then(|| {
            let inputs: Vec<PoolDiscovery<'_>> = with_source
                .iter()
                .map(|(p, s)| PoolDiscovery {
                    pool: &p.name,
                    node: &s.node,
                    discovery: &s.discovery,
                })
                .collect();
            merge::merge(&inputs, &rules, &self.public_url, &self.keys)
        });
        let discovery_xml = merged.as_ref().map(|m| Bytes::from(m.discovery.to_xml()));
        let caps: Vec<(SuiteKind, &Map<String, Value>)> = rules
            .preference()
            .iter()
            .filter_map(|name| with_source.iter().find(|(p, _)| &p.name == name))
            .filter_map(|(p, s)| s.capabilities.as_ref().map(|c| (p.kind, c)))
            .collect();
        let capabilities_json = capabilities::merge(&caps)
            .and_then(|m| serde_json::to_vec(&m).ok())
            .map(Bytes::from);
        self.catalog.store(Arc::new(Catalog {
            pools,
            merged,
            discovery_xml,
            capabilities_json,
            announced,
        }));
    }
}

/// A node that answered this round, and what it announces wrong (`None`: `public_url`).
type NodeCheck = (Url, Option<Misconfig>);

/// One node's discovery: the body as served and the parsed document.
#[derive(Debug)]
pub struct NodeDiscovery {
    /// The document as served.
    pub raw: String,
    /// The parsed document.
    pub discovery: Discovery,
}

/// Why a node gave no usable discovery; the cases tell `officeswitch doctor` which fix
/// to print (a 404 from ONLYOFFICE means WOPI is off).
#[derive(Debug, thiserror::Error)]
pub enum NodeDiscoveryError {
    /// The node's URL cannot name `hosting/discovery` below it.
    #[error("discovery URL: {0}")]
    Url(String),
    /// No complete 2xx answer: refused, timed out, bad status, too large.
    #[error("discovery: {0}")]
    Fetch(FetchError),
    /// The body is not text.
    #[error("discovery: body is not UTF-8")]
    NotUtf8,
    /// The body is not a usable discovery document.
    #[error("discovery rejected: {0}")]
    Invalid(ParseError),
}

/// Fetches and parses `node`'s `/hosting/discovery` as the service does: with the
/// forwarding headers of `public_url` ([`announced::forwarding_headers`]), bounded by
/// `settings`. Shared with `officeswitch doctor`, so both see the same answer.
///
/// # Errors
/// [`NodeDiscoveryError`] for every way the node fails to give a usable document.
pub async fn fetch_discovery(
    client: &UpstreamClient,
    node: &Url,
    forwarding: &HeaderMap,
    settings: &DiscoveryConfig,
) -> Result<NodeDiscovery, NodeDiscoveryError> {
    let url = node
        .join("hosting/discovery")
        .map_err(|e| NodeDiscoveryError::Url(e.to_string()))?;
    let body = fetch::get_with_headers(
        client,
        &url,
        forwarding,
        settings.fetch_timeout,
        settings.max_body_bytes,
    )
    .await
    .map_err(NodeDiscoveryError::Fetch)?;
    let raw = String::from_utf8(body.to_vec()).map_err(|_| NodeDiscoveryError::NotUtf8)?;
    let discovery = Discovery::parse(raw.as_bytes()).map_err(NodeDiscoveryError::Invalid)?;
    Ok(NodeDiscovery { raw, discovery })
}

/// One node's good discovery, and why its capabilities are missing if they are.
struct NodeAnswer {
    source: PoolSource,
    capabilities_error: Option<String>,
}

/// Rebuilds a pool source from its saved form.
fn source_from_saved(saved: SavedPool) -> Result<PoolSource, String> {
    let node = Url::parse(&saved.node).map_err(|e| format!("saved node URL: {e}"))?;
    let discovery = Discovery::parse(saved.discovery.as_bytes()).map_err(|e| e.to_string())?;
    Ok(PoolSource {
        node,
        assets: ServedAssets::of(&discovery, saved.capabilities.as_ref()),
        discovery,
        raw: saved.discovery,
        capabilities: saved.capabilities,
        fetched_at: UNIX_EPOCH + Duration::from_secs(saved.fetched_at_unix),
        from_disk: true,
    })
}

/// Logs when nodes of one pool serve different discoveries (formats, actions, asset
/// version or proof key): expected during a rolling upgrade, a misconfiguration otherwise.
fn log_disagreement<'a>(pool: &str, mut answers: impl Iterator<Item = &'a PoolSource>) {
    let Some(first) = answers.next() else {
        return;
    };
    let reference = fingerprint(&first.discovery);
    for other in answers {
        if fingerprint(&other.discovery) != reference {
            warn!(pool, node = %first.node, other_node = %other.node,
                "nodes of one pool serve different discoveries (rolling upgrade?); using the first node's");
        }
    }
}

/// What must agree between nodes of a pool: every (app, action, ext, URL path), and the key.
type Fingerprint = (
    BTreeSet<(String, String, String, String)>,
    Option<ProofKeyPair>,
);

fn fingerprint(d: &Discovery) -> Fingerprint {
    let actions = d
        .apps
        .iter()
        .flat_map(|app| {
            app.actions.iter().map(move |a| {
                let path = Url::parse(&a.urlsrc)
                    .map(|u| u.path().to_string())
                    .unwrap_or_default();
                (app.name.clone(), a.name.clone(), a.ext.clone(), path)
            })
        })
        .collect();
    (actions, d.proof_key.clone())
}
