//! Phase 2: choose the suite and the node a request goes to.
//!
//! - An **open** (form POST to an officeswitch `urlsrc`) names its format and action in the
//!   path and its document in `WOPISrc`: the organisation owning the WOPISrc origin picks
//!   the suite (its overrides, then the defaults) in [`RouteContext::open_plan`]; the node
//!   comes from the document's pin ([`crate::sticky::pins`]), then
//!   [`RouteContext::open_on`] finds the suite's `urlsrc` on it.
//! - **Editor traffic** names its suite by its URL space (classify) and its document by
//!   `WOPISrc` (or OnlyOffice's `shardkey`) in the query: rendezvous hashing of the document
//!   over the suite's nodes (or the organisation's pinned subset) gives the node a document
//!   goes to when it has no pin yet, the same on every instance.
//! - Versioned **assets** without a document go to a node that serves that version;
//!   **stateless** calls (convert-to) are spread over the pool.
//!
//! The key of a document is its **file id** ([`TokenKeys::file_id`]): the open names the
//! host's `WOPISrc`, from which the id is derived; the editor only ever sees officeswitch's
//! `WOPISrc`, which ends in that id and whose first characters name the organisation
//! ([`OrgTags`]). A host `WOPISrc` in editor traffic maps to the same id.
//!
//! No header or URL is changed here: that is [`super::rewrite`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use percent_encoding::percent_decode_str;
use url::Url;

use super::answer::Answer;
use super::classify::{self, EditorRequest, Traffic, query_param};
use crate::config::{PoolConfig, SuiteKind};
use crate::discovery::document::{Action, Discovery};
use crate::discovery::open_url::{FileFormat, OpenUrl};
use crate::discovery::service::{Catalog, PoolSource, PoolState};
use crate::metrics::NodeSeries;
use crate::rules::{Organisation, RuleSet};
use crate::sticky::health::Health;
use crate::sticky::hrw;
use crate::sticky::pins::Placement;
use crate::topology::{Topology, TopologyStore};
use crate::upstream::node_address::NodeAddress;
use crate::wopi::token::{self, FileId, TokenKeys};
use crate::wopi::wopi_src::{self, DocRef, WopiSrc};

/// Where a request goes. Pool and node are indices into the topology the request started
/// with, which it keeps to its end, so routing a request copies no string.
#[derive(Debug, Clone)]
pub struct Target {
    /// The topology routing read.
    pub topology: Arc<Topology>,
    /// Suite of the chosen pool.
    pub suite: SuiteKind,
    /// Index of the chosen pool in the configured pools.
    pub pool: usize,
    /// Index of the chosen node in that pool's nodes.
    pub node: usize,
    /// Organisation owning the document, when the request names one.
    pub org: Option<Arc<str>>,
    /// For opens: the chosen suite's `urlsrc` on the chosen node (placeholders still in).
    pub urlsrc: Option<String>,
    /// The document's file id, when the request names one: the key of its pin.
    pub file: Option<FileId>,
    /// For opens: the host's `WOPISrc` as the host wrote it (decoded once), which
    /// officeswitch calls and signs for; with [`Target::file`], what translation mints.
    pub host_wopi_src: Option<String>,
}

/// Editor traffic as routing leaves it.
#[derive(Debug)]
pub enum EditorRoute {
    /// Traffic without a document (assets, conversions, a shard key of no known document):
    /// its node is chosen.
    Node(Target),
    /// A document's traffic: its pool is chosen, its node is the document's placement's
    /// ([`crate::sticky::pins::Stickiness::node_for_traffic`]).
    Document(DocumentRoute),
}

/// A document's editor traffic before placement.
#[derive(Debug)]
pub struct DocumentRoute {
    /// The topology routing read.
    pub topology: Arc<Topology>,
    /// Suite of the pool.
    pub suite: SuiteKind,
    /// Index of the pool the organisation's rules give this suite's traffic.
    pub pool: usize,
    /// The organisation owning the document.
    pub org: Arc<str>,
    /// The document: the key of its pin.
    pub file: FileId,
}

impl DocumentRoute {
    /// The target once placement chose `placed` (maybe a sibling pool of the suite that
    /// holds the document's pin); the topology is taken from `store` when this one
    /// predates the node.
    pub fn placed(self, placed: Placement, store: &TopologyStore) -> Target {
        let mut target = Target {
            topology: self.topology,
            suite: self.suite,
            pool: placed.pool,
            node: 0,
            org: Some(self.org),
            urlsrc: None,
            file: Some(self.file),
            host_wopi_src: None,
        };
        target.place(placed.node, store);
        target
    }
}

/// An open request, read: what it opens, for whom, and which pool the rules give it.
#[derive(Debug)]
pub struct OpenPlan {
    /// The document.
    pub file: FileId,
    /// Its organisation.
    pub org: Arc<str>,
    /// The pool the rules give its format.
    pub pool: usize,
    /// The extension that decided it.
    ext: Option<String>,
    /// The host's `WOPISrc`, as written.
    host_wopi_src: String,
    /// Format and action.
    open: OpenUrl,
}

impl Target {
    /// The chosen pool.
    pub fn pool_config(&self) -> &PoolConfig {
        &self.topology.pools()[self.pool]
    }

    /// The chosen node's address, as requests to it are built.
    ///
    /// # Errors
    /// 502 when the node's URL cannot be a request URI's origin (a configuration problem).
    pub fn node_address(&self) -> Result<&NodeAddress, Answer> {
        self.topology.address(self.pool, self.node).map_err(|why| {
            Answer::BadGateway(format!(
                "node URL {} is not a request URI: {why}",
                self.node_url()
            ))
        })
    }

    /// The chosen node's request metrics.
    pub fn node_series(&self) -> Option<&Arc<NodeSeries>> {
        self.topology.series(self.pool, self.node)
    }

    /// The chosen node's base URL.
    pub fn node_url(&self) -> &Url {
        &self.pool_config().nodes[self.node]
    }

    /// Sends it to node `node` of its pool, as pins decided; takes the current topology
    /// from `store` when this one predates the node (topologies only grow).
    pub fn place(&mut self, node: usize, store: &TopologyStore) {
        self.node = node;
        if node >= self.pool_config().nodes.len() {
            self.topology = store.current();
        }
    }
}

/// Which organisation a file id belongs to: file ids start with their organisation's
/// tag ([`TokenKeys::org_tag`]). Built once per rules generation (hundreds of HMACs, a
/// fraction of a millisecond), so routing a file id is one map lookup.
pub struct OrgTags {
    rules: Arc<RuleSet>,
    by_tag: HashMap<String, usize>,
}

impl OrgTags {
    /// The tags of every organisation in `rules`.
    pub fn new(rules: Arc<RuleSet>, tokens: &TokenKeys) -> OrgTags {
        let by_tag = rules
            .organisation_list()
            .iter()
            .enumerate()
            .map(|(i, org)| (tokens.org_tag(org.name()), i))
            .collect();
        OrgTags { rules, by_tag }
    }

    /// Whether these tags were built for `rules`.
    pub fn is_for(&self, rules: &Arc<RuleSet>) -> bool {
        Arc::ptr_eq(&self.rules, rules)
    }

    /// The organisation whose tag starts `file_id`.
    fn organisation(&self, file_id: &str) -> Option<&Organisation> {
        let tag = file_id.get(..token::ORG_TAG_LEN)?;
        let index = *self.by_tag.get(tag)?;
        self.rules.organisation_list().get(index)
    }
}

/// What the router reads: settings, rules and discoveries as of the request's start.
pub struct RouteContext<'a> {
    /// Pools and nodes in force for this request.
    pub topology: &'a Arc<Topology>,
    /// Rules in force for this request.
    pub rules: &'a RuleSet,
    /// Discoveries in force for this request.
    pub catalog: &'a Catalog,
    /// Round-robin counters for stateless requests, one per pool (a shared one let mixed
    /// traffic of two pools land on one node of each, alternating).
    pub spread: &'a [AtomicUsize],
    /// Derives file ids from host `WOPISrc`s.
    pub tokens: &'a TokenKeys,
    /// Organisations by file id, for these rules.
    pub org_tags: &'a OrgTags,
    /// `{public_url}wopi/files/`: what officeswitch's own `WOPISrc`s start with.
    pub files_base: &'a str,
    /// Node health: requests any node can serve (assets, stateless calls) avoid nodes
    /// marked down, so a crashed node does not break the pages of documents that moved.
    pub health: &'a Health,
}

impl<'a> RouteContext<'a> {
    /// The pools of [`RouteContext::topology`].
    fn pools(&self) -> &'a [PoolConfig] {
        self.topology.pools()
    }

    /// Reads an open request (`path` is under `/officeswitch/open/`): the format and
    /// action, the document and its organisation, and the pool the rules give the format.
    /// The node is chosen afterwards (pins, health), then [`RouteContext::open_on`].
    ///
    /// # Errors
    /// The [`Answer`] to send instead: 404 for a path that is not an open URL or a format
    /// no suite opens, 400 for a missing or malformed WOPISrc, 403 for an origin no rule
    /// names.
    pub fn open_plan(&self, path: &str, query: Option<&str>) -> Result<OpenPlan, Answer> {
        let open = OpenUrl::parse_path(path).ok_or(Answer::NotFound)?;
        let raw = query
            .and_then(|q| query_param(q, "WOPISrc"))
            .ok_or(Answer::BadRequest("the open request has no WOPISrc"))?;
        if wopi_src::own_file_id(raw, self.files_base).is_some() {
            return Err(Answer::BadRequest(
                "the open names an officeswitch WOPISrc, not the host's",
            ));
        }
        let (org, file_id) = self
            .document(Some(raw))?
            .ok_or(Answer::BadRequest("the open request has no WOPISrc"))?;
        let (pool, ext) = self.pool_for_format(org, &open.format)?;
        Ok(OpenPlan {
            file: FileId::parse(&file_id).ok_or(Answer::UnknownFile)?,
            org: org.shared_name(),
            pool: self.index_of(pool),
            ext,
            host_wopi_src: host_wopi_src(raw)?,
            open,
        })
    }

    /// The nodes of pool `pool` the organisation of `plan` may use.
    pub fn allowed_nodes(&self, org: &str, pool: usize) -> &[Url] {
        let pool = &self.pools()[pool];
        nodes_for(pool, self.rules.organisation_named(org))
    }

    /// The other pool that can open the plan's format, for suite failover.
    pub fn failover_pool(&self, plan: &OpenPlan) -> Option<usize> {
        let format_ok = |pool: &PoolConfig| {
            let state = self.pool_state(pool).ok()?;
            let source = state.source.as_deref()?;
            find_action(
                &source.discovery,
                &plan.open.format,
                plan.ext.as_deref(),
                "edit",
            )
            .filter(|a| a.name == "edit")
        };
        self.pools()
            .iter()
            .enumerate()
            .find(|(i, pool)| *i != plan.pool && format_ok(pool).is_some())
            .map(|(i, _)| i)
    }

    /// The open of `plan` on node `node` of pool `pool`: the suite's real `urlsrc` there.
    ///
    /// # Errors
    /// 503 when the pool has no discovery yet, 404 when it cannot open the format, 502
    /// for an unusable `urlsrc`.
    pub fn open_on(&self, plan: OpenPlan, pool: usize, node: usize) -> Result<Target, Answer> {
        let config = &self.pools()[pool];
        let node_url = config
            .nodes
            .get(node)
            .ok_or_else(|| Answer::NoNode(config.name.clone()))?;
        let state = self.pool_state(config)?;
        let source = node_source(config, state, node_url)
            .ok_or_else(|| Answer::NoDiscovery(config.name.clone()))?;
        let open = &plan.open;
        let action = find_action(
            &source.discovery,
            &open.format,
            plan.ext.as_deref(),
            &open.action,
        )
        .ok_or_else(|| {
            Answer::NoAction(format!(
                "{} cannot {} {}",
                config.name,
                open.action,
                format_name(&open.format)
            ))
        })?;
        let urlsrc = rebase(&action.urlsrc, &source.node, node_url)
            .ok_or_else(|| Answer::BadGateway(format!("unusable urlsrc {}", action.urlsrc)))?;
        Ok(Target {
            topology: Arc::clone(self.topology),
            suite: config.kind,
            pool,
            node,
            org: Some(plan.org),
            urlsrc: Some(urlsrc),
            file: Some(plan.file),
            host_wopi_src: Some(plan.host_wopi_src),
        })
    }

    /// Routes editor traffic: a document's to its pool, where its placement picks the node
    /// ([`EditorRoute::Document`]); traffic without a document to a node of its suite's pool.
    ///
    /// # Errors
    /// 404 when no pool runs that suite, 400 for a malformed WOPISrc, 403 for an origin no
    /// rule names, 503 when the pool has no node.
    pub fn editor(
        &self,
        request: &EditorRequest<'_>,
        path: &str,
        query: Option<&str>,
    ) -> Result<EditorRoute, Answer> {
        if !self.pools().iter().any(|p| p.kind == request.suite) {
            return Err(Answer::NotFound);
        }
        // `hexify_embedded_urls`: the WOPISrc is only inside the hex path segment.
        let hexified = match (request.suite, request.key) {
            (SuiteKind::Collabora, None) => classify::hexified_wopi_src(path),
            _ => None,
        };
        let raw = query
            .and_then(|q| query_param(q, "WOPISrc"))
            .or(hexified.as_deref());
        let document = match self.document(raw)? {
            Some(document) => Some(document),
            None => request.key.and_then(|key| self.shard_document(key)),
        };
        let pool = self
            .pool_for_traffic(request, document.as_ref().map(|(org, _)| *org))
            .ok_or(Answer::NotFound)?;
        let no_node = || Answer::NoNode(pool.name.clone());
        if let Some((org, file_id)) = document {
            // Which node: the document's placement decides (its pin, else rendezvous
            // hashing over the nodes that take it), not routing.
            let file = FileId::parse(&file_id).ok_or(Answer::UnknownFile)?;
            return Ok(EditorRoute::Document(DocumentRoute {
                topology: Arc::clone(self.topology),
                suite: pool.kind,
                pool: self.index_of(pool),
                org: org.shared_name(),
                file,
            }));
        }
        let node = if let Some(shard) = request.key {
            // OnlyOffice's shard key outside WOPI: an opaque document key, same hash.
            let member = self.member_in(pool);
            hrw::pick_where(shard.as_bytes(), &pool.nodes, member).ok_or_else(no_node)?
        } else {
            match request.kind {
                Traffic::Stateless => self.spread(pool).ok_or_else(no_node)?,
                _ => self
                    .by_version(pool, request.version, path)
                    .ok_or_else(no_node)?,
            }
        };
        Ok(EditorRoute::Node(Target {
            topology: Arc::clone(self.topology),
            suite: pool.kind,
            pool: self.index_of(pool),
            node,
            org: None,
            urlsrc: None,
            file: None,
            host_wopi_src: None,
        }))
    }

    /// The pool of the request's suite it goes to when no pin says otherwise: the one the
    /// organisation's rules prefer for a document's traffic, the one serving the asset's
    /// version (several pools of one suite may run different versions), else the most
    /// preferred pool of the suite.
    fn pool_for_traffic(
        &self,
        request: &EditorRequest<'_>,
        org: Option<&Organisation>,
    ) -> Option<&'a PoolConfig> {
        let pools = self.pools();
        if org.is_none()
            && request.kind != Traffic::Stateless
            && let Some(version) = request.version
        {
            let serving = pools
                .iter()
                .filter(|p| p.kind == request.suite)
                .find(|pool| {
                    self.catalog
                        .pools
                        .iter()
                        .find(|state| state.name == pool.name)
                        .is_some_and(|state| {
                            state
                                .nodes
                                .iter()
                                .flatten()
                                .any(|source| serves_version(pool.kind, source, version))
                        })
                });
            if serving.is_some() {
                return serving;
            }
        }
        self.rules.pool_of_kind(org, request.suite, pools)
    }

    /// The document a request's raw `WOPISrc` names: its organisation and file id; `None`
    /// without a `WOPISrc`. officeswitch's own `WOPISrc` (what editors carry) gives its
    /// id without allocating; a host `WOPISrc` (opens) is checked, its organisation found
    /// by origin, and its id derived.
    ///
    /// # Errors
    /// 400 for an unusable `WOPISrc` or a malformed file id, 403 for an origin or file id
    /// no organisation owns.
    fn document<'q>(
        &self,
        raw: Option<&'q str>,
    ) -> Result<Option<(&Organisation, Cow<'q, str>)>, Answer> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        if let Some(id) = wopi_src::own_file_id(raw, self.files_base) {
            if !token::is_file_id(id) {
                return Err(Answer::BadWopiSrc("malformed file id".into()));
            }
            let org = self.org_tags.organisation(id).ok_or(Answer::UnknownFile)?;
            return Ok(Some((org, Cow::Borrowed(id))));
        }
        let (org, id) = wopi_src::with_key(raw, |doc| {
            let org = self.organisation(&doc)?;
            let key = std::str::from_utf8(doc.key).unwrap_or_default();
            Ok((org, self.tokens.file_id(org.name(), key)))
        })
        .map_err(|e| Answer::BadWopiSrc(e.to_string()))??;
        Ok(Some((org, Cow::Owned(id))))
    }

    /// The document an ONLYOFFICE `shardkey` names. Under WOPI its document id is the last
    /// segment of the `WOPISrc` (officeswitch's file id), or `view.<id>.<version>` for a
    /// read-only open; cache URLs that carry only `shardkey=` then follow the document's
    /// pin like those with a `WOPISrc`. `None` for a key that holds no known file id.
    fn shard_document<'q>(&self, key: &'q str) -> Option<(&Organisation, Cow<'q, str>)> {
        key.split('.').find_map(|part| {
            if !token::is_file_id(part) {
                return None;
            }
            let org = self.org_tags.organisation(part)?;
            Some((org, Cow::Borrowed(part)))
        })
    }

    /// The index of `pool` (one of [`RouteContext::pools`]).
    fn index_of(&self, pool: &PoolConfig) -> usize {
        self.pools()
            .iter()
            .position(|p| std::ptr::eq(p, pool))
            .unwrap_or_default()
    }

    /// The organisation owning the document's origin, or 403.
    fn organisation(&self, doc: &DocRef<'_>) -> Result<&Organisation, Answer> {
        self.rules
            .organisation_for_origin(doc.scheme, doc.host, doc.port)
            .ok_or_else(|| Answer::UnknownOrigin(doc.origin()))
    }

    /// The pool that opens `format` for `org`, and the extension that decided it.
    fn pool_for_format(
        &self,
        org: &Organisation,
        format: &FileFormat,
    ) -> Result<(&PoolConfig, Option<String>), Answer> {
        let exts: Vec<String> = match format {
            FileFormat::Ext(e) => vec![e.clone()],
            FileFormat::Mime(m) => mime_guess::get_mime_extensions_str(m)
                .unwrap_or_default()
                .iter()
                .map(|e| e.to_ascii_lowercase())
                .collect(),
        };
        let by_rules = exts
            .iter()
            .find_map(|e| self.rules.pool_for(org, e).map(|p| (p, Some(e.clone()))));
        // A format no rule names goes where the merged discovery put it.
        let by_discovery = || {
            let owners = &self.catalog.merged.as_ref()?.owners;
            owners
                .get(format)
                .map(|p| (p.as_str(), exts.first().cloned()))
        };
        let (name, ext) = by_rules
            .or_else(by_discovery)
            .ok_or_else(|| Answer::NoAction(format!("no suite opens {}", format_name(format))))?;
        let pool = self
            .pools()
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Answer::NoNode(name.to_string()))?;
        Ok((pool, ext))
    }

    fn pool_state(&self, pool: &PoolConfig) -> Result<&PoolState, Answer> {
        self.catalog
            .pools
            .iter()
            .find(|p| p.name == pool.name)
            .ok_or_else(|| Answer::NoDiscovery(pool.name.clone()))
    }

    /// Round robin over the pool's nodes that take new work, for requests any node can
    /// serve; over its other members when none does (the request then fails as the node
    /// would). Never a node gone from the topology.
    fn spread(&self, pool: &PoolConfig) -> Option<usize> {
        let n = pool.nodes.len();
        if n == 0 {
            return None;
        }
        let healthy = self.healthy_in(pool);
        let member = self.member_in(pool);
        let counter = self
            .pools()
            .iter()
            .position(|p| p.name == pool.name)
            .and_then(|i| self.spread.get(i))?;
        let start = counter.fetch_add(1, Ordering::Relaxed);
        let order = || (0..n).map(|k| (start + k) % n);
        order()
            .find(|&i| healthy(i))
            .or_else(|| order().find(|&i| member(i)))
    }

    /// A node for asset `version` (hashing the path, for cache locality): a node taking
    /// new work that serves that version, else any node taking new work (coolwsd and
    /// ONLYOFFICE's nginx serve an asset whatever version its path names), else a member
    /// serving the version, else any member.
    fn by_version(&self, pool: &PoolConfig, version: Option<&str>, path: &str) -> Option<usize> {
        let key = path.as_bytes();
        let healthy = self.healthy_in(pool);
        let member = self.member_in(pool);
        let state = self.catalog.pools.iter().find(|p| p.name == pool.name);
        if let (Some(version), Some(state)) = (version, state) {
            let serves = |i: usize| {
                state
                    .nodes
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| serves_version(pool.kind, s, version))
            };
            // The first healthy node by rank, when it serves the version, is the first
            // healthy one that does: one version check in the common case.
            let first = hrw::pick_where(key, &pool.nodes, &healthy);
            if first.is_some_and(serves) {
                return first;
            }
            return hrw::pick_where(key, &pool.nodes, |i| serves(i) && healthy(i))
                .or_else(|| hrw::pick_where(key, &pool.nodes, &healthy))
                .or_else(|| hrw::pick_where(key, &pool.nodes, |i| serves(i) && member(i)))
                .or_else(|| hrw::pick_where(key, &pool.nodes, &member));
        }
        hrw::pick_where(key, &pool.nodes, &healthy)
            .or_else(|| hrw::pick_where(key, &pool.nodes, &member))
    }

    /// Whether node `i` of `pool` takes new work: healthy, listed, not draining.
    fn healthy_in(&self, pool: &PoolConfig) -> impl Fn(usize) -> bool {
        let (health, index) = (self.health, self.index_of(pool));
        move |i| health.takes_new_documents(index, i)
    }

    /// Whether node `i` of `pool` is still a member of the topology (not gone).
    fn member_in(&self, pool: &PoolConfig) -> impl Fn(usize) -> bool {
        let (health, index) = (self.health, self.index_of(pool));
        move |i| health.is_member(index, i)
    }
}

/// The host's `WOPISrc` as the host wrote it: `raw` decoded once, when that is the
/// URL [`WopiSrc::parse`] accepts; else (encoded more than once) the parsed URL.
///
/// # Errors
/// 400 when `raw` is not a usable `WOPISrc`.
fn host_wopi_src(raw: &str) -> Result<String, Answer> {
    let parsed = WopiSrc::parse(raw).map_err(|e| Answer::BadWopiSrc(e.to_string()))?;
    let once = percent_decode_str(raw).decode_utf8_lossy();
    match WopiSrc::parse(&once) {
        Ok(same) if same == parsed && !once.contains('%') => Ok(once.into_owned()),
        _ => Ok(parsed.url().to_string()),
    }
}

/// The nodes `org` may use in `pool`: its pinned subset, else all.
fn nodes_for<'a>(pool: &'a PoolConfig, org: Option<&'a Organisation>) -> &'a [Url] {
    org.and_then(|o| o.pinned_nodes(&pool.name))
        .unwrap_or(&pool.nodes)
}

/// The discovery to take a node's `urlsrc` from: its own, else the pool's.
fn node_source<'a>(pool: &PoolConfig, state: &'a PoolState, node: &Url) -> Option<&'a PoolSource> {
    let own = pool
        .nodes
        .iter()
        .position(|n| n == node)
        .and_then(|i| state.nodes.get(i))
        .and_then(Option::as_deref);
    own.or(state.source.as_deref())
}

/// The action to open: the named action of the format, else the format's first action
/// (what richdocuments itself would take); formats named by MIME type fall back to the
/// extension the rules used.
fn find_action<'a>(
    discovery: &'a Discovery,
    format: &FileFormat,
    ext: Option<&str>,
    action: &str,
) -> Option<&'a Action> {
    let by_mime = |mime: &str| {
        let actions: Vec<&Action> = discovery
            .apps
            .iter()
            .filter(|a| a.name == mime)
            .flat_map(|a| &a.actions)
            .collect();
        actions
            .iter()
            .find(|a| a.name == action)
            .or(actions.first())
            .copied()
    };
    let by_ext = |ext: &str| {
        let mut actions = discovery
            .apps
            .iter()
            .filter(|a| !a.name.contains('/'))
            .flat_map(|a| &a.actions)
            .filter(|a| a.ext == ext);
        let first = actions.clone().next();
        actions.find(|a| a.name == action).or(first)
    };
    match format {
        FileFormat::Mime(mime) => by_mime(mime).or_else(|| ext.and_then(by_ext)),
        FileFormat::Ext(e) => by_ext(e),
    }
}

/// `urlsrc` as served by `from`, moved onto node `to` (same path below the node base).
/// The query is kept verbatim: its `<name=PLACEHOLDER&>` blocks must survive unencoded.
///
/// The path is appended to `to`, never resolved against it: a node's discovery is not to
/// be trusted with the authority (`///host:port/...` or `/\\host/...` would resolve to
/// another host). `None` for a path that is not a plain absolute path.
fn rebase(urlsrc: &str, from: &Url, to: &Url) -> Option<String> {
    let (location, query) = match urlsrc.split_once('?') {
        Some((l, q)) => (l, Some(q)),
        None => (urlsrc, None),
    };
    if location.contains('\\') {
        return None;
    }
    let parsed = Url::parse(location).ok()?;
    let path = parsed.path();
    let rest = path
        .strip_prefix(from.path())
        .unwrap_or(path.trim_start_matches('/'));
    if rest.starts_with('/') || rest.contains("://") {
        return None;
    }
    let mut out = format!("{}{rest}", to.as_str());
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// Whether `source` (a node's discovery) serves asset `version`.
fn serves_version(suite: SuiteKind, source: &PoolSource, version: &str) -> bool {
    let assets = &source.assets;
    match suite {
        // `/browser/<hash>/` in every urlsrc.
        // A handful of segments: lengths first, so only the hash's is compared.
        SuiteKind::Collabora => assets
            .urlsrc_segments
            .iter()
            .any(|s| s.len() == version.len() && **s == *version),
        // `/<productVersion>-<build>/`: the version part must match the node's capabilities.
        SuiteKind::OnlyOffice => {
            let wanted = version.split('-').next().unwrap_or(version);
            assets.product_version.as_deref() == Some(wanted)
        }
    }
}

/// `.docx` or the MIME type, for messages.
fn format_name(format: &FileFormat) -> String {
    match format {
        FileFormat::Ext(e) => format!(".{e}"),
        FileFormat::Mime(m) => m.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::discovery::service::ServedAssets;
    use crate::proxy::classify::{Class, classify};

    #[test]
    fn a_discoverys_urlsrc_never_names_another_host() {
        let node = Url::parse("http://10.0.0.2:9980/").unwrap();
        let announced = Url::parse("https://office.example/").unwrap();
        let good = "https://office.example/browser/abc/cool.html?<ui=UI_LLCC&>";
        assert_eq!(
            rebase(good, &announced, &node).as_deref(),
            Some("http://10.0.0.2:9980/browser/abc/cool.html?<ui=UI_LLCC&>")
        );
        // What a hostile or broken node could announce (issue 13 item 5).
        for bad in [
            "https://office.example///evil.example:1234/x?",
            "https://office.example/http://evil.example:1234/x?",
            "https://office.example/\\evil.example:1234/x?",
        ] {
            assert_eq!(rebase(bad, &announced, &node), None, "{bad}");
        }
    }

    /// A Collabora node whose discovery serves assets of `hash`.
    fn node(url: &Url, hash: &str) -> Option<Arc<PoolSource>> {
        let xml = format!(
            r#"<wopi-discovery><net-zone><app name="writer"><action name="edit" ext="odt" urlsrc="{url}browser/{hash}/cool.html?"/></app></net-zone></wopi-discovery>"#
        );
        let discovery = Discovery::parse(xml.as_bytes()).unwrap();
        Some(Arc::new(PoolSource {
            node: url.clone(),
            assets: ServedAssets::of(&discovery, None),
            discovery,
            raw: xml,
            capabilities: None,
            fetched_at: SystemTime::now(),
            from_disk: false,
        }))
    }

    #[test]
    fn versioned_assets_go_to_a_node_serving_that_version() {
        let nodes: Vec<Url> = (1..=4)
            .map(|i| Url::parse(&format!("http://10.0.0.{i}:9980/")).unwrap())
            .collect();
        let pool = PoolConfig {
            name: "collabora".into(),
            kind: SuiteKind::Collabora,
            nodes: nodes.clone(),
            proof: Default::default(),
        };
        // A rolling upgrade: nodes 1 and 3 run the new version.
        let state = PoolState {
            name: "collabora".into(),
            kind: SuiteKind::Collabora,
            source: node(&nodes[0], "aaa111"),
            nodes: vec![
                node(&nodes[0], "bbb222"),
                node(&nodes[1], "aaa111"),
                node(&nodes[2], "bbb222"),
                node(&nodes[3], "aaa111"),
            ],
            last_error: None,
        };
        let catalog = Catalog {
            pools: vec![state],
            ..Catalog::default()
        };
        let rules = RuleSet::from_sources(
            (std::path::Path::new("default.toml"), ""),
            &[],
            std::slice::from_ref(&pool),
        )
        .unwrap();
        let spread = [AtomicUsize::new(0)];
        let rules = Arc::new(rules);
        let tokens = TokenKeys::new(
            crate::wopi::token::TokenSecret::from_bytes(&[1; 32]).unwrap(),
            None,
        );
        let org_tags = OrgTags::new(Arc::clone(&rules), &tokens);
        let health = health_of(&pool);
        let topology = Arc::new(Topology::new(vec![pool.clone()]));
        let ctx = RouteContext {
            topology: &topology,
            rules: &rules,
            catalog: &catalog,
            spread: &spread,
            tokens: &tokens,
            org_tags: &org_tags,
            files_base: "https://os.example/wopi/files/",
            health: &health,
        };
        for version in ["aaa111", "bbb222"] {
            let serving: Vec<&Url> = match version {
                "aaa111" => vec![&nodes[1], &nodes[3]],
                _ => vec![&nodes[0], &nodes[2]],
            };
            for file in 0..40 {
                let path = format!("/browser/{version}/bundle-{file}.js");
                let Class::Editor(request) = classify(&http::Method::GET, &path, None, false)
                else {
                    panic!("{path} is not editor traffic");
                };
                let EditorRoute::Node(target) = ctx.editor(&request, &path, None).unwrap() else {
                    panic!("{path} names no document");
                };
                assert!(
                    serving.contains(&target.node_url()),
                    "{path} went to {}",
                    target.node_url()
                );
            }
        }

        // A node marked down gets no assets: those of its version go to the other node
        // serving it; with both down, to a healthy node of the other version.
        let route = |path: &str| {
            let Class::Editor(request) = classify(&http::Method::GET, path, None, false) else {
                panic!("{path} is not editor traffic");
            };
            match ctx.editor(&request, path, None).unwrap() {
                EditorRoute::Node(target) => target.node,
                EditorRoute::Document(_) => panic!("{path} names no document"),
            }
        };
        for _ in 0..3 {
            health.report_failure(0, 1, "connection refused");
        }
        let paths: Vec<String> = (0..40)
            .map(|file| format!("/browser/aaa111/bundle-{file}.js"))
            .collect();
        assert!(paths.iter().all(|p| route(p) == 3));
        for _ in 0..3 {
            health.report_failure(0, 3, "connection refused");
        }
        assert!(paths.iter().all(|p| [0, 2].contains(&route(p))));
        // Requests any node serves skip them too.
        let stateless: Vec<usize> = (0..8).map(|_| ctx.spread(&pool).unwrap()).collect();
        assert!(
            stateless.iter().all(|i| [0, 2].contains(i)),
            "{stateless:?}"
        );
    }

    /// Health of `pool`'s nodes, all up, marked down after 3 failures.
    fn health_of(pool: &PoolConfig) -> Arc<Health> {
        let config = crate::config::HealthConfig {
            interval: std::time::Duration::from_secs(5),
            timeout: std::time::Duration::from_secs(2),
            fall: 3,
            rise: 2,
        };
        Health::new(std::slice::from_ref(pool), &config)
    }
}
