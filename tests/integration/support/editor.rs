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
//! - builds its URLs as the real editors do (`../shared/notes/real-editors.md` §1-3, §6):
//!   Collabora on its `server_name`, else the request's `Host`, never `X-Forwarded-*`
//!   (discovery, the page's `data-host`, its CSP), below its service root, with a
//!   `Content-Security-Policy` framing the page only on its own host and the `WOPISrc`'s,
//!   and a WebSocket refused (403) unless its `Origin` is its own; ONLYOFFICE's discovery on
//!   `X-Forwarded-Proto`/`-Host` (else `Host`) and a page that is relative throughout.
//!   Settings as on the real editors: [`StandInOptions`];
//! - serves pages a browser really runs: Collabora's script reads `WOPISrc` from the page's
//!   own address and opens the WebSocket; ONLYOFFICE's page loads `api.js` by its relative
//!   address, which creates the versioned editor frame, which fetches `plugins.json` and
//!   `themes.json` and opens the socket below the version segment. Both check the echo and
//!   post `App_LoadingStatus` `Document_Loaded` to the parent, as the real ones do (see
//!   [`COLLABORA_BUNDLE_JS`], [`ONLYOFFICE_API_JS`], [`ONLYOFFICE_FRAME_HTML`]);
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
    /// The length of the form's (or, for a Collabora GET, the query's) `access_token`. No
    /// field holds the token itself (Collabora's page carries it in `data-access-token`, as
    /// coolwsd's does, for its script; OnlyOffice's does not).
    pub access_token_len: usize,
    /// The form's `access_token_ttl`, as sent.
    pub access_token_ttl: String,
    /// The base the editor builds absolute URLs on, as the real one does. Collabora: the
    /// web server URL of its CSP and `data-host`, `http://` + `server_name` (else the
    /// request's `Host`; `X-Forwarded-*` are ignored) followed by the service root.
    /// OnlyOffice: DocService's base, `wopi.host` or `X-Forwarded-Proto://X-Forwarded-Host`
    /// (else `http://` + `Host`), which only its discovery uses: its page is relative.
    pub asset_base: String,
    /// The page's script as the page writes it (`<script src>`): Collabora the
    /// root-relative `<root>/browser/<hash>/bundle.js`; OnlyOffice the relative
    /// `../../../web-apps/apps/api/documents/api.js?WOPISrc=<enc>`, which the browser
    /// resolves against the page's own address.
    pub asset_url: String,
    /// The document WebSocket as the page's script opens it. Collabora: the absolute
    /// `ws://<server_name or Host><root>/cool/<enc(WOPISrc?access_token=..)>/ws?WOPISrc=
    /// <enc>&compat=/ws` (hexified when configured), built from the `WOPISrc` of the
    /// page's own address. OnlyOffice: the path the editor frame's socket resolves to,
    /// `/<version>/doc/<docid>/c/?WOPISrc=<enc>&EIO=4&transport=websocket`, on whatever
    /// origin the browser loaded the page from.
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

    /// The fields as `<meta>` tags, one a line, for the head of a page.
    fn meta_tags(&self) -> String {
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
        let mut html = String::new();
        for (key, value) in Self::KEYS.iter().zip(values) {
            let _ = writeln!(
                html,
                "<meta name=\"standin:{key}\" content=\"{}\">",
                html_escape(value)
            );
        }
        html
    }
}

/// The Collabora page's script (`/browser/<hash>/bundle.js`), doing for loading what
/// `browser/js/global.js`, `Socket.ts` and `Map.WOPI.js` do (`shared/notes/real-editors.md`
/// §2, §3): it reads `WOPISrc` from the page's **own** address (`location.search`) and the
/// rest from `#initial-variables`, opens the document WebSocket at `data-host` +
/// `data-service-root` + `/cool/<enc(WOPISrc?access_token=..)>/ws?WOPISrc=<enc>&compat=/ws`
/// (hexified when `data-hexify-url` says so), sends a `load` line, and when the echo comes
/// back posts `App_LoadingStatus` `Document_Loaded` (a JSON string) to `window.parent`.
/// `Frame_Ready` goes first, to `data-post-message-origin-ext` or `*`; `Document_Loaded`
/// to the `PostMessageOrigin` of CheckFileInfo (the real kit gets it over the WebSocket;
/// the echo socket cannot send it, so the page carries it in
/// `data-standin-wopi-post-message-origin`). Messages from the parent are accepted only
/// from origins in `data-frame-ancestors`, as `_allowMessageOrigin` does in browsers
/// without `location.ancestorOrigins` (Firefox): so the list is exercised in Chromium too.
/// What happened is in `window.__standin`.
const COLLABORA_BUNDLE_JS: &str = r#"(function () {
  'use strict';
  var vars = document.getElementById('initial-variables').dataset;
  var state = window.__standin = {
    suite: 'collabora', websocketUrl: '', wopiSrc: '', opened: false, echoed: false,
    documentLoaded: false, closed: null, fromHost: [], errors: []
  };
  var postMessageOrigin = vars.postMessageOriginExt || '*';
  var post = function (id, values) {
    if (!postMessageOrigin || window.parent === window.self) return;
    window.parent.postMessage(JSON.stringify({ MessageId: id, SendTime: Date.now(), Values: values }), postMessageOrigin);
  };
  var ancestors = decodeURIComponent(vars.frameAncestors || '').trim().split(' ')
    .filter(function (a) { return a.length > 0; })
    .map(function (a) { return '^(http|https)://' + a.replace(/:\*/, ':?.*') + '$'; });
  window.addEventListener('message', function (e) {
    var accepted = e.origin !== 'null' && ancestors.some(function (a) { return e.origin.match(a); });
    var data = null;
    try { data = JSON.parse(e.data); } catch (err) { data = null; }
    state.fromHost.push({ origin: e.origin, accepted: accepted, messageId: data && data.MessageId });
    if (!accepted) console.error('PostMessage not allowed due to incorrect origin.');
  }, false);
  var hexEncode = function (text) {
    var bytes = new TextEncoder().encode(text);
    var hex = '0x';
    for (var i = 0; i < bytes.length; ++i) hex += bytes[i].toString(16);
    return hex;
  };
  var search = window.location.search;
  var params = new URLSearchParams(search.slice(search.lastIndexOf('?') + 1));
  var wopiSrc = params.get('WOPISrc') || '';
  state.wopiSrc = wopiSrc;
  var docURL = decodeURIComponent(wopiSrc);
  var docParams = '';
  if (vars.accessToken !== '') {
    docParams = 'access_token=' + encodeURIComponent(vars.accessToken) +
      '&access_token_ttl=' + encodeURIComponent(vars.accessTokenTtl) +
      '&no_auth_header=' + encodeURIComponent(vars.noAuthHeader);
  }
  var docParamsPart = docParams ? (docURL.indexOf('?') >= 0 ? '&' : '?') + docParams : '';
  var tail = encodeURIComponent(docURL + docParamsPart) + '/ws' +
    (wopiSrc !== '' ? '?WOPISrc=' + encodeURIComponent(wopiSrc) + '&compat=' : '');
  if (vars.hexifyUrl === 'true') tail = hexEncode(tail);
  var url = vars.host + vars.serviceRoot + '/cool/' + tail + '/ws';
  state.websocketUrl = url;
  post('App_LoadingStatus', { Status: 'Frame_Ready' });
  var probe = 'load url=' + docURL + ' ' + Date.now();
  var socket;
  try {
    socket = new WebSocket(url);
  } catch (err) {
    state.errors.push('cannot open the WebSocket: ' + err);
    return;
  }
  socket.onopen = function () { state.opened = true; socket.send(probe); };
  socket.onmessage = function (e) {
    if (e.data !== probe) {
      state.errors.push('unexpected message: ' + String(e.data).slice(0, 200));
      return;
    }
    state.echoed = true;
    postMessageOrigin = vars.standinWopiPostMessageOrigin || postMessageOrigin;
    state.documentLoaded = true;
    post('App_LoadingStatus', { Status: 'Document_Loaded', DocumentLoadedTime: Date.now() });
  };
  socket.onerror = function () { state.errors.push('WebSocket error'); };
  socket.onclose = function (e) { state.closed = e.code; };
})();
"#;

/// The ONLYOFFICE page's own script, after `api.js` (as `editor-wopi.ejs`): on load it
/// creates `DocsAPI.DocEditor`; when the editor frame reports the document ready it
/// posts `App_LoadingStatus` `Document_Loaded` (a JSON string) to `window.parent`, to
/// the `PostMessageOrigin` of CheckFileInfo (none: nothing is posted, as `postMessage`
/// with no target origin fails); it takes messages only from that origin. It never posts
/// `Frame_Ready`; with `FileSharingPostMessage` its share handler
/// (`__standin.requestSharing()`) posts `UI_Sharing`.
/// `window.__standinEditor` (set by the page) holds `key`, `wopiSrc`, `documentType`,
/// `mode`, `lang` and `fileInfo`; what happened is in `window.__standin`.
const ONLYOFFICE_PAGE_JS: &str = r#"(function () {
  'use strict';
  var editor = window.__standinEditor;
  var state = window.__standin = {
    suite: 'onlyoffice', appReady: false, documentLoaded: false, fromHost: [], errors: []
  };
  var postMessageOrigin = editor.fileInfo.PostMessageOrigin;
  if (typeof postMessageOrigin === 'string' && postMessageOrigin.charAt(postMessageOrigin.length - 1) === '/') {
    postMessageOrigin = postMessageOrigin.substring(0, postMessageOrigin.length - 1);
  }
  var post = function (id, values) {
    if (!postMessageOrigin) {
      state.errors.push('no PostMessageOrigin: ' + id + ' not posted');
      return;
    }
    values['ui-language'] = editor.lang;
    values.wdUserSession = '';
    window.parent.postMessage(JSON.stringify({ MessageId: id, SendTime: Date.now(), Values: values }), postMessageOrigin);
  };
  window.addEventListener('message', function (e) {
    if (e.origin !== postMessageOrigin) return;
    var data = null;
    try { data = JSON.parse(e.data); } catch (err) { data = null; }
    state.fromHost.push({ origin: e.origin, messageId: data && data.MessageId });
  }, false);
  // What the editor frame's share button reaches (`onRequestSharingSettings`): only with
  // FileSharingPostMessage, and it posts ONLYOFFICE's own name for it.
  state.requestSharing = editor.fileInfo.FileSharingPostMessage
    ? function () { post('UI_Sharing', {}); }
    : null;
  window.addEventListener('load', function () {
    var start = Date.now();
    if (typeof DocsAPI === 'undefined') {
      state.errors.push('api.js did not load');
      return;
    }
    new DocsAPI.DocEditor('iframeEditor', {
      width: '100%',
      height: '100%',
      type: 'desktop',
      documentType: editor.documentType,
      document: { title: editor.fileInfo.BaseFileName || '', url: editor.wopiSrc, key: editor.key },
      editorConfig: { mode: editor.mode, lang: editor.lang },
      events: {
        onAppReady: function () { state.appReady = true; },
        onDocumentReady: function () {
          state.documentLoaded = true;
          post('App_LoadingStatus', { Status: 'Document_Loaded', DocumentLoadedTime: Date.now() - start });
        },
        onError: function (event) { state.errors.push('editor error: ' + JSON.stringify(event.data)); }
      }
    });
  });
})();
"#;

/// `web-apps/apps/api/documents/api.js` of the stand-in: `DocsAPI.DocEditor` replaces the
/// placeholder with the editor frame at `<base>/<version>/web-apps/apps/<editor>/main/
/// index.html?_dc=0&lang=..&frameEditorId=..&parentOrigin=..`, where `<base>` is where
/// this script was loaded from (`getBasePath`, minus any version segment) and `<version>`
/// is this build's (`extendAppPath`); on the frame's load it sends the configuration
/// (`init`) and its own query (`?WOPISrc=..`, the page's `apiQuery`) to the frame, and
/// calls the page's `events` for what the frame reports. `{{VERSION}}` is filled in.
const ONLYOFFICE_API_JS: &str = r#"(function (DocsAPI, window, document) {
  'use strict';
  var VERSION = '{{VERSION}}';
  var apps = { word: 'documenteditor', cell: 'spreadsheeteditor', slide: 'presentationeditor', pdf: 'pdfeditor' };
  var script = (function () {
    var scripts = document.getElementsByTagName('script');
    for (var i = scripts.length - 1; i >= 0; i--) {
      if (/api\/documents\/api\.js/i.test(scripts[i].src)) return scripts[i].src;
    }
    return '';
  })();
  var apiQuery = script.indexOf('?') >= 0 ? script.substring(script.indexOf('?')) : '';
  var appsBase = script.replace(/api\/documents\/api\.js.*$/i, '');
  var root = appsBase.replace(/web-apps\/apps\/$/, '').replace(/\/\d+\.\d+\.\d+[.-]\w+\/$/, '/');
  DocsAPI.DocEditor = function (placeholderId, config) {
    var placeholder = document.getElementById(placeholderId);
    var app = apps[config.documentType] || 'documenteditor';
    var src = root + VERSION + '/web-apps/apps/' + app + '/main/index.html' +
      '?_dc=0&lang=' + ((config.editorConfig && config.editorConfig.lang) || 'en') +
      '&frameEditorId=' + placeholderId + '&parentOrigin=' + window.location.origin;
    var frameOrigin = new URL(src, window.location.href).origin;
    var iframe = document.createElement('iframe');
    iframe.src = src;
    iframe.name = 'frameEditor';
    iframe.width = config.width || '100%';
    iframe.height = config.height || '100%';
    iframe.frameBorder = 0;
    window.addEventListener('message', function (msg) {
      if (msg.origin !== frameOrigin) return;
      var data = null;
      try { data = JSON.parse(msg.data); } catch (err) { return; }
      var handler = data && data.event && config.events && config.events[data.event];
      if (handler) handler.call(null, { target: null, data: data.data });
    }, false);
    iframe.addEventListener('load', function () {
      iframe.contentWindow.postMessage(JSON.stringify({ command: 'init', data: { config: config, apiQuery: apiQuery } }), '*');
    });
    placeholder.parentNode.replaceChild(iframe, placeholder);
  };
  DocsAPI.DocEditor.version = function () { return VERSION; };
})(window.DocsAPI = window.DocsAPI || {}, window, document);
"#;

/// The editor frame (`web-apps/apps/<editor>/main/index.html`): on `init` from the API it
/// fetches `../../../../plugins.json` and `../../../../themes.json` and opens the socket.io
/// WebSocket at `../../../../doc/<key>/c/?WOPISrc=<enc>&EIO=4&transport=websocket`, all
/// relative to its own address as web-apps and sdkjs do (`shared/notes/real-editors.md` §6),
/// so below the version segment; it reports `onAppReady` once the socket is open and
/// `onDocumentReady` once the socket echoed and both files loaded, to `parentOrigin`.
/// What happened is in `window.__standin`.
const ONLYOFFICE_FRAME_HTML: &str = r#"<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>ONLYOFFICE editor (stand-in)</title>
</head>
<body>
<div id="editor">stand-in editor</div>
<script type="text/javascript">
(function () {
  'use strict';
  var state = window.__standin = {
    suite: 'onlyoffice-frame', socketUrl: '', opened: false, echoed: false, fetched: {},
    documentReady: false, errors: []
  };
  var params = new URLSearchParams(window.location.search);
  var parentOrigin = params.get('parentOrigin') || '*';
  var notify = function (event, data) {
    window.parent.postMessage(JSON.stringify({ event: event, data: data || {} }), parentOrigin);
  };
  var started = false;
  window.addEventListener('message', function (e) {
    var msg = null;
    try { msg = JSON.parse(e.data); } catch (err) { return; }
    if (!msg || msg.command !== 'init' || started) return;
    started = true;
    start(msg.data);
  }, false);
  var start = function (data) {
    var key = data.config.document.key;
    var wopiSrc = new URLSearchParams(data.apiQuery || '').get('WOPISrc') || '';
    var files = ['../../../../plugins.json', '../../../../themes.json'].map(function (rel) {
      return fetch(rel).then(function (response) {
        state.fetched[rel] = response.status;
        if (!response.ok) throw new Error(rel + ': ' + response.status);
        return response.json();
      });
    });
    var socketUrl = new URL('../../../../doc/' + encodeURIComponent(key) + '/c/' +
      (wopiSrc !== '' ? '?WOPISrc=' + encodeURIComponent(wopiSrc) + '&' : '?') +
      'EIO=4&transport=websocket', window.location.href);
    socketUrl.protocol = socketUrl.protocol === 'https:' ? 'wss:' : 'ws:';
    state.socketUrl = socketUrl.href;
    var probe = '40' + JSON.stringify({ key: key, time: Date.now() });
    var echoed = new Promise(function (resolve, reject) {
      var socket = new WebSocket(state.socketUrl);
      socket.onopen = function () {
        state.opened = true;
        notify('onAppReady');
        socket.send(probe);
      };
      socket.onmessage = function (e) {
        if (e.data === probe) {
          state.echoed = true;
          resolve();
        } else {
          state.errors.push('unexpected message: ' + String(e.data).slice(0, 200));
        }
      };
      socket.onerror = function () { reject(new Error('WebSocket error')); };
    });
    Promise.all([echoed].concat(files)).then(function () {
      state.documentReady = true;
      notify('onDocumentReady');
    }, function (err) {
      state.errors.push(String(err));
      notify('onError', { message: String(err) });
    });
  };
})();
</script>
</body>
</html>
"#;

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

/// Settings of a stand-in that the real editors take from their configuration
/// (`coolwsd.xml`, DocService's `local.json`). The default is an editor configured as
/// shipped: no `server_name`, no service root, no hexified URLs, no `wopi.host`.
///
/// ```ignore
/// let cool = StandInEditor::start_with(
///     Suite::Collabora,
///     StandInOptions::default().server_name("office.example.org:8443"),
/// ).await;
/// ```
#[derive(Clone, Debug, Default)]
pub struct StandInOptions {
    /// coolwsd's `server_name` (`host[:port]`): the authority of every URL it builds
    /// (discovery `urlsrc`, the page's `data-host`, the WebSocket URL, the CSP) instead of
    /// the request's `Host`, and an allowed WebSocket `Origin`. Ignored by OnlyOffice.
    pub server_name: Option<String>,
    /// coolwsd's `net.service_root` (`/collab`): every path it serves and builds is below
    /// it; a request outside it gets 400. Configure the node as [`StandInEditor::base_url`].
    /// Ignored by OnlyOffice.
    pub service_root: Option<String>,
    /// coolwsd's `hexify_embedded_urls`: the page's script opens
    /// `/cool/0x<hex>/ws` with `WOPISrc` only inside the hex, and coolwsd decodes such
    /// paths before it reads them. Ignored by OnlyOffice.
    pub hexify_embedded_urls: bool,
    /// coolwsd's `net.frame_ancestors` (space-separated `host[:port]` sources), put in
    /// front of the page's CSP `frame-ancestors` list. Ignored by OnlyOffice.
    pub frame_ancestors: Option<String>,
    /// DocService's `wopi.host` (`https://office.example.org`): the base of its discovery
    /// instead of `X-Forwarded-Proto`/`X-Forwarded-Host` (else `Host`). Ignored by
    /// Collabora.
    pub wopi_host: Option<String>,
    /// The proof key; `None` generates one.
    pub key: Option<Arc<ProofKey>>,
    /// Conversions read the whole upload before they answer, as coolwsd's `convert-to`
    /// (a multipart form it saves first) and DocService's `ConvertService.ashx` (a JSON
    /// body) do: the answer, `<n> bytes`, comes only after the last byte. Off, the upload
    /// is echoed as it streams.
    pub converts_whole_uploads: bool,
    /// Headers put on static files whose path ends with the first element, over the
    /// editor's own: what a node behind a hoster's proxy, or a misconfigured one, may send
    /// (`Cache-Control: private`, `Set-Cookie`).
    pub static_headers: Vec<(String, header::HeaderName, HeaderValue)>,
}

impl StandInOptions {
    /// Sets coolwsd's `server_name`.
    pub fn server_name(mut self, host_port: impl Into<String>) -> Self {
        self.server_name = Some(host_port.into());
        self
    }

    /// Sets coolwsd's `net.service_root` (`/collab`; a trailing slash is dropped).
    pub fn service_root(mut self, root: impl Into<String>) -> Self {
        self.service_root = Some(root.into());
        self
    }

    /// Turns on coolwsd's `hexify_embedded_urls`.
    pub fn hexify_embedded_urls(mut self) -> Self {
        self.hexify_embedded_urls = true;
        self
    }

    /// Sets coolwsd's `net.frame_ancestors`.
    pub fn frame_ancestors(mut self, sources: impl Into<String>) -> Self {
        self.frame_ancestors = Some(sources.into());
        self
    }

    /// Sets DocService's `wopi.host`.
    pub fn wopi_host(mut self, url: impl Into<String>) -> Self {
        self.wopi_host = Some(url.into());
        self
    }

    /// Reads conversion uploads whole before answering ([`StandInOptions::converts_whole_uploads`]).
    pub fn converts_whole_uploads(mut self) -> Self {
        self.converts_whole_uploads = true;
        self
    }

    /// Puts `name: value` on static files whose path ends with `file`.
    pub fn static_header(mut self, file: &str, name: &'static str, value: &'static str) -> Self {
        self.static_headers.push((
            file.to_string(),
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
        self
    }

    /// Uses `key` as the proof key (several nodes of one pool share theirs).
    pub fn key(mut self, key: impl Into<Arc<ProofKey>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The service root as a path prefix: `/collab`, or empty.
    fn root(&self) -> String {
        self.service_root
            .as_deref()
            .map(|root| format!("/{}", root.trim_matches('/')))
            .filter(|root| root != "/")
            .unwrap_or_default()
    }
}

impl StandInEditor {
    /// Starts a stand-in on `127.0.0.1:0` with a freshly generated proof key.
    ///
    /// RSA key generation takes a moment; tests that start many editors can share one key
    /// with [`StandInEditor::start_with_key`].
    pub async fn start(suite: Suite) -> Self {
        Self::start_with(suite, StandInOptions::default()).await
    }

    /// Starts a stand-in on `127.0.0.1:0` configured with `options`.
    pub async fn start_with(suite: Suite, options: StandInOptions) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_on_with(suite, loopback, options)
            .await
            .expect("stand-in editor: cannot bind 127.0.0.1:0")
    }

    /// Starts a stand-in on `127.0.0.1:0` with the given proof key. Accepts a `ProofKey` or
    /// an `Arc<ProofKey>`, so several editors can share one key (as the two editors behind
    /// one merged discovery must, if richdocuments is to verify both).
    pub async fn start_with_key(suite: Suite, key: impl Into<Arc<ProofKey>>) -> Self {
        Self::start_with(suite, StandInOptions::default().key(key)).await
    }

    /// Starts a stand-in on a given address, typically the address of an editor that was
    /// just stopped, to test that officeswitch notices an editor coming back. Uses a new
    /// proof key; see [`StandInEditor::start_on_with_key`] to keep the old one.
    ///
    /// # Errors
    /// Fails if the address cannot be bound (still in use, not local).
    pub async fn start_on(suite: Suite, addr: SocketAddr) -> io::Result<Self> {
        Self::start_on_with(suite, addr, StandInOptions::default()).await
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
        Self::start_on_with(suite, addr, StandInOptions::default().key(key)).await
    }

    /// Starts a stand-in on a given address configured with `options` (to bring a stopped
    /// node back as it was: [`StandInEditor::options`] holds its key too).
    ///
    /// # Errors
    /// Fails if the address cannot be bound (still in use, not local).
    pub async fn start_on_with(
        suite: Suite,
        addr: SocketAddr,
        mut options: StandInOptions,
    ) -> io::Result<Self> {
        let key = match &options.key {
            Some(key) => Arc::clone(key),
            None => Arc::new(generate_key().await),
        };
        options.key = Some(Arc::clone(&key));
        Self::start_inner(suite, addr, key, true, options).await
    }

    /// Starts a stand-in on `127.0.0.1:0` that neither publishes a proof key in its
    /// discovery nor signs its WOPI calls: OnlyOffice without `wopi.privateKey` (or coolwsd
    /// without `proof_key`). OnlyOffice still sends `X-WOPI-TimeStamp`.
    pub async fn start_unsigned(suite: Suite) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_inner(
            suite,
            loopback,
            spare_key().await,
            false,
            StandInOptions::default(),
        )
        .await
        .expect("stand-in editor: cannot bind 127.0.0.1:0")
    }

    async fn start_inner(
        suite: Suite,
        addr: SocketAddr,
        key: Arc<ProofKey>,
        signing: bool,
        options: StandInOptions,
    ) -> io::Result<Self> {
        let listener = bind(addr)?;
        let addr = listener.local_addr()?;
        let base = format!("http://{addr}");
        let shared = Arc::new(Shared::new(
            suite,
            &base,
            Arc::clone(&key),
            signing,
            options,
        ));
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

    /// What the stand-in was configured with (its proof key included).
    pub fn options(&self) -> &StandInOptions {
        &self.shared.options
    }

    /// The URL to configure the node as: [`StandInEditor::url`] plus the service root
    /// (`http://127.0.0.1:PORT/collab`), without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}{}", self.url(), self.shared.root)
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

    /// The discovery document served when no fault is set to a request that names the
    /// node's own address (`Host`) and carries no forwarding headers: on `server_name` (+
    /// service root) for Collabora, `wopi.host` for OnlyOffice, when configured.
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
    /// What the node was configured with.
    options: StandInOptions,
    /// The service root as a path prefix (`/collab`), or empty.
    root: String,
    /// The discovery served to a request that names the node's own address and carries
    /// no forwarding headers ([`StandInEditor::discovery_xml`]).
    discovery: String,
    /// The key published in the discovery (`None` when unsigned).
    published: Option<PublicProofKey>,
    /// Discovery documents by the base they were built on (they are built per request,
    /// as the real editors fill in the origin per request).
    discoveries: Mutex<HashMap<String, Arc<str>>>,
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
    /// Builds the fixed documents once; the discovery is built per origin on demand.
    fn new(
        suite: Suite,
        base: &str,
        key: Arc<ProofKey>,
        signing: bool,
        options: StandInOptions,
    ) -> Self {
        let published = signing.then(|| key.public().clone());
        let root = options.root();
        let (capabilities, server_id, version) = match suite {
            Suite::Collabora => {
                let server_id = random_server_id();
                (
                    collabora_capabilities(&server_id),
                    Some(server_id),
                    COLLABORA_VERSION_HASH,
                )
            }
            Suite::OnlyOffice => (
                ONLYOFFICE_CAPABILITIES.to_owned(),
                None,
                onlyoffice_versioned(),
            ),
        };
        // The document for a request to the node's own address, without forwarding headers.
        let own_base = match suite {
            Suite::Collabora => {
                let authority = options
                    .server_name
                    .clone()
                    .unwrap_or_else(|| base.trim_start_matches("http://").to_owned());
                format!("http://{authority}{root}")
            }
            Suite::OnlyOffice => options.wopi_host.as_deref().map_or_else(
                || base.to_owned(),
                |host| host.trim_end_matches('/').to_owned(),
            ),
        };
        let discovery = match suite {
            Suite::Collabora => collabora_discovery_with(&own_base, published.as_ref()),
            Suite::OnlyOffice => onlyoffice_discovery_with(&own_base, published.as_ref()),
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
            options,
            root,
            discoveries: Mutex::new(HashMap::from([(own_base, Arc::from(discovery.as_str()))])),
            discovery,
            published,
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

/// The routes a stand-in knows. To add one: a variant here, a line in [`Route::of`] (or
/// [`onlyoffice_route`]), an arm in [`route`].
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
    /// Static files: Collabora `GET /browser/<hash>/...` (`bundle.js` is the page's
    /// script), OnlyOffice `GET [/<version>-<build>]/{web-apps,sdkjs,sdkjs-plugins,fonts,
    /// dictionaries}/...` (`web-apps/apps/api/documents/api.js` and
    /// `web-apps/apps/<editor>/main/index.html` are the API script and the editor frame).
    Static,
    /// OnlyOffice `GET [/<version>-<build>]/plugins.json` and `/themes.json`, which the
    /// editor frame fetches.
    EditorJson,
    /// The document WebSocket (an echo server): Collabora `/cool/<enc>/ws`, `/cool/ws`,
    /// `/lool/.../ws` (hexified paths decoded first); OnlyOffice
    /// `[/<version>-<build>]/doc/<docid>/c/` (socket.io). 400 without an upgrade.
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
    /// OnlyOffice `GET /cache/files/...` (served by its nginx, never versioned): a short
    /// body.
    CacheFile,
    /// Anything else.
    NotFound,
}

impl Route {
    /// Classifies a request by its path as the editor reads it (Collabora: below the
    /// service root, hexified segments decoded; see [`collabora_local`]); pure, so the
    /// routing table reads in one place.
    fn of(suite: Suite, method: &Method, path: &str) -> Self {
        match (suite, method.as_str(), path) {
            (Suite::OnlyOffice, method, path) => onlyoffice_route(method, path),
            (_, "GET", "/hosting/discovery") => Self::Discovery,
            (_, "GET", "/hosting/capabilities") => Self::Capabilities,
            (_, "GET" | "HEAD", "/") => Self::Health,
            (_, "POST", path) if is_convert_to(path) => Self::Convert,
            (_, "GET" | "POST", path) if is_collabora_page(path) => Self::EditorPage,
            (_, "GET", path) if is_collabora_static(path) => Self::Static,
            (_, "GET", path) if is_collabora_websocket(path) => Self::WebSocket,
            (_, "GET", "/cool/clipboard" | "/cool/media") | (_, "POST", "/cool/clipboard") => {
                Self::ServerBound
            }
            (_, "GET", path) => match collabora_download(path) {
                Some("big") => Self::BigDownload,
                Some(_) => Self::Download,
                None => Self::NotFound,
            },
            _ => Self::NotFound,
        }
    }
}

/// OnlyOffice's routes: its nginx forwards every path below a version segment with the
/// segment stripped (`/9.3.1-standin/doc/...` is `/doc/...`), and serves `/cache/files/`
/// itself (unversioned only).
fn onlyoffice_route(method: &str, path: &str) -> Route {
    let (version, rest) = split_onlyoffice_version(path);
    match (method, rest) {
        ("GET", "/hosting/discovery") => Route::Discovery,
        ("GET", "/hosting/capabilities") => Route::Capabilities,
        ("GET", "/healthcheck") => Route::Health,
        ("POST", path) if is_convert_to(path) => Route::Convert,
        ("POST", "/ConvertService.ashx" | "/converter") => Route::Convert,
        ("POST", path) if is_onlyoffice_page(path) => Route::EditorPage,
        ("GET", path) if is_onlyoffice_static(path) => Route::Static,
        ("GET", "/plugins.json" | "/themes.json") => Route::EditorJson,
        ("GET", path) if path.starts_with("/doc/") => Route::WebSocket,
        ("GET", path) if version.is_none() && path.starts_with("/cache/files/") => Route::CacheFile,
        _ => Route::NotFound,
    }
}

/// `(Some(version), rest)` for `/<version>/rest` (`rest` keeps its leading `/`), else
/// `(None, path)`.
fn split_onlyoffice_version(path: &str) -> (Option<&str>, &str) {
    let Some(rest) = path.strip_prefix('/') else {
        return (None, path);
    };
    match rest.split_once('/') {
        Some((first, _)) if is_onlyoffice_version(first) => (Some(first), &path[first.len() + 1..]),
        _ => (None, path),
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

/// OnlyOffice's nginx static location below the version segment,
/// `/(web-apps|sdkjs|sdkjs-plugins|fonts|dictionaries)(/.*)$`.
fn is_onlyoffice_static(path: &str) -> bool {
    let Some((dir, _file)) = path.strip_prefix('/').and_then(|rest| rest.split_once('/')) else {
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
    mut req: Request<Incoming>,
) -> Response<Body> {
    shared.record(&req);
    let mut response = match localize(&shared, &mut req) {
        None => route(&shared, sessions, req).await,
        Some(refused) => refused,
    };
    let headers = response.headers_mut();
    headers.insert(NODE_HEADER, shared.node_header.clone());
    headers.insert(VERSION_HEADER, HeaderValue::from_static(shared.version));
    response
}

/// Collabora reads a request as coolwsd's `RequestDetails` does: below `net.service_root`
/// (a request outside it is a 400) and with a hexified `cool/0x<hex>` segment decoded
/// (`dehexify`), which may bring the query (`?WOPISrc=..`) back. The request's URI is
/// replaced by that; [`StandInEditor::requests`] keeps what arrived. OnlyOffice: as is.
/// `Some` is the answer to a request refused on the way.
fn localize(shared: &Shared, req: &mut Request<Incoming>) -> Option<Response<Body>> {
    if shared.suite != Suite::Collabora {
        return None;
    }
    let original = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let Some(local) = original
        .strip_prefix(shared.root.as_str())
        .filter(|local| local.starts_with('/'))
    else {
        let text = format!("The request does not start with prefix: {}\n", shared.root);
        return Some(whole(StatusCode::BAD_REQUEST, "text/plain", text));
    };
    let local = dehexify(local);
    if local != original {
        match local.parse() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(err) => {
                let text = format!("bad request URI {local}: {err}\n");
                return Some(whole(StatusCode::BAD_REQUEST, "text/plain", text));
            }
        }
    }
    None
}

/// coolwsd's `RequestDetails::dehexify`: the text after `cool/0x` up to the next `/`,
/// hex-decoded, replaces `0x<hex>`. Malformed hex decodes to nothing, as in coolwsd.
fn dehexify(uri: &str) -> String {
    const PREFIX: &str = "cool/0x";
    let Some(at) = uri.find(PREFIX) else {
        return uri.to_owned();
    };
    let start = at + PREFIX.len();
    let end = uri[start..].find('/').map_or(uri.len(), |i| start + i);
    let hex = &uri[start..end];
    let decoded: Option<Vec<u8>> = hex
        .len()
        .is_multiple_of(2)
        .then(|| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
                .collect()
        })
        .flatten();
    let decoded = String::from_utf8_lossy(&decoded.unwrap_or_default()).into_owned();
    format!("{}{decoded}{}", &uri[..start - 2], &uri[end..])
}

/// The browser's `hexEncode` (`global.js`): `0x` and each UTF-8 byte in lower-case hex,
/// **without** zero padding (bytes below 0x10 give one digit, as in the real script).
fn hex_encode_js(text: &str) -> String {
    text.bytes().fold(String::from("0x"), |mut hex, byte| {
        let _ = write!(hex, "{byte:x}");
        hex
    })
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
            let document = discovery_for(shared, &req);
            faultable(fault, &document, content_type).await
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
        Route::Static => static_file(shared, &req),
        Route::EditorJson => editor_json(req.uri().path()),
        Route::WebSocket => accept_websocket(shared, sessions, req),
        Route::Download => download(shared, &req),
        Route::BigDownload => big_download(&req),
        Route::Convert if shared.options.converts_whole_uploads => count_upload(req).await,
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

/// The discovery for this request, on the origin the real editor would fill in:
/// Collabora `http://` + `server_name`, else the request's `Host`, + the service root
/// (`%SRV_URI%`; forwarding headers ignored); OnlyOffice `wopi.host`, else
/// [`docservice_base`].
fn discovery_for(shared: &Shared, req: &Request<Incoming>) -> Arc<str> {
    let base = match shared.suite {
        Suite::Collabora => format!("http://{}{}", collabora_authority(shared, req), shared.root),
        Suite::OnlyOffice => docservice_base(shared, req),
    };
    let mut built = lock(&shared.discoveries);
    if let Some(document) = built.get(&base) {
        return Arc::clone(document);
    }
    let document: Arc<str> = Arc::from(match shared.suite {
        Suite::Collabora => collabora_discovery_with(&base, shared.published.as_ref()),
        Suite::OnlyOffice => onlyoffice_discovery_with(&base, shared.published.as_ref()),
    });
    built.insert(base, Arc::clone(&document));
    document
}

/// The request's `Host` (HTTP/2: its authority), else the node's own address.
fn request_host(shared: &Shared, req: &Request<Incoming>) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(ToString::to_string))
        .unwrap_or_else(|| shared.node.trim_start_matches("http://").to_owned())
}

/// The authority coolwsd builds its URLs on: `server_name`, else the request's `Host`
/// (`ServerURL`; `X-Forwarded-*` are never read).
fn collabora_authority(shared: &Shared, req: &Request<Incoming>) -> String {
    shared
        .options
        .server_name
        .clone()
        .unwrap_or_else(|| request_host(shared, req))
}

/// DocService's base URL (`utils.getBaseUrlByRequest`): `wopi.host` if set, else
/// `X-Forwarded-Proto` (else `http`) `://` `X-Forwarded-Host` (else `Host`) plus
/// `X-Forwarded-Prefix`, without a trailing slash.
fn docservice_base(shared: &Shared, req: &Request<Incoming>) -> String {
    if let Some(host) = &shared.options.wopi_host {
        return host.trim_end_matches('/').to_owned();
    }
    let headers = req.headers();
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let proto = first("x-forwarded-proto")
        .filter(|proto| proto == "http" || proto == "https")
        .unwrap_or_else(|| "http".to_owned());
    let host = first("x-forwarded-host").unwrap_or_else(|| request_host(shared, req));
    let prefix = first("x-forwarded-prefix").unwrap_or_default();
    format!("{proto}://{host}{prefix}")
        .trim_end_matches('/')
        .to_owned()
}

/// What an editor page was opened with, and what the host's CheckFileInfo said.
struct Opened {
    /// `WOPISrc` from the page's query, decoded (empty if none).
    wopi_src: String,
    /// The `access_token` (form, or query for a Collabora GET).
    token: String,
    /// `access_token_ttl` as sent.
    access_token_ttl: String,
    /// The form's other fields.
    form: Vec<(String, String)>,
    /// [`EditorPage::check_file_info`].
    check_file_info: String,
    /// CheckFileInfo's JSON answer, when it was a 200.
    info: Option<serde_json::Value>,
}

impl Opened {
    /// A form field, or empty.
    fn field(&self, name: &str) -> &str {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }

    /// A string field of CheckFileInfo's answer, or empty.
    fn info_str(&self, name: &str) -> &str {
        self.info
            .as_ref()
            .and_then(|info| info[name].as_str())
            .unwrap_or_default()
    }
}

/// The editor page. Reads the form (`access_token`, `access_token_ttl`), calls the host's
/// CheckFileInfo when it has a `WOPISrc` and a token, and answers the suite's page
/// ([`collabora_page`], [`onlyoffice_page`]), an [`EditorPage`] in its head.
async fn editor_page(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let suite = shared.suite;
    let wopi_src = wopi_src_of(suite, &req).unwrap_or_default();
    let authority = collabora_authority(shared, &req);
    let docservice = docservice_base(shared, &req);
    let path = req.uri().path().to_owned();
    let req_query = req.uri().query().map(str::to_owned);
    let query_value = |name: &str| {
        req_query
            .as_deref()
            .and_then(|query| query_param(query, name, suite == Suite::OnlyOffice))
    };
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
    let token = field("access_token")
        .or_else(|| query_value("access_token"))
        .unwrap_or_default();
    let access_token_ttl = field("access_token_ttl")
        .or_else(|| query_value("access_token_ttl"))
        .unwrap_or_default();
    if !wopi_src.is_empty() {
        lock(&shared.sessions).push(EditorSession {
            wopi_src: wopi_src.clone(),
            access_token: token.clone(),
            access_token_ttl: access_token_ttl.clone(),
            node: shared.node.clone(),
        });
    }

    let (check_file_info, info) = if wopi_src.is_empty() || token.is_empty() {
        ("none".to_owned(), None)
    } else {
        let outcome = check_file_info(shared, &wopi_src, &token).await;
        let info = outcome.json();
        if let Some(info) = &info {
            learn(shared, &wopi_src, &token, &WopiCall::CheckFileInfo, info);
        }
        let summary = outcome.summary();
        lock(&shared.check_file_infos).push(CheckFileInfoCall {
            wopi_src: wopi_src.clone(),
            access_token_len: token.len(),
            outcome,
        });
        (summary, info)
    };
    let opened = Opened {
        wopi_src,
        token,
        access_token_ttl,
        form,
        check_file_info,
        info,
    };
    match suite {
        Suite::Collabora => collabora_page(shared, &authority, &opened),
        Suite::OnlyOffice => {
            let lang = query_value("lang").unwrap_or_else(|| "en".to_owned());
            onlyoffice_page(shared, &docservice, &path, &lang, &opened)
        }
    }
}

/// The fields every stand-in page carries, for [`EditorPage::parse`].
fn page_fields(shared: &Shared, opened: &Opened) -> EditorPage {
    EditorPage {
        suite: shared.suite.name().to_owned(),
        node: shared.node.clone(),
        wopi_src: opened.wopi_src.clone(),
        access_token_len: opened.token.len(),
        access_token_ttl: opened.access_token_ttl.clone(),
        check_file_info: opened.check_file_info.clone(),
        base_file_name: opened.info_str("BaseFileName").to_owned(),
        ..EditorPage::default()
    }
}

/// coolwsd's `cool.html` (`FileServer.cpp` `preprocessFile`, `cool.html.m4` of 26.04) for
/// a page whose URLs are built on `authority` (`server_name`, else `Host`):
///
/// - `#initial-variables` with `data-host = "ws://<authority>"`, the service root, the
///   form's token (`Uri::encode`d) and TTL, and `data-frame-ancestors`, the CSP list
///   `Uri::encode`d (`%20127.0.0.1:%2A`), written as the real template writes them
///   (`data-x = "..."`);
/// - the script at the root-relative `<root>/browser/<hash>/bundle.js`
///   ([`COLLABORA_BUNDLE_JS`]);
/// - `Content-Security-Policy`: `script-src 'self'` (no inline script), `connect-src`
///   with the WebSocket and web server URLs, `frame-ancestors` (and `img-src`) =
///   `net.frame_ancestors` + the WebSocket host + the host of the page's `WOPISrc`, each as
///   `host:*`, in coolwsd's `name  value; ` form.
fn collabora_page(shared: &Shared, authority: &str, opened: &Opened) -> Response<Body> {
    let root = &shared.root;
    let web_server = format!("http://{authority}");
    let ws_host = format!("ws://{authority}");
    let configured = shared.options.frame_ancestors.clone().unwrap_or_default();
    let ws_hostname = url::Url::parse(&web_server)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_default();
    let mut ancestors = configured.clone();
    if ws_hostname != configured {
        let _ = write!(ancestors, " {ws_hostname}:*");
    }
    let wopi_hostname = url::Url::parse(&percent_decode(&opened.wopi_src))
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned));
    if let Some(host) = wopi_hostname
        && host != ws_hostname
        && host != configured
    {
        let _ = write!(ancestors, " {host}:*");
    }
    let mut csp = Csp::default();
    csp.add("default-src", "'none'");
    csp.add("frame-src", "'self' blob:");
    csp.add("connect-src", "'self'");
    csp.add("connect-src", "https://www.zotero.org");
    csp.add("connect-src", "https://api.zotero.org");
    csp.add("connect-src", &ws_host);
    csp.add("connect-src", &web_server);
    csp.add("script-src", "'self' 'unsafe-eval'");
    csp.add("style-src", "'self'");
    csp.add("font-src", "'self'");
    csp.add("object-src", "'self'");
    csp.add("media-src", "'self' blob:");
    csp.add("media-src", &web_server);
    csp.add("img-src", "'self' data: https://www.collaboraoffice.com");
    if !ancestors.is_empty() {
        csp.add("img-src", &ancestors);
        csp.add("frame-ancestors", &ancestors);
    }

    let ttl: u64 = opened.access_token_ttl.parse().unwrap_or(0);
    let ttl = if opened.token.is_empty() { 0 } else { ttl };
    let asset_url = format!("{root}/browser/{COLLABORA_VERSION_HASH}/bundle.js");
    let websocket_url = collabora_websocket_url(shared, &ws_host, opened);
    let page = EditorPage {
        asset_base: format!("{web_server}{root}"),
        asset_url: asset_url.clone(),
        websocket_url: websocket_url.clone(),
        ..page_fields(shared, opened)
    };
    let mut html = String::from(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>stand-in editor</title>\n",
    );
    html.push_str(&page.meta_tags());
    let _ = write!(
        html,
        "</head>\n<body>\n<div id=\"document-container\" data-websocket=\"{}\"></div>\n\
         <input type=\"hidden\" id=\"initial-variables\"\n",
        html_escape(&websocket_url)
    );
    let variables = [
        (
            "data-access-header",
            poco_encode(opened.field("access_header"), "'"),
        ),
        ("data-access-token", poco_encode(&opened.token, "'")),
        ("data-access-token-ttl", ttl.to_string()),
        ("data-frame-ancestors", poco_encode(&ancestors, "'")),
        (
            "data-hexify-url",
            shared.options.hexify_embedded_urls.to_string(),
        ),
        ("data-host", ws_host.clone()),
        (
            "data-no-auth-header",
            poco_encode(opened.field("no_auth_header"), "'"),
        ),
        (
            "data-post-message-origin-ext",
            poco_encode(opened.field("postmessage_origin"), "'"),
        ),
        ("data-service-root", root.clone()),
        (
            "data-standin-wopi-post-message-origin",
            opened.info_str("PostMessageOrigin").to_owned(),
        ),
        ("data-version-path", COLLABORA_VERSION_HASH.to_owned()),
    ];
    for (name, value) in variables {
        let _ = writeln!(html, "      {name} = \"{}\"", html_escape(&value));
    }
    let _ = write!(
        html,
        "      />\n<script src=\"{}\" defer></script>\n</body>\n</html>\n",
        html_escape(&asset_url)
    );
    let mut response = whole(StatusCode::OK, "text/html; charset=utf-8", html);
    let headers = response.headers_mut();
    // coolwsd marks its preprocessed page cacheable like any static file, token and all
    // (`FileServer.cpp` preprocessFile): a shared cache must know a page from an asset.
    for (name, value) in [
        ("cache-control", "max-age=11059200".to_owned()),
        ("etag", format!("\"{}\"", shared.version)),
        ("x-content-type-options", "nosniff".to_owned()),
        ("x-xss-protection", "1; mode=block".to_owned()),
        ("referrer-policy", "no-referrer".to_owned()),
        (header::CONTENT_SECURITY_POLICY.as_str(), csp.generate()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// The document WebSocket URL the Collabora page's script opens (see
/// [`COLLABORA_BUNDLE_JS`]), computed the same way from what the page got.
fn collabora_websocket_url(shared: &Shared, ws_host: &str, opened: &Opened) -> String {
    let doc_url = percent_decode(&opened.wopi_src);
    let doc_params = if opened.token.is_empty() {
        String::new()
    } else {
        let ttl: u64 = opened.access_token_ttl.parse().unwrap_or(0);
        format!(
            "access_token={}&access_token_ttl={ttl}&no_auth_header={}",
            encode_uri_component(&poco_encode(&opened.token, "'")),
            encode_uri_component(&poco_encode(opened.field("no_auth_header"), "'")),
        )
    };
    let doc_params_part = match (doc_params.is_empty(), doc_url.contains('?')) {
        (true, _) => String::new(),
        (false, true) => format!("&{doc_params}"),
        (false, false) => format!("?{doc_params}"),
    };
    let mut tail = format!(
        "{}/ws",
        encode_uri_component(&format!("{doc_url}{doc_params_part}"))
    );
    if !opened.wopi_src.is_empty() {
        let _ = write!(
            tail,
            "?WOPISrc={}&compat=",
            encode_uri_component(&opened.wopi_src)
        );
    }
    if shared.options.hexify_embedded_urls {
        tail = hex_encode_js(&tail);
    }
    format!("{ws_host}{}/cool/{tail}/ws", shared.root)
}

/// DocService's editor page (`editor-wopi.ejs` via `wopiClient.js getEditorHtml`) for
/// `POST /hosting/wopi/<type>/<mode>`: the API script by the **relative** address
/// `../../../web-apps/apps/api/documents/api.js?WOPISrc=<enc>` (the page's `apiQuery`),
/// then the page's script ([`ONLYOFFICE_PAGE_JS`]) with the WOPI `docId` as the key (the
/// last path segment of `WOPISrc`), the `WOPISrc`, and CheckFileInfo's
/// `BaseFileName`/`PostMessageOrigin`. No absolute URL: the page works at whatever
/// address the browser loaded it from. No CSP, as DocService sends none.
fn onlyoffice_page(
    shared: &Shared,
    docservice: &str,
    path: &str,
    lang: &str,
    opened: &Opened,
) -> Response<Body> {
    let encoded = encode_uri_component(&opened.wopi_src);
    // The WOPI docId is the last path segment of WOPISrc (wopiClient.js).
    let doc_id = opened
        .wopi_src
        .split('?')
        .next()
        .and_then(|path| path.rsplit('/').next())
        .unwrap_or_default()
        .to_owned();
    let (doc_type, mode) = path
        .trim_start_matches("/hosting/wopi/")
        .split_once('/')
        .unwrap_or(("word", "edit"));
    let asset_url = format!("../../../web-apps/apps/api/documents/api.js?WOPISrc={encoded}");
    let websocket_url = format!(
        "/{}/doc/{}/c/?WOPISrc={encoded}&EIO=4&transport=websocket",
        shared.version,
        encode_uri_component(&doc_id)
    );
    let page = EditorPage {
        asset_base: docservice.to_owned(),
        asset_url: asset_url.clone(),
        websocket_url: websocket_url.clone(),
        ..page_fields(shared, opened)
    };
    // As `getEditorHtml`: CheckFileInfo's answer minus `wopi.fileInfoBlockList`
    // (`FileUrl`); `{}` when it failed.
    let mut file_info = opened.info.clone().unwrap_or_else(|| serde_json::json!({}));
    if let Some(info) = file_info.as_object_mut() {
        info.remove("FileUrl");
    }
    let editor = serde_json::json!({
        "key": doc_id,
        "wopiSrc": opened.wopi_src,
        "documentType": doc_type,
        "mode": mode,
        "lang": lang,
        "fileInfo": file_info,
    });
    // Inside a <script>, `</` would end it.
    let editor = editor.to_string().replace("</", "<\\/");
    let mut html = String::from(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>ONLYOFFICE (stand-in)</title>\n",
    );
    html.push_str(&page.meta_tags());
    let _ = write!(
        html,
        "<style>html, body, .form, iframe {{ height: 100%; width: 100%; margin: 0; border: 0 }}</style>\n\
         </head>\n<body>\n<div id=\"document-container\" data-websocket=\"{}\"></div>\n\
         <div class=\"form\"><div id=\"iframeEditor\"></div></div>\n\
         <script src=\"{}\" type=\"text/javascript\"></script>\n\
         <script type=\"text/javascript\">\nwindow.__standinEditor = {editor};\n{ONLYOFFICE_PAGE_JS}</script>\n\
         </body>\n</html>\n",
        html_escape(&websocket_url),
        html_escape(&asset_url)
    );
    whole(StatusCode::OK, "text/html; charset=utf-8", html)
}

/// A CSP as coolwsd's `ContentSecurityPolicy` builds it: values appended per directive,
/// rendered `name  value value; ` (its generate() puts a space before every value).
#[derive(Default)]
struct Csp(Vec<(&'static str, String)>);

impl Csp {
    /// Appends `value` (trimmed) to `directive`.
    fn add(&mut self, directive: &'static str, value: &str) {
        let value = value.trim();
        if value.is_empty() {
            return;
        }
        match self.0.iter_mut().find(|(name, _)| *name == directive) {
            Some((_, values)) => {
                values.push(' ');
                values.push_str(value);
            }
            None => self.0.push((directive, format!(" {value}"))),
        }
    }

    /// The header value.
    fn generate(&self) -> String {
        self.0
            .iter()
            .fold(String::new(), |mut out, (name, values)| {
                let _ = write!(out, "{name} {values}; ");
                out
            })
    }
}

/// Poco's `URI::encode(raw, reserved)`, as coolwsd escapes values it writes into
/// `cool.html`: unreserved characters stay, `%<>{}|\"^`!*'()$,[]`, controls, spaces,
/// non-ASCII and `reserved` become `%XX`; everything else (`/`, `:`, `=`, `&`, ...) stays.
fn poco_encode(raw: &str, reserved: &str) -> String {
    const ILLEGAL: &str = "%<>{}|\\\"^`!*'()$,[]";
    raw.bytes().fold(String::new(), |mut out, byte| {
        let c = char::from(byte);
        let escape = !(byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte))
            && (byte <= 0x20 || byte >= 0x7f || ILLEGAL.contains(c) || reserved.contains(c));
        if escape {
            let _ = write!(out, "%{byte:02X}");
        } else {
            out.push(c);
        }
        out
    })
}

/// `decodeURIComponent`, lossy (malformed escapes stay as they are).
fn percent_decode(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
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
    /// [`CallOptions::cool_timestamp`]), OnlyOffice `X-WOPI-Editors` and the same flags and
    /// timestamp as `X-LOOL-WOPI-*`.
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
    /// `POST`, `X-WOPI-Override: RENAME_FILE`, `X-WOPI-RequestedName` (UTF-7), no body
    /// (ONLYOFFICE's `renameFile` sends none).
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
    /// PutFile's timestamp (Collabora's `X-COOL-WOPI-Timestamp`, ONLYOFFICE's
    /// `X-LOOL-WOPI-Timestamp`): this value instead of the last `LastModifiedTime` seen;
    /// `Some("")` leaves the header out.
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
    /// `X-COOL-WOPI-Timestamp`, ONLYOFFICE's `X-LOOL-WOPI-Timestamp`.
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
                    // wopiClient.js putFile: Collabora's flags and timestamp under their
                    // older X-LOOL- names, the time of the last CheckFileInfo or save.
                    let editors = known.user_id.unwrap_or_else(|| "standin-user".to_owned());
                    add("X-WOPI-Editors", editors);
                    add("X-LOOL-WOPI-IsModifiedByUser", "true".to_owned());
                    add("X-LOOL-WOPI-IsAutosave", "false".to_owned());
                    add("X-LOOL-WOPI-IsExitSave", "false".to_owned());
                    let timestamp = options.cool_timestamp.clone().or(known.last_modified);
                    if let Some(timestamp) = timestamp.filter(|t| !t.is_empty()) {
                        add("X-LOOL-WOPI-Timestamp", timestamp);
                    }
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

/// A static file as the real editors serve one, whose first line names the node and the
/// version it really serves. Most are that line alone; the files the stand-in pages run
/// are real: Collabora's `bundle.js` ([`COLLABORA_BUNDLE_JS`]), OnlyOffice's
/// `web-apps/apps/api/documents/api.js` ([`ONLYOFFICE_API_JS`]) and
/// `web-apps/apps/<editor>/main/index.html` ([`ONLYOFFICE_FRAME_HTML`]).
///
/// Caching headers as the editors send them: coolwsd `Cache-Control: max-age=11059200`
/// (128 days) and `ETag: "<version hash>"`, answering a matching `If-None-Match` with 304
/// (`wsd/FileServer.cpp`); DocService's nginx `expires 365d` on versioned paths
/// (`max-age=31536000`) and its own `ETag`. [`StandInOptions::static_header`] adds
/// headers to one file.
fn static_file(shared: &Shared, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let content_type = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let origin = format!(
        "stand-in {} static file {path} from {} version {}",
        shared.suite.name(),
        shared.node,
        shared.version
    );
    let (content_type, text) = match (shared.suite, static_asset(shared.suite, path)) {
        (Suite::Collabora, Some(StaticAsset::CollaboraBundle)) => (
            "application/javascript",
            format!("/* {origin} */\n{COLLABORA_BUNDLE_JS}"),
        ),
        (Suite::OnlyOffice, Some(StaticAsset::OnlyOfficeApi)) => (
            "application/javascript",
            format!(
                "/* {origin} */\n{}",
                ONLYOFFICE_API_JS.replace("{{VERSION}}", shared.version)
            ),
        ),
        (Suite::OnlyOffice, Some(StaticAsset::OnlyOfficeFrame)) => (
            "text/html; charset=utf-8",
            ONLYOFFICE_FRAME_HTML.replacen("<head>", &format!("<head>\n<!-- {origin} -->"), 1),
        ),
        _ => (content_type, format!("/* {origin} */\n")),
    };
    let (max_age, etag) = match shared.suite {
        Suite::Collabora => ("max-age=11059200", format!("\"{}\"", shared.version)),
        Suite::OnlyOffice => (
            "max-age=31536000",
            format!("\"{:x}-{:x}\"", text.len(), shared.version.len()),
        ),
    };
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag.as_bytes() == etag.as_bytes());
    let mut response = if not_modified {
        let mut response = whole(StatusCode::NOT_MODIFIED, content_type, Bytes::new());
        response.headers_mut().remove(header::CONTENT_TYPE);
        response
    } else {
        whole(StatusCode::OK, content_type, text)
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(max_age));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    for (file, name, value) in &shared.options.static_headers {
        if path.ends_with(file.as_str()) {
            headers.insert(name.clone(), value.clone());
        }
    }
    response
}

/// The static files the stand-in pages run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StaticAsset {
    /// Collabora `/browser/<hash>/bundle.js`.
    CollaboraBundle,
    /// OnlyOffice `[/<version>]/web-apps/apps/api/documents/api.js`.
    OnlyOfficeApi,
    /// OnlyOffice `[/<version>]/web-apps/apps/<editor>/main/index.html`.
    OnlyOfficeFrame,
}

/// Which of [`StaticAsset`] `path` is, if any.
fn static_asset(suite: Suite, path: &str) -> Option<StaticAsset> {
    match suite {
        Suite::Collabora => path
            .strip_prefix("/browser/")
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(_, file)| file == "bundle.js")
            .then_some(StaticAsset::CollaboraBundle),
        Suite::OnlyOffice => {
            let (_, rest) = split_onlyoffice_version(path);
            let apps = rest.strip_prefix("/web-apps/apps/")?;
            if apps == "api/documents/api.js" {
                return Some(StaticAsset::OnlyOfficeApi);
            }
            let (editor, file) = apps.split_once('/')?;
            (file == "main/index.html" && ONLYOFFICE_EDITORS.iter().any(|e| e.web_app == editor))
                .then_some(StaticAsset::OnlyOfficeFrame)
        }
    }
}

/// OnlyOffice's `plugins.json` and `themes.json`, as DocService serves them (no plugins,
/// no extra themes).
fn editor_json(path: &str) -> Response<Body> {
    let body = if path.ends_with("/plugins.json") {
        r#"{"url":"","pluginsData":[],"autostart":[]}"#
    } else {
        r#"{"themes":[]}"#
    };
    whole(StatusCode::OK, "application/json; charset=utf-8", body)
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

/// Reads the whole upload, counting (nothing kept), then answers `<n> bytes`; 400 when
/// the upload breaks off.
async fn count_upload(req: Request<Incoming>) -> Response<Body> {
    let mut body = req.into_body();
    let mut bytes = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => bytes += frame.data_ref().map_or(0, Bytes::len),
            Err(err) => {
                return whole(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("upload broke off: {err}\n"),
                );
            }
        }
    }
    whole(StatusCode::OK, "text/plain", format!("{bytes} bytes\n"))
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
    if shared.suite == Suite::Collabora && !collabora_origin_allowed(shared, &req) {
        let origin = req.headers().get(header::ORIGIN);
        let text = format!("WebSocket upgrade refused: Origin {origin:?} is not this server\n");
        return whole(StatusCode::FORBIDDEN, "text/plain", text);
    }
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

/// coolwsd's `allowedOrigin` (26.04) for a document WebSocket: the upgrade must carry an
/// `Origin`, and it must be the web server URL (`http://` + `server_name`, else `Host`), or
/// `http(s)://` + `Host`, or `http(s)://` + `server_name`; else 403. Browsers always send
/// `Origin`: the page's, i.e. the origin the browser loaded the editor page from.
fn collabora_origin_allowed(shared: &Shared, req: &Request<Incoming>) -> bool {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
        .and_then(|origin| url::Url::parse(origin).ok())
    else {
        return false;
    };
    let host = request_host(shared, req);
    let mut allowed = vec![
        format!("http://{}", collabora_authority(shared, req)),
        format!("https://{host}"),
        format!("http://{host}"),
    ];
    if let Some(name) = &shared.options.server_name {
        allowed.push(format!("https://{name}"));
        allowed.push(format!("http://{name}"));
    }
    allowed
        .iter()
        .filter_map(|candidate| url::Url::parse(candidate).ok())
        .any(|candidate| candidate.origin() == origin.origin())
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
