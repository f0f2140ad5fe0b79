//! Prometheus metrics, served at `GET /metrics` on the admin listener.
//!
//! Counters and histograms that requests move live in one process-wide [`Metrics`]
//! (Prometheus describes a process; one registry keeps every call site a one-liner).
//! Values that are state rather than events (node health, pins, discovery age, rules
//! reload failures) are read when scraped ([`Scrape::render`]), so they can never drift
//! from what `/readyz` says.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::discovery::DiscoveryService;
use crate::rules::watch::RulesStore;
use crate::sticky::pins::Stickiness;

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    class: &'static str,
    pool: String,
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

/// Why a WOPI call was refused: which check, and its reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    check: &'static str,
    reason: &'static str,
}

/// The process-wide event metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<ClassLabel, Histogram, fn() -> Histogram>,
    bytes: Family<ClassLabel, Counter>,
    websockets: Family<PoolLabel, Gauge>,
    rejections: Family<ReasonLabel, Counter>,
}

/// Latency buckets: 1 ms to about 33 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("officeswitch");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by class (discovery, page, websocket, wopi_file...), pool and status",
            requests.clone(),
        );
        let duration: Family<ClassLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from request to the end of its response (WebSockets: to their close), by class",
            duration.clone(),
        );
        let bytes = Family::<ClassLabel, Counter>::default();
        registry.register(
            "response_bytes",
            "Body bytes sent to clients (WebSockets: bytes to the client), by class",
            bytes.clone(),
        );
        let websockets = Family::<PoolLabel, Gauge>::default();
        registry.register(
            "websockets_open",
            "WebSocket tunnels open now, by pool",
            websockets.clone(),
        );
        let rejections = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "wopi_rejections",
            "WOPI calls refused before reaching the host, by check (token, proof, rules) and reason",
            rejections.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            bytes,
            websockets,
            rejections,
        }
    }

    /// Records a finished request (the access log line's facts).
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
                status,
            })
            .inc();
        let class = ClassLabel { class };
        self.duration
            .get_or_create(&class)
            .observe(took.as_secs_f64());
        self.bytes.get_or_create(&class).inc_by(bytes);
    }

    /// A WebSocket tunnel of `pool` opened (`+1`) or closed (`-1`).
    pub fn websocket(&self, pool: &str, delta: i64) {
        self.websockets
            .get_or_create(&PoolLabel {
                pool: pool.to_string(),
            })
            .inc_by(delta);
    }

    /// A WOPI call refused by `check` (`token`, `proof`, `rules`) for `reason` (a short
    /// snake_case label).
    pub fn rejection(&self, check: &'static str, reason: &'static str) {
        self.rejections
            .get_or_create(&ReasonLabel { check, reason })
            .inc();
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// What a scrape reads besides the event metrics.
pub struct Scrape {
    /// Node health and pins.
    pub sticky: Arc<Stickiness>,
    /// Discoveries.
    pub discovery: Arc<DiscoveryService>,
    /// Rules.
    pub rules: Arc<RulesStore>,
}

impl Scrape {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode(&mut out, &global().registry);
        // `encode` ends with `# EOF`; the state gauges go before it.
        if let Some(stripped) = out.strip_suffix("# EOF\n") {
            out.truncate(stripped.len());
        }
        self.state(&mut out);
        out.push_str("# EOF\n");
        out
    }

    /// Gauges read from the current state.
    fn state(&self, out: &mut String) {
        let health = self.sticky.health();
        let nodes = health.nodes();
        gauge_header(
            out,
            "officeswitch_node_up",
            "1 when the node passes its health checks",
        );
        for n in &nodes {
            let _ = writeln!(
                out,
                "officeswitch_node_up{{pool=\"{}\",node=\"{}\"}} {}",
                n.pool,
                n.node,
                u8::from(n.healthy)
            );
        }
        gauge_header(
            out,
            "officeswitch_node_draining",
            "1 when the node takes no new documents",
        );
        for n in &nodes {
            let _ = writeln!(
                out,
                "officeswitch_node_draining{{pool=\"{}\",node=\"{}\"}} {}",
                n.pool,
                n.node,
                u8::from(n.draining)
            );
        }
        gauge_header(
            out,
            "officeswitch_pin_store_up",
            "1 when the pin store answered its last call",
        );
        let _ = writeln!(
            out,
            "officeswitch_pin_store_up {}",
            u8::from(self.sticky.store_reachable())
        );
        counter_header(
            out,
            "officeswitch_documents_repinned",
            "Documents moved off a node that went down (this instance)",
        );
        let _ = writeln!(
            out,
            "officeswitch_documents_repinned_total {}",
            self.sticky.repinned()
        );
        gauge_header(
            out,
            "officeswitch_discovery_age_seconds",
            "Age of the discovery each pool is served from",
        );
        let catalog = self.discovery.catalog();
        let now = SystemTime::now();
        for pool in &catalog.pools {
            if let Some(source) = &pool.source {
                let age = now
                    .duration_since(source.fetched_at)
                    .map_or(0.0, |d| d.as_secs_f64());
                let _ = writeln!(
                    out,
                    "officeswitch_discovery_age_seconds{{pool=\"{}\"}} {age}",
                    pool.name
                );
            }
        }
        counter_header(
            out,
            "officeswitch_rules_reload_failures",
            "Rules reloads that failed and kept the previous rules",
        );
        let _ = writeln!(
            out,
            "officeswitch_rules_reload_failures_total {}",
            self.rules.failures()
        );
    }
}

fn gauge_header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} gauge");
}

fn counter_header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} counter");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_appear_in_the_exposition() {
        global().request(
            "page",
            "collabora".into(),
            200,
            1234,
            Duration::from_millis(3),
        );
        global().rejection("token", "bad_signature");
        global().websocket("collabora", 1);
        let mut out = String::new();
        encode(&mut out, &global().registry).unwrap();
        assert!(
            out.contains(
                "officeswitch_requests_total{class=\"page\",pool=\"collabora\",status=\"200\"}"
            ),
            "{out}"
        );
        assert!(
            out.contains("officeswitch_request_duration_seconds_bucket"),
            "{out}"
        );
        assert!(out.contains(
            "officeswitch_wopi_rejections_total{check=\"token\",reason=\"bad_signature\"}"
        ));
        assert!(out.contains("officeswitch_websockets_open{pool=\"collabora\"}"));
        global().websocket("collabora", -1);
    }
}
