//! The accept loop the stand-in servers share: accept until told to stop, one task per
//! connection, then drop every connection (which closes its socket).

use std::future::Future;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Accepts connections on `listener` and runs `serve` on each until `stop` says so (or its
/// sender is gone); then closes the listener and drops the connections. `name` labels the
/// log line of a failed accept (a client that reset before accept, or fd exhaustion: not
/// fatal, the loop backs off briefly).
pub async fn accept_until<S, F>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    name: &'static str,
    serve: S,
) where
    S: Fn(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream));
                }
                Err(err) => {
                    tracing::warn!(%err, "{name}: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Resolves once stop is requested or the handle is gone. Reducing the result to a bool
/// drops the non-`Send` guard of `wait_for` before any later await.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _stop_requested = stop.wait_for(|stopped| *stopped).await.is_ok();
}
