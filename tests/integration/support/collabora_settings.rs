//! A stand-in Collabora node that makes the settings calls real coolwsd makes: a real
//! loopback server, modelled on CollaboraOnline/online at 8010c096 (`wsd/FileServer.cpp`
//! `preprocessIntegratorAdminFile`, `fetchWopiSettingConfigs`, `uploadFileToIntegrator`,
//! `deleteWopiSettingConfigs`, `fetchSettingFile`; `wsd/DocumentBroker.cpp`
//! `asyncInstallPresets`; `wsd/RequestVettingStation.cpp` `SharedSettings`;
//! `wsd/wopi/StorageConnectionManager.cpp` `initHttpRequest`). Kept apart from
//! `editor.rs`, which stands in for the rest of the editors.
//!
//! | request | what it does |
//! |---|---|
//! | `GET /hosting/discovery`, `/hosting/capabilities`, `/` | a small discovery with a `writer` app, the `Settings` app (`/browser/<hash>/admin/adminIntegratorSettings.html`, no query, as coolwsd announces it) and its proof key; capabilities with `hasSettingIframeSupport` |
//! | `GET\|POST /browser/<hash>/[admin/]adminIntegratorSettings.html` | the settings page: the form (and query) values written into `data-*` attributes ([`SettingsPage`]) |
//! | `POST /browser/dist/fetch-settings-config`, `upload-settings`, `delete-settings-config`, `fetch-settings-file` | the page's XHRs (multipart, as `FormData` sends them): coolwsd's calls to the settings endpoint they name, refused with 403 unless that host is on the WOPI allow-list ([`StandInSettingsNode::allow_wopi_host`]) |
//! | `POST /browser/<hash>/cool.html?WOPISrc=..` | a document: CheckFileInfo, then CheckFileInfo's `SharedSettings.uri` and `UserSettings.uri` and every file they list, fetched as coolwsd installs presets ([`Preset`]); the page shows `wopi_setting_base_url` and the token |
//!
//! Calls to the WOPI host carry what coolwsd's `createHttpRequest` adds:
//! `Authorization: Bearer` (unless `noAuthHeader`), `X-COOL-WOPI-ServerId`, and a proof
//! (`X-WOPI-TimeStamp`, `X-WOPI-Proof`, `X-WOPI-ProofOld`) whenever the URL has an
//! `access_token`; preset fetches are plain GETs. Every call is recorded
//! ([`StandInSettingsNode::calls`]).
//!
//! One deviation: coolwsd's allow-list compares host names only; every stand-in listens on
//! 127.0.0.1, so this one compares host **and port**.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use officeswitch::wopi::proof_key::{ProofKey, PublicProofKey};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

use super::client::{self, Reply};
use super::serve;

/// The version hash the node serves its pages under.
pub const VERSION_HASH: &str = "5e771a9";

/// .NET ticks (100 ns) from 0001-01-01 to the Unix epoch.
const DOTNET_EPOCH_TICKS: u64 = 621_355_968_000_000_000;

/// Largest request body read (forms and uploaded settings files).
const MAX_BODY: usize = 4 << 20;

/// What Poco's `URI::addQueryParameter` leaves unencoded in a value.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The preset groups coolwsd installs, in its order (`PresetsInstallTask::install`).
const PRESET_GROUPS: [&str; 6] = [
    "browsersetting",
    "autotext",
    "wordbook",
    "viewsetting",
    "xcu",
    "template",
];

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// One call the node made to a WOPI host.
#[derive(Clone, Debug)]
pub struct HostCall {
    /// The method.
    pub method: Method,
    /// The URL, exactly as requested.
    pub url: String,
    /// Whether it carried a proof.
    pub signed: bool,
    /// The host's status; `None` when the call failed on the wire.
    pub status: Option<StatusCode>,
}

/// One preset file coolwsd fetched while loading a document.
#[derive(Clone, Debug)]
pub struct Preset {
    /// coolwsd's config id: `shared-<scheme>_<authority><path>-<stamp>` or
    /// `user-<UserId>-<scheme>_<authority><path>`.
    pub config_id: String,
    /// The group (`xcu`, `autotext`...).
    pub group: String,
    /// The file name coolwsd gives it: `file_name=` of its URL, else its last segment.
    pub file_name: String,
    /// The host's status.
    pub status: Option<StatusCode>,
    /// The bytes received.
    pub bytes: Bytes,
}

/// One page the node served: its path and the form (or query) values it was given.
#[derive(Clone, Debug)]
pub struct PageVisit {
    /// The request path.
    pub path: String,
    /// Form fields and query parameters, decoded.
    pub fields: Vec<(String, String)>,
}

impl PageVisit {
    /// The first value of `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The values a served page (settings or document) holds, as its script reads them.
#[derive(Clone, Debug, Default)]
pub struct SettingsPage {
    /// `data-access-token`.
    pub access_token: String,
    /// `data-access-token-ttl`.
    pub access_token_ttl: String,
    /// `data-wopi-setting-base-url`.
    pub wopi_setting_base_url: String,
    /// `data-iframe-type` (`admin` or `user`; empty on a document page).
    pub iframe_type: String,
}

impl SettingsPage {
    /// Reads the `data-*` attributes of a page the node served.
    pub fn parse(html: &str) -> SettingsPage {
        let attribute = |name: &str| {
            let open = format!("{name}=\"");
            html.find(&open)
                .map(|at| &html[at + open.len()..])
                .and_then(|rest| rest.split_once('"'))
                .map(|(value, _)| html_unescape(value))
                .unwrap_or_default()
        };
        SettingsPage {
            access_token: attribute("data-access-token"),
            access_token_ttl: attribute("data-access-token-ttl"),
            wopi_setting_base_url: attribute("data-wopi-setting-base-url"),
            iframe_type: attribute("data-iframe-type"),
        }
    }

    /// The config type the page asks for (`getConfigType`).
    fn config_type(&self) -> &'static str {
        if self.iframe_type == "admin" {
            "systemconfig"
        } else {
            "userconfig"
        }
    }

    /// What the page's `OnlineSettingsStorage` POSTs, to the page's origin `origin`:
    /// `endpoint` under `/browser/dist/`, `fields` as multipart form data (a field with a
    /// file name is a file), `Authorization: Bearer <token>`.
    async fn xhr(&self, origin: &str, endpoint: &str, fields: &[Field<'_>]) -> Reply {
        let (content_type, body) = multipart(fields);
        let bearer = format!("Bearer {}", self.access_token);
        client::send(
            Method::POST,
            &format!("{origin}/browser/dist/{endpoint}"),
            &[("content-type", &content_type), ("authorization", &bearer)],
            &body,
        )
        .await
    }

    /// `fetchSettingsConfig`: the page's configuration (JSON).
    pub async fn fetch_settings_config(&self, origin: &str) -> Reply {
        let fields = [
            Field::text("sharedConfigUrl", &self.wopi_setting_base_url),
            Field::text("accessToken", &self.access_token),
            Field::text("type", self.config_type()),
        ];
        self.xhr(origin, "fetch-settings-config", &fields).await
    }

    /// `uploadSettings`: uploads `name` into `category` of the page's config type.
    pub async fn upload_settings(
        &self,
        origin: &str,
        category: &str,
        name: &str,
        bytes: &[u8],
    ) -> Reply {
        let path = format!("/settings/{}/{category}/", self.config_type());
        let fields = [
            Field::file("file", name, bytes),
            Field::text("filePath", &path),
            Field::text("wopiSettingBaseUrl", &self.wopi_setting_base_url),
        ];
        self.xhr(origin, "upload-settings", &fields).await
    }

    /// `fetchSettingFile`: one file of the configuration, by its `uri`.
    pub async fn fetch_setting_file(&self, origin: &str, file_url: &str) -> Reply {
        let fields = [
            Field::text("fileUrl", file_url),
            Field::text("accessToken", &self.access_token),
        ];
        self.xhr(origin, "fetch-settings-file", &fields).await
    }

    /// `deleteSettingsConfig`: deletes `name` from `category`.
    pub async fn delete_settings_config(&self, origin: &str, category: &str, name: &str) -> Reply {
        let file_id = format!("/settings/{}/{category}/{name}", self.config_type());
        let fields = [
            Field::text("fileId", &file_id),
            Field::text("sharedConfigUrl", &self.wopi_setting_base_url),
            Field::text("accessToken", &self.access_token),
        ];
        self.xhr(origin, "delete-settings-config", &fields).await
    }
}

/// One multipart field.
pub struct Field<'a> {
    name: &'a str,
    file_name: Option<&'a str>,
    value: &'a [u8],
}

impl<'a> Field<'a> {
    /// A text field.
    pub fn text(name: &'a str, value: &'a str) -> Self {
        Field {
            name,
            file_name: None,
            value: value.as_bytes(),
        }
    }

    /// A file field.
    pub fn file(name: &'a str, file_name: &'a str, value: &'a [u8]) -> Self {
        Field {
            name,
            file_name: Some(file_name),
            value,
        }
    }
}

/// `fields` as `multipart/form-data`, as a browser sends `FormData`: (content type, body).
pub fn multipart(fields: &[Field<'_>]) -> (String, Vec<u8>) {
    let boundary = "----standinFormBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for field in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match field.file_name {
            Some(file) => format!(
                "Content-Disposition: form-data; name=\"{}\"; filename=\"{file}\"\r\n\
                 Content-Type: application/octet-stream\r\n",
                field.name
            ),
            None => format!(
                "Content-Disposition: form-data; name=\"{}\"\r\n",
                field.name
            ),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(field.value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A parsed form part: name, file name, value.
type Part = (String, Option<String>, Bytes);

/// The parts of a `multipart/form-data` body (what Poco's `HTMLForm` reads); empty when
/// it is not one.
fn parse_multipart(content_type: &str, body: &Bytes) -> Vec<Part> {
    let Some((_, boundary)) = content_type.split_once("boundary=") else {
        return Vec::new();
    };
    let delimiter = format!("--{}", boundary.trim_matches('"'));
    let text = body.as_ref();
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(at) = find(rest, delimiter.as_bytes()) {
        rest = &rest[at + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let Some(head_end) = find(rest, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        let content = &rest[head_end + 4..];
        let end = find(content, format!("\r\n{delimiter}").as_bytes()).unwrap_or(content.len());
        let attribute = |name: &str| {
            let open = format!("{name}=\"");
            head.find(&open)
                .map(|i| &head[i + open.len()..])
                .and_then(|r| r.split_once('"'))
                .map(|(v, _)| v.to_owned())
        };
        if let Some(name) = attribute(" name") {
            parts.push((
                name,
                attribute("filename"),
                Bytes::copy_from_slice(&content[..end]),
            ));
        }
        rest = &content[end..];
    }
    parts
}

/// Index of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A running stand-in node. Dropping it stops the server.
pub struct StandInSettingsNode {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

/// State shared with the connection tasks.
struct Shared {
    /// `http://127.0.0.1:PORT`.
    base: String,
    key: ProofKey,
    server_id: String,
    /// Authorities (`host:port`) on the WOPI allow-list.
    allowed: Mutex<Vec<String>>,
    pages: Mutex<Vec<PageVisit>>,
    calls: Mutex<Vec<HostCall>>,
    presets: Mutex<Vec<Preset>>,
    http: Client<HttpConnector, Full<Bytes>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StandInSettingsNode {
    /// Starts a node on `127.0.0.1:0` with a fresh proof key and an empty allow-list.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("stand-in settings node: bind");
        let addr = listener.local_addr().expect("bound address");
        let key = tokio::task::spawn_blocking(ProofKey::generate)
            .await
            .expect("key task")
            .expect("proof key");
        let shared = Arc::new(Shared {
            base: format!("http://{addr}"),
            key,
            server_id: format!("{:08x}", addr.port()),
            allowed: Mutex::new(Vec::new()),
            pages: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
            presets: Mutex::new(Vec::new()),
            http: Client::builder(TokioExecutor::new()).build_http(),
        });
        let (shutdown, stop) = watch::channel(false);
        let serving = Arc::clone(&shared);
        let server = tokio::spawn(serve::accept_until(
            listener,
            stop,
            "stand-in settings node",
            move |stream| {
                let shared = Arc::clone(&serving);
                async move {
                    let service = service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            },
        ));
        StandInSettingsNode {
            addr,
            shared,
            shutdown,
            server: Some(server),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }

    /// Its public proof key.
    pub fn public_key(&self) -> &PublicProofKey {
        self.shared.key.public()
    }

    /// Puts the host of `url` on the WOPI allow-list (`storage.wopi.alias_groups`):
    /// docs/operations.md has nodes list officeswitch only.
    pub fn allow_wopi_host(&self, url: &str) {
        let authority = Url::parse(url)
            .ok()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            .expect("an http(s) URL");
        lock(&self.shared.allowed).push(authority);
    }

    /// Every page served, in order.
    pub fn pages(&self) -> Vec<PageVisit> {
        lock(&self.shared.pages).clone()
    }

    /// Every call made to a WOPI host, in order.
    pub fn calls(&self) -> Vec<HostCall> {
        lock(&self.shared.calls).clone()
    }

    /// Every preset fetched while loading documents, in order.
    pub fn presets(&self) -> Vec<Preset> {
        lock(&self.shared.presets).clone()
    }
}

impl Drop for StandInSettingsNode {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Answers one request.
async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let headers = req.headers().clone();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, "text/plain", "body too large\n"),
    };
    let dist = path.strip_prefix("/browser/dist/");
    match (method.as_str(), path.as_str()) {
        ("GET", "/hosting/discovery") => reply(StatusCode::OK, "text/xml", discovery(shared)),
        ("GET", "/hosting/capabilities") => reply(
            StatusCode::OK,
            "application/json",
            capabilities(&shared.server_id),
        ),
        ("GET" | "HEAD", "/") => reply(StatusCode::OK, "text/plain", "OK"),
        ("POST", _) if dist.is_some() => {
            let fields = form_parts(&headers, &body);
            settings_call(shared, dist.unwrap_or_default(), &headers, &fields).await
        }
        ("GET" | "POST", _) if is_settings_page(&path) => {
            let fields = page_fields(query.as_deref(), &headers, &body);
            settings_page(shared, &path, fields)
        }
        ("POST", _) if path == format!("/browser/{VERSION_HASH}/cool.html") => {
            let fields = page_fields(query.as_deref(), &headers, &body);
            document_page(shared, &path, fields).await
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "Not Found\n"),
    }
}

/// `/browser/<hash>/[admin/]adminIntegratorSettings.html`.
fn is_settings_page(path: &str) -> bool {
    let page = format!("/browser/{VERSION_HASH}/");
    path.strip_prefix(&page).is_some_and(|rest| {
        rest == "admin/adminIntegratorSettings.html" || rest == "adminIntegratorSettings.html"
    })
}

/// The query's parameters, then the urlencoded form's fields (Poco's `HTMLForm` reads both).
fn page_fields(query: Option<&str>, headers: &HeaderMap, body: &Bytes) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    fields.extend(
        form_parts(headers, body)
            .into_iter()
            .map(|(name, _, value)| (name, String::from_utf8_lossy(&value).into_owned())),
    );
    fields
}

/// A POST body's fields: multipart or urlencoded.
fn form_parts(headers: &HeaderMap, body: &Bytes) -> Vec<Part> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("multipart/form-data") {
        return parse_multipart(content_type, body);
    }
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), None, Bytes::from(v.into_owned())))
        .collect()
}

/// `preprocessIntegratorAdminFile`: the page with the form's values.
fn settings_page(shared: &Shared, path: &str, fields: Vec<(String, String)>) -> Response<Body> {
    let visit = PageVisit {
        path: path.to_owned(),
        fields,
    };
    let value = |name: &str| html_escape(visit.field(name).unwrap_or_default());
    let html = format!(
        "<!DOCTYPE html>\n<html><head><title>Settings</title></head><body>\n\
         <div id=\"initial-variables\" data-access-token=\"{}\" data-access-token-ttl=\"{}\" \
         data-wopi-setting-base-url=\"{}\" data-iframe-type=\"{}\" data-ui-theme=\"{}\"></div>\n\
         </body></html>\n",
        value("access_token"),
        value("access_token_ttl"),
        value("wopi_setting_base_url"),
        value("iframe_type"),
        value("ui_theme"),
    );
    lock(&shared.pages).push(visit);
    let mut response = reply(StatusCode::OK, "text/html", html);
    // coolwsd's CSP for this page: no frame-ancestors of its own.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; frame-src 'self' blob:; connect-src 'self'; script-src 'self' 'unsafe-eval'; img-src 'self' data:",
        ),
    );
    response
}

/// The first value of `name` in `fields`, or "".
fn field<'a>(fields: &'a [Part], name: &str) -> Option<&'a Part> {
    fields.iter().find(|(n, _, _)| n == name)
}

fn text_field(fields: &[Part], name: &str) -> String {
    field(fields, name)
        .map(|(_, _, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// The page's XHRs, as `FileServerRequestHandler` handles them.
async fn settings_call(
    shared: &Shared,
    endpoint: &str,
    headers: &HeaderMap,
    fields: &[Part],
) -> Response<Body> {
    let no_auth = !text_field(fields, "noAuthHeader").is_empty();
    match endpoint {
        "fetch-settings-config" => {
            let (url, token, kind) = (
                text_field(fields, "sharedConfigUrl"),
                text_field(fields, "accessToken"),
                text_field(fields, "type"),
            );
            if url.is_empty() || token.is_empty() || kind.is_empty() {
                return bad("Missing sharedConfigUrl or accessToken or type in the payload");
            }
            let mut params = vec![
                ("access_token", token.as_str()),
                ("fileId", "-1"),
                ("type", &kind),
            ];
            if no_auth {
                params.push(("no_auth_header", "1"));
            }
            let bearer = (!no_auth).then_some(token.as_str());
            relay(
                shared,
                Method::GET,
                &url,
                &params,
                bearer,
                Bytes::new(),
                "application/json",
                &[200, 204],
            )
            .await
        }
        "delete-settings-config" => {
            let (url, token, file_id) = (
                text_field(fields, "sharedConfigUrl"),
                text_field(fields, "accessToken"),
                text_field(fields, "fileId"),
            );
            if url.is_empty() || token.is_empty() || file_id.is_empty() {
                return bad("Missing sharedConfigUrl or accessToken or fileId in the payload");
            }
            let bearer = (!no_auth).then_some(token.as_str());
            let params = [
                ("access_token", token.as_str()),
                ("fileId", file_id.as_str()),
            ];
            relay(
                shared,
                Method::DELETE,
                &url,
                &params,
                bearer,
                Bytes::new(),
                "application/json",
                &[200, 204],
            )
            .await
        }
        "upload-settings" => {
            let Some((_, Some(file_name), content)) =
                fields.iter().find(|(_, file, _)| file.is_some())
            else {
                return bad("No valid file uploaded.");
            };
            if file_name.is_empty() || content.is_empty() {
                return bad("No valid file uploaded.");
            }
            let authorization = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let Some(token) = authorization.strip_prefix("Bearer ") else {
                return bad("Missing or invalid Authorization header.");
            };
            let (path, base) = (
                text_field(fields, "filePath"),
                text_field(fields, "wopiSettingBaseUrl"),
            );
            if path.is_empty() || base.is_empty() {
                return bad("Missing required field filePath or wopiSettingBaseUrl");
            }
            let file_id = format!("{path}{file_name}");
            let params = [("fileId", file_id.as_str()), ("access_token", token)];
            let url = format!("{base}/upload");
            let answer = relay(
                shared,
                Method::POST,
                &url,
                &params,
                Some(token),
                content.clone(),
                "application/octet-stream",
                &[200],
            )
            .await;
            if answer.status() == StatusCode::OK {
                return reply(
                    StatusCode::OK,
                    "text/plain",
                    "File uploaded successfully to WopiHost.",
                );
            }
            answer
        }
        "fetch-settings-file" => {
            let (url, token) = (
                text_field(fields, "fileUrl"),
                text_field(fields, "accessToken"),
            );
            if url.is_empty() || token.is_empty() {
                return bad("Missing fileUrl or accessToken in the payload");
            }
            let has_token =
                Url::parse(&url).is_ok_and(|u| u.query_pairs().any(|(k, _)| k == "access_token"));
            let mut params = Vec::new();
            if !has_token {
                params.push(("access_token", token.as_str()));
            }
            if no_auth {
                params.push(("no_auth_header", "1"));
            }
            let bearer = (!no_auth).then_some(token.as_str());
            let mut answer = relay(
                shared,
                Method::GET,
                &url,
                &params,
                bearer,
                Bytes::new(),
                "text/plain",
                &[200],
            )
            .await;
            if answer.status() == StatusCode::OK {
                answer.headers_mut().insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment"),
                );
            }
            answer
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "Not Found\n"),
    }
}

/// 400 with coolwsd's message.
fn bad(why: &str) -> Response<Body> {
    reply(StatusCode::BAD_REQUEST, "text/plain", why.to_owned())
}

/// Calls the WOPI host for an XHR and answers the page: 403 when the host is not on the
/// allow-list, the host's status when it is not one of `ok`, else 200 with its body.
#[allow(clippy::too_many_arguments)]
async fn relay(
    shared: &Shared,
    method: Method,
    url: &str,
    params: &[(&str, &str)],
    bearer: Option<&str>,
    body: Bytes,
    content_type: &'static str,
    ok: &[u16],
) -> Response<Body> {
    if !allowed(shared, url) {
        return reply(
            StatusCode::FORBIDDEN,
            "text/plain",
            "Target host is not in the allowed WOPI host list",
        );
    }
    let url = with_params(url, params);
    let (status, body) = call(shared, method, &url, bearer, body, content_type, true).await;
    match status {
        Some(status) if ok.contains(&status.as_u16()) => reply(StatusCode::OK, content_type, body),
        Some(status) => reply(status, "text/plain", body),
        None => reply(StatusCode::BAD_GATEWAY, "text/plain", "no answer"),
    }
}

/// Whether `url`'s host and port are on the allow-list.
fn allowed(shared: &Shared, url: &str) -> bool {
    let Some(authority) = Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
    else {
        return false;
    };
    lock(&shared.allowed).contains(&authority)
}

/// `url` with `params` added as Poco's `addQueryParameter` adds them.
fn with_params(url: &str, params: &[(&str, &str)]) -> String {
    let mut out = url.to_owned();
    for (name, value) in params {
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(name);
        out.push('=');
        out.push_str(&utf8_percent_encode(value, QUERY_VALUE).to_string());
    }
    out
}

/// Makes one call to a WOPI host, as `StorageConnectionManager::createHttpRequest` builds
/// it (`signable`: with a proof when the URL has an `access_token`; preset fetches are
/// plain requests), records it, and returns its status and body.
async fn call(
    shared: &Shared,
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Bytes,
    content_type: &'static str,
    signable: bool,
) -> (Option<StatusCode>, Bytes) {
    let mut request = Request::builder().method(method.clone()).uri(url);
    let token = Url::parse(url).ok().and_then(|u| {
        u.query_pairs()
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
    });
    let mut signed = false;
    if signable {
        request = request
            .header("User-Agent", "COOLWSD HTTP Agent 26.04.0.1")
            .header(header::CONTENT_TYPE, content_type)
            .header("X-COOL-WOPI-ServerId", &shared.server_id);
        if let Some(bearer) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {bearer}"));
        }
        if let Some(token) = &token {
            let ticks = dotnet_ticks_now();
            let signature = shared
                .key
                .sign(&proof_message(token, url, ticks))
                .expect("sign");
            let proof = base64::engine::general_purpose::STANDARD.encode(signature);
            request = request
                .header("X-WOPI-TimeStamp", ticks.to_string())
                .header("X-WOPI-Proof", &proof)
                .header("X-WOPI-ProofOld", &proof);
            signed = true;
        }
    }
    let request = request.body(Full::new(body)).expect("a request");
    let outcome = match shared.http.request(request).await {
        Ok(response) => {
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            (Some(status), bytes)
        }
        Err(_) => (None, Bytes::new()),
    };
    lock(&shared.calls).push(HostCall {
        method,
        url: url.to_owned(),
        signed,
        status: outcome.0,
    });
    outcome
}

/// A document's page: CheckFileInfo, then the presets its settings list, as coolwsd
/// installs them before the document loads.
async fn document_page(
    shared: &Shared,
    path: &str,
    fields: Vec<(String, String)>,
) -> Response<Body> {
    let visit = PageVisit {
        path: path.to_owned(),
        fields,
    };
    let wopi_src = visit.field("WOPISrc").unwrap_or_default().to_owned();
    let token = visit.field("access_token").unwrap_or_default().to_owned();
    let html = format!(
        "<!DOCTYPE html>\n<html><body><div id=\"initial-variables\" data-access-token=\"{}\" \
         data-access-token-ttl=\"{}\" data-wopi-setting-base-url=\"{}\"></div></body></html>\n",
        html_escape(&token),
        html_escape(visit.field("access_token_ttl").unwrap_or_default()),
        html_escape(visit.field("wopi_setting_base_url").unwrap_or_default()),
    );
    lock(&shared.pages).push(visit);
    if !allowed(shared, &wopi_src) {
        return reply(
            StatusCode::FORBIDDEN,
            "text/plain",
            "WOPISrc host not allowed",
        );
    }
    let url = with_params(&wopi_src, &[("access_token", &token)]);
    let (status, body) = call(
        shared,
        Method::GET,
        &url,
        Some(&token),
        Bytes::new(),
        "application/json",
        true,
    )
    .await;
    if status != Some(StatusCode::OK) {
        return reply(
            StatusCode::BAD_GATEWAY,
            "text/plain",
            "CheckFileInfo failed",
        );
    }
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let user = info["UserId"].as_str().unwrap_or_default().to_owned();
    for (object, prefix) in [
        ("SharedSettings", "shared".to_owned()),
        ("UserSettings", format!("user-{user}")),
    ] {
        let Some(uri) = info[object]["uri"].as_str() else {
            continue;
        };
        let stamp = info[object]["stamp"].as_str().unwrap_or_default();
        let mut config_id = format!("{prefix}-{}", config_id(uri));
        if object == "SharedSettings" && !stamp.is_empty() {
            config_id = format!("{config_id}-{stamp}");
        }
        install_presets(shared, &config_id, uri).await;
    }
    reply(StatusCode::OK, "text/html", html)
}

/// `Cache::getConfigId`: scheme, `_`, authority and path of the settings URL.
fn config_id(uri: &str) -> String {
    Url::parse(uri).map_or_else(
        |_| uri.to_owned(),
        |u| {
            let authority = match u.port() {
                Some(port) => format!("{}:{port}", u.host_str().unwrap_or_default()),
                None => u.host_str().unwrap_or_default().to_owned(),
            };
            format!("{}_{authority}{}", u.scheme(), u.path())
        },
    )
}

/// `asyncInstallPresets`: the settings JSON, then each file of its groups, plain GETs.
async fn install_presets(shared: &Shared, config_id: &str, uri: &str) {
    let (status, body) = call(
        shared,
        Method::GET,
        uri,
        None,
        Bytes::new(),
        "application/json",
        false,
    )
    .await;
    if status != Some(StatusCode::OK) {
        return;
    }
    let settings: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    for group in PRESET_GROUPS {
        let Some(items) = settings[group].as_array() else {
            continue;
        };
        for item in items {
            let Some(file_uri) = item["uri"].as_str() else {
                continue;
            };
            let file_name = Url::parse(file_uri)
                .ok()
                .and_then(|u| {
                    u.query_pairs()
                        .find(|(k, _)| k == "file_name")
                        .map(|(_, v)| v.into_owned())
                })
                .unwrap_or_else(|| {
                    let path = file_uri.split('?').next().unwrap_or_default();
                    path.rsplit('/').next().unwrap_or_default().to_owned()
                });
            let (status, bytes) =
                call(shared, Method::GET, file_uri, None, Bytes::new(), "", false).await;
            lock(&shared.presets).push(Preset {
                config_id: config_id.to_owned(),
                group: group.to_owned(),
                file_name,
                status,
                bytes,
            });
        }
    }
}

/// The discovery: a writer app, the Settings app and the Capabilities app, as coolwsd
/// fills in `discovery.xml`, with the node's proof key.
fn discovery(shared: &Shared) -> String {
    let base = &shared.base;
    let key = shared.key.public();
    let (exponent, modulus, value) = (key.exponent_b64(), key.modulus_b64(), key.capi_blob_b64());
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<wopi-discovery>\n\
         <net-zone name=\"external-http\">\n\
         <app favIconUrl=\"{base}/browser/{VERSION_HASH}/images/x-office-document.svg\" name=\"writer\">\n\
         <action default=\"true\" ext=\"odt\" name=\"edit\" urlsrc=\"{base}/browser/{VERSION_HASH}/cool.html?\"/>\n\
         </app>\n\
         <app name=\"application/vnd.oasis.opendocument.text\">\n\
         <action default=\"true\" ext=\"\" name=\"edit\" urlsrc=\"{base}/browser/{VERSION_HASH}/cool.html?\"/>\n\
         </app>\n\
         <app name=\"Settings\">\n\
         <action ext=\"\" name=\"iframe\" urlsrc=\"{base}/browser/{VERSION_HASH}/admin/adminIntegratorSettings.html\"/>\n\
         </app>\n\
         <app name=\"Capabilities\">\n\
         <action ext=\"\" name=\"getinfo\" urlsrc=\"{base}/hosting/capabilities\"/>\n\
         </app>\n\
         </net-zone>\n\
         <proof-key exponent=\"{exponent}\" modulus=\"{modulus}\" oldexponent=\"{exponent}\" \
         oldmodulus=\"{modulus}\" oldvalue=\"{value}\" value=\"{value}\"/>\n\
         </wopi-discovery>\n"
    )
}

/// Capabilities of a settings-capable coolwsd.
fn capabilities(server_id: &str) -> String {
    serde_json::json!({
        "convert-to": {"available": true, "endpoint": "/cool/convert-to"},
        "hasMobileSupport": true,
        "hasProxyPrefix": false,
        "hasSettingIframeSupport": true,
        "hasTemplateSaveAs": false,
        "hasTemplateSource": true,
        "productName": "Collabora Online Development Edition",
        "productVersion": "26.04.0.1",
        "productVersionHash": VERSION_HASH,
        "serverId": server_id,
    })
    .to_string()
}

/// The bytes a WOPI proof signs: token, upper-cased URL and timestamp, each preceded by
/// its big-endian `u32` length.
fn proof_message(token: &str, url: &str, ticks: u64) -> Vec<u8> {
    let url = url.to_ascii_uppercase();
    let mut message = Vec::new();
    for part in [token.as_bytes(), url.as_bytes()] {
        message.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        message.extend_from_slice(part);
    }
    message.extend_from_slice(&8_u32.to_be_bytes());
    message.extend_from_slice(&ticks.to_be_bytes());
    message
}

/// Now as .NET ticks.
fn dotnet_ticks_now() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    DOTNET_EPOCH_TICKS + u64::try_from(since.as_nanos() / 100).unwrap_or(0)
}

/// A response with a whole body.
fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn html_escape(raw: &str) -> String {
    raw.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn html_unescape(escaped: &str) -> String {
    escaped
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
