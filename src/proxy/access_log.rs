//! One access log line per request, written when the response has really ended.
//!
//! A streamed body or a WebSocket tunnel ends long after the handler returns, so the line
//! travels with the body ([`LoggedBody`]) or the tunnel and is written at the end, with
//! the bytes actually sent and the true duration. Only the path is logged, since WOPI puts
//! access tokens in query strings, and even the path is scrubbed ([`loggable_path`]):
//! Collabora's WebSocket and download paths embed the document URL with its token.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Method;
use hyper::body::{Body, Frame, SizeHint};
use tracing::{debug, info, warn};

use super::answer::{Answer, BoxError, Fault};
use super::route::Target;
use crate::metrics::NodeSeries;

/// What the access line says about one request.
#[derive(Debug)]
pub struct AccessLog {
    method: Method,
    path: String,
    class: &'static str,
    probe: bool,
    org: Option<Arc<str>>,
    /// The editor node the request was routed to: its pool, its name and its metrics.
    editor: Option<Arc<NodeSeries>>,
    /// The pool, when no editor node is involved (a WOPI call's, a cache answer's).
    pool: Option<String>,
    /// What answered in an editor node's place: a WOPI host's origin, the cache.
    node: Option<String>,
    status: u16,
    fault: Fault,
    reason: Option<String>,
    started: Instant,
}

impl AccessLog {
    /// Starts the line for a request; `probe` lines (health checks) go to debug level.
    pub fn new(method: &Method, path: &str, class: &'static str, probe: bool) -> AccessLog {
        AccessLog {
            method: method.clone(),
            path: loggable_path(path),
            class,
            probe,
            org: None,
            editor: None,
            pool: None,
            node: None,
            status: 0,
            fault: Fault::None,
            reason: None,
            started: Instant::now(),
        }
    }

    /// Records where the request was routed (`pools` as routing was given them).
    pub fn target(&mut self, target: &Target) {
        self.org = target.org.clone();
        self.editor = target.node_series().cloned();
        self.pool = None;
        self.node = None;
    }

    /// Records an answer the asset cache gave in the node's place: no node was involved.
    pub fn from_cache(&mut self, status: u16) {
        self.status = status;
        if let Some(editor) = self.editor.take() {
            self.pool = Some(editor.pool().to_owned());
        }
        self.node = Some("cache".to_string());
    }

    /// Records the organisation a request turned out to be for once its body was read
    /// (Collabora's settings page names it in its form).
    pub fn org(&mut self, org: &str) {
        self.org = Some(Arc::from(org));
    }

    /// Records the host a WOPI call goes to: the grant's organisation and pool, and the
    /// host's origin in place of a node.
    pub fn wopi(&mut self, grant: &crate::wopi::token::Grant) {
        self.org = Some(Arc::from(grant.org.as_str()));
        self.editor = None;
        self.pool = Some(grant.pool.clone());
        self.node = url::Url::parse(&grant.url)
            .ok()
            .map(|u| u.origin().ascii_serialization());
    }

    /// The request's class (metrics).
    pub fn class(&self) -> &'static str {
        self.class
    }

    /// The pool the request was routed to, if any (metrics).
    pub fn pool(&self) -> &str {
        match &self.editor {
            Some(editor) => editor.pool(),
            None => self.pool.as_deref().unwrap_or(""),
        }
    }

    /// The editor node (its configured base URL) the request was routed to, if any
    /// (metrics; a WOPI call's host is no node).
    pub fn node(&self) -> &str {
        self.editor.as_ref().map_or("", |editor| editor.node())
    }

    /// Records an answer officeswitch made itself.
    pub fn answer(&mut self, answer: &Answer) {
        self.status = answer.status().as_u16();
        self.fault = answer.fault();
        self.reason = answer.reason();
    }

    /// Records the status an editor answered.
    pub fn status(&mut self, status: u16) {
        self.status = status;
    }

    /// Writes the line: `bytes` sent to the client, `error` if the exchange broke.
    pub fn write(self, bytes: u64, error: Option<&str>) {
        let took = self.started.elapsed();
        let elapsed_ms = took.as_secs_f64() * 1000.0;
        let (method, path, class, status) = (
            self.method.as_str(),
            self.path.as_str(),
            self.class,
            self.status,
        );
        let org = self.org.as_deref().unwrap_or("-");
        let (pool, node) = match &self.editor {
            Some(editor) => (editor.pool(), editor.node()),
            None => (
                self.pool.as_deref().unwrap_or("-"),
                self.node.as_deref().unwrap_or("-"),
            ),
        };
        let reason = self.reason.as_deref().or(error).unwrap_or("");
        if error.is_some() || matches!(self.fault, Fault::Editor | Fault::Host | Fault::Internal) {
            warn!(
                method,
                path,
                class,
                org,
                pool,
                node,
                status,
                bytes,
                elapsed_ms,
                fault = self.fault.as_str(),
                reason,
                "request"
            );
        } else if self.probe {
            debug!(method, path, class, status, bytes, elapsed_ms, "request");
        } else if self.fault == Fault::Client {
            info!(
                method,
                path,
                class,
                org,
                pool,
                node,
                status,
                bytes,
                elapsed_ms,
                fault = "client",
                reason,
                "request"
            );
        } else {
            info!(
                method,
                path, class, org, pool, node, status, bytes, elapsed_ms, "request"
            );
        }
        let metrics = crate::metrics::global();
        match &self.editor {
            Some(editor) => metrics.node_request(class, editor, status, bytes, took),
            // The pool moves into the metric's labels rather than being copied again.
            None => metrics.request(class, self.pool.unwrap_or_default(), status, bytes, took),
        }
    }
}

/// `path` with every secret a path can carry cut out: in an encoded URL segment (Collabora's
/// `/cool/<enc(WOPISrc?access_token=...)>/ws`) everything from its encoded `?` on; a hexified
/// segment (`/cool/0x<hex>/...`, which encodes the same) entirely. Anything else, including
/// non-UTF-8-looking percent escapes, stays as it is.
pub fn loggable_path(path: &str) -> String {
    // Most paths (static files) carry neither form: kept as they are.
    if path.len() <= MAX_LOGGED_PATH && !path.contains('%') && !path.contains("/0x") {
        return path.to_string();
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let query_at = segment
            .as_bytes()
            .windows(3)
            .position(|w| w[0] == b'%' && w[1] == b'3' && w[2].eq_ignore_ascii_case(&b'f'));
        if let Some(at) = query_at {
            out.push_str(&segment[..at]);
            out.push_str("%3F[redacted]");
        } else if segment.len() > 2 && segment.starts_with("0x") {
            out.push_str("0x[redacted]");
        } else {
            out.push_str(segment);
        }
        if out.len() > MAX_LOGGED_PATH {
            break;
        }
    }
    if out.len() > MAX_LOGGED_PATH {
        let mut end = MAX_LOGGED_PATH;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        let total = path.len();
        out.truncate(end);
        out.push_str(&format!("...[{total} bytes]"));
    }
    out
}

/// Longest path an access line carries (a client chooses the path: a 60 KiB one must not
/// make a 60 KiB log line); longer ones are cut and say their length.
const MAX_LOGGED_PATH: usize = 512;

/// A response body that counts what it sends and writes the access line when it ends
/// (completely, with an error, or because the client went away).
pub struct LoggedBody<B: Body> {
    inner: B,
    bytes: u64,
    log: Option<AccessLog>,
}

impl<B: Body> LoggedBody<B> {
    /// Wraps `inner`; `log` is written when the body ends.
    pub fn new(inner: B, log: AccessLog) -> LoggedBody<B> {
        LoggedBody {
            inner,
            bytes: 0,
            log: Some(log),
        }
    }

    fn finish(&mut self, error: Option<&str>) {
        if let Some(log) = self.log.take() {
            log.write(self.bytes, error);
        }
    }
}

impl<B> Body for LoggedBody<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish(None);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let message = format!("body broke: {e}");
                self.finish(Some(&message));
            }
            Poll::Ready(None) => self.finish(None),
            Poll::Pending => {}
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

impl<B: Body> Drop for LoggedBody<B> {
    fn drop(&mut self) {
        // Bodies known to be empty (204, empty answers) and HEAD bodies are never polled.
        let head = self.log.as_ref().is_some_and(|l| l.method == Method::HEAD);
        let error = (!self.inner.is_end_stream() && !head)
            .then_some("client went away before the body ended");
        self.finish(error);
    }
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn paths_lose_the_tokens_they_embed() {
        let ws = "/cool/https%3A%2F%2Foffice%2Fwopi%2Ffiles%2FabcD%3Faccess_token%3DeyJ.secret.sig%26access_token_ttl%3D0/ws";
        assert_eq!(
            loggable_path(ws),
            "/cool/https%3A%2F%2Foffice%2Fwopi%2Ffiles%2FabcD%3F[redacted]/ws"
        );
        let hex = "/cool/0x68747470733a2f2f6f66666963652f3f746f6b656e3d73/ws";
        assert_eq!(loggable_path(hex), "/cool/0x[redacted]/ws");
        for plain in [
            "/browser/abc/cool.html",
            "/9.2.1-abc/doc/1/c/",
            "/",
            "/cool/0x",
        ] {
            assert_eq!(loggable_path(plain), plain);
        }
    }

    #[test]
    fn a_long_path_makes_a_short_line() {
        // A 60 KiB path a client chose (issue 13).
        let long = format!("/browser/{}", "é".repeat(30_000));
        let logged = loggable_path(&long);
        assert!(logged.len() < 600, "{}", logged.len());
        assert!(
            logged.ends_with(&format!("...[{} bytes]", long.len())),
            "{logged}"
        );
    }
}
