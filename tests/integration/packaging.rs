//! The packaging is checked against the binary it packages (issue 6).
//!
//! - The Grafana dashboard and the Prometheus alerts query only series and labels that a
//!   live officeswitch exports on `/metrics`; every expression goes through a real PromQL
//!   parser, and the labels each sub-expression carries are followed through aggregations,
//!   joins and functions, so `sum by (node)` over a metric without `node`, or a ratio whose
//!   two sides cannot match, fails here rather than as an empty panel.
//! - The Kubernetes example and the systemd unit are read with officeswitch's own settings
//!   loader: ports, probes, mounted key files, rules and the drain time must agree.
//! - The Dockerfile builds a small image that runs as a non-root user.
//!
//! External validators run where installed (`kubernetes-validate`, `kubectl kustomize`,
//! `promtool`, `systemd-analyze`, a Docker engine). Where one is missing, its test writes
//! `packaging: <check>: skipped: <why>` to stderr (past the harness's capture, so CI logs
//! show it) and passes; where it is present, a wrong file fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use promql_parser::label::MatchOp;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self as promql, Expr, LabelModifier, VectorMatchCardinality};
use serde::Deserialize as _;
use serde_json::Value as Json;
use yaml_serde::Value as Yaml;

use officeswitch::config::{Config, PinStoreConfig};
use officeswitch::proxy::classify::{Class, Traffic, WopiEndpoint};
use officeswitch::rules::RuleSet;

use crate::support::client;
use crate::support::editor::{StandInEditor, Suite};
use crate::support::officeswitch::OfficeSwitch;
use crate::support::trace_init;

const TOKEN: &str = "packaging-test-token-0123456789";

// ---------------------------------------------------------------------------------------
// The metrics officeswitch exports
// ---------------------------------------------------------------------------------------

/// How a metric family is exposed, which decides its sample names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Info,
}

/// The agreed metric names and labels (issue 6): what dashboards and alerts may use when
/// the exposition has no sample to learn a metric's labels from.
const SPEC: &[(&str, Kind, &[&str])] = &[
    (
        "officeswitch_requests_total",
        Kind::Counter,
        &["class", "pool", "node", "status"],
    ),
    (
        "officeswitch_request_duration_seconds",
        Kind::Histogram,
        &["class"],
    ),
    (
        "officeswitch_response_bytes_total",
        Kind::Counter,
        &["class"],
    ),
    (
        "officeswitch_request_bytes_total",
        Kind::Counter,
        &["class"],
    ),
    (
        "officeswitch_websockets_open",
        Kind::Gauge,
        &["pool", "node"],
    ),
    (
        "officeswitch_websocket_bytes_total",
        Kind::Counter,
        &["pool", "direction"],
    ),
    (
        "officeswitch_discovery_fetches_total",
        Kind::Counter,
        &["pool", "result"],
    ),
    ("officeswitch_discovery_age_seconds", Kind::Gauge, &["pool"]),
    (
        "officeswitch_rules_reloads_total",
        Kind::Counter,
        &["result"],
    ),
    (
        "officeswitch_pin_store_errors_total",
        Kind::Counter,
        &["operation"],
    ),
    ("officeswitch_pins", Kind::Gauge, &["pool"]),
    ("officeswitch_node_up", Kind::Gauge, &["pool", "node"]),
    ("officeswitch_node_draining", Kind::Gauge, &["pool", "node"]),
    ("officeswitch_pin_store_up", Kind::Gauge, &[]),
    ("officeswitch_documents_repinned_total", Kind::Counter, &[]),
    (
        "officeswitch_wopi_rejections_total",
        Kind::Counter,
        &["check", "reason"],
    ),
    ("officeswitch_shutting_down", Kind::Gauge, &[]),
    ("officeswitch_build_info", Kind::Info, &["version"]),
];

/// Labels with a closed set of values: (series, label) -> values. A matcher naming another
/// value (`result="errors"`) selects nothing, forever.
fn enumerated_values() -> BTreeMap<(String, String), BTreeSet<String>> {
    let classes: BTreeSet<String> = [
        Class::Discovery,
        Class::Capabilities,
        Class::Health,
        Class::Ready,
        Class::WrongMethod,
        Class::Unknown,
        Class::Open,
    ]
    .into_iter()
    .map(|c| c.as_str())
    .chain(
        [
            Traffic::Page,
            Traffic::Asset,
            Traffic::WebSocket,
            Traffic::Document,
            Traffic::Stateless,
        ]
        .map(Traffic::as_str),
    )
    .chain(
        [
            WopiEndpoint::File,
            WopiEndpoint::Contents,
            WopiEndpoint::Link,
        ]
        .map(WopiEndpoint::as_str),
    )
    .map(String::from)
    .collect();
    let set = |values: &[&str]| {
        values
            .iter()
            .map(|v| v.to_string())
            .collect::<BTreeSet<_>>()
    };
    let mut values = BTreeMap::new();
    for series in [
        "officeswitch_requests_total",
        "officeswitch_request_duration_seconds_bucket",
        "officeswitch_request_duration_seconds_sum",
        "officeswitch_request_duration_seconds_count",
        "officeswitch_response_bytes_total",
        "officeswitch_request_bytes_total",
    ] {
        values.insert((series.to_string(), "class".to_string()), classes.clone());
    }
    for (series, label, allowed) in [
        (
            "officeswitch_websocket_bytes_total",
            "direction",
            set(&["to_client", "to_node"]),
        ),
        (
            "officeswitch_discovery_fetches_total",
            "result",
            set(&["ok", "error"]),
        ),
        (
            "officeswitch_rules_reloads_total",
            "result",
            set(&["ok", "failed"]),
        ),
        (
            "officeswitch_wopi_rejections_total",
            "check",
            set(&["token", "proof", "rules"]),
        ),
    ] {
        values.insert((series.to_string(), label.to_string()), allowed);
    }
    values
}

/// One metric family of an exposition: its type and the samples seen per sample name.
#[derive(Debug, Default)]
struct Exposition {
    /// Family name (as in `# TYPE`) -> type.
    families: BTreeMap<String, String>,
    /// Sample name -> label sets of its samples.
    samples: BTreeMap<String, Vec<BTreeMap<String, String>>>,
}

impl Exposition {
    /// Parses the Prometheus/OpenMetrics text format; `Err` names the first bad line.
    fn parse(text: &str) -> Result<Exposition, String> {
        let mut out = Exposition::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split_whitespace();
                match (words.next(), words.next()) {
                    (Some(name), Some(kind)) => {
                        out.families.insert(name.to_string(), kind.to_string());
                    }
                    _ => return Err(format!("bad TYPE line: {line}")),
                }
            } else if line.starts_with('#') {
                continue;
            } else {
                let (name, labels) = parse_sample(line)?;
                out.samples.entry(name).or_default().push(labels);
            }
        }
        Ok(out)
    }

    /// The sample names each family is exposed under, with the family's type.
    fn sample_names(&self) -> BTreeMap<String, String> {
        let mut names = BTreeMap::new();
        for (family, kind) in &self.families {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" if family.ends_with("_total") => &[""],
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "gaugehistogram" => &["_bucket", "_gsum", "_gcount"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{family}{suffix}"), kind.clone());
            }
        }
        names
    }
}

/// One sample line: its name and labels (values unescaped).
fn parse_sample(line: &str) -> Result<(String, BTreeMap<String, String>), String> {
    let bad = |why: &str| format!("bad sample line ({why}): {line}");
    let end = line.find(['{', ' ']).ok_or_else(|| bad("no value"))?;
    let name = line[..end].to_string();
    let mut labels = BTreeMap::new();
    if line[end..].starts_with('{') {
        let mut chars = line[end + 1..].chars().peekable();
        loop {
            match chars.peek() {
                Some('}') => break,
                Some(',') => {
                    chars.next();
                    continue;
                }
                None => return Err(bad("unterminated labels")),
                _ => {}
            }
            let label: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if chars.next() != Some('"') {
                return Err(bad("label value not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => return Err(bad("dangling escape")),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err(bad("unterminated label value")),
                }
            }
            labels.insert(label.trim().to_string(), value);
        }
    }
    Ok((name, labels))
}

/// Everything a PromQL expression may refer to.
#[derive(Debug, Default)]
struct Catalog {
    /// Series name -> its label names (without the ones the scrape adds).
    series: BTreeMap<String, BTreeSet<String>>,
    /// Labels Prometheus adds to every scraped series (`job`, `instance`, relabelled ones).
    target: BTreeSet<String>,
    /// Closed value sets of some labels, see [`enumerated_values`].
    values: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Catalog {
    /// Builds the catalog from a live exposition: labels from its samples, or from
    /// [`SPEC`] for a series that has no sample yet (a counter family nothing moved).
    fn from_exposition(exposition: &Exposition, target: BTreeSet<String>) -> Catalog {
        let mut series = BTreeMap::new();
        for name in exposition.sample_names().keys() {
            let observed: Option<BTreeSet<String>> = exposition
                .samples
                .get(name)
                .map(|samples| samples.iter().flat_map(|s| s.keys().cloned()).collect());
            let labels = observed.unwrap_or_else(|| spec_labels(name).unwrap_or_default());
            series.insert(name.clone(), labels);
        }
        // Prometheus itself writes `up` for every target.
        series.insert("up".to_string(), BTreeSet::new());
        Catalog {
            series,
            target,
            values: enumerated_values(),
        }
    }
}

/// The series names and labels [`SPEC`] promises: (sample name, labels).
fn spec_series() -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    for (name, kind, labels) in SPEC {
        let labels: BTreeSet<String> = labels.iter().map(|l| l.to_string()).collect();
        if *kind == Kind::Histogram {
            let mut bucket = labels.clone();
            bucket.insert("le".to_string());
            out.push((format!("{name}_bucket"), bucket));
            out.push((format!("{name}_sum"), labels.clone()));
            out.push((format!("{name}_count"), labels));
        } else {
            out.push((name.to_string(), labels));
        }
    }
    out
}

fn spec_labels(series: &str) -> Option<BTreeSet<String>> {
    spec_series()
        .into_iter()
        .find(|(name, _)| name == series)
        .map(|(_, labels)| labels)
}

/// What [`SPEC`] promises that `exposition` does not deliver: missing families, wrong
/// types, and label sets that differ from the samples.
fn spec_mismatches(exposition: &Exposition) -> Vec<String> {
    let names = exposition.sample_names();
    let mut problems = Vec::new();
    for (name, kind, _) in SPEC {
        let probe = if *kind == Kind::Histogram {
            format!("{name}_bucket")
        } else {
            name.to_string()
        };
        match names.get(&probe) {
            None => problems.push(format!("/metrics has no {probe} (no matching # TYPE line)")),
            Some(exposed) => {
                let ok = match kind {
                    Kind::Counter => exposed == "counter",
                    Kind::Gauge => exposed == "gauge",
                    Kind::Histogram => exposed == "histogram",
                    Kind::Info => exposed == "info" || exposed == "gauge",
                };
                if !ok {
                    problems.push(format!("{name} is a {exposed}, expected {kind:?}"));
                }
            }
        }
    }
    for (name, labels) in spec_series() {
        if let Some(samples) = exposition.samples.get(&name) {
            for sample in samples {
                let seen: BTreeSet<String> = sample.keys().cloned().collect();
                if seen != labels {
                    problems.push(format!("{name} has labels {seen:?}, expected {labels:?}"));
                    break;
                }
            }
        }
    }
    let values = enumerated_values();
    for ((series, label), allowed) in &values {
        for sample in exposition.samples.get(series).into_iter().flatten() {
            if let Some(value) = sample.get(label)
                && !allowed.contains(value)
            {
                problems.push(format!(
                    "{series}{{{label}=\"{value}\"}}: value not in {allowed:?}"
                ));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------
// PromQL: which series and labels an expression uses, and what labels its result carries
// ---------------------------------------------------------------------------------------

/// Walks a parsed expression and records every reference the catalog cannot satisfy.
struct Checker<'a> {
    catalog: &'a Catalog,
    problems: Vec<String>,
}

type Labels = BTreeSet<String>;

impl Checker<'_> {
    /// The labels of the series `expr` yields, or `None` for scalars and strings.
    fn labels(&mut self, expr: &Expr) -> Option<Labels> {
        match expr {
            Expr::VectorSelector(vs) => Some(self.selector(vs)),
            Expr::MatrixSelector(ms) => Some(self.selector(&ms.vs)),
            Expr::Paren(p) => self.labels(&p.expr),
            Expr::Unary(u) => self.labels(&u.expr),
            Expr::Subquery(s) => self.labels(&s.expr),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => None,
            Expr::Aggregate(a) => {
                if let Some(param) = &a.param {
                    self.labels(param);
                }
                let op = a.op.to_string();
                let inner = self.labels(&a.expr).unwrap_or_default();
                let mut out = match &a.modifier {
                    Some(LabelModifier::Include(by)) => {
                        self.require(&by.labels, &inner, &format!("{op} by"));
                        by.labels.iter().cloned().collect()
                    }
                    Some(LabelModifier::Exclude(without)) => {
                        self.require(&without.labels, &inner, &format!("{op} without"));
                        inner
                            .iter()
                            .filter(|l| !without.labels.contains(l))
                            .cloned()
                            .collect()
                    }
                    None => Labels::new(),
                };
                match op.as_str() {
                    "topk" | "bottomk" | "limitk" | "limit_ratio" => out = inner,
                    "count_values" => {
                        if let Some(Expr::StringLiteral(label)) = a.param.as_deref() {
                            out.insert(label.val.clone());
                        }
                    }
                    _ => {}
                }
                Some(out)
            }
            Expr::Binary(b) => {
                let lhs = self.labels(&b.lhs);
                let rhs = self.labels(&b.rhs);
                let (lhs, rhs) = match (lhs, rhs) {
                    (Some(l), Some(r)) => (l, r),
                    (Some(one), None) | (None, Some(one)) => return Some(one),
                    (None, None) => return None,
                };
                let op = b.op.to_string();
                let set_op = b.op.is_set_operator();
                let modifier = b.modifier.as_ref();
                match modifier.and_then(|m| m.matching.as_ref()) {
                    Some(LabelModifier::Include(on)) => {
                        self.require(&on.labels, &lhs, &format!("left of {op} on"));
                        self.require(&on.labels, &rhs, &format!("right of {op} on"));
                    }
                    Some(LabelModifier::Exclude(ignoring)) => {
                        let both: Labels = lhs.union(&rhs).cloned().collect();
                        self.require(&ignoring.labels, &both, &format!("{op} ignoring"));
                        let strip = |s: &Labels| -> Labels {
                            s.iter()
                                .filter(|l| !ignoring.labels.contains(l))
                                .cloned()
                                .collect()
                        };
                        if !set_op && is_one_to_one(modifier) && strip(&lhs) != strip(&rhs) {
                            self.problems.push(format!(
                                "`{op} ignoring(...)` joins {lhs:?} with {rhs:?}: no series can match"
                            ));
                        }
                    }
                    None if !set_op && is_one_to_one(modifier) && lhs != rhs => {
                        self.problems.push(format!(
                            "`{op}` joins series labelled {lhs:?} with {rhs:?}: without on()/ignoring() no series can match"
                        ));
                    }
                    None => {}
                }
                let out = match modifier.map(|m| &m.card) {
                    Some(VectorMatchCardinality::ManyToOne(extra)) => {
                        self.require(&extra.labels, &rhs, &format!("{op} group_left"));
                        lhs.iter().chain(&extra.labels).cloned().collect()
                    }
                    Some(VectorMatchCardinality::OneToMany(extra)) => {
                        self.require(&extra.labels, &lhs, &format!("{op} group_right"));
                        rhs.iter().chain(&extra.labels).cloned().collect()
                    }
                    _ if op == "or" => lhs.union(&rhs).cloned().collect(),
                    _ => lhs,
                };
                Some(out)
            }
            Expr::Call(call) => {
                let args: Vec<Option<Labels>> =
                    call.args.args.iter().map(|a| self.labels(a)).collect();
                let string_arg = |i: usize| match call.args.args.get(i).map(|a| a.as_ref()) {
                    Some(Expr::StringLiteral(s)) => Some(s.val.clone()),
                    _ => None,
                };
                if matches!(call.func.return_type, ValueType::Scalar | ValueType::String) {
                    return None;
                }
                let first = args.iter().flatten().next().cloned().unwrap_or_default();
                match call.func.name {
                    "histogram_quantile" => {
                        let inner = args.get(1).cloned().flatten().unwrap_or_default();
                        if !inner.contains("le") {
                            self.problems.push(format!(
                                "histogram_quantile over series without `le` ({inner:?}): aggregate with `by (le, ...)`"
                            ));
                        }
                        Some(inner.into_iter().filter(|l| l != "le").collect())
                    }
                    "label_replace" => {
                        let mut out = first;
                        if let Some(src) = string_arg(3).filter(|s| !s.is_empty()) {
                            self.require(&[src], &out, "label_replace source");
                        }
                        out.extend(string_arg(1));
                        Some(out)
                    }
                    "label_join" => {
                        let mut out = first;
                        let sources: Vec<String> =
                            (3..call.args.args.len()).filter_map(string_arg).collect();
                        self.require(&sources, &out, "label_join source");
                        out.extend(string_arg(1));
                        Some(out)
                    }
                    "absent" | "absent_over_time" | "vector" => Some(Labels::new()),
                    _ => Some(first),
                }
            }
        }
    }

    /// Checks one selector against the catalog; returns the labels of its series.
    fn selector(&mut self, vs: &promql::VectorSelector) -> Labels {
        let name = vs.name.clone().or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
                .map(|m| m.value.clone())
        });
        let Some(name) = name else {
            self.problems.push(format!("selector {vs} names no metric"));
            return self.catalog.target.clone();
        };
        let Some(own) = self.catalog.series.get(&name) else {
            self.problems
                .push(format!("{name}: officeswitch exports no such series"));
            return self.catalog.target.clone();
        };
        let all: Labels = own.union(&self.catalog.target).cloned().collect();
        let matchers = vs
            .matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten())
            .filter(|m| m.name != "__name__");
        for m in matchers {
            if !all.contains(&m.name) {
                self.problems
                    .push(format!("{name} has no label `{}` (it has {all:?})", m.name));
                continue;
            }
            let Some(allowed) = self.catalog.values.get(&(name.clone(), m.name.clone())) else {
                continue;
            };
            let values: Vec<&str> = match &m.op {
                MatchOp::Equal | MatchOp::NotEqual => vec![m.value.as_str()],
                // A plain alternation of words (`a|b`) names values; other regexes are patterns.
                MatchOp::Re(_) | MatchOp::NotRe(_)
                    if m.value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '|') =>
                {
                    m.value.split('|').collect()
                }
                _ => Vec::new(),
            };
            for value in values {
                if !allowed.contains(value) {
                    self.problems.push(format!(
                        "{name}{{{}=\"{value}\"}}: officeswitch never sets that value (it sets {allowed:?})",
                        m.name
                    ));
                }
            }
        }
        all
    }

    /// Records a problem for each label of `wanted` that `have` lacks.
    fn require(&mut self, wanted: &[String], have: &Labels, context: &str) {
        for label in wanted {
            if !have.contains(label) {
                self.problems.push(format!(
                    "{context} `{label}`: the series below carry only {have:?}"
                ));
            }
        }
    }
}

fn is_one_to_one(modifier: Option<&promql::BinModifier>) -> bool {
    modifier.is_none_or(|m| matches!(m.card, VectorMatchCardinality::OneToOne))
}

/// Parses `query` and checks it against `catalog`: the problems found, and the labels of
/// its result (`None` for a scalar).
fn check_promql(query: &str, catalog: &Catalog) -> Result<Option<Labels>, Vec<String>> {
    let expr = promql::parse(query).map_err(|e| vec![format!("PromQL syntax: {e}")])?;
    let mut checker = Checker {
        catalog,
        problems: Vec::new(),
    };
    let labels = checker.labels(&expr);
    if checker.problems.is_empty() {
        Ok(labels)
    } else {
        Err(checker.problems)
    }
}

// ---------------------------------------------------------------------------------------
// The dashboard and the alerts
// ---------------------------------------------------------------------------------------

/// Grafana variables that stand for a duration; every other variable is a value in a
/// label matcher (`pool=~"$pool"`).
const GRAFANA_DURATIONS: &[&str] = &["__rate_interval", "__interval", "__range"];

/// Replaces Grafana's `$var`/`${var}`/`${var:format}` by what Prometheus would see: a
/// duration for the interval variables, a match-anything regex for the others. Variables
/// neither defined by the dashboard nor built in are returned as errors.
fn substitute_grafana(query: &str, defined: &BTreeSet<String>) -> Result<String, String> {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {query}"))?;
            let inner = &braced[..end];
            (inner.split(':').next().unwrap_or(inner), end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if GRAFANA_DURATIONS.contains(&name) {
            out.push_str("5m");
        } else if defined.contains(name) {
            out.push_str(".*");
        } else {
            return Err(format!("`${name}` is not a variable of the dashboard"));
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The dashboard's panels, rows' nested panels included.
fn dashboard_panels(dashboard: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Every PromQL query of the dashboard: (where, query with variables substituted).
fn dashboard_queries(dashboard: &Json) -> Result<Vec<(String, String)>, Vec<String>> {
    let variables = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten();
    let defined: BTreeSet<String> = variables
        .clone()
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect();
    let mut queries = Vec::new();
    let mut problems = Vec::new();
    for panel in dashboard_panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            match substitute_grafana(expr, &defined) {
                Ok(q) => queries.push((format!("panel \"{title}\""), q)),
                Err(e) => problems.push(format!("panel \"{title}\": {e}")),
            }
        }
    }
    for variable in variables.filter(|v| v["type"] == "query") {
        let name = variable["name"].as_str().unwrap_or("?");
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .unwrap_or_default();
        // label_values(<selector>, <label>): the selector must exist and carry the label.
        let Some(args) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
        else {
            problems.push(format!(
                "variable {name}: only label_values(selector, label) is checked, not {query:?}"
            ));
            continue;
        };
        let (selector, label) = (args.0.trim(), args.1.trim());
        match substitute_grafana(selector, &defined) {
            Ok(selector) => queries.push((
                format!("variable {name}"),
                format!("count by ({label}) ({selector})"),
            )),
            Err(e) => problems.push(format!("variable {name}: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(queries)
    } else {
        Err(problems)
    }
}

/// One alerting or recording rule of a rules file.
struct Rule {
    /// `alert` or `record` name.
    name: String,
    expr: String,
    /// Texts that may use `$labels.x`: annotations and labels.
    templates: Vec<String>,
}

fn alert_rules(doc: &Yaml) -> Vec<Rule> {
    let mut rules = Vec::new();
    for group in doc["groups"].as_sequence().into_iter().flatten() {
        for rule in group["rules"].as_sequence().into_iter().flatten() {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .unwrap_or("?")
                .to_string();
            let templates = ["annotations", "labels"]
                .iter()
                .flat_map(|key| rule[*key].as_mapping().into_iter().flatten())
                .filter_map(|(_, v)| v.as_str().map(String::from))
                .collect();
            rules.push(Rule {
                name,
                expr: rule["expr"].as_str().unwrap_or_default().to_string(),
                templates,
            });
        }
    }
    rules
}

/// The `$labels.x` names a template uses.
fn template_labels(text: &str) -> Vec<String> {
    text.match_indices("$labels.")
        .map(|(at, m)| {
            text[at + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// Checks every query of the dashboard and every rule against `catalog`.
fn check_dashboard_and_alerts(dashboard: &Json, alerts: &Yaml, catalog: &Catalog) -> Vec<String> {
    let mut problems = Vec::new();
    match dashboard_queries(dashboard) {
        Ok(queries) => {
            for (place, query) in queries {
                if let Err(found) = check_promql(&query, catalog) {
                    problems.extend(found.into_iter().map(|p| format!("dashboard {place}: {p}")));
                }
            }
        }
        Err(found) => problems.extend(found.into_iter().map(|p| format!("dashboard {p}"))),
    }
    for rule in alert_rules(alerts) {
        match check_promql(&rule.expr, catalog) {
            Ok(labels) => {
                let labels = labels.unwrap_or_default();
                for text in &rule.templates {
                    for label in template_labels(text) {
                        if !labels.contains(&label) {
                            problems.push(format!(
                                "alert {}: `$labels.{label}` is not a label of its result {labels:?}",
                                rule.name
                            ));
                        }
                    }
                }
            }
            Err(found) => problems.extend(
                found
                    .into_iter()
                    .map(|p| format!("alert {}: {p}", rule.name)),
            ),
        }
    }
    problems
}

/// Labels the officeswitch scrape job gives every series besides the exposition's.
fn scrape_target_labels() -> BTreeSet<String> {
    let prometheus = yaml_file("deploy/prometheus/prometheus.yml");
    let mut labels: BTreeSet<String> = ["job", "instance"].map(String::from).into();
    for job in prometheus["scrape_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        for relabel in job["relabel_configs"].as_sequence().into_iter().flatten() {
            if let Some(target) = relabel["target_label"].as_str() {
                labels.insert(target.to_string());
            }
        }
    }
    labels
}

#[tokio::test]
async fn dashboard_and_alerts_query_only_what_officeswitch_exports() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .admin(TOKEN)
        .start()
        .await;
    // Traffic, so that request series have samples to learn labels from; the probe paths
    // are the Deployment's, so they are known to be served.
    let (status, _) = os.get("/hosting/discovery").await;
    assert_eq!(status, StatusCode::OK);
    let deployment = Manifests::load();
    for (path, expected) in deployment.probe_paths() {
        let (status, body) = os.get(&path).await;
        assert_eq!(status, expected, "Deployment probe {path}: {body}");
    }
    let admin = os.admin_addr().expect("admin listener");
    let reply = client::send(
        Method::GET,
        &format!("http://{admin}/metrics"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let exposition = Exposition::parse(&reply.body).expect("valid exposition");

    let mut problems = spec_mismatches(&exposition);
    let catalog = Catalog::from_exposition(&exposition, scrape_target_labels());
    problems.extend(check_dashboard_and_alerts(
        &json_file("deploy/grafana/officeswitch.json"),
        &yaml_file("deploy/prometheus/alerts.yml"),
        &catalog,
    ));
    assert!(
        problems.is_empty(),
        "{} problems:\n{}\n\n/metrics:\n{}",
        problems.len(),
        problems.join("\n"),
        reply.body
    );
}

/// The checker itself: each kind of mistake it exists to catch is caught, and correct
/// queries pass (a lint that flags nothing proves nothing).
#[test]
fn promql_checker_catches_what_it_promises() {
    let exposition = Exposition::parse(concat!(
        "# TYPE officeswitch_requests counter\n",
        "officeswitch_requests_total{class=\"page\",pool=\"collabora\",node=\"n\",status=\"200\"} 3\n",
        "# TYPE officeswitch_request_duration_seconds histogram\n",
        "officeswitch_request_duration_seconds_bucket{class=\"page\",le=\"+Inf\"} 1\n",
        "officeswitch_request_duration_seconds_sum{class=\"page\"} 1\n",
        "officeswitch_request_duration_seconds_count{class=\"page\"} 1\n",
        "# TYPE officeswitch_rules_reloads counter\n",
        "# TYPE officeswitch_node_up gauge\n",
        "officeswitch_node_up{pool=\"collabora\",node=\"n\"} 1\n",
        "# EOF\n",
    ))
    .expect("valid exposition");
    let catalog = Catalog::from_exposition(&exposition, scrape_target_labels());
    let good = [
        "sum by (job, class) (rate(officeswitch_requests_total{status=~\"5..\"}[5m])) / sum by (job, class) (rate(officeswitch_requests_total[5m]))",
        "histogram_quantile(0.99, sum by (le, class) (rate(officeswitch_request_duration_seconds_bucket[5m])))",
        // No samples yet: the labels come from the agreed names.
        "increase(officeswitch_rules_reloads_total{result=\"failed\"}[10m]) > 0",
        "max by (pool) (officeswitch_node_up) == 0",
        "sum by (pool) (officeswitch_node_up) / on (pool) group_left count by (pool) (officeswitch_node_up)",
        "up{job=\"officeswitch\", pod=~\"officeswitch-.*\"} == 0",
    ];
    for query in good {
        assert!(
            check_promql(query, &catalog).is_ok(),
            "{query}: {:?}",
            check_promql(query, &catalog)
        );
    }
    let bad = [
        ("rate(officeswitch_request_total[5m])", "no such series"),
        (
            "rate(officeswitch_requests_total{suite=\"x\"}[5m])",
            "no label `suite`",
        ),
        (
            "sum by (reason) (rate(officeswitch_requests_total[5m]))",
            "sum by `reason`",
        ),
        (
            "histogram_quantile(0.9, sum by (class) (rate(officeswitch_request_duration_seconds_bucket[5m])))",
            "without `le`",
        ),
        (
            "sum by (job) (officeswitch_node_up) / sum by (job, pool) (officeswitch_node_up)",
            "no series can match",
        ),
        (
            "officeswitch_rules_reloads_total{result=\"error\"}",
            "never sets that value",
        ),
        (
            "rate(officeswitch_requests_total{class=~\"page|websockt\"}[5m])",
            "never sets that value",
        ),
        ("sum(rate(officeswitch_requests_total[5m])", "PromQL syntax"),
        ("rate(officeswitch_node_up)", "PromQL syntax"),
    ];
    for (query, expected) in bad {
        let problems = check_promql(query, &catalog).expect_err(query);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{query}: expected a problem containing {expected:?}, got {problems:?}"
        );
    }
    // Grafana: variables are substituted, undefined ones are errors.
    let defined: BTreeSet<String> = ["pool".to_string()].into();
    assert_eq!(
        substitute_grafana(
            "rate(x{pool=~\"${pool:regex}\"}[$__rate_interval])",
            &defined
        )
        .unwrap(),
        "rate(x{pool=~\".*\"}[5m])"
    );
    assert!(substitute_grafana("x{node=~\"$node\"}", &defined).is_err());
    // Alert templates may only use labels the alert's result keeps.
    let alerts: Yaml = yaml_serde::from_str(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: max by (pool) (officeswitch_node_up) == 0\n    annotations:\n      summary: \"{{ $labels.node }} down\"\n",
    )
    .unwrap();
    let problems = check_dashboard_and_alerts(&serde_json::json!({}), &alerts, &catalog);
    assert!(
        problems.iter().any(|p| p.contains("$labels.node")),
        "{problems:?}"
    );
    // An exposition that drifts from the agreed names is reported.
    let drifted = Exposition::parse(concat!(
        "# TYPE officeswitch_requests counter\n",
        "officeswitch_requests_total{class=\"page\",pool=\"collabora\",status=\"200\"} 3\n",
        "# TYPE officeswitch_rules_reloads counter\n",
        "officeswitch_rules_reloads_total{result=\"error\"} 1\n",
    ))
    .expect("valid exposition");
    let problems = spec_mismatches(&drifted);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("officeswitch_requests_total has labels")),
        "{problems:?}"
    );
    for expected in ["no officeswitch_pins", "result=\"error\"}: value not in"] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "expected {expected:?} in {problems:?}"
        );
    }
}

#[test]
fn grafana_dashboard_is_well_formed() {
    let dashboard = json_file("deploy/grafana/officeswitch.json");
    let mut problems = Vec::new();
    let uid = dashboard["uid"].as_str().unwrap_or_default();
    if uid.is_empty()
        || uid.len() > 40
        || !uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        problems.push(format!("uid {uid:?}: 1 to 40 of [A-Za-z0-9_-]"));
    }
    for key in ["title", "schemaVersion", "panels", "templating"] {
        if dashboard[key].is_null() {
            problems.push(format!("no `{key}`"));
        }
    }
    // The data source is a variable, so the dashboard imports into any Grafana.
    let variables: Vec<&Json> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let datasource_var = variables
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .and_then(|v| v["name"].as_str());
    let Some(datasource_var) = datasource_var else {
        panic!("no `datasource` variable of type prometheus in templating.list");
    };
    let uses_variable = |ds: &Json| {
        let uid = ds["uid"].as_str().or(ds.as_str()).unwrap_or_default();
        uid == format!("${{{datasource_var}}}") || uid == format!("${datasource_var}")
    };
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        if !uses_variable(&variable["datasource"]) {
            problems.push(format!(
                "variable {}: datasource is not ${{{datasource_var}}}",
                variable["name"]
            ));
        }
    }
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, [i64; 4])> = Vec::new();
    let mut exprs = String::new();
    for panel in dashboard_panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        if title.is_empty() {
            problems.push(format!("panel {} has no title", panel["id"]));
        }
        match panel["id"].as_i64() {
            Some(id) if ids.insert(id) => {}
            _ => problems.push(format!("panel \"{title}\": missing or duplicate id")),
        }
        let grid = &panel["gridPos"];
        let cell = ["x", "y", "w", "h"].map(|k| grid[k].as_i64().unwrap_or(-1));
        let [x, _, w, h] = cell;
        if cell.iter().any(|v| *v < 0) || w == 0 || h == 0 || x + w > 24 {
            problems.push(format!(
                "panel \"{title}\": gridPos {grid} is not within 24 columns"
            ));
        }
        for (other, o) in &boxes {
            let overlap = cell[0] < o[0] + o[2]
                && o[0] < cell[0] + cell[2]
                && cell[1] < o[1] + o[3]
                && o[1] < cell[1] + cell[3];
            if overlap {
                problems.push(format!("panels \"{title}\" and \"{other}\" overlap"));
            }
        }
        boxes.push((title.clone(), cell));
        if panel["type"] == "row" {
            continue;
        }
        if !uses_variable(&panel["datasource"]) {
            problems.push(format!(
                "panel \"{title}\": datasource is not ${{{datasource_var}}}"
            ));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("panel \"{title}\": no targets"));
        }
        let mut refs = BTreeSet::new();
        for target in &targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            if expr.trim().is_empty() {
                problems.push(format!("panel \"{title}\": a target without expr"));
            }
            exprs.push_str(expr);
            exprs.push('\n');
            if !refs.insert(target["refId"].as_str().unwrap_or_default().to_string()) {
                problems.push(format!("panel \"{title}\": duplicate or missing refId"));
            }
            if !target["datasource"].is_null() && !uses_variable(&target["datasource"]) {
                problems.push(format!(
                    "panel \"{title}\": a target's datasource is not ${{{datasource_var}}}"
                ));
            }
        }
    }
    // Every agreed metric is on the dashboard somewhere.
    for (name, _, _) in SPEC {
        if !exprs.contains(name) {
            problems.push(format!("no panel shows {name}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn alert_rules_pass_promtool() {
    let dir = repo("deploy/prometheus");
    let Some(check) = run_tool(
        "promtool",
        &["check", "rules", "alerts.yml"],
        &dir,
        Duration::from_secs(60),
    ) else {
        skipped(
            "promtool check rules",
            "promtool not installed (apt-get install prometheus)",
        );
        return;
    };
    assert!(check.success, "promtool check rules:\n{}", check.text);
    let test = run_tool(
        "promtool",
        &["test", "rules", "alerts.test.yml"],
        &dir,
        Duration::from_secs(120),
    )
    .expect("promtool ran a moment ago");
    assert!(test.success, "promtool test rules:\n{}", test.text);
}

#[test]
fn prometheus_scrape_job_reaches_the_admin_listener() {
    let prometheus = yaml_file("deploy/prometheus/prometheus.yml");
    let manifests = Manifests::load();
    let config = manifests.config();
    let admin = config
        .admin
        .as_ref()
        .expect("[admin] in the ConfigMap: /metrics lives there");
    let mut problems = Vec::new();
    let rule_files: Vec<&str> = prometheus["rule_files"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .collect();
    if !rule_files.contains(&"alerts.yml") {
        problems.push("rule_files does not load alerts.yml".to_string());
    }
    let jobs: Vec<&Yaml> = prometheus["scrape_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .collect();
    let alerts = read("deploy/prometheus/alerts.yml");
    let job = jobs
        .iter()
        .find(|j| {
            j["job_name"]
                .as_str()
                .is_some_and(|name| alerts.contains(&format!("job=\"{name}\"")))
        })
        .expect("a scrape job whose name alerts.yml uses (up{job=...})");
    if job["metrics_path"].as_str().unwrap_or("/metrics") != "/metrics" {
        problems.push("metrics_path is not /metrics".to_string());
    }
    if job["authorization"]["credentials_file"].as_str().is_none() {
        problems.push(
            "no authorization.credentials_file: the admin listener needs the bearer token"
                .to_string(),
        );
    }
    let pod = manifests.pod();
    let pod_labels = &pod["metadata"]["labels"];
    for relabel in job["relabel_configs"].as_sequence().into_iter().flatten() {
        if relabel["action"] != "keep" {
            continue;
        }
        let source = relabel["source_labels"][0].as_str().unwrap_or_default();
        let regex = relabel["regex"].as_str().unwrap_or_default();
        if let Some(label) = source.strip_prefix("__meta_kubernetes_pod_label_") {
            let value = pod_labels
                .as_mapping()
                .into_iter()
                .flatten()
                .find(|(k, _)| k.as_str().is_some_and(|k| sanitize_label(k) == label))
                .and_then(|(_, v)| v.as_str());
            if value != Some(regex) {
                problems.push(format!(
                    "keeps pods with {label}={regex}, the pods have {value:?}"
                ));
            }
        } else if source == "__meta_kubernetes_pod_container_port_name" {
            match manifests.container_port(regex) {
                Some(port) if port == admin.listen.port() => {}
                other => problems.push(format!(
                    "keeps container port {regex:?} ({other:?}), the admin listener is on {}",
                    admin.listen.port()
                )),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Prometheus' spelling of a Kubernetes label in `__meta_*` names.
fn sanitize_label(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------

/// The Kubernetes example: the kustomization's resources and the example Secret.
struct Manifests {
    /// (file, document) for every document.
    docs: Vec<(String, Yaml)>,
    /// Files kustomization.yaml lists.
    resources: Vec<String>,
}

impl Manifests {
    fn load() -> Manifests {
        let kustomization = yaml_file("deploy/kubernetes/kustomization.yaml");
        let resources: Vec<String> = kustomization["resources"]
            .as_sequence()
            .expect("kustomization.yaml lists resources")
            .iter()
            .filter_map(|r| r.as_str().map(String::from))
            .collect();
        let mut docs = Vec::new();
        for file in resources
            .iter()
            .map(String::as_str)
            .chain(["secret.example.yaml"])
        {
            let text = read(&format!("deploy/kubernetes/{file}"));
            for doc in yaml_serde::Deserializer::from_str(&text) {
                let value = Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
                if !value.is_null() {
                    docs.push((file.to_string(), value));
                }
            }
        }
        Manifests { docs, resources }
    }

    fn find(&self, kind: &str, name: &str) -> &Yaml {
        self.docs
            .iter()
            .map(|(_, d)| d)
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
    }

    fn deployment(&self) -> &Yaml {
        self.find("Deployment", "officeswitch")
    }

    fn pod(&self) -> &Yaml {
        &self.deployment()["spec"]["template"]
    }

    fn container(&self) -> &Yaml {
        self.pod()["spec"]["containers"]
            .as_sequence()
            .and_then(|c| c.iter().find(|c| c["name"] == "officeswitch"))
            .expect("a container named officeswitch")
    }

    /// The container port named `name`.
    fn container_port(&self, name: &str) -> Option<u16> {
        self.container()["ports"]
            .as_sequence()?
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
    }

    /// A probe's or Service's `port` (a number or a port name) as a number.
    fn resolve_port(&self, port: &Yaml) -> Option<u16> {
        match port.as_str() {
            Some(name) => self.container_port(name),
            None => port.as_u64().and_then(|p| u16::try_from(p).ok()),
        }
    }

    /// The `--config` path the container runs with.
    fn config_path(&self) -> PathBuf {
        let args: Vec<&str> = self.container()["args"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_str)
            .collect();
        let at = args
            .iter()
            .position(|a| *a == "--config")
            .expect("the container passes --config");
        PathBuf::from(args.get(at + 1).expect("a path after --config"))
    }

    /// The volume mounted exactly at `dir`, with its mount.
    fn volume_at(&self, dir: &Path) -> Option<(&Yaml, &Yaml)> {
        let mount = self.container()["volumeMounts"]
            .as_sequence()?
            .iter()
            .find(|m| m["mountPath"].as_str().map(Path::new) == Some(dir))?;
        let volume = self.pod()["spec"]["volumes"]
            .as_sequence()?
            .iter()
            .find(|v| v["name"] == mount["name"])?;
        Some((mount, volume))
    }

    /// The file `path` as a volume provides it: (volume, key in its ConfigMap or Secret).
    fn file_source(&self, path: &Path) -> Option<(&Yaml, String)> {
        let dir = path.parent()?;
        let file = path.file_name()?.to_str()?;
        let (_, volume) = self.volume_at(dir)?;
        let source = if volume["secret"].is_null() {
            &volume["configMap"]
        } else {
            &volume["secret"]
        };
        let key = match source["items"].as_sequence() {
            Some(items) => items.iter().find(|i| i["path"] == file)?["key"]
                .as_str()?
                .to_string(),
            None => file.to_string(),
        };
        Some((volume, key))
    }

    /// The text of `key` in the ConfigMap or Secret `name`, if both exist.
    fn data(&self, kind: &str, name: &str, key: &str) -> Option<String> {
        let object = self
            .docs
            .iter()
            .map(|(_, d)| d)
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)?;
        ["data", "stringData"]
            .iter()
            .find_map(|field| object[*field][key].as_str().map(String::from))
    }

    /// officeswitch.toml as the ConfigMap gives it to the container.
    fn config_text(&self) -> String {
        let path = self.config_path();
        let (volume, key) = self
            .file_source(&path)
            .unwrap_or_else(|| panic!("{} is not mounted from a volume", path.display()));
        let name = volume["configMap"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{} does not come from a ConfigMap", path.display()));
        self.data("ConfigMap", name, &key)
            .unwrap_or_else(|| panic!("ConfigMap {name} has no {key}"))
    }

    fn config(&self) -> Config {
        Config::from_str(&self.config_path(), &self.config_text())
            .unwrap_or_else(|e| panic!("the ConfigMap's officeswitch.toml: {e}"))
    }

    /// Each probe's path and the status a ready officeswitch answers it with.
    fn probe_paths(&self) -> Vec<(String, StatusCode)> {
        ["readinessProbe", "livenessProbe"]
            .iter()
            .filter_map(|p| self.container()[*p]["httpGet"]["path"].as_str())
            .map(|p| (p.to_string(), StatusCode::OK))
            .collect()
    }
}

/// Seconds the preStop hook sleeps (`exec: sleep N` or the `sleep` action).
fn pre_stop_seconds(container: &Yaml) -> u64 {
    let hook = &container["lifecycle"]["preStop"];
    if let Some(seconds) = hook["sleep"]["seconds"].as_u64() {
        return seconds;
    }
    let command: Vec<&str> = hook["exec"]["command"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .collect();
    match command.as_slice() {
        [sleep, n] if sleep.ends_with("sleep") => n.parse().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn kubernetes_example_agrees_with_officeswitch_settings() {
    let m = Manifests::load();
    let mut problems = Vec::new();
    for (file, doc) in &m.docs {
        for field in [&doc["apiVersion"], &doc["kind"], &doc["metadata"]["name"]] {
            if field.as_str().is_none_or(str::is_empty) {
                problems.push(format!(
                    "{file}: a document without apiVersion, kind or metadata.name"
                ));
            }
        }
    }
    if m.resources.iter().any(|r| r.contains("secret")) {
        problems
            .push("kustomization.yaml applies a Secret: key material is never committed".into());
    }
    let deployment = m.deployment();
    let pod = m.pod();
    let container = m.container();
    let config = m.config();

    // Several replicas, agreeing through a shared pin store that the example provides.
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    if replicas < 2 {
        problems.push(format!(
            "replicas: {replicas}; a load-balanced example runs 2 or more"
        ));
    }
    match &config.pins.store {
        PinStoreConfig::Redis(url) => {
            let url = url::Url::parse(url).expect("valid Redis URL");
            let host = url.host_str().unwrap_or_default();
            let service = host.split('.').next().unwrap_or_default();
            let port = url.port().unwrap_or(6379);
            let found = m.docs.iter().any(|(_, d)| {
                d["kind"] == "Service"
                    && d["metadata"]["name"] == service
                    && d["spec"]["ports"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .any(|p| p["port"].as_u64() == Some(u64::from(port)))
            });
            if !found {
                problems.push(format!(
                    "[pins] store names {host}:{port}, which no Service provides"
                ));
            }
        }
        PinStoreConfig::Memory if replicas > 1 => {
            problems.push("replicas share no pin store: [pins] store must be Redis".into());
        }
        PinStoreConfig::Memory => {}
    }

    // Labels tie the Deployment, Service and PodDisruptionBudget to the pods.
    let pod_labels = pod["metadata"]["labels"]
        .as_mapping()
        .cloned()
        .unwrap_or_default();
    let selects_pods = |selector: &Yaml| {
        selector
            .as_mapping()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| pod_labels.get(k) == Some(v)))
    };
    for (what, selector) in [
        ("Deployment", &deployment["spec"]["selector"]["matchLabels"]),
        (
            "Service",
            &m.find("Service", "officeswitch")["spec"]["selector"],
        ),
        (
            "PodDisruptionBudget",
            &m.find("PodDisruptionBudget", "officeswitch")["spec"]["selector"]["matchLabels"],
        ),
    ] {
        if !selects_pods(selector) {
            problems.push(format!(
                "the {what}'s selector does not select the officeswitch pods"
            ));
        }
    }

    // Ports: the container's, the probes' and the Service's are the ones officeswitch listens on.
    let listen = config.listen.expect("plain listener").port();
    if m.container_port("http") != Some(listen) {
        problems.push(format!("container port `http` is not {listen} (listen)"));
    }
    if let Some(admin) = &config.admin
        && m.container_port("admin") != Some(admin.listen.port())
    {
        problems.push(format!(
            "container port `admin` is not {} ([admin] listen)",
            admin.listen.port()
        ));
    }
    for port in m.find("Service", "officeswitch")["spec"]["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        if m.resolve_port(&port["targetPort"]) != Some(listen) {
            problems.push(format!(
                "Service targetPort {:?} is not {listen}",
                port["targetPort"]
            ));
        }
    }
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        if get["path"] != path {
            problems.push(format!(
                "{probe} asks {:?}, officeswitch answers it on {path}",
                get["path"]
            ));
        }
        if m.resolve_port(&get["port"]) != Some(listen) {
            problems.push(format!("{probe} port {:?} is not {listen}", get["port"]));
        }
    }

    // Draining: the probe sees /readyz fail before the listeners close, and the kubelet
    // waits for the preStop sleep plus the whole drain.
    let readiness = &container["readinessProbe"];
    let noticed = readiness["periodSeconds"].as_u64().unwrap_or(10)
        * readiness["failureThreshold"].as_u64().unwrap_or(3);
    if Duration::from_secs(noticed) > config.drain.delay {
        problems.push(format!(
            "the readiness probe needs {noticed} s to see /readyz fail, [drain] delay_secs closes the listeners after {:?}",
            config.drain.delay
        ));
    }
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    let pre_stop = pre_stop_seconds(container);
    if pre_stop == 0 {
        problems.push(
            "no preStop sleep: the endpoint removal must reach the load balancers first".into(),
        );
    }
    if Duration::from_secs(grace) <= Duration::from_secs(pre_stop) + config.drain.deadline {
        problems.push(format!(
            "terminationGracePeriodSeconds {grace} <= preStop {pre_stop} s + [drain] deadline {:?}",
            config.drain.deadline
        ));
    }

    // Files: rules from a ConfigMap that officeswitch's own loader accepts, keys from a
    // Secret that has them, state on a writable volume.
    match m.volume_at(&config.rules_dir) {
        Some((_, volume)) if !volume["configMap"].is_null() => {
            let name = volume["configMap"]["name"].as_str().unwrap_or_default();
            let dir = tempfile::tempdir().expect("temp dir");
            for (key, text) in m.find("ConfigMap", name)["data"]
                .as_mapping()
                .into_iter()
                .flatten()
            {
                let (Some(key), Some(text)) = (key.as_str(), text.as_str()) else {
                    continue;
                };
                std::fs::write(dir.path().join(key), text).expect("write rule file");
            }
            if let Err(e) = RuleSet::load(dir.path(), &config.pools) {
                problems.push(format!("ConfigMap {name} (rules): {e}"));
            }
        }
        _ => problems.push(format!(
            "rules_dir {} is not a mounted ConfigMap",
            config.rules_dir.display()
        )),
    }
    let mut key_files = vec![
        config.keys.proof_key.clone(),
        config.keys.token_secret.clone(),
    ];
    key_files.extend(config.keys.old_proof_key.clone());
    key_files.extend(config.keys.old_token_secret.clone());
    key_files.extend(config.admin.as_ref().map(|a| a.token_file.clone()));
    for path in key_files {
        let secret = m
            .file_source(&path)
            .and_then(|(volume, key)| Some((volume["secret"]["secretName"].as_str()?, key)));
        match secret {
            Some((name, key)) if m.data("Secret", name, &key).is_some() => {}
            Some((name, key)) => problems.push(format!(
                "{}: Secret {name} has no key {key}",
                path.display()
            )),
            None => problems.push(format!("{} is not mounted from a Secret", path.display())),
        }
    }
    if config.keys.generate_missing {
        problems.push("[keys] generate_missing: every replica would make its own key".into());
    }
    match m.volume_at(&config.state_dir) {
        Some((mount, volume))
            if mount["readOnly"] != true
                && (!volume["emptyDir"].is_null()
                    || !volume["persistentVolumeClaim"].is_null()) => {}
        _ => problems.push(format!(
            "state_dir {} is not a writable volume",
            config.state_dir.display()
        )),
    }

    // Security: the image's non-root user, a read-only root file system, nothing to escalate.
    let security = |key: &str| {
        let own = &container["securityContext"][key];
        if own.is_null() {
            pod["spec"]["securityContext"][key].clone()
        } else {
            own.clone()
        }
    };
    if security("runAsNonRoot") != true {
        problems.push("runAsNonRoot is not true".into());
    }
    if security("runAsUser").as_u64() != Some(dockerfile_uid()) {
        problems.push(format!(
            "runAsUser is not the image's user {}",
            dockerfile_uid()
        ));
    }
    for (key, expected) in [
        ("readOnlyRootFilesystem", true),
        ("allowPrivilegeEscalation", false),
    ] {
        if container["securityContext"][key] != expected {
            problems.push(format!("container securityContext.{key} is not {expected}"));
        }
    }
    if container["securityContext"]["capabilities"]["drop"][0] != "ALL" {
        problems.push("container capabilities do not drop ALL".into());
    }
    let kustomization = yaml_file("deploy/kubernetes/kustomization.yaml");
    let image = container["image"].as_str().unwrap_or_default();
    let renamed = kustomization["images"]
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|i| i["name"] == image);
    if !renamed {
        problems.push(format!(
            "image {image:?} is not set in kustomization.yaml's images"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn kubernetes_example_validates_against_the_api_schemas() {
    let dir = repo("deploy/kubernetes");
    // The applied objects are what kustomize renders; without kubectl, the files themselves.
    let rendered = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    let mut files = vec![
        rendered.path().to_path_buf(),
        dir.join("secret.example.yaml"),
    ];
    match run_tool(
        "kubectl",
        &["kustomize", "."],
        &dir,
        Duration::from_secs(60),
    ) {
        Some(out) => {
            assert!(out.success, "kubectl kustomize:\n{}", out.text);
            std::fs::write(rendered.path(), &out.stdout).expect("write rendered manifests");
            let kinds = out.stdout.matches("\nkind: ").count()
                + usize::from(out.stdout.starts_with("kind: "));
            assert!(
                kinds >= Manifests::load().docs.len() - 1,
                "kustomize rendered {kinds} objects:\n{}",
                out.stdout
            );
        }
        None => {
            skipped(
                "kubectl kustomize",
                "kubectl not installed; validating the files one by one",
            );
            files = Manifests::load()
                .resources
                .iter()
                .map(|r| dir.join(r))
                .chain([dir.join("secret.example.yaml")])
                .collect();
        }
    }
    let args: Vec<String> = ["--strict", "--quiet", "-k", "1.30.0"]
        .map(String::from)
        .into_iter()
        .chain(files.iter().map(|f| f.display().to_string()))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(out) = run_tool("kubernetes-validate", &args, &dir, Duration::from_secs(120)) else {
        skipped(
            "kubernetes-validate",
            "not installed (pip install kubernetes-validate==1.37.0)",
        );
        return;
    };
    assert!(out.success, "kubernetes-validate:\n{}", out.text);
    // And it does reject a wrong manifest, so a pass means something.
    let broken = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    std::fs::write(
        broken.path(),
        read("deploy/kubernetes/deployment.yaml")
            .replace("containerPort: 8080", "containerPort: http"),
    )
    .expect("write broken manifest");
    let out = run_tool(
        "kubernetes-validate",
        &[
            "--strict",
            "--quiet",
            "-k",
            "1.30.0",
            &broken.path().display().to_string(),
        ],
        &dir,
        Duration::from_secs(60),
    )
    .expect("kubernetes-validate ran a moment ago");
    assert!(
        !out.success,
        "kubernetes-validate accepted a string containerPort:\n{}",
        out.text
    );
}

// ---------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------

/// A unit file: section -> (key, value) in order (keys may repeat).
fn parse_unit(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            sections.entry(current.clone()).or_default();
        } else if let Some((key, value)) = line.split_once('=') {
            sections
                .entry(current.clone())
                .or_default()
                .push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    sections
}

/// A systemd time span (`90`, `90s`, `1min 30s`, `2m`) in seconds.
fn systemd_seconds(span: &str) -> Option<u64> {
    let mut total = 0;
    for part in span.split_whitespace() {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        let value: u64 = digits.parse().ok()?;
        total += value
            * match &part[digits.len()..] {
                "" | "s" | "sec" | "second" | "seconds" => 1,
                "m" | "min" | "minute" | "minutes" => 60,
                "h" | "hr" | "hour" | "hours" => 3600,
                _ => return None,
            };
    }
    Some(total)
}

const UNIT: &str = "deploy/systemd/officeswitch.service";

#[test]
fn systemd_unit_runs_officeswitch_with_room_for_the_drain() {
    let unit = parse_unit(&read(UNIT));
    let unit_name = Path::new(UNIT)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let mut problems = Vec::new();
    for section in ["Unit", "Service", "Install"] {
        if !unit.contains_key(section) {
            problems.push(format!("no [{section}] section"));
        }
    }
    let service = unit.get("Service").cloned().unwrap_or_default();
    let values = |key: &str| -> Vec<&str> {
        service
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let value = |key: &str| values(key).last().copied().unwrap_or_default();

    // ExecStart runs the binary on the example settings, which officeswitch's loader accepts.
    let exec: Vec<&str> = value("ExecStart").split_whitespace().collect();
    if !exec
        .first()
        .is_some_and(|b| b.starts_with('/') && b.ends_with("/officeswitch"))
    {
        problems.push(format!(
            "ExecStart {exec:?} does not run an absolute .../officeswitch"
        ));
    }
    let config_path = exec
        .iter()
        .position(|a| *a == "--config")
        .and_then(|at| exec.get(at + 1))
        .map(PathBuf::from)
        .expect("ExecStart passes --config");
    let config = Config::from_str(&config_path, &read("deploy/systemd/officeswitch.toml"))
        .unwrap_or_else(|e| panic!("deploy/systemd/officeswitch.toml: {e}"));

    if !matches!(value("Type"), "simple" | "exec") {
        problems.push(format!(
            "Type={}: officeswitch does not notify or fork",
            value("Type")
        ));
    }
    if value("KillSignal") != "SIGTERM" {
        problems.push("KillSignal is not SIGTERM (the drain signal)".into());
    }
    let reload = value("ExecReload");
    if !(reload.contains("kill") && reload.contains("-HUP") && reload.contains("$MAINPID")) {
        problems.push(format!("ExecReload={reload}: SIGHUP reloads the rules"));
    }
    match systemd_seconds(value("TimeoutStopSec")) {
        Some(stop) if Duration::from_secs(stop) > config.drain.deadline => {}
        other => problems.push(format!(
            "TimeoutStopSec {other:?} s is not longer than [drain] deadline {:?}",
            config.drain.deadline
        )),
    }

    // Identity and files: a non-root user whose state directory is state_dir, and key
    // files it can read (credentials of this unit, or its state directory).
    if value("DynamicUser") != "yes" && matches!(value("User"), "" | "root" | "0") {
        problems.push("neither DynamicUser=yes nor a non-root User=".into());
    }
    let state = format!("/var/lib/{}", value("StateDirectory"));
    if value("StateDirectory").is_empty() || config.state_dir != Path::new(&state) {
        problems.push(format!(
            "state_dir {} is not StateDirectory= ({state})",
            config.state_dir.display()
        ));
    }
    let credentials_dir = PathBuf::from(format!("/run/credentials/{unit_name}"));
    let credentials: BTreeSet<&str> = values("LoadCredential")
        .iter()
        .filter_map(|v| v.split_once(':').map(|(name, _)| name))
        .collect();
    let mut key_files = vec![
        config.keys.proof_key.clone(),
        config.keys.token_secret.clone(),
    ];
    key_files.extend(config.admin.as_ref().map(|a| a.token_file.clone()));
    for path in key_files {
        let credential = path
            .strip_prefix(&credentials_dir)
            .ok()
            .and_then(|p| p.to_str());
        let ok = match credential {
            Some(name) => credentials.contains(name),
            None => path.starts_with(&config.state_dir),
        };
        if !ok {
            problems.push(format!(
                "{}: neither a LoadCredential= of {unit_name} nor in the state directory",
                path.display()
            ));
        }
    }

    // Hardening.
    for (key, expected) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictSUIDSGID", "yes"),
    ] {
        if value(key) != expected {
            problems.push(format!("{key} is not {expected}"));
        }
    }
    let listen = config.listen.expect("plain listener").port();
    if listen < 1024 && !value("AmbientCapabilities").contains("CAP_NET_BIND_SERVICE") {
        problems.push(format!("listens on {listen} without CAP_NET_BIND_SERVICE"));
    }
    if value("LimitNOFILE").parse::<u64>().unwrap_or(0) < 16_384 {
        problems.push("LimitNOFILE below 16384: each WebSocket tunnel holds two sockets".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    // verify checks that the binaries exist: point the unit at the one cargo built.
    let dir = tempfile::tempdir().expect("temp dir");
    let unit_name = Path::new(UNIT).file_name().expect("unit file name");
    let unit = dir.path().join(unit_name);
    let text = read(UNIT).replace(
        "/usr/local/bin/officeswitch",
        env!("CARGO_BIN_EXE_officeswitch"),
    );
    std::fs::write(&unit, text).expect("write unit");
    let unit_arg = unit.display().to_string();
    let Some(out) = run_tool(
        "systemd-analyze",
        &["verify", &unit_arg],
        dir.path(),
        Duration::from_secs(60),
    ) else {
        skipped("systemd-analyze verify", "systemd-analyze not installed");
        return;
    };
    // verify exits 0 on unknown keys and bad values but names the file in its warnings.
    let name = unit_name.to_string_lossy();
    let warnings: Vec<&str> = out
        .text
        .lines()
        .filter(|l| l.contains(name.as_ref()))
        .collect();
    assert!(
        out.success && warnings.is_empty(),
        "systemd-analyze verify:\n{}",
        out.text
    );
}

// ---------------------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------------------

/// One `FROM` stage of a Dockerfile: its `FROM` arguments and instructions.
struct Stage {
    from: Vec<String>,
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all<'a>(&'a self, instruction: &'static str) -> impl Iterator<Item = &'a str> + 'a {
        self.instructions
            .iter()
            .filter(move |(i, _)| i == instruction)
            .map(|(_, args)| args.as_str())
    }

    fn last(&self, instruction: &'static str) -> Option<&str> {
        self.all(instruction).last()
    }

    /// The stage's name (`FROM image AS name`).
    fn name(&self) -> Option<&str> {
        match self.from.as_slice() {
            [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name),
            _ => None,
        }
    }
}

/// The Dockerfile's stages, with continuation lines joined and comments dropped.
fn dockerfile_stages() -> Vec<Stage> {
    let text = read("Dockerfile");
    let mut logical = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Docker drops comment lines, also inside a continued instruction.
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
        } else {
            pending.push_str(trimmed);
            if !pending.trim().is_empty() {
                logical.push(std::mem::take(&mut pending));
            }
            pending.clear();
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (instruction, args) = line.split_once(' ').unwrap_or((&line, ""));
        let instruction = instruction.to_ascii_uppercase();
        if instruction == "FROM" {
            stages.push(Stage {
                from: args.split_whitespace().map(String::from).collect(),
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage
                .instructions
                .push((instruction, args.trim().to_string()));
        }
    }
    stages
}

/// The numeric user the image runs as.
fn dockerfile_uid() -> u64 {
    let stages = dockerfile_stages();
    let user = stages
        .last()
        .and_then(|s| s.last("USER"))
        .expect("the final stage sets USER");
    user.split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user}: use a numeric uid so runAsNonRoot can check it"))
}

/// `.dockerignore` as Docker applies it: the last matching pattern wins, `!` re-includes,
/// and a pattern matching a directory covers everything in it.
fn docker_ignored(path: &str, patterns: &[String]) -> bool {
    let mut ignored = false;
    let components: Vec<&str> = path.trim_matches('/').split('/').collect();
    for pattern in patterns {
        let (include, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern.as_str()),
        };
        let pattern = pattern.trim_matches('/');
        let matches = (1..=components.len()).any(|n| {
            let prefix = components[..n].join("/");
            glob_match(pattern, &prefix)
        });
        if matches {
            ignored = !include;
        }
    }
    ignored
}

/// Docker's `filepath.Match` plus `**`: `*` within one path component, `**/` any depth.
fn glob_match(pattern: &str, path: &str) -> bool {
    if let Some(rest) = pattern.strip_prefix("**/") {
        let parts: Vec<&str> = path.split('/').collect();
        return (0..parts.len()).any(|i| glob_match(rest, &parts[i..].join("/")));
    }
    let (p_parts, s_parts): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    p_parts.len() == s_parts.len()
        && p_parts
            .iter()
            .zip(&s_parts)
            .all(|(p, s)| wildcard(p.as_bytes(), s.as_bytes()))
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

#[test]
fn dockerfile_builds_a_small_non_root_image_of_the_release_binary() {
    let stages = dockerfile_stages();
    let mut problems = Vec::new();
    assert!(
        stages.len() >= 2,
        "a multi-stage build: a Rust builder and a small runtime"
    );
    let builder = &stages[0];
    let runtime = stages.last().expect("a final stage");
    let builder_name = builder
        .name()
        .expect("the build stage is named (FROM ... AS builder)");
    if !builder
        .all("RUN")
        .any(|r| r.contains("cargo build --release --locked"))
    {
        problems.push("the builder does not run `cargo build --release --locked`".into());
    }
    // Dependencies are built in a layer before the sources are copied.
    let copies: Vec<&str> = builder.all("COPY").collect();
    let manifest = copies.iter().position(|c| c.contains("Cargo.lock"));
    let sources = copies.iter().position(|c| c.starts_with("src"));
    match (manifest, sources) {
        (Some(m), Some(s)) if m < s => {
            let between: Vec<&(String, String)> = builder
                .instructions
                .iter()
                .skip_while(|(i, a)| !(i == "COPY" && a.contains("Cargo.lock")))
                .take_while(|(i, a)| !(i == "COPY" && a.starts_with("src")))
                .collect();
            if !between
                .iter()
                .any(|(i, a)| i == "RUN" && a.contains("cargo build"))
            {
                problems.push("no dependency build between copying Cargo.lock and src".into());
            }
        }
        _ => problems
            .push("Cargo.toml/Cargo.lock are not copied before src (dependency layer)".into()),
    }
    let base = runtime.from.first().map(String::as_str).unwrap_or_default();
    if !(base.contains("slim") || base.contains("distroless")) {
        problems.push(format!(
            "runtime image {base}: use a slim or distroless base"
        ));
    }
    let binary_copy = runtime.all("COPY").find(|c| {
        c.starts_with(&format!("--from={builder_name} ")) && c.contains("release/officeswitch")
    });
    let binary = binary_copy
        .and_then(|c| c.split_whitespace().last())
        .expect("the runtime copies target/release/officeswitch from the builder");
    let entrypoint = runtime.last("ENTRYPOINT").unwrap_or_default();
    if !entrypoint.contains(binary) {
        problems.push(format!("ENTRYPOINT {entrypoint} does not run {binary}"));
    }
    if dockerfile_uid() == 0 {
        problems.push("USER is root".into());
    }
    if runtime.last("STOPSIGNAL") != Some("SIGTERM") {
        problems.push("STOPSIGNAL is not SIGTERM".into());
    }

    // The default configuration: where the image puts it, what it listens on, its rules.
    let config_copy = runtime
        .all("COPY")
        .find(|c| c.starts_with("deploy/docker/officeswitch.toml"))
        .expect("the runtime copies deploy/docker/officeswitch.toml");
    let config_path = PathBuf::from(config_copy.split_whitespace().last().unwrap_or_default());
    let config = Config::from_str(&config_path, &read("deploy/docker/officeswitch.toml"))
        .unwrap_or_else(|e| panic!("deploy/docker/officeswitch.toml: {e}"));
    if runtime.last("WORKDIR").map(Path::new) != config_path.parent() {
        problems.push(format!(
            "WORKDIR is not {}: `docker run IMAGE check-config` reads officeswitch.toml there",
            config_path.parent().unwrap_or(Path::new("")).display()
        ));
    }
    let listen = config.listen.expect("plain listener");
    if !listen.ip().is_unspecified() {
        problems.push(format!(
            "listen {listen}: a container must listen on all addresses"
        ));
    }
    let exposed: Vec<&str> = runtime
        .all("EXPOSE")
        .flat_map(str::split_whitespace)
        .collect();
    if !exposed
        .iter()
        .any(|p| p.split('/').next() == Some(&listen.port().to_string()))
    {
        problems.push(format!(
            "EXPOSE {exposed:?} does not include {}",
            listen.port()
        ));
    }
    let rules_copy = runtime.all("COPY").find(|c| c.starts_with("rules"));
    match rules_copy.and_then(|c| c.split_whitespace().last()) {
        Some(dest) if Path::new(dest.trim_end_matches('/')) == config.rules_dir => {}
        other => problems.push(format!(
            "rules/ is copied to {other:?}, rules_dir is {}",
            config.rules_dir.display()
        )),
    }
    if let Err(e) = RuleSet::load(&repo("rules"), &config.pools) {
        problems.push(format!(
            "the image's rules do not load with its settings: {e}"
        ));
    }
    let state = config.state_dir.display().to_string();
    if !runtime.all("VOLUME").any(|v| v.contains(&state)) {
        problems.push(format!("state_dir {state} is not a VOLUME"));
    }
    if !runtime
        .all("RUN")
        .any(|r| r.contains(&state) && (r.contains("install -d -o") || r.contains("chown")))
    {
        problems.push(format!(
            "state_dir {state} is not created for the image's user"
        ));
    }
    for key in [&config.keys.proof_key, &config.keys.token_secret] {
        if key.starts_with(&config.state_dir) && !config.keys.generate_missing {
            problems.push(format!(
                "{} is in the state volume but generate_missing is off",
                key.display()
            ));
        }
    }

    // The build context: what the Dockerfile copies is in it, build output is not.
    let patterns: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    for path in [
        "target",
        "target/release/officeswitch",
        "state/keys/proof_key.pem",
    ] {
        if !docker_ignored(path, &patterns) {
            problems.push(format!(".dockerignore lets {path} into the build context"));
        }
    }
    for stage in &stages {
        for copy in stage.all("COPY").filter(|c| !c.starts_with("--from")) {
            let words: Vec<&str> = copy
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            for source in &words[..words.len().saturating_sub(1)] {
                if !repo(source).exists() {
                    problems.push(format!("COPY {source}: no such file in the repository"));
                } else if docker_ignored(source, &patterns) {
                    problems.push(format!("COPY {source}: excluded by .dockerignore"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn dockerignore_matching_follows_docker() {
    let patterns: Vec<String> = ["*", "!src/", "!deploy/docker/", "target/", "**/*.pem"]
        .map(String::from)
        .into();
    assert!(docker_ignored("target", &patterns));
    assert!(docker_ignored("README.md", &patterns));
    assert!(docker_ignored("deploy/kubernetes/config.yaml", &patterns));
    assert!(!docker_ignored(
        "deploy/docker/officeswitch.toml",
        &patterns
    ));
    assert!(!docker_ignored("src/main.rs", &patterns));
    assert!(docker_ignored("src/keys/a.pem", &patterns));
}

#[test]
fn docker_image_builds_and_runs_as_non_root() {
    let root = repo("");
    let engine = run_tool(
        "docker",
        &["info", "--format", "{{.ServerVersion}}"],
        &root,
        Duration::from_secs(20),
    );
    match engine {
        Some(out) if out.success => {}
        Some(out) => {
            skipped(
                "docker build",
                &format!(
                    "no Docker engine ({})",
                    out.stderr
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("docker info failed")
                ),
            );
            return;
        }
        None => {
            skipped("docker build", "no docker client installed");
            return;
        }
    }
    let tag = format!("officeswitch-packaging-test:{}", std::process::id());
    let build = run_tool(
        "docker",
        &["build", "-t", &tag, "."],
        &root,
        Duration::from_secs(40 * 60),
    )
    .expect("docker answered a moment ago");
    assert!(build.success, "docker build:\n{}", build.text);
    let docker_run = |args: &[&str]| {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        run_tool("docker", &all, &root, Duration::from_secs(60)).expect("docker")
    };
    let version = docker_run(&[&tag, "--version"]);
    let check = docker_run(&[&tag, "check-config"]);
    let uid = docker_run(&["--entrypoint", "id", &tag, "-u"]);
    let _ = run_tool(
        "docker",
        &["rmi", "-f", &tag],
        &root,
        Duration::from_secs(60),
    );
    assert!(
        version.success && version.stdout.contains(env!("CARGO_PKG_VERSION")),
        "officeswitch --version in the image:\n{}",
        version.text
    );
    assert!(check.success, "check-config in the image:\n{}", check.text);
    assert_eq!(
        uid.stdout.trim(),
        dockerfile_uid().to_string(),
        "{}",
        uid.text
    );
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A path in the repository.
fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml_file(path: &str) -> Yaml {
    yaml_serde::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_file(path: &str) -> Json {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Says on the process's stderr (past the test harness's capture, so CI logs show it)
/// that a check did not run and why.
fn skipped(check: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "packaging: {check}: skipped: {why}");
}

/// A finished external command.
struct ToolOutput {
    success: bool,
    stdout: String,
    stderr: String,
    /// Exit status, standard output and error, for messages.
    text: String,
}

/// Runs `program args` in `dir`, killed after `timeout`; `None` when `program` is not
/// installed.
fn run_tool(program: &str, args: &[&str], dir: &Path, timeout: Duration) -> Option<ToolOutput> {
    // Output goes to files, not pipes: a chatty tool cannot fill a pipe and stall.
    let mut stdout = tempfile::tempfile().expect("temp file");
    let mut stderr = tempfile::tempfile().expect("temp file");
    let spawned = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("temp file"))
        .stderr(stderr.try_clone().expect("temp file"))
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("{program}: {e}"),
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read_back = |file: &mut File| {
        let mut text = String::new();
        file.rewind().expect("rewind");
        file.read_to_string(&mut text).expect("tool output");
        text
    };
    let out = read_back(&mut stdout);
    let err = read_back(&mut stderr);
    Some(ToolOutput {
        success: status.success(),
        text: format!("{status}\n{out}{err}"),
        stdout: out,
        stderr: err,
    })
}
