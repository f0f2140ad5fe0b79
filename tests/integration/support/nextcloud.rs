//! A stand-in Nextcloud WOPI host: a real loopback HTTP server answering the WOPI calls
//! editors make, modelled on richdocuments' `WopiController` (see
//! `../shared/notes/richdocuments.md` and `wopi-protocol.md`).
//!
//! Endpoints, under `/index.php/apps/richdocuments/wopi/files/<fileId>`:
//!
//! | request | operation |
//! |---|---|
//! | `GET <fileId>` | CheckFileInfo: JSON with `BaseFileName`, `Size`, `Version`, `OwnerId`, `UserId`, `UserCanWrite`, `PostMessageOrigin`, ... |
//! | `GET <fileId>/contents` | GetFile, streamed (412 above `X-WOPI-MaxExpectedSize`) |
//! | `POST <fileId>/contents` + `X-WOPI-Override: PUT` | PutFile: the body is streamed into a SHA-256 and a length, never buffered; 200 with `X-WOPI-ItemVersion` |
//! | `POST <fileId>` + `X-WOPI-Override: LOCK` (+ `X-WOPI-OldLock`), `UNLOCK`, `REFRESH_LOCK`, `GET_LOCK` | one in-memory lock per file; 409 with `X-WOPI-Lock` on a mismatch |
//! | other overrides | 501 |
//!
//! Tokens: the `access_token` query parameter must be a token the test granted for that
//! file id ([`StandInNextcloud::grant`]), else 403, as richdocuments answers an unknown
//! token; a read-only grant gets 403 on every POST.
//!
//! Where this deliberately follows the WOPI specification rather than richdocuments: lock
//! conflicts answer 409 with `X-WOPI-Lock` (richdocuments answers 423 without it), and
//! PutFile checks the lock when the file is locked (an unlocked file accepts any PutFile,
//! as richdocuments does). PutFile does not check `X-COOL-WOPI-Timestamp`.
//!
//! Proofs: every request goes through [`verify_proof`], which today only records the proof
//! headers ([`ProofCheck`]); verification against an editor's (or officeswitch's) key is
//! the seam left for the WOPI proof issue.
//!
//! Every request is recorded ([`StandInNextcloud::requests`]), as received, with the
//! status it got. Self-contained (only external crates), like `editor.rs`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The path every WOPI file URL of richdocuments starts with.
pub const WOPI_FILES_PATH: &str = "/index.php/apps/richdocuments/wopi/files/";

/// PutFile bodies up to this size are kept, so a later GetFile returns them; larger ones
/// are only hashed (GetFile then answers 500, saying so).
pub const KEPT_PUT_LIMIT: u64 = 1 << 20;

/// The period of [`StandInNextcloud::add_pattern_file`]'s content: byte `i` is
/// `(i % 251) as u8`, the pattern the stand-in editors' big download uses.
const PATTERN_PERIOD: u64 = 251;

/// GetFile sends contents in chunks of this size.
const CHUNK: usize = 64 * 1024;

/// The body type of every response.
type Body = BoxBody<Bytes, Infallible>;

/// A WOPI operation, from the method, the path and `X-WOPI-Override`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WopiOperation {
    /// `GET <fileId>`.
    CheckFileInfo,
    /// `GET <fileId>/contents`.
    GetFile,
    /// `POST <fileId>/contents`, `X-WOPI-Override: PUT`.
    PutFile,
    /// `POST <fileId>`, `X-WOPI-Override: LOCK` (with `X-WOPI-OldLock`: UnlockAndRelock).
    Lock,
    /// `POST <fileId>`, `X-WOPI-Override: UNLOCK`.
    Unlock,
    /// `POST <fileId>`, `X-WOPI-Override: REFRESH_LOCK`.
    RefreshLock,
    /// `POST <fileId>`, `X-WOPI-Override: GET_LOCK`.
    GetLock,
    /// Anything else under a file (`PUT_RELATIVE`, `RENAME_FILE`, no override...): 501.
    Other(String),
}

/// The proof headers of a request, as [`verify_proof`] found them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofHeaders {
    /// The URL the proof must have signed, as this host sees the request:
    /// `http://` + `Host` + path and query.
    pub url: String,
    /// The `access_token` query parameter (decoded), the other signed part.
    pub access_token: String,
    /// `X-WOPI-TimeStamp`.
    pub timestamp: Option<String>,
    /// `X-WOPI-Proof`.
    pub proof: Option<String>,
    /// `X-WOPI-ProofOld`.
    pub proof_old: Option<String>,
}

/// What the proof check concluded for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofCheck {
    /// No `X-WOPI-Proof` header.
    Missing,
    /// Proof headers present, recorded, not verified. Verification (issue 4) replaces this
    /// with a verdict; an invalid proof must then be answered 500, per the WOPI spec.
    Unverified(ProofHeaders),
}

/// One request as the stand-in host received it.
#[derive(Clone, Debug)]
pub struct WopiRequest {
    /// The request method.
    pub method: Method,
    /// Path plus query string, exactly as received.
    pub path_and_query: String,
    /// All request headers.
    pub headers: HeaderMap,
    /// The file id of a WOPI files URL (`42_ocabc123`), else `None`.
    pub file_id: Option<String>,
    /// The operation of a WOPI files URL, else `None`.
    pub operation: Option<WopiOperation>,
    /// The proof headers, see [`verify_proof`].
    pub proof: ProofCheck,
    /// The status answered; `None` while the request is still being served (a PutFile
    /// whose body is still arriving).
    pub status: Option<StatusCode>,
}

impl WopiRequest {
    /// The `access_token` query parameter, decoded.
    pub fn access_token(&self) -> Option<String> {
        let (_, query) = self.path_and_query.split_once('?')?;
        query_param(query, "access_token")
    }
}

/// One successful PutFile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRecord {
    /// The file id.
    pub file_id: String,
    /// The body length in bytes.
    pub len: u64,
    /// The body's SHA-256, lower-case hex.
    pub sha256: String,
}

/// A running stand-in Nextcloud. Dropping it shuts the server down without waiting.
pub struct StandInNextcloud {
    /// The bound address.
    addr: SocketAddr,
    /// Files, grants, locks and the request log.
    state: Arc<State>,
    /// `true` stops the server.
    shutdown: watch::Sender<bool>,
    /// The accept loop.
    server: Option<JoinHandle<()>>,
}

impl StandInNextcloud {
    /// Starts a stand-in host on `127.0.0.1:0`, with no files and no grants.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("stand-in Nextcloud: cannot bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("stand-in Nextcloud: bound address");
        let state = Arc::new(State {
            origin: format!("http://{addr}"),
            files: Mutex::new(HashMap::new()),
            grants: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            puts: Mutex::new(Vec::new()),
        });
        let (shutdown, stop) = watch::channel(false);
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&state), stop));
        tracing::debug!(%addr, "stand-in Nextcloud started");
        Self {
            addr,
            state,
            shutdown,
            server: Some(server),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL Nextcloud is reached on, `http://127.0.0.1:PORT` (no webroot).
    pub fn url(&self) -> String {
        self.state.origin.clone()
    }

    /// The origin (scheme, host, port): what rules name an organisation by, and the
    /// `PostMessageOrigin` of CheckFileInfo. The same as [`StandInNextcloud::url`] since
    /// the stand-in has no webroot.
    pub fn origin(&self) -> String {
        self.state.origin.clone()
    }

    /// The WOPI file URL of `file_id`, as richdocuments puts it in `WOPISrc`:
    /// `http://127.0.0.1:PORT/index.php/apps/richdocuments/wopi/files/42_ocabc123`.
    pub fn wopi_src(&self, file_id: &str) -> String {
        format!("{}{WOPI_FILES_PATH}{file_id}", self.state.origin)
    }

    /// Adds (or replaces) a file, at version 1, unlocked.
    pub fn add_file(&self, file_id: &str, name: &str, bytes: Vec<u8>) {
        self.insert_file(file_id, name, Content::Bytes(Bytes::from(bytes)));
    }

    /// Adds (or replaces) a file of `size` pattern bytes (byte `i` is `(i % 251) as u8`),
    /// generated as GetFile sends it, so a file can be larger than memory.
    pub fn add_pattern_file(&self, file_id: &str, name: &str, size: u64) {
        self.insert_file(file_id, name, Content::Pattern(size));
    }

    fn insert_file(&self, file_id: &str, name: &str, content: Content) {
        lock(&self.state.files).insert(
            file_id.to_owned(),
            File {
                name: name.to_owned(),
                content,
                version: 1,
                modified: SystemTime::now(),
                lock: None,
            },
        );
    }

    /// Lets `token` read and write `file_id`.
    pub fn grant(&self, file_id: &str, token: &str) {
        lock(&self.state.grants).insert((file_id.to_owned(), token.to_owned()), true);
    }

    /// Lets `token` read `file_id` only: `UserCanWrite` false, 403 on every POST.
    pub fn grant_read_only(&self, file_id: &str, token: &str) {
        lock(&self.state.grants).insert((file_id.to_owned(), token.to_owned()), false);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<WopiRequest> {
        lock(&self.state.requests).clone()
    }

    /// Every successful PutFile as `(file_id, len, sha256_hex)`, in order.
    pub fn puts(&self) -> Vec<(String, u64, String)> {
        lock(&self.state.puts)
            .iter()
            .map(|put| (put.file_id.clone(), put.len, put.sha256.clone()))
            .collect()
    }

    /// The lock currently held on `file_id`, if any.
    pub fn lock_of(&self, file_id: &str) -> Option<String> {
        lock(&self.state.files)
            .get(file_id)
            .and_then(|file| file.lock.clone())
    }

    /// The current version of `file_id` (1 when added, +1 per PutFile).
    pub fn version_of(&self, file_id: &str) -> Option<u64> {
        lock(&self.state.files)
            .get(file_id)
            .map(|file| file.version)
    }

    /// Stops accepting, closes every connection and waits until the server is gone.
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        if let Some(server) = self.server.take()
            && let Err(err) = server.await
            && err.is_panic()
        {
            std::panic::resume_unwind(err.into_panic());
        }
        tracing::debug!(addr = %self.addr, "stand-in Nextcloud stopped");
    }
}

impl Drop for StandInNextcloud {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// What a file holds.
#[derive(Clone)]
enum Content {
    /// Bytes given by the test or by a small PutFile.
    Bytes(Bytes),
    /// `n` pattern bytes, generated on the fly.
    Pattern(u64),
    /// A PutFile larger than [`KEPT_PUT_LIMIT`]: only its length is known.
    Discarded(u64),
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes.len() as u64,
            Self::Pattern(len) | Self::Discarded(len) => *len,
        }
    }
}

/// One file of the host.
struct File {
    name: String,
    content: Content,
    version: u64,
    modified: SystemTime,
    lock: Option<String>,
}

/// State shared by the connection tasks and the handle.
struct State {
    /// `http://127.0.0.1:PORT`.
    origin: String,
    /// File id -> file.
    files: Mutex<HashMap<String, File>>,
    /// (file id, token) -> writable.
    grants: Mutex<HashMap<(String, String), bool>>,
    /// Every request, in order.
    requests: Mutex<Vec<WopiRequest>>,
    /// Every successful PutFile, in order.
    puts: Mutex<Vec<PutRecord>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = Arc::clone(&state);
                    connections.spawn(async move {
                        let service = service_fn(move |req| {
                            let state = Arc::clone(&state);
                            async move { Ok::<_, Infallible>(handle(&state, req).await) }
                        });
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let connection =
                            pin!(builder.serve_connection(TokioIo::new(stream), service));
                        if let Err(err) = connection.await {
                            tracing::debug!(%err, "stand-in Nextcloud: connection error");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(%err, "stand-in Nextcloud: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Dropping the connection tasks closes their sockets.
    connections.shutdown().await;
}

/// Resolves once stop is requested or the handle is gone. Reducing the result to a bool
/// drops the non-`Send` guard of `wait_for` before any later await.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _stop_requested = stop.wait_for(|stopped| *stopped).await.is_ok();
}

/// Records the request, answers it, and records the status.
async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), ToString::to_string);
    let target = parse_target(req.method(), req.uri().path(), req.headers());
    let token = req
        .uri()
        .query()
        .and_then(|query| query_param(query, "access_token"));
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or_default();
    let url = format!("http://{host}{path_and_query}");
    let proof = verify_proof(&url, token.as_deref().unwrap_or_default(), req.headers());
    let index = {
        let mut requests = lock(&state.requests);
        requests.push(WopiRequest {
            method: req.method().clone(),
            path_and_query,
            headers: req.headers().clone(),
            file_id: target.as_ref().map(|(id, _)| id.clone()),
            operation: target.as_ref().map(|(_, op)| op.clone()),
            proof,
            status: None,
        });
        requests.len() - 1
    };
    let response = match target {
        None => text(StatusCode::NOT_FOUND, "Not Found\n"),
        Some((file_id, operation)) => {
            serve_wopi(state, req, &file_id, &operation, token.as_deref()).await
        }
    };
    lock(&state.requests)[index].status = Some(response.status());
    response
}

/// The proof hook: every request passes here before it is served. Today it records the
/// proof headers (`X-WOPI-Proof`, `X-WOPI-ProofOld`, `X-WOPI-TimeStamp`) with the URL and
/// token they must have signed. To verify (issue 4): give the host the expected public
/// keys, check `proof` against the current and old key as richdocuments'
/// `ProofKeyService::isProofValid` does (and the 20-minute timestamp window), return a
/// verdict, and answer 500 in [`handle`] on an invalid proof.
pub fn verify_proof(url: &str, access_token: &str, headers: &HeaderMap) -> ProofCheck {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let Some(proof) = header("x-wopi-proof") else {
        return ProofCheck::Missing;
    };
    ProofCheck::Unverified(ProofHeaders {
        url: url.to_owned(),
        access_token: access_token.to_owned(),
        timestamp: header("x-wopi-timestamp"),
        proof: Some(proof),
        proof_old: header("x-wopi-proofold"),
    })
}

/// `(file id, operation)` of a WOPI files request, `None` for any other path.
fn parse_target(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<(String, WopiOperation)> {
    let rest = path.strip_prefix(WOPI_FILES_PATH)?;
    let (file_id, contents) = match rest.split_once('/') {
        Some((file_id, "contents")) => (file_id, true),
        Some(_) => return None,
        None => (rest, false),
    };
    if file_id.is_empty() {
        return None;
    }
    let wopi_override = headers
        .get("x-wopi-override")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let operation = match (method.as_str(), contents, wopi_override) {
        ("GET", false, _) => WopiOperation::CheckFileInfo,
        ("GET", true, _) => WopiOperation::GetFile,
        ("POST", true, "PUT") => WopiOperation::PutFile,
        ("POST", false, "LOCK") => WopiOperation::Lock,
        ("POST", false, "UNLOCK") => WopiOperation::Unlock,
        ("POST", false, "REFRESH_LOCK") => WopiOperation::RefreshLock,
        ("POST", false, "GET_LOCK") => WopiOperation::GetLock,
        (method, _, wopi_override) => WopiOperation::Other(format!("{method} {wopi_override}")),
    };
    Some((file_id.to_owned(), operation))
}

/// Checks the token, then serves the operation.
async fn serve_wopi(
    state: &State,
    req: Request<Incoming>,
    file_id: &str,
    operation: &WopiOperation,
    token: Option<&str>,
) -> Response<Body> {
    let writable = token.and_then(|token| {
        lock(&state.grants)
            .get(&(file_id.to_owned(), token.to_owned()))
            .copied()
    });
    let Some(writable) = writable else {
        return text(StatusCode::FORBIDDEN, "Invalid token\n");
    };
    if *req.method() == Method::POST && !writable {
        return text(StatusCode::FORBIDDEN, "Read-only token\n");
    }
    if !lock(&state.files).contains_key(file_id) {
        return text(StatusCode::NOT_FOUND, "File not found\n");
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    match operation {
        WopiOperation::CheckFileInfo => {
            check_file_info(state, file_id, token.unwrap_or_default(), writable)
        }
        WopiOperation::GetFile => {
            let max = header("x-wopi-maxexpectedsize").and_then(|max| max.parse::<u64>().ok());
            get_file(state, file_id, max)
        }
        WopiOperation::PutFile => put_file(state, req, file_id).await,
        WopiOperation::Lock
        | WopiOperation::Unlock
        | WopiOperation::RefreshLock
        | WopiOperation::GetLock => lock_operation(
            state,
            file_id,
            operation,
            header("x-wopi-lock"),
            header("x-wopi-oldlock"),
        ),
        WopiOperation::Other(_) => text(StatusCode::NOT_IMPLEMENTED, "Not implemented\n"),
    }
}

/// CheckFileInfo, with the fields richdocuments' `WopiController::checkFileInfo` sends
/// that editors and officeswitch care about.
fn check_file_info(state: &State, file_id: &str, token: &str, writable: bool) -> Response<Body> {
    let files = lock(&state.files);
    let file = &files[file_id];
    // richdocuments' user ids are Nextcloud user names; one per token keeps them distinct.
    let user_id = format!("user-{}", &token.chars().take(8).collect::<String>());
    let info = serde_json::json!({
        "BaseFileName": file.name,
        "Size": file.content.len(),
        "Version": file.version.to_string(),
        "OwnerId": "owner",
        "UserId": user_id,
        "UserFriendlyName": "Stand-in User",
        "UserExtraInfo": {},
        "UserCanWrite": writable,
        "UserCanNotWriteRelative": true,
        "PostMessageOrigin": state.origin,
        "LastModifiedTime": iso8601(file.modified),
        "SupportsRename": true,
        "UserCanRename": writable,
        "SupportsUpdate": true,
        "SupportsLocks": true,
        "SupportsGetLock": true,
        "IsUserLocked": false,
        "EnableOwnerTermination": false,
        "DisablePrint": false,
        "HidePrintOption": false,
        "DisableExport": false,
        "HideExportOption": false,
        "DisableCopy": false,
        "EnableInsertRemoteImage": true,
        "EnableShare": true,
        "HasContentRange": false,
    });
    let mut response = Response::new(full(info.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// GetFile: the contents in 64 KiB chunks, produced as they are sent.
fn get_file(state: &State, file_id: &str, max_expected: Option<u64>) -> Response<Body> {
    let (content, version) = {
        let files = lock(&state.files);
        let file = &files[file_id];
        (file.content.clone(), file.version)
    };
    let len = content.len();
    if max_expected.is_some_and(|max| len > max) {
        return text(
            StatusCode::PRECONDITION_FAILED,
            "File larger than X-WOPI-MaxExpectedSize\n",
        );
    }
    let body = match content {
        Content::Bytes(bytes) => {
            let chunks = (0..bytes.len())
                .step_by(CHUNK)
                .map(move |start| bytes.slice(start..(start + CHUNK).min(bytes.len())));
            stream_body(futures_util::stream::iter(chunks))
        }
        Content::Pattern(size) => stream_body(pattern_chunks(size)),
        Content::Discarded(_) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the stand-in does not keep PutFile bodies larger than 1 MiB\n",
            );
        }
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert("x-wopi-itemversion", HeaderValue::from(version));
    response
}

/// `size` pattern bytes as ~64 KiB chunks sharing one buffer.
fn pattern_chunks(size: u64) -> impl futures_util::Stream<Item = Bytes> + Send + 'static {
    static CHUNK_BYTES: OnceLock<Bytes> = OnceLock::new();
    let chunk = CHUNK_BYTES
        .get_or_init(|| {
            let period = PATTERN_PERIOD as usize;
            let len = (CHUNK / period) * period;
            (0..len)
                .map(|i| u8::try_from(i as u64 % PATTERN_PERIOD).expect("below 256"))
                .collect::<Vec<u8>>()
                .into()
        })
        .clone();
    let chunk_len = chunk.len() as u64;
    let tail_len = usize::try_from(size % chunk_len).expect("below the chunk length");
    let tail = (tail_len > 0).then(|| chunk.slice(..tail_len));
    futures_util::stream::iter(0..size / chunk_len)
        .map(move |_| chunk.clone())
        .chain(futures_util::stream::iter(tail))
}

/// PutFile: checks the lock, then hashes the body as it arrives.
async fn put_file(state: &State, req: Request<Incoming>, file_id: &str) -> Response<Body> {
    let sent_lock = req
        .headers()
        .get("x-wopi-lock")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let current = lock(&state.files)[file_id].lock.clone();
    if let Some(current) = current
        && sent_lock.as_deref() != Some(current.as_str())
    {
        // Answered before the body is read: hyper closes the connection rather than
        // reading a body nobody wants.
        return conflict(Some(&current));
    }
    let mut body = req.into_body();
    let mut hasher = Sha256::new();
    let mut len = 0_u64;
    let mut kept = Some(Vec::new());
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(err) => {
                let message = format!("body broken off: {err}\n");
                return text(StatusCode::BAD_REQUEST, message);
            }
        };
        if let Ok(data) = frame.into_data() {
            hasher.update(&data);
            len += data.len() as u64;
            if len > KEPT_PUT_LIMIT {
                kept = None;
            } else if let Some(kept) = kept.as_mut() {
                kept.extend_from_slice(&data);
            }
        }
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        });
    let (version, modified) = {
        let mut files = lock(&state.files);
        let Some(file) = files.get_mut(file_id) else {
            return text(StatusCode::NOT_FOUND, "File not found\n");
        };
        file.content = match kept {
            Some(bytes) => Content::Bytes(bytes.into()),
            None => Content::Discarded(len),
        };
        file.version += 1;
        file.modified = SystemTime::now();
        (file.version, file.modified)
    };
    lock(&state.puts).push(PutRecord {
        file_id: file_id.to_owned(),
        len,
        sha256,
    });
    let body = serde_json::json!({ "LastModifiedTime": iso8601(modified) }).to_string();
    let mut response = Response::new(full(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert("x-wopi-itemversion", HeaderValue::from(version));
    response
}

/// LOCK (and UnlockAndRelock), UNLOCK, REFRESH_LOCK, GET_LOCK on the file's one lock.
fn lock_operation(
    state: &State,
    file_id: &str,
    operation: &WopiOperation,
    sent: Option<String>,
    old: Option<String>,
) -> Response<Body> {
    let mut files = lock(&state.files);
    let file = files
        .get_mut(file_id)
        .expect("checked by serve_wopi, under the same test");
    if *operation == WopiOperation::GetLock {
        let mut response = text(StatusCode::OK, "");
        let current = file.lock.clone().unwrap_or_default();
        response
            .headers_mut()
            .insert("x-wopi-lock", lock_header(&current));
        return response;
    }
    let Some(sent) = sent.filter(|sent| !sent.is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "X-WOPI-Lock is required\n");
    };
    let current = file.lock.clone();
    let outcome = match (operation, old) {
        // UnlockAndRelock: the old lock must be the current one.
        (WopiOperation::Lock, Some(old)) => {
            (current.as_deref() == Some(old.as_str())).then(|| Some(sent.clone()))
        }
        // Lock: free, or already ours (then it is a refresh).
        (WopiOperation::Lock, None) => (current.is_none()
            || current.as_deref() == Some(sent.as_str()))
        .then(|| Some(sent.clone())),
        (WopiOperation::Unlock, _) => (current.as_deref() == Some(sent.as_str())).then_some(None),
        (WopiOperation::RefreshLock, _) => {
            (current.as_deref() == Some(sent.as_str())).then(|| current.clone())
        }
        _ => unreachable!("only lock operations reach lock_operation"),
    };
    match outcome {
        Some(new_lock) => {
            file.lock = new_lock;
            text(StatusCode::OK, "")
        }
        None => conflict(current.as_deref()),
    }
}

/// 409 with the current lock (empty when unlocked), as WOPI requires.
fn conflict(current: Option<&str>) -> Response<Body> {
    let mut response = text(StatusCode::CONFLICT, "Lock mismatch\n");
    let headers = response.headers_mut();
    headers.insert("x-wopi-lock", lock_header(current.unwrap_or_default()));
    headers.insert(
        "x-wopi-lockfailurereason",
        HeaderValue::from_static("lock mismatch"),
    );
    response
}

/// A lock as a header value (locks are opaque strings up to 1024 ASCII characters).
fn lock_header(lock: &str) -> HeaderValue {
    HeaderValue::from_str(lock).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn stream_body(chunks: impl futures_util::Stream<Item = Bytes> + Send + Sync + 'static) -> Body {
    BodyExt::boxed(StreamBody::new(
        chunks.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))),
    ))
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The first value of `name` in a query string, decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC), as WOPI's `LastModifiedTime`.
fn iso8601(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let days = i64::try_from(secs / 86_400).expect("days since 1970 fit in i64");
    let rest = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}
