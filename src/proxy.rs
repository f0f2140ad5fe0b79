//! The life of a request, read top to bottom in [`Proxy::handle`].
//!
//! Phases, each in its own file:
//! 1. [`classify`]: what is this request for (method, path below any [`service_root`],
//!    query, upgrade; no I/O, no allocation);
//! 2. [`route`]: which suite and node (rules, organisation, rendezvous hash of the document);
//!    an **open** ends here: [`open`] sends the browser on to the suite's own page address
//!    (307) with officeswitch's `WOPISrc` and a ticket, or, for a suite whose page speaks
//!    other postMessages than richdocuments (ONLYOFFICE), answers a [`bridge`] page that
//!    opens the suite's page inside itself and translates;
//! 3. [`rewrite`]: the node's URI, `Host`, forwarding headers; back: redirects onto
//!    `public_url`. The editor page that ticket reaches gets a minted token in its form
//!    ([`open`]), Collabora's settings page gets officeswitch's settings endpoint and a
//!    minted settings token in its ([`settings`]), and Collabora's pages admit the
//!    organisation's Nextcloud as their parent ([`page`]);
//! 4. [`forward`]: stream to the node and back over the pooled client; upgrades become a
//!    [`tunnel`].
//!
//! WOPI calls from editors ([`callback`]) take the same shape towards the host: admit
//! (token, rules, proof) instead of route, re-sign instead of rewrite, forward (held
//! through a host restart: [`hold`]), and [`translate`] the JSON that carries URLs.
//! Between admit and re-sign, and again on the way back, the pool's [`dialect`] speaks for
//! richdocuments to editors that read WOPI differently (ONLYOFFICE): it refuses what
//! would lose data, renames headers, reshapes conflicts and CheckFileInfo; an ONLYOFFICE
//! save of a file that changed meanwhile is stored as a new file ([`conflict`]).
//! Collabora's settings calls (`/wopi/settings/...`) are WOPI calls too ([`settings`]).
//!
//! Requests officeswitch answers itself (discovery, capabilities, probes, every refusal)
//! are [`Answer`]s. Each request gets one access log line ([`access_log`]), written when
//! its response has ended.

pub mod access_log;
pub mod answer;
pub mod blame;
pub mod bridge;
pub mod callback;
pub mod classify;
pub mod conflict;
pub mod dialect;
pub mod forward;
pub mod hold;
pub mod open;
pub mod page;
pub mod rewrite;
pub mod route;
pub mod service_root;
pub mod settings;
pub mod translate;
pub mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;

use crate::cache::{AssetCache, Lookup};
use crate::config::{Config, SuiteKind, UpstreamConfig, WopiConfig};
use crate::discovery::DiscoveryService;
use crate::discovery::service::Catalog;
use crate::readiness::Readiness;
use crate::rules::RuleSet;
use crate::rules::watch::RulesStore;
use crate::server::drain::Drain;
use crate::sticky::pins::Stickiness;
use crate::topology::{Topology, TopologyStore};
use crate::upstream::{self, Destination, UpstreamBody, UpstreamClient};
use crate::wopi::proof::Signer;
use crate::wopi::token::TokenKeys;
use crate::wopi::wopi_src;
use access_log::{AccessLog, LoggedBody};
use answer::{Answer, ProxyBody};
use blame::{Blame, BodyProgress};
use callback::{AdmitContext, HostBody};
use classify::{Class, Traffic, WopiCall, query_param};
use dialect::Dialect;
use open::OpenContext;
use route::{EditorRoute, OrgTags, RouteContext, Target};
use service_root::ServiceRoots;

/// What an editor page request needs beyond forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PagePhase {
    /// Not an editor page.
    None,
    /// An editor page of this suite, reloaded or fetched without a form to translate.
    Page(SuiteKind),
    /// Step 2 of an open: the form's host token becomes a minted one ([`open`]).
    Open(SuiteKind),
    /// Collabora's settings page posted by Nextcloud: its form's settings endpoint and
    /// token become officeswitch's ([`settings`]).
    Settings,
}

impl PagePhase {
    /// Whether the response is a Collabora page, whose framing [`page`] rewrites.
    fn is_collabora_page(self) -> bool {
        matches!(
            self,
            PagePhase::Page(SuiteKind::Collabora)
                | PagePhase::Open(SuiteKind::Collabora)
                | PagePhase::Settings
        )
    }
}

/// Handles every request that reaches officeswitch.
pub struct Proxy {
    discovery: Arc<DiscoveryService>,
    rules: Arc<RulesStore>,
    /// `public_url` and the forwarding headers that name it.
    public: rewrite::PublicOrigin,
    client: UpstreamClient,
    upstream: UpstreamConfig,
    /// Round-robin positions for stateless requests, one per pool.
    spread: Vec<AtomicUsize>,
    /// Mints and checks tokens, derives file ids.
    tokens: Arc<TokenKeys>,
    /// Signs WOPI calls to hosts with officeswitch's proof key.
    signer: Signer,
    /// Organisations by file id, rebuilt when the rules change.
    org_tags: ArcSwap<OrgTags>,
    /// `{public_url}wopi/files/`.
    files_base: String,
    /// Token lifetime and host limits.
    wopi: WopiConfig,
    /// Document pins and node health.
    sticky: Arc<Stickiness>,
    /// The stop timeline: tunnels follow it.
    drain: Arc<Drain>,
    /// What `/readyz` says (and the admin listener details).
    readiness: Arc<Readiness>,
    /// Path prefixes of nodes below a path (Collabora's `net.service_root`).
    service_roots: ServiceRoots,
    /// How long a form officeswitch reads itself may take to arrive.
    body_timeout: std::time::Duration,
    /// Versioned static assets kept in memory.
    cache: Arc<AssetCache>,
}

/// Rules, discoveries and organisation tags in force when a request started; it keeps
/// them to the end even if a reload swaps new ones in meanwhile.
struct Snapshot {
    rules: Arc<RuleSet>,
    topology: Arc<Topology>,
    catalog: Arc<Catalog>,
    org_tags: Arc<OrgTags>,
}

impl Snapshot {
    /// Makes sure the snapshot's topology has node `node` of `pool` (pins and health may
    /// have read a newer one, with nodes that joined since): topologies only grow, so the
    /// current one has it.
    fn cover(&mut self, store: &TopologyStore, pool: usize, node: usize) {
        let has = |t: &Topology| t.pools().get(pool).is_some_and(|p| node < p.nodes.len());
        if !has(&self.topology) {
            self.topology = store.current();
        }
    }
}

/// officeswitch's WOPI identity: token keys and proof signing keys.
pub struct WopiKeys {
    /// Token keys.
    pub tokens: Arc<TokenKeys>,
    /// Proof signer.
    pub signer: Signer,
}

impl Proxy {
    /// A proxy for `config`, answering from `discovery` and routing by `rules`.
    pub fn new(
        config: &Config,
        discovery: Arc<DiscoveryService>,
        rules: Arc<RulesStore>,
        client: UpstreamClient,
        keys: WopiKeys,
        sticky: Arc<Stickiness>,
        drain: Arc<Drain>,
    ) -> Proxy {
        let org_tags = OrgTags::new(rules.current(), &keys.tokens);
        let readiness = Arc::new(Readiness::new(
            Arc::clone(&discovery),
            Arc::clone(&rules),
            Arc::clone(&sticky),
            Arc::clone(&drain),
        ));
        Proxy {
            discovery,
            rules,
            public: rewrite::PublicOrigin::new(&config.public_url),
            client,
            upstream: config.upstream.clone(),
            spread: config.pools.iter().map(|_| AtomicUsize::new(0)).collect(),
            tokens: keys.tokens,
            signer: keys.signer,
            org_tags: ArcSwap::from_pointee(org_tags),
            files_base: format!("{}wopi/files/", config.public_url),
            wopi: config.wopi.clone(),
            sticky,
            drain,
            readiness,
            service_roots: ServiceRoots::of(&config.pools),
            body_timeout: config.server.body_timeout,
            cache: Arc::new(AssetCache::new(&config.cache)),
        }
    }

    /// The asset cache, whose figures `/metrics` shows.
    pub fn cache(&self) -> &Arc<AssetCache> {
        &self.cache
    }

    /// Readiness, which the admin listener details.
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.readiness
    }

    /// The client at `addr`, as a connection's requests name it ([`Proxy::handle`]).
    pub fn client(&self, addr: SocketAddr) -> rewrite::Client {
        rewrite::Client::new(addr, &self.public)
    }

    /// Runs the phases for one request from `client`.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client: &rewrite::Client,
    ) -> Response<ProxyBody> {
        let upgrade = is_upgrade(&request);
        let uri = request.uri().clone();
        let method = request.method().clone();
        let (path, query) = (self.service_roots.strip(uri.path()), uri.query());
        let class = classify::classify(&method, path, query, upgrade);
        let mut log = AccessLog::new(&method, uri.path(), class.as_str(), class.is_probe());
        let editor = match class {
            Class::Wopi(call) => return self.wopi(request, &call, log).await,
            Class::Open => return self.open(request, path, query, log).await,
            Class::Editor(editor) => editor,
            other => {
                let answer = self.answer(&other).await;
                log.answer(&answer);
                return logged(answer.into_response(), log);
            }
        };
        let page = self.page_phase(&editor, &method, path, query);
        let answer = match self.route_editor(&editor, path, query).await {
            Ok(target) => {
                log.target(&target);
                let cached = match self.cache.lookup(&editor, &request, target.pool) {
                    Lookup::Hit(response) => {
                        log.from_cache(response.status().as_u16());
                        return logged(response, log);
                    }
                    Lookup::Miss(miss) => Some(miss),
                    Lookup::Bypass => None,
                };
                match self
                    .forward(request, &target, path, client, upgrade, page, log)
                    .await
                {
                    Ok(response) => {
                        return match cached {
                            Some(miss) => self.cache.fill(miss, response),
                            None => response,
                        };
                    }
                    Err((answer, returned_log)) => {
                        log = returned_log;
                        answer
                    }
                }
            }
            Err(answer) => answer,
        };
        log.answer(&answer);
        logged(answer.into_response(), log)
    }

    /// Step 1 of an open: route it, read its form, send the browser on to the suite's page.
    async fn open(
        &self,
        request: Request<Incoming>,
        path: &str,
        query: Option<&str>,
        mut log: AccessLog,
    ) -> Response<ProxyBody> {
        let answer = match self.route_open(path, query).await {
            Ok(target) => {
                log.target(&target);
                match open::read_form(request.into_body(), self.body_timeout).await {
                    Ok(form) => {
                        crate::metrics::global()
                            .request_bytes(Class::Open.as_str())
                            .inc_by(form.len() as u64);
                        match open::redirect(&target, query, &form, &self.open_context()) {
                            Ok(Answer::EditorPage(location))
                                if Dialect::of(Some(target.suite)).bridged() =>
                            {
                                let origins = self
                                    .framing_origins(target.org.as_deref())
                                    .unwrap_or_default();
                                bridge::page(&location, &form, &origins)
                            }
                            Ok(answer) | Err(answer) => answer,
                        }
                    }
                    Err(answer) => answer,
                }
            }
            Err(answer) => answer,
        };
        log.answer(&answer);
        logged(answer.into_response(), log)
    }

    /// What an editor page request needs: step 2 of an open when it is a POST naming
    /// officeswitch's `WOPISrc` (only tickets make those), the settings form when it is a
    /// POST of Collabora's settings page, else the page rewrite only.
    fn page_phase(
        &self,
        editor: &classify::EditorRequest<'_>,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> PagePhase {
        if editor.kind != Traffic::Page {
            return PagePhase::None;
        }
        if editor.suite == SuiteKind::Collabora
            && *method == Method::POST
            && classify::is_settings_page(path)
        {
            return PagePhase::Settings;
        }
        let own = query
            .and_then(|q| query_param(q, "WOPISrc"))
            .is_some_and(|raw| wopi_src::own_file_id(raw, &self.files_base).is_some());
        if own && *method == Method::POST {
            PagePhase::Open(editor.suite)
        } else {
            PagePhase::Page(editor.suite)
        }
    }

    /// The suite of the configured pool named `pool` (a grant's), if it still exists.
    fn suite_of(&self, pool: &str) -> Option<SuiteKind> {
        let topology = self.sticky.topology().current();
        let pool = topology.pools().iter().find(|p| p.name == pool)?;
        Some(pool.kind)
    }

    /// Keys and limits of opens.
    fn open_context(&self) -> OpenContext<'_> {
        OpenContext {
            tokens: &self.tokens,
            public_url: self.public.url(),
            files_base: &self.files_base,
            max_token_ttl: self.wopi.max_token_ttl,
        }
    }

    /// The rules and discoveries in force now.
    fn snapshot(&self) -> Snapshot {
        let rules = self.rules.current();
        let org_tags = self.org_tags(&rules);
        Snapshot {
            rules,
            topology: self.sticky.topology().current(),
            catalog: self.discovery.catalog(),
            org_tags,
        }
    }

    /// The router over `snapshot`.
    fn router<'a>(&'a self, snapshot: &'a Snapshot) -> RouteContext<'a> {
        RouteContext {
            topology: &snapshot.topology,
            rules: &snapshot.rules,
            catalog: &snapshot.catalog,
            spread: &self.spread,
            tokens: &self.tokens,
            org_tags: &snapshot.org_tags,
            files_base: &self.files_base,
            health: self.sticky.health(),
        }
    }

    /// Routes an open: a document already open follows its pin (one suite per document,
    /// whatever the rules say now); a new one goes to the pool the rules give its format
    /// (or, with the organisation's `failover`, the other suite when that pool has no node
    /// taking new documents) and is pinned to a node there.
    async fn route_open(&self, path: &str, query: Option<&str>) -> Result<Target, Answer> {
        let mut snapshot = self.snapshot();
        let router = self.router(&snapshot);
        let plan = router.open_plan(path, query)?;
        let file = plan.file;
        if let Some(pin) = self.sticky.live_pin(file.as_str()).await {
            snapshot.cover(self.sticky.topology(), pin.pool, pin.node);
            return self.router(&snapshot).open_on(plan, pin.pool, pin.node);
        }
        let pools = snapshot.topology.pools();
        let health = self.sticky.health();
        let mut pool = plan.pool;
        let failover = snapshot
            .rules
            .organisation_named(&plan.org)
            .is_some_and(|o| o.failover());
        if failover
            && !health.pool_takes_new_documents(pool)
            && let Some(other) = router.failover_pool(&plan)
            && health.pool_takes_new_documents(other)
        {
            tracing::warn!(
                org = %plan.org,
                from = %pools[pool].name,
                to = %pools[other].name,
                "suite failover: no node of the rules' suite takes new documents"
            );
            pool = other;
        }
        let allowed = router.allowed_nodes(&plan.org, pool);
        let node = self
            .sticky
            .node_for(file.as_str(), pool, allowed)
            .await
            .ok_or_else(|| Answer::NoNode(pools[pool].name.clone()))?;
        snapshot.cover(self.sticky.topology(), pool, node);
        self.router(&snapshot).open_on(plan, pool, node)
    }

    /// Routes editor traffic: by URL space and document hash, then the document's pin.
    async fn route_editor(
        &self,
        editor: &classify::EditorRequest<'_>,
        path: &str,
        query: Option<&str>,
    ) -> Result<Target, Answer> {
        let snapshot = self.snapshot();
        let router = self.router(&snapshot);
        match router.editor(editor, path, query)? {
            EditorRoute::Node(target) => Ok(target),
            EditorRoute::Document(document) => {
                let allowed = router.allowed_nodes(&document.org, document.pool);
                let placed = self
                    .sticky
                    .node_for_traffic(document.file.as_str(), document.pool, allowed)
                    .await
                    .ok_or_else(|| {
                        Answer::NoNode(snapshot.topology.pools()[document.pool].name.clone())
                    })?;
                Ok(document.placed(placed, self.sticky.topology()))
            }
        }
    }

    /// The organisation tags of `rules`, rebuilt once after each reload.
    fn org_tags(&self, rules: &Arc<RuleSet>) -> Arc<OrgTags> {
        let current = self.org_tags.load_full();
        if current.is_for(rules) {
            return current;
        }
        let fresh = Arc::new(OrgTags::new(Arc::clone(rules), &self.tokens));
        self.org_tags.store(Arc::clone(&fresh));
        fresh
    }

    /// Runs a WOPI call from an editor: admit, re-sign, forward to the host, translate.
    async fn wopi(
        &self,
        request: Request<Incoming>,
        call: &WopiCall<'_>,
        mut log: AccessLog,
    ) -> Response<ProxyBody> {
        let answer = match self.call_host(request, call, &mut log).await {
            Ok(response) => return logged(response, log),
            Err(answer) => answer,
        };
        log.answer(&answer);
        logged(answer.into_response(), log)
    }

    async fn call_host(
        &self,
        request: Request<Incoming>,
        call: &WopiCall<'_>,
        log: &mut AccessLog,
    ) -> Result<Response<ProxyBody>, Answer> {
        let rules = self.rules.current();
        let grant = {
            let catalog = self.discovery.catalog();
            let topology = self.sticky.topology().current();
            callback::admit(
                call,
                &request,
                &AdmitContext {
                    tokens: &self.tokens,
                    rules: &rules,
                    catalog: &catalog,
                    pools: topology.pools(),
                    public_url: self.public.url(),
                },
            )?
        };
        log.wopi(&grant);
        // The pool's dialect: refuses here what would lose data, before the host hears of it.
        let exchange = Dialect::of(self.suite_of(&grant.pool)).exchange(call, &request, &grant)?;
        let body_kind = callback::host_body(call, &request);
        let class = log.class();
        let request = request.map(|body| forward::upstream_body(body, class));
        let request = exchange.request(request);
        let host = callback::Host {
            client: &self.client,
            signer: &self.signer,
            grant: &grant,
            timeout: self.wopi.host_timeout,
            max_json_bytes: self.wopi.max_json_bytes,
        };
        // An ONLYOFFICE save the host would refuse as out of date becomes a new file, not a
        // refusal ONLYOFFICE would undo at the next open ([`conflict`]).
        let request = match conflict::check(&exchange, call, request, &host).await? {
            conflict::Save::AsSent(request) => request,
            conflict::Save::Stale(stale) => {
                let response = stale.copy(call, &host).await?;
                log.status(response.status().as_u16());
                return Ok(response);
            }
        };
        let response = exchange.response(host.send(call, request).await?);
        log.status(response.status().as_u16());
        if body_kind == HostBody::Stream || !response.status().is_success() {
            return Ok(response.map(forward::client_body));
        }
        let (mut parts, body) = response.into_parts();
        let mut json = host.json(body).await?;
        let minter = translate::Minter {
            tokens: &self.tokens,
            rules: &rules,
            grant: &grant,
            public_url: self.public.url(),
        };
        match body_kind {
            HostBody::CheckFileInfo => {
                translate::check_file_info(&mut json, &minter)?;
                exchange.check_file_info(&mut json, self.public.url())?;
            }
            HostBody::PutRelativeFile => translate::put_relative_file(&mut json, &minter)?,
            HostBody::SettingsConfig => settings::config(&mut json, &minter)?,
            HostBody::Stream => {}
        }
        let body = Bytes::from(serde_json::to_vec(&json).unwrap_or_default());
        parts.headers.remove(header::CONTENT_ENCODING);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        Ok(Response::from_parts(parts, full(body)))
    }

    /// Step 2 of an open: the editor page's form with a minted token, its query without
    /// the ticket (read whole: the form is a few hundred bytes).
    async fn open_page(
        &self,
        request: Request<Incoming>,
        target: &Target,
    ) -> Result<(http::request::Parts, String), Answer> {
        let file = target
            .file
            .ok_or(Answer::BadRequest("the editor page names no document"))?;
        let (mut parts, body) = request.into_parts();
        let form = open::read_form(body, self.body_timeout).await?;
        // Read whole (it is small), then passed on rewritten: count what the client sent.
        crate::metrics::global()
            .request_bytes(Traffic::Page.as_str())
            .inc_by(form.len() as u64);
        let pool = &target.pool_config().name;
        let (uri, form) =
            open::page_form(&parts.uri, &form, target, file, pool, &self.open_context())?;
        parts.uri = uri;
        Ok((parts, form))
    }

    /// Collabora's settings page: its form read whole (it is small) and translated
    /// ([`settings::page_form`]); returns the request to forward and the organisation
    /// the form's settings endpoint belongs to.
    async fn settings_page(
        &self,
        request: Request<Incoming>,
        target: &Target,
    ) -> Result<(Request<UpstreamBody>, Option<String>), Answer> {
        let (parts, body) = request.into_parts();
        let form = open::read_form(body, self.body_timeout).await?;
        crate::metrics::global()
            .request_bytes(Traffic::Page.as_str())
            .inc_by(form.len() as u64);
        let rules = self.rules.current();
        let page = settings::page_form(
            &form,
            &settings::PageContext {
                tokens: &self.tokens,
                rules: &rules,
                public_url: self.public.url(),
                pool: &target.pool_config().name,
                max_token_ttl: self.wopi.max_token_ttl,
            },
        )?;
        Ok((with_form(parts, page.form), page.org))
    }

    /// The Nextcloud origins of organisation `org`: who may frame an editor page or a
    /// bridge, and whom a bridge relays for.
    fn framing_origins(&self, org: Option<&str>) -> Option<Vec<String>> {
        let org = org?;
        let rules = self.rules.current();
        Some(rules.organisation_named(org)?.origins().to_vec())
    }

    /// Rewrites, forwards and streams back; an upgrade becomes a tunnel. On failure the
    /// access line comes back with the answer to send.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        target: &Target,
        local_path: &str,
        client: &rewrite::Client,
        upgrade: bool,
        page: PagePhase,
        mut log: AccessLog,
    ) -> Result<Response<ProxyBody>, (Answer, AccessLog)> {
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        if page.is_collabora_page() {
            // The page is rewritten below: ask for it uncompressed.
            request.headers_mut().remove(header::ACCEPT_ENCODING);
        }
        let mut org = target.org.as_deref().map(str::to_string);
        let mut open_form = None;
        let (request, progress) = match page {
            PagePhase::Open(_) => match self.open_page(request, target).await {
                Ok((parts, form)) => {
                    let request = with_form(copy_head(&parts), form.clone());
                    open_form = Some((parts, form));
                    (request, BodyProgress::complete())
                }
                Err(answer) => return Err((answer, log)),
            },
            PagePhase::Settings => match self.settings_page(request, target).await {
                Ok((r, settings_org)) => {
                    if let Some(name) = &settings_org {
                        log.org(name);
                    }
                    org = settings_org;
                    (r, BodyProgress::complete())
                }
                Err(answer) => return Err((answer, log)),
            },
            PagePhase::None | PagePhase::Page(_) => {
                let class = log.class();
                let (parts, body) = request.into_parts();
                let (body, progress) = BodyProgress::track(body);
                let body = forward::upstream_body(body, class);
                (Request::from_parts(parts, body), progress)
            }
        };
        let mut target = target.clone();
        let sending = Sending {
            local_path,
            client,
            upgrade,
            progress: &progress,
        };
        let response = match self
            .send_to_node(request, &mut target, &sending, open_form, &mut log)
            .await
        {
            Ok(response) => response,
            Err(answer) => return Err((answer, log)),
        };
        let node = target.node_url();
        let mut response = rewrite::response(response, node, &self.public);
        log.status(response.status().as_u16());
        if page.is_collabora_page()
            && response.status() == StatusCode::OK
            && let Some(origins) = self.framing_origins(org.as_deref())
        {
            return match page::admit_framing(response, &origins).await {
                Ok(response) => Ok(logged(response, log)),
                Err(answer) => Err((answer, log)),
            };
        }
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let settings = tunnel::TunnelSettings {
                idle: self.upstream.websocket_idle_timeout,
                websocket: is_websocket(response.headers()),
                closing: self.drain.closing_token(),
            };
            self.drain
                .spawn_tunnel(tunnel::run(client_upgrade, upstream_upgrade, settings, log));
            return Ok(response.map(|_| Empty::new().map_err(|never| match never {}).boxed()));
        }
        Ok(logged(response.map(forward::client_body), log))
    }

    /// Rewrites `request` for `target`'s node and sends it; passive health hears what the
    /// node did ([`blame`]). An open page (`open_form`: its head and form) whose node
    /// refused the connection, so nothing reached it, goes once more to the next node,
    /// where its document is re-pinned ([`Stickiness::move_off`]): an open in the seconds
    /// before the checks mark a dead node down still succeeds.
    async fn send_to_node(
        &self,
        request: Request<UpstreamBody>,
        target: &mut Target,
        sending: &Sending<'_>,
        open_form: Option<(http::request::Parts, String)>,
        log: &mut AccessLog,
    ) -> Result<Response<upstream::Body>, Answer> {
        let node = target.node_address()?;
        let request = rewrite::request(
            request,
            sending.local_path,
            node,
            &self.public,
            sending.client,
            sending.upgrade,
        )?;
        let deadline = tokio::time::Instant::now() + self.upstream.first_byte_timeout;
        let to = Destination::Node(node);
        let sent = forward::send_until(&self.client, to, request, deadline).await;
        let refused = matches!(&sent, Ok(Err(e)) if forward::not_opened(e));
        let failed = match self.judged(forward::into_answer(sent), target, sending.progress) {
            Err(answer) if refused => answer,
            other => return other,
        };
        let (Some((head, form)), Some(file)) = (open_form, target.file) else {
            return Err(failed);
        };
        let snapshot = self.snapshot();
        let router = self.router(&snapshot);
        let allowed = match &target.org {
            Some(org) => router.allowed_nodes(org, target.pool),
            None => &snapshot.topology.pools()[target.pool].nodes,
        };
        let Some(next) = self
            .sticky
            .move_off(file.as_str(), target.pool, target.node, allowed)
            .await
        else {
            return Err(failed);
        };
        target.place(next, self.sticky.topology());
        log.target(target);
        let node = target.node_address()?;
        let request = rewrite::request(
            with_form(head, form),
            sending.local_path,
            node,
            &self.public,
            sending.client,
            sending.upgrade,
        )?;
        let to = Destination::Node(node);
        let sent = forward::send_until(&self.client, to, request, deadline).await;
        self.judged(forward::into_answer(sent), target, sending.progress)
    }

    /// Reports a send's outcome to passive health, which counts only what the node did.
    fn judged(
        &self,
        outcome: Result<Response<upstream::Body>, Answer>,
        target: &Target,
        progress: &BodyProgress,
    ) -> Result<Response<upstream::Body>, Answer> {
        let health = self.sticky.health();
        match outcome {
            Ok(response) => {
                health.report_success(target.pool, target.node);
                Ok(response)
            }
            Err(answer) => match blame::blame(answer.clone(), progress) {
                Blame::Node(why) => {
                    health.report_failure(target.pool, target.node, &why);
                    Err(answer)
                }
                Blame::Client(answer) => Err(answer),
            },
        }
    }

    /// Answers the classes officeswitch serves itself.
    async fn answer(&self, class: &Class<'_>) -> Answer {
        match class {
            Class::Discovery => {
                let catalog = self.discovery.catalog_fresh_if_incomplete().await;
                match &catalog.discovery_xml {
                    Some(xml) => Answer::Discovery(xml.clone()),
                    None => Answer::NothingToServe("discovery"),
                }
            }
            Class::Capabilities => {
                let catalog = self.discovery.catalog_fresh_if_incomplete().await;
                match &catalog.capabilities_json {
                    Some(json) => Answer::Capabilities(json.clone()),
                    None => Answer::NothingToServe("capabilities"),
                }
            }
            Class::Health => Answer::Alive,
            Class::Ready => {
                let report = self.readiness.report();
                if report.ready {
                    Answer::Ready(report.summary)
                } else {
                    Answer::NotReady(report.summary)
                }
            }
            Class::WrongMethod => Answer::MethodNotAllowed,
            Class::Unknown | Class::Open | Class::Editor(_) | Class::Wopi(_) => Answer::NotFound,
        }
    }
}

/// Whether the client asks to switch protocols (WebSocket).
fn is_upgrade<B>(request: &Request<B>) -> bool {
    request.headers().contains_key(header::UPGRADE)
        && request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Whether a 101 answer switched to WebSocket (`Upgrade: websocket`).
fn is_websocket(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// The request of `parts` with `form` (a translated form) as its whole body.
fn with_form(mut parts: http::request::Parts, form: String) -> Request<UpstreamBody> {
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(form.len()));
    Request::from_parts(
        parts,
        Full::new(Bytes::from(form))
            .map_err(|never| match never {})
            .boxed(),
    )
}

/// A copy of a request head without its extensions (an open page's, to send it twice).
fn copy_head(parts: &http::request::Parts) -> http::request::Parts {
    let mut copy = Request::new(());
    *copy.method_mut() = parts.method.clone();
    *copy.uri_mut() = parts.uri.clone();
    *copy.version_mut() = parts.version;
    *copy.headers_mut() = parts.headers.clone();
    copy.into_parts().0
}

/// How a request is sent on to its node, besides the node: for [`Proxy::send_to_node`].
struct Sending<'a> {
    /// The path below any service root.
    local_path: &'a str,
    /// The client and its forwarding values.
    client: &'a rewrite::Client,
    /// Whether it is an upgrade.
    upgrade: bool,
    /// How far its body got, for [`blame`].
    progress: &'a BodyProgress,
}

/// A whole body, as officeswitch sends it.
fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// `response` with its access line written when its body ends.
fn logged(response: Response<ProxyBody>, log: AccessLog) -> Response<ProxyBody> {
    response.map(|body| LoggedBody::new(body, log).boxed())
}
