//! The operators' listener: the editor nodes (health, draining, pinned documents) and
//! draining, on an address of its own behind a bearer token.
//!
//! It is separate from the public listener because browsers, editors and Nextcloud reach
//! that one from anywhere, while only operators should reach this one: bind it to loopback
//! or an internal network (`[admin] listen`). Every request needs
//! `Authorization: Bearer <token>` (the token is `[admin] token_file`, see [`load_token`]),
//! except `GET /metrics` with `[admin] metrics_need_token = false` (Prometheus in
//! Kubernetes often scrapes pods without credentials; the metrics carry no token):
//!
//! - `GET /metrics`: the Prometheus exposition ([`crate::metrics`]);
//! - `GET /admin/ready`: readiness in detail, `{"ready", "summary", "detail": [lines]}`
//!   (pools and their nodes, rules, node health, pins; the public `/readyz` gives only the
//!   summary, see [`crate::readiness`]);
//! - `GET /admin/nodes`: every node with its health, draining and pinned documents, and
//!   whether the pin store answered;
//! - `POST /admin/nodes/drain`, `POST /admin/nodes/undrain` with `{"node": URL}` (or
//!   `?node=URL`): draining keeps new documents off a node while its open documents stay,
//!   so it can be emptied before maintenance.
//!
//! # Draining holds on every instance
//! A drain takes effect on this instance at once and is written to the pin store, which
//! every instance reads every `pins.refresh_secs`: drain through any one instance and the
//! others follow within that time, and instances started later too (the mark has no TTL;
//! undrain clears it). The answer's `shared` says whether the store took the mark; while
//! the store is down, the drain holds here and is written once the store is back. With the
//! memory store (one instance) the mark lives in this process and a restart forgets it.
//!
//! # The token
//! It is compared in constant time, on SHA-256 digests so that neither its content nor its
//! length leaks through timing, and it is never logged: a refused request logs one line
//! naming the peer and the reason, not what it presented. `officeswitch nodes`
//! ([`command`]) is the client.

pub mod command;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest::{self, Digest, SHA256};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;

use crate::metrics::Scrape;
use crate::readiness::Readiness;
use crate::server::deadline::{Deadline, Requests};
use crate::sticky::health::{Health, NodeStatus};
use crate::sticky::pins::Stickiness;
use crate::sticky::store::Pin;

/// Shortest token accepted: a short token could be guessed through the listener.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Largest drain/undrain body read; `{"node": URL}` is far smaller.
const MAX_BODY_BYTES: usize = 4096;

/// Time a client gets to send its first request head (an idle connection holds a socket).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a kept-alive admin connection may wait for its next request (Prometheus scrapes
/// every 15-60 s on one connection).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long open admin connections get to finish after shutdown starts: admin requests
/// are short, so this is far below the public listener's drain deadline.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Time the pin store gets to count pins; the node list is still served without counts.
const COUNTS_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the admin token cannot be used. Messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The file cannot be read (missing, permissions, not UTF-8).
    #[error("admin token file {}: cannot read it: {error}", path.display())]
    Read {
        /// The token file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file holds nothing but whitespace.
    #[error("admin token file {}: it is empty", path.display())]
    Empty {
        /// The token file.
        path: PathBuf,
    },
    /// The token is shorter than [`MIN_TOKEN_CHARS`].
    #[error(
        "admin token file {}: the token is shorter than {MIN_TOKEN_CHARS} characters, \
         which could be guessed",
        path.display()
    )]
    TooShort {
        /// The token file.
        path: PathBuf,
    },
    /// The token holds a character an HTTP header cannot carry (a line break, say), so no
    /// client could send it.
    #[error(
        "admin token file {}: the token holds a character an HTTP header cannot carry \
         (keep it on one line, visible ASCII)",
        path.display()
    )]
    Unusable {
        /// The token file.
        path: PathBuf,
    },
}

/// Reads the bearer token from `path`, without its surrounding whitespace.
///
/// # Errors
/// An unreadable file, or a token that is empty, shorter than [`MIN_TOKEN_CHARS`] or not
/// sendable in a header; the error names the path, never the token.
pub fn load_token(path: &Path) -> Result<String, AdminError> {
    let text = std::fs::read_to_string(path).map_err(|error| AdminError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(AdminError::Empty {
            path: path.to_path_buf(),
        });
    }
    if token.chars().count() < MIN_TOKEN_CHARS {
        return Err(AdminError::TooShort {
            path: path.to_path_buf(),
        });
    }
    if !token.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(AdminError::Unusable {
            path: path.to_path_buf(),
        });
    }
    Ok(token.to_string())
}

/// Serves the admin API on `listener` until `shutdown` is cancelled, then lets open
/// requests finish (a few seconds at most). `GET /metrics` needs the bearer token too
/// unless `metrics_need_token` is false (`[admin] metrics_need_token`).
pub async fn serve(
    listener: TcpListener,
    sticky: Arc<Stickiness>,
    readiness: Option<Arc<Readiness>>,
    scrape: Option<Arc<Scrape>>,
    token: Arc<str>,
    metrics_need_token: bool,
    shutdown: CancellationToken,
) {
    let admin = Arc::new(Admin {
        token: digest::digest(&SHA256, token.as_bytes()),
        sticky,
        readiness,
        scrape,
        metrics_need_token,
    });
    // Only the digest is kept for the life of the listener.
    drop(token);
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Request heads are timed by the connection's [`Deadline`].
    builder.header_read_timeout(None);
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "admin API listening");
    }
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admin = admin.clone();
        let requests = Requests::default();
        let handler_requests = requests.clone();
        let service = service_fn(move |request| {
            let in_flight = handler_requests.started(request.version() == http::Version::HTTP_2);
            let admin = admin.clone();
            async move {
                let response = admin.handle(request, peer).await;
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        });
        // The admin API answers small bodies at once: idle means idle.
        let stream = Deadline::new(stream, HEADER_TIMEOUT, IDLE_TIMEOUT, requests);
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "admin connection closed with error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => debug!("admin connections closed"),
        () = tokio::time::sleep(DRAIN_DEADLINE) => warn!("admin drain deadline passed; closing remaining connections"),
    }
}

/// What the handlers share: the token's digest (not the token) and the node state.
struct Admin {
    token: Digest,
    sticky: Arc<Stickiness>,
    /// What `/admin/ready` reports, when the server has it.
    readiness: Option<Arc<Readiness>>,
    /// What `/metrics` reads, when the server has it.
    scrape: Option<Arc<Scrape>>,
    /// Whether `GET /metrics` needs the token like every other request.
    metrics_need_token: bool,
}

/// Every admin reply; errors carry a message for the operator, sent as `{"error": ...}`.
#[derive(Debug)]
enum Reply {
    /// A JSON document.
    Json(Vec<u8>),
    /// The Prometheus (OpenMetrics) exposition.
    Metrics(String),
    /// No or a wrong bearer token.
    Unauthorized,
    /// Unknown path, or a node no pool configures (why).
    NotFound(String),
    /// A known path with another method; the one it takes.
    MethodNotAllowed(&'static str),
    /// A drain/undrain request that names no usable node (why).
    BadRequest(String),
    /// Our own answer could not be encoded (why); not expected to happen.
    Internal(String),
}

impl Reply {
    fn json(value: &impl Serialize) -> Reply {
        match serde_json::to_vec(value) {
            Ok(bytes) => Reply::Json(bytes),
            // Our own plain structs always serialise; say so rather than panic.
            Err(e) => Reply::Internal(format!("cannot encode the answer: {e}")),
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let error = |status: StatusCode, message: &str| {
            let body = serde_json::json!({ "error": message }).to_string();
            (status, body.into_bytes())
        };
        let (status, body) = match &self {
            Reply::Json(bytes) => (StatusCode::OK, bytes.clone()),
            Reply::Metrics(text) => (StatusCode::OK, text.clone().into_bytes()),
            Reply::Unauthorized => error(
                StatusCode::UNAUTHORIZED,
                "a valid `Authorization: Bearer <token>` header is required",
            ),
            Reply::NotFound(why) => error(StatusCode::NOT_FOUND, why),
            Reply::MethodNotAllowed(allow) => error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("this path takes {allow}"),
            ),
            Reply::BadRequest(why) => error(StatusCode::BAD_REQUEST, why),
            Reply::Internal(why) => error(StatusCode::INTERNAL_SERVER_ERROR, why),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        let content_type = match self {
            Reply::Metrics(_) => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            _ => "application/json",
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            Reply::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Reply::MethodNotAllowed(allow) => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        response
    }
}

/// One node of `GET /admin/nodes`: its health snapshot plus its pinned documents (`null`
/// when the pin store did not answer).
#[derive(Serialize)]
struct ListedNode<'a> {
    #[serde(flatten)]
    status: &'a NodeStatus,
    pinned_documents: Option<u64>,
}

/// `GET /admin/nodes`.
#[derive(Serialize)]
struct NodeList<'a> {
    nodes: Vec<ListedNode<'a>>,
    pins: PinsState,
}

/// The pin store as `GET /admin/nodes` saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinsState {
    /// `memory` or `redis`.
    pub store: String,
    /// Whether it answered the count of pins.
    pub reachable: bool,
}

/// Body of `POST /admin/nodes/drain|undrain`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeRequest {
    node: String,
}

/// Answer of `POST /admin/nodes/drain|undrain`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrainReply {
    /// The node's base URL as configured.
    pub node: String,
    /// Whether it drains now.
    pub draining: bool,
    /// Whether this request changed it.
    pub changed: bool,
    /// Whether the pin store took it, so every instance follows within
    /// `pins.refresh_secs`; `false` while the store is down (written once it is back).
    pub shared: bool,
}

impl Admin {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let open = !self.metrics_need_token && path == "/metrics" && method == Method::GET;
        if !open && let Err(reason) = self.authorize(request.headers()) {
            warn!(%peer, %method, path, reason, "admin request refused");
            return Reply::Unauthorized.into_response();
        }
        let reply = match path.as_str() {
            "/admin/ready" if method == Method::GET => match &self.readiness {
                Some(readiness) => Reply::json(&readiness.report()),
                None => Reply::NotFound("no readiness here".into()),
            },
            "/admin/ready" => Reply::MethodNotAllowed("GET"),
            "/admin/nodes" if method == Method::GET => self.nodes().await,
            "/admin/nodes" => Reply::MethodNotAllowed("GET"),
            "/metrics" if method == Method::GET => match &self.scrape {
                Some(scrape) => Reply::Metrics(scrape.render().await),
                None => Reply::NotFound("no metrics here".into()),
            },
            "/metrics" => Reply::MethodNotAllowed("GET"),
            "/admin/nodes/drain" | "/admin/nodes/undrain" if method == Method::POST => {
                let draining = path.ends_with("/drain");
                self.set_draining(request, draining, peer).await
            }
            "/admin/nodes/drain" | "/admin/nodes/undrain" => Reply::MethodNotAllowed("POST"),
            _ => Reply::NotFound("no such admin endpoint".into()),
        };
        let response = reply.into_response();
        debug!(%peer, %method, path, status = response.status().as_u16(), "admin request");
        response
    }

    /// Checks the bearer token; the error is the reason to log (never the value sent).
    fn authorize(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err("no Authorization header");
        };
        let value = value.as_bytes();
        let Some((scheme, presented)) = value
            .iter()
            .position(|&b| b == b' ')
            .map(|space| (&value[..space], value[space + 1..].trim_ascii()))
        else {
            return Err("Authorization is not `Bearer <token>`");
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return Err("Authorization is not `Bearer <token>`");
        }
        let presented = digest::digest(&SHA256, presented);
        aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_ref(), self.token.as_ref())
            .map_err(|_| "wrong bearer token")
    }

    /// `GET /admin/nodes`: health from this instance, counts from the pin store.
    async fn nodes(&self) -> Reply {
        let statuses = self.sticky.health().nodes();
        let store = self.sticky.store();
        let counts = self.sticky.count_pins(COUNTS_TIMEOUT).await;
        let pinned = |status: &NodeStatus| {
            counts.as_ref().map(|counts| {
                counts
                    .iter()
                    .find(|(Pin { pool, node }, _)| *pool == status.pool && *node == status.node)
                    .map_or(0, |(_, n)| *n)
            })
        };
        Reply::json(&NodeList {
            nodes: statuses
                .iter()
                .map(|status| ListedNode {
                    status,
                    pinned_documents: pinned(status),
                })
                .collect(),
            pins: PinsState {
                store: store.kind().to_string(),
                reachable: counts.is_some(),
            },
        })
    }

    /// `POST /admin/nodes/drain|undrain`.
    async fn set_draining(
        &self,
        request: Request<Incoming>,
        draining: bool,
        peer: SocketAddr,
    ) -> Reply {
        let query = request.uri().query().map(str::to_owned);
        let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return Reply::BadRequest(format!(
                    "the body is broken or larger than {MAX_BODY_BYTES} bytes"
                ));
            }
        };
        let named = match node_named(query.as_deref(), &body) {
            Ok(named) => named,
            Err(why) => return Reply::BadRequest(why),
        };
        let url = match Url::parse(named.trim()) {
            Ok(url) => url,
            Err(e) => return Reply::BadRequest(format!("`node` is not a URL: {e}")),
        };
        let health = self.sticky.health();
        let Some((pool, node)) = health.find(&url) else {
            return Reply::NotFound(format!("no pool configures the node {url}"));
        };
        let set = self.sticky.set_draining(pool, node, draining).await;
        let name = configured_name(health, &url);
        info!(%peer, node = %name, draining, changed = set.changed, shared = set.shared,
            "admin: node draining set");
        Reply::json(&DrainReply {
            node: name,
            draining: health.is_draining(pool, node),
            changed: set.changed,
            shared: set.shared,
        })
    }
}

/// The node a drain/undrain request names: `{"node": URL}` in the body, or `?node=URL`.
fn node_named(query: Option<&str>, body: &[u8]) -> Result<String, String> {
    let in_query = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(key, _)| key == "node")
            .map(|(_, value)| value.into_owned())
    });
    let body_empty = body.trim_ascii().is_empty();
    match (in_query, body_empty) {
        (Some(_), false) => Err("name the node in the body or in the query, not both".into()),
        (Some(node), true) => Ok(node),
        (None, true) => {
            Err(r#"name the node: a body {"node": "http://host:port/"} or ?node=URL"#.into())
        }
        (None, false) => serde_json::from_slice::<NodeRequest>(body)
            .map(|r| r.node)
            .map_err(|e| format!(r#"the body is not {{"node": "http://host:port/"}}: {e}"#)),
    }
}

/// The node's base URL as the settings write it (`find` forgives a missing `/`).
fn configured_name(health: &Health, url: &Url) -> String {
    let wanted = url.as_str().trim_end_matches('/');
    health
        .nodes()
        .into_iter()
        .map(|status| status.node)
        .find(|node| node.trim_end_matches('/') == wanted)
        .unwrap_or_else(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_are_trimmed_and_weak_tokens_refused_without_being_printed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "  0123456789abcdef-secret \n").expect("write");
        assert_eq!(load_token(&path).expect("token"), "0123456789abcdef-secret");

        for (text, expected) in [
            ("", "it is empty"),
            (" \n\t", "it is empty"),
            ("short-secret\n", "shorter than 16"),
            ("0123456789\nabcdef-secret", "one line"),
        ] {
            std::fs::write(&path, text).expect("write");
            let err = load_token(&path).expect_err(text).to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
        let missing = dir.path().join("missing.token");
        let err = load_token(&missing).expect_err("missing").to_string();
        assert!(
            err.contains("missing.token") && err.contains("cannot read"),
            "{err}"
        );
    }

    #[test]
    fn the_node_comes_from_the_body_or_the_query() {
        let url = "http://10.0.0.2:9980/";
        assert_eq!(
            node_named(None, br#"{"node":"http://10.0.0.2:9980/"}"#).as_deref(),
            Ok(url)
        );
        assert_eq!(
            node_named(Some("node=http%3A%2F%2F10.0.0.2%3A9980%2F"), b" \n").as_deref(),
            Ok(url)
        );
        for (query, body) in [
            (None, &b""[..]),
            (None, b"node=x"),
            (None, br#"{"nodes":"http://x/"}"#),
            (None, br#"{"node":1}"#),
            (Some("node=http://x/"), br#"{"node":"http://x/"}"#),
            (Some("other=1"), b""),
        ] {
            assert!(node_named(query, body).is_err(), "{query:?} {body:?}");
        }
    }
}
