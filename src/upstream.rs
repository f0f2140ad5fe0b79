//! The pooled HTTP/1.1 client officeswitch uses to reach editor nodes and WOPI hosts
//! (HTTP and HTTPS).
//!
//! One client per process: keep-alive connections, pooled per origin ([`pool`]), are
//! shared by discovery fetches, health checks, forwarded editor traffic and WOPI calls. TLS is rustls with the system roots plus an
//! optional extra CA bundle (private CAs are common for internal editor nodes).

pub mod node_address;
pub mod pool;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tower_service::Service as _;

use crate::config::UpstreamConfig;
use node_address::NodeAddress;
pub use pool::Body;
use pool::{Pool, Pools, Sender};

/// Request body type sent to nodes.
pub type UpstreamBody = BoxBody<Bytes, hyper::Error>;

/// Largest read buffer of one upstream connection: a response head must fit (64 KiB, as
/// `server.max_header_bytes` allows by default), and a streamed body is read in slices of
/// at most this, so each transfer holds tens of KiB, not hyper's default 400 KiB.
const MAX_READ_BUF: usize = 64 * 1024;

/// The shared client to editor nodes and WOPI hosts: HTTP/1.1 connections kept alive in
/// one pool per origin ([`pool`]). Cloning shares the pools.
#[derive(Clone)]
pub struct UpstreamClient {
    inner: Arc<Inner>,
}

/// What every clone of a client shares.
struct Inner {
    /// TCP (connect timeout, `TCP_NODELAY`) and TLS with the configured roots.
    connector: HttpsConnector<HttpConnector>,
    /// The HTTP/1.1 settings of every connection.
    http1: hyper::client::conn::http1::Builder,
    pools: Arc<Pools>,
}

/// Why a request got no response head.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be opened (TCP, TLS or the HTTP handshake): nothing of the
    /// request was sent.
    #[error("connecting failed")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed before the response head arrived.
    #[error("the exchange failed")]
    Request(#[source] hyper::Error),
    /// The request URI names no `http` or `https` origin (a bug of the caller).
    #[error("{0}: not an http or https URL")]
    Uri(String),
}

impl Error {
    /// Whether no connection could be opened, so nothing reached the node.
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_))
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// The origin its absolute `http` or `https` URI names (WOPI hosts, discovery).
    Uri,
    /// An editor node: the request is in origin form and carries the node's `Host`
    /// ([`NodeAddress::origin_form`]), so nothing is taken apart again.
    Node(&'a NodeAddress),
}

impl UpstreamClient {
    /// Sends `request` (an absolute `http` or `https` URI) over an idle pooled connection
    /// to its origin, or a new one.
    ///
    /// # Errors
    /// [`Error`]: no connection, or it failed before the response head.
    pub async fn request(&self, request: Request<UpstreamBody>) -> Result<Response<Body>, Error> {
        self.send(Destination::Uri, request, true).await
    }

    /// Sends `request` to `to`: over an idle pooled connection when `reuse`, else over a
    /// new one (the retry of a request whose pooled connection the node had closed: any
    /// other idle one may be as stale). A new connection is pooled afterwards like any
    /// other.
    ///
    /// # Errors
    /// [`Error`]: no connection, or it failed before the response head.
    pub async fn send(
        &self,
        to: Destination<'_>,
        request: Request<UpstreamBody>,
        reuse: bool,
    ) -> Result<Response<Body>, Error> {
        let (mut head, body) = request.into_parts();
        let pool = match to {
            Destination::Uri => self.origin_form(&mut head)?,
            Destination::Node(node) => self
                .inner
                .pools
                .get(node.is_https(), node.authority())
                .map_err(|e| Error::Uri(e.to_string()))?,
        };
        // A request with a body: its connection goes back only if the body was sent whole
        // by the response's end (a client that stops sending must not hold the response).
        let (body, sent) = if body.is_end_stream() {
            (body, None)
        } else {
            let sent = Arc::new(AtomicBool::new(false));
            let body = SentBody {
                inner: body,
                sent: Arc::clone(&sent),
            };
            (body.boxed(), Some(sent))
        };
        let mut request = Request::from_parts(head, body);
        if reuse {
            while let Some(mut sender) = pool.checkout() {
                match sender.try_send_request(request).await {
                    Ok(response) => return Ok(leased(response, sender, pool, sent).await),
                    Err(mut failed) => match failed.take_message() {
                        // Not sent: the connection closed meanwhile; try the next one.
                        Some(unsent) => request = unsent,
                        None => return Err(Error::Request(failed.into_error())),
                    },
                }
            }
        }
        let mut sender = self.connect(&pool).await?;
        match sender.try_send_request(request).await {
            Ok(response) => Ok(leased(response, sender, pool, sent).await),
            Err(failed) => Err(Error::Request(failed.into_error())),
        }
    }

    /// Turns `head`'s absolute URI into origin form (`/path?query`), as HTTP/1.1 sends it,
    /// adds `Host` when missing, and returns the pool of its origin.
    fn origin_form(&self, head: &mut http::request::Parts) -> Result<Arc<Pool>, Error> {
        let uri = std::mem::take(&mut head.uri);
        let not_http = |uri: &Uri| Error::Uri(uri.to_string());
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return Err(not_http(&uri)),
        };
        let mut parts = uri.into_parts();
        let Some(authority) = parts.authority.take() else {
            return Err(Error::Uri(String::from("a URI without host")));
        };
        let pool = self
            .inner
            .pools
            .get(https, &authority)
            .map_err(|e| Error::Uri(e.to_string()))?;
        if !head.headers.contains_key(header::HOST)
            && let Some(host) = host_header(&authority, https)
        {
            head.headers.insert(header::HOST, host);
        }
        let path = parts
            .path_and_query
            .take()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        head.uri = Uri::from(path);
        if head.version != Version::HTTP_10 {
            head.version = Version::HTTP_11;
        }
        Ok(pool)
    }

    /// A new connection to `pool`'s origin, its connection task spawned.
    async fn connect(&self, pool: &Pool) -> Result<Sender, Error> {
        let mut connector = self.inner.connector.clone();
        let io = connector
            .call(pool.origin().clone())
            .await
            .map_err(Error::Connect)?;
        let (sender, connection) = self
            .inner
            .http1
            .handshake(io)
            .await
            .map_err(|e| Error::Connect(Box::new(e)))?;
        tokio::spawn(async move {
            // Upgrades: a WebSocket's 101 hands the connection to the tunnel.
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %error_chain(&e), "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// `response` with a body that returns its connection to `pool` once read, unless it is an
/// upgrade (the connection belongs to the tunnel then).
async fn leased(
    response: Response<Incoming>,
    sender: Sender,
    pool: Arc<Pool>,
    sent: Option<Arc<AtomicBool>>,
) -> Response<Body> {
    let lease = (response.status() != StatusCode::SWITCHING_PROTOCOLS).then_some((sender, pool));
    let mut response = response.map(|inner| Body::new(inner, lease, sent));
    response.body_mut().release_if_empty().await;
    response
}

/// `Host` for `authority`: without user info and without the scheme's default port, as
/// browsers send it.
fn host_header(authority: &Authority, https: bool) -> Option<HeaderValue> {
    let default_port = if https { 443 } else { 80 };
    match authority.port_u16() {
        Some(port) if port != default_port => {
            HeaderValue::from_str(&format!("{}:{port}", authority.host())).ok()
        }
        _ => HeaderValue::from_str(authority.host()).ok(),
    }
}

/// A request body that notes when it was sent whole.
struct SentBody {
    inner: UpstreamBody,
    sent: Arc<AtomicBool>,
}

impl hyper::body::Body for SentBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.sent.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The CA bundle could not be read or holds no certificate.
    #[error("upstream.ca_file {path}: {message}")]
    CaFile {
        /// The configured path.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Builds the client from `[upstream]` settings.
///
/// # Errors
/// An unreadable or empty `ca_file`.
pub fn client(config: &UpstreamConfig) -> Result<UpstreamClient, UpstreamError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A malformed system certificate is skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    if let Some(path) = &config.ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| UpstreamError::CaFile {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_nodelay(true);
    // HTTP/1.1 only: nodes and hosts speak it, and WebSockets need it.
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let mut http1 = hyper::client::conn::http1::Builder::new();
    http1.max_buf_size(MAX_READ_BUF);
    let pools = Arc::new(Pools::default());
    Pools::start_reaper(&pools);
    Ok(UpstreamClient {
        inner: Arc::new(Inner {
            connector,
            http1,
            pools,
        }),
    })
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamError> {
    let err = |message: String| UpstreamError::CaFile {
        path: path.display().to_string(),
        message,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in file".into()));
    }
    Ok(certs)
}

/// An error and its causes on one line: hyper's top-level messages alone ("client error
/// (Connect)") do not say what failed.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use http_body_util::{BodyExt as _, Empty, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A loopback node: `/small` answers 5 bytes, `/big` 4 MiB, `/upgrade` switches
    /// protocols and echoes one byte. Counts the connections it accepted.
    async fn node() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let service = service_fn(|mut request: Request<Incoming>| async move {
                    let response = match request.uri().path() {
                        "/big" => Response::new(Full::new(Bytes::from(vec![7u8; 4 << 20]))),
                        "/upgrade" => {
                            let upgrade = hyper::upgrade::on(&mut request);
                            tokio::spawn(async move {
                                if let Ok(upgraded) = upgrade.await {
                                    let mut io = TokioIo::new(upgraded);
                                    let mut byte = [0u8; 1];
                                    if io.read_exact(&mut byte).await.is_ok() {
                                        let _ = io.write_all(&byte).await;
                                    }
                                }
                            });
                            Response::builder()
                                .status(StatusCode::SWITCHING_PROTOCOLS)
                                .header(header::CONNECTION, "upgrade")
                                .header(header::UPGRADE, "echo")
                                .body(Full::new(Bytes::new()))
                                .expect("101")
                        }
                        "/empty" => Response::builder()
                            .status(StatusCode::NO_CONTENT)
                            .body(Full::new(Bytes::new()))
                            .expect("204"),
                        _ => Response::new(Full::new(Bytes::from_static(b"hello"))),
                    };
                    Ok::<_, Infallible>(response)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades(),
                );
            }
        });
        (addr, accepted)
    }

    fn test_client() -> UpstreamClient {
        client(&UpstreamConfig {
            ca_file: None,
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(5),
            websocket_idle_timeout: Duration::from_secs(60),
        })
        .expect("client")
    }

    fn get(addr: SocketAddr, path: &str) -> Request<UpstreamBody> {
        Request::get(format!("http://{addr}{path}"))
            .body(Empty::new().map_err(|never| match never {}).boxed())
            .expect("request")
    }

    fn idle(client: &UpstreamClient, addr: SocketAddr) -> usize {
        let authority: Authority = addr.to_string().parse().expect("authority");
        client
            .inner
            .pools
            .get(false, &authority)
            .expect("pool")
            .idle_count()
    }

    #[tokio::test]
    async fn a_connection_is_reused_after_a_whole_body_only() {
        let (addr, accepted) = node().await;
        let client = test_client();

        // A body read to its end: the connection goes back and carries the next request.
        for _ in 0..3 {
            let response = client.request(get(addr, "/small")).await.expect("small");
            let body = response.into_body().collect().await.expect("body");
            assert_eq!(body.to_bytes(), Bytes::from_static(b"hello"));
            assert_eq!(idle(&client, addr), 1);
        }
        // Read as hyper's server reads it: frames until the body says it ended, then
        // dropped without asking for its end; and a response without a body (never polled).
        for _ in 0..3 {
            let response = client.request(get(addr, "/small")).await.expect("small");
            let mut body = response.into_body();
            let mut read = Vec::new();
            while !body.is_end_stream() {
                let frame = body.frame().await.expect("a frame").expect("data");
                read.extend_from_slice(frame.data_ref().expect("data"));
            }
            drop(body);
            assert_eq!(read, b"hello");
            assert_eq!(idle(&client, addr), 1);
            let response = client.request(get(addr, "/empty")).await.expect("empty");
            assert_eq!(response.status(), StatusCode::NO_CONTENT);
            drop(response);
            assert_eq!(idle(&client, addr), 1);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // A body dropped half-read: that connection is not pooled again.
        let response = client.request(get(addr, "/big")).await.expect("big");
        let mut body = response.into_body();
        let first = body.frame().await.expect("a frame").expect("data");
        assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
        drop(body);
        assert_eq!(idle(&client, addr), 0);
        let response = client.request(get(addr, "/small")).await.expect("small");
        response.into_body().collect().await.expect("body");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(idle(&client, addr), 1);

        // An upgrade: the connection belongs to the tunnel, never to the pool.
        let mut request = get(addr, "/upgrade");
        request
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        request
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("echo"));
        let mut response = client.request(request).await.expect("upgrade");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let upgraded = hyper::upgrade::on(&mut response).await.expect("upgraded");
        drop(response);
        let mut io = TokioIo::new(upgraded);
        io.write_all(b"x").await.expect("write");
        let mut echo = [0u8; 1];
        io.read_exact(&mut echo).await.expect("echo");
        assert_eq!(&echo, b"x");
        assert_eq!(idle(&client, addr), 0);
        let response = client.request(get(addr, "/small")).await.expect("small");
        response.into_body().collect().await.expect("body");
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_fresh_request_opens_a_new_connection() {
        let (addr, accepted) = node().await;
        let client = test_client();
        for expected in 1..=2 {
            let response = client
                .send(Destination::Uri, get(addr, "/small"), false)
                .await
                .expect("small");
            response.into_body().collect().await.expect("body");
            assert_eq!(accepted.load(Ordering::SeqCst), expected);
        }
        // Both went back; the pool keeps them for later requests.
        assert_eq!(idle(&client, addr), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        drop(listener);
        let error = test_client()
            .request(get(addr, "/"))
            .await
            .expect_err("refused");
        assert!(error.is_connect(), "{}", error_chain(&error));
    }
}
