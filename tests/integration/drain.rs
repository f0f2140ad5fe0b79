//! Graceful stop: `/readyz` turns 503 at once, the listeners close after the delay,
//! requests in flight (a save) finish byte for byte, WebSockets run until the deadline and
//! then get a close frame (1001) on both sides; a second SIGTERM ends it at once; the
//! process exits 0.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::client::{self, encode, post_form};
use crate::support::editor::{
    EditorSession, PutBody, StandInEditor, StandInOptions, Suite, WopiCall, pattern_sha256,
};
use crate::support::nextcloud::StandInNextcloud;
use crate::support::officeswitch::{Builder, OfficeSwitch, free_port};
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// One Collabora node and a Nextcloud owned by `acme`, and the port officeswitch will
/// listen on (the node's `server_name`).
struct Peers {
    cool: StandInEditor,
    nc: StandInNextcloud,
    port: u16,
}

impl Peers {
    async fn start() -> Peers {
        trace_init();
        let port = free_port().await;
        let cool = StandInEditor::start_with(
            Suite::Collabora,
            StandInOptions::default().server_name(format!("127.0.0.1:{port}")),
        )
        .await;
        let nc = StandInNextcloud::start().await;
        nc.add_file("1_oc", "a.odt", b"first version".to_vec());
        nc.grant("1_oc", "token-a");
        Peers { cool, nc, port }
    }

    fn officeswitch(&self) -> Builder {
        OfficeSwitch::builder()
            .port(self.port)
            .pool("collabora", "collabora", &[self.cool.url()])
            .org("acme", &[self.nc.origin()], "")
    }
}

/// Opens `1_oc` through officeswitch at `base` as richdocuments does; returns the
/// session the editor got (officeswitch's WOPISrc and token).
async fn open(base: &str, peers: &Peers) -> EditorSession {
    let (status, xml) = client::get(&format!("{base}/hosting/discovery")).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let urlsrc = RichdocumentsView::parse(&xml)
        .url_src("application/vnd.oasis.opendocument.text")
        .expect("an odt editor")
        .1
        .to_string();
    let url = format!(
        "{urlsrc}WOPISrc={}&lang=de",
        encode(&peers.nc.wopi_src("1_oc"))
    );
    let ttl = officeswitch::wopi::token::unix_now() + 3600;
    let reply = post_form(
        &url,
        &format!("access_token=token-a&access_token_ttl={ttl}"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    peers
        .cool
        .last_session()
        .expect("the editor kept the session")
}

/// The document's WebSocket through officeswitch at `addr`, as the editor page opens it
/// (from a page on officeswitch's origin).
async fn websocket(addr: std::net::SocketAddr, session: &EditorSession) -> Socket {
    let enc = encode(&session.wopi_src);
    let url = format!("ws://{addr}/cool/{enc}/ws?WOPISrc={enc}&compat=/ws");
    let (socket, response) = tokio::time::timeout(
        Duration::from_secs(10),
        client::websocket(&url, &format!("http://{addr}")),
    )
    .await
    .expect("handshake in time")
    .expect("WebSocket through officeswitch");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    socket
}

/// Sends `text` and expects it back.
async fn echo(socket: &mut Socket, text: &str) {
    socket
        .send(Message::text(text.to_string()))
        .await
        .expect("send");
    let back = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("echo in time")
        .expect("socket open")
        .expect("message");
    assert_eq!(back, Message::text(text.to_string()));
}

/// Waits (up to `limit`) for the close frame; returns its code.
async fn close_code(socket: &mut Socket, limit: Duration) -> CloseCode {
    let until = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until, socket.next()).await {
            Err(_) => panic!("no close frame within {limit:?}"),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return frame.expect("a close frame with a status").code;
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("the socket ended without a close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_drain_keeps_saves_and_websockets_until_the_deadline() {
    const SAVE: u64 = 8 << 20;
    let peers = Peers::start().await;
    let os = peers.officeswitch().drain(2, 5).start().await;
    let base = format!("http://{}", os.addr);
    let session = open(&base, &peers).await;
    let mut socket = websocket(os.addr, &session).await;
    echo(&mut socket, "before the drain").await;

    // A save that takes 4 s: it starts before SIGTERM and ends after the listeners closed.
    let editor_session = session.clone();
    let cool = &peers.cool;
    let save = cool.wopi(
        &editor_session,
        WopiCall::PutFile {
            lock: None,
            body: PutBody::Paced {
                len: SAVE,
                over: Duration::from_secs(4),
            },
        },
    );
    let checks = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stop_asked = Instant::now();
        os.drain().request_stop();

        // At once: not ready (load balancers take it out), still alive.
        let (status, body) = client::get(&format!("{base}/readyz")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("draining"), "{body}");
        let (status, _) = client::get(&format!("{base}/healthz")).await;
        assert_eq!(status, StatusCode::OK);

        // After the delay: new connections are refused.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            TcpStream::connect(os.addr).await.is_err(),
            "the listener still accepts {:?} after SIGTERM",
            stop_asked.elapsed()
        );
        // The open WebSocket still works after the listeners closed.
        echo(&mut socket, "after the listeners closed").await;

        // At the deadline (5 s after SIGTERM): a close frame, going away.
        let code = close_code(&mut socket, Duration::from_secs(4)).await;
        let closed_after = stop_asked.elapsed();
        assert_eq!(code, CloseCode::Away);
        assert!(
            closed_after >= Duration::from_millis(4500),
            "closed {closed_after:?} after SIGTERM, before the 5 s deadline"
        );
        closed_after
    };
    let (reply, closed_after) = tokio::join!(save, checks);
    assert!(
        reply.status.is_success(),
        "the save in flight during the drain answered {} ({:?})",
        reply.status,
        reply.error
    );
    let saved = peers.nc.puts();
    assert_eq!(saved.len(), 1, "one save recorded");
    assert_eq!(saved[0].1, SAVE, "the whole save arrived");
    assert_eq!(saved[0].2, pattern_sha256(SAVE), "byte for byte");

    // The node got a close frame too, and officeswitch stopped right after.
    let node_closed = tokio::time::timeout(Duration::from_secs(3), async {
        while peers.cool.close_codes().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(node_closed.is_ok(), "the node got no close frame");
    assert_eq!(peers.cool.close_codes(), vec![1001]);
    let stopped = tokio::time::timeout(Duration::from_secs(4), async {
        while !os.has_stopped() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        stopped.is_ok(),
        "officeswitch still runs after the deadline"
    );
    eprintln!("drain: WebSocket closed {closed_after:?} after the stop request");
}

#[tokio::test]
async fn a_drain_with_nothing_open_ends_as_soon_as_the_listeners_close() {
    let peers = Peers::start().await;
    let os = peers.officeswitch().drain(1, 60).start().await;
    let started = Instant::now();
    os.drain().request_stop();
    let stopped = tokio::time::timeout(Duration::from_secs(5), async {
        while !os.has_stopped() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(stopped.is_ok(), "an idle instance waits for its deadline");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "stopped before the delay"
    );
}

#[tokio::test]
async fn sigterm_drains_and_a_second_sigterm_closes_websockets_at_once() {
    let peers = Peers::start().await;
    let mut os = peers.officeswitch().drain(1, 120).spawn().await;
    os.wait_ready().await;
    let session = open(&os.public_url, &peers).await;
    let mut socket = websocket(os.addr, &session).await;
    echo(&mut socket, "before SIGTERM").await;

    os.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = client::get(&format!("http://{}/readyz", os.addr)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    echo(&mut socket, "while draining").await;
    assert!(
        os.wait_exit(Duration::from_millis(10)).await.is_none(),
        "the first SIGTERM must wait for the open WebSocket"
    );

    let second = Instant::now();
    os.signal("TERM");
    assert_eq!(
        close_code(&mut socket, Duration::from_secs(3)).await,
        CloseCode::Away
    );
    let status = os
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("still running after the second SIGTERM:\n{}", os.log()));
    assert!(status.success(), "exit status {status}:\n{}", os.log());
    let log = os.log();
    assert!(log.contains("draining"), "{log}");
    assert!(log.contains("second stop request"), "{log}");
    assert!(!log.contains("token-a"), "a token in the log:\n{log}");
    eprintln!(
        "drain: exited {:?} after the second SIGTERM",
        second.elapsed()
    );
}
