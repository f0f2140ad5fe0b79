//! The pooled HTTP client officeswitch uses to reach editor nodes (HTTP and HTTPS).
//!
//! One client per process: keep-alive connections are shared by discovery fetches and,
//! later, by forwarded editor traffic. TLS is rustls with the system roots plus an
//! optional extra CA bundle (private CAs are common for internal editor nodes).

use std::path::Path;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::UpstreamConfig;

/// Request body type sent to nodes.
pub type UpstreamBody = BoxBody<Bytes, hyper::Error>;

/// The hyper client under [`UpstreamClient`].
type HyperClient = Client<HttpsConnector<HttpConnector>, UpstreamBody>;

/// The shared client to editor nodes: one pool of kept-alive connections, plus a client
/// that never reuses a connection, for the one retry a request gets when a pooled
/// connection turned out closed (any other pooled connection may be as stale).
#[derive(Clone)]
pub struct UpstreamClient {
    pooled: HyperClient,
    fresh: HyperClient,
}

impl UpstreamClient {
    /// Sends `request` over a pooled connection (or a new one).
    pub async fn request(
        &self,
        request: http::Request<UpstreamBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.pooled.request(request).await
    }

    /// Sends `request` over a new connection, closed after it.
    pub async fn request_fresh(
        &self,
        request: http::Request<UpstreamBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.fresh.request(request).await
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
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(UpstreamClient {
        pooled: Client::builder(TokioExecutor::new()).build(connector.clone()),
        fresh: Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector),
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
