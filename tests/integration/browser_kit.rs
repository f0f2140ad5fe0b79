//! The real-browser kit ([`crate::support::browser`], [`crate::support::nextcloud_page`])
//! checked against headless Chromium without officeswitch: a stand-in editor page on
//! `office.localhost` framed by the stand-in Nextcloud page on `nextcloud.localhost`.
//!
//! Each test shows that the kit sees what later tests will rely on: a frame that renders
//! and talks postMessage, a relative script, a WebSocket from the frame; a CSP
//! `frame-ancestors` refusal; a 404 of a frame subresource. Without Chromium each test
//! prints `skipped: no chromium (...)` and passes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::support::browser::{Browser, Page};
use crate::support::nextcloud_page::{NextcloudPage, OpenSpec, richdocuments_form_url};
use crate::support::serve::accept_until;

/// How long any one wait in these tests may take.
const WAIT: Duration = Duration::from_secs(20);

/// The editor page's path, shaped like Collabora's `urlsrc` (`/browser/<hash>/cool.html?`).
const EDITOR_PATH: &str = "/browser/0123abcd/cool.html";

/// The WOPISrc the stand-in Nextcloud page puts in the form action.
const WOPI_SRC: &str = "http://nextcloud.localhost/index.php/apps/richdocuments/wopi/files/42_oc1";

/// The editor page's script, loaded by a relative URL (`app.js` next to `cool.html`):
/// like Collabora's page it announces `Frame_Ready`, opens a WebSocket on its own host
/// with the `WOPISrc` of its address, and announces `Document_Loaded` when the socket
/// echoes the load command; it records what the host page posts in `window.__fromHost`.
const EDITOR_SCRIPT: &str = r#"'use strict';
window.__fromHost = [];
window.addEventListener('message', (e) => window.__fromHost.push({ origin: e.origin, data: e.data }));
const post = (id, values) => window.parent.postMessage(
  JSON.stringify({ MessageId: id, SendTime: Date.now(), Values: values }), '*');
post('App_LoadingStatus', { Status: 'Frame_Ready' });
const wopiSrc = new URLSearchParams(location.search).get('WOPISrc');
const ws = new WebSocket('ws://' + location.host + '/cool/' + encodeURIComponent(wopiSrc) + '/ws?WOPISrc=' + encodeURIComponent(wopiSrc));
ws.onopen = () => ws.send('load ' + wopiSrc);
ws.onmessage = (e) => {
  if (String(e.data).startsWith('load ')) {
    post('App_LoadingStatus', { Status: 'Document_Loaded', DocumentLoadedTime: Date.now() });
  }
};
"#;

/// A stand-in editor: `POST` [`EDITOR_PATH`] answers a page with CSP
/// `frame-ancestors <frame_ancestors>` that loads `app.js` and an image that does not
/// exist (`missing.png`, 404); `/cool/…/ws` is a WebSocket echo.
struct EditorPage {
    /// The bound address (127.0.0.1).
    addr: SocketAddr,
    /// Stops the accept loop on drop.
    _shutdown: watch::Sender<bool>,
}

impl EditorPage {
    /// Starts the editor with `frame_ancestors` as its CSP `frame-ancestors` source list.
    async fn start(frame_ancestors: &str) -> EditorPage {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (shutdown, stop) = watch::channel(false);
        let csp: Arc<str> = Arc::from(format!("frame-ancestors {frame_ancestors}"));
        tokio::spawn(accept_until(
            listener,
            stop,
            "stand-in editor page",
            move |stream| serve(stream, Arc::clone(&csp)),
        ));
        EditorPage {
            addr,
            _shutdown: shutdown,
        }
    }

    /// `http://office.localhost:PORT`.
    fn origin(&self) -> String {
        format!("http://office.localhost:{}", self.addr.port())
    }

    /// The `urlsrc` discovery would give for this editor.
    fn urlsrc(&self) -> String {
        format!("{}{EDITOR_PATH}?", self.origin())
    }
}

/// Serves one connection, upgrades (WebSocket) included.
async fn serve(stream: TcpStream, csp: Arc<str>) {
    let service = service_fn(move |req| {
        let csp = Arc::clone(&csp);
        async move { Ok::<_, Infallible>(handle(req, &csp).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = pin!(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
    let _ended = connection.await;
}

/// A response with a body and its content type.
fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("response")
}

/// Routes one request (see [`EditorPage`]).
async fn handle(mut req: Request<Incoming>, csp: &str) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if path == EDITOR_PATH && req.method() == Method::POST {
        let form = req.into_body().collect().await.map(|b| b.to_bytes());
        let form = String::from_utf8_lossy(&form.unwrap_or_default()).into_owned();
        // The page shows the posted fields so a test can check the form arrived.
        let fields = serde_json::to_string(&form)
            .expect("json")
            .replace("</", "<\\/");
        let html = format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>stand-in editor</title>\
             </head><body><p id=\"doc\">document</p><img src=\"missing.png\" alt=\"\">\
             <script>window.__form = {fields};</script><script src=\"app.js\"></script>\
             </body></html>"
        );
        let mut response = respond(StatusCode::OK, "text/html; charset=utf-8", html);
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(csp).expect("csp header"),
        );
        return response;
    }
    if path == "/browser/0123abcd/app.js" {
        return respond(StatusCode::OK, "text/javascript", EDITOR_SCRIPT);
    }
    if path.starts_with("/cool/") && path.ends_with("/ws") {
        return websocket(&mut req);
    }
    respond(StatusCode::NOT_FOUND, "text/plain", "not found\n")
}

/// Accepts a WebSocket upgrade and echoes text messages.
fn websocket(req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return respond(StatusCode::BAD_REQUEST, "text/plain", "not a WebSocket\n");
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(_) = message
                && socket.send(message).await.is_err()
            {
                break;
            }
        }
    });
    let mut response = respond(StatusCode::SWITCHING_PROTOCOLS, "text/plain", "");
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("accept header"),
    );
    response
}

/// Starts the two stand-ins and opens the Nextcloud page for one user; `None` (after the
/// `skipped:` line) without Chromium.
async fn open(frame_ancestors: impl FnOnce(&NextcloudPage) -> String) -> Option<Setup> {
    let browser = match Browser::launch().await {
        Ok(browser) => browser,
        Err(_skip) => return None,
    };
    let nextcloud = NextcloudPage::start().await;
    let editor = EditorPage::start(&frame_ancestors(&nextcloud)).await;
    let spec = OpenSpec {
        form_url: richdocuments_form_url(&editor.urlsrc(), WOPI_SRC, "en"),
        access_token: "token-alice".to_string(),
        ttl: 4_102_444_800_000,
    };
    let user = browser.user("alice").await.expect("browser context");
    let page = user
        .open(&nextcloud.page_url(&spec))
        .await
        .expect("open page");
    Some(Setup {
        page,
        nextcloud,
        editor,
        _user: user,
        _browser: browser,
    })
}

/// What [`open`] started; kept alive for the test's length.
struct Setup {
    page: Page,
    nextcloud: NextcloudPage,
    editor: EditorPage,
    _user: crate::support::browser::User,
    _browser: Browser,
}

/// The messages the Nextcloud page recorded whose `MessageId` is `id`.
async fn messages_with_id(page: &Page, id: &str) -> Vec<Value> {
    let messages = page.eval("window.__messages").await.expect("messages");
    messages
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["data"]["MessageId"] == id)
        .cloned()
        .collect()
}

/// (a) The frame renders when `frame-ancestors` names the Nextcloud origin: its script
/// (a relative URL) runs, posts `Frame_Ready` and, after its WebSocket echoes,
/// `Document_Loaded` to the Nextcloud page, which answers `Host_PostmessageReady`.
#[tokio::test]
async fn frame_renders_posts_messages_and_opens_a_websocket() {
    let Some(setup) = open(NextcloudPage::origin).await else {
        return;
    };
    let page = &setup.page;
    let loaded = page
        .wait_for(
            "window.__messages.some(m => m.data && m.data.Values \
             && m.data.Values.Status === 'Document_Loaded')",
            WAIT,
        )
        .await;
    assert!(loaded.is_ok(), "{loaded:?}\n{}", page.report());

    let statuses = messages_with_id(page, "App_LoadingStatus").await;
    let editor_origin = setup.editor.origin();
    for message in &statuses {
        assert_eq!(
            message["origin"],
            editor_origin.as_str(),
            "{}",
            page.report()
        );
        assert_eq!(message["fromFrame"], true, "{}", page.report());
    }
    let order: Vec<&str> = statuses
        .iter()
        .filter_map(|m| m["data"]["Values"]["Status"].as_str())
        .collect();
    assert_eq!(
        order,
        ["Frame_Ready", "Document_Loaded"],
        "{}",
        page.report()
    );

    // The form arrived with richdocuments' fields, and the action carried WOPISrc.
    let form = page
        .eval_in_frame(&editor_origin, "window.__form")
        .await
        .expect("eval in frame");
    let form = form.as_str().unwrap_or_default();
    assert!(form.contains("access_token=token-alice"), "{form}");
    assert!(form.contains("access_token_ttl=4102444800000"), "{form}");
    let frame_url = page
        .eval_in_frame(&editor_origin, "location.href")
        .await
        .expect("frame url");
    let expected = richdocuments_form_url(&setup.editor.urlsrc(), WOPI_SRC, "en");
    assert_eq!(frame_url, expected.as_str());

    // The host's answers reached the frame (what the editor waits for).
    let from_host = page
        .wait_for_in_frame(
            &editor_origin,
            "window.__fromHost.some(m => m.data.includes('Host_PostmessageReady'))",
            WAIT,
        )
        .await;
    assert!(from_host.is_ok(), "{from_host:?}\n{}", page.report());
    let origin = page
        .eval_in_frame(&editor_origin, "window.__fromHost[0].origin")
        .await
        .expect("host origin");
    assert_eq!(origin, setup.nextcloud.origin().as_str());

    // The relative script resolved next to cool.html, and the WebSocket was seen.
    let script = format!("{editor_origin}/browser/0123abcd/app.js");
    let requests = page.requests();
    let app = requests.iter().find(|r| r.url == script);
    assert_eq!(
        app.and_then(|r| r.status),
        Some(200),
        "app.js\n{}",
        page.report()
    );
    assert!(
        app.is_some_and(|r| r
            .frame_url
            .as_deref()
            .is_some_and(|f| f.starts_with(&editor_origin))),
        "app.js is not attributed to the editor frame\n{}",
        page.report()
    );
    let sockets = page.websockets();
    let socket = sockets.iter().find(|ws| {
        ws.url.starts_with(&format!(
            "ws://office.localhost:{}/cool/",
            setup.editor.addr.port()
        ))
    });
    assert!(
        socket.is_some_and(|ws| ws.handshake_status == Some(101) && ws.frames_received >= 1),
        "no echoing WebSocket seen\n{}",
        page.report()
    );
    // No CSP complaint.
    assert!(
        !page
            .console()
            .iter()
            .any(|line| line.contains("frame-ancestors")),
        "{}",
        page.report()
    );
    println!("{}", page.report());
}

/// (b) With `frame-ancestors` naming another origin, Chromium refuses to frame the
/// editor; the kit must show the refusal (this test fails if it cannot see it).
#[tokio::test]
async fn csp_frame_ancestors_refusal_is_reported() {
    let Some(setup) = open(|_| "http://elsewhere.localhost:1".to_string()).await else {
        return;
    };
    let page = &setup.page;
    let seen = page
        .wait_observed("a frame-ancestors refusal", WAIT, |page| {
            // Chromium 156: "Framing '<url>' violates the following Content Security
            // Policy directive: "frame-ancestors ...". The request has been blocked.";
            // older versions: "Refused to frame '<url>' because an ancestor violates ...".
            page.console().iter().any(|line| {
                (line.contains("Framing") || line.contains("Refused to frame"))
                    && line.contains("frame-ancestors")
            })
        })
        .await;
    assert!(seen.is_ok(), "{seen:?}\n{}", page.report());
    let report = page.report();
    assert!(
        report.contains("frame-ancestors http://elsewhere.localhost:1"),
        "{report}"
    );
    // The frame's document request is reported failed too.
    let editor = format!("{}{EDITOR_PATH}", setup.editor.origin());
    assert!(
        page.failed_requests()
            .iter()
            .any(|r| r.url.starts_with(&editor) && r.error.is_some()),
        "{report}"
    );
    // The frame never ran its script, so no message reached the Nextcloud page.
    assert!(
        messages_with_id(page, "App_LoadingStatus").await.is_empty(),
        "{report}"
    );
    println!("{report}");
}

/// (c) A 404 of a frame's subresource shows in `failed_requests` and in the report.
#[tokio::test]
async fn frame_subresource_404_is_reported() {
    let Some(setup) = open(NextcloudPage::origin).await else {
        return;
    };
    let page = &setup.page;
    let missing = format!("{}/browser/0123abcd/missing.png", setup.editor.origin());
    let seen = page
        .wait_observed("the 404 of missing.png", WAIT, |page| {
            page.failed_requests()
                .iter()
                .any(|r| r.url == missing && r.status == Some(404))
        })
        .await;
    assert!(seen.is_ok(), "{seen:?}\n{}", page.report());
    let report = page.report();
    assert!(
        report.contains("404") && report.contains(&missing),
        "{report}"
    );
    println!("{report}");
}
