//! A stand-in Nextcloud WOPI host: a real loopback HTTP server answering the WOPI calls
//! editors make, modelled on richdocuments' `WopiController` and `WOPIMiddleware` (see
//! `../shared/notes/richdocuments.md`, `wopi-protocol.md` and `proof-keys.md`).
//!
//! Endpoints, under `/index.php/apps/richdocuments/wopi/`:
//!
//! | request | operation |
//! |---|---|
//! | `GET files/<id>` | CheckFileInfo: richdocuments' fields (`LastModifiedTime`, `SupportsLocks`, `UserExtraInfo.avatar`, `UserSettings.uri`, `TemplateSource`, ...), plus per-file test fields ([`StandInNextcloud::set_check_file_info_extra`]) |
//! | `GET files/<id>/contents` | GetFile, streamed (412 above `X-WOPI-MaxExpectedSize`; `Range` is ignored) |
//! | `POST files/<id>/contents` + `X-WOPI-Override: PUT` | PutFile: body streamed into a SHA-256 and a length; 409 `{"COOLStatusCode":1010}` when `X-COOL-WOPI-Timestamp` is not the file's `LastModifiedTime`; 200 `{"LastModifiedTime":..}` |
//! | `POST files/<id>` + `LOCK` (+ `X-WOPI-OldLock`), `UNLOCK`, `REFRESH_LOCK`, `GET_LOCK` | one lock per file; a conflict answers **423** without `X-WOPI-Lock`, as richdocuments |
//! | `POST files/<id>` + `PUT_RELATIVE` | a new file (new id, new token for the same user); `{"Name","Url","HostEditUrl","HostViewUrl"}` |
//! | `POST files/<id>` + `RENAME_FILE` | renames in place, then writes the request body into the file, as richdocuments does (an empty body empties it); `{"Name","Url"}` (richdocuments answers a new token here too) |
//! | `POST files/<id>` + `DELETE`, `PUT_USER_INFO` | 200 (removes the file; stores the body, shown as `UserInfo`) |
//! | `POST files/<id>` + `GET_SHARE_URL`, anything else | 501 |
//! | `GET template/<id>` | the template's bytes, for a token granted on a file made from it |
//! | `GET settings`, `POST settings/upload`, `DELETE settings`, `GET ../settings/<type>/<token>/<category>/<name>` | richdocuments' settings endpoints and files, never proof-checked (`nextcloud_settings.rs`) |
//! | `files/<id>_<version>` | an old version ([`StandInNextcloud::add_version`]): CheckFileInfo and GetFile of the version, with the file's token and still `UserCanWrite`; PutFile and every `POST` write the **current** file, as richdocuments (`nextcloud_versions.rs`) |
//!
//! Checks, in richdocuments' order: the proof (when [`StandInNextcloud::verify_proofs_with`]
//! set keys; a missing, stale or wrong proof answers 500 `[]`, the operation is not
//! performed), then the token (403 `[]` unless granted for that file id), then write
//! access (403 on every POST for a read-only grant).
//!
//! Where it deliberately differs from richdocuments, to stay useful for tests:
//! - lock strings are compared (richdocuments holds one app lock whatever the string): an
//!   `UNLOCK` or `REFRESH_LOCK` with another lock gets 423 `[]`, and a PutFile, RenameFile
//!   or DeleteFile on a file locked by another lock gets 423 `{"message":"File locked"}`,
//!   richdocuments' answer to a locked file. [`StandInNextcloud::lock_like_richdocuments`]
//!   turns that off for tests of what users live through (an editor node dying with the
//!   lock): then, as richdocuments with files_lock, one app lock is held whatever the
//!   string, a LOCK from anyone extends it, UNLOCK releases it and writes ignore it;
//! - `GET_LOCK` returns `X-WOPI-Lock`; `Version` counts PutFiles (richdocuments: `"0"`);
//! - `DELETE`, `PUT_USER_INFO` and unknown overrides, which richdocuments lets fall through
//!   to PUT_RELATIVE, get the answers listed above.
//!
//! Bodies of rejected POSTs are read and discarded before the answer, as nginx in front of
//! PHP buffers them, so a client always sees the status rather than a reset.
//! [`PutFault`] breaks uploads on purpose, [`StandInNextcloud::go_down`] and
//! [`StandInNextcloud::come_back`] restart it on the same port; every request is recorded
//! ([`StandInNextcloud::requests`]) with the bytes of body received and the status.
//! Self-contained (external crates and officeswitch's key type only), like `editor.rs`: it
//! builds the proof bytes itself so it can catch officeswitch's mistakes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use officeswitch::wopi::proof_key::PublicProofKey;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

#[path = "nextcloud_settings.rs"]
mod settings;

#[path = "nextcloud_versions.rs"]
mod versions;

/// The path every WOPI file URL of richdocuments starts with.
pub const WOPI_FILES_PATH: &str = "/index.php/apps/richdocuments/wopi/files/";

/// The path of richdocuments' template endpoint (`TemplateSource`).
pub const WOPI_TEMPLATE_PATH: &str = "/index.php/apps/richdocuments/wopi/template/";

/// The user richdocuments would find in the admin group: the one who may change shared
/// settings.
pub const ADMIN_USER: &str = "admin";

/// The path of richdocuments' settings endpoint (`UserSettings.uri`, `SharedSettings.uri`).
pub const WOPI_SETTINGS_PATH: &str = "/index.php/apps/richdocuments/wopi/settings";

/// PutFile bodies up to this size are kept, so a later GetFile returns them; larger ones
/// are only hashed (GetFile then answers 500, saying so).
pub const KEPT_PUT_LIMIT: u64 = 1 << 20;

/// How old an `X-WOPI-TimeStamp` may be (richdocuments' `isOldTimestamp`).
pub const PROOF_MAX_AGE: Duration = Duration::from_secs(20 * 60);

/// The period of [`StandInNextcloud::add_pattern_file`]'s content: byte `i` is
/// `(i % 251) as u8`, the pattern the stand-in editors' big download uses.
const PATTERN_PERIOD: u64 = 251;

/// GetFile sends contents in chunks of this size.
const CHUNK: usize = 64 * 1024;

/// .NET ticks (100 ns) from 0001-01-01 to the Unix epoch: `X-WOPI-TimeStamp` is in ticks.
const DOTNET_EPOCH_TICKS: u64 = 621_355_968_000_000_000;

/// richdocuments' `WOPI_AVATAR_SIZE`.
const AVATAR_SIZE: u32 = 64;

/// Largest PUT_USER_INFO body kept.
const USER_INFO_LIMIT: usize = 64 * 1024;

/// The body type of every response.
type Body = BoxBody<Bytes, Infallible>;

/// A WOPI operation, from the method, the path and `X-WOPI-Override`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WopiOperation {
    /// `GET files/<id>`.
    CheckFileInfo,
    /// `GET files/<id>/contents`.
    GetFile,
    /// `POST files/<id>/contents`, `X-WOPI-Override: PUT`.
    PutFile,
    /// `POST files/<id>`, `X-WOPI-Override: LOCK` (with `X-WOPI-OldLock`: UnlockAndRelock).
    Lock,
    /// `X-WOPI-Override: UNLOCK`.
    Unlock,
    /// `X-WOPI-Override: REFRESH_LOCK`.
    RefreshLock,
    /// `X-WOPI-Override: GET_LOCK`.
    GetLock,
    /// `X-WOPI-Override: PUT_RELATIVE`.
    PutRelativeFile,
    /// `X-WOPI-Override: RENAME_FILE`.
    RenameFile,
    /// `X-WOPI-Override: DELETE`.
    DeleteFile,
    /// `X-WOPI-Override: PUT_USER_INFO`.
    PutUserInfo,
    /// `X-WOPI-Override: GET_SHARE_URL` (501, as richdocuments has none).
    GetShareUrl,
    /// `GET template/<id>` (the id is the request's `file_id`).
    GetTemplate,
    /// `GET settings?type=..`.
    GetSettings,
    /// `POST settings/upload?fileId=..`.
    UploadSettings,
    /// `DELETE settings?fileId=..`.
    DeleteSettings,
    /// `GET /index.php/apps/richdocuments/settings/<type>/<token>/<category>/<name>`.
    GetSettingsFile,
    /// Anything else under a file (`"POST FOO"`, no override...): 501.
    Other(String),
}

/// The proof headers of a request, with the URL and token they must have signed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProofHeaders {
    /// The URL as this host sees the request (not yet upper-cased):
    /// `http://` + `Host` + path and query exactly as received.
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

/// Which rule of richdocuments' `isProofValid` accepted a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofMatch {
    /// `X-WOPI-Proof` verifies with the current key.
    Current,
    /// `X-WOPI-Proof` verifies with the old key (the client has not rotated yet).
    OldKey,
    /// `X-WOPI-ProofOld` verifies with the current key (the host has not rotated yet).
    ProofOld,
}

/// The proof verdict for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofCheck {
    /// No `X-WOPI-Proof` header. Answered 500 when proofs are verified (settings aside).
    Missing,
    /// Proof headers present but not verified: no keys set, or the settings endpoint.
    NotChecked(ProofHeaders),
    /// Verified by the keys of [`StandInNextcloud::verify_proofs_with`].
    Valid(ProofMatch),
    /// Verification failed (reason); the request was answered 500 and not performed.
    Invalid(String),
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
    /// The file id of a files URL (`42_ocabc123`), or the template id; else `None`.
    pub file_id: Option<String>,
    /// The operation of a WOPI URL, else `None`.
    pub operation: Option<WopiOperation>,
    /// The proof headers, always recorded.
    pub proof_headers: ProofHeaders,
    /// The proof verdict.
    pub proof: ProofCheck,
    /// Request body bytes received (PutFile, PutRelativeFile, PUT_USER_INFO, and discarded
    /// bodies of refused POSTs); counted even when the upload broke off.
    pub body_bytes: Option<u64>,
    /// Why the request ended without an answer: a [`PutFault`], or the client leaving.
    pub aborted: Option<String>,
    /// The status answered; `None` while being served, or when [`WopiRequest::aborted`].
    pub status: Option<StatusCode>,
}

impl WopiRequest {
    /// The `access_token` query parameter, decoded.
    pub fn access_token(&self) -> Option<String> {
        let (_, query) = self.path_and_query.split_once('?')?;
        query_param(query, "access_token")
    }
}

/// One successful upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRecord {
    /// The file written: the PutFile's file, or the file PutRelativeFile created.
    pub file_id: String,
    /// [`WopiOperation::PutFile`] or [`WopiOperation::PutRelativeFile`].
    pub operation: WopiOperation,
    /// The body length in bytes.
    pub len: u64,
    /// The body's SHA-256, lower-case hex.
    pub sha256: String,
}

/// A way for uploads (PutFile, PutRelativeFile) to break, for "nothing lost" tests. In
/// force for every upload until cleared; never yields a [`PutRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutFault {
    /// Read at least this many body bytes (whole frames), then reset the connection
    /// without an answer.
    ResetAfter(u64),
    /// Read at least this many body bytes, then never answer (the connection stays open
    /// until the client gives up or the host stops).
    StallAfter(u64),
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
    /// Starts a stand-in host on `127.0.0.1:0`, with no files, no grants, and proofs
    /// recorded but not verified.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("stand-in Nextcloud: cannot bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("stand-in Nextcloud: bound address");
        let state = Arc::new(State {
            origin: format!("http://{addr}"),
            host: Mutex::new(Host::default()),
            requests: Mutex::new(Vec::new()),
            puts: Mutex::new(Vec::new()),
            minted: AtomicU64::new(0),
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

    /// Verifies proofs as richdocuments does when its discovery has a `proof-key`:
    /// `Some((current, old))` makes every WOPI request except the settings endpoint need a
    /// fresh `X-WOPI-TimeStamp` and a proof valid by Proof/current, Proof/old or
    /// ProofOld/current, else 500. `None` (the default) records proofs unchecked.
    pub fn verify_proofs_with(&self, keys: Option<(PublicProofKey, PublicProofKey)>) {
        self.host().proof_keys = keys;
    }

    /// Adds (or replaces) a file, at version 1, unlocked.
    pub fn add_file(&self, file_id: &str, name: &str, bytes: Vec<u8>) {
        self.insert_file(file_id, name, Content::Bytes(Bytes::from(bytes)), None);
    }

    /// Adds (or replaces) a file of `size` pattern bytes (byte `i` is `(i % 251) as u8`),
    /// generated as GetFile sends it, so a file can be larger than memory.
    pub fn add_pattern_file(&self, file_id: &str, name: &str, size: u64) {
        self.insert_file(file_id, name, Content::Pattern(size), None);
    }

    /// Adds an empty file created from template `template_id` (whose bytes are
    /// `template`), as richdocuments creates a new document: its CheckFileInfo has a
    /// `TemplateSource`, and the template endpoint serves `template` to the file's tokens,
    /// until the first successful PutFile (richdocuments then forgets the template).
    pub fn add_file_from_template(
        &self,
        file_id: &str,
        name: &str,
        template_id: &str,
        template: Vec<u8>,
    ) {
        self.host()
            .templates
            .insert(template_id.to_owned(), Bytes::from(template));
        self.insert_file(
            file_id,
            name,
            Content::Bytes(Bytes::new()),
            Some(template_id.to_owned()),
        );
    }

    fn insert_file(&self, file_id: &str, name: &str, content: Content, template: Option<String>) {
        self.host().files.insert(
            file_id.to_owned(),
            File {
                name: name.to_owned(),
                content,
                version: 1,
                modified: SystemTime::now(),
                lock: None,
                template,
            },
        );
    }

    /// Lets `token` read and write `file_id`, as user `user-<first 8 chars of token>`.
    pub fn grant(&self, file_id: &str, token: &str) {
        self.grant_to_user(file_id, token, &default_user(token), true);
    }

    /// Lets `token` read `file_id` only: `UserCanWrite` false, 403 on every POST.
    pub fn grant_read_only(&self, file_id: &str, token: &str) {
        self.grant_to_user(file_id, token, &default_user(token), false);
    }

    /// Grants `token` on `file_id` to a named user (CheckFileInfo's `UserId`; tokens
    /// richdocuments mints for PutRelativeFile and RenameFile go to the same user).
    pub fn grant_to_user(&self, file_id: &str, token: &str, user: &str, writable: bool) {
        self.host().grants.insert(
            (file_id.to_owned(), token.to_owned()),
            Grant {
                user: user.to_owned(),
                writable,
            },
        );
    }

    /// The user a token was granted to (on any file), or a settings token's user.
    pub fn user_of(&self, token: &str) -> Option<String> {
        let host = self.host();
        host.grants
            .iter()
            .find(|((_, granted), _)| granted == token)
            .map(|(_, grant)| grant.user.clone())
            .or_else(|| host.settings_tokens.get(token).cloned())
    }

    /// Fields merged over `file_id`'s CheckFileInfo answer (a JSON object; a `null` value
    /// removes the field), like richdocuments' `wopi_override`: lets a test put any URL or
    /// flag in front of officeswitch.
    pub fn set_check_file_info_extra(&self, file_id: &str, extra: Value) {
        self.host()
            .check_file_info_extra
            .insert(file_id.to_owned(), extra);
    }

    /// Makes PutRelativeFile answer this `Url` instead of the new file's WOPI URL (`None`
    /// restores it), e.g. a host outside officeswitch's rules.
    pub fn set_put_relative_url_override(&self, url: Option<String>) {
        self.host().put_relative_url = url;
    }

    /// Fields merged over every PutRelativeFile and RenameFile answer (a JSON object; a
    /// `null` value removes the field).
    pub fn set_put_relative_extra(&self, extra: Option<Value>) {
        self.host().put_relative_extra = extra;
    }

    /// Locks as richdocuments keeps them from now on (see the module documentation):
    /// lock strings ignored.
    pub fn lock_like_richdocuments(&self) {
        self.host().lock_ids_ignored = true;
    }

    /// Breaks every upload from now on as `fault` says (`None` heals).
    pub fn set_put_fault(&self, fault: Option<PutFault>) {
        self.host().put_fault = fault;
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<WopiRequest> {
        lock(&self.state.requests).clone()
    }

    /// Every successful PutFile and PutRelativeFile as `(file_id, len, sha256_hex)`, in
    /// order (see [`StandInNextcloud::put_records`]).
    pub fn puts(&self) -> Vec<(String, u64, String)> {
        lock(&self.state.puts)
            .iter()
            .map(|put| (put.file_id.clone(), put.len, put.sha256.clone()))
            .collect()
    }

    /// Every successful upload, with its operation.
    pub fn put_records(&self) -> Vec<PutRecord> {
        lock(&self.state.puts).clone()
    }

    /// The lock currently held on `file_id`, if any.
    pub fn lock_of(&self, file_id: &str) -> Option<String> {
        self.host()
            .files
            .get(file_id)
            .and_then(|file| file.lock.clone())
    }

    /// The current version of `file_id` (1 when added, +1 per PutFile).
    pub fn version_of(&self, file_id: &str) -> Option<u64> {
        self.host().files.get(file_id).map(|file| file.version)
    }

    /// The current name of `file_id` (`None` once deleted or if never added).
    pub fn name_of(&self, file_id: &str) -> Option<String> {
        self.host().files.get(file_id).map(|file| file.name.clone())
    }

    /// The bytes of `file_id` if kept (added as bytes, or a PutFile up to
    /// [`KEPT_PUT_LIMIT`]).
    pub fn contents_of(&self, file_id: &str) -> Option<Bytes> {
        match &self.host().files.get(file_id)?.content {
            Content::Bytes(bytes) => Some(bytes.clone()),
            Content::Pattern(_) | Content::Discarded(_) => None,
        }
    }

    /// The file's `LastModifiedTime` as CheckFileInfo sends it (and PutFile's
    /// `X-COOL-WOPI-Timestamp` must match).
    pub fn last_modified_of(&self, file_id: &str) -> Option<String> {
        self.host()
            .files
            .get(file_id)
            .map(|file| iso8601(file.modified))
    }

    /// Every file id, sorted (PutRelativeFile adds some).
    pub fn file_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.host().files.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The last PUT_USER_INFO body stored for `user`.
    pub fn user_info_of(&self, user: &str) -> Option<String> {
        self.host().user_info.get(user).cloned()
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

    /// Goes down as a Nextcloud being restarted does: the listener closes and every
    /// connection is dropped at once, requests in progress (an upload half read) without an
    /// answer. Files, grants and locks are kept, as Nextcloud's storage and database are,
    /// for [`StandInNextcloud::come_back`]. Returns once the port is closed.
    pub async fn go_down(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(server) = self.server.take()
            && let Err(err) = server.await
            && err.is_panic()
        {
            std::panic::resume_unwind(err.into_panic());
        }
        tracing::debug!(addr = %self.addr, "stand-in Nextcloud down");
    }

    /// Listens again on the same address with the same files and grants, after
    /// [`StandInNextcloud::go_down`]: the restarted Nextcloud. Does nothing while up.
    ///
    /// # Errors
    /// The address cannot be bound again.
    pub async fn come_back(&mut self) -> std::io::Result<()> {
        if self.server.is_some() {
            return Ok(());
        }
        // tokio sets SO_REUSEADDR, so the connections just closed do not hold the port.
        let listener = TcpListener::bind(self.addr).await?;
        let (shutdown, stop) = watch::channel(false);
        self.shutdown = shutdown;
        self.server = Some(tokio::spawn(accept_loop(
            listener,
            Arc::clone(&self.state),
            stop,
        )));
        tracing::debug!(addr = %self.addr, "stand-in Nextcloud back");
        Ok(())
    }

    fn host(&self) -> MutexGuard<'_, Host> {
        lock(&self.state.host)
    }
}

impl Drop for StandInNextcloud {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// `user-<first 8 chars of token>`: distinct users for distinct test tokens.
fn default_user(token: &str) -> String {
    format!("user-{}", token.chars().take(8).collect::<String>())
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
    /// The template it was created from, until the first PutFile.
    template: Option<String>,
}

/// What a token may do on one file.
#[derive(Clone)]
struct Grant {
    user: String,
    writable: bool,
}

/// The host's data, behind one lock.
#[derive(Default)]
struct Host {
    /// File id -> file.
    files: HashMap<String, File>,
    /// (file id, token) -> grant.
    grants: HashMap<(String, String), Grant>,
    /// Template id -> bytes.
    templates: HashMap<String, Bytes>,
    /// Settings token -> user.
    settings_tokens: HashMap<String, String>,
    /// Settings files.
    settings: settings::Store,
    /// Old versions.
    versions: versions::Store,
    /// User -> PUT_USER_INFO body.
    user_info: HashMap<String, String>,
    /// (current, old) when proofs are verified.
    proof_keys: Option<(PublicProofKey, PublicProofKey)>,
    /// The fault uploads suffer.
    put_fault: Option<PutFault>,
    /// File id -> fields merged over CheckFileInfo.
    check_file_info_extra: HashMap<String, Value>,
    /// PutRelativeFile's `Url` override.
    put_relative_url: Option<String>,
    /// Fields merged over PutRelativeFile and RenameFile answers.
    put_relative_extra: Option<Value>,
    /// Locks as richdocuments keeps them: one app lock whatever the string.
    lock_ids_ignored: bool,
}

/// State shared by the connection tasks and the handle.
struct State {
    /// `http://127.0.0.1:PORT`.
    origin: String,
    /// Files, grants, configuration.
    host: Mutex<Host>,
    /// Every request, in order.
    requests: Mutex<Vec<WopiRequest>>,
    /// Every successful upload, in order.
    puts: Mutex<Vec<PutRecord>>,
    /// Tokens and file ids minted so far.
    minted: AtomicU64,
}

impl State {
    fn host(&self) -> MutexGuard<'_, Host> {
        lock(&self.host)
    }

    /// Updates the logged request at `index`.
    fn log(&self, index: usize, update: impl FnOnce(&mut WopiRequest)) {
        if let Some(request) = lock(&self.requests).get_mut(index) {
            update(request);
        }
    }

    /// A fresh token-like string (32 hex digits), unique per host.
    fn mint(&self, purpose: &str) -> String {
        let n = self.minted.fetch_add(1, Ordering::SeqCst);
        let digest = Sha256::digest(format!("{}|{purpose}|{n}", self.origin));
        hex(&digest[..16])
    }

    /// A fresh numeric file id for richdocuments' `<fileid>_<instanceid>`.
    fn next_file_number(&self) -> u64 {
        1000 + self.minted.fetch_add(1, Ordering::SeqCst)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The service error that makes hyper drop a connection without answering
/// ([`PutFault::ResetAfter`]).
#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset on purpose (PutFault::ResetAfter)")
    }
}

impl std::error::Error for ResetConnection {}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&state)));
                }
                Err(err) => {
                    tracing::warn!(%err, "stand-in Nextcloud: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Dropping the connection tasks closes their sockets.
    connections.shutdown().await;
}

/// Serves one connection. A duplicate handle on the socket lets a [`PutFault::ResetAfter`]
/// arm `SO_LINGER=0`, so that hyper's close sends RST.
async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let (stream, reset_handle) = match split_reset_handle(stream) {
        Ok(pair) => pair,
        Err(err) => {
            tracing::warn!(%err, "stand-in Nextcloud: cannot prepare connection");
            return;
        }
    };
    let reset_handle = Arc::new(Mutex::new(Some(reset_handle)));
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        let reset_handle = Arc::clone(&reset_handle);
        async move {
            let result = handle(&state, req).await;
            if result.is_err()
                && let Some(handle) = lock(&reset_handle).take()
                && let Err(err) = TcpSocket::from_std_stream(handle).set_zero_linger()
            {
                tracing::warn!(%err, "stand-in Nextcloud: cannot arm connection reset");
            }
            result
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
    if let Err(err) = connection.await {
        tracing::debug!(%err, "stand-in Nextcloud: connection ended with an error");
    }
}

/// Returns the stream plus a duplicate handle to the same socket.
fn split_reset_handle(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let duplicate = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, duplicate))
}

/// Resolves once stop is requested or the handle is gone. Reducing the result to a bool
/// drops the non-`Send` guard of `wait_for` before any later await.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _stop_requested = stop.wait_for(|stopped| *stopped).await.is_ok();
}

/// Where a request goes.
enum Target {
    /// `files/<id>[/contents]`.
    File(String, WopiOperation),
    /// `template/<id>`.
    Template(String),
    /// richdocuments' settings endpoints and files.
    Settings(settings::Route),
}

impl Target {
    fn file_id(&self) -> Option<String> {
        match self {
            Self::File(id, _) | Self::Template(id) => Some(id.clone()),
            Self::Settings(_) => None,
        }
    }

    fn operation(&self) -> WopiOperation {
        match self {
            Self::File(_, operation) => operation.clone(),
            Self::Template(_) => WopiOperation::GetTemplate,
            Self::Settings(route) => route.operation(),
        }
    }
}

/// How serving a request ended.
enum Outcome {
    /// Send this answer.
    Answer(Response<Body>),
    /// Drop the connection without an answer.
    Reset,
}

impl From<Response<Body>> for Outcome {
    fn from(response: Response<Body>) -> Self {
        Self::Answer(response)
    }
}

/// Records the request, serves it, records the outcome.
async fn handle(state: &State, req: Request<Incoming>) -> Result<Response<Body>, ResetConnection> {
    let (parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string);
    let target = parse_target(&parts.method, parts.uri.path(), &parts.headers);
    let proof_headers = proof_headers(&parts, &path_and_query);
    let keys = state.host().proof_keys.clone();
    // richdocuments' middleware checks every WopiController route but the settings one.
    let checked = matches!(target, Some(Target::File(..) | Target::Template(_)));
    let proof = check_proof(keys.as_ref().filter(|_| checked), &proof_headers);
    let index = {
        let mut requests = lock(&state.requests);
        requests.push(WopiRequest {
            method: parts.method.clone(),
            path_and_query,
            headers: parts.headers.clone(),
            file_id: target.as_ref().and_then(Target::file_id),
            operation: target.as_ref().map(Target::operation),
            proof_headers: proof_headers.clone(),
            proof: proof.clone(),
            body_bytes: None,
            aborted: None,
            status: None,
        });
        requests.len() - 1
    };
    let mut body = Some(BodyReader::new(state, index, body));
    let outcome = match (target, &proof) {
        (Some(_), ProofCheck::Missing | ProofCheck::Invalid(_)) if checked && keys.is_some() => {
            json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!([])).into()
        }
        (Some(Target::File(file_id, operation)), _) => {
            let token = proof_headers.access_token.as_str();
            serve_file(state, &parts, &mut body, &file_id, &operation, token).await
        }
        (Some(Target::Template(template_id)), _) => {
            get_template(state, &template_id, &proof_headers.access_token).into()
        }
        (Some(Target::Settings(route)), _) => settings::serve(state, &parts, &mut body, route)
            .await
            .into(),
        (None, _) => text(StatusCode::NOT_FOUND, "Not Found\n").into(),
    };
    match outcome {
        Outcome::Answer(response) => {
            // As nginx before PHP: the whole body is read before anyone answers.
            if let Some(body) = body.take() {
                body.discard().await;
            }
            let status = response.status();
            state.log(index, |request| request.status = Some(status));
            Ok(response)
        }
        Outcome::Reset => Err(ResetConnection),
    }
}

/// The proof headers and what they must have signed: the decoded `access_token` and
/// `http://` + `Host` + the path and query as received.
fn proof_headers(parts: &Parts, path_and_query: &str) -> ProofHeaders {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let host = header("host")
        .or_else(|| parts.uri.authority().map(ToString::to_string))
        .unwrap_or_default();
    ProofHeaders {
        url: format!("http://{host}{path_and_query}"),
        access_token: parts
            .uri
            .query()
            .and_then(|query| query_param(query, "access_token"))
            .unwrap_or_default(),
        timestamp: header("x-wopi-timestamp"),
        proof: header("x-wopi-proof"),
        proof_old: header("x-wopi-proofold"),
    }
}

/// richdocuments' `WOPIMiddleware` + `ProofKeyService::isProofValid`, re-derived: a fresh
/// timestamp, then Proof/current || Proof/old || ProofOld/current. `keys` is `None` when
/// proofs are not verified for this request.
fn check_proof(
    keys: Option<&(PublicProofKey, PublicProofKey)>,
    headers: &ProofHeaders,
) -> ProofCheck {
    let Some(proof) = headers.proof.as_deref() else {
        return ProofCheck::Missing;
    };
    let Some((current, old)) = keys else {
        return ProofCheck::NotChecked(headers.clone());
    };
    let Some(timestamp) = headers.timestamp.as_deref() else {
        return ProofCheck::Invalid("no X-WOPI-TimeStamp".to_owned());
    };
    let Ok(ticks) = timestamp.trim().parse::<u64>() else {
        return ProofCheck::Invalid(format!("X-WOPI-TimeStamp {timestamp:?} is not a number"));
    };
    let now_ticks = ticks_of(SystemTime::now());
    let max_age_ticks = PROOF_MAX_AGE.as_secs() * 10_000_000;
    if ticks.saturating_add(max_age_ticks) < now_ticks {
        return ProofCheck::Invalid("X-WOPI-TimeStamp is older than 20 minutes".to_owned());
    }
    let message = proof_bytes(&headers.access_token, &headers.url, ticks);
    let decode = |b64: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap_or_default()
    };
    let proof = decode(proof);
    let proof_old = headers.proof_old.as_deref().map(decode);
    if current.verify(&message, &proof) {
        ProofCheck::Valid(ProofMatch::Current)
    } else if old.verify(&message, &proof) {
        ProofCheck::Valid(ProofMatch::OldKey)
    } else if proof_old.is_some_and(|proof_old| current.verify(&message, &proof_old)) {
        ProofCheck::Valid(ProofMatch::ProofOld)
    } else {
        ProofCheck::Invalid(format!(
            "no proof verifies for token of {} bytes, URL {}, ticks {ticks}",
            headers.access_token.len(),
            headers.url.to_uppercase()
        ))
    }
}

/// The signed bytes, as richdocuments' `constructProof` builds them: `u32be` length + token,
/// `u32be` length (of the URL as given) + the URL upper-cased (`mb_strtoupper`), `u32be` 8 +
/// the ticks as `u64be`.
fn proof_bytes(token: &str, url: &str, ticks: u64) -> Vec<u8> {
    let upper = url.to_uppercase();
    let mut bytes = Vec::with_capacity(token.len() + upper.len() + 20);
    bytes.extend_from_slice(&u32::try_from(token.len()).unwrap_or(u32::MAX).to_be_bytes());
    bytes.extend_from_slice(token.as_bytes());
    bytes.extend_from_slice(&u32::try_from(url.len()).unwrap_or(u32::MAX).to_be_bytes());
    bytes.extend_from_slice(upper.as_bytes());
    bytes.extend_from_slice(&8_u32.to_be_bytes());
    bytes.extend_from_slice(&ticks.to_be_bytes());
    bytes
}

/// A time as .NET ticks.
fn ticks_of(time: SystemTime) -> u64 {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    DOTNET_EPOCH_TICKS + u64::try_from(since_epoch.as_nanos() / 100).unwrap_or(0)
}

/// The target of a WOPI path, `None` for any other path.
fn parse_target(method: &Method, path: &str, headers: &HeaderMap) -> Option<Target> {
    if let Some(route) = settings::route(method, path) {
        return Some(Target::Settings(route));
    }
    if let Some(template_id) = path.strip_prefix(WOPI_TEMPLATE_PATH) {
        let valid = *method == Method::GET && !template_id.is_empty() && !template_id.contains('/');
        return valid.then(|| Target::Template(template_id.to_owned()));
    }
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
        ("POST", false, "PUT_RELATIVE") => WopiOperation::PutRelativeFile,
        ("POST", false, "RENAME_FILE") => WopiOperation::RenameFile,
        ("POST", false, "DELETE") => WopiOperation::DeleteFile,
        ("POST", false, "PUT_USER_INFO") => WopiOperation::PutUserInfo,
        ("POST", false, "GET_SHARE_URL") => WopiOperation::GetShareUrl,
        (method, _, wopi_override) => WopiOperation::Other(format!("{method} {wopi_override}")),
    };
    Some(Target::File(file_id.to_owned(), operation))
}

/// Checks the token and write access, then serves the file operation.
async fn serve_file(
    state: &State,
    parts: &Parts,
    body: &mut Option<BodyReader<'_>>,
    file_id: &str,
    operation: &WopiOperation,
    token: &str,
) -> Outcome {
    // The token is the file's; a version named in the id is read from the URL only.
    let (file_id, version) = versions::split(file_id);
    let grant = state
        .host()
        .grants
        .get(&(file_id.to_owned(), token.to_owned()))
        .cloned();
    let Some(grant) = grant else {
        return forbidden().into();
    };
    if parts.method == Method::POST && !grant.writable {
        return forbidden().into();
    }
    if !state.host().files.contains_key(file_id) {
        return json_response(StatusCode::NOT_FOUND, &json!([])).into();
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    match operation {
        WopiOperation::CheckFileInfo => {
            check_file_info(state, file_id, version, token, &grant).into()
        }
        WopiOperation::GetFile => {
            let max = header("x-wopi-maxexpectedsize").and_then(|max| max.parse::<u64>().ok());
            get_file(state, file_id, version, max).into()
        }
        WopiOperation::PutFile => put_file(state, parts, body, file_id).await,
        WopiOperation::Lock
        | WopiOperation::Unlock
        | WopiOperation::RefreshLock
        | WopiOperation::GetLock => lock_operation(
            state,
            file_id,
            operation,
            header("x-wopi-lock"),
            header("x-wopi-oldlock"),
        )
        .into(),
        WopiOperation::PutRelativeFile => put_relative(state, parts, body, file_id, &grant).await,
        WopiOperation::RenameFile => rename_file(state, parts, body, file_id, &grant).await,
        WopiOperation::DeleteFile => delete_file(state, parts, file_id).into(),
        WopiOperation::PutUserInfo => {
            let Some(body) = body.take() else {
                return json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!([])).into();
            };
            match body.collect_limited(USER_INFO_LIMIT).await {
                Some(info) => {
                    let info = String::from_utf8_lossy(&info).into_owned();
                    state.host().user_info.insert(grant.user.clone(), info);
                    json_response(StatusCode::OK, &json!([])).into()
                }
                None => json_response(StatusCode::BAD_REQUEST, &json!([])).into(),
            }
        }
        WopiOperation::GetShareUrl
        | WopiOperation::Other(_)
        | WopiOperation::GetTemplate
        | WopiOperation::GetSettings
        | WopiOperation::UploadSettings
        | WopiOperation::DeleteSettings
        | WopiOperation::GetSettingsFile => {
            json_response(StatusCode::NOT_IMPLEMENTED, &json!([])).into()
        }
    }
}

/// CheckFileInfo with the fields richdocuments' `checkFileInfo` sends for a logged-in
/// user (and for an old `version`), then the test's extra fields.
fn check_file_info(
    state: &State,
    file_id: &str,
    version: Option<&str>,
    token: &str,
    grant: &Grant,
) -> Response<Body> {
    let origin = &state.origin;
    let user = &grant.user;
    let writable = grant.writable;
    let settings_token = {
        let mut host = state.host();
        // One settings token per user, as richdocuments' iframe token, stable per session.
        let existing = host
            .settings_tokens
            .iter()
            .find(|(_, owner)| *owner == user)
            .map(|(token, _)| token.clone());
        existing.unwrap_or_else(|| {
            let minted = format!("st{}", state.mint("settings"));
            host.settings_tokens.insert(minted.clone(), user.clone());
            minted
        })
    };
    let settings_uri = |kind: &str| {
        format!("{origin}{WOPI_SETTINGS_PATH}?type={kind}&access_token={settings_token}&fileId=-1")
    };
    let host = state.host();
    let Some(file) = host.files.get(file_id) else {
        return json_response(StatusCode::NOT_FOUND, &json!([]));
    };
    let mut info = json!({
        "BaseFileName": file.name,
        "Size": file.content.len(),
        "Version": file.version.to_string(),
        "UserId": user,
        "OwnerId": "owner",
        "UserFriendlyName": format!("Stand-in {user}"),
        "UserExtraInfo": {
            "avatar": format!("{origin}/index.php/avatar/{user}/{AVATAR_SIZE}"),
            "is_admin": false,
        },
        "UserPrivateInfo": {},
        "UserCanWrite": writable,
        "UserCanNotWriteRelative": false,
        "PostMessageOrigin": origin,
        "LastModifiedTime": iso8601(file.modified),
        "SupportsRename": true,
        "UserCanRename": writable,
        "EnableInsertRemoteImage": true,
        "EnableInsertRemoteFile": true,
        "EnableShare": true,
        "HideUserList": "",
        "EnableOwnerTermination": writable,
        "DisablePrint": false,
        "DisableExport": false,
        "DisableCopy": false,
        "HideExportOption": false,
        "HidePrintOption": false,
        "DownloadAsPostMessage": false,
        "SupportsLocks": true,
        "SupportsGetLock": true,
        "SupportsUpdate": true,
        "IsUserLocked": false,
        "EnableRemoteLinkPicker": writable,
        "EnableRemoteAIContent": false,
        "HasContentRange": true,
        "ServerPrivateInfo": {},
        "IsAdminUser": false,
        "IsAnonymousUser": false,
        "UserSettings": { "uri": settings_uri("userconfig"), "stamp": "standin" },
        "SharedSettings": { "uri": settings_uri("systemconfig"), "stamp": "standin" },
    });
    if let Some(version) = version {
        let Some(bytes) = host.versions.get(file_id, version) else {
            return json_response(StatusCode::NOT_FOUND, &json!([]));
        };
        versions::version_fields(&mut info, version, bytes.len() as u64);
    }
    if let Some(template) = &file.template {
        info["TemplateSource"] =
            format!("{origin}{WOPI_TEMPLATE_PATH}{template}?access_token={token}").into();
    }
    if let Some(user_info) = host.user_info.get(user) {
        info["UserInfo"] = user_info.clone().into();
    }
    if let Some(extra) = host.check_file_info_extra.get(file_id) {
        merge(&mut info, extra);
    }
    json_response(StatusCode::OK, &info)
}

/// Sets `extra`'s fields on `target` (both objects); a `null` removes the field.
fn merge(target: &mut Value, extra: &Value) {
    let (Some(target), Some(extra)) = (target.as_object_mut(), extra.as_object()) else {
        return;
    };
    for (key, value) in extra {
        if value.is_null() {
            target.remove(key);
        } else {
            target.insert(key.clone(), value.clone());
        }
    }
}

/// GetFile: the contents (of the file, or of an old `version` of it) in 64 KiB chunks,
/// produced as they are sent.
fn get_file(
    state: &State,
    file_id: &str,
    old: Option<&str>,
    max_expected: Option<u64>,
) -> Response<Body> {
    let found = {
        let host = state.host();
        host.files.get(file_id).and_then(|file| match old {
            Some(old) => host
                .versions
                .get(file_id, old)
                .map(|bytes| (Content::Bytes(bytes), file.version)),
            None => Some((file.content.clone(), file.version)),
        })
    };
    let Some((content, version)) = found else {
        return json_response(StatusCode::NOT_FOUND, &json!([]));
    };
    let len = content.len();
    if max_expected.is_some_and(|max| len > max) {
        return text(
            StatusCode::PRECONDITION_FAILED,
            "File larger than X-WOPI-MaxExpectedSize\n",
        );
    }
    let body = match content {
        Content::Bytes(bytes) => bytes_body(bytes),
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
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert("x-wopi-itemversion", HeaderValue::from(version));
    response
}

/// The template endpoint: the template's bytes for a token granted on a file made from
/// it (richdocuments compares the id with the token's `templateId`).
fn get_template(state: &State, template_id: &str, token: &str) -> Response<Body> {
    let host = state.host();
    let allowed = host.grants.keys().any(|(file_id, granted)| {
        granted == token
            && host
                .files
                .get(file_id)
                .is_some_and(|file| file.template.as_deref() == Some(template_id))
    });
    let bytes = host.templates.get(template_id).cloned();
    drop(host);
    match (allowed, bytes) {
        (true, Some(bytes)) => {
            let len = bytes.len();
            let mut response = Response::new(bytes_body(bytes));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment"),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            response
        }
        (true, None) => json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!([])),
        (false, _) => forbidden(),
    }
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

/// A request body being read, counted into the request log as it goes. Dropped before
/// the end (the client left, hyper dropped the service), it logs that too.
struct BodyReader<'a> {
    state: &'a State,
    index: usize,
    body: Incoming,
    bytes: u64,
    /// Set once the log says how the body ended.
    logged: bool,
}

/// A body read to its end.
struct ReadBody {
    len: u64,
    sha256: String,
    /// The bytes, if at most [`KEPT_PUT_LIMIT`].
    kept: Option<Vec<u8>>,
}

/// How reading an upload ended.
enum Upload {
    /// The whole body arrived.
    Complete(ReadBody),
    /// The body broke off (client reset, too short): answer 400, nobody listens.
    Broken(String),
    /// [`PutFault::ResetAfter`] fired.
    Reset,
}

impl<'a> BodyReader<'a> {
    fn new(state: &'a State, index: usize, body: Incoming) -> Self {
        Self {
            state,
            index,
            body,
            bytes: 0,
            logged: false,
        }
    }

    /// The next data chunk; `Ok(None)` at the end.
    async fn next(&mut self) -> Result<Option<Bytes>, String> {
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(|err| err.to_string())?;
            if let Ok(data) = frame.into_data() {
                self.bytes += data.len() as u64;
                return Ok(Some(data));
            }
        }
        Ok(None)
    }

    /// Logs the bytes received, and `aborted` if the request got no answer.
    fn finish(&mut self, aborted: Option<String>) {
        self.logged = true;
        let bytes = self.bytes;
        self.state.log(self.index, |request| {
            request.body_bytes = Some(bytes);
            if aborted.is_some() {
                request.aborted = aborted;
            }
        });
    }

    /// Reads the whole upload into a hash (and the first [`KEPT_PUT_LIMIT`] bytes), or
    /// breaks off as `fault` says.
    async fn upload(mut self, fault: Option<PutFault>) -> Upload {
        let mut hasher = Sha256::new();
        let mut kept = Some(Vec::new());
        loop {
            if let Some(fault) = fault {
                let (PutFault::ResetAfter(limit) | PutFault::StallAfter(limit)) = fault;
                if self.bytes >= limit {
                    return self.fail(fault).await;
                }
            }
            match self.next().await {
                Ok(Some(data)) => {
                    hasher.update(&data);
                    if self.bytes > KEPT_PUT_LIMIT {
                        kept = None;
                    } else if let Some(kept) = kept.as_mut() {
                        kept.extend_from_slice(&data);
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    let reason = format!("body broken off after {} bytes: {err}", self.bytes);
                    self.finish(None);
                    return Upload::Broken(reason);
                }
            }
        }
        if let Some(fault) = fault {
            // A body shorter than the fault's threshold still fails: no upload completes.
            return self.fail(fault).await;
        }
        self.finish(None);
        Upload::Complete(ReadBody {
            len: self.bytes,
            sha256: hex(&hasher.finalize()),
            kept,
        })
    }

    /// Applies a fault once its threshold is reached.
    async fn fail(mut self, fault: PutFault) -> Upload {
        let bytes = self.bytes;
        match fault {
            PutFault::ResetAfter(_) => {
                self.finish(Some(format!("reset after {bytes} body bytes ({fault:?})")));
                Upload::Reset
            }
            PutFault::StallAfter(_) => {
                self.finish(Some(format!(
                    "stalled after {bytes} body bytes ({fault:?})"
                )));
                std::future::pending().await
            }
        }
    }

    /// Reads up to `limit` bytes; `None` if longer or broken.
    async fn collect_limited(mut self, limit: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.next().await {
                Ok(Some(data)) if out.len() + data.len() <= limit => out.extend_from_slice(&data),
                Ok(Some(_)) | Err(_) => {
                    self.discard().await;
                    return None;
                }
                Ok(None) => {
                    self.finish(None);
                    return Some(out);
                }
            }
        }
    }

    /// Reads and drops the rest of the body (nginx buffers it before PHP answers).
    async fn discard(mut self) {
        while let Ok(Some(_)) = self.next().await {}
        if self.bytes > 0 {
            self.finish(None);
        } else {
            self.logged = true;
        }
    }
}

impl Drop for BodyReader<'_> {
    fn drop(&mut self) {
        if !self.logged {
            let bytes = self.bytes;
            self.state.log(self.index, |request| {
                request.body_bytes = Some(bytes);
                request.aborted.get_or_insert_with(|| {
                    format!("dropped after {bytes} body bytes (the connection went away)")
                });
            });
        }
    }
}

/// Reads an upload with the current fault in force; `Err` is the outcome to return.
async fn read_upload(
    state: &State,
    body: &mut Option<BodyReader<'_>>,
) -> Result<ReadBody, Outcome> {
    let fault = state.host().put_fault;
    let Some(body) = body.take() else {
        return Err(json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!([])).into());
    };
    match body.upload(fault).await {
        Upload::Complete(read) => Ok(read),
        Upload::Broken(reason) => Err(text(StatusCode::BAD_REQUEST, format!("{reason}\n")).into()),
        Upload::Reset => Err(Outcome::Reset),
    }
}

/// 423 `{"message":"File locked"}`, richdocuments' answer when a lock blocks a write.
fn file_locked() -> Response<Body> {
    json_response(StatusCode::LOCKED, &json!({"message": "File locked"}))
}

/// Whether `sent` may write a file holding `current` (any may, when `host` ignores lock
/// strings as richdocuments does).
fn lock_allows(host: &Host, current: Option<&str>, sent: Option<&str>) -> bool {
    host.lock_ids_ignored || current.is_none_or(|current| sent == Some(current))
}

/// PutFile: the `X-COOL-WOPI-Timestamp` check, the lock, then the body into a hash.
async fn put_file(
    state: &State,
    parts: &Parts,
    body: &mut Option<BodyReader<'_>>,
    file_id: &str,
) -> Outcome {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    {
        let host = state.host();
        let Some(file) = host.files.get(file_id) else {
            return json_response(StatusCode::NOT_FOUND, &json!([])).into();
        };
        if let Some(timestamp) = header("x-cool-wopi-timestamp").filter(|t| !t.is_empty())
            && timestamp != iso8601(file.modified)
        {
            return json_response(StatusCode::CONFLICT, &json!({"COOLStatusCode": 1010})).into();
        }
        if !lock_allows(&host, file.lock.as_deref(), header("x-wopi-lock")) {
            return file_locked().into();
        }
    }
    let read = match read_upload(state, body).await {
        Ok(read) => read,
        Err(outcome) => return outcome,
    };
    let (version, modified) = {
        let mut host = state.host();
        let Some(file) = host.files.get_mut(file_id) else {
            return json_response(StatusCode::NOT_FOUND, &json!([])).into();
        };
        file.content = match read.kept {
            Some(bytes) => Content::Bytes(bytes.into()),
            None => Content::Discarded(read.len),
        };
        file.version += 1;
        file.modified = SystemTime::now();
        file.template = None;
        (file.version, file.modified)
    };
    lock(&state.puts).push(PutRecord {
        file_id: file_id.to_owned(),
        operation: WopiOperation::PutFile,
        len: read.len,
        sha256: read.sha256,
    });
    let mut response = json_response(
        StatusCode::OK,
        &json!({ "LastModifiedTime": iso8601(modified) }),
    );
    response
        .headers_mut()
        .insert("x-wopi-itemversion", HeaderValue::from(version));
    response.into()
}

/// PutRelativeFile: a new file, named from `X-WOPI-SuggestedTarget` (UTF-7; `.ext` keeps
/// the name and changes the extension; made unique) or `X-WOPI-RelativeTarget` (exact; 409
/// if taken, unless `X-WOPI-OverwriteRelativeTarget: true`), with a new token.
async fn put_relative(
    state: &State,
    parts: &Parts,
    body: &mut Option<BodyReader<'_>>,
    file_id: &str,
    grant: &Grant,
) -> Outcome {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(utf7_decode)
    };
    let suggested = header("x-wopi-suggestedtarget").filter(|s| !s.is_empty());
    let relative = header("x-wopi-relativetarget").filter(|s| !s.is_empty());
    let overwrite = header("x-wopi-overwriterelativetarget").is_some_and(|v| v == "true");
    let (name, reuse) = {
        let host = state.host();
        let Some(source) = host.files.get(file_id) else {
            return json_response(StatusCode::NOT_FOUND, &json!([])).into();
        };
        let existing = |name: &str| {
            host.files
                .iter()
                .find(|(_, file)| file.name == name)
                .map(|(id, _)| id.clone())
        };
        match (suggested, relative) {
            (Some(suggested), None) => {
                let wanted = if suggested.starts_with('.') {
                    format!("{}{suggested}", stem(&source.name))
                } else {
                    suggested
                };
                (unique_name(&wanted, |name| existing(name).is_some()), None)
            }
            (None, Some(relative)) => match existing(&relative) {
                Some(_) if !overwrite => {
                    let valid = unique_name(&relative, |name| existing(name).is_some());
                    let mut response = json_response(StatusCode::CONFLICT, &json!([]));
                    if let Ok(valid) = HeaderValue::from_str(&valid) {
                        response
                            .headers_mut()
                            .insert("x-wopi-validrelativetarget", valid);
                    }
                    return response.into();
                }
                taken => (relative, taken),
            },
            _ => return json_response(StatusCode::BAD_REQUEST, &json!([])).into(),
        }
    };
    let read = match read_upload(state, body).await {
        Ok(read) => read,
        Err(outcome) => return outcome,
    };
    let new_id = reuse.unwrap_or_else(|| {
        let instance = file_id.split_once('_').map_or("ocstandin", |(_, i)| i);
        format!("{}_{instance}", state.next_file_number())
    });
    let token = state.mint("put-relative");
    {
        let mut host = state.host();
        let version = host.files.get(&new_id).map_or(1, |file| file.version + 1);
        host.files.insert(
            new_id.clone(),
            File {
                name: name.clone(),
                content: match read.kept {
                    Some(bytes) => Content::Bytes(bytes.into()),
                    None => Content::Discarded(read.len),
                },
                version,
                modified: SystemTime::now(),
                lock: None,
                template: None,
            },
        );
        host.grants
            .insert((new_id.clone(), token.clone()), grant.clone());
    }
    lock(&state.puts).push(PutRecord {
        file_id: new_id.clone(),
        operation: WopiOperation::PutRelativeFile,
        len: read.len,
        sha256: read.sha256,
    });
    let number = new_id.split('_').next().unwrap_or_default();
    let origin = &state.origin;
    let (url_override, extra) = {
        let host = state.host();
        (
            host.put_relative_url.clone(),
            host.put_relative_extra.clone(),
        )
    };
    let mut answer = json!({
        "Name": name,
        "Url": url_override.unwrap_or_else(|| {
            format!("{origin}{WOPI_FILES_PATH}{new_id}?access_token={token}")
        }),
        "HostEditUrl": format!("{origin}/index.php/apps/files/?fileid={number}"),
        "HostViewUrl": format!("{origin}/index.php/f/{number}"),
    });
    if let Some(extra) = extra {
        merge(&mut answer, &extra);
    }
    json_response(StatusCode::OK, &answer).into()
}

/// RenameFile: `X-WOPI-RequestedName` (UTF-7, without extension) + the old extension,
/// made unique; then, as richdocuments' `postFile` does after `move`, the request body is
/// written into the file (`putContent`): Collabora sends the document, an empty body
/// leaves 0 bytes. Answered as richdocuments does, with a new token's `Url`.
async fn rename_file(
    state: &State,
    parts: &Parts,
    body: &mut Option<BodyReader<'_>>,
    file_id: &str,
    grant: &Grant,
) -> Outcome {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let Some(requested) = header("x-wopi-requestedname")
        .map(utf7_decode)
        .filter(|name| !name.is_empty() && !name.contains('/'))
    else {
        return json_response(StatusCode::BAD_REQUEST, &json!([])).into();
    };
    {
        let host = state.host();
        let Some(file) = host.files.get(file_id) else {
            return json_response(StatusCode::NOT_FOUND, &json!([])).into();
        };
        if !lock_allows(&host, file.lock.as_deref(), header("x-wopi-lock")) {
            return file_locked().into();
        }
    }
    let Some(reader) = body.take() else {
        return json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!([])).into();
    };
    let written = match reader.upload(None).await {
        Upload::Complete(read) => match read.kept {
            Some(bytes) => Content::Bytes(bytes.into()),
            None => Content::Discarded(read.len),
        },
        Upload::Broken(reason) => {
            return text(StatusCode::BAD_REQUEST, format!("{reason}\n")).into();
        }
        Upload::Reset => return Outcome::Reset,
    };
    let token = state.mint("rename");
    let mut host = state.host();
    let Some(file) = host.files.get(file_id) else {
        return json_response(StatusCode::NOT_FOUND, &json!([])).into();
    };
    let extension = file.name.rsplit_once('.').map(|(_, ext)| ext.to_owned());
    let wanted = match extension {
        Some(ext) => format!("{requested}.{ext}"),
        None => requested,
    };
    let name = unique_name(&wanted, |name| {
        host.files
            .iter()
            .any(|(id, file)| id != file_id && file.name == name)
    });
    if let Some(file) = host.files.get_mut(file_id) {
        file.name.clone_from(&name);
        file.content = written;
        file.version += 1;
        file.modified = SystemTime::now();
    }
    host.grants
        .insert((file_id.to_owned(), token.clone()), grant.clone());
    let extra = host.put_relative_extra.clone();
    drop(host);
    let mut answer = json!({
        "Name": name,
        "Url": format!("{}{WOPI_FILES_PATH}{file_id}?access_token={token}", state.origin),
    });
    if let Some(extra) = extra {
        merge(&mut answer, &extra);
    }
    json_response(StatusCode::OK, &answer).into()
}

/// DeleteFile: removes the file unless another lock holds it.
fn delete_file(state: &State, parts: &Parts, file_id: &str) -> Response<Body> {
    let sent = parts
        .headers
        .get("x-wopi-lock")
        .and_then(|value| value.to_str().ok());
    let mut host = state.host();
    let Some(file) = host.files.get(file_id) else {
        return json_response(StatusCode::NOT_FOUND, &json!([]));
    };
    if !lock_allows(&host, file.lock.as_deref(), sent) {
        return file_locked();
    }
    host.files.remove(file_id);
    json_response(StatusCode::OK, &json!([]))
}

/// The name without its last extension.
fn stem(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(stem, _)| stem)
}

/// `wanted`, or `stem (2).ext`, `stem (3).ext`... the first one not `taken`, as
/// Nextcloud's `getNonExistingName`.
fn unique_name(wanted: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(wanted) {
        return wanted.to_owned();
    }
    let (stem, ext) = match wanted.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (wanted, String::new()),
    };
    (2_u32..)
        .map(|n| format!("{stem} ({n}){ext}"))
        .find(|name| !taken(name))
        .unwrap_or_else(|| wanted.to_owned())
}

/// Decodes UTF-7 (RFC 2152), as richdocuments' `mb_convert_encoding(.., 'utf-8', 'utf-7')`:
/// `+<modified base64 of UTF-16BE>[-]`, `+-` for `+`.
fn utf7_decode(encoded: &str) -> String {
    fn sextet(byte: u8) -> Option<u32> {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(value))
    }
    let bytes = encoded.as_bytes();
    let mut out = String::with_capacity(encoded.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'+' {
            let start = i;
            while i < bytes.len() && bytes[i] != b'+' {
                i += 1;
            }
            out.push_str(&encoded[start..i]);
            continue;
        }
        i += 1;
        let (mut bits, mut nbits, mut units) = (0_u32, 0_u32, Vec::new());
        let start = i;
        while let Some(value) = bytes.get(i).copied().and_then(sextet) {
            bits = (bits << 6) | value;
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push(u16::try_from((bits >> nbits) & 0xFFFF).unwrap_or(0xFFFD));
            }
            bits &= (1 << nbits) - 1;
            i += 1;
        }
        if i == start {
            out.push('+');
        }
        out.extend(char::decode_utf16(units).map(|c| c.unwrap_or('\u{FFFD}')));
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
    }
    out
}

/// LOCK (and UnlockAndRelock), UNLOCK, REFRESH_LOCK, GET_LOCK on the file's one lock.
fn lock_operation(
    state: &State,
    file_id: &str,
    operation: &WopiOperation,
    sent: Option<String>,
    old: Option<String>,
) -> Response<Body> {
    let mut host = state.host();
    let lock_ids_ignored = host.lock_ids_ignored;
    let Some(file) = host.files.get_mut(file_id) else {
        return json_response(StatusCode::NOT_FOUND, &json!([]));
    };
    if *operation == WopiOperation::GetLock {
        let mut response = json_response(StatusCode::OK, &json!([]));
        let current = file.lock.clone().unwrap_or_default();
        response
            .headers_mut()
            .insert("x-wopi-lock", lock_header(&current));
        return response;
    }
    let Some(sent) = sent.filter(|sent| !sent.is_empty()) else {
        return json_response(StatusCode::BAD_REQUEST, &json!([]));
    };
    if lock_ids_ignored {
        // richdocuments: one app lock; LOCK and REFRESH_LOCK (re)take it, UNLOCK drops it.
        file.lock = (*operation != WopiOperation::Unlock).then_some(sent);
        return json_response(StatusCode::OK, &json!([]));
    }
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
        _ => None,
    };
    match outcome {
        Some(new_lock) => {
            file.lock = new_lock;
            json_response(StatusCode::OK, &json!([]))
        }
        // richdocuments: 423 and no X-WOPI-Lock (the WOPI spec says 409 with it).
        None => json_response(StatusCode::LOCKED, &json!([])),
    }
}

/// A lock as a header value (locks are opaque strings up to 1024 ASCII characters).
fn lock_header(lock: &str) -> HeaderValue {
    HeaderValue::from_str(lock).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// 403 `[]`: richdocuments' answer to an unknown token or a token for another file.
fn forbidden() -> Response<Body> {
    json_response(StatusCode::FORBIDDEN, &json!([]))
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

/// `bytes` in 64 KiB chunks.
fn bytes_body(bytes: Bytes) -> Body {
    let chunks = (0..bytes.len())
        .step_by(CHUNK)
        .map(move |start| bytes.slice(start..(start + CHUNK).min(bytes.len())));
    stream_body(futures_util::stream::iter(chunks))
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

/// A `JSONResponse` as Nextcloud sends it.
fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// The first value of `name` in a query string, decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// richdocuments' `Helper::toISO8601`: `YYYY-MM-DDTHH:MM:SS.000000Z` (UTC, whole seconds),
/// the form of `LastModifiedTime` and of the `X-COOL-WOPI-Timestamp` PutFile must match.
fn iso8601(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
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
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000000Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}
