//! The life of a request, read top to bottom in [`Proxy::handle`].
//!
//! Phases, each in its own file:
//! 1. [`classify`]: what is this request for (method, path, query, upgrade; no I/O, no allocation);
//! 2. [`route`]: which suite and node (rules, organisation, rendezvous hash of the document);
//! 3. [`rewrite`]: the node's URI, `Host`, forwarding headers; back: redirects onto `public_url`;
//! 4. [`forward`]: stream to the node and back over the pooled client; upgrades become a
//!    [`tunnel`].
//!
//! Requests officeswitch answers itself (discovery, capabilities, probes, every refusal)
//! are [`Answer`]s. Each request gets one access log line ([`access_log`]), written when
//! its response has ended.

pub mod access_log;
pub mod answer;
pub mod classify;
pub mod forward;
pub mod rewrite;
pub mod route;
pub mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use url::Url;

use crate::config::{Config, PoolConfig, UpstreamConfig};
use crate::discovery::DiscoveryService;
use crate::rules::watch::RulesStore;
use crate::upstream::UpstreamClient;
use access_log::{AccessLog, LoggedBody};
use answer::{Answer, ProxyBody};
use classify::Class;
use route::{RouteContext, Target};

/// Handles every request that reaches officeswitch.
pub struct Proxy {
    discovery: Arc<DiscoveryService>,
    rules: Arc<RulesStore>,
    pools: Vec<PoolConfig>,
    public_url: Url,
    client: UpstreamClient,
    upstream: UpstreamConfig,
    /// Round-robin position for stateless requests.
    spread: AtomicUsize,
}

impl Proxy {
    /// A proxy for `config`, answering from `discovery` and routing by `rules`.
    pub fn new(
        config: &Config,
        discovery: Arc<DiscoveryService>,
        rules: Arc<RulesStore>,
        client: UpstreamClient,
    ) -> Proxy {
        Proxy {
            discovery,
            rules,
            pools: config.pools.clone(),
            public_url: config.public_url.clone(),
            client,
            upstream: config.upstream.clone(),
            spread: AtomicUsize::new(0),
        }
    }

    /// Runs the phases for one request from `peer`.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let upgrade = is_upgrade(&request);
        let (method, path, query) = (
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        let class = classify::classify(method, path, query, upgrade);
        let mut log = AccessLog::new(method, path, class.as_str(), class.is_probe());
        let routed = match &class {
            Class::Open => Some(self.context(|ctx| ctx.open(path, query))),
            Class::Editor(editor) => Some(self.context(|ctx| ctx.editor(editor, path, query))),
            _ => None,
        };
        let answer = match routed {
            Some(Ok(target)) => {
                log.target(&target);
                match self.forward(request, &target, peer, upgrade, log).await {
                    Ok(response) => return response,
                    Err((answer, returned_log)) => {
                        log = returned_log;
                        answer
                    }
                }
            }
            Some(Err(answer)) => answer,
            None => self.answer(&class).await,
        };
        log.answer(&answer);
        logged(answer.into_response(), log)
    }

    /// Runs `route` against the rules and discoveries in force now; the request keeps
    /// them to the end even if a reload swaps new ones in meanwhile.
    fn context<T>(&self, route: impl FnOnce(&RouteContext<'_>) -> T) -> T {
        let rules = self.rules.current();
        let catalog = self.discovery.catalog();
        route(&RouteContext {
            pools: &self.pools,
            rules: &rules,
            catalog: &catalog,
            spread: &self.spread,
        })
    }

    /// Rewrites, forwards and streams back; an upgrade becomes a tunnel. On failure the
    /// access line comes back with the answer to send.
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        target: &Target,
        peer: SocketAddr,
        upgrade: bool,
        mut log: AccessLog,
    ) -> Result<Response<ProxyBody>, (Answer, AccessLog)> {
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let request = request.map(forward::upstream_body);
        let request = match rewrite::request(request, target, &self.public_url, peer, upgrade) {
            Ok(r) => r,
            Err(answer) => return Err((answer, log)),
        };
        let response =
            match forward::send(&self.client, request, self.upstream.first_byte_timeout).await {
                Ok(r) => r,
                Err(answer) => return Err((answer, log)),
            };
        let mut response = rewrite::response(response, target, &self.public_url);
        log.status(response.status().as_u16());
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let idle = self.upstream.websocket_idle_timeout;
            tokio::spawn(tunnel::run(client_upgrade, upstream_upgrade, idle, log));
            return Ok(response.map(|_| Empty::new().map_err(|never| match never {}).boxed()));
        }
        Ok(logged(response.map(forward::client_body), log))
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
                let catalog = self.discovery.catalog();
                let mut lines = catalog.report();
                lines.push(rules_line(&self.rules));
                if catalog.is_complete() {
                    Answer::Ready(lines)
                } else {
                    Answer::NotReady(lines)
                }
            }
            Class::WrongMethod => Answer::MethodNotAllowed,
            Class::Unknown | Class::Open | Class::Editor(_) => Answer::NotFound,
        }
    }
}

/// The `/readyz` line about rules: what is loaded and whether reloads fail.
fn rules_line(rules: &RulesStore) -> String {
    let loaded = format!("rules: {} organisations", rules.current().organisations());
    match rules.last_error() {
        Some(e) => format!(
            "{loaded}; the last reload failed ({} failures so far), previous rules in force: {e}",
            rules.failures()
        ),
        None => loaded,
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

/// `response` with its access line written when its body ends.
fn logged(response: Response<ProxyBody>, log: AccessLog) -> Response<ProxyBody> {
    response.map(|body| LoggedBody::new(body, log).boxed())
}
