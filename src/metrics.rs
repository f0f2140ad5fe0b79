//! Prometheus metrics, served at `GET /metrics` on the admin listener.
//!
//! Counters and histograms that requests move live in one process-wide [`Metrics`]
//! (Prometheus describes a process; one registry keeps every call site a one-liner).
//! Values that are state rather than events (node health, pins, discovery age and
//! fetches, rules reloads, pin store errors) are kept by the component that owns them and
//! read when scraped ([`Scrape::render`]), so they can never drift from what `/readyz`
//! says.
//!
//! Every family writes its `# HELP` and `# TYPE` lines on every scrape, even before its
//! first sample: dashboards, alert rules and the packaging lint take the exported names
//! from a fresh instance. The exposition is OpenMetrics text, so a counter's `# TYPE`
//! line names it without its `_total` suffix (`# TYPE officeswitch_requests counter`,
//! samples `officeswitch_requests_total{...}`).

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::cache::AssetCache;
use crate::discovery::DiscoveryService;
use crate::rules::watch::RulesStore;
use crate::sticky::pins::Stickiness;
use crate::sticky::store::Pin;

/// Prefix of every exported name.
const PREFIX: &str = "officeswitch";

/// Time a scrape gives the pin store to count pins; past it the `pins` samples are left
/// out (a scrape must answer within Prometheus' scrape timeout, 10 s by default).
const PIN_COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    class: &'static str,
    pool: String,
    node: String,
    status: u16,
}

/// A request class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

/// A pool.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    pool: String,
}

/// A node of a pool.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    pool: String,
    node: String,
}

/// Which way WebSocket bytes went.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    pool: String,
    direction: &'static str,
}

/// Why a WOPI call was refused: which check, and its reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    check: &'static str,
    reason: &'static str,
}

/// The running version.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// How an attempt ended (`ok`, `error`, `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// A pool and how an attempt ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolResultLabels {
    pool: String,
    result: &'static str,
}

/// A pin store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

/// A metric whose `# HELP`/`# TYPE` lines are written even while it has no sample:
/// prometheus-client leaves empty families out of the exposition.
#[derive(Debug)]
struct Described<M>(M);

impl<M: EncodeMetric> EncodeMetric for Described<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// Registers `metric` so that it is always described.
fn register(registry: &mut Registry, name: &str, help: &str, metric: impl Metric) {
    registry.register(name, help, Described(metric));
}

/// The process-wide event metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<ClassLabel, Histogram, fn() -> Histogram>,
    response_bytes: Family<ClassLabel, Counter>,
    request_bytes: Family<ClassLabel, Counter>,
    websockets: Family<NodeLabels, Gauge>,
    websocket_bytes: Family<DirectionLabels, Counter>,
    rejections: Family<ReasonLabel, Counter>,
    retries: Counter,
    host_retries: Counter,
    connections_open: Gauge,
    connections_refused: Family<RefusalLabel, Counter>,
    conflict_copies: Counter,
    shutting_down: Gauge,
    /// The per-class series, resolved once per class (there are a dozen classes).
    classes: Resolved<&'static str, ClassSeries>,
}

/// Series kept at hand per [`Resolved`]: more keys than this are resolved each time.
const RESOLVED_MAX: usize = 64;

/// Series resolved once per key and kept at hand: a finished request finds its series by
/// a short scan under a read lock instead of building, hashing and dropping a label set.
/// Past [`RESOLVED_MAX`] keys, a key is resolved each time (the family still counts it).
#[derive(Debug)]
struct Resolved<K, V> {
    entries: RwLock<Vec<(K, V)>>,
}

impl<K, V> Default for Resolved<K, V> {
    fn default() -> Self {
        Resolved {
            entries: RwLock::default(),
        }
    }
}

impl<K: Copy + PartialEq, V> Resolved<K, V> {
    /// Runs `use_series` on the series of `key`, resolved by `resolve` the first time.
    fn with(&self, key: K, resolve: impl FnOnce() -> V, use_series: impl FnOnce(&V)) {
        let known = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, series)) = known.iter().find(|(k, _)| *k == key) {
            return use_series(series);
        }
        drop(known);
        let series = resolve();
        use_series(&series);
        let mut known = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if known.len() < RESOLVED_MAX && !known.iter().any(|(k, _)| *k == key) {
            known.push((key, series));
        }
    }
}

/// The `officeswitch_requests` series of one editor node, resolved once per class and
/// status: a finished request counts without building and hashing its labels. The
/// topology keeps one per node.
#[derive(Debug)]
pub struct NodeSeries {
    pool: String,
    node: String,
    requests: Family<RequestLabels, Counter>,
    /// By class and status.
    counters: Resolved<(&'static str, u16), Counter>,
}

impl NodeSeries {
    /// The pool's name.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// The node: its configured base URL.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Counts one request of `class` the node answered with `status`.
    fn count(&self, class: &'static str, status: u16) {
        let resolve = || {
            self.requests.get_or_create_owned(&RequestLabels {
                class,
                pool: self.pool.clone(),
                node: self.node.clone(),
                status,
            })
        };
        self.counters.with((class, status), resolve, |counter| {
            counter.inc();
        });
    }
}

/// The series of one request class.
struct ClassSeries {
    duration: Histogram,
    response_bytes: Counter,
}

/// Why a client connection was closed unserved.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabel {
    reason: &'static str,
}

/// Latency buckets: 1 ms to about 33 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let requests = Family::<RequestLabels, Counter>::default();
        register(
            &mut registry,
            "requests",
            "Requests answered, by class (discovery, open, page, websocket, wopi_file...), \
             pool, node (empty when no editor node was involved) and status",
            requests.clone(),
        );
        let duration: Family<ClassLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        register(
            &mut registry,
            "request_duration_seconds",
            "Time from request to the end of its response (WebSockets: to their close), by class",
            duration.clone(),
        );
        let response_bytes = Family::<ClassLabel, Counter>::default();
        register(
            &mut registry,
            "response_bytes",
            "Body bytes sent to clients (WebSockets: bytes to the client), by class",
            response_bytes.clone(),
        );
        let request_bytes = Family::<ClassLabel, Counter>::default();
        register(
            &mut registry,
            "request_bytes",
            "Body bytes received from clients and passed on (uploads, PutFile), by class, \
             counted as they stream",
            request_bytes.clone(),
        );
        let websockets = Family::<NodeLabels, Gauge>::default();
        register(
            &mut registry,
            "websockets_open",
            "WebSocket tunnels open now, by pool and node",
            websockets.clone(),
        );
        let websocket_bytes = Family::<DirectionLabels, Counter>::default();
        register(
            &mut registry,
            "websocket_bytes",
            "Bytes carried by WebSocket tunnels, by pool and direction (to_client, to_node)",
            websocket_bytes.clone(),
        );
        let rejections = Family::<ReasonLabel, Counter>::default();
        register(
            &mut registry,
            "wopi_rejections",
            "WOPI calls refused before reaching the host, by check (token, proof, rules) and reason",
            rejections.clone(),
        );
        let retries = Counter::default();
        register(
            &mut registry,
            "upstream_retries",
            "Idempotent requests sent again on a fresh connection because a pooled one closed \
             before any response byte (a node closing kept-alive connections)",
            retries.clone(),
        );
        let host_retries = Counter::default();
        register(
            &mut registry,
            "wopi_host_retries",
            "WOPI calls sent to the host again because a connection to it could not be opened \
             (nothing had reached it): calls held through a host restart",
            host_retries.clone(),
        );
        let connections_open = Gauge::default();
        register(
            &mut registry,
            "connections_open",
            "Client connections open now (HTTP/1.1, HTTP/2, WebSockets), all listeners",
            connections_open.clone(),
        );
        let connections_refused = Family::<RefusalLabel, Counter>::default();
        register(
            &mut registry,
            "connections_refused",
            "Client connections closed at once because a limit was reached, by reason \
             (max_connections, max_connections_per_client)",
            connections_refused.clone(),
        );
        let conflict_copies = Counter::default();
        register(
            &mut registry,
            "wopi_conflict_copies",
            "ONLYOFFICE saves of a file that changed in the host meanwhile, stored as a new \
             file (a conflict copy) instead of over the newer one",
            conflict_copies.clone(),
        );
        let shutting_down = Gauge::default();
        register(
            &mut registry,
            "shutting_down",
            "1 while the process drains after SIGTERM",
            shutting_down.clone(),
        );
        let build = Family::<VersionLabel, Gauge>::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        register(
            &mut registry,
            "build_info",
            "Always 1; the version label is the running officeswitch's",
            build,
        );
        Metrics {
            registry,
            requests,
            duration,
            response_bytes,
            request_bytes,
            websockets,
            websocket_bytes,
            rejections,
            retries,
            host_retries,
            connections_open,
            connections_refused,
            conflict_copies,
            shutting_down,
            classes: Resolved::default(),
        }
    }

    /// Records a finished request (the access log line's facts) that no editor node
    /// answered (its `node` label is empty); `pool` is empty when it reached no pool
    /// either.
    pub fn request(
        &self,
        class: &'static str,
        pool: String,
        status: u16,
        bytes: u64,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                class,
                pool,
                node: String::new(),
                status,
            })
            .inc();
        self.observe_class(class, bytes, took);
    }

    /// Records a finished request that an editor node answered, through its node's
    /// pre-resolved series.
    pub fn node_request(
        &self,
        class: &'static str,
        series: &NodeSeries,
        status: u16,
        bytes: u64,
        took: Duration,
    ) {
        series.count(class, status);
        self.observe_class(class, bytes, took);
    }

    /// The `requests` series of `node` (its configured base URL) of `pool`, resolved as
    /// requests end.
    pub fn node_series(&self, pool: &str, node: &str) -> NodeSeries {
        NodeSeries {
            pool: pool.to_owned(),
            node: node.to_owned(),
            requests: self.requests.clone(),
            counters: Resolved::default(),
        }
    }

    /// A finished request's duration and bytes in its class's series.
    fn observe_class(&self, class: &'static str, bytes: u64, took: Duration) {
        let resolve = || {
            let label = ClassLabel { class };
            ClassSeries {
                duration: self.duration.get_or_create_owned(&label),
                response_bytes: self.response_bytes.get_or_create_owned(&label),
            }
        };
        self.classes.with(class, resolve, |series| {
            series.duration.observe(took.as_secs_f64());
            series.response_bytes.inc_by(bytes);
        });
    }

    /// The counter of request body bytes of `class`: resolved once per request, then
    /// moved by each chunk as it streams.
    pub fn request_bytes(&self, class: &'static str) -> Counter {
        self.request_bytes
            .get_or_create(&ClassLabel { class })
            .clone()
    }

    /// A WebSocket tunnel of `pool` to `node` (its configured base URL) opened. The
    /// returned handles count its bytes without a lookup per chunk; dropping them counts
    /// the tunnel as closed.
    pub fn websocket_opened(&self, pool: &str, node: &str) -> WebSocketMetrics {
        let open = self
            .websockets
            .get_or_create(&NodeLabels {
                pool: pool.to_string(),
                node: node.to_string(),
            })
            .clone();
        open.inc();
        let direction = |direction| {
            self.websocket_bytes
                .get_or_create(&DirectionLabels {
                    pool: pool.to_string(),
                    direction,
                })
                .clone()
        };
        WebSocketMetrics {
            to_client: direction("to_client"),
            to_node: direction("to_node"),
            open,
        }
    }

    /// A WOPI call refused by `check` (`token`, `proof`, `rules`) for `reason` (a short
    /// snake_case label).
    pub fn rejection(&self, check: &'static str, reason: &'static str) {
        self.rejections
            .get_or_create(&ReasonLabel { check, reason })
            .inc();
    }

    /// An idempotent request was sent again after its pooled connection closed unanswered.
    pub fn upstream_retry(&self) {
        self.retries.inc();
    }

    /// A WOPI call was sent to the host again because no connection to it opened.
    pub fn host_retry(&self) {
        self.host_retries.inc();
    }

    /// The client connections open now.
    pub fn connections_open(&self) -> &Gauge {
        &self.connections_open
    }

    /// A client connection was closed unserved because the limit `reason` was reached.
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&RefusalLabel { reason })
            .inc();
    }

    /// An out-of-date ONLYOFFICE save was stored as a conflict copy.
    pub fn conflict_copy(&self) {
        self.conflict_copies.inc();
    }

    /// Sets `officeswitch_shutting_down`: 1 from SIGTERM on, while the process drains.
    pub fn shutting_down(&self, on: bool) {
        self.shutting_down.set(i64::from(on));
    }
}

/// One open WebSocket tunnel's metrics: label children resolved once, so counting a
/// chunk is one atomic add. Dropping it counts the tunnel as closed.
#[derive(Debug)]
pub struct WebSocketMetrics {
    open: Gauge,
    to_client: Counter,
    to_node: Counter,
}

impl WebSocketMetrics {
    /// `bytes` went from the node to the client.
    pub fn to_client(&self, bytes: u64) {
        self.to_client.inc_by(bytes);
    }

    /// `bytes` went from the client to the node.
    pub fn to_node(&self, bytes: u64) {
        self.to_node.inc_by(bytes);
    }
}

impl Drop for WebSocketMetrics {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// What a scrape reads besides the event metrics.
pub struct Scrape {
    /// Node health, pins and pin store errors.
    pub sticky: Arc<Stickiness>,
    /// Discoveries and their fetches.
    pub discovery: Arc<DiscoveryService>,
    /// Rules and their reloads.
    pub rules: Arc<RulesStore>,
    /// The asset cache.
    pub cache: Arc<AssetCache>,
}

/// Why an answer was not stored in the asset cache.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheRefusalLabel {
    reason: &'static str,
}

impl Scrape {
    /// The asset cache's figures (this instance's: the cache is the process's own).
    fn cache_state(&self, registry: &mut Registry) {
        let stats = self.cache.stats();
        let counter = |n: u64| {
            let c = Counter::<u64, AtomicU64>::default();
            c.inc_by(n);
            c
        };
        let gauge = |n: u64| {
            let g = Gauge::<i64, AtomicI64>::default();
            g.set(i64::try_from(n).unwrap_or(i64::MAX));
            g
        };
        let lookups = Family::<ResultLabel, Counter>::default();
        lookups
            .get_or_create(&ResultLabel { result: "hit" })
            .inc_by(stats.hits);
        lookups
            .get_or_create(&ResultLabel { result: "miss" })
            .inc_by(stats.misses);
        register(
            registry,
            "asset_cache_lookups",
            "Versioned static asset requests the cache looked up, by result (hit: answered \
             from memory; miss: forwarded to a node)",
            lookups,
        );
        register(
            registry,
            "asset_cache_stores",
            "Node answers stored in the asset cache",
            counter(stats.stored),
        );
        let refused = Family::<CacheRefusalLabel, Counter>::default();
        for (why, n) in &stats.refused {
            refused
                .get_or_create(&CacheRefusalLabel {
                    reason: why.as_str(),
                })
                .inc_by(*n);
        }
        register(
            registry,
            "asset_cache_refusals",
            "Node answers to cacheable requests not stored, by reason (no_store, private, \
             set_cookie, too_large, request_credentials, ...)",
            refused,
        );
        register(
            registry,
            "asset_cache_evictions",
            "Entries evicted from the asset cache to make room",
            counter(stats.evictions),
        );
        register(
            registry,
            "asset_cache_bytes",
            "Bytes the asset cache holds now (bodies, headers, keys)",
            gauge(stats.bytes),
        );
        register(
            registry,
            "asset_cache_entries",
            "Entries the asset cache holds now",
            gauge(stats.entries),
        );
        register(
            registry,
            "asset_cache_capacity_bytes",
            "cache.max_bytes: what the asset cache may hold (0: off)",
            gauge(stats.capacity),
        );
    }

    /// The OpenMetrics text exposition of every metric. Asks the pin store to count pins
    /// (at most 2 s).
    pub async fn render(&self) -> String {
        let pins = self.sticky.count_pins(PIN_COUNT_TIMEOUT).await;
        let state = self.state(pins.as_deref());
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode_registry(&mut out, &global().registry);
        let _ = encode_registry(&mut out, &state);
        let _ = encode_eof(&mut out);
        out
    }

    /// The state metrics as of now, in a registry of their own; `pins` as counted, `None`
    /// when the store did not answer.
    fn state(&self, pins: Option<&[(Pin, u64)]>) -> Registry {
        let mut registry = Registry::with_prefix(PREFIX);
        let health = self.sticky.health();
        let nodes = health.nodes();
        let up = Family::<NodeLabels, Gauge>::default();
        let draining = Family::<NodeLabels, Gauge>::default();
        for n in nodes {
            let labels = NodeLabels {
                pool: n.pool,
                node: n.node,
            };
            up.get_or_create(&labels).set(i64::from(n.healthy));
            draining.get_or_create(&labels).set(i64::from(n.draining));
        }
        register(
            &mut registry,
            "node_up",
            "1 when the node passes its health checks",
            up,
        );
        register(
            &mut registry,
            "node_draining",
            "1 when the node takes no new documents",
            draining,
        );

        let store_up = Gauge::<i64, AtomicI64>::default();
        store_up.set(i64::from(self.sticky.store_reachable()));
        register(
            &mut registry,
            "pin_store_up",
            "1 when the pin store answered its last call",
            store_up,
        );
        let store_errors = Family::<OperationLabel, Counter>::default();
        for (operation, n) in self.sticky.store_errors() {
            store_errors
                .get_or_create(&OperationLabel { operation })
                .inc_by(n);
        }
        register(
            &mut registry,
            "pin_store_errors",
            "Pin store calls that failed or timed out (this instance), by operation",
            store_errors,
        );
        self.cache_state(&mut registry);
        let catalog = self.discovery.catalog();
        let pinned = Family::<PoolLabel, Gauge>::default();
        if let Some(pins) = pins {
            for pool in &catalog.pools {
                let n: u64 = pins
                    .iter()
                    .filter(|(pin, _)| pin.pool == pool.name)
                    .map(|(_, n)| n)
                    .sum();
                pinned
                    .get_or_create(&PoolLabel {
                        pool: pool.name.clone(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        register(
            &mut registry,
            "pins",
            "Documents pinned to a node, by pool, as the pin store counts them \
             (no sample when it did not answer)",
            pinned,
        );
        let repinned = Counter::<u64, AtomicU64>::default();
        repinned.inc_by(self.sticky.repinned());
        register(
            &mut registry,
            "documents_repinned",
            "Documents moved off a node that went down (this instance)",
            repinned,
        );

        let age = Family::<PoolLabel, Gauge<f64, AtomicU64>>::default();
        let now = SystemTime::now();
        for pool in &catalog.pools {
            if let Some(source) = &pool.source {
                let seconds = now
                    .duration_since(source.fetched_at)
                    .map_or(0.0, |d| d.as_secs_f64());
                age.get_or_create(&PoolLabel {
                    pool: pool.name.clone(),
                })
                .set(seconds);
            }
        }
        register(
            &mut registry,
            "discovery_age_seconds",
            "Age of the discovery each pool is served from",
            age,
        );
        let fetches = Family::<PoolResultLabels, Counter>::default();
        for (pool, ok, error) in self.discovery.fetches() {
            for (result, n) in [("ok", ok), ("error", error)] {
                fetches
                    .get_or_create(&PoolResultLabels {
                        pool: pool.to_string(),
                        result,
                    })
                    .inc_by(n);
            }
        }
        register(
            &mut registry,
            "discovery_fetches",
            "Discovery fetches from editor nodes (this instance), by pool and result (ok, error)",
            fetches,
        );

        let reloads = Family::<ResultLabel, Counter>::default();
        for (result, n) in [
            ("ok", self.rules.reloads()),
            ("failed", self.rules.failures()),
        ] {
            reloads.get_or_create(&ResultLabel { result }).inc_by(n);
        }
        register(
            &mut registry,
            "rules_reloads",
            "Rules loads (start-up, file watch, SIGHUP), by result (ok; failed: the previous \
             rules stay in force)",
            reloads,
        );

        let topology = self.sticky.topology();
        let node_lists = Family::<ResultLabel, Counter>::default();
        for (result, n) in [("ok", topology.reloads()), ("failed", topology.failures())] {
            node_lists.get_or_create(&ResultLabel { result }).inc_by(n);
        }
        register(
            &mut registry,
            "node_list_reloads",
            "Reloads of the pools' node lists (SIGHUP), by result (ok; failed: the running \
             nodes stay)",
            node_lists,
        );
        registry
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    fn exposition(metrics: &Metrics) -> String {
        let mut out = String::new();
        encode(&mut out, &metrics.registry).unwrap();
        out
    }

    #[test]
    fn every_family_is_described_before_its_first_sample() {
        let out = exposition(&Metrics::new());
        for family in [
            "requests counter",
            "request_duration_seconds histogram",
            "response_bytes counter",
            "request_bytes counter",
            "websockets_open gauge",
            "websocket_bytes counter",
            "wopi_rejections counter",
            "wopi_conflict_copies counter",
            "shutting_down gauge",
            "build_info gauge",
        ] {
            assert!(
                out.contains(&format!("# TYPE officeswitch_{family}\n")),
                "{family} missing:\n{out}"
            );
        }
        assert!(
            out.contains(&format!(
                "officeswitch_build_info{{version=\"{}\"}} 1\n",
                env!("CARGO_PKG_VERSION")
            )),
            "{out}"
        );
        assert!(out.ends_with("# EOF\n"), "{out}");
    }

    #[test]
    fn events_appear_in_the_exposition() {
        let metrics = Metrics::new();
        let node = metrics.node_series("collabora", "http://127.0.0.1:9980/");
        for status in [200, 404, 200] {
            metrics.node_request("page", &node, status, 1234, Duration::from_millis(3));
        }
        metrics.request("discovery", String::new(), 200, 10, Duration::ZERO);
        metrics.rejection("token", "bad_signature");
        let upload = metrics.request_bytes("wopi_contents");
        upload.inc_by(100);
        metrics.request_bytes("wopi_contents").inc_by(23);
        let out = exposition(&metrics);
        for line in [
            "officeswitch_requests_total{class=\"page\",pool=\"collabora\",\
             node=\"http://127.0.0.1:9980/\",status=\"200\"} 2\n",
            "officeswitch_requests_total{class=\"page\",pool=\"collabora\",\
             node=\"http://127.0.0.1:9980/\",status=\"404\"} 1\n",
            "officeswitch_requests_total{class=\"discovery\",pool=\"\",node=\"\",status=\"200\"} 1\n",
            "officeswitch_request_duration_seconds_count{class=\"page\"} 3\n",
            "officeswitch_response_bytes_total{class=\"page\"} 3702\n",
            "officeswitch_request_bytes_total{class=\"wopi_contents\"} 123\n",
            "officeswitch_wopi_rejections_total{check=\"token\",reason=\"bad_signature\"} 1\n",
        ] {
            assert!(out.contains(line), "{line} missing:\n{out}");
        }
    }

    #[test]
    fn a_node_answering_more_statuses_than_are_kept_at_hand_is_still_counted_exactly() {
        let metrics = Metrics::new();
        let node = metrics.node_series("collabora", "http://127.0.0.1:9980/");
        let statuses = 100..(100 + RESOLVED_MAX as u16 + 10);
        for _ in 0..2 {
            for status in statuses.clone() {
                metrics.node_request("page", &node, status, 1, Duration::ZERO);
            }
        }
        let out = exposition(&metrics);
        for status in statuses.clone() {
            let line = format!(
                "officeswitch_requests_total{{class=\"page\",pool=\"collabora\",\
                 node=\"http://127.0.0.1:9980/\",status=\"{status}\"}} 2\n"
            );
            assert!(out.contains(&line), "{line} missing:\n{out}");
        }
        assert_eq!(node.counters.entries.read().unwrap().len(), RESOLVED_MAX);
        let count = format!(
            "officeswitch_request_duration_seconds_count{{class=\"page\"}} {}\n",
            2 * statuses.len()
        );
        assert!(out.contains(&count), "{count} missing:\n{out}");
    }

    #[test]
    fn websocket_handles_count_bytes_and_close_on_drop() {
        let metrics = Metrics::new();
        let node = "http://127.0.0.1:9980/";
        let first = metrics.websocket_opened("collabora", node);
        let second = metrics.websocket_opened("collabora", node);
        first.to_client(10);
        second.to_client(5);
        first.to_node(7);
        let open = |n: u8| {
            format!("officeswitch_websockets_open{{pool=\"collabora\",node=\"{node}\"}} {n}\n")
        };
        let out = exposition(&metrics);
        assert!(out.contains(&open(2)), "{out}");
        assert!(
            out.contains(
                "officeswitch_websocket_bytes_total{pool=\"collabora\",direction=\"to_client\"} 15\n"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "officeswitch_websocket_bytes_total{pool=\"collabora\",direction=\"to_node\"} 7\n"
            ),
            "{out}"
        );
        drop(first);
        assert!(exposition(&metrics).contains(&open(1)));
        drop(second);
        assert!(exposition(&metrics).contains(&open(0)));
    }

    #[test]
    fn shutting_down_moves_both_ways() {
        let metrics = Metrics::new();
        assert!(exposition(&metrics).contains("officeswitch_shutting_down 0\n"));
        metrics.shutting_down(true);
        assert!(exposition(&metrics).contains("officeswitch_shutting_down 1\n"));
        metrics.shutting_down(false);
        assert!(exposition(&metrics).contains("officeswitch_shutting_down 0\n"));
    }
}
