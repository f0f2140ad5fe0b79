//! Every response officeswitch makes up itself, as a named variant.
//!
//! One place decides status, content type and body for each, so a reader can see every
//! reply a client can get from officeswitch (rather than from an editor).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

/// Body type of every response officeswitch sends.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// A reply made by officeswitch.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The merged discovery XML.
    Discovery(Bytes),
    /// The merged capabilities JSON.
    Capabilities(Bytes),
    /// `/healthz`: the process is alive.
    Alive,
    /// `/readyz` when every pool has a discovery: one status line per pool.
    Ready(Vec<String>),
    /// `/readyz` otherwise: one status line per pool, saying what is missing.
    NotReady(Vec<String>),
    /// Discovery or capabilities asked for while no pool has one.
    NothingToServe(&'static str),
    /// A known path with the wrong method.
    MethodNotAllowed,
    /// Nothing here.
    NotFound,
}

impl Answer {
    /// The HTTP status of this answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Answer::Discovery(_) | Answer::Capabilities(_) | Answer::Alive | Answer::Ready(_) => {
                StatusCode::OK
            }
            Answer::NotReady(_) | Answer::NothingToServe(_) => StatusCode::SERVICE_UNAVAILABLE,
            Answer::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Answer::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// Builds the HTTP response.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let (content_type, body): (&'static str, Bytes) = match self {
            Answer::Discovery(xml) => ("text/xml; charset=utf-8", xml),
            Answer::Capabilities(json) => ("application/json", json),
            Answer::Alive => ("text/plain; charset=utf-8", Bytes::from_static(b"alive\n")),
            Answer::Ready(lines) => ("text/plain; charset=utf-8", status_text("ready", lines)),
            Answer::NotReady(lines) => {
                ("text/plain; charset=utf-8", status_text("not ready", lines))
            }
            Answer::NothingToServe(what) => (
                "text/plain; charset=utf-8",
                Bytes::from(format!("no editor {what} available yet; see /readyz\n")),
            ),
            Answer::MethodNotAllowed => (
                "text/plain; charset=utf-8",
                Bytes::from_static(b"method not allowed\n"),
            ),
            Answer::NotFound => (
                "text/plain; charset=utf-8",
                Bytes::from_static(b"not found\n"),
            ),
        };
        let mut response = Response::new(Full::new(body).boxed());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        response
    }
}

/// `head` then one line per entry.
fn status_text(head: &str, lines: Vec<String>) -> Bytes {
    let mut text = format!("{head}\n");
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    Bytes::from(text)
}
