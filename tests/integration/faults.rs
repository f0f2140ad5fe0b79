//! Faults in the middle of editing (issue 6): an editor node dying under a live document
//! WebSocket, Nextcloud restarting while a large save is streaming through officeswitch, and
//! a save arriving while Nextcloud is down (held until it is back, issue 20).
//! Each test drives the whole flow a browser and an editor drive (open form, editor page,
//! WOPI calls, document WebSocket) against real loopback servers, breaks one of them
//! mid-way, and checks that nothing hangs, nothing is silently lost, and the document can be
//! edited again afterwards. Every wait is bounded.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use http::{Method, StatusCode};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::client::{self, encode, post_form, websocket as websocket_from};
use crate::support::editor::{
    EditorSession, PutBody, StandInEditor, StandInOptions, Suite, WopiCall, assert_ok,
    pattern_sha256,
};
use crate::support::nextcloud::{PutFault, StandInNextcloud, WopiOperation};
use crate::support::officeswitch::{OfficeSwitch, free_port};
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;

const ODT: &str = "application/vnd.oasis.opendocument.text";

/// Health checks fast enough for a test: a node is down after 2 failed checks 1 s apart.
const FAST_HEALTH: &str = "[health]\ninterval_secs = 1\ntimeout_secs = 1\nfall = 2\nrise = 1";

/// How long a client may wait for its WebSocket to end once its node is gone.
const WEBSOCKET_END_LIMIT: Duration = Duration::from_secs(3);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `file_id` (granted to `token`) through officeswitch as richdocuments' frontend
/// does, on one of `editors`; returns the node that rendered the editor page and the
/// session it was given.
async fn open(
    os: &OfficeSwitch,
    nc: &StandInNextcloud,
    editors: &[StandInEditor],
    file_id: &str,
    token: &str,
) -> (String, EditorSession) {
    let (status, xml) = os.get("/hosting/discovery").await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let view = RichdocumentsView::parse(&xml);
    let (_, urlsrc) = view.url_src(ODT).expect("an odt urlsrc");
    let url = format!("{urlsrc}WOPISrc={}&lang=de", encode(&nc.wopi_src(file_id)));
    let reply = post_form(&url, &format!("access_token={token}&access_token_ttl=0")).await;
    assert_eq!(reply.status, StatusCode::OK, "open: {}", reply.body);
    let node = reply.node().expect("an editor answered").to_string();
    let session = editors
        .iter()
        .find(|e| e.url() == node)
        .unwrap_or_else(|| panic!("opened on an unknown node {node}"))
        .last_session()
        .expect("the editor kept the session");
    (node, session)
}

/// The editor's document WebSocket for `session`, through officeswitch, as the Collabora
/// page opens it: `/cool/<WOPISrc>/ws?WOPISrc=<WOPISrc>&compat=/ws`.
async fn websocket(os: &OfficeSwitch, session: &EditorSession) -> Socket {
    let enc = encode(&session.wopi_src);
    let url = format!("ws://{}/cool/{enc}/ws?WOPISrc={enc}&compat=/ws", os.addr);
    let (socket, response) = tokio::time::timeout(
        Duration::from_secs(10),
        websocket_from(&url, &os.public_url),
    )
    .await
    .expect("WebSocket handshake within 10 s")
    .expect("WebSocket through officeswitch");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    socket
}

/// Sends `count` numbered messages and checks each echo, in order (5 s at most).
async fn exchange(socket: &mut Socket, tag: &str, count: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        for i in 0..count {
            let text = format!("{tag} {i}");
            socket
                .send(Message::text(text.clone()))
                .await
                .expect("send");
            match socket.next().await {
                Some(Ok(Message::Text(echo))) => assert_eq!(echo.as_str(), text),
                other => panic!("{tag}: no echo of message {i}: {other:?}"),
            }
        }
    })
    .await
    .expect("echoes within 5 s");
}

/// Waits (15 s at most) until officeswitch's readiness detail lists `node` as down.
async fn wait_down(os: &OfficeSwitch, node: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = os.readiness().await;
        if body.lines().any(|l| l.contains(node) && l.contains("down")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node} never marked down:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_node_killed_under_a_live_websocket_ends_it_and_the_document_reopens_elsewhere() {
    trace_init();
    // Both nodes name officeswitch (server_name), as docs/operations.md asks.
    let port = free_port().await;
    let named = || StandInOptions::default().server_name(format!("127.0.0.1:{port}"));
    let (a, b) = tokio::join!(
        StandInEditor::start_with(Suite::Collabora, named()),
        StandInEditor::start_with(Suite::Collabora, named())
    );
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .port(port)
        .pool("collabora", "collabora", &[a.url(), b.url()])
        .org("acme", &[nc.origin()], "")
        .section(FAST_HEALTH)
        .start()
        .await;
    nc.add_file("31_oc", "notes.odt", b"first draft".to_vec());
    nc.grant("31_oc", "nc-token-1");

    let mut editors = vec![a, b];
    let (node, session) = open(&os, &nc, &editors, "31_oc", "nc-token-1").await;
    let doomed = editors
        .iter()
        .position(|e| e.url() == node)
        .expect("a known node");
    let info = editors[doomed]
        .wopi(&session, WopiCall::CheckFileInfo)
        .await;
    assert_ok(&info, "CheckFileInfo before the fault");

    // A live editing session: messages flowing both ways when the node dies.
    let mut socket = websocket(&os, &session).await;
    exchange(&mut socket, "before", 20).await;
    let (mut sink, mut stream) = socket.split();
    let typing = tokio::spawn(async move {
        for i in 0.. {
            if sink
                .send(Message::text(format!("typing {i}")))
                .await
                .is_err()
            {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        unreachable!("the loop ends when the socket does")
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let echoed_before = editors[doomed].echoed_messages();
    assert!(
        echoed_before > 20,
        "the session was live ({echoed_before} echoes)"
    );

    let killed_at = Instant::now();
    editors.remove(doomed).stop().await;
    let ended = tokio::time::timeout(WEBSOCKET_END_LIMIT, async {
        loop {
            match stream.next().await {
                None | Some(Err(_)) => return "closed",
                Some(Ok(Message::Close(_))) => return "close frame",
                Some(Ok(_)) => {} // echoes already on their way
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("the WebSocket is still open {WEBSOCKET_END_LIMIT:?} after its node died")
    });
    eprintln!(
        "faults: client WebSocket ended ({ended}) {} ms after its node was killed",
        killed_at.elapsed().as_millis()
    );
    let sent = tokio::time::timeout(Duration::from_secs(5), typing)
        .await
        .expect("the client's sends fail once the WebSocket is gone")
        .expect("typing task");
    assert!(sent > 0);

    wait_down(&os, &node).await;

    // The same document (same Nextcloud WOPISrc, same user) opens again, on the live node,
    // under the same officeswitch WOPISrc, and its WebSocket and WOPI calls work.
    let (reopened_on, again) = open(&os, &nc, &editors, "31_oc", "nc-token-1").await;
    let live = &editors[0];
    assert_eq!(reopened_on, live.url(), "reopened on the dead node");
    assert_eq!(
        again.wopi_src, session.wopi_src,
        "the document changed identity"
    );
    let mut socket = websocket(&os, &again).await;
    let echoed = live.echoed_messages();
    exchange(&mut socket, "after", 20).await;
    assert_eq!(live.echoed_messages(), echoed + 20, "the live node echoed");
    let info = live.wopi(&again, WopiCall::CheckFileInfo).await;
    assert_ok(&info, "CheckFileInfo after the reopen");
    let saved = b"second draft".to_vec();
    let put = live
        .wopi(
            &again,
            WopiCall::PutFile {
                lock: None,
                body: PutBody::Bytes(saved.clone()),
            },
        )
        .await;
    assert_ok(&put, "PutFile after the reopen");
    assert_eq!(nc.contents_of("31_oc").as_deref(), Some(&saved[..]));
    socket.close(None).await.expect("close");
}

/// Bytes of the save in the Nextcloud restart test: large enough to be streaming (not in
/// a socket buffer) when Nextcloud goes down.
const SAVE_BYTES: u64 = 24 << 20;

/// Bytes Nextcloud reads of the first save before it stops reading (its restart begins).
const READ_BEFORE_RESTART: u64 = 2 << 20;

#[tokio::test]
async fn nextcloud_restarting_mid_putfile_fails_the_save_and_the_retry_stores_it_whole() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    let mut nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .org("acme", &[nc.origin()], "")
        .start()
        .await;
    let original = b"the document as last saved".to_vec();
    nc.add_file("32_oc", "report.odt", original.clone());
    nc.grant("32_oc", "nc-token-1");
    let (_, session) = open(&os, &nc, std::slice::from_ref(&cool), "32_oc", "nc-token-1").await;
    assert_ok(
        &cool.wopi(&session, WopiCall::CheckFileInfo).await,
        "CheckFileInfo",
    );

    // The save starts; Nextcloud has read part of it when its restart begins (it stops
    // reading, then its listener and connections go away).
    nc.set_put_fault(Some(PutFault::StallAfter(READ_BEFORE_RESTART)));
    let save = cool.wopi(
        &session,
        WopiCall::PutFile {
            lock: None,
            body: PutBody::Pattern(SAVE_BYTES),
        },
    );
    let restart = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nc.requests().iter().any(|r| {
            r.aborted
                .as_deref()
                .is_some_and(|a| a.starts_with("stalled"))
        }) {
            assert!(
                Instant::now() < deadline,
                "the save never reached Nextcloud"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let received = nc
            .requests()
            .iter()
            .filter_map(|r| r.body_bytes)
            .max()
            .unwrap_or_default();
        assert!(
            received < SAVE_BYTES,
            "the save was not in flight ({received} bytes read)"
        );
        nc.go_down().await;
    };
    let (reply, ()) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(save, restart)
    })
    .await
    .expect("the interrupted save ends within 60 s");
    assert!(
        reply.status.is_server_error() && reply.status.as_u16() != 599,
        "the interrupted save answered {} ({:?})",
        reply.status,
        reply.error
    );

    // A call made while Nextcloud is down is held, and answered once it is back.
    let held = cool.wopi(&session, WopiCall::CheckFileInfo);
    let back = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        nc.set_put_fault(None);
        nc.come_back().await.expect("Nextcloud back on its port");
    };
    let (held, ()) = tokio::join!(held, back);
    assert_ok(&held, "CheckFileInfo held while Nextcloud was down");
    // Nothing of the interrupted save was stored.
    assert!(
        nc.puts().is_empty(),
        "a truncated save was recorded: {:?}",
        nc.puts()
    );
    assert_eq!(nc.version_of("32_oc"), Some(1));
    assert_eq!(nc.contents_of("32_oc").as_deref(), Some(&original[..]));

    // The editor's retry goes through and is stored byte for byte.
    let retry = cool
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: None,
                body: PutBody::Pattern(SAVE_BYTES),
            },
        )
        .await;
    assert_ok(&retry, "the retried PutFile");
    assert_eq!(
        nc.puts(),
        vec![("32_oc".to_string(), SAVE_BYTES, pattern_sha256(SAVE_BYTES))],
        "the retry is stored whole"
    );
    assert_eq!(nc.version_of("32_oc"), Some(2));
}

/// Bytes of a save that arrives while Nextcloud is down: far more than socket buffers
/// hold, so officeswitch must hold the editor's upload unread, not buffer it.
const HELD_SAVE_BYTES: u64 = 8 << 20;

/// How long Nextcloud stays down while a save waits.
const OUTAGE: Duration = Duration::from_secs(2);

/// The admin token of the tests that read `/metrics`.
const ADMIN_TOKEN: &str = "faults-admin-token";

/// `officeswitch_wopi_host_retries_total` (process-wide: tests in this binary share it).
async fn host_retries(os: &OfficeSwitch) -> f64 {
    let admin = os.admin_addr();
    let reply = client::send(
        Method::GET,
        &format!("http://{admin}/metrics"),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix("officeswitch_wopi_host_retries_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The PutFile requests that reached Nextcloud.
fn put_file_requests(nc: &StandInNextcloud) -> usize {
    nc.requests()
        .iter()
        .filter(|r| r.operation == Some(WopiOperation::PutFile))
        .count()
}

#[tokio::test]
async fn a_save_arriving_while_nextcloud_is_down_is_held_and_lands_once_when_it_is_back() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    let mut nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .org("acme", &[nc.origin()], "")
        .admin(ADMIN_TOKEN)
        .start()
        .await;
    nc.add_file(
        "33_oc",
        "report.odt",
        b"the document as last saved".to_vec(),
    );
    nc.grant("33_oc", "nc-token-1");
    let (_, session) = open(&os, &nc, std::slice::from_ref(&cool), "33_oc", "nc-token-1").await;
    assert_ok(
        &cool.wopi(&session, WopiCall::CheckFileInfo).await,
        "CheckFileInfo",
    );
    let retries_before = host_retries(&os).await;

    // Nextcloud restarts; the editor saves while its port is closed, and it is back on the
    // same port a moment later.
    nc.go_down().await;
    let started = Instant::now();
    let save = cool.wopi(
        &session,
        WopiCall::PutFile {
            lock: None,
            body: PutBody::Pattern(HELD_SAVE_BYTES),
        },
    );
    let back = async {
        tokio::time::sleep(OUTAGE).await;
        nc.come_back().await.expect("Nextcloud back on its port");
    };
    let (reply, ()) = tokio::join!(save, back);
    assert_ok(&reply, "the PutFile made while Nextcloud was down");
    assert!(
        started.elapsed() >= OUTAGE,
        "the save was answered before Nextcloud was back"
    );

    // Exactly one PutFile reached Nextcloud, and it holds every byte the editor sent.
    assert_eq!(put_file_requests(&nc), 1, "{:#?}", nc.requests());
    assert_eq!(
        nc.puts(),
        vec![(
            "33_oc".to_string(),
            HELD_SAVE_BYTES,
            pattern_sha256(HELD_SAVE_BYTES)
        )],
        "the held save is stored whole, once"
    );
    assert_eq!(nc.version_of("33_oc"), Some(2));
    assert!(
        host_retries(&os).await > retries_before,
        "the repeats are not counted"
    );
}

#[tokio::test]
async fn a_save_while_nextcloud_stays_down_past_the_host_timeout_is_an_error_and_writes_nothing() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    let mut nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .org("acme", &[nc.origin()], "")
        .section("[wopi]\nhost_timeout_secs = 3")
        .start()
        .await;
    let original = b"the document as last saved".to_vec();
    nc.add_file("34_oc", "report.odt", original.clone());
    nc.grant("34_oc", "nc-token-1");
    let (_, session) = open(&os, &nc, std::slice::from_ref(&cool), "34_oc", "nc-token-1").await;

    nc.go_down().await;
    let started = Instant::now();
    let reply = cool
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: None,
                body: PutBody::Pattern(64 << 10),
            },
        )
        .await;
    let took = started.elapsed();
    assert!(
        matches!(
            reply.status,
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
        ),
        "a save Nextcloud never got answered {} ({:?})",
        reply.status,
        reply.error
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "held for {took:?}, not until the 3 s host timeout"
    );

    nc.come_back().await.expect("Nextcloud back on its port");
    assert_eq!(put_file_requests(&nc), 0, "{:#?}", nc.requests());
    assert!(nc.puts().is_empty(), "{:?}", nc.puts());
    assert_eq!(nc.contents_of("34_oc").as_deref(), Some(&original[..]));
}

/// A node that answers the first request of each connection with a 404 that keeps the
/// connection alive, then reads the next request and closes without a word, as coolwsd
/// does after some of its 404s. Returns its base URL.
async fn node_closing_after_one_answer() -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                // The first request: answered, connection left open.
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found";
                if socket.write_all(answer).await.is_err() {
                    return;
                }
                // The next request on it: read, then closed unanswered.
                let _ = socket.read(&mut buf).await;
            });
        }
    });
    format!("http://{addr}/")
}

#[tokio::test]
async fn a_pooled_connection_the_node_closed_unanswered_is_retried_not_a_502() {
    trace_init();
    let node = node_closing_after_one_answer().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", std::slice::from_ref(&node))
        .start()
        .await;
    // Sequential asset requests from one client reuse officeswitch's pooled connection:
    // each second request on a connection meets the node's silent close.
    for i in 0..20 {
        let path = format!("/browser/0123abcd/images/missing-{i}.svg");
        let (status, body) = os.get(&path).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "request {i} got {status}, not the node's 404: {body}"
        );
    }
}
