//! The Grafana dashboard and the Prometheus alerts against the live `/metrics`.

use super::kubernetes::Manifests;
use super::*;

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
            WopiEndpoint::Settings,
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
            set(&["token", "proof", "rules", "dialect"]),
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
    let admin = os.admin_addr();
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
