//! Accept loops: TCP (and TLS) connections served by hyper, HTTP/1.1 and HTTP/2.
//!
//! [`serve`] accepts until the [`Drain`] says stop, then lets open connections finish
//! their requests until the drain deadline.

pub mod admission;
pub mod deadline;
pub mod drain;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::config::ServerConfig;
use crate::proxy::Proxy;
use admission::Admission;
use deadline::{Deadline, Requests};
use drain::Drain;

/// Time a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` (through `tls` when given) until `drain` stops accepting; returns
/// when the connections it accepted are done or the drain closes them. `admission` (one
/// for all listeners) holds the connection limits.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    proxy: Arc<Proxy>,
    limits: ServerConfig,
    admission: Arc<Admission>,
    drain: Arc<Drain>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Request heads are timed by the connection's [`Deadline`], without a timer each.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, scheme, "listening");
    }
    loop {
        let (stream, peer) = tokio::select! {
            () = drain.accepting_stopped() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(admitted) = admission.admit(peer.ip()) else {
            // Over a limit: closed unserved (counted and logged by the admission).
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let client = Arc::new(proxy.client(peer));
        let requests = Requests::default();
        let handler_requests = requests.clone();
        let service = service_fn(move |request| {
            let in_flight = handler_requests.started(request.version() == http::Version::HTTP_2);
            let requests = handler_requests.clone();
            let proxy = proxy.clone();
            let client = Arc::clone(&client);
            async move {
                let response = proxy.handle(request, &client).await;
                if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    requests.upgraded();
                }
                // Busy until the response body has ended (or was dropped).
                let response = response.map(|body| in_flight.until_end_of(body));
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let (header_timeout, idle_timeout) = (limits.header_timeout, limits.idle_timeout);
        match &tls {
            None => {
                let stream = Deadline::new(stream, header_timeout, idle_timeout, requests);
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        connection_error(peer, &*e);
                    }
                    drop(admitted);
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream =
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let stream = Deadline::new(stream, header_timeout, idle_timeout, requests);
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        connection_error(peer, &*e);
                    }
                    drop(admitted);
                });
            }
        }
    }
    drop(listener);
    // Idle keep-alive connections close now; busy ones after their request.
    tokio::select! {
        () = graceful.shutdown() => debug!(scheme, "all connections closed"),
        () = drain.closing() => warn!(scheme, "drain deadline passed; closing remaining connections"),
    }
}

/// Logs why a client connection ended badly: one info line for what a hoster may want to
/// see (slow or oversized request heads), debug for ordinary disconnects.
fn connection_error(peer: std::net::SocketAddr, e: &(dyn std::error::Error + 'static)) {
    let hyper_error = e.downcast_ref::<hyper::Error>();
    let silent = chain_has_timed_out(e);
    let reason = match hyper_error {
        _ if silent => Some("no request received in time"),
        Some(h) if h.is_timeout() => Some("request head not received in time"),
        Some(h) if h.is_parse_too_large() => Some("request head too large"),
        Some(h) if h.is_parse() => Some("malformed request"),
        _ => None,
    };
    match reason {
        Some(reason) => info!(%peer, reason, "connection closed"),
        None => debug!(%peer, error = %e, "connection closed with error"),
    }
}

/// Whether `e` or one of its causes is an I/O time-out (the first-request deadline).
fn chain_has_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        current = err.source();
    }
    false
}
