//! Stand-in editors: real loopback HTTP servers that answer like Collabora Online
//! (coolwsd) and ONLYOFFICE Docs, so officeswitch can be tested over real sockets.
//!
//! Why real servers rather than mocks: officeswitch is a proxy, and most of what can go
//! wrong is in the wire protocol (headers, bodies that are cut short, connections that
//! hang or reset, WebSocket upgrades). Only a real TCP peer shows those. Each stand-in:
//!
//! - binds `127.0.0.1:0`, or a fixed address with `SO_REUSEADDR` so a stopped editor can
//!   be brought back on the same port ([`StandInEditor::start_on`]);
//! - serves `GET /hosting/discovery` and `GET /hosting/capabilities` shaped on the
//!   fixtures in `../shared/fixtures` (see `SOURCES.md` there), with its own RSA proof key
//!   (or none: [`StandInEditor::start_unsigned`], as OnlyOffice without WOPI keys);
//! - serves the editor URL space a browser and Nextcloud reach through officeswitch (see
//!   `../shared/notes/collabora.md` and `onlyoffice.md`), listed on [`Route`]: the editor
//!   page (which calls the WOPI host's CheckFileInfo, signed with the proof key, as the
//!   real editors do), versioned static assets, the document WebSocket (an echo server),
//!   downloads, streaming convert endpoints and Collabora's `ServerId`-checked clipboard;
//! - marks every response with [`NODE_HEADER`] (its URL) and [`VERSION_HEADER`], so a test
//!   can tell from a response alone which node answered;
//! - records every request it receives, in order, with its own URL
//!   ([`StandInEditor::requests`]), and every CheckFileInfo it made
//!   ([`StandInEditor::check_file_infos`]);
//! - remembers every editing session it was opened with ([`StandInEditor::sessions`]: the
//!   `WOPISrc` and token exactly as received) and, as a test DSL, makes the WOPI calls the
//!   real suite would make for it ([`StandInEditor::wopi`]: CheckFileInfo to
//!   PutRelativeFile, with the suite's headers and proofs, bodies streamed both ways), with
//!   per-call deviations ([`CallOptions`]: no, stale, wrong-key or tampered proofs, another
//!   token, a cut-off upload);
//! - can be told to misbehave on the discovery and capabilities endpoints ([`Fault`]), or
//!   on the health checks alone ([`StandInEditor::set_health_fault`]);
//! - on [`StandInEditor::stop`] stops accepting and resets every open connection,
//!   WebSockets included, so clients see a refused or reset connection, as they would if
//!   the editor crashed.
//!
//! Bodies are never buffered where size matters: convert endpoints echo the request body
//! chunk by chunk, big downloads are generated lazily ([`pattern_stream`]).
//!
//! This file must stay self-contained (only external crates and `officeswitch::...`):
//! `examples/lab.rs` and `benches/discovery.rs` include it with `#[path = ...]`. Each
//! includer uses only part of it and so allows `dead_code` on the module (`support` in
//! `mod.rs`, `#[allow(dead_code)] mod editor;` in `lab.rs`); an inner allowance here would
//! duplicate theirs.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt as _, Stream, StreamExt as _};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use officeswitch::wopi::proof_key::{ProofKey, PublicProofKey};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

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

/// The version hash of the Collabora fixture: its urlsrc is `/browser/61cf2b4/cool.html?`,
/// and the stand-in serves its static files under `/browser/61cf2b4/`.
pub const COLLABORA_VERSION_HASH: &str = "61cf2b4";

/// A real CODE 23.05.9.1 capabilities body (its `serverId` was redacted by whoever
/// recorded it; the stand-in puts a fresh one back).
const COLLABORA_CAPABILITIES_TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/collabora-capabilities-code-23.05.9.1.json"
));

/// The OnlyOffice version the stand-in claims to be (ONLYOFFICE/server v9.3.1, the
/// source the generated discovery follows).
pub const ONLYOFFICE_VERSION: &str = "9.3.1";

/// The build tag of the stand-in's versioned OnlyOffice static paths
/// (`/9.3.1-standin/web-apps/...`; real builds use the build number or a cache tag).
pub const ONLYOFFICE_BUILD: &str = "standin";

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

/// Response header naming the node that answered: its base URL, `http://127.0.0.1:PORT`
/// (what [`StandInEditor::url`] returns). On every response, 101 and 404 included.
pub const NODE_HEADER: &str = "x-standin-node";

/// Response header naming the version the node serves: [`COLLABORA_VERSION_HASH`] or
/// `9.3.1-standin` (see [`StandInEditor::version`]). On every response. Static assets are
/// served whatever version their path names (as coolwsd and OnlyOffice's nginx do), so
/// this header is how a test sees that an asset reached a node of another version.
pub const VERSION_HEADER: &str = "x-standin-version";

/// How long the editor page waits for the host's CheckFileInfo before giving up.
pub const CHECK_FILE_INFO_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest form body the editor page reads (richdocuments' form is well under 1 KiB
/// without `css_variables`, a few KiB with).
const FORM_LIMIT: usize = 1 << 20;

/// Largest CheckFileInfo answer kept.
const CHECK_FILE_INFO_LIMIT: usize = 1 << 20;

/// The period of the byte pattern of [`pattern_stream`] (a prime, so the pattern does not
/// line up with power-of-two buffer sizes and a misplaced chunk changes the hash).
pub const PATTERN_PERIOD: u64 = 251;

/// Characters `encodeURIComponent` leaves alone: the form richdocuments and the editors use
/// for `WOPISrc` in URLs.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// .NET ticks (100 ns) from 0001-01-01 to the Unix epoch: `X-WOPI-TimeStamp` is in ticks.
const DOTNET_EPOCH_TICKS: u64 = 621_355_968_000_000_000;

/// Which editor product a stand-in imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    /// Collabora Online / CODE (coolwsd).
    Collabora,
    /// ONLYOFFICE Docs (DocService) in WOPI mode.
    OnlyOffice,
}

impl Suite {
    /// `collabora` or `onlyoffice`, as pools' `kind` names them.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Collabora => "collabora",
            Suite::OnlyOffice => "onlyoffice",
        }
    }
}

/// A way for `/hosting/discovery` and `/hosting/capabilities` to misbehave, for testing
/// how officeswitch copes with a broken editor. Other routes are never affected, except
/// the health checks under [`StandInEditor::set_health_fault`].
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
/// forwarded (paths, rewritten headers, proofs) and to which node.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The node that received it: its base URL, as [`StandInEditor::url`] returns.
    pub node: String,
    /// The request method.
    pub method: Method,
    /// Path plus query string, exactly as received (`/hosting/discovery`, `/x?a=b`).
    pub path_and_query: String,
    /// All request headers.
    pub headers: HeaderMap,
}

impl RecordedRequest {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path)
    }

    /// The first value of a query parameter, percent-decoded (`+` as space), by exact name.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let (_, query) = self.path_and_query.split_once('?')?;
        query_param(query, name, false)
    }
}

/// One WOPI CheckFileInfo the editor page made to a host, as coolwsd's
/// RequestVettingStation (and OnlyOffice's `getEditorHtml`) do before the document loads.
#[derive(Clone, Debug)]
pub struct CheckFileInfoCall {
    /// The `WOPISrc` the page was opened with (decoded).
    pub wopi_src: String,
    /// The length of the access token sent (the token itself is not kept).
    pub access_token_len: usize,
    /// What the host answered.
    pub outcome: CheckFileInfoOutcome,
}

/// How a CheckFileInfo call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckFileInfoOutcome {
    /// The host answered (any status); the body is kept as text (up to 1 MiB).
    Answered {
        /// The response status.
        status: StatusCode,
        /// The response body, lossily decoded.
        body: String,
    },
    /// No answer: unreachable host, timeout ([`CHECK_FILE_INFO_TIMEOUT`]), a `WOPISrc` that
    /// is not an `http://` URL. Never fails the page, as with the real editors.
    Failed(String),
}

impl CheckFileInfoOutcome {
    /// The status if the host answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Answered { status, .. } => Some(*status),
            Self::Failed(_) => None,
        }
    }

    /// The body parsed as JSON, if the host answered 200 with JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        match self {
            Self::Answered { status, body } if *status == StatusCode::OK => {
                serde_json::from_str(body).ok()
            }
            _ => None,
        }
    }

    /// What the editor page shows: the status (`200`), `error: ...`.
    fn summary(&self) -> String {
        match self {
            Self::Answered { status, .. } => status.as_u16().to_string(),
            Self::Failed(reason) => format!("error: {reason}"),
        }
    }
}

/// What a stand-in editor page says, parsed back from its HTML by [`EditorPage::parse`].
/// The page carries one `<meta name="standin:KEY" content="...">` per field, so tests of
/// officeswitch can read what the node saw through the proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EditorPage {
    /// `collabora` or `onlyoffice`.
    pub suite: String,
    /// The node that rendered the page (its base URL).
    pub node: String,
    /// The `WOPISrc` it was opened with (decoded; empty if none).
    pub wopi_src: String,
    /// The length of the form's (or, for a Collabora GET, the query's) `access_token`; the
    /// token itself is never echoed.
    pub access_token_len: usize,
    /// The form's `access_token_ttl`, as sent.
    pub access_token_ttl: String,
    /// The origin the editor builds asset and WebSocket URLs on: `X-Forwarded-Proto` ://
    /// `X-Forwarded-Host`, else `http://` + `Host`.
    pub asset_base: String,
    /// One asset URL as the page references it (`<script src>`).
    pub asset_url: String,
    /// The document WebSocket URL the editor's JavaScript would open.
    pub websocket_url: String,
    /// The CheckFileInfo result: its status (`200`), `error: ...`, or `none` when the page
    /// had no `WOPISrc` or no token.
    pub check_file_info: String,
    /// `BaseFileName` from a successful CheckFileInfo, else empty.
    pub base_file_name: String,
}

impl EditorPage {
    /// The field names, in page order.
    const KEYS: [&'static str; 10] = [
        "suite",
        "node",
        "wopisrc",
        "access-token-length",
        "access-token-ttl",
        "asset-base",
        "asset-url",
        "websocket-url",
        "checkfileinfo",
        "basefilename",
    ];

    /// Reads the fields back from a page the stand-in rendered. Missing fields stay empty
    /// (or 0); use on a body that is not a stand-in page gives [`EditorPage::default`].
    pub fn parse(html: &str) -> Self {
        let mut page = Self::default();
        let mut rest = html;
        while let Some(start) = rest.find("<meta name=\"standin:") {
            rest = &rest[start + "<meta name=\"standin:".len()..];
            let Some((key, after)) = rest.split_once("\" content=\"") else {
                break;
            };
            let Some((value, after)) = after.split_once("\">") else {
                break;
            };
            let value = html_unescape(value);
            match key {
                "suite" => page.suite = value,
                "node" => page.node = value,
                "wopisrc" => page.wopi_src = value,
                "access-token-length" => page.access_token_len = value.parse().unwrap_or(0),
                "access-token-ttl" => page.access_token_ttl = value,
                "asset-base" => page.asset_base = value,
                "asset-url" => page.asset_url = value,
                "websocket-url" => page.websocket_url = value,
                "checkfileinfo" => page.check_file_info = value,
                "basefilename" => page.base_file_name = value,
                _ => {}
            }
            rest = after;
        }
        page
    }

    /// The page as the stand-in serves it: a small HTML document with the fields as
    /// `<meta>` tags and the asset referenced as a real page would.
    fn render(&self) -> String {
        let access_token_len = self.access_token_len.to_string();
        let values: [&str; 10] = [
            &self.suite,
            &self.node,
            &self.wopi_src,
            &access_token_len,
            &self.access_token_ttl,
            &self.asset_base,
            &self.asset_url,
            &self.websocket_url,
            &self.check_file_info,
            &self.base_file_name,
        ];
        let mut html = String::from(
            "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>stand-in editor</title>\n",
        );
        for (key, value) in Self::KEYS.iter().zip(values) {
            let _ = writeln!(
                html,
                "<meta name=\"standin:{key}\" content=\"{}\">",
                html_escape(value)
            );
        }
        let _ = write!(
            html,
            "<script src=\"{}\"></script>\n</head>\n<body>\n<div id=\"document-container\" \
             data-websocket=\"{}\"></div>\n</body>\n</html>\n",
            html_escape(&self.asset_url),
            html_escape(&self.websocket_url)
        );
        html
    }
}

/// Escapes text for an HTML attribute value.
fn html_escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`html_escape`].
fn html_unescape(escaped: &str) -> String {
    escaped
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `encodeURIComponent(raw)`.
pub fn encode_uri_component(raw: &str) -> String {
    utf8_percent_encode(raw, URI_COMPONENT).to_string()
}

/// The error type of response bodies: convert endpoints echo the request body, so a
/// client that breaks off its upload must be able to break off the response.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type every stand-in response uses: whole documents, lazy streams and echoed
/// request bodies alike.
pub type Body = BoxBody<Bytes, BoxError>;

/// A running stand-in editor. Dropping it also shuts the server down, but without waiting;
/// call [`StandInEditor::stop`] when a test needs the port to be free afterwards.
pub struct StandInEditor {
    /// The address actually bound (the real port when started on port 0).
    addr: SocketAddr,
    /// The proof key; kept whole (not just the public part) so a restart can reuse it and
    /// so WOPI calls (CheckFileInfo) are signed with it.
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
        Self::start_inner(suite, addr, key.into(), true).await
    }

    /// Starts a stand-in on `127.0.0.1:0` that neither publishes a proof key in its
    /// discovery nor signs its WOPI calls: OnlyOffice without `wopi.privateKey` (or coolwsd
    /// without `proof_key`). OnlyOffice still sends `X-WOPI-TimeStamp`.
    pub async fn start_unsigned(suite: Suite) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_inner(suite, loopback, spare_key().await, false)
            .await
            .expect("stand-in editor: cannot bind 127.0.0.1:0")
    }

    async fn start_inner(
        suite: Suite,
        addr: SocketAddr,
        key: Arc<ProofKey>,
        signing: bool,
    ) -> io::Result<Self> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let base = format!("http://{addr}");
        let shared = Arc::new(Shared::new(suite, &base, Arc::clone(&key), signing));
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

    /// The base URL, `http://127.0.0.1:PORT`, as it appears in the stand-in's discovery,
    /// in [`NODE_HEADER`] and in [`RecordedRequest::node`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Which product this stand-in imitates.
    pub fn suite(&self) -> Suite {
        self.shared.suite
    }

    /// The version it serves, as in [`VERSION_HEADER`] and its static paths:
    /// [`COLLABORA_VERSION_HASH`] (`61cf2b4`) or `9.3.1-standin`.
    pub fn version(&self) -> &str {
        self.shared.version
    }

    /// The Collabora `serverId` of its capabilities (checked by `/cool/clipboard` and
    /// `/cool/media`); `None` for OnlyOffice, which has none.
    pub fn server_id(&self) -> Option<&str> {
        self.shared.server_id.as_deref()
    }

    /// Makes `/hosting/discovery` and `/hosting/capabilities` misbehave from the next
    /// request on (requests already waiting, e.g. under [`Fault::Hang`], are unaffected).
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.shared.fault) = fault;
    }

    /// Makes the endpoints officeswitch's health checks ask misbehave from the next request
    /// on, leaving discovery alone: a node that fails its checks while its discovery (and
    /// its editor traffic) still works. Collabora: `/hosting/capabilities` (this fault wins
    /// over [`StandInEditor::set_fault`] there) and `GET /`; OnlyOffice: `/healthcheck`.
    /// [`Fault::None`] makes them answer normally again.
    pub fn set_health_fault(&self, fault: Fault) {
        *lock(&self.shared.health_fault) = fault;
    }

    /// The public half of the stand-in's proof key, as published in its discovery (an
    /// unsigned stand-in publishes none; this is then a key it never uses).
    pub fn public_key(&self) -> &PublicProofKey {
        self.key.public()
    }

    /// Whether it publishes a proof key and signs its WOPI calls.
    pub fn signs(&self) -> bool {
        self.shared.signing
    }

    /// Every editing session opened on this node (editor pages with a `WOPISrc`), in order.
    pub fn sessions(&self) -> Vec<EditorSession> {
        lock(&self.shared.sessions).clone()
    }

    /// The last editing session opened on this node.
    pub fn last_session(&self) -> Option<EditorSession> {
        lock(&self.shared.sessions).last().cloned()
    }

    /// How long one [`StandInEditor::wopi`] call may take, body included (default
    /// [`WOPI_CALL_TIMEOUT`]).
    pub fn set_wopi_timeout(&self, timeout: Duration) {
        *lock(&self.shared.wopi_timeout) = timeout;
    }

    /// Makes `call` for `session` as the real suite would: to
    /// `{WOPISrc}{/contents}?access_token={encodeURIComponent(token)}`, with the suite's
    /// headers and proof. See [`StandInEditor::wopi_with`] to deviate.
    pub async fn wopi(&self, session: &EditorSession, call: WopiCall) -> WopiReply {
        self.wopi_with(session, call, CallOptions::default()).await
    }

    /// Makes `call` for `session` with deviations from the suite's behaviour.
    pub async fn wopi_with(
        &self,
        session: &EditorSession,
        call: WopiCall,
        options: CallOptions,
    ) -> WopiReply {
        wopi_call(&self.shared, session, call, options).await
    }

    /// The whole proof key, shareable, e.g. to restart on the same port with the same key.
    pub fn proof_key(&self) -> Arc<ProofKey> {
        Arc::clone(&self.key)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Every CheckFileInfo the editor page made, in order.
    pub fn check_file_infos(&self) -> Vec<CheckFileInfoCall> {
        lock(&self.shared.check_file_infos).clone()
    }

    /// WebSockets accepted and not yet ended (counted from the 101 answer on).
    pub fn open_websockets(&self) -> usize {
        self.shared.open_websockets.load(Ordering::SeqCst)
    }

    /// Text and binary WebSocket messages echoed so far, over all sessions.
    pub fn echoed_messages(&self) -> u64 {
        self.shared.echoed_messages.load(Ordering::SeqCst)
    }

    /// Status codes of the close frames WebSocket clients sent, in order.
    pub fn close_codes(&self) -> Vec<u16> {
        self.shared.close_codes.lock().expect("close codes").clone()
    }

    /// The discovery document served when no fault is set.
    pub fn discovery_xml(&self) -> &str {
        &self.shared.discovery
    }

    /// The capabilities document served when no fault is set.
    pub fn capabilities_json(&self) -> &str {
        &self.shared.capabilities
    }

    /// Stops accepting, resets every open connection, WebSockets included (clients see a
    /// reset, new clients a refusal), and returns once the listening socket is closed, so
    /// the port can be bound again with [`StandInEditor::start_on`].
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
    /// The node's base URL, `http://127.0.0.1:PORT`.
    node: String,
    /// [`NODE_HEADER`]'s value.
    node_header: HeaderValue,
    /// The version served: [`COLLABORA_VERSION_HASH`] or `9.3.1-standin`.
    version: &'static str,
    /// Collabora's `serverId` (also in `capabilities`).
    server_id: Option<String>,
    /// Signs the WOPI calls the node makes.
    key: Arc<ProofKey>,
    /// Whether the key is published and used.
    signing: bool,
    /// For CheckFileInfo calls to WOPI hosts.
    wopi_client: Client<HttpConnector, Empty<Bytes>>,
    /// For [`StandInEditor::wopi`] calls: its own pool, request bodies streamed.
    call_client: Client<HttpConnector, Body>,
    /// The time limit of one [`StandInEditor::wopi`] call.
    wopi_timeout: Mutex<Duration>,
    /// Editing sessions opened, in order.
    sessions: Mutex<Vec<EditorSession>>,
    /// What the editor learnt per (WOPISrc, token) from CheckFileInfo and PutFile answers.
    known: Mutex<HashMap<(String, String), Known>>,
    /// `GET /hosting/discovery` body (fault-free).
    discovery: String,
    /// `GET /hosting/capabilities` body (fault-free).
    capabilities: String,
    /// Misbehaviour currently in force for the discovery and capabilities routes.
    fault: Mutex<Fault>,
    /// Misbehaviour in force for the health-check routes (capabilities included).
    health_fault: Mutex<Fault>,
    /// Every request received, in order.
    requests: Mutex<Vec<RecordedRequest>>,
    /// Every CheckFileInfo made, in order.
    check_file_infos: Mutex<Vec<CheckFileInfoCall>>,
    /// WebSocket sessions accepted and not yet ended.
    open_websockets: AtomicUsize,
    /// Messages echoed over all WebSocket sessions.
    echoed_messages: AtomicU64,
    /// Status codes of the close frames clients sent.
    close_codes: Mutex<Vec<u16>>,
}

impl Shared {
    /// Builds the documents once, since they depend only on the bound URL and the key.
    fn new(suite: Suite, base: &str, key: Arc<ProofKey>, signing: bool) -> Self {
        let published = signing.then(|| key.public());
        let (discovery, capabilities, server_id, version) = match suite {
            Suite::Collabora => {
                let server_id = random_server_id();
                (
                    collabora_discovery_with(base, published),
                    collabora_capabilities(&server_id),
                    Some(server_id),
                    COLLABORA_VERSION_HASH,
                )
            }
            Suite::OnlyOffice => (
                onlyoffice_discovery_with(base, published),
                ONLYOFFICE_CAPABILITIES.to_owned(),
                None,
                onlyoffice_versioned(),
            ),
        };
        Self {
            suite,
            node: base.to_owned(),
            node_header: HeaderValue::from_str(base).expect("a URL is a valid header value"),
            version,
            server_id,
            key,
            signing,
            wopi_client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(5))
                .build_http(),
            call_client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(5))
                .build_http(),
            wopi_timeout: Mutex::new(WOPI_CALL_TIMEOUT),
            sessions: Mutex::new(Vec::new()),
            known: Mutex::new(HashMap::new()),
            discovery,
            capabilities,
            fault: Mutex::new(Fault::None),
            health_fault: Mutex::new(Fault::None),
            requests: Mutex::new(Vec::new()),
            check_file_infos: Mutex::new(Vec::new()),
            open_websockets: AtomicUsize::new(0),
            echoed_messages: AtomicU64::new(0),
            close_codes: Mutex::new(Vec::new()),
        }
    }

    /// Appends a request to the log.
    fn record(&self, req: &Request<Incoming>) {
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), ToString::to_string);
        lock(&self.requests).push(RecordedRequest {
            node: self.node.clone(),
            method: req.method().clone(),
            path_and_query,
            headers: req.headers().clone(),
        });
    }
}

/// `9.3.1-standin`: the first segment of OnlyOffice's versioned static paths.
fn onlyoffice_versioned() -> &'static str {
    static VERSIONED: OnceLock<String> = OnceLock::new();
    VERSIONED.get_or_init(|| format!("{ONLYOFFICE_VERSION}-{ONLYOFFICE_BUILD}"))
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
                    tokio::time::sleep(Duration::from_millis(10)).await;
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

/// A WebSocket session: runs on the upgraded connection after the 101 answer.
type Session = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serves one connection (HTTP/1.1 or h2, with upgrades) until the client closes it or
/// shutdown is signalled; on shutdown the connection is reset.
///
/// Once a connection is upgraded, hyper hands the socket to the upgrade future and the
/// connection future ends. The handler therefore does not spawn the WebSocket session
/// itself: it passes it here (before the 101 goes out), and this task runs it, so that a
/// stop resets WebSockets too and `accept_loop` waits for them.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    // Keep a second handle to the socket, so that at shutdown SO_LINGER=0 can be set while
    // hyper (or the WebSocket session) still owns the stream: the close then sends RST and
    // leaves no TIME_WAIT.
    let (stream, reset_handle) = match split_reset_handle(stream) {
        Ok(pair) => pair,
        Err(err) => {
            tracing::warn!(%err, "stand-in editor: cannot prepare connection");
            return;
        }
    };
    let (session_tx, mut session_rx) = mpsc::unbounded_channel::<Session>();
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        let session_tx = session_tx.clone();
        async move { Ok::<_, Infallible>(handle(shared, &session_tx, req).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut connection =
        pin!(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
    let mut serving = true;
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            result = connection.as_mut(), if serving => {
                serving = false;
                if let Err(err) = result {
                    tracing::debug!(%err, "stand-in editor: connection ended with an error");
                }
            }
            Some(session) = session_rx.recv() => {
                sessions.spawn(session);
            }
            Some(result) = sessions.join_next(), if !sessions.is_empty() => reraise_panic(result),
            () = stopped(&mut stop) => {
                if let Err(err) = TcpSocket::from_std_stream(reset_handle).set_zero_linger() {
                    tracing::warn!(%err, "stand-in editor: cannot arm connection reset");
                }
                // Dropping the sessions (and, on return, the connection) closes the last
                // handle on the socket: the kernel sends RST.
                sessions.abort_all();
                while let Some(result) = sessions.join_next().await {
                    if let Err(err) = result
                        && err.is_panic()
                    {
                        std::panic::resume_unwind(err.into_panic());
                    }
                }
                return;
            }
        }
        // A session is queued before its 101 is written, so by the time the connection
        // future has ended every session of this connection is in the channel.
        if !serving && sessions.is_empty() && session_rx.is_empty() {
            return;
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
/// arm in [`route`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// `GET /hosting/discovery` (both suites).
    Discovery,
    /// `GET /hosting/capabilities` (both suites).
    Capabilities,
    /// coolwsd `GET /` or OnlyOffice `GET /healthcheck`.
    Health,
    /// The editor page: Collabora `GET|POST /browser/<hash>/cool.html`, OnlyOffice
    /// `POST /hosting/wopi/<word|cell|slide|pdf>/<view|edit>`. Calls CheckFileInfo and
    /// waits for it (at most [`CHECK_FILE_INFO_TIMEOUT`]) before answering, so the outcome
    /// is on the page and recorded once the page has arrived. (OnlyOffice waits too;
    /// coolwsd serves the page at once and checks in parallel.)
    EditorPage,
    /// Static files: Collabora `GET /browser/<hash>/...`, OnlyOffice
    /// `GET [/<version>-<build>]/{web-apps,sdkjs,sdkjs-plugins,fonts,dictionaries}/...`.
    Static,
    /// The document WebSocket (an echo server): Collabora `/cool/<enc>/ws`, `/cool/ws`,
    /// `/lool/.../ws`; OnlyOffice `/doc/<docid>/c/` (socket.io). 400 without an upgrade.
    WebSocket,
    /// Collabora `GET /cool/<enc>/download/<name>`: a short body.
    Download,
    /// Collabora `GET /cool/<enc>/download/big?size=N`: N pattern bytes, streamed.
    BigDownload,
    /// `POST /cool/convert-to[/fmt]`, `/lool/convert-to[/fmt]` (both suites), OnlyOffice
    /// `POST /ConvertService.ashx`, `/converter`: the request body echoed, streamed.
    Convert,
    /// Collabora `GET|POST /cool/clipboard`, `/cool/media`: 400 unless `ServerId` is this
    /// node's.
    ServerBound,
    /// OnlyOffice `GET /cache/files/...`: a short body.
    CacheFile,
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
            (_, "POST", path) if is_convert_to(path) => Self::Convert,
            (Suite::Collabora, "GET" | "POST", path) if is_collabora_page(path) => Self::EditorPage,
            (Suite::Collabora, "GET", path) if is_collabora_static(path) => Self::Static,
            (Suite::Collabora, "GET", path) if is_collabora_websocket(path) => Self::WebSocket,
            (Suite::Collabora, "GET", "/cool/clipboard" | "/cool/media")
            | (Suite::Collabora, "POST", "/cool/clipboard") => Self::ServerBound,
            (Suite::Collabora, "GET", path) => match collabora_download(path) {
                Some("big") => Self::BigDownload,
                Some(_) => Self::Download,
                None => Self::NotFound,
            },
            (Suite::OnlyOffice, "POST", path) if is_onlyoffice_page(path) => Self::EditorPage,
            (Suite::OnlyOffice, "POST", "/ConvertService.ashx" | "/converter") => Self::Convert,
            (Suite::OnlyOffice, "GET", path) if is_onlyoffice_static(path) => Self::Static,
            (Suite::OnlyOffice, "GET", path) if path.starts_with("/doc/") => Self::WebSocket,
            (Suite::OnlyOffice, "GET", path) if path.starts_with("/cache/files/") => {
                Self::CacheFile
            }
            _ => Self::NotFound,
        }
    }
}

/// `/cool/convert-to`, `/cool/convert-to/<fmt>`, and the same under `/lool/`.
fn is_convert_to(path: &str) -> bool {
    let rest = path
        .strip_prefix("/cool/convert-to")
        .or_else(|| path.strip_prefix("/lool/convert-to"));
    match rest {
        Some("") => true,
        Some(format) => format
            .strip_prefix('/')
            .is_some_and(|format| !format.is_empty() && !format.contains('/')),
        None => false,
    }
}

/// `/browser/<hash>/cool.html` (any hash: coolwsd's hash is for cache busting).
fn is_collabora_page(path: &str) -> bool {
    path.strip_prefix("/browser/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(hash, file)| !hash.is_empty() && file == "cool.html")
}

/// `/browser/<hash>/<file...>`.
fn is_collabora_static(path: &str) -> bool {
    path.strip_prefix("/browser/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(hash, file)| !hash.is_empty() && !file.is_empty())
}

/// `/cool/<enc WOPISrc>/ws`, `/cool/ws`, and the same under `/lool/`.
fn is_collabora_websocket(path: &str) -> bool {
    (path.starts_with("/cool/") || path.starts_with("/lool/")) && path.ends_with("/ws")
}

/// The `<name...>` of `/cool/<enc WOPISrc>/download/<name...>`.
fn collabora_download(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/cool/")?;
    let (document, rest) = rest.split_once('/')?;
    let name = rest.strip_prefix("download/")?;
    (!document.is_empty() && !name.is_empty()).then_some(name)
}

/// `/hosting/wopi/<word|cell|slide|pdf>/<view|edit>`.
fn is_onlyoffice_page(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/hosting/wopi/") else {
        return false;
    };
    let Some((doc_type, mode)) = rest.split_once('/') else {
        return false;
    };
    ONLYOFFICE_EDITORS.iter().any(|e| e.doc_type == doc_type) && matches!(mode, "view" | "edit")
}

/// OnlyOffice's nginx static location,
/// `^(/\d+\.\d+\.\d+[.-]\w+)?/(web-apps|sdkjs|sdkjs-plugins|fonts|dictionaries)(/.*)$`.
fn is_onlyoffice_static(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let (first, after) = rest.split_once('/').unwrap_or((rest, ""));
    let unversioned = if is_onlyoffice_version(first) {
        after
    } else {
        rest
    };
    let Some((dir, _file)) = unversioned.split_once('/') else {
        return false;
    };
    matches!(
        dir,
        "web-apps" | "sdkjs" | "sdkjs-plugins" | "fonts" | "dictionaries"
    )
}

/// `\d+\.\d+\.\d+[.-]\w+`, e.g. `9.3.1-standin` or `8.2.0.143`.
fn is_onlyoffice_version(segment: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let mut parts = segment.splitn(3, '.');
    let (Some(major), Some(minor), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Some(split) = rest.find(['.', '-']) else {
        return false;
    };
    digits(major) && digits(minor) && digits(&rest[..split]) && word(&rest[split + 1..])
}

/// The first value of `name` in a query string, decoded. OnlyOffice lower-cases query
/// keys (`wopisrc`), so `any_case` matches names case-insensitively.
fn query_param(query: &str, name: &str, any_case: bool) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| {
            if any_case {
                key.eq_ignore_ascii_case(name)
            } else {
                key == name
            }
        })
        .map(|(_, value)| value.into_owned())
}

/// The `WOPISrc` of a request: exact name for Collabora, any case for OnlyOffice.
fn wopi_src_of(suite: Suite, req: &Request<Incoming>) -> Option<String> {
    let query = req.uri().query()?;
    query_param(query, "WOPISrc", suite == Suite::OnlyOffice)
}

/// Records the request, answers it, and marks the answer with the node and version.
async fn handle(
    shared: Arc<Shared>,
    sessions: &mpsc::UnboundedSender<Session>,
    req: Request<Incoming>,
) -> Response<Body> {
    shared.record(&req);
    let mut response = route(&shared, sessions, req).await;
    let headers = response.headers_mut();
    headers.insert(NODE_HEADER, shared.node_header.clone());
    headers.insert(VERSION_HEADER, HeaderValue::from_static(shared.version));
    response
}

/// Answers a request by its [`Route`].
async fn route(
    shared: &Arc<Shared>,
    sessions: &mpsc::UnboundedSender<Session>,
    req: Request<Incoming>,
) -> Response<Body> {
    match Route::of(shared.suite, req.method(), req.uri().path()) {
        Route::Discovery => {
            let content_type = match shared.suite {
                Suite::Collabora => "text/xml",
                // Express adds the charset to the type wopiClient.js sets.
                Suite::OnlyOffice => "text/xml; charset=utf-8",
            };
            let fault = lock(&shared.fault).clone();
            faultable(fault, &shared.discovery, content_type).await
        }
        Route::Capabilities => {
            let content_type = match shared.suite {
                Suite::Collabora => "application/json",
                // utils.fillResponseSimple appends "; charset=UTF-8".
                Suite::OnlyOffice => "application/json; charset=UTF-8",
            };
            let fault = match lock(&shared.health_fault).clone() {
                Fault::None => lock(&shared.fault).clone(),
                health_fault => health_fault,
            };
            faultable(fault, &shared.capabilities, content_type).await
        }
        Route::Health => {
            let fault = lock(&shared.health_fault).clone();
            match shared.suite {
                Suite::Collabora => faultable(fault, "OK", "text/plain").await,
                // `res.send("true")` in DocsCoServer.healthCheck: Express's default type.
                Suite::OnlyOffice => faultable(fault, "true", "text/html; charset=utf-8").await,
            }
        }
        Route::EditorPage => editor_page(shared, req).await,
        Route::Static => static_file(shared, req.uri().path()),
        Route::WebSocket => accept_websocket(shared, sessions, req),
        Route::Download => download(shared, &req),
        Route::BigDownload => big_download(&req),
        Route::Convert => echo_body(req),
        Route::ServerBound => server_bound(shared, &req),
        Route::CacheFile => {
            let wopi_src = wopi_src_of(shared.suite, &req).unwrap_or_default();
            let text = format!(
                "stand-in cache file {} of {wopi_src} from {}\n",
                req.uri().path(),
                shared.node
            );
            whole(StatusCode::OK, "application/octet-stream", text)
        }
        Route::NotFound => whole(StatusCode::NOT_FOUND, "text/plain", "Not Found\n"),
    }
}

/// The editor page. Reads the form (`access_token`, `access_token_ttl`), calls the host's
/// CheckFileInfo when it has a `WOPISrc` and a token, and renders an [`EditorPage`] whose
/// URLs are built on the forwarded origin, as the real editors build theirs.
async fn editor_page(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let suite = shared.suite;
    let wopi_src = wopi_src_of(suite, &req).unwrap_or_default();
    let asset_base = forwarded_origin(req.headers());
    let req_query = req.uri().query().map(str::to_owned);
    let query_token = req_query
        .as_deref()
        .and_then(|query| query_param(query, "access_token", false));
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let form: Vec<(String, String)> = if *req.method() == Method::POST && is_form {
        match Limited::new(req.into_body(), FORM_LIMIT).collect().await {
            Ok(body) => url::form_urlencoded::parse(&body.to_bytes())
                .into_owned()
                .collect(),
            Err(err) => {
                let text = format!("cannot read the form: {err}\n");
                return whole(StatusCode::BAD_REQUEST, "text/plain", text);
            }
        }
    } else {
        Vec::new()
    };
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    // Collabora also takes the token from the query of a GET (old integrations).
    let token = field("access_token").or(query_token).unwrap_or_default();
    let access_token_ttl = field("access_token_ttl")
        .or_else(|| {
            req_query
                .as_deref()
                .and_then(|query| query_param(query, "access_token_ttl", false))
        })
        .unwrap_or_default();
    if !wopi_src.is_empty() {
        lock(&shared.sessions).push(EditorSession {
            wopi_src: wopi_src.clone(),
            access_token: token.clone(),
            access_token_ttl: access_token_ttl.clone(),
            node: shared.node.clone(),
        });
    }

    let (check_file_info, base_file_name) = if wopi_src.is_empty() || token.is_empty() {
        ("none".to_owned(), String::new())
    } else {
        let outcome = check_file_info(shared, &wopi_src, &token).await;
        if let Some(info) = outcome.json() {
            learn(shared, &wopi_src, &token, &WopiCall::CheckFileInfo, &info);
        }
        let base_file_name = outcome
            .json()
            .and_then(|info| info["BaseFileName"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let summary = outcome.summary();
        lock(&shared.check_file_infos).push(CheckFileInfoCall {
            wopi_src: wopi_src.clone(),
            access_token_len: token.len(),
            outcome,
        });
        (summary, base_file_name)
    };

    let encoded = encode_uri_component(&wopi_src);
    let ws_base = asset_base.strip_prefix("https://").map_or_else(
        || asset_base.replacen("http://", "ws://", 1),
        |host| format!("wss://{host}"),
    );
    let (asset_url, websocket_url) = match suite {
        Suite::Collabora => (
            format!("{asset_base}/browser/{COLLABORA_VERSION_HASH}/bundle.js"),
            format!("{ws_base}/cool/{encoded}/ws?WOPISrc={encoded}&compat=/ws"),
        ),
        Suite::OnlyOffice => {
            // The WOPI docId is the last path segment of WOPISrc (wopiClient.js).
            let doc_id = wopi_src
                .split('?')
                .next()
                .and_then(|path| path.rsplit('/').next())
                .unwrap_or_default();
            (
                format!(
                    "{asset_base}/{}/web-apps/apps/api/documents/api.js?WOPISrc={encoded}",
                    shared.version
                ),
                format!(
                    "{ws_base}/doc/{}/c/?EIO=4&transport=websocket&WOPISrc={encoded}",
                    encode_uri_component(doc_id)
                ),
            )
        }
    };
    let page = EditorPage {
        suite: suite.name().to_owned(),
        node: shared.node.clone(),
        wopi_src,
        access_token_len: token.len(),
        access_token_ttl,
        asset_base,
        asset_url,
        websocket_url,
        check_file_info,
        base_file_name,
    };
    whole(StatusCode::OK, "text/html; charset=utf-8", page.render())
}

/// `X-Forwarded-Proto://X-Forwarded-Host` (first values), else `http://` + `Host`.
fn forwarded_origin(headers: &HeaderMap) -> String {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let proto = first("x-forwarded-proto").unwrap_or("http");
    let host = first("x-forwarded-host")
        .or_else(|| first("host"))
        .unwrap_or("localhost");
    format!("{proto}://{host}")
}

/// WOPI CheckFileInfo: `GET {WOPISrc}?access_token=<token>`, signed with the node's proof
/// key (`X-WOPI-Proof`, `X-WOPI-ProofOld` with old = current, `X-WOPI-TimeStamp`), within
/// [`CHECK_FILE_INFO_TIMEOUT`].
async fn check_file_info(shared: &Shared, wopi_src: &str, token: &str) -> CheckFileInfoOutcome {
    let separator = if wopi_src.contains('?') { '&' } else { '?' };
    let url = format!(
        "{wopi_src}{separator}access_token={}",
        encode_uri_component(token)
    );
    let uri: http::Uri = match url.parse() {
        Ok(uri) => uri,
        Err(err) => return CheckFileInfoOutcome::Failed(format!("bad WOPISrc: {err}")),
    };
    if uri.scheme_str() != Some("http") {
        return CheckFileInfoOutcome::Failed(
            "the stand-in editor calls only http:// WOPI hosts".to_owned(),
        );
    }
    let mut request = Request::get(uri);
    let headers = proof_headers(shared, Signing::AsSuite, token, &url).await;
    for (name, value) in headers.iter().chain(&suite_headers(shared, token)) {
        request = request.header(*name, value);
    }
    let request = match request.body(Empty::new()) {
        Ok(request) => request,
        Err(err) => return CheckFileInfoOutcome::Failed(format!("bad request: {err}")),
    };
    let call = async {
        let response = shared.wopi_client.request(request).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, CHECK_FILE_INFO_LIMIT)
            .collect()
            .await?
            .to_bytes();
        Ok::<_, BoxError>((parts.status, body))
    };
    match tokio::time::timeout(CHECK_FILE_INFO_TIMEOUT, call).await {
        Err(_elapsed) => CheckFileInfoOutcome::Failed(format!(
            "no answer within {} s",
            CHECK_FILE_INFO_TIMEOUT.as_secs()
        )),
        Ok(Err(err)) => CheckFileInfoOutcome::Failed(error_chain(&*err)),
        Ok(Ok((status, body))) => CheckFileInfoOutcome::Answered {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        },
    }
}

/// An error and its sources, `a: b: c`.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// Now as .NET ticks, the unit of `X-WOPI-TimeStamp`.
fn dotnet_ticks_now() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ticks = since_epoch.as_nanos() / 100;
    DOTNET_EPOCH_TICKS + u64::try_from(ticks).unwrap_or(u64::MAX - DOTNET_EPOCH_TICKS)
}

/// The bytes a WOPI proof signs: the token, the URL upper-cased and the timestamp, each
/// preceded by its length as a big-endian `u32` (see `../shared/notes/proof-keys.md`).
pub fn proof_message(token: &str, url: &str, ticks: u64) -> Vec<u8> {
    let url = url.to_ascii_uppercase();
    let mut message = Vec::with_capacity(token.len() + url.len() + 20);
    for part in [token.as_bytes(), url.as_bytes()] {
        let len = u32::try_from(part.len()).expect("a proof part is shorter than 4 GiB");
        message.extend_from_slice(&len.to_be_bytes());
        message.extend_from_slice(part);
    }
    message.extend_from_slice(&8_u32.to_be_bytes());
    message.extend_from_slice(&ticks.to_be_bytes());
    message
}

/// The default time limit of one [`StandInEditor::wopi`] call, body included.
pub const WOPI_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// [`WopiReply::body`] keeps at most this many bytes; the rest is only hashed.
pub const REPLY_KEPT: usize = 1 << 20;

/// [`WopiReply::status`] when no answer arrived (transport error, timeout, cut upload).
/// A 5xx on purpose: "never 200" and "an error or a 5xx" both hold for it.
pub const NO_ANSWER: u16 = 599;

/// An editing session as the editor page received it: what the real editor would keep
/// and make every WOPI call with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditorSession {
    /// The `WOPISrc` (decoded), exactly as received (query key `WOPISrc`, any case for
    /// OnlyOffice).
    pub wopi_src: String,
    /// The `access_token` (form field, or query for a Collabora GET), exactly as received.
    pub access_token: String,
    /// The `access_token_ttl`, as received (empty if none).
    pub access_token_ttl: String,
    /// The node that opened it (its base URL).
    pub node: String,
}

/// The body of an upload ([`WopiCall::PutFile`], [`WopiCall::PutRelativeFile`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutBody {
    /// These bytes.
    Bytes(Vec<u8>),
    /// This many bytes of [`pattern_stream`], generated as sent (any size).
    Pattern(u64),
    /// `Content-Length: declared`, then `sent` pattern bytes, then the editor closes the
    /// connection: an editor that crashed mid-upload.
    CutAfter {
        /// The announced length.
        declared: u64,
        /// The bytes actually sent before the connection is closed.
        sent: u64,
    },
    /// `len` bytes of [`pattern_stream`], spread evenly over `over`: an upload still in
    /// flight while something else happens (a drain, a restart).
    Paced {
        /// The bytes sent (and announced).
        len: u64,
        /// Time the upload takes.
        over: Duration,
    },
}

impl PutBody {
    /// The length announced in `Content-Length` (and `X-WOPI-Size`).
    fn declared(&self) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes.len() as u64,
            Self::Pattern(len) => *len,
            Self::CutAfter { declared, .. } => *declared,
            Self::Paced { len, .. } => *len,
        }
    }
}

/// One WOPI call an editor makes (see `../shared/notes/wopi-protocol.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WopiCall {
    /// `GET {WOPISrc}`.
    CheckFileInfo,
    /// `GET {WOPISrc}/contents`, with `X-WOPI-MaxExpectedSize` if given.
    GetFile {
        /// `X-WOPI-MaxExpectedSize`.
        max_expected_size: Option<u64>,
    },
    /// `POST`, `X-WOPI-Override: LOCK`.
    Lock {
        /// `X-WOPI-Lock`.
        lock: String,
    },
    /// `POST`, `X-WOPI-Override: UNLOCK`.
    Unlock {
        /// `X-WOPI-Lock`.
        lock: String,
    },
    /// `POST`, `X-WOPI-Override: REFRESH_LOCK`.
    RefreshLock {
        /// `X-WOPI-Lock`.
        lock: String,
    },
    /// `POST`, `X-WOPI-Override: GET_LOCK`.
    GetLock,
    /// `POST`, `X-WOPI-Override: LOCK` with `X-WOPI-OldLock`.
    UnlockAndRelock {
        /// `X-WOPI-Lock`, the new lock.
        lock: String,
        /// `X-WOPI-OldLock`.
        old_lock: String,
    },
    /// `POST {WOPISrc}/contents`, `X-WOPI-Override: PUT`; Collabora adds its
    /// `X-COOL-WOPI-*` headers (`Timestamp`: the last `LastModifiedTime` it saw, see
    /// [`CallOptions::cool_timestamp`]), OnlyOffice `X-WOPI-Editors`.
    PutFile {
        /// `X-WOPI-Lock`, if any.
        lock: Option<String>,
        /// The new contents.
        body: PutBody,
    },
    /// `POST`, `X-WOPI-Override: PUT_RELATIVE`, `X-WOPI-SuggestedTarget` (UTF-7),
    /// `X-WOPI-Size`.
    PutRelativeFile {
        /// A name, or `.ext` for the same name with another extension.
        suggested_target: String,
        /// The new file's contents.
        body: PutBody,
    },
    /// `POST`, `X-WOPI-Override: RENAME_FILE`, `X-WOPI-RequestedName` (UTF-7).
    RenameFile {
        /// `X-WOPI-Lock`.
        lock: String,
        /// The new name, without extension.
        name: String,
    },
    /// `POST`, `X-WOPI-Override: DELETE`.
    DeleteFile,
    /// `POST`, `X-WOPI-Override: PUT_USER_INFO`, this body.
    PutUserInfo(String),
    /// `POST`, `X-WOPI-Override: GET_SHARE_URL`, `X-WOPI-UrlType: ReadOnly`.
    GetShareUrl,
    /// `GET` of a URL the host handed out (`TemplateSource`, `FileUrl`, a settings `uri`),
    /// exactly as given and without proof headers, as both suites fetch them.
    Fetch {
        /// The URL.
        url: String,
    },
}

impl WopiCall {
    /// Method, path suffix after `WOPISrc`, `X-WOPI-Override`.
    fn shape(&self) -> (Method, &'static str, Option<&'static str>) {
        match self {
            Self::CheckFileInfo | Self::Fetch { .. } => (Method::GET, "", None),
            Self::GetFile { .. } => (Method::GET, "/contents", None),
            Self::PutFile { .. } => (Method::POST, "/contents", Some("PUT")),
            Self::Lock { .. } | Self::UnlockAndRelock { .. } => (Method::POST, "", Some("LOCK")),
            Self::Unlock { .. } => (Method::POST, "", Some("UNLOCK")),
            Self::RefreshLock { .. } => (Method::POST, "", Some("REFRESH_LOCK")),
            Self::GetLock => (Method::POST, "", Some("GET_LOCK")),
            Self::PutRelativeFile { .. } => (Method::POST, "", Some("PUT_RELATIVE")),
            Self::RenameFile { .. } => (Method::POST, "", Some("RENAME_FILE")),
            Self::DeleteFile => (Method::POST, "", Some("DELETE")),
            Self::PutUserInfo(_) => (Method::POST, "", Some("PUT_USER_INFO")),
            Self::GetShareUrl => (Method::POST, "", Some("GET_SHARE_URL")),
        }
    }
}

/// How a call is signed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Signing {
    /// As the suite does: `X-WOPI-TimeStamp`, `X-WOPI-Proof` and `X-WOPI-ProofOld` (both
    /// with the node's key) when it signs; OnlyOffice unsigned sends the timestamp only.
    #[default]
    AsSuite,
    /// No proof headers at all.
    None,
    /// Signed with a key the node does not publish.
    WrongKey,
    /// Correctly signed, with a timestamp 21 minutes old.
    Stale,
    /// Signed over another URL than the one called.
    Tampered,
}

/// Deviations for one [`StandInEditor::wopi_with`] call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// How to sign.
    pub signing: Signing,
    /// Send (and sign) this token instead of the session's.
    pub token: Option<String>,
    /// Call (and sign) this exact URL instead of `{WOPISrc}{suffix}?access_token=..`.
    pub url: Option<String>,
    /// Collabora's PutFile `X-COOL-WOPI-Timestamp`: this value instead of the last
    /// `LastModifiedTime` seen; `Some("")` leaves the header out.
    pub cool_timestamp: Option<String>,
    /// More request headers, added last.
    pub extra_headers: Vec<(String, String)>,
}

/// What a WOPI call got back. Bodies are streamed: hashed whole, kept up to
/// [`REPLY_KEPT`].
#[derive(Clone, Debug)]
pub struct WopiReply {
    /// The status; [`NO_ANSWER`] (599) when no answer arrived.
    pub status: StatusCode,
    /// The response headers (empty without an answer).
    pub headers: HeaderMap,
    /// Body bytes received.
    pub body_len: u64,
    /// SHA-256 of the body received, lower-case hex.
    pub body_sha256: String,
    /// The first [`REPLY_KEPT`] bytes of the body.
    pub body: Bytes,
    /// A transport error (refused, reset, timeout, body broken off, the editor's own cut
    /// upload), even after the status arrived.
    pub error: Option<String>,
}

impl WopiReply {
    /// The body as JSON, if it was received whole and parses.
    pub fn json(&self) -> Option<serde_json::Value> {
        if self.error.is_some() || self.body_len > self.body.len() as u64 {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }

    /// The kept body, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A response header as text (empty if absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    /// A reply with no answer.
    fn failed(error: String) -> Self {
        Self {
            status: no_answer(),
            headers: HeaderMap::new(),
            body_len: 0,
            body_sha256: hex(&Sha256::digest(b"")),
            body: Bytes::new(),
            error: Some(error),
        }
    }
}

/// [`NO_ANSWER`] as a status.
fn no_answer() -> StatusCode {
    StatusCode::from_u16(NO_ANSWER).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// What the editor learnt about a session from the host's answers.
#[derive(Clone, Debug, Default)]
struct Known {
    /// The last `LastModifiedTime` (CheckFileInfo, PutFile): Collabora's
    /// `X-COOL-WOPI-Timestamp`.
    last_modified: Option<String>,
    /// CheckFileInfo's `UserId`: OnlyOffice's `X-WOPI-Editors`.
    user_id: Option<String>,
}

/// Remembers what a successful answer says, as the editors keep it.
fn learn(shared: &Shared, wopi_src: &str, token: &str, call: &WopiCall, json: &serde_json::Value) {
    let mut known = lock(&shared.known);
    let entry = known
        .entry((wopi_src.to_owned(), token.to_owned()))
        .or_default();
    match call {
        WopiCall::CheckFileInfo => {
            entry.last_modified = json["LastModifiedTime"].as_str().map(str::to_owned);
            entry.user_id = json["UserId"].as_str().map(str::to_owned);
        }
        WopiCall::PutFile { .. } => {
            if let Some(time) = json["LastModifiedTime"].as_str() {
                entry.last_modified = Some(time.to_owned());
            }
        }
        _ => {}
    }
}

/// A key no stand-in publishes, for [`Signing::WrongKey`] and unsigned stand-ins.
async fn spare_key() -> Arc<ProofKey> {
    static SPARE: tokio::sync::OnceCell<Arc<ProofKey>> = tokio::sync::OnceCell::const_new();
    Arc::clone(
        SPARE
            .get_or_init(|| async { Arc::new(generate_key().await) })
            .await,
    )
}

/// The proof headers for a call to `url` with `token`.
async fn proof_headers(
    shared: &Shared,
    signing: Signing,
    token: &str,
    url: &str,
) -> Vec<(&'static str, String)> {
    let now = dotnet_ticks_now();
    if !shared.signing && signing == Signing::AsSuite {
        // OnlyOffice sends its timestamp even without keys; coolwsd sends nothing.
        return match shared.suite {
            Suite::OnlyOffice => vec![("X-WOPI-TimeStamp", now.to_string())],
            Suite::Collabora => Vec::new(),
        };
    }
    let (key, ticks, signed_url) = match signing {
        Signing::None => return Vec::new(),
        Signing::AsSuite => (Arc::clone(&shared.key), now, url.to_owned()),
        Signing::WrongKey => (spare_key().await, now, url.to_owned()),
        Signing::Stale => {
            let stale = now.saturating_sub(21 * 60 * 10_000_000);
            (Arc::clone(&shared.key), stale, url.to_owned())
        }
        Signing::Tampered => (Arc::clone(&shared.key), now, format!("{url}&tampered=1")),
    };
    match key.sign(&proof_message(token, &signed_url, ticks)) {
        Ok(signature) => {
            let proof = base64::engine::general_purpose::STANDARD.encode(signature);
            vec![
                ("X-WOPI-TimeStamp", ticks.to_string()),
                ("X-WOPI-Proof", proof.clone()),
                ("X-WOPI-ProofOld", proof),
            ]
        }
        Err(err) => {
            tracing::warn!(%err, "stand-in editor: cannot sign a WOPI call");
            Vec::new()
        }
    }
}

/// The headers the suite puts on every WOPI call: coolwsd its server id, OnlyOffice its
/// `fillStandardHeaders` ones (the session id stands for the token's session).
fn suite_headers(shared: &Shared, token: &str) -> Vec<(&'static str, String)> {
    match (shared.suite, shared.server_id.as_deref()) {
        (Suite::Collabora, Some(server_id)) => {
            vec![("X-COOL-WOPI-ServerId", server_id.to_owned())]
        }
        _ => {
            let session = hex(&Sha256::digest(token.as_bytes())[..8]);
            vec![
                (
                    "X-WOPI-ClientVersion",
                    format!("{ONLYOFFICE_VERSION}.{ONLYOFFICE_BUILD}"),
                ),
                ("X-WOPI-CorrelationId", random_uuid()),
                ("X-WOPI-SessionId", session),
            ]
        }
    }
}

/// A random UUID v4, as `crypto.randomUUID()`.
fn random_uuid() -> String {
    let mut bytes = [0_u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("stand-in editor: system RNG failed");
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// UTF-7 (RFC 2152), as the editors encode `X-WOPI-SuggestedTarget` and
/// `X-WOPI-RequestedName`: printable ASCII but `+`, `\` and `~` as is, `+-` for `+`, other
/// runs as `+<base64 of UTF-16BE, unpadded>-`.
pub fn utf7_encode(raw: &str) -> String {
    let direct = |c: char| c.is_ascii_graphic() && !matches!(c, '+' | '\\' | '~') || c == ' ';
    let mut out = String::with_capacity(raw.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|unit| unit.to_be_bytes()).collect();
        out.push('+');
        out.push_str(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes));
        out.push('-');
        run.clear();
    };
    for c in raw.chars() {
        if direct(c) {
            flush(&mut run, &mut out);
            out.push(c);
        } else if c == '+' {
            flush(&mut run, &mut out);
            out.push_str("+-");
        } else {
            let mut units = [0_u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// `{WOPISrc}{suffix}?access_token=..`: the suffix goes into the path, the token after any
/// query `WOPISrc` has.
fn call_url(wopi_src: &str, suffix: &str, token: &str) -> String {
    let token = encode_uri_component(token);
    match wopi_src.split_once('?') {
        Some((path, query)) => format!("{path}{suffix}?{query}&access_token={token}"),
        None => format!("{wopi_src}{suffix}?access_token={token}"),
    }
}

/// Makes one WOPI call for [`StandInEditor::wopi_with`].
async fn wopi_call(
    shared: &Shared,
    session: &EditorSession,
    call: WopiCall,
    options: CallOptions,
) -> WopiReply {
    let token = options
        .token
        .clone()
        .unwrap_or_else(|| session.access_token.clone());
    let (method, suffix, wopi_override) = call.shape();
    let url = match (&call, &options.url) {
        (WopiCall::Fetch { url }, _) | (_, Some(url)) => url.clone(),
        _ => call_url(&session.wopi_src, suffix, &token),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, value: String| headers.push((name.to_owned(), value));
    if !matches!(call, WopiCall::Fetch { .. }) {
        for (name, value) in proof_headers(shared, options.signing, &token, &url).await {
            add(name, value);
        }
        for (name, value) in suite_headers(shared, &token) {
            add(name, value);
        }
    }
    if let Some(wopi_override) = wopi_override {
        add("X-WOPI-Override", wopi_override.to_owned());
    }
    let known = lock(&shared.known)
        .get(&(session.wopi_src.clone(), token.clone()))
        .cloned()
        .unwrap_or_default();
    let mut body = None;
    match &call {
        WopiCall::GetFile { max_expected_size } => {
            if let Some(max) = max_expected_size {
                add("X-WOPI-MaxExpectedSize", max.to_string());
            }
        }
        WopiCall::Lock { lock } | WopiCall::Unlock { lock } | WopiCall::RefreshLock { lock } => {
            add("X-WOPI-Lock", lock.clone())
        }
        WopiCall::UnlockAndRelock { lock, old_lock } => {
            add("X-WOPI-Lock", lock.clone());
            add("X-WOPI-OldLock", old_lock.clone());
        }
        WopiCall::PutFile { lock, body: put } => {
            if let Some(lock) = lock {
                add("X-WOPI-Lock", lock.clone());
            }
            match shared.suite {
                Suite::Collabora => {
                    add("X-COOL-WOPI-IsModifiedByUser", "true".to_owned());
                    add("X-COOL-WOPI-IsAutosave", "false".to_owned());
                    add("X-COOL-WOPI-IsExitSave", "false".to_owned());
                    let timestamp = options.cool_timestamp.clone().or(known.last_modified);
                    if let Some(timestamp) = timestamp.filter(|t| !t.is_empty()) {
                        add("X-COOL-WOPI-Timestamp", timestamp);
                    }
                }
                Suite::OnlyOffice => {
                    let editors = known.user_id.unwrap_or_else(|| "standin-user".to_owned());
                    add("X-WOPI-Editors", editors);
                }
            }
            body = Some(put.clone());
        }
        WopiCall::PutRelativeFile {
            suggested_target,
            body: put,
        } => {
            add("X-WOPI-SuggestedTarget", utf7_encode(suggested_target));
            add("X-WOPI-Size", put.declared().to_string());
            body = Some(put.clone());
        }
        WopiCall::RenameFile { lock, name } => {
            add("X-WOPI-Lock", lock.clone());
            add("X-WOPI-RequestedName", utf7_encode(name));
        }
        WopiCall::PutUserInfo(info) => body = Some(PutBody::Bytes(info.clone().into_bytes())),
        WopiCall::GetShareUrl => add("X-WOPI-UrlType", "ReadOnly".to_owned()),
        WopiCall::CheckFileInfo
        | WopiCall::GetLock
        | WopiCall::DeleteFile
        | WopiCall::Fetch { .. } => {}
    }
    if body.is_some() {
        add("Content-Type", "application/octet-stream".to_owned());
    }
    headers.extend(options.extra_headers.iter().cloned());

    let timeout = *lock(&shared.wopi_timeout);
    let exchange = async {
        if let Some(PutBody::CutAfter { declared, sent }) = body {
            return cut_upload(&method, &url, &headers, declared, sent).await;
        }
        send_call(shared, method, &url, &headers, body).await
    };
    let reply = match tokio::time::timeout(timeout, exchange).await {
        Ok(reply) => reply,
        Err(_elapsed) => WopiReply::failed(format!("no complete answer within {timeout:?}")),
    };
    if reply.status == StatusCode::OK
        && let Some(json) = reply.json()
    {
        learn(shared, &session.wopi_src, &token, &call, &json);
    }
    reply
}

/// Sends a call through the editor's client and streams the answer into a [`WopiReply`].
async fn send_call(
    shared: &Shared,
    method: Method,
    url: &str,
    headers: &[(String, String)],
    body: Option<PutBody>,
) -> WopiReply {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let body: Body = match body {
        None => empty(),
        Some(PutBody::Bytes(bytes)) => {
            request = request.header(header::CONTENT_LENGTH, bytes.len());
            Full::new(Bytes::from(bytes))
                .map_err(|never| match never {})
                .boxed()
        }
        Some(PutBody::Pattern(len) | PutBody::CutAfter { declared: len, .. }) => {
            request = request.header(header::CONTENT_LENGTH, len);
            let frames = pattern_stream(len).map(|chunk| Ok::<_, BoxError>(Frame::data(chunk)));
            BodyExt::boxed(StreamBody::new(frames))
        }
        Some(PutBody::Paced { len, over }) => {
            request = request.header(header::CONTENT_LENGTH, len);
            let chunks = len.div_ceil(pattern_chunk().len() as u64).max(1);
            let pause = over / u32::try_from(chunks).unwrap_or(u32::MAX);
            let frames = pattern_stream(len).then(move |chunk| async move {
                tokio::time::sleep(pause).await;
                Ok::<_, BoxError>(Frame::data(chunk))
            });
            BodyExt::boxed(StreamBody::new(frames))
        }
    };
    let request = match request.body(body) {
        Ok(request) => request,
        Err(err) => return WopiReply::failed(format!("bad request: {err}")),
    };
    let response = match shared.call_client.request(request).await {
        Ok(response) => response,
        Err(err) => return WopiReply::failed(error_chain(&err)),
    };
    let (parts, mut body) = response.into_parts();
    let mut hasher = Sha256::new();
    let mut kept = Vec::new();
    let mut len = 0_u64;
    let mut error = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    hasher.update(&data);
                    len += data.len() as u64;
                    let room = REPLY_KEPT.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..room.min(data.len())]);
                }
            }
            Err(err) => {
                error = Some(format!(
                    "body broken off after {len} bytes: {}",
                    error_chain(&err)
                ));
                break;
            }
        }
    }
    WopiReply {
        status: parts.status,
        headers: parts.headers,
        body_len: len,
        body_sha256: hex(&hasher.finalize()),
        body: kept.into(),
        error,
    }
}

/// An upload the editor breaks off: over a raw connection, the request head with
/// `Content-Length: declared`, `sent` pattern bytes, then the write side is closed (all
/// `sent` bytes arrive, then EOF). An answer that still comes within a second is read for
/// its status; the reply always carries the cut as its error.
async fn cut_upload(
    method: &Method,
    url: &str,
    headers: &[(String, String)],
    declared: u64,
    sent: u64,
) -> WopiReply {
    let cut = format!("the editor closed the connection after {sent} of {declared} body bytes");
    let uri: http::Uri = match url.parse() {
        Ok(uri) => uri,
        Err(err) => return WopiReply::failed(format!("bad URL: {err}")),
    };
    let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return WopiReply::failed("a cut upload needs an http:// URL".to_owned());
    };
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(head, "Content-Length: {declared}\r\n\r\n");
    let exchange = async {
        let mut stream = TcpStream::connect((authority.host(), port)).await?;
        stream.write_all(head.as_bytes()).await?;
        let mut chunks = pin!(pattern_stream(sent.min(declared)));
        while let Some(chunk) = chunks.next().await {
            stream.write_all(&chunk).await?;
        }
        stream.shutdown().await?;
        let mut answer = Vec::new();
        let mut buf = [0_u8; 4096];
        let read_answer = async {
            while answer.len() < 64 * 1024 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
        };
        let _answered_in_time = tokio::time::timeout(Duration::from_secs(1), read_answer).await;
        Ok::<_, io::Error>(answer)
    };
    match exchange.await {
        Ok(answer) => {
            let status = std::str::from_utf8(&answer)
                .ok()
                .and_then(|text| text.strip_prefix("HTTP/1.1 "))
                .and_then(|rest| rest.get(..3))
                .and_then(|code| code.parse::<u16>().ok())
                .and_then(|code| StatusCode::from_u16(code).ok());
            WopiReply {
                status: status.unwrap_or_else(no_answer),
                ..WopiReply::failed(cut)
            }
        }
        Err(err) => WopiReply::failed(format!("{cut}; {err}")),
    }
}

/// A small static file naming the node and the version it really serves, with
/// `Cache-Control: public` as versioned assets have.
fn static_file(shared: &Shared, path: &str) -> Response<Body> {
    let content_type = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let text = format!(
        "/* stand-in {} static file {path} from {} version {} */\n",
        shared.suite.name(),
        shared.node,
        shared.version
    );
    let mut response = whole(StatusCode::OK, content_type, text);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
    response
}

/// Collabora's document download: a short body naming what was asked.
fn download(shared: &Shared, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let name = path.rsplit('/').next().unwrap_or_default();
    let wopi_src = wopi_src_of(shared.suite, req).unwrap_or_default();
    let text = format!(
        "stand-in download {name} of {wopi_src} from {}\n",
        shared.node
    );
    let mut response = whole(StatusCode::OK, "application/octet-stream", text);
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, disposition);
    }
    response
}

/// `size=N` pattern bytes ([`pattern_stream`]), generated as they are sent, with a
/// `Content-Length`.
fn big_download(req: &Request<Incoming>) -> Response<Body> {
    let size = req
        .uri()
        .query()
        .and_then(|query| query_param(query, "size", false))
        .and_then(|size| size.parse::<u64>().ok());
    let Some(size) = size else {
        return whole(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "size=N (bytes) is required\n",
        );
    };
    let frames = pattern_stream(size).map(|chunk| Ok::<_, BoxError>(Frame::data(chunk)));
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    response
}

/// Streams the request body back unchanged, chunk by chunk (hyper reads the next chunk
/// only when the previous one has been written: backpressure reaches the client).
fn echo_body(req: Request<Incoming>) -> Response<Body> {
    let content_length = req.headers().get(header::CONTENT_LENGTH).cloned();
    let mut response = Response::new(req.into_body().map_err(BoxError::from).boxed());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(length) = content_length {
        headers.insert(header::CONTENT_LENGTH, length);
    }
    response
}

/// Collabora's clipboard and media: coolwsd answers 400 when `ServerId` names another
/// process, since the clipboard lives in that process's memory.
fn server_bound(shared: &Shared, req: &Request<Incoming>) -> Response<Body> {
    let server_id = req
        .uri()
        .query()
        .and_then(|query| query_param(query, "ServerId", false));
    if server_id.is_none() || server_id.as_deref() != shared.server_id.as_deref() {
        let text = format!(
            "wrong server: ServerId {server_id:?}, this is {:?}\n",
            shared.server_id.as_deref().unwrap_or_default()
        );
        return whole(StatusCode::BAD_REQUEST, "text/plain", text);
    }
    let wopi_src = wopi_src_of(shared.suite, req).unwrap_or_default();
    let text = format!(
        "stand-in {} of {wopi_src} from {}\n",
        req.uri().path(),
        shared.node
    );
    whole(StatusCode::OK, "text/plain", text)
}

/// Answers a WebSocket handshake with 101 and queues the echo session that will run on the
/// upgraded connection; 400 for a request that is not a valid handshake.
fn accept_websocket(
    shared: &Arc<Shared>,
    sessions: &mpsc::UnboundedSender<Session>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let headers = req.headers();
    let has_token = |name: HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let upgrade =
        has_token(header::UPGRADE, "websocket") && has_token(header::CONNECTION, "upgrade");
    let version_13 = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|version| version == "13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, true, Some(key)) = (upgrade, version_13, key) else {
        return whole(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "expected a WebSocket upgrade (version 13, with a key)\n",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let open = OpenWebSocket::new(Arc::clone(shared));
    let session = echo_session(on_upgrade, open);
    if sessions.send(Box::pin(session)).is_err() {
        return whole(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "shutting down\n",
        );
    }
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    response
}

/// Counts a WebSocket as open from the 101 on until its session ends or is dropped.
struct OpenWebSocket(Arc<Shared>);

impl OpenWebSocket {
    fn new(shared: Arc<Shared>) -> Self {
        shared.open_websockets.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for OpenWebSocket {
    fn drop(&mut self) {
        self.0.open_websockets.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Echoes every text and binary message back unchanged and in order; answers pings (the
/// library does) and the client's close, then ends.
async fn echo_session(on_upgrade: hyper::upgrade::OnUpgrade, open: OpenWebSocket) {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(err) => {
            tracing::debug!(%err, "stand-in editor: WebSocket upgrade failed");
            return;
        }
    };
    let mut socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    while let Some(message) = socket.next().await {
        match message {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                if let Err(err) = socket.send(message).await {
                    tracing::debug!(%err, "stand-in editor: WebSocket send failed");
                    break;
                }
                open.0.echoed_messages.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Message::Close(frame)) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                open.0.close_codes.lock().expect("close codes").push(code);
            }
            // Pings are answered and a close is acknowledged by tungstenite itself, on
            // the next read (which then ends the stream).
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(%err, "stand-in editor: WebSocket ended with an error");
                break;
            }
        }
    }
}

/// Serves `document`, or misbehaves as `fault` says.
async fn faultable(fault: Fault, document: &str, content_type: &'static str) -> Response<Body> {
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

/// An empty body.
fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A complete response with a `Content-Type`.
fn whole(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let body = Full::new(body.into())
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// One period-aligned chunk of the pattern (about 64 KiB, a whole number of periods, so
/// copies of it placed end to end continue the pattern).
fn pattern_chunk() -> Bytes {
    static CHUNK: OnceLock<Bytes> = OnceLock::new();
    CHUNK
        .get_or_init(|| {
            let period = usize::try_from(PATTERN_PERIOD).expect("small");
            let len = (64 * 1024 / period) * period;
            (0..len)
                .map(|i| pattern_byte(i as u64))
                .collect::<Vec<u8>>()
                .into()
        })
        .clone()
}

/// Byte `offset` of the pattern [`pattern_stream`] produces: `(offset % 251) as u8`.
pub fn pattern_byte(offset: u64) -> u8 {
    u8::try_from(offset % PATTERN_PERIOD).expect("the period is below 256")
}

/// Exactly `size` bytes of the deterministic pattern (byte `i` is `(i % 251) as u8`), as
/// chunks of about 64 KiB that share one buffer: memory use does not grow with `size`.
/// For big downloads here, and for tests that upload (or hash) the same bytes.
pub fn pattern_stream(size: u64) -> impl Stream<Item = Bytes> + Send + 'static {
    let chunk = pattern_chunk();
    let chunk_len = chunk.len() as u64;
    let full = size / chunk_len;
    let rest = usize::try_from(size % chunk_len).expect("below the chunk length");
    let tail = (rest > 0).then(|| chunk.slice(..rest));
    let full = futures_util::stream::iter(0..full).map(move |_| chunk.clone());
    full.chain(futures_util::stream::iter(tail))
}

/// The SHA-256 (lower-case hex) of `size` pattern bytes, as [`pattern_stream`] sends them.
pub fn pattern_sha256(size: u64) -> String {
    let period: Vec<u8> = (0..PATTERN_PERIOD).map(pattern_byte).collect();
    let mut hasher = Sha256::new();
    let mut left = size;
    // Whole periods, in blocks of many periods for speed.
    let block: Vec<u8> = period
        .iter()
        .copied()
        .cycle()
        .take(period.len() * 4096)
        .collect();
    while left >= block.len() as u64 {
        hasher.update(&block);
        left -= block.len() as u64;
    }
    hasher.update(&block[..usize::try_from(left).expect("fits")]);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts that `reply` is a 2xx; the message names `what` and shows what came back.
pub fn assert_ok(reply: &WopiReply, what: &str) {
    assert!(
        reply.status.is_success(),
        "{what}: {} {:?} {}",
        reply.status,
        reply.error,
        String::from_utf8_lossy(&reply.body)
    );
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

    let frame = |bytes: Bytes| Ok::<_, BoxError>(Frame::data(bytes));
    if size < HEAD.len() + TAIL.len() {
        let both = format!("{HEAD}{TAIL}");
        let stream = futures_util::stream::iter([frame(Bytes::from(both).slice(..size))]);
        return BodyExt::boxed(StreamBody::new(stream));
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
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
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
    collabora_discovery_with(base, Some(key))
}

/// [`collabora_discovery`], without `<proof-key>` when `key` is `None` (coolwsd without a
/// `proof_key` file).
fn collabora_discovery_with(base: &str, key: Option<&PublicProofKey>) -> String {
    let mut document = COLLABORA_DISCOVERY_TEMPLATE.replace(COLLABORA_FIXTURE_ORIGIN, base);
    let Some(key) = key else {
        return document;
    };
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
    onlyoffice_discovery_with(base, Some(key))
}

/// [`onlyoffice_discovery`], without `<proof-key>` when `key` is `None` (no
/// `wopi.publicKey` configured).
fn onlyoffice_discovery_with(base: &str, key: Option<&PublicProofKey>) -> String {
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
    out.push_str("</net-zone>");
    if let Some(key) = key {
        let (exponent, modulus, value) = key_attributes(key);
        let _ = write!(
            out,
            r#"<proof-key oldvalue="{value}" oldmodulus="{modulus}" oldexponent="{exponent}" value="{value}" modulus="{modulus}" exponent="{exponent}"/>"#
        );
    }
    out.push_str("</wopi-discovery>");
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
