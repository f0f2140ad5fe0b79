//! The life of a request, read top to bottom in [`Proxy::handle`].
//!
//! Phases, each in its own file:
//! 1. [`classify`]: what is this request for (method and path only);
//! 2. answer it: the hosting endpoints and probes are answered from the live
//!    [`Catalog`](crate::discovery::Catalog); every self-made reply is an [`Answer`].
//!
//! Routing, rewriting and forwarding of editor traffic join this list as further phases.

pub mod answer;
pub mod classify;

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Body as _;
use tracing::{debug, info};

use crate::discovery::DiscoveryService;
use answer::{Answer, ProxyBody};
use classify::Class;

/// Handles every request that reaches officeswitch.
pub struct Proxy {
    discovery: Arc<DiscoveryService>,
}

impl Proxy {
    /// A proxy answering from `discovery`.
    pub fn new(discovery: Arc<DiscoveryService>) -> Proxy {
        Proxy { discovery }
    }

    /// Runs the phases for one request and writes its access log line.
    ///
    /// The query string is never logged: WOPI puts access tokens there.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<ProxyBody> {
        let started = Instant::now();
        let class = classify::classify(request.method(), request.uri().path());
        let answer = self.answer(class).await;
        let response = answer.into_response();
        let bytes = response.body().size_hint().exact().unwrap_or(0);
        let status = response.status().as_u16();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (method, path) = (request.method().as_str(), request.uri().path());
        if class.is_probe() {
            debug!(
                method,
                path,
                class = class.as_str(),
                status,
                bytes,
                elapsed_ms,
                "request"
            );
        } else {
            info!(
                method,
                path,
                class = class.as_str(),
                status,
                bytes,
                elapsed_ms,
                "request"
            );
        }
        response
    }

    /// Answers the classes officeswitch serves itself.
    async fn answer(&self, class: Class) -> Answer {
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
                if catalog.is_complete() {
                    Answer::Ready(catalog.report())
                } else {
                    Answer::NotReady(catalog.report())
                }
            }
            Class::WrongMethod => Answer::MethodNotAllowed,
            Class::Unknown => Answer::NotFound,
        }
    }
}
