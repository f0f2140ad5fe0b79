//! Streaming through officeswitch (issue 3): 1 GiB up and 1 GiB down byte for byte in
//! bounded memory, a WebSocket carrying 100,000 messages each way in order, a node's
//! close reaching the client, and clients that never finish their request head.
//!
//! The gigabyte tests run officeswitch as its own process (the `officeswitch` binary on a
//! settings file written here), so its memory can be read from `/proc/<pid>/status`
//! without the test's own allocations mixed in. The other tests run it in-process.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::support::client::{self, encode};
use crate::support::editor::{
    PATTERN_PERIOD, PutBody, StandInEditor, StandInOptions, Suite, WopiCall, pattern_byte,
    pattern_sha256, pattern_stream,
};
use crate::support::nextcloud::StandInNextcloud;
use crate::support::officeswitch::OfficeSwitch;
use crate::support::trace_init;

/// Bytes moved each way by the gigabyte tests.
const GIB: u64 = 1 << 30;

/// Most officeswitch's resident memory may grow while streaming (issue 3).
const RSS_BUDGET_KIB: u64 = 32 * 1024;

/// Deadline for one gigabyte transfer (a debug build on 2 cores needs a fraction of it).
const TRANSFER_DEADLINE: Duration = Duration::from_secs(300);

/// Messages sent each way over one WebSocket.
const MESSAGES: usize = 100_000;

// ---------------------------------------------------------------------------------------
// Gigabyte transfers, officeswitch as a separate process.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_gibibyte_each_way_streams_byte_for_byte_in_bounded_memory() {
    trace_init();
    let (cool, oo) = tokio::join!(
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::OnlyOffice),
    );
    let nc = StandInNextcloud::start().await;
    let os = Spawned::start(&cool.url(), &oo.url(), &nc.origin()).await;

    // Warm up: one small request of each kind, so connection pools and worker threads
    // exist before the baseline is read.
    let enc = encode(&nc.wopi_src("big_oc"));
    let download_path = |size: u64| format!("/cool/{enc}/download/big?size={size}&WOPISrc={enc}");
    upload(os.addr, 1 << 20).await;
    download(os.addr, &download_path(1 << 20), 1 << 20).await;
    let before = os.status_kib("VmRSS");

    let upload_secs = upload(os.addr, GIB).await;
    let after_upload = os.status_kib("VmHWM");
    let download_secs = download(os.addr, &download_path(GIB), GIB).await;
    let after_both = os.status_kib("VmHWM");

    let mib = |kib: u64| kib as f64 / 1024.0;
    let rate = |secs: f64| GIB as f64 / (1 << 20) as f64 / secs;
    eprintln!(
        "streaming: officeswitch VmRSS before {:.1} MiB; VmHWM after 1 GiB upload {:.1} MiB \
         (+{:.1}), after 1 GiB download {:.1} MiB (+{:.1}); upload {upload_secs:.1} s \
         ({:.0} MiB/s), download {download_secs:.1} s ({:.0} MiB/s)",
        mib(before),
        mib(after_upload),
        mib(after_upload.saturating_sub(before)),
        mib(after_both),
        mib(after_both.saturating_sub(before)),
        rate(upload_secs),
        rate(download_secs),
    );
    // Both gigabytes went through the node: officeswitch forwarded them, it did not answer.
    let seen = cool.requests();
    assert!(
        seen.iter().any(|r| r.path() == "/cool/convert-to/pdf"
            && r.headers.get(header::CONTENT_LENGTH) == Some(&GIB.into())),
        "the node got no 1 GiB upload"
    );
    assert!(
        seen.iter().any(|r| r.path_and_query == download_path(GIB)),
        "the node got no 1 GiB download request"
    );
    assert!(
        after_both.saturating_sub(before) < RSS_BUDGET_KIB,
        "officeswitch's peak RSS grew by {:.1} MiB (budget {} MiB)",
        mib(after_both.saturating_sub(before)),
        RSS_BUDGET_KIB / 1024
    );
}

#[tokio::test]
async fn a_gibibyte_putfile_and_getfile_stream_through_wopi_in_bounded_memory() {
    trace_init();
    let (cool, oo) = tokio::join!(
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::OnlyOffice),
    );
    let nc = StandInNextcloud::start().await;
    let os = Spawned::start(&cool.url(), &oo.url(), &nc.origin()).await;
    nc.add_pattern_file("big_oc", "big.odt", GIB);
    nc.grant("big_oc", "big-token");
    cool.set_wopi_timeout(TRANSFER_DEADLINE);

    // Open as richdocuments does; the editor is given officeswitch's WOPISrc and token.
    let (_, xml) = client::get(&format!("http://{}/hosting/discovery", os.addr)).await;
    let view = crate::support::richdocuments::RichdocumentsView::parse(&xml);
    let (_, urlsrc) = view
        .url_src("application/vnd.oasis.opendocument.text")
        .expect("odt urlsrc");
    let open = client::post_form(
        &format!("{urlsrc}WOPISrc={}", encode(&nc.wopi_src("big_oc"))),
        "access_token=big-token&access_token_ttl=0",
    )
    .await;
    assert_eq!(open.status, StatusCode::OK, "{}", open.body);
    let session = cool.last_session().expect("session");
    // Warm up with a small save, then read the baseline.
    let small = cool
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: None,
                body: PutBody::Pattern(1 << 20),
            },
        )
        .await;
    assert!(small.status.is_success(), "{:?}", small.error);
    let before = os.status_kib("VmRSS");

    nc.add_pattern_file("big_oc", "big.odt", GIB);
    let started = Instant::now();
    let get = cool
        .wopi(
            &session,
            WopiCall::GetFile {
                max_expected_size: None,
            },
        )
        .await;
    let get_secs = started.elapsed().as_secs_f64();
    let after_get = os.status_kib("VmHWM");
    let started = Instant::now();
    let put = cool
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: None,
                body: PutBody::Pattern(GIB),
            },
        )
        .await;
    let put_secs = started.elapsed().as_secs_f64();
    let after_both = os.status_kib("VmHWM");

    let expected = pattern_sha256(GIB);
    assert!(
        get.status.is_success(),
        "GetFile: {} {:?}",
        get.status,
        get.error
    );
    assert_eq!(
        (get.body_len, get.body_sha256.as_str()),
        (GIB, expected.as_str())
    );
    assert!(
        put.status.is_success(),
        "PutFile: {} {:?}",
        put.status,
        put.error
    );
    assert!(
        nc.puts()
            .contains(&("big_oc".to_string(), GIB, expected.clone())),
        "Nextcloud got the gigabyte byte for byte"
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    let rate = |secs: f64| GIB as f64 / (1 << 20) as f64 / secs;
    eprintln!(
        "wopi streaming: officeswitch VmRSS before {:.1} MiB; VmHWM after 1 GiB GetFile {:.1} MiB, \
         after 1 GiB PutFile {:.1} MiB (+{:.1}); GetFile {get_secs:.1} s ({:.0} MiB/s), \
         PutFile {put_secs:.1} s ({:.0} MiB/s)",
        mib(before),
        mib(after_get),
        mib(after_both),
        mib(after_both.saturating_sub(before)),
        rate(get_secs),
        rate(put_secs),
    );
    assert!(
        after_both.saturating_sub(before) < RSS_BUDGET_KIB,
        "officeswitch's peak RSS grew by {:.1} MiB (budget {} MiB)",
        mib(after_both.saturating_sub(before)),
        RSS_BUDGET_KIB / 1024
    );
}

/// POSTs `size` pattern bytes to `/cool/convert-to/pdf` (the Collabora stand-in echoes
/// them) and checks the echo byte for byte while the upload is still going. Returns the
/// seconds it took.
async fn upload(addr: SocketAddr, size: u64) -> f64 {
    let started = Instant::now();
    let mut sender = connect(addr).await;
    let frames = pattern_stream(size).map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
    let request = Request::builder()
        .method(Method::POST)
        .uri("/cool/convert-to/pdf")
        .header(header::HOST, addr.to_string())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .expect("valid request");
    let response = tokio::time::timeout(TRANSFER_DEADLINE, async {
        let response = sender.send_request(request).await.expect("upload answered");
        assert_eq!(response.status(), StatusCode::OK, "convert-to status");
        assert_eq!(
            response.headers().get(header::CONTENT_LENGTH),
            Some(&size.into()),
            "echo length"
        );
        verify_pattern(response.into_body(), size, "upload echo").await;
    });
    response.await.expect("1 GiB upload within the deadline");
    started.elapsed().as_secs_f64()
}

/// GETs `path` (a stand-in big download of `size` pattern bytes) and checks it byte for
/// byte. Returns the seconds it took.
async fn download(addr: SocketAddr, path: &str, size: u64) -> f64 {
    let started = Instant::now();
    let mut sender = connect(addr).await;
    let request = Request::builder()
        .uri(path)
        .header(header::HOST, addr.to_string())
        .body(BodyExt::boxed(Empty::new()))
        .expect("valid request");
    tokio::time::timeout(TRANSFER_DEADLINE, async {
        let response = sender
            .send_request(request)
            .await
            .expect("download answered");
        assert_eq!(response.status(), StatusCode::OK, "download status");
        verify_pattern(response.into_body(), size, "download").await;
    })
    .await
    .expect("1 GiB download within the deadline");
    started.elapsed().as_secs_f64()
}

/// A fresh HTTP/1.1 connection to `addr` (no pool: each transfer has its own).
async fn connect(addr: SocketAddr) -> SendRequest<BoxBody<Bytes, Infallible>> {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to officeswitch");
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "test client connection ended");
        }
    });
    sender
}

/// Reads `body` frame by frame, comparing every byte with [`pattern_byte`] of its offset,
/// and checks that exactly `size` bytes arrive. Keeps nothing but the offset.
async fn verify_pattern(mut body: Incoming, size: u64, what: &str) {
    // The pattern from every phase, one piece long: `reference[o % P..][..n]` is the
    // pattern at offset `o` for any `n <= PIECE` (compared with memcmp, fast in debug).
    const PIECE: usize = 64 * 1024;
    let period = usize::try_from(PATTERN_PERIOD).expect("small period");
    let reference: Vec<u8> = (0..(period + PIECE) as u64).map(pattern_byte).collect();
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap_or_else(|e| panic!("{what}: body failed at byte {offset}: {e}"));
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for piece in data.chunks(PIECE) {
            let phase = usize::try_from(offset % PATTERN_PERIOD).expect("below the period");
            let expected = &reference[phase..phase + piece.len()];
            if piece != expected {
                let i = piece
                    .iter()
                    .zip(expected)
                    .position(|(a, b)| a != b)
                    .expect("a differing byte");
                panic!(
                    "{what}: byte {} is {} instead of {}",
                    offset + i as u64,
                    piece[i],
                    expected[i]
                );
            }
            offset += piece.len() as u64;
            assert!(offset <= size, "{what}: more than {size} bytes");
        }
    }
    assert_eq!(offset, size, "{what}: length");
}

/// The `officeswitch` binary running on settings written to a temp dir; killed on drop.
struct Spawned {
    addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Spawned {
    /// Writes settings for one Collabora and one OnlyOffice node and an organisation
    /// owning `origin`, starts the binary and waits until `/readyz` says 200.
    async fn start(collabora: &str, onlyoffice: &str, origin: &str) -> Spawned {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port().await;
        let settings = format!(
            "public_url = \"http://127.0.0.1:{port}\"\n\
             listen = \"127.0.0.1:{port}\"\n\
             rules_dir = \"rules\"\n\
             state_dir = \"state\"\n\
             [keys]\n\
             proof_key = \"keys/proof_key.pem\"\n\
             generate_missing = true\n\
             [log]\n\
             level = \"info\"\n\
             [[pool]]\nname = \"collabora\"\nkind = \"collabora\"\nnodes = [\"{collabora}\"]\n\
             [[pool]]\nname = \"onlyoffice\"\nkind = \"onlyoffice\"\nnodes = [\"{onlyoffice}\"]\n"
        );
        let config = dir.path().join("officeswitch.toml");
        std::fs::write(&config, settings).expect("write settings");
        std::fs::create_dir(dir.path().join("rules")).expect("rules dir");
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/rules/default.toml"),
            dir.path().join("rules/default.toml"),
        )
        .expect("copy default rules");
        std::fs::write(
            dir.path().join("rules/acme.toml"),
            format!("origins = [\"{origin}\"]\n"),
        )
        .expect("write org rules");
        let log = std::fs::File::create(dir.path().join("officeswitch.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_officeswitch"))
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("run the officeswitch binary");
        let spawned = Spawned {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            dir,
        };
        spawned.wait_ready().await;
        spawned
    }

    /// Waits (10 s at most) until it listens and both pools have a discovery.
    async fn wait_ready(&self) {
        for _ in 0..200 {
            if TcpStream::connect(self.addr).await.is_ok() {
                let (status, _) = client::get(&format!("http://{}/readyz", self.addr)).await;
                if status == StatusCode::OK {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("officeswitch not ready within 10 s; log:\n{}", self.log());
    }

    /// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.child.id()))
    }

    /// What it has logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("officeswitch.log")).unwrap_or_default()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("officeswitch log:\n{}", self.log());
        }
    }
}

/// A loopback port free right now.
async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    listener.local_addr().expect("local address").port()
}

// ---------------------------------------------------------------------------------------
// WebSockets and slow clients, officeswitch in-process.
// ---------------------------------------------------------------------------------------

/// One Collabora node, one OnlyOffice node, a Nextcloud owned by `acme`, officeswitch with
/// a 1 s header timeout.
struct Setup {
    cool: StandInEditor,
    _oo: StandInEditor,
    nc: StandInNextcloud,
    os: OfficeSwitch,
}

impl Setup {
    async fn start() -> Setup {
        trace_init();
        // The Collabora node names officeswitch (server_name), as docs/operations.md asks.
        let port = free_port().await;
        let (cool, oo) = tokio::join!(
            StandInEditor::start_with(
                Suite::Collabora,
                StandInOptions::default().server_name(format!("127.0.0.1:{port}"))
            ),
            StandInEditor::start(Suite::OnlyOffice),
        );
        let nc = StandInNextcloud::start().await;
        let os = OfficeSwitch::builder()
            .port(port)
            .pool("collabora", "collabora", &[cool.url()])
            .pool("onlyoffice", "onlyoffice", &[oo.url()])
            .org("acme", &[nc.origin()], "")
            .section("[server]\nheader_timeout_secs = 1")
            .start()
            .await;
        Setup {
            cool,
            _oo: oo,
            nc,
            os,
        }
    }

    /// Collabora's document WebSocket path for file `id`, as the editor page opens it.
    fn ws_path(&self, id: &str) -> String {
        let enc = encode(&self.nc.wopi_src(id));
        format!("/cool/{enc}/ws?WOPISrc={enc}&compat=/ws")
    }

    async fn websocket(
        &self,
        id: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
        let url = format!("ws://{}{}", self.os.addr, self.ws_path(id));
        let (socket, response) = tokio::time::timeout(
            Duration::from_secs(10),
            client::websocket(&url, &self.os.public_url),
        )
        .await
        .expect("handshake in time")
        .expect("WebSocket through officeswitch");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        socket
    }
}

#[tokio::test]
async fn a_websocket_carries_100000_messages_each_way_in_order() {
    let setup = Setup::start().await;
    let socket = setup.websocket("ws_oc").await;
    let (mut sink, mut stream) = socket.split();
    let message = |i: usize| format!("message {i:06} of the document session");
    let send = async {
        for i in 0..MESSAGES {
            sink.feed(Message::text(message(i))).await.expect("send");
            if i % 256 == 255 {
                sink.flush().await.expect("flush");
            }
        }
        sink.flush().await.expect("flush");
    };
    let receive = async {
        let mut received = 0;
        while received < MESSAGES {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => {
                    assert_eq!(text.as_str(), message(received), "echo out of order");
                    received += 1;
                }
                Some(Ok(other)) => panic!("unexpected message after {received}: {other:?}"),
                Some(Err(e)) => panic!("WebSocket failed after {received} echoes: {e}"),
                None => panic!("WebSocket ended after {received} echoes"),
            }
        }
    };
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(180), async {
        tokio::join!(send, receive)
    })
    .await
    .expect("100,000 messages each way within 180 s");
    eprintln!(
        "websocket: {MESSAGES} messages each way in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(setup.cool.echoed_messages(), MESSAGES as u64);

    // Close: the node acknowledges through the tunnel, and the session ends on both sides.
    sink.send(Message::Close(None)).await.expect("send close");
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("close acknowledged within 5 s");
    match end {
        Some(Ok(Message::Close(_))) | None => {}
        Some(Ok(other)) => panic!("unexpected message after close: {other:?}"),
        Some(Err(e)) => panic!("close failed: {e}"),
    }
    for _ in 0..100 {
        if setup.cool.open_websockets() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the node still has an open WebSocket 5 s after the close");
}

#[tokio::test]
async fn a_node_stopping_closes_the_clients_websocket() {
    let setup = Setup::start().await;
    let mut socket = setup.websocket("stop_oc").await;
    socket.send(Message::text("hello")).await.expect("send");
    let echo = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("echo in time");
    assert!(
        matches!(&echo, Some(Ok(Message::Text(t))) if t.as_str() == "hello"),
        "{echo:?}"
    );
    let Setup { cool, os, .. } = setup;
    let started = Instant::now();
    cool.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(2), socket.next())
        .await
        .expect("the client's WebSocket is still open 2 s after its node stopped");
    match ended {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {}
        Some(Ok(other)) => panic!("unexpected message from a stopped node: {other:?}"),
    }
    eprintln!(
        "websocket: closed {} ms after the node stopped",
        started.elapsed().as_millis()
    );
    drop(os);
}

/// Reads from `stream` until EOF or a reset, at most `limit`; returns the time from
/// `since` and what arrived (officeswitch may say why before closing).
async fn wait_closed(
    stream: &mut TcpStream,
    since: Instant,
    limit: Duration,
) -> (Duration, String) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&received).into_owned();
    assert!(
        closed.is_ok(),
        "connection still open after {limit:?}; received {text:?}"
    );
    (since.elapsed(), text)
}

/// The head of a WebSocket upgrade request to `path`, without the blank line ending it.
fn unfinished_upgrade(path: &str, host: SocketAddr) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
}

#[tokio::test]
async fn a_half_open_websocket_handshake_is_closed_by_the_header_timeout() {
    let setup = Setup::start().await;
    let mut stream = TcpStream::connect(setup.os.addr).await.expect("connect");
    let started = Instant::now();
    stream
        .write_all(unfinished_upgrade(&setup.ws_path("half_oc"), setup.os.addr).as_bytes())
        .await
        .expect("send the head");
    let (after, said) = wait_closed(&mut stream, started, Duration::from_secs(3)).await;
    eprintln!("half-open handshake: closed after {after:?}, answer {said:?}");
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}, before the 1 s header timeout"
    );
    assert!(
        setup
            .cool
            .requests()
            .iter()
            .all(|r| r.path_and_query.starts_with("/hosting/")),
        "an unfinished request reached the node"
    );
}

/// Drips `head` into `stream` one byte every `every` until officeswitch closes the
/// connection or `limit` passes; how long it took, `None` when it was still open.
async fn drip_until_closed(
    stream: TcpStream,
    head: String,
    every: Duration,
    limit: Duration,
) -> Option<Duration> {
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    let drip = tokio::spawn(async move {
        for byte in head.bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(every).await;
        }
        writer
    });
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(limit, async {
        while let Ok(n) = reader.read(&mut buffer).await
            && n > 0
        {}
    })
    .await;
    let after = started.elapsed();
    drip.abort();
    closed.ok().map(|()| after)
}

#[tokio::test]
async fn a_slowloris_client_is_closed_by_the_header_timeout() {
    let setup = Setup::start().await;
    let stream = TcpStream::connect(setup.os.addr).await.expect("connect");
    let head = unfinished_upgrade(&setup.ws_path("slow_oc"), setup.os.addr);
    // One byte every 500 ms until officeswitch stops taking them.
    let after = drip_until_closed(
        stream,
        head,
        Duration::from_millis(500),
        Duration::from_secs(3),
    )
    .await
    .expect("a slowloris client is still connected after 3 s");
    eprintln!("slowloris: closed after {after:?}");
    assert!(
        after < Duration::from_secs(2) + Duration::from_millis(300),
        "closed after {after:?}, later than the header timeout + 1 s"
    );
}

/// Sends `GET /healthz` on `stream` and reads its whole answer (officeswitch's own, small).
async fn health_check(stream: &mut TcpStream, host: SocketAddr) {
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("send a request");
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("an answer in time")
            .expect("read the answer");
        assert!(n > 0, "closed before answering");
        received.extend_from_slice(&buffer[..n]);
    }
    assert!(received.starts_with(b"HTTP/1.1 200"), "{received:?}");
}

#[tokio::test]
async fn a_slowloris_second_request_on_a_kept_alive_connection_is_closed_by_the_header_timeout() {
    let setup = Setup::start().await;
    let mut stream = TcpStream::connect(setup.os.addr).await.expect("connect");
    health_check(&mut stream, setup.os.addr).await;
    // Silent longer than the header time: a kept-alive connection waits for its next
    // request (the idle time), so the second request is still answered.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    health_check(&mut stream, setup.os.addr).await;
    // The third head drips in, a byte every 300 ms, and is never complete.
    let head = unfinished_upgrade(&setup.ws_path("slow_again_oc"), setup.os.addr);
    let after = drip_until_closed(
        stream,
        head,
        Duration::from_millis(300),
        Duration::from_secs(5),
    )
    .await
    .expect("a slow later head still holds the connection after 5 s");
    eprintln!("slow second head: closed after {after:?}");
    // Checked at least once per header time: between one and two of them (1 s here).
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(2500),
        "closed after {after:?}, not between one and two header times"
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_by_the_header_timeout() {
    let setup = Setup::start().await;
    // Nothing at all, and an HTTP/2 preface with nothing after it (no SETTINGS frame).
    for opening in [&b""[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"] {
        let mut stream = TcpStream::connect(setup.os.addr).await.expect("connect");
        let started = Instant::now();
        stream.write_all(opening).await.expect("send the opening");
        let (after, _) = wait_closed(&mut stream, started, Duration::from_secs(3)).await;
        eprintln!(
            "silent connection after {:?}: closed after {after:?}",
            String::from_utf8_lossy(opening)
        );
    }
}
