//! A stand-in for Nextcloud's *frontend*: the page richdocuments renders around the
//! editor iframe, on its own origin, for the real-browser tests ([`super::browser`]).
//!
//! What the page does is what richdocuments' `src/view/Office.vue` and
//! `src/services/postMessage.tsx` do (see `../shared/notes/richdocuments.md` §3):
//! a hidden `<form method="post" target="collaboraframe_…">` whose action is the editor
//! URL ([`richdocuments_form_url`]) with the fields `access_token`, `access_token_ttl`,
//! `ui_defaults`, `css_variables`, `theme`, `buy_product`; it is submitted on load into a
//! named iframe. The page listens to `message` events and
//!
//! - records every message in `window.__messages` as
//!   `{origin, fromFrame, data, raw}` (`data`: the parsed JSON, `raw`: the string);
//! - answers `App_LoadingStatus` `Frame_Ready` with `Host_PostmessageReady` (richdocuments'
//!   `document.js` and Collabora's WOPI postMessage documentation), and `Document_Loaded`
//!   with `Host_PostmessageReady` + `Insert_Button` (`Office.vue` `documentReady()`);
//! - exposes `window.__post(msgId, values)`, which posts
//!   `JSON.stringify({MessageId, SendTime, Values})` to the iframe with target origin `*`
//!   exactly as `sendWOPIPostMessage` does; everything sent is kept in `window.__sent`.
//!
//! [`NextcloudPage::direct_editing_url`] serves the page of richdocuments' direct editing
//! (`src/document.js`), which Nextcloud's mobile apps load into a WebView, instead: the app
//! keeps its WebView hidden until the page calls its JavaScript interface
//! (`window.RichDocumentsMobileInterface`, Android's `EditorWebView.hideLoading()`) with
//! `documentLoaded`, which `document.js` does only on `App_LoadingStatus` `Frame_Ready`
//! (`callMobileMessage`); `UI_Share` becomes `share`. The stand-in interface records every
//! call in `window.__mobile` and makes the page visible on `documentLoaded`.
//!
//! The server binds `127.0.0.1` but hands out `http://nextcloud.localhost:PORT/` URLs:
//! Chromium resolves `*.localhost` to loopback, so the Nextcloud origin differs from the
//! editor's (tests use `http://office.localhost:PORT`) as it does in production, which is
//! what CSP `frame-ancestors` and postMessage origins are about.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::editor::encode_uri_component;
use super::serve::accept_until;

/// The host name the page is addressed by (resolved to loopback by Chromium).
pub const NEXTCLOUD_HOST: &str = "nextcloud.localhost";

/// The iframe's name and id, the form's `target` (richdocuments: `collaboraframe_<random>`).
pub const FRAME_NAME: &str = "collaboraframe_standin";

/// The path the page is served under, followed by the spec's number.
const OPEN_PATH: &str = "/index.php/apps/richdocuments/open/";

/// The path of the direct-editing page, followed by the spec's number.
const DIRECT_PATH: &str = "/index.php/apps/richdocuments/direct/";

/// Which of richdocuments' two pages around the editor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// The Files viewer (`Office.vue`).
    Viewer,
    /// Direct editing in a mobile app's WebView (`document.js`).
    DirectEditing,
}

/// The `Insert_Button` icon (richdocuments: `imagePath('richdocuments', 'launch.svg')`).
const LAUNCH_ICON_PATH: &str = "/apps/richdocuments/img/launch.svg";

/// What one page opens: the form action and the two token fields richdocuments posts.
#[derive(Clone, Debug)]
pub struct OpenSpec {
    /// The form action: the editor's `urlsrc` with `WOPISrc=…&lang=…` appended, built
    /// the way richdocuments builds it ([`richdocuments_form_url`]).
    pub form_url: String,
    /// The `access_token` form field.
    pub access_token: String,
    /// The `access_token_ttl` form field, posted as given: the token's expiry (Unix
    /// seconds in richdocuments, see `richdocuments.md` §3; WOPI says milliseconds).
    pub ttl: u64,
}

/// `getWopiUrl()` of richdocuments' `src/helpers/url.js` for a logged-in user with the
/// versions app: `urlsrc + 'WOPISrc=' + encodeURIComponent(wopiSrc) + '&lang=' + lang +
/// '&closebutton=1&revisionhistory=1'`. `urlsrc` is used as discovery gives it (ending
/// in `?` or `&`), as richdocuments does.
pub fn richdocuments_form_url(urlsrc: &str, wopi_src: &str, lang: &str) -> String {
    format!(
        "{urlsrc}WOPISrc={}&lang={lang}&closebutton=1&revisionhistory=1",
        encode_uri_component(wopi_src)
    )
}

/// A running stand-in Nextcloud frontend. Dropping it stops the server.
pub struct NextcloudPage {
    /// The bound address (127.0.0.1).
    addr: SocketAddr,
    /// The specs handed out by [`NextcloudPage::page_url`], by number.
    specs: Arc<Mutex<HashMap<u64, (OpenSpec, Variant)>>>,
    /// `true` stops the accept loop.
    shutdown: watch::Sender<bool>,
}

impl NextcloudPage {
    /// Starts the server on `127.0.0.1:0`.
    pub async fn start() -> NextcloudPage {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("stand-in Nextcloud page: cannot bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("stand-in Nextcloud page: address");
        let specs = Arc::new(Mutex::new(HashMap::new()));
        let (shutdown, stop) = watch::channel(false);
        let served = Arc::clone(&specs);
        tokio::spawn(accept_until(
            listener,
            stop,
            "stand-in Nextcloud page",
            move |stream| serve_connection(stream, Arc::clone(&served)),
        ));
        NextcloudPage {
            addr,
            specs,
            shutdown,
        }
    }

    /// `http://nextcloud.localhost:PORT`: the origin the page runs on, what an editor's
    /// CSP `frame-ancestors` must name and what `PostMessageOrigin` would be.
    pub fn origin(&self) -> String {
        format!("http://{NEXTCLOUD_HOST}:{}", self.addr.port())
    }

    /// The URL of a page that opens `spec`. The spec stays on the server (the token is
    /// not put in the page's URL, as in richdocuments where it comes from an XHR).
    pub fn page_url(&self, spec: &OpenSpec) -> String {
        self.register(spec, Variant::Viewer, OPEN_PATH)
    }

    /// The URL of a direct-editing page (a mobile app's WebView) that opens `spec`.
    pub fn direct_editing_url(&self, spec: &OpenSpec) -> String {
        self.register(spec, Variant::DirectEditing, DIRECT_PATH)
    }

    fn register(&self, spec: &OpenSpec, variant: Variant, path: &str) -> String {
        let mut specs = self.specs.lock().unwrap_or_else(PoisonError::into_inner);
        let id = specs.len() as u64 + 1;
        specs.insert(id, (spec.clone(), variant));
        format!("{}{path}{id}", self.origin())
    }
}

impl Drop for NextcloudPage {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// Serves one connection (HTTP/1.1 or h2c).
async fn serve_connection(stream: TcpStream, specs: Arc<Mutex<HashMap<u64, (OpenSpec, Variant)>>>) {
    let service = service_fn(move |req: Request<Incoming>| {
        let specs = Arc::clone(&specs);
        async move { Ok::<_, Infallible>(handle(&specs, &req)) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
    if let Err(err) = connection.await {
        tracing::debug!(%err, "stand-in Nextcloud page: connection ended with an error");
    }
}

/// `GET /index.php/apps/richdocuments/open/<n>` (or `direct/<n>`): the page; the `Insert_Button` icon
/// (editors load it from Nextcloud); `/favicon.ico`: 204 (so the browser's automatic
/// request is no noise in reports); anything else 404.
fn handle(
    specs: &Mutex<HashMap<u64, (OpenSpec, Variant)>>,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/favicon.ico" {
        return respond(StatusCode::NO_CONTENT, "text/plain", String::new());
    }
    if path == LAUNCH_ICON_PATH {
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"/>"#;
        return respond(StatusCode::OK, "image/svg+xml", svg.to_string());
    }
    let spec = path
        .strip_prefix(OPEN_PATH)
        .or_else(|| path.strip_prefix(DIRECT_PATH))
        .and_then(|n| n.parse::<u64>().ok())
        .and_then(|n| {
            specs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&n)
                .cloned()
        });
    match spec {
        Some((spec, variant)) => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            page(&spec, variant),
        ),
        None => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    }
}

/// A response with `content-type` and no caching.
fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

/// Escapes text for an HTML attribute value.
fn attr(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What the direct-editing page adds: the app's JavaScript interface (recording, and
/// showing the WebView on `documentLoaded`) and `document.js`'s mobile calls.
const DIRECT_EDITING_JS: &str = r#"
window.__mobile = [];
document.documentElement.style.visibility = 'hidden';
const mobileCall = (name) => function () {
  window.__mobile.push(name);
  if (name === 'documentLoaded') document.documentElement.style.visibility = 'visible';
};
window.RichDocumentsMobileInterface = {};
['documentLoaded', 'loaded', 'close', 'share', 'fileRename', 'insertGraphic', 'downloadAs']
  .forEach((name) => { window.RichDocumentsMobileInterface[name] = mobileCall(name); });
window.addEventListener('message', (event) => {
  let data = null;
  try { data = JSON.parse(event.data); } catch (e) { return; }
  if (!data) return;
  if (data.MessageId === 'App_LoadingStatus' && data.Values && data.Values.Status === 'Frame_Ready') {
    window.RichDocumentsMobileInterface.documentLoaded();
    window.RichDocumentsMobileInterface.loaded();
  } else if (data.MessageId === 'UI_Share') {
    window.RichDocumentsMobileInterface.share();
  } else if (data.MessageId === 'UI_Close') {
    window.RichDocumentsMobileInterface.close();
  }
}, false);
"#;

/// The page: the form and iframe of `Office.vue`, the message handling of
/// `PostMessageService` plus the recording the tests read; for direct editing also
/// [`DIRECT_EDITING_JS`].
fn page(spec: &OpenSpec, variant: Variant) -> String {
    let mobile = match variant {
        Variant::Viewer => "",
        Variant::DirectEditing => DIRECT_EDITING_JS,
    };
    let action = attr(&spec.form_url);
    let token = attr(&spec.access_token);
    let ttl = spec.ttl;
    let frame = FRAME_NAME;
    // The form fields richdocuments sends besides the token; values as a default
    // Nextcloud theme would give (they only need to be present).
    let ui_defaults = attr("UIMode=notebookbar;TextSidebar=false;PresentationStatusbar=false;");
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>stand-in Nextcloud (richdocuments)</title>
<style>body {{ margin: 0 }} iframe {{ width: 100%; height: 95vh; border: 0 }}</style>
</head>
<body>
<form id="richdocuments-form" target="{frame}" action="{action}" method="post">
<input name="access_token" value="{token}" type="hidden">
<input name="access_token_ttl" value="{ttl}" type="hidden">
<input name="ui_defaults" value="{ui_defaults}" type="hidden">
<input name="css_variables" value="" type="hidden">
<input name="theme" value="nextcloud" type="hidden">
<input name="buy_product" value="https://nextcloud.com/pricing" type="hidden">
</form>
<iframe id="{frame}" name="{frame}" data-cy="coolframe" scrolling="no" allowfullscreen></iframe>
<script>
'use strict';
{mobile}
window.__messages = [];
window.__sent = [];
const frameWindow = () => document.getElementById('{frame}').contentWindow;
// sendWOPIPostMessage: a JSON string, target origin '*'.
window.__post = (msgId, values) => {{
  const msg = {{ MessageId: msgId, SendTime: Date.now(), Values: values || {{}} }};
  window.__sent.push(msg);
  frameWindow().postMessage(JSON.stringify(msg), '*');
}};
window.addEventListener('message', (event) => {{
  const raw = typeof event.data === 'string' ? event.data : null;
  let data = event.data;
  if (raw !== null) {{
    try {{ data = JSON.parse(raw); }} catch (e) {{ data = null; }}
  }}
  window.__messages.push({{ origin: event.origin, fromFrame: event.source === frameWindow(), data, raw }});
  if (!data || data.MessageId !== 'App_LoadingStatus' || !data.Values) {{
    return;
  }}
  if (data.Values.Status === 'Frame_Ready') {{
    window.__post('Host_PostmessageReady', {{}});
  }} else if (data.Values.Status === 'Document_Loaded') {{
    window.__post('Host_PostmessageReady', {{}});
    window.__post('Insert_Button', {{
      id: 'Open_Local_Editor',
      imgurl: window.location.protocol + '//' + window.location.host + '{LAUNCH_ICON_PATH}',
      mobile: false,
      label: 'Open in local editor',
      hint: 'Open in local editor',
      insertBefore: 'print',
    }});
  }}
}}, false);
window.addEventListener('load', () => document.getElementById('richdocuments-form').submit());
</script>
</body>
</html>
"#
    )
}
