//! Stand-in editors: real loopback HTTP servers that answer like Collabora Online
//! (coolwsd) and ONLYOFFICE Docs, so officeswitch can be tested over real sockets.
//!
//! Why real servers rather than mocks: officeswitch is a proxy, and most of what can go
//! wrong is in the wire protocol (headers, bodies that are cut short, connections that
//! hang or reset). Only a real TCP peer shows those. Each stand-in:
//!
//! - binds `127.0.0.1:0`, or a fixed address with `SO_REUSEADDR` so a stopped editor can
//!   be brought back on the same port ([`StandInEditor::start_on`]);
//! - serves `GET /hosting/discovery` and `GET /hosting/capabilities` shaped on the
//!   fixtures in `../shared/fixtures` (see `SOURCES.md` there), with its own RSA proof key;
//! - records every request it receives, in order ([`StandInEditor::requests`]);
//! - can be told to misbehave on those two endpoints ([`Fault`]);
//! - on [`StandInEditor::stop`] stops accepting and resets every open connection, so
//!   clients see a refused or reset connection, as they would if the editor crashed.
//!
//! This file must stay self-contained (only external crates and `officeswitch::...`):
//! `examples/lab.rs` includes it with `#[path = "../tests/integration/support/editor.rs"]`.
//! Each includer uses only part of it and so allows `dead_code` on the module (`support`
//! in `mod.rs`, `#[allow(dead_code)] mod editor;` in `lab.rs`); an inner allowance here
//! would duplicate theirs.

use std::collections::HashSet;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use officeswitch::wopi::proof_key::{ProofKey, PublicProofKey};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The Collabora discovery as served by CODE `61cf2b4`, with host `http://collabora.test:9980`.
/// Embedded at compile time so the stand-in works from any working directory (tests and
/// the `lab` example alike).
const COLLABORA_DISCOVERY_TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/collabora-discovery-code-61cf2b4.xml"
));

/// The host the Collabora fixture was captured with; replaced by the stand-in's own URL,
/// as coolwsd replaces `%SRV_URI%` with the scheme and host it was reached on.
const COLLABORA_FIXTURE_ORIGIN: &str = "http://collabora.test:9980";

/// A real CODE 23.05.9.1 capabilities body (its `serverId` was redacted by whoever
/// recorded it; the stand-in puts a fresh one back).
const COLLABORA_CAPABILITIES_TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/collabora-capabilities-code-23.05.9.1.json"
));

/// The OnlyOffice version the stand-in claims to be (ONLYOFFICE/server v9.3.1, the
/// source the generated discovery follows).
pub const ONLYOFFICE_VERSION: &str = "9.3.1";

/// The body of OnlyOffice's `GET /hosting/capabilities` (`collaboraCapabilities()` in
/// `wopiClient.js`): a fixed object in `JSON.stringify` insertion order, with no
/// `productName`, `productVersionHash` or `serverId`.
const ONLYOFFICE_CAPABILITIES: &str = concat!(
    r#"{"convert-to":{"available":true,"endpoint":"/lool/convert-to"},"#,
    r#""hasMobileSupport":true,"hasProxyPrefix":false,"hasTemplateSaveAs":false,"#,
    r#""hasTemplateSource":true,"productVersion":"9.3.1"}"#
);

/// The placeholder tail OnlyOffice appends to every urlsrc, unescaped. WOPI clients
/// substitute or drop the `<name=VALUE&>` blocks; Nextcloud just appends its own query.
const ONLYOFFICE_PLACEHOLDERS: &str = concat!(
    "<rs=DC_LLCC&><dchat=DISABLE_CHAT&><embed=EMBEDDED&><fs=FULLSCREEN&>",
    "<hid=HOST_SESSION_ID&><rec=RECORDING&><sc=SESSION_CONTEXT&><thm=THEME_ID&>",
    "<ui=UI_LLCC&><wopisrc=WOPI_SOURCE&>&"
);

/// The body nginx-fronted editors return while the editor behind nginx is down. It is
/// well-formed XML on purpose: a parser accepts it, so only a root-element check catches it.
const NGINX_BAD_GATEWAY: &str = "<html><body><h1>502 Bad Gateway</h1></body></html>";

/// Which editor product a stand-in imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    /// Collabora Online / CODE (coolwsd).
    Collabora,
    /// ONLYOFFICE Docs (DocService) in WOPI mode.
    OnlyOffice,
}

/// A way for `/hosting/discovery` and `/hosting/capabilities` to misbehave, for testing
/// how officeswitch copes with a broken editor. Other routes are never affected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// 200 with the first half of the real document: an editor that died mid-response
    /// or a body cut by an intermediary.
    BrokenXml,
    /// 200 `text/html` with an nginx "502 Bad Gateway" page: a front proxy that answers
    /// for an editor that is down, with the wrong status.
    Html,
    /// 200 with an empty body.
    EmptyBody,
    /// This status with a short `text/plain` body.
    Status(u16),
    /// Accept the request and never answer; the connection is held until `stop`.
    Hang,
    /// 200 `text/xml` streaming exactly this many bytes of valid-looking XML (chunked, no
    /// `Content-Length`), produced lazily so the size can exceed memory. Tests size limits.
    Huge(usize),
}

/// One request as the stand-in received it, kept so tests can assert what officeswitch
/// forwarded (paths, rewritten headers, proofs).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The request method.
    pub method: Method,
    /// Path plus query string, exactly as received (`/hosting/discovery`, `/x?a=b`).
    pub path_and_query: String,
    /// All request headers.
    pub headers: HeaderMap,
}

/// The body type every stand-in response uses: whole documents and lazy streams alike.
pub type Body = BoxBody<Bytes, Infallible>;

/// A running stand-in editor. Dropping it also shuts the server down, but without waiting;
/// call [`StandInEditor::stop`] when a test needs the port to be free afterwards.
pub struct StandInEditor {
    /// The address actually bound (the real port when started on port 0).
    addr: SocketAddr,
    /// The proof key; kept whole (not just the public part) so a restart can reuse it and
    /// so later WOPI callbacks can sign with it.
    key: Arc<ProofKey>,
    /// State the connection tasks read: documents, the current fault, the request log.
    shared: Arc<Shared>,
    /// Set to `true` to make the accept loop and every connection shut down.
    shutdown: watch::Sender<bool>,
    /// The accept loop; it ends once the listener and all connections are closed.
    server: Option<JoinHandle<()>>,
}

impl StandInEditor {
    /// Starts a stand-in on `127.0.0.1:0` with a freshly generated proof key.
    ///
    /// RSA key generation takes a moment; tests that start many editors can share one key
    /// with [`StandInEditor::start_with_key`].
    pub async fn start(suite: Suite) -> Self {
        Self::start_with_key(suite, generate_key().await).await
    }

    /// Starts a stand-in on `127.0.0.1:0` with the given proof key. Accepts a `ProofKey` or
    /// an `Arc<ProofKey>`, so several editors can share one key (as the two editors behind
    /// one merged discovery must, if richdocuments is to verify both).
    pub async fn start_with_key(suite: Suite, key: impl Into<Arc<ProofKey>>) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_on_with_key(suite, loopback, key)
            .await
            .expect("stand-in editor: cannot bind 127.0.0.1:0")
    }

    /// Starts a stand-in on a given address, typically the address of an editor that was
    /// just stopped, to test that officeswitch notices an editor coming back. Uses a new
    /// proof key; see [`StandInEditor::start_on_with_key`] to keep the old one.
    ///
    /// # Errors
    /// Fails if the address cannot be bound (still in use, not local).
    pub async fn start_on(suite: Suite, addr: SocketAddr) -> io::Result<Self> {
        Self::start_on_with_key(suite, addr, generate_key().await).await
    }

    /// Starts a stand-in on a given address with the given proof key.
    ///
    /// # Errors
    /// Fails if the address cannot be bound (still in use, not local).
    pub async fn start_on_with_key(
        suite: Suite,
        addr: SocketAddr,
        key: impl Into<Arc<ProofKey>>,
    ) -> io::Result<Self> {
        let key = key.into();
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let base = format!("http://{addr}");
        let shared = Arc::new(Shared::new(suite, &base, key.public()));
        let (shutdown, stop_rx) = watch::channel(false);
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stop_rx));
        tracing::debug!(?suite, %addr, "stand-in editor started");
        Ok(Self {
            addr,
            key,
            shared,
            shutdown,
            server: Some(server),
        })
    }

    /// The address the stand-in listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:PORT`, as it appears in the stand-in's discovery.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Which product this stand-in imitates.
    pub fn suite(&self) -> Suite {
        self.shared.suite
    }

    /// Makes `/hosting/discovery` and `/hosting/capabilities` misbehave from the next
    /// request on (requests already waiting, e.g. under [`Fault::Hang`], are unaffected).
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.shared.fault) = fault;
    }

    /// The public half of the stand-in's proof key, as published in its discovery.
    pub fn public_key(&self) -> &PublicProofKey {
        self.key.public()
    }

    /// The whole proof key, shareable, e.g. to restart on the same port with the same key.
    pub fn proof_key(&self) -> Arc<ProofKey> {
        Arc::clone(&self.key)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The discovery document served when no fault is set.
    pub fn discovery_xml(&self) -> &str {
        &self.shared.discovery
    }

    /// The capabilities document served when no fault is set.
    pub fn capabilities_json(&self) -> &str {
        &self.shared.capabilities
    }

    /// Stops accepting, resets every open connection (clients see a reset, new clients a
    /// refusal) and returns once the listening socket is closed, so the port can be bound
    /// again with [`StandInEditor::start_on`].
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            reraise_panic(server.await);
        }
        tracing::debug!(addr = %self.addr, "stand-in editor stopped");
    }
}

impl Drop for StandInEditor {
    /// Signals shutdown so a forgotten editor does not keep serving; does not wait.
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Re-raises a server task's panic in the test that stops it, so a bug in the stand-in
/// fails the test loudly instead of showing up as a mysterious connection error.
fn reraise_panic(result: Result<(), tokio::task::JoinError>) {
    if let Err(err) = result
        && err.is_panic()
    {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// Generates a proof key off the async threads (RSA key generation is CPU-bound).
async fn generate_key() -> ProofKey {
    tokio::task::spawn_blocking(ProofKey::generate)
        .await
        .expect("stand-in editor: proof key generation panicked")
        .expect("stand-in editor: cannot generate a proof key")
}

/// Binds a listener with `SO_REUSEADDR`, so an address whose previous listener just closed
/// can be bound again at once.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not hide the state
/// from the rest of the test.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the connection tasks share with the [`StandInEditor`] handle.
struct Shared {
    /// Which product to imitate; decides the routes.
    suite: Suite,
    /// `GET /hosting/discovery` body (fault-free).
    discovery: String,
    /// `GET /hosting/capabilities` body (fault-free).
    capabilities: String,
    /// Misbehaviour currently in force for the discovery and capabilities routes.
    fault: Mutex<Fault>,
    /// Every request received, in order.
    requests: Mutex<Vec<RecordedRequest>>,
}

impl Shared {
    /// Builds the documents once, since they depend only on the bound URL and the key.
    fn new(suite: Suite, base: &str, key: &PublicProofKey) -> Self {
        let (discovery, capabilities) = match suite {
            Suite::Collabora => (
                collabora_discovery(base, key),
                collabora_capabilities(&random_server_id()),
            ),
            Suite::OnlyOffice => (
                onlyoffice_discovery(base, key),
                ONLYOFFICE_CAPABILITIES.to_owned(),
            ),
        };
        Self {
            suite,
            discovery,
            capabilities,
            fault: Mutex::new(Fault::None),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// Appends a request to the log.
    fn record(&self, req: &Request<Incoming>) {
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), ToString::to_string);
        lock(&self.requests).push(RecordedRequest {
            method: req.method().clone(),
            path_and_query,
            headers: req.headers().clone(),
        });
    }
}

/// Accepts connections until shutdown, then closes the listener and waits for every
/// connection task to finish (each resets its connection).
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    // Cloned for each connection; `stop` itself is borrowed by the select below.
    let connection_stop = stop.clone();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(
                        stream,
                        Arc::clone(&shared),
                        connection_stop.clone(),
                    ));
                }
                Err(err) => {
                    // Per-connection errors (e.g. a client that reset before accept) are
                    // not fatal; back off briefly in case it is fd exhaustion.
                    tracing::warn!(%err, "stand-in editor: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while let Some(result) = connections.join_next().await {
        reraise_panic(result);
    }
}

/// Resolves once shutdown is signalled, or once the [`StandInEditor`] is gone (the channel
/// closes), which must stop the server as well.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Ok (stop requested) and Err (handle dropped) both mean stop. Reducing the result to
    // a bool drops the non-`Send` guard `wait_for` returns before any later await.
    let _stop_requested = stop.wait_for(|stopped| *stopped).await.is_ok();
}

/// Serves one connection (HTTP/1.1 or h2, with upgrades for later WebSocket routes) until
/// the client closes it or shutdown is signalled; on shutdown the connection is reset.
///
/// Note for upgrade routes: once a connection is upgraded, hyper hands the socket to the
/// upgrade future and this task ends, so the task serving the upgraded stream must itself
/// watch `stop` (and be awaited by `accept_loop`) for `stop()` to cut it.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    // Keep a second handle to the socket, so that at shutdown SO_LINGER=0 can be set while
    // hyper still owns the stream: the close then sends RST and leaves no TIME_WAIT.
    let (stream, reset_handle) = match split_reset_handle(stream) {
        Ok(pair) => pair,
        Err(err) => {
            tracing::warn!(%err, "stand-in editor: cannot prepare connection");
            return;
        }
    };
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut connection =
        pin!(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%err, "stand-in editor: connection ended with an error");
            }
        }
        () = stopped(&mut stop) => {
            if let Err(err) = TcpSocket::from_std_stream(reset_handle).set_zero_linger() {
                tracing::warn!(%err, "stand-in editor: cannot arm connection reset");
            }
            // Dropping the connection closes the last handle: the kernel sends RST.
        }
    }
}

/// Returns the stream plus a duplicate handle to the same socket.
fn split_reset_handle(stream: TcpStream) -> io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let duplicate = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, duplicate))
}

/// The routes a stand-in knows. To add one: a variant here, a line in [`Route::of`], an
/// arm in [`handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// `GET /hosting/discovery` (both suites).
    Discovery,
    /// `GET /hosting/capabilities` (both suites).
    Capabilities,
    /// coolwsd `GET /` or OnlyOffice `GET /healthcheck`.
    Health,
    /// Anything else.
    NotFound,
}

impl Route {
    /// Classifies a request; pure, so the routing table reads in one place.
    fn of(suite: Suite, method: &Method, path: &str) -> Self {
        match (suite, method.as_str(), path) {
            (_, "GET", "/hosting/discovery") => Self::Discovery,
            (_, "GET", "/hosting/capabilities") => Self::Capabilities,
            (Suite::Collabora, "GET" | "HEAD", "/") => Self::Health,
            (Suite::OnlyOffice, "GET", "/healthcheck") => Self::Health,
            _ => Self::NotFound,
        }
    }
}

/// Records the request, then answers it.
async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    shared.record(&req);
    match Route::of(shared.suite, req.method(), req.uri().path()) {
        Route::Discovery => {
            let content_type = match shared.suite {
                Suite::Collabora => "text/xml",
                // Express adds the charset to the type wopiClient.js sets.
                Suite::OnlyOffice => "text/xml; charset=utf-8",
            };
            faultable(shared, &shared.discovery, content_type).await
        }
        Route::Capabilities => {
            let content_type = match shared.suite {
                Suite::Collabora => "application/json",
                // utils.fillResponseSimple appends "; charset=UTF-8".
                Suite::OnlyOffice => "application/json; charset=UTF-8",
            };
            faultable(shared, &shared.capabilities, content_type).await
        }
        Route::Health => match shared.suite {
            Suite::Collabora => whole(StatusCode::OK, "text/plain", "OK"),
            // `res.send("true")` in DocsCoServer.healthCheck: Express's default type.
            Suite::OnlyOffice => whole(StatusCode::OK, "text/html; charset=utf-8", "true"),
        },
        Route::NotFound => whole(StatusCode::NOT_FOUND, "text/plain", "Not Found\n"),
    }
}

/// Serves `document`, or misbehaves as the current [`Fault`] says.
async fn faultable(shared: &Shared, document: &str, content_type: &'static str) -> Response<Body> {
    let fault = lock(&shared.fault).clone();
    match fault {
        Fault::None => whole(StatusCode::OK, content_type, document.to_owned()),
        Fault::BrokenXml => {
            let mut cut = document.len() / 2;
            while !document.is_char_boundary(cut) {
                cut -= 1;
            }
            whole(StatusCode::OK, content_type, document[..cut].to_owned())
        }
        Fault::Html => whole(StatusCode::OK, "text/html", NGINX_BAD_GATEWAY),
        Fault::EmptyBody => whole(StatusCode::OK, content_type, ""),
        Fault::Status(code) => {
            let status =
                StatusCode::from_u16(code).expect("Fault::Status needs a valid HTTP status");
            let text = format!("stand-in fault: {status}\n");
            whole(status, "text/plain", text)
        }
        Fault::Hang => std::future::pending().await,
        Fault::Huge(size) => {
            let mut response = Response::new(huge_xml(size));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
            response
        }
    }
}

/// A complete response with a `Content-Type`.
fn whole(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Exactly `size` bytes: `<?xml ...?><wopi-discovery>`, `<!-- padding -->` lines, spaces to
/// make up the size, `</wopi-discovery>`. One 64 KiB buffer is reused (cloning `Bytes` only
/// bumps a reference count), so memory use does not grow with `size`. Sizes smaller than
/// the head and tail together get a prefix of them.
fn huge_xml(size: usize) -> Body {
    const HEAD: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<wopi-discovery>\n";
    const TAIL: &str = "</wopi-discovery>\n";
    const PADDING: &str = "<!-- padding -->\n";
    const PER_CHUNK: usize = 64 * 1024 / PADDING.len();

    let frame = |bytes: Bytes| Ok::<_, Infallible>(Frame::data(bytes));
    if size < HEAD.len() + TAIL.len() {
        let both = format!("{HEAD}{TAIL}");
        let stream = futures_util::stream::iter([frame(Bytes::from(both).slice(..size))]);
        return StreamBody::new(stream).boxed();
    }
    let middle = size - HEAD.len() - TAIL.len();
    let chunk = Bytes::from(PADDING.repeat(PER_CHUNK));
    let full_chunks = middle / chunk.len();
    let rest = middle % chunk.len();
    let rest_padding = chunk.slice(..rest - rest % PADDING.len());
    let spaces = Bytes::from(" ".repeat(rest % PADDING.len()));
    let frames = std::iter::once(Bytes::from_static(HEAD.as_bytes()))
        .chain(std::iter::repeat_n(chunk, full_chunks))
        .chain([rest_padding, spaces, Bytes::from_static(TAIL.as_bytes())])
        .filter(|bytes| !bytes.is_empty())
        .map(frame);
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// An 8-hex-digit id, like the `serverId` coolwsd puts in its capabilities.
fn random_server_id() -> String {
    let mut bytes = [0_u8; 4];
    aws_lc_rs::rand::fill(&mut bytes).expect("stand-in editor: system RNG failed");
    bytes.iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// The Collabora discovery a CODE server at `base` would serve: the captured document with
/// its host replaced (coolwsd fills `%SRV_URI%` per request) and a `<proof-key>` appended
/// as the last child of `<wopi-discovery>`. Attributes are alphabetical (Poco DOMWriter)
/// and old = current, as current coolwsd publishes.
pub fn collabora_discovery(base: &str, key: &PublicProofKey) -> String {
    let mut document = COLLABORA_DISCOVERY_TEMPLATE.replace(COLLABORA_FIXTURE_ORIGIN, base);
    let (exponent, modulus, value) = key_attributes(key);
    let proof_key = format!(
        "    <proof-key exponent=\"{exponent}\" modulus=\"{modulus}\" oldexponent=\"{exponent}\" \
         oldmodulus=\"{modulus}\" oldvalue=\"{value}\" value=\"{value}\"/>\n"
    );
    let end = document
        .rfind("</wopi-discovery>")
        .expect("the Collabora discovery fixture ends with </wopi-discovery>");
    document.insert_str(end, &proof_key);
    document
}

/// The Collabora capabilities: the captured CODE 23.05.9.1 body, with conversion enabled
/// (as on a CODE that allows officeswitch to convert) and a fresh `serverId`. Keys stay
/// sorted, like Poco's JSON output.
fn collabora_capabilities(server_id: &str) -> String {
    let mut capabilities: serde_json::Value = serde_json::from_str(COLLABORA_CAPABILITIES_TEMPLATE)
        .expect("the Collabora capabilities fixture is JSON");
    let object = capabilities
        .as_object_mut()
        .expect("the Collabora capabilities fixture is a JSON object");
    object.insert(
        "convert-to".to_owned(),
        serde_json::json!({"available": true, "endpoint": "/cool/convert-to"}),
    );
    object.insert("serverId".to_owned(), server_id.into());
    serde_json::to_string(&capabilities).expect("a JSON value serialises")
}

/// `(exponent, modulus, value)` as discovery publishes them (base64; `value` is the
/// MS-CAPI blob). Base64 never needs XML escaping.
fn key_attributes(key: &PublicProofKey) -> (String, String, String) {
    (key.exponent_b64(), key.modulus_b64(), key.capi_blob_b64())
}

/// One OnlyOffice editor as `discovery()` in ONLYOFFICE/server `wopiClient.js` lists it.
#[derive(Clone, Copy, Debug)]
pub struct OnlyOfficeEditor {
    /// The MS-WOPI app name (`Word`, `Excel`, `PowerPoint`, `Pdf`).
    pub app: &'static str,
    /// The document type in editor URLs (`/hosting/wopi/{doc_type}/view`).
    pub doc_type: &'static str,
    /// The web-apps directory of the editor, for `favIconUrl`.
    pub web_app: &'static str,
    /// Extensions this editor only views (`*View` lists).
    pub view: &'static [&'static str],
    /// Extensions this editor edits (`*Edit` lists).
    pub edit: &'static [&'static str],
    /// The format view-only files are converted to for editing, if the editor offers it.
    pub target_ext: Option<&'static str>,
}

/// The editors of an open-source OnlyOffice build (no `Visio`, which needs a commercial
/// build), with the extension lists of the last `Common/config/default.json` that held them
/// (parent of ONLYOFFICE/server `39cefe4e`, as transcribed in `SOURCES.md`).
pub const ONLYOFFICE_EDITORS: [OnlyOfficeEditor; 4] = [
    OnlyOfficeEditor {
        app: "Word",
        doc_type: "word",
        web_app: "documenteditor",
        view: &[
            "doc", "dotm", "dot", "fodt", "ott", "rtf", "mht", "mhtml", "html", "htm", "xml",
            "epub", "fb2", "sxw", "stw", "wps", "wpt", "pages", "docxf", "oform", "hwp", "hwpx",
            "md", "hml",
        ],
        edit: &["docx", "dotx", "docm", "odt", "txt"],
        target_ext: Some("docx"),
    },
    OnlyOfficeEditor {
        app: "Excel",
        doc_type: "cell",
        web_app: "spreadsheeteditor",
        view: &[
            "xls", "xltm", "xlt", "fods", "ots", "sxc", "xml", "et", "ett", "numbers",
        ],
        edit: &["xlsx", "xlsb", "xltx", "xlsm", "ods", "csv", "tsv"],
        target_ext: Some("xlsx"),
    },
    OnlyOfficeEditor {
        app: "PowerPoint",
        doc_type: "slide",
        web_app: "presentationeditor",
        view: &[
            "ppt", "ppsx", "ppsm", "pps", "potm", "pot", "fodp", "otp", "sxi", "dps", "dpt", "key",
            "odg",
        ],
        edit: &["pptx", "potx", "pptm", "odp"],
        target_ext: Some("pptx"),
    },
    OnlyOfficeEditor {
        app: "Pdf",
        doc_type: "pdf",
        web_app: "pdfeditor",
        view: &["djvu", "xps", "oxps"],
        edit: &["pdf"],
        target_ext: None,
    },
];

/// Extensions opened as fillable forms (`wopi.forms`): they get a `formsubmit` action.
pub const ONLYOFFICE_FORMS: &[&str] = &["pdf"];

/// Extensions with a blank template in `document-templates/new`: they get `editnew`.
pub const ONLYOFFICE_BLANK_TEMPLATES: &[&str] = &["docx", "xlsx", "pptx"];

/// The discovery ONLYOFFICE Docs 9.3 would serve at `base`, generated as `discovery()` in
/// `wopiClient.js` does (no full capture is public): one line after the XML declaration,
/// the MS-WOPI apps with per-extension actions, then one app per MIME type (the "collabora
/// nextcloud connectors", the part Nextcloud reads), `Capabilities`, and the proof key
/// with old = current, as the Docker image configures it.
pub fn onlyoffice_discovery(base: &str, key: &PublicProofKey) -> String {
    let mut out = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><wopi-discovery><net-zone name="external-http">"#,
    );
    for editor in &ONLYOFFICE_EDITORS {
        let urls = OnlyOfficeUrls::new(base, editor.doc_type);
        let fav_icon = format!(
            "{base}/web-apps/apps/{}/main/resources/img/favicon.ico",
            editor.web_app
        );
        let _ = write!(
            out,
            r#"<app name="{}" favIconUrl="{}">"#,
            escape(editor.app),
            escape(&fav_icon)
        );
        for ext in editor.view {
            view_actions(&mut out, ext, ext, editor, &urls);
        }
        for ext in editor.edit {
            for (name, urlsrc) in [
                ("view", &urls.view),
                ("embedview", &urls.embed_view),
                ("mobileView", &urls.mobile_view),
            ] {
                Action::new(name, ext, urlsrc).write(&mut out);
            }
            edit_actions(&mut out, ext, ext, &urls);
        }
        out.push_str("</app>");
    }
    for editor in &ONLYOFFICE_EDITORS {
        let urls = OnlyOfficeUrls::new(base, editor.doc_type);
        // De-duplicated per editor and per pass, as upstream clears its set between the
        // view and edit passes: a MIME type both viewed and edited gets two apps.
        let mut seen = HashSet::new();
        for ext in editor.view {
            for mime in mime_guess::from_ext(ext)
                .iter_raw()
                .filter(|mime| seen.insert(*mime))
            {
                let _ = write!(out, r#"<app name="{}">"#, escape(mime));
                view_actions(&mut out, "", ext, editor, &urls);
                out.push_str("</app>");
            }
        }
        seen.clear();
        for ext in editor.edit {
            for mime in mime_guess::from_ext(ext)
                .iter_raw()
                .filter(|mime| seen.insert(*mime))
            {
                let _ = write!(out, r#"<app name="{}">"#, escape(mime));
                edit_actions(&mut out, "", ext, &urls);
                out.push_str("</app>");
            }
        }
    }
    let _ = write!(
        out,
        r#"<app name="Capabilities"><action ext="" name="getinfo" requires="locks,update" urlsrc="{}"/></app>"#,
        escape(&format!("{base}/hosting/capabilities"))
    );
    let (exponent, modulus, value) = key_attributes(key);
    let _ = write!(
        out,
        r#"</net-zone><proof-key oldvalue="{value}" oldmodulus="{modulus}" oldexponent="{exponent}" value="{value}" modulus="{modulus}" exponent="{exponent}"/></wopi-discovery>"#
    );
    out
}

/// The actions for a view-only extension: `view` (default), `embedview`, `mobileView`, and
/// `convert` when the editor can convert it. `ext_attr` is the extension, or `""` in MIME
/// apps; `ext` is always the real extension (it is part of the convert URL).
fn view_actions(
    out: &mut String,
    ext_attr: &str,
    ext: &str,
    editor: &OnlyOfficeEditor,
    urls: &OnlyOfficeUrls,
) {
    Action {
        default: true,
        ..Action::new("view", ext_attr, &urls.view)
    }
    .write(out);
    Action::new("embedview", ext_attr, &urls.embed_view).write(out);
    Action::new("mobileView", ext_attr, &urls.mobile_view).write(out);
    if let Some(target) = editor.target_ext {
        let urlsrc = urls.convert(ext, target);
        Action {
            target_ext: Some(target),
            requires: Some("update"),
            ..Action::new("convert", ext_attr, &urlsrc)
        }
        .write(out);
    }
}

/// The editing actions for an editable extension: `edit` (default), `formsubmit` for forms,
/// `mobileEdit`, and `editnew` when a blank template exists. In MS apps they follow the
/// three view actions; MIME apps start with them, so `edit` comes first.
fn edit_actions(out: &mut String, ext_attr: &str, ext: &str, urls: &OnlyOfficeUrls) {
    let locks = Some("locks,update");
    Action {
        default: true,
        requires: locks,
        ..Action::new("edit", ext_attr, &urls.edit)
    }
    .write(out);
    if ONLYOFFICE_FORMS.contains(&ext) {
        Action {
            requires: locks,
            ..Action::new("formsubmit", ext_attr, &urls.form_submit)
        }
        .write(out);
    }
    Action {
        requires: locks,
        ..Action::new("mobileEdit", ext_attr, &urls.mobile_edit)
    }
    .write(out);
    if ONLYOFFICE_BLANK_TEMPLATES.contains(&ext) {
        Action {
            requires: locks,
            ..Action::new("editnew", ext_attr, &urls.edit)
        }
        .write(out);
    }
}

/// The urlsrc values of one OnlyOffice editor, unescaped.
struct OnlyOfficeUrls {
    /// `{base}/hosting/wopi`, for the convert URLs.
    start: String,
    /// `.../view?` + placeholders.
    view: String,
    /// `.../view?embed=1&` + placeholders.
    embed_view: String,
    /// `.../view?mobile=1&` + placeholders.
    mobile_view: String,
    /// `.../edit?` + placeholders.
    edit: String,
    /// `.../edit?mobile=1&` + placeholders.
    mobile_edit: String,
    /// `.../edit?formsubmit=1&` + placeholders.
    form_submit: String,
}

impl OnlyOfficeUrls {
    /// The URLs for `doc_type` (`word`, `cell`, `slide`, `pdf`) at `base`.
    fn new(base: &str, doc_type: &str) -> Self {
        let start = format!("{base}/hosting/wopi");
        let tail = ONLYOFFICE_PLACEHOLDERS;
        Self {
            view: format!("{start}/{doc_type}/view?{tail}"),
            embed_view: format!("{start}/{doc_type}/view?embed=1&{tail}"),
            mobile_view: format!("{start}/{doc_type}/view?mobile=1&{tail}"),
            edit: format!("{start}/{doc_type}/edit?{tail}"),
            mobile_edit: format!("{start}/{doc_type}/edit?mobile=1&{tail}"),
            form_submit: format!("{start}/{doc_type}/edit?formsubmit=1&{tail}"),
            start,
        }
    }

    /// `.../convert-and-edit/{ext}/{target}?` + placeholders.
    fn convert(&self, ext: &str, target: &str) -> String {
        format!(
            "{}/convert-and-edit/{ext}/{target}?{ONLYOFFICE_PLACEHOLDERS}",
            self.start
        )
    }
}

/// One `<action>`, written with OnlyOffice's attribute order:
/// `name, ext, [default], [targetext], [requires], urlsrc`.
struct Action<'a> {
    /// `view`, `edit`, `convert`, ...
    name: &'a str,
    /// The extension, or `""` in MIME-type apps.
    ext: &'a str,
    /// Whether to emit `default="true"`.
    default: bool,
    /// `targetext`, for `convert`.
    target_ext: Option<&'a str>,
    /// `requires`, e.g. `locks,update`.
    requires: Option<&'a str>,
    /// The URL, unescaped.
    urlsrc: &'a str,
}

impl<'a> Action<'a> {
    /// An action with only the mandatory attributes.
    fn new(name: &'a str, ext: &'a str, urlsrc: &'a str) -> Self {
        Self {
            name,
            ext,
            default: false,
            target_ext: None,
            requires: None,
            urlsrc,
        }
    }

    /// Appends the element, escaping attribute values.
    fn write(&self, out: &mut String) {
        let _ = write!(
            out,
            r#"<action name="{}" ext="{}""#,
            escape(self.name),
            escape(self.ext)
        );
        if self.default {
            out.push_str(r#" default="true""#);
        }
        if let Some(target) = self.target_ext {
            let _ = write!(out, r#" targetext="{}""#, escape(target));
        }
        if let Some(requires) = self.requires {
            let _ = write!(out, r#" requires="{}""#, escape(requires));
        }
        let _ = write!(out, r#" urlsrc="{}"/>"#, escape(self.urlsrc));
    }
}

/// XML-escapes an attribute value (`&`, `<`, `>`, quotes), as xmlbuilder2 does: the
/// placeholder tail comes out as `&lt;rs=DC_LLCC&amp;&gt;...`.
fn escape(raw: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(raw)
}
