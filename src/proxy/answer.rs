//! Every response officeswitch makes up itself, as a named variant.
//!
//! One place decides status, content type and body for each, so a reader can see every
//! reply a client can get from officeswitch (rather than from an editor), and whose fault
//! it is ([`Fault`]), which the access log records.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

/// Error type of streamed bodies (an editor or client connection breaking mid-body).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body type of every response officeswitch sends: its own answers and streamed ones.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Who caused an answer that is not a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing went wrong.
    None,
    /// The client asked for something wrong or forbidden.
    Client,
    /// An editor node failed or the suite cannot serve.
    Editor,
    /// The WOPI host (Nextcloud) failed.
    Host,
    /// officeswitch itself failed (minting a token): blamed on neither side.
    Internal,
}

impl Fault {
    /// Name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Client => "client",
            Fault::Editor => "editor",
            Fault::Host => "host",
            Fault::Internal => "internal",
        }
    }
}

/// A reply made by officeswitch.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The merged discovery XML.
    Discovery(Bytes),
    /// Step 1 of an open: `307` to the suite's own editor page on officeswitch's origin,
    /// which the browser re-POSTs the form to ([`super::open`]).
    EditorPage(String),
    /// Step 1 of an open in a pool whose page needs a postMessage bridge: the bridge page,
    /// which posts the form to the editor page inside itself ([`super::bridge`]).
    Bridge(super::bridge::BridgePage),
    /// The open ticket of an editor page is missing, forged, expired or for another file.
    BadTicket(&'static str),
    /// officeswitch could not do its own part (mint a token): why.
    Internal(String),
    /// The merged capabilities JSON.
    Capabilities(Bytes),
    /// `/healthz`: the process is alive.
    Alive,
    /// `/readyz` when every pool has a discovery and the instance is not stopping: the
    /// short public line ([`crate::readiness`]; the detail is on the admin listener).
    Ready(String),
    /// `/readyz` otherwise: `not ready:` and why, naming no address.
    NotReady(String),
    /// Discovery or capabilities asked for while no pool has one.
    NothingToServe(&'static str),
    /// A known path with the wrong method.
    MethodNotAllowed,
    /// Nothing here.
    NotFound,
    /// A request officeswitch cannot route as sent.
    BadRequest(&'static str),
    /// `WOPISrc` present but unusable (why).
    BadWopiSrc(String),
    /// `WOPISrc` names an origin no organisation owns; nothing is contacted.
    UnknownOrigin(String),
    /// An officeswitch file id whose organisation the rules no longer name.
    UnknownFile,
    /// A WOPI call whose token is missing, forged, expired or for another file (why).
    BadToken(&'static str),
    /// A WOPI call whose organisation or host URL the rules do not allow (why).
    HostNotAllowed(String),
    /// A WOPI call whose editor proof is missing or wrong (why). 500, as the WOPI
    /// specification asks of a host refusing a proof.
    BadProof(String),
    /// The open form is larger than officeswitch accepts.
    FormTooLarge,
    /// The host (Nextcloud) refused, reset or broke the exchange, or answered something
    /// officeswitch cannot pass on (why).
    HostFailed(String),
    /// The host did not answer in time.
    HostTimeout,
    /// The format or action is not offered (why).
    NoAction(String),
    /// The pool has no node to send to.
    NoNode(String),
    /// The pool has no discovery yet, so its `urlsrc`s are unknown.
    NoDiscovery(String),
    /// The node refused, reset or broke the exchange (why, for the log).
    BadGateway(String),
    /// The node did not answer in time.
    GatewayTimeout,
    /// The client's request body broke off or was malformed on its way to the node.
    ClientBodyFailed,
    /// The client's request body stopped arriving and the node gave up waiting.
    ClientBodyStalled,
    /// A WOPI call officeswitch answers itself because passing it on in this suite's
    /// dialect would lose data or protection ([`super::dialect`]).
    Dialect(super::dialect::Refusal),
    /// An out-of-date ONLYOFFICE save stored as a new file ([`super::conflict`]): `{}`,
    /// without the `LastModifiedTime` a save's answer carries, so the editor's next save
    /// is still out of date.
    ConflictCopied,
}

impl Answer {
    /// The HTTP status of this answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Answer::Discovery(_)
            | Answer::Capabilities(_)
            | Answer::Alive
            | Answer::Ready(_)
            | Answer::Bridge(_)
            | Answer::ConflictCopied => StatusCode::OK,
            Answer::EditorPage(_) => StatusCode::TEMPORARY_REDIRECT,
            Answer::BadTicket(_) => StatusCode::BAD_REQUEST,
            Answer::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Answer::NotReady(_)
            | Answer::NothingToServe(_)
            | Answer::NoNode(_)
            | Answer::NoDiscovery(_) => StatusCode::SERVICE_UNAVAILABLE,
            Answer::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Answer::NotFound | Answer::NoAction(_) => StatusCode::NOT_FOUND,
            Answer::BadRequest(_) | Answer::BadWopiSrc(_) | Answer::ClientBodyFailed => {
                StatusCode::BAD_REQUEST
            }
            Answer::ClientBodyStalled => StatusCode::REQUEST_TIMEOUT,
            Answer::UnknownOrigin(_) | Answer::UnknownFile | Answer::HostNotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            Answer::BadToken(_) => StatusCode::UNAUTHORIZED,
            Answer::BadProof(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Answer::FormTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Answer::HostFailed(_) => StatusCode::BAD_GATEWAY,
            Answer::HostTimeout => StatusCode::GATEWAY_TIMEOUT,
            Answer::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Answer::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Answer::Dialect(refusal) => refusal.status(),
        }
    }

    /// Whose fault the answer is.
    pub fn fault(&self) -> Fault {
        match self {
            Answer::Discovery(_)
            | Answer::EditorPage(_)
            | Answer::Bridge(_)
            | Answer::Capabilities(_)
            | Answer::Alive
            | Answer::Ready(_)
            | Answer::NotReady(_)
            | Answer::ConflictCopied => Fault::None,
            Answer::MethodNotAllowed
            | Answer::NotFound
            | Answer::BadRequest(_)
            | Answer::BadWopiSrc(_)
            | Answer::UnknownOrigin(_)
            | Answer::UnknownFile
            | Answer::BadToken(_)
            | Answer::HostNotAllowed(_)
            | Answer::BadProof(_)
            | Answer::FormTooLarge
            | Answer::BadTicket(_)
            | Answer::NoAction(_)
            | Answer::ClientBodyFailed
            | Answer::ClientBodyStalled
            | Answer::Dialect(_) => Fault::Client,
            Answer::Internal(_) => Fault::Internal,
            Answer::HostFailed(_) | Answer::HostTimeout => Fault::Host,
            Answer::NothingToServe(_)
            | Answer::NoNode(_)
            | Answer::NoDiscovery(_)
            | Answer::BadGateway(_)
            | Answer::GatewayTimeout => Fault::Editor,
        }
    }

    /// The short reason logged with an error answer.
    pub fn reason(&self) -> Option<String> {
        match self {
            Answer::BadRequest(why) => Some((*why).to_string()),
            Answer::BadTicket(why) => Some(format!("open ticket refused: {why}")),
            Answer::Internal(why) => Some(why.clone()),
            Answer::BadWopiSrc(why) => Some(format!("bad WOPISrc: {why}")),
            Answer::UnknownOrigin(origin) => Some(format!("no organisation owns {origin}")),
            Answer::UnknownFile => Some("the file id names no organisation".into()),
            Answer::BadToken(why) => Some(format!("access token refused: {why}")),
            Answer::HostNotAllowed(why) => Some(why.clone()),
            Answer::BadProof(why) => Some(format!("proof refused: {why}")),
            Answer::FormTooLarge => Some("open form too large".into()),
            Answer::HostFailed(why) => Some(format!("host failed: {why}")),
            Answer::HostTimeout => Some("host did not answer in time".into()),
            Answer::NoAction(why) => Some(why.clone()),
            Answer::NoNode(pool) => Some(format!("pool {pool} has no node")),
            Answer::NoDiscovery(pool) => Some(format!("pool {pool} has no discovery")),
            Answer::BadGateway(why) => Some(why.clone()),
            Answer::GatewayTimeout => Some("node did not answer in time".into()),
            Answer::ClientBodyFailed => Some("the client's request body broke off".into()),
            Answer::ClientBodyStalled => Some("the client's request body stopped arriving".into()),
            Answer::Dialect(refusal) => Some(format!("dialect refused: {}", refusal.reason())),
            _ => None,
        }
    }

    /// Builds the HTTP response.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let refusal = match &self {
            Answer::Dialect(refusal) => Some(*refusal),
            _ => None,
        };
        let text = |s: String| ("text/plain; charset=utf-8", Bytes::from(s));
        let (content_type, body): (&'static str, Bytes) = match self {
            Answer::Discovery(xml) => ("text/xml; charset=utf-8", xml),
            Answer::EditorPage(ref location) => {
                return redirect(location);
            }
            Answer::Bridge(page) => return bridge_page(page),
            Answer::BadTicket(why) => text(format!(
                "this editor page cannot be opened ({why}): open the document again from Nextcloud\n"
            )),
            Answer::Internal(_) => text("officeswitch failed; see its log\n".into()),
            Answer::Capabilities(json) => ("application/json", json),
            Answer::Alive => text("alive\n".into()),
            Answer::Ready(summary) | Answer::NotReady(summary) => text(format!("{summary}\n")),
            Answer::NothingToServe(what) => {
                text(format!("no editor {what} available yet; see /readyz\n"))
            }
            Answer::MethodNotAllowed => text("method not allowed\n".into()),
            Answer::NotFound => text("not found\n".into()),
            Answer::BadRequest(why) => text(format!("bad request: {why}\n")),
            Answer::BadWopiSrc(why) => text(format!("bad WOPISrc: {why}\n")),
            Answer::UnknownOrigin(_) => {
                text("this WOPISrc origin is not served by officeswitch\n".into())
            }
            Answer::UnknownFile => text("this file is not served by officeswitch\n".into()),
            Answer::BadToken(why) => text(format!("invalid access token: {why}\n")),
            Answer::HostNotAllowed(_) => text("this host is not served by officeswitch\n".into()),
            Answer::BadProof(why) => text(format!("invalid WOPI proof: {why}\n")),
            Answer::FormTooLarge => text("the open form is too large\n".into()),
            Answer::HostFailed(_) => text("the WOPI host failed\n".into()),
            Answer::HostTimeout => text("the WOPI host did not answer in time\n".into()),
            Answer::NoAction(why) => text(format!("{why}\n")),
            Answer::NoNode(pool) => text(format!("no node of pool {pool} is available\n")),
            Answer::NoDiscovery(pool) => text(format!("pool {pool} is not ready\n")),
            Answer::BadGateway(_) => text("the editor node failed\n".into()),
            Answer::GatewayTimeout => text("the editor node did not answer in time\n".into()),
            Answer::ClientBodyFailed => text("the request body broke off\n".into()),
            Answer::ClientBodyStalled => text("the request body stopped arriving\n".into()),
            Answer::Dialect(refusal) => text(format!("{}\n", refusal.message())),
            Answer::ConflictCopied => ("application/json", Bytes::from_static(b"{}")),
        };
        let mut response = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // Some answers quote what the client sent: never read as anything but text.
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        if let Some(refusal) = refusal {
            // WOPI clients log this header (ONLYOFFICE logs the answer's headers).
            headers.insert(
                "x-wopi-servererror",
                HeaderValue::from_static(refusal.message()),
            );
        }
        response
    }
}

/// A `307` to `location`: the browser repeats the POST, form and all, there.
fn redirect(location: &str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let headers = response.headers_mut();
    // Built from public_url, a node's urlsrc path and encoded query values: header text.
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The ticket in the page address is nobody else's business.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The bridge page: HTML under its own policy, not cached, no referrer (its form holds
/// the host's token).
fn bridge_page(page: super::bridge::BridgePage) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(page.html))
            .map_err(|never| match never {})
            .boxed(),
    );
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Origins and hashes only: header text.
    if let Ok(policy) = HeaderValue::from_str(&page.csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
