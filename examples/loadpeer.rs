//! The load peer of `benches/compare/run.sh`: a stand-in Collabora node and the load
//! generator in one binary, so officeswitch, HAProxy and nginx are measured by the same
//! client against the same nodes.
//!
//! ```text
//! loadpeer node --listen 127.0.0.1:9981 --name n1           # stand-in Collabora node
//! loadpeer load assets   --addr 127.0.0.1:8080              # small asset: requests/s, p50, p99
//! loadpeer load assets   --addr 127.0.0.1:8080 --requests 10000 --connections 4  # fixed count
//! loadpeer load download --addr 127.0.0.1:8080 --pids 4242  # 1 GiB download: MiB/s, RSS peak
//! loadpeer load downloads --addr 127.0.0.1:8080 --pids 4242 # 64 concurrent 1 MiB: RSS peak
//! loadpeer load upload   --addr 127.0.0.1:8080 --pids 4242  # 1 GiB upload: MiB/s, RSS peak
//! loadpeer load ws       --addr 127.0.0.1:8080              # WebSocket round trips/s
//! loadpeer idle          --addr 127.0.0.1:8080 --pids 4242  # 9,000 idle WebSockets: RSS
//! ```
//!
//! **node** serves what officeswitch needs to see a healthy Collabora node (the discovery
//! and capabilities of `../shared/fixtures`, embedded at build time, with the fixture's
//! origin replaced by the node's own), and the traffic the load client sends: a 10 KiB
//! static asset at a versioned path (`Cache-Control: public, max-age=31536000, immutable`
//! and an `ETag`, as Collabora serves its versioned files), a large download generated
//! from a fixed pattern (streamed in 64 KiB slices of one shared buffer, never held in
//! memory; `Cache-Control: no-store`, it stands for a generated file no proxy may keep),
//! an upload sink that checks the pattern, the editor page (it answers with the `WOPISrc`
//! it was opened with, so the client learns officeswitch's), and a WebSocket echo at
//! Collabora's `/cool/<WOPISrc>/ws`. Every answer names the node in [`NODE_HEADER`].
//! Unlike the integration tests' stand-in it records nothing but two counters (assets and
//! large downloads it served, `GET /loadpeer/served`, so a script can tell how many
//! requests a proxy's cache answered), so it does not grow under load.
//!
//! **load** and **idle** print one line of `key=value` fields on stdout for the script to
//! read; progress and errors go to stderr, and any wrong byte, status or missing echo is
//! an error (exit 1). Every loop is bounded in time and count. Documents are named by
//! `WOPISrc` as Collabora traffic names them: `/cool/<encoded WOPISrc>/ws?WOPISrc=<encoded
//! WOPISrc>&compat=/ws`. With `--wopisrc host` that is the Nextcloud URL of the file (what
//! HAProxy and nginx see); with `--wopisrc open` each document is first opened through
//! officeswitch (`POST /officeswitch/open/...`, and the POST again at the `307`'s
//! `Location`, as a browser does) and the traffic then carries the `WOPISrc` officeswitch
//! gave the editor, as real traffic behind officeswitch does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::{SinkExt as _, StreamExt as _, stream};
use hdrhistogram::Histogram;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Either, Empty, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use officeswitch::proxy::translate::encode as uri_component;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// Response header naming the node that answered (its `--name`), on every answer.
const NODE_HEADER: &str = "x-loadpeer-node";

/// The Collabora discovery of CODE `61cf2b4`, captured with this origin.
const DISCOVERY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/collabora-discovery-code-61cf2b4.xml"
));
const FIXTURE_ORIGIN: &str = "http://collabora.test:9980";

/// Real CODE 23.05.9.1 capabilities (officeswitch health-checks this endpoint).
const CAPABILITIES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/collabora-capabilities-code-23.05.9.1.json"
));

/// The small static asset: a versioned path, as the editor page loads its files.
const ASSET_PATH: &str = "/browser/61cf2b4/bundle.js";
/// Its size: a small script or stylesheet.
const ASSET_BYTES: usize = 10 * 1024;
/// Its `Cache-Control`: a versioned file never changes.
const ASSET_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
/// Its entity tag (the version and the file).
const ASSET_ETAG: &str = "\"61cf2b4-bundle.js\"";
/// Where a node tells how many assets and large downloads it served.
const SERVED_PATH: &str = "/loadpeer/served";
/// The large download (`?bytes=N`, default [`GIB`]).
const LARGE_PATH: &str = "/browser/61cf2b4/large.bin";
/// The editor page an open lands on (the fixture's `urlsrc` for `odt`).
const PAGE_PATH: &str = "/browser/61cf2b4/cool.html";
/// What an open through officeswitch posts to.
const OPEN_PATH: &str = "/officeswitch/open/ext/odt/edit";
/// The origin of the host `WOPISrc`s (the generated rules give it an organisation).
const HOST_ORIGIN: &str = "https://cloud.example.org";

const GIB: u64 = 1 << 30;
/// Largest download or upload a node generates or accepts in one request.
const MAX_STREAM: u64 = 64 * GIB;

/// The large bodies repeat `0, 1, ..., 250`: a prime period, so a shifted or dropped
/// chunk cannot go unnoticed.
const PERIOD: usize = 251;
/// Slice size of generated bodies.
const CHUNK: usize = 64 * 1024;

/// Bytes of a WebSocket round-trip message (an editor's typical small command).
const WS_MESSAGE: usize = 64;

/// Stand-in Collabora node and load generator for the HAProxy/nginx comparison.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a stand-in Collabora node until killed.
    Node(NodeArgs),
    /// Run one bounded load test and print its figures.
    Load {
        #[command(subcommand)]
        test: Test,
    },
    /// Open idle WebSockets, measure the proxy's memory, hold them until the hold time
    /// ends or Ctrl-C, then close them.
    Idle(IdleArgs),
}

#[derive(Args)]
struct NodeArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Name the node answers with in `x-loadpeer-node`.
    #[arg(long)]
    name: String,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

#[derive(Subcommand)]
enum Test {
    /// Small static asset over keep-alive connections: requests/s, p50, p99.
    Assets(AssetArgs),
    /// One large download: MiB/s and the proxy's RSS.
    Download(StreamArgs),
    /// One large upload: MiB/s and the proxy's RSS.
    Upload(StreamArgs),
    /// Many downloads at once, again and again: the proxy's RSS peak, MiB/s.
    Downloads(DownloadsArgs),
    /// WebSocket echo round trips over several sockets: round trips/s, p50, p99.
    Ws(WsArgs),
}

/// Where the load goes and how documents are named.
#[derive(Args, Clone)]
struct Target {
    /// Proxy (or node) address.
    #[arg(long)]
    addr: SocketAddr,
    /// `host`: traffic carries the Nextcloud `WOPISrc`; `open`: documents are opened
    /// through officeswitch first and traffic carries officeswitch's `WOPISrc`.
    #[arg(long, value_enum, default_value_t = KeyMode::Host)]
    wopisrc: KeyMode,
    /// Part of every document name, so runs can use fresh documents.
    #[arg(long, default_value = "bench")]
    seed: String,
    /// Runtime worker threads of the load client.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyMode {
    Host,
    Open,
}

#[derive(Args)]
struct AssetArgs {
    #[command(flatten)]
    target: Target,
    /// Keep-alive connections, each sending one request at a time.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Processes whose CPU time per request is measured (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Seconds of warm-up, not measured (ignored with `--requests`).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured; with `--requests`, the longest the requests may take.
    #[arg(long, default_value_t = 8.0)]
    duration: f64,
    /// Send exactly this many requests (no warm-up) instead of loading for a duration;
    /// fails unless every one succeeds within `--duration`.
    #[arg(long)]
    requests: Option<u64>,
}

#[derive(Args)]
struct DownloadsArgs {
    #[command(flatten)]
    target: Target,
    /// Downloads in flight at once, each on its own keep-alive connection.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Body size of each download.
    #[arg(long, default_value_t = 1 << 20)]
    bytes: u64,
    /// Stop after this many downloads in all...
    #[arg(long, default_value_t = 2000)]
    max_downloads: u64,
    /// ...or after this many seconds, whichever comes first (downloads under way finish).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Processes whose summed RSS is sampled during the downloads (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Longest the whole test may take, in seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
}

#[derive(Args)]
struct StreamArgs {
    #[command(flatten)]
    target: Target,
    /// Body size.
    #[arg(long, default_value_t = GIB)]
    bytes: u64,
    /// Processes whose summed RSS is sampled during the transfer (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Longest the transfer may take, in seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
}

#[derive(Args)]
struct WsArgs {
    #[command(flatten)]
    target: Target,
    /// Sockets, one document each, each with one message in flight.
    #[arg(long, default_value_t = 32)]
    sockets: usize,
    /// Processes whose CPU time per round trip is measured (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Seconds of warm-up, not measured.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 8.0)]
    duration: f64,
}

#[derive(Args)]
struct IdleArgs {
    #[command(flatten)]
    target: Target,
    /// Idle WebSockets to open (each is checked with one echo first).
    #[arg(long, default_value_t = 9000)]
    sockets: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Processes whose summed RSS is measured (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Seconds to wait after the last socket opened before measuring.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// Seconds to hold the sockets after measuring (Ctrl-C ends it sooner).
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Longest opening all sockets may take, in seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let workers = match &cli.command {
        Command::Node(a) => a.workers,
        Command::Load { test } => match test {
            Test::Assets(a) => a.target.workers,
            Test::Download(a) | Test::Upload(a) => a.target.workers,
            Test::Downloads(a) => a.target.workers,
            Test::Ws(a) => a.target.workers,
        },
        Command::Idle(a) => a.target.workers,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadpeer: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Node(args) => node(args).await.map(|()| String::new()),
            Command::Load { test } => match test {
                Test::Assets(a) => assets(a).await,
                Test::Download(a) => download(a).await,
                Test::Upload(a) => upload(a).await,
                Test::Downloads(a) => downloads(a).await,
                Test::Ws(a) => websockets(a).await,
            },
            Command::Idle(a) => idle(a).await,
        }
    });
    match result {
        Ok(line) => {
            if !line.is_empty() {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadpeer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// --- the generated body ---------------------------------------------------------------

/// `CHUNK + PERIOD` bytes of the pattern: every slice a body needs starts in it.
fn pattern() -> &'static Bytes {
    static PATTERN: OnceLock<Bytes> = OnceLock::new();
    PATTERN.get_or_init(|| {
        (0..CHUNK + PERIOD)
            .map(|i| u8::try_from(i % PERIOD).unwrap_or_default())
            .collect::<Vec<u8>>()
            .into()
    })
}

/// Whether `data`, found at `offset` of a generated body, is the pattern there.
fn is_pattern(offset: u64, data: &[u8]) -> bool {
    data.chunks(CHUNK).enumerate().all(|(i, piece)| {
        let at = offset + (i * CHUNK) as u64;
        let start = (at % PERIOD as u64) as usize;
        pattern()[start..start + piece.len()] == *piece
    })
}

/// A body of `total` pattern bytes, sent as slices of one shared buffer (no copy, no
/// allocation per chunk).
struct PatternBody {
    sent: u64,
    total: u64,
}

impl PatternBody {
    fn new(total: u64) -> Self {
        PatternBody { sent: 0, total }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let left = self.total - self.sent;
        if left == 0 {
            return Poll::Ready(None);
        }
        let len = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        let start = (self.sent % PERIOD as u64) as usize;
        self.sent += len as u64;
        Poll::Ready(Some(Ok(Frame::data(pattern().slice(start..start + len)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.total
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total - self.sent)
    }
}

/// Small WebSocket buffers: thousands of idle sockets are the point of one test.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

// --- node -----------------------------------------------------------------------------

type NodeBody = Either<Full<Bytes>, PatternBody>;

/// What a node serves, built once, and what it counts.
struct Node {
    name: HeaderValue,
    discovery: Bytes,
    capabilities: Bytes,
    asset: Bytes,
    /// Asset requests answered (200 or 304).
    served_assets: AtomicU64,
    /// Large downloads answered.
    served_large: AtomicU64,
}

/// The requests a node knows.
enum Route {
    Discovery,
    Capabilities,
    Root,
    Page,
    Asset,
    Large(u64),
    Upload,
    WebSocket,
    Served,
    NotFound,
}

impl Route {
    fn of(method: &Method, path: &str, query: Option<&str>, upgrade: bool) -> Route {
        let get = method == Method::GET || method == Method::HEAD;
        match path {
            "/hosting/discovery" if get => return Route::Discovery,
            "/hosting/capabilities" if get => return Route::Capabilities,
            "/" if get => return Route::Root,
            SERVED_PATH if get => return Route::Served,
            PAGE_PATH if method == Method::POST => return Route::Page,
            LARGE_PATH if get => {
                let bytes = query
                    .and_then(|q| param(q, "bytes"))
                    .map_or(Some(GIB), |v| v.parse().ok());
                return match bytes {
                    Some(n) if n <= MAX_STREAM => Route::Large(n),
                    _ => Route::NotFound,
                };
            }
            _ => {}
        }
        if get && path.starts_with("/browser/") {
            return Route::Asset;
        }
        if let Some(rest) = path.strip_prefix("/cool/") {
            if rest.ends_with("/ws") && upgrade && method == Method::GET {
                return Route::WebSocket;
            }
            if rest.ends_with("/insertfile") && method == Method::POST {
                return Route::Upload;
            }
        }
        Route::NotFound
    }
}

/// The raw value of query parameter `name`.
fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

async fn node(args: NodeArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let base = format!("http://{}", listener.local_addr()?);
    let node = Arc::new(Node {
        name: HeaderValue::from_str(&args.name).context("--name is not a header value")?,
        discovery: DISCOVERY.replace(FIXTURE_ORIGIN, &base).into(),
        capabilities: Bytes::from_static(CAPABILITIES.as_bytes()),
        asset: pattern().slice(0..ASSET_BYTES),
        served_assets: AtomicU64::new(0),
        served_large: AtomicU64::new(0),
    });
    eprintln!("loadpeer node {} on {base}", args.name);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors: wait for some to close.
                    eprintln!("loadpeer node {}: accept: {e}", args.name);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            let service = service_fn(move |request| serve(request, Arc::clone(&node)));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn serve(
    mut request: Request<Incoming>,
    node: Arc<Node>,
) -> Result<Response<NodeBody>, Infallible> {
    let upgrade = request.headers().contains_key(header::UPGRADE);
    let route = Route::of(
        request.method(),
        request.uri().path(),
        request.uri().query(),
        upgrade,
    );
    let mut response = match route {
        Route::Discovery => full(node.discovery.clone(), "text/xml"),
        Route::Capabilities => full(node.capabilities.clone(), "application/json"),
        Route::Root => full(Bytes::from_static(b"OK"), "text/plain"),
        Route::Asset => {
            node.served_assets.fetch_add(1, Ordering::Relaxed);
            asset(&request, &node)
        }
        Route::Large(bytes) => {
            node.served_large.fetch_add(1, Ordering::Relaxed);
            let mut r = Response::new(Either::Right(PatternBody::new(bytes)));
            let headers = r.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            // A generated file: no proxy may keep it.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Route::Served => full(
            Bytes::from(format!(
                "assets={} large={}",
                node.served_assets.load(Ordering::Relaxed),
                node.served_large.load(Ordering::Relaxed)
            )),
            "text/plain",
        ),
        Route::Page => page(request).await,
        Route::Upload => receive(request).await,
        Route::WebSocket => accept_websocket(&mut request),
        Route::NotFound => status(StatusCode::NOT_FOUND, "not a loadpeer path"),
    };
    response
        .headers_mut()
        .insert(NODE_HEADER, node.name.clone());
    Ok(response)
}

/// The versioned asset, or `304 Not Modified` when the request names its `ETag`.
fn asset(request: &Request<Incoming>, node: &Node) -> Response<NodeBody> {
    let fresh = request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            matches!(tag.trim(), "*" | ASSET_ETAG) || tag.trim() == format!("W/{ASSET_ETAG}")
        });
    let mut response = if fresh {
        let mut r = Response::new(Either::Left(Full::new(Bytes::new())));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        full(node.asset.clone(), "application/javascript")
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(ASSET_CACHE_CONTROL),
    );
    headers.insert(header::ETAG, HeaderValue::from_static(ASSET_ETAG));
    response
}

fn full(body: Bytes, content_type: &'static str) -> Response<NodeBody> {
    let mut response = Response::new(Either::Left(Full::new(body)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn status(code: StatusCode, message: &'static str) -> Response<NodeBody> {
    let mut response = full(Bytes::from_static(message.as_bytes()), "text/plain");
    *response.status_mut() = code;
    response
}

/// The editor page: answers with the raw `WOPISrc` it was opened with (after reading the
/// small open form, as coolwsd does).
async fn page(request: Request<Incoming>) -> Response<NodeBody> {
    let wopi_src = request
        .uri()
        .query()
        .and_then(|q| param(q, "WOPISrc"))
        .map(str::to_owned);
    if Limited::new(request.into_body(), 64 * 1024)
        .collect()
        .await
        .is_err()
    {
        return status(StatusCode::BAD_REQUEST, "the open form broke off");
    }
    match wopi_src {
        Some(w) => full(Bytes::from(w), "text/plain"),
        None => status(StatusCode::BAD_REQUEST, "no WOPISrc"),
    }
}

/// The upload sink: reads the body chunk by chunk, checks the pattern, answers
/// `received=N`.
async fn receive(request: Request<Incoming>) -> Response<NodeBody> {
    let mut body = request.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return status(StatusCode::BAD_REQUEST, "the upload broke off");
        };
        if let Ok(data) = frame.into_data() {
            if !is_pattern(received, &data) {
                return status(StatusCode::UNPROCESSABLE_ENTITY, "not the pattern");
            }
            received += data.len() as u64;
        }
    }
    full(Bytes::from(format!("received={received}")), "text/plain")
}

/// Answers the upgrade and echoes every message on the upgraded connection.
fn accept_websocket(request: &mut Request<Incoming>) -> Response<NodeBody> {
    let Some(key) = request.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return status(StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key");
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return status(StatusCode::BAD_REQUEST, "bad Sec-WebSocket-Key");
    };
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(ws_config()),
            )
            .await;
            echo(ws).await;
        }
    });
    let mut response = Response::new(Either::Left(Full::new(Bytes::new())));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) {
    while let Some(Ok(message)) = ws.next().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => return,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
}

// --- client: documents ----------------------------------------------------------------

/// The Nextcloud `WOPISrc` of document `i`.
fn host_wopi_src(seed: &str, i: usize) -> String {
    format!("{HOST_ORIGIN}/index.php/apps/richdocuments/wopi/files/{i}_oc{seed}")
}

/// The encoded `WOPISrc` traffic of documents `0..count` carries. With `open`, each is
/// opened through officeswitch over a few keep-alive connections first.
async fn document_keys(target: &Target, count: usize) -> anyhow::Result<Vec<String>> {
    match target.wopisrc {
        KeyMode::Host => Ok((0..count)
            .map(|i| uri_component(&host_wopi_src(&target.seed, i)))
            .collect()),
        KeyMode::Open => {
            let lanes = count.clamp(1, 8);
            let per_lane = count.div_ceil(lanes);
            let opened = stream::iter(0..lanes)
                .map(|lane| {
                    let target = target.clone();
                    tokio::spawn(async move {
                        let mut send = http1::<Full<Bytes>>(target.addr).await?;
                        let mut keys = Vec::new();
                        for i in lane * per_lane..((lane + 1) * per_lane).min(count) {
                            keys.push((i, open_document(&mut send, &target, i).await?));
                        }
                        anyhow::Ok(keys)
                    })
                })
                .buffer_unordered(lanes)
                .collect::<Vec<_>>()
                .await;
            let mut keys = vec![String::new(); count];
            for lane in opened {
                for (i, key) in lane.context("an open task failed")?? {
                    keys[i] = key;
                }
            }
            Ok(keys)
        }
    }
}

/// Opens document `i` through officeswitch as a browser does: the open POST, then the
/// same POST again at the `307`'s `Location` (officeswitch's address of the editor page,
/// with its ticket), which officeswitch passes to the node. The stand-in page answers with
/// the `WOPISrc` officeswitch gave it (encoded, as it appears in a query).
async fn open_document(
    send: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    i: usize,
) -> anyhow::Result<String> {
    let mut uri = format!(
        "{OPEN_PATH}?WOPISrc={}&lang=en",
        uri_component(&host_wopi_src(&target.seed, i))
    );
    // Bounded: the open's redirect, and at most two more.
    for _ in 0..3 {
        let request = Request::post(uri.as_str())
            .header(header::HOST, target.addr.to_string())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(
                b"access_token=loadpeer&access_token_ttl=0",
            )))?;
        send.ready().await?;
        let response = send.send_request(request).await?;
        let code = response.status();
        let location = response.headers().get(header::LOCATION).cloned();
        let body = Limited::new(response.into_body(), 4096)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the open's answer: {e}"))?
            .to_bytes();
        if code == StatusCode::TEMPORARY_REDIRECT {
            let location = location
                .as_ref()
                .and_then(|l| l.to_str().ok())
                .and_then(|l| l.parse::<http::Uri>().ok())
                .with_context(|| {
                    format!("open of document {i}: a 307 without a usable Location")
                })?;
            // officeswitch sends the browser to its own origin: same connection.
            uri = location
                .path_and_query()
                .map(|pq| pq.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            continue;
        }
        ensure!(
            code == StatusCode::OK,
            "open of document {i} answered {code}: {}",
            String::from_utf8_lossy(&body)
        );
        let key = String::from_utf8(body.to_vec()).context("the page's WOPISrc is not UTF-8")?;
        ensure!(
            key.contains("%2Fwopi%2Ffiles%2F"),
            "the editor was opened with {key}, not an officeswitch WOPISrc"
        );
        return Ok(key);
    }
    bail!("open of document {i}: more than two redirects")
}

/// A keep-alive HTTP/1.1 connection.
async fn http1<B>(addr: SocketAddr) -> anyhow::Result<SendRequest<B>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(send)
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // Microseconds, 1 us to 60 s, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn secs(s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| anyhow!("{s} is not a number of seconds"))
}

// --- client: assets -------------------------------------------------------------------

/// What one asset connection measured.
struct AssetTally {
    latency: Histogram<u64>,
    /// Requests answered in full and correctly within the measured window.
    ok: u64,
    /// All requests answered in full and correctly, warm-up included.
    sent: u64,
    errors: u64,
}

async fn assets(args: AssetArgs) -> anyhow::Result<String> {
    ensure!(args.connections > 0, "--connections must be positive");
    let started = Instant::now();
    // With a request count there is no warm-up and the duration is only a limit.
    let warmup = match args.requests {
        Some(_) => Duration::ZERO,
        None => secs(args.warmup)?,
    };
    let from = started + warmup;
    let window = secs(args.duration)?;
    let end = from + window;
    let tickets = args.requests.map(|n| Arc::new(Tickets::new(n)));
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            tokio::spawn(asset_connection(
                args.target.addr,
                from,
                end,
                tickets.clone(),
            ))
        })
        .collect();
    tokio::time::sleep_until(from.into()).await;
    let cpu = CpuWatch::start(&args.pids);
    let mut latency = histogram()?;
    let (mut ok, mut sent, mut errors) = (0, 0, 0);
    for worker in workers {
        let tally = worker.await.context("an asset connection panicked")??;
        latency.add(&tally.latency)?;
        ok += tally.ok;
        sent += tally.sent;
        errors += tally.errors;
    }
    ensure!(ok > 0, "no request succeeded ({errors} errors)");
    // A fixed count is measured from the start to the last answer.
    let measured = match args.requests {
        Some(n) => {
            ensure!(
                ok == n && errors == 0,
                "{ok} of {n} requests succeeded ({errors} errors) within {}s",
                args.duration
            );
            started.elapsed()
        }
        None => window,
    };
    Ok(format!(
        "rps={:.0} p50_ms={:.3} p99_ms={:.3} requests={ok} sent={sent} errors={errors}{}",
        ok as f64 / measured.as_secs_f64(),
        latency.value_at_quantile(0.50) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        cpu.finish(ok),
    ))
}

/// A fixed number of requests shared by several connections.
struct Tickets {
    taken: AtomicU64,
    total: u64,
}

impl Tickets {
    fn new(total: u64) -> Tickets {
        Tickets {
            taken: AtomicU64::new(0),
            total,
        }
    }

    /// Whether one more request may be sent.
    fn take(&self) -> bool {
        self.taken
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < self.total).then_some(t + 1)
            })
            .is_ok()
    }
}

/// One keep-alive connection sending asset requests back to back until `end` (or until
/// the `tickets` run out); requests that start after `from` are counted. Every answer
/// must be the asset, byte for byte. A connection the server ends between requests (nginx
/// does after 1,000) is replaced; one that fails mid-request is an error. At most 100
/// connects may fail.
async fn asset_connection(
    addr: SocketAddr,
    from: Instant,
    end: Instant,
    tickets: Option<Arc<Tickets>>,
) -> anyhow::Result<AssetTally> {
    let mut tally = AssetTally {
        latency: histogram()?,
        ok: 0,
        sent: 0,
        errors: 0,
    };
    let host = addr.to_string();
    let mut connection: Option<SendRequest<Empty<Bytes>>> = None;
    let mut failed_connects = 0;
    while Instant::now() < end {
        let send = match &mut connection {
            Some(s) if !s.is_closed() => s,
            _ => match http1(addr).await {
                Ok(s) => connection.insert(s),
                Err(e) => {
                    failed_connects += 1;
                    tally.errors += 1;
                    ensure!(failed_connects < 100, "{addr}: 100 connects failed: {e:#}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if send.ready().await.is_err() {
            connection = None;
            continue;
        }
        if tickets.as_ref().is_some_and(|t| !t.take()) {
            break;
        }
        let request = Request::get(ASSET_PATH)
            .header(header::HOST, &host)
            .body(Empty::new())?;
        let started = Instant::now();
        let outcome = async {
            let response = send.send_request(request).await?;
            let code = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok(code == StatusCode::OK && body.len() == ASSET_BYTES && is_pattern(0, &body))
        }
        .await;
        let counted = started >= from;
        match outcome {
            Ok(true) => {
                tally.sent += 1;
                if counted {
                    tally.latency.saturating_record(micros(started.elapsed()));
                    tally.ok += 1;
                }
            }
            Ok(false) => tally.errors += u64::from(counted),
            Err(_) => {
                tally.errors += u64::from(counted);
                connection = None;
            }
        }
    }
    Ok(tally)
}

/// CPU time (user and system) some processes spend over a measurement window.
struct CpuWatch {
    pids: Vec<u32>,
    start: Option<u64>,
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: u64 = 100;

/// The summed `utime + stime` of `pids` (threads that ended included), in clock ticks;
/// `None` when a process is gone.
fn cpu_ticks(pids: &[u32]) -> Option<u64> {
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name (which may hold spaces), from field 3 on:
            // utime and stime are fields 14 and 15.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
            let user: u64 = fields.next()?.parse().ok()?;
            let system: u64 = fields.next()?.parse().ok()?;
            Some(user + system)
        })
        .sum()
}

impl CpuWatch {
    fn start(pids: &[u32]) -> CpuWatch {
        CpuWatch {
            pids: pids.to_vec(),
            start: cpu_ticks(pids),
        }
    }

    /// ` cpu_us=N` (CPU microseconds per operation over `operations`), or nothing when no
    /// process is watched.
    fn finish(self, operations: u64) -> String {
        match (self.start, cpu_ticks(&self.pids)) {
            (Some(start), Some(end)) if !self.pids.is_empty() && operations > 0 => format!(
                " cpu_us={:.1}",
                end.saturating_sub(start) as f64 * 1e6 / TICKS_PER_SEC as f64 / operations as f64
            ),
            _ => String::new(),
        }
    }
}

// --- client: large bodies -------------------------------------------------------------

/// Samples the summed `VmRSS` of some processes on its own thread (every 10 ms, so a
/// busy runtime cannot delay it), and resets their `VmHWM` so the high-water mark read at
/// the end covers this transfer only.
struct RssWatch {
    pids: Vec<u32>,
    before: u64,
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
}

/// A `kB` field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The sum of a status field over `pids`; `None` when a process is gone.
fn summed_kib(pids: &[u32], field: &str) -> Option<u64> {
    pids.iter().map(|&p| status_kib(p, field)).sum()
}

impl RssWatch {
    fn start(pids: &[u32]) -> anyhow::Result<RssWatch> {
        let before = summed_kib(pids, "VmRSS")
            .with_context(|| format!("cannot read the RSS of {pids:?}"))?;
        for pid in pids {
            // "5" resets the peak RSS (VmHWM); where that is not allowed, the 10 ms
            // samples alone give the peak.
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let watched = pids.to_vec();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            // Bounded: at most 10 minutes of samples.
            for _ in 0..60_000 {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                peak = peak.max(summed_kib(&watched, "VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        Ok(RssWatch {
            pids: pids.to_vec(),
            before,
            stop,
            sampler,
        })
    }

    /// `rss_before_kib`, `rss_peak_kib` (the larger of the sampled peak and the summed
    /// `VmHWM`) and `rss_after_kib`.
    fn finish(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let sampled = self.sampler.join().unwrap_or(0);
        let hwm = summed_kib(&self.pids, "VmHWM").unwrap_or(0);
        let after = summed_kib(&self.pids, "VmRSS").unwrap_or(0);
        format!(
            "rss_before_kib={} rss_peak_kib={} rss_after_kib={after}",
            self.before,
            sampled.max(hwm)
        )
    }
}

async fn download(args: StreamArgs) -> anyhow::Result<String> {
    let watch = (!args.pids.is_empty())
        .then(|| RssWatch::start(&args.pids))
        .transpose()?;
    let addr = args.target.addr;
    let transfer = async {
        let mut send = http1::<Empty<Bytes>>(addr).await?;
        let request = Request::get(format!("{LARGE_PATH}?bytes={}", args.bytes))
            .header(header::HOST, addr.to_string())
            .body(Empty::new())?;
        let started = Instant::now();
        let response = send.send_request(request).await?;
        ensure!(
            response.status() == StatusCode::OK,
            "download answered {}",
            response.status()
        );
        let mut body = response.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                ensure!(
                    is_pattern(received, &data),
                    "wrong bytes at offset {received}"
                );
                received += data.len() as u64;
            }
        }
        ensure!(
            received == args.bytes,
            "received {received} of {} bytes",
            args.bytes
        );
        anyhow::Ok(started.elapsed())
    };
    let elapsed = tokio::time::timeout(secs(args.timeout)?, transfer)
        .await
        .map_err(|_| anyhow!("the download took longer than {}s", args.timeout))??;
    Ok(stream_line(args.bytes, elapsed, watch))
}

async fn upload(args: StreamArgs) -> anyhow::Result<String> {
    let key = document_keys(&args.target, 1)
        .await?
        .pop()
        .unwrap_or_default();
    let watch = (!args.pids.is_empty())
        .then(|| RssWatch::start(&args.pids))
        .transpose()?;
    let addr = args.target.addr;
    let transfer = async {
        let mut send = http1::<PatternBody>(addr).await?;
        let request = Request::post(format!("/cool/{key}/insertfile?WOPISrc={key}"))
            .header(header::HOST, addr.to_string())
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(PatternBody::new(args.bytes))?;
        let started = Instant::now();
        let response = send.send_request(request).await?;
        let code = response.status();
        let body = Limited::new(response.into_body(), 4096)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the upload's answer: {e}"))?
            .to_bytes();
        let expected = format!("received={}", args.bytes);
        ensure!(
            code == StatusCode::OK && body == expected.as_bytes(),
            "upload answered {code}: {}",
            String::from_utf8_lossy(&body)
        );
        anyhow::Ok(started.elapsed())
    };
    let elapsed = tokio::time::timeout(secs(args.timeout)?, transfer)
        .await
        .map_err(|_| anyhow!("the upload took longer than {}s", args.timeout))??;
    Ok(stream_line(args.bytes, elapsed, watch))
}

/// `--concurrency` connections, each downloading `--bytes` again and again (every body
/// checked byte for byte) until `--max-downloads` are done in all or `--duration` has
/// passed, while the proxy's RSS is sampled.
async fn downloads(args: DownloadsArgs) -> anyhow::Result<String> {
    ensure!(args.concurrency > 0, "--concurrency must be positive");
    ensure!(args.bytes <= MAX_STREAM, "--bytes is over {MAX_STREAM}");
    let addr = args.target.addr;
    // Connect first, so the RSS covers the downloads and not the handshakes.
    let mut connections = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        connections.push(http1::<Empty<Bytes>>(addr).await?);
    }
    let watch = (!args.pids.is_empty())
        .then(|| RssWatch::start(&args.pids))
        .transpose()?;
    let tickets = Arc::new(Tickets::new(args.max_downloads));
    let started = Instant::now();
    let end = started + secs(args.duration)?;
    let bytes = args.bytes;
    let workers: Vec<_> = connections
        .into_iter()
        .map(|mut send| {
            let tickets = Arc::clone(&tickets);
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < end && tickets.take() {
                    if send.is_closed() {
                        send = http1(addr).await?;
                    }
                    send.ready().await?;
                    let request = Request::get(format!("{LARGE_PATH}?bytes={bytes}"))
                        .header(header::HOST, addr.to_string())
                        .body(Empty::new())?;
                    let response = send.send_request(request).await?;
                    ensure!(
                        response.status() == StatusCode::OK,
                        "download answered {}",
                        response.status()
                    );
                    let mut body = response.into_body();
                    let mut received = 0u64;
                    while let Some(frame) = body.frame().await {
                        if let Ok(data) = frame?.into_data() {
                            ensure!(
                                is_pattern(received, &data),
                                "wrong bytes at offset {received}"
                            );
                            received += data.len() as u64;
                        }
                    }
                    ensure!(received == bytes, "received {received} of {bytes} bytes");
                    done += 1;
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    let all = async {
        let mut done = 0;
        for worker in workers {
            done += worker.await.context("a download task panicked")??;
        }
        anyhow::Ok(done)
    };
    let done = tokio::time::timeout(secs(args.timeout)?, all)
        .await
        .map_err(|_| anyhow!("the downloads took longer than {}s", args.timeout))??;
    let elapsed = started.elapsed();
    ensure!(done > 0, "no download finished");
    let mut line = format!(
        "downloads={done} concurrency={} bytes={bytes} mib_s={:.0} secs={:.2}",
        args.concurrency,
        (done * bytes) as f64 / (1 << 20) as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    if let Some(watch) = watch {
        line.push(' ');
        line.push_str(&watch.finish());
    }
    Ok(line)
}

fn stream_line(bytes: u64, elapsed: Duration, watch: Option<RssWatch>) -> String {
    let mut line = format!(
        "mib_s={:.0} bytes={bytes} secs={:.2}",
        bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    if let Some(watch) = watch {
        line.push(' ');
        line.push_str(&watch.finish());
    }
    line
}

// --- client: WebSockets ---------------------------------------------------------------

type ClientSocket = WebSocketStream<TcpStream>;

/// Opens the document WebSocket of `key` (an encoded `WOPISrc`) as Collabora's page does;
/// returns it and the node that answered.
async fn open_websocket(addr: SocketAddr, key: &str) -> anyhow::Result<(ClientSocket, String)> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}/cool/{key}/ws?WOPISrc={key}&compat=/ws");
    let (ws, response) =
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(ws_config()))
            .await
            .context("WebSocket handshake")?;
    let node = response
        .headers()
        .get(NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_string();
    Ok((ws, node))
}

/// Sends `payload` and waits for the same bytes back.
async fn round_trip(ws: &mut ClientSocket, payload: Bytes) -> anyhow::Result<()> {
    ws.send(Message::Binary(payload.clone())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(echoed))) => {
                ensure!(echoed == payload, "the echo differs from what was sent");
                return Ok(());
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => bail!("expected the echo, got {other:?}"),
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the WebSocket closed before the echo"),
        }
    }
}

/// A message of [`WS_MESSAGE`] bytes that names its socket and sequence number.
fn message(socket: usize, seq: u64) -> Bytes {
    let mut text = format!("socket {socket} message {seq} ").into_bytes();
    text.resize(WS_MESSAGE, b'.');
    Bytes::from(text)
}

/// `n1:16,n2:16`: how many sockets each node answered.
fn node_counts<'a>(nodes: impl Iterator<Item = &'a String>) -> String {
    let mut counts = BTreeMap::new();
    for node in nodes {
        *counts.entry(node.as_str()).or_insert(0usize) += 1;
    }
    counts
        .iter()
        .map(|(node, n)| format!("{node}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn websockets(args: WsArgs) -> anyhow::Result<String> {
    ensure!(args.sockets > 0, "--sockets must be positive");
    let keys = document_keys(&args.target, args.sockets).await?;
    let mut sockets = Vec::with_capacity(keys.len());
    for key in &keys {
        sockets.push(open_websocket(args.target.addr, key).await?);
    }
    let nodes = node_counts(sockets.iter().map(|(_, n)| n));
    let from = Instant::now() + secs(args.warmup)?;
    let window = secs(args.duration)?;
    let end = from + window;
    let workers: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, (mut ws, _))| {
            tokio::spawn(async move {
                let mut latency = histogram()?;
                let mut seq = 0u64;
                while Instant::now() < end {
                    let started = Instant::now();
                    round_trip(&mut ws, message(i, seq)).await?;
                    seq += 1;
                    if started >= from {
                        latency.saturating_record(micros(started.elapsed()));
                    }
                }
                let _ = ws.close(None).await;
                anyhow::Ok(latency)
            })
        })
        .collect();
    tokio::time::sleep_until(from.into()).await;
    let cpu = CpuWatch::start(&args.pids);
    let mut latency = histogram()?;
    for worker in workers {
        latency.add(&worker.await.context("a WebSocket task panicked")??)?;
    }
    Ok(format!(
        "rt_s={:.0} p50_ms={:.3} p99_ms={:.3} round_trips={} nodes={nodes}{}",
        latency.len() as f64 / window.as_secs_f64(),
        latency.value_at_quantile(0.50) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        latency.len(),
        cpu.finish(latency.len()),
    ))
}

async fn idle(args: IdleArgs) -> anyhow::Result<String> {
    ensure!(args.sockets > 0, "--sockets must be positive");
    let keys = document_keys(&args.target, args.sockets).await?;
    let rss = |field| summed_kib(&args.pids, field).unwrap_or(0);
    let before = rss("VmRSS");
    let started = Instant::now();
    let addr = args.target.addr;
    let opening = stream::iter(keys.into_iter().enumerate())
        .map(|(i, key)| async move {
            let (mut ws, node) = open_websocket(addr, &key).await?;
            round_trip(&mut ws, message(i, 0)).await?;
            anyhow::Ok((ws, node))
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect::<Vec<_>>();
    let opened = tokio::time::timeout(secs(args.timeout)?, opening)
        .await
        .map_err(|_| {
            anyhow!(
                "opening {} sockets took over {}s",
                args.sockets,
                args.timeout
            )
        })?;
    let open_secs = started.elapsed().as_secs_f64();
    let mut sockets = Vec::with_capacity(opened.len());
    let mut first_error = None;
    for result in opened {
        match result {
            Ok(pair) => sockets.push(pair),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e.context(format!(
            "{} of {} sockets failed",
            args.sockets - sockets.len(),
            args.sockets
        )));
    }
    let nodes = node_counts(sockets.iter().map(|(_, n)| n));
    tokio::time::sleep(secs(args.settle)?).await;
    let held = rss("VmRSS");
    let pss = summed_kib_pss(&args.pids);
    eprintln!(
        "loadpeer idle: {} sockets open ({nodes}), RSS {held} KiB",
        sockets.len()
    );
    tokio::select! {
        () = tokio::time::sleep(secs(args.hold)?) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(sockets);
    tokio::time::sleep(secs(args.settle)?).await;
    let after = rss("VmRSS");
    Ok(format!(
        "sockets={} open_secs={open_secs:.1} rss_before_kib={before} rss_idle_kib={held} \
         pss_idle_kib={pss} per_socket_kib={:.2} rss_after_kib={after} nodes={nodes}",
        args.sockets,
        held.saturating_sub(before) as f64 / args.sockets as f64,
    ))
}

/// The summed proportional set size (shared pages split between the processes sharing
/// them) of `pids`, from `smaps_rollup`; 0 where the kernel does not offer it.
fn summed_kib_pss(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
            rollup
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}
