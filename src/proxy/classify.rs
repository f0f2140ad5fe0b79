//! Phase 1: name what a request is for, from its method, path, query and whether it asks
//! for a protocol upgrade.
//!
//! Pure and allocation-free: `match`es on borrowed path segments, and the document key is
//! a slice of the query string.
//!
//! # URL spaces
//! officeswitch's own paths come first (`/hosting/discovery`, `/hosting/capabilities`,
//! `/healthz`, `/readyz`, `/officeswitch/open/...`, and the WOPI host officeswitch plays
//! towards editors: `/wopi/files/<id>[/contents]`, `/wopi/links/<id>[/<name>]` and
//! `/wopi/settings/<id>[/upload]`). Then each suite's URL space, which do
//! not overlap except for `convert-to`: OnlyOffice also serves `/cool/convert-to`, but
//! Nextcloud's server-side calls expect Collabora, so every `/cool/` and `/lool/` path is
//! Collabora's. Sources: `../shared/notes/collabora.md` (coolwsd's
//! `ClientRequestDispatcher`), `../shared/notes/onlyoffice.md` (OnlyOffice's `server.js`
//! and bundled nginx).
//!
//! # Never forwarded
//! Anything not listed below is [`Class::Unknown`] (404), in particular the admin endpoints
//! the vendors say to block (`/cool/adminws`, `/cool/getMetrics`, `/browser/dist/admin/`,
//! OnlyOffice `/internal/` and `/info/`). So that a listed prefix cannot be walked out of on
//! a node that normalises paths (OnlyOffice's nginx decodes `%2F` and resolves `..`), editor
//! paths with a dot segment (`.`, `..`, also percent-encoded) or an encoded `/` or `\` are
//! `Unknown` too; the one exception is the encoded WOPISrc segment of Collabora's
//! `/cool/<WOPISrc>/...`, which is all `%2F`s and which coolwsd never resolves as a path.
//!
//! # Methods
//! A known path with a method it does not take is [`Class::WrongMethod`] (405): pages take
//! `POST` (Collabora's also `GET`/`HEAD`), assets `GET`/`HEAD`, per-document and stateless
//! calls `GET`/`HEAD`/`POST` (Collabora's stateless ones also `PUT`), WebSockets `GET` (or
//! HTTP/2 extended `CONNECT`). An upgrade request anywhere but a WebSocket path is
//! `Unknown`: it is never tunnelled.

use http::Method;
use percent_encoding::percent_decode_str;

use crate::config::SuiteKind;
use crate::discovery::open_url::OPEN_PATH_PREFIX;

/// What a request asks officeswitch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class<'a> {
    /// `GET /hosting/discovery`: the merged WOPI discovery.
    Discovery,
    /// `GET /hosting/capabilities`: the merged capabilities.
    Capabilities,
    /// `GET /healthz`: is the process alive.
    Health,
    /// `GET /readyz`: can it serve Nextcloud (every pool has a discovery).
    Ready,
    /// A known path with a method it does not take.
    WrongMethod,
    /// Nothing officeswitch serves.
    Unknown,
    /// `POST` to an officeswitch `urlsrc` (`/officeswitch/open/...`, see
    /// [`OPEN_PATH_PREFIX`]); the router parses the path itself.
    Open,
    /// Traffic of one suite's URL space.
    Editor(EditorRequest<'a>),
    /// A WOPI call from an editor to the officeswitch `WOPISrc` it was given.
    Wopi(WopiCall<'a>),
}

/// A WOPI call an editor makes to officeswitch: which file id (still unchecked: the token
/// decides) and which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WopiCall<'a> {
    /// The `{id}` path segment.
    pub file_id: &'a str,
    /// Which endpoint of that file.
    pub endpoint: WopiEndpoint,
}

/// The WOPI endpoints officeswitch serves to editors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WopiEndpoint {
    /// `/wopi/files/<id>`: CheckFileInfo (`GET`) and the `X-WOPI-Override` operations (`POST`).
    File,
    /// `/wopi/files/<id>/contents`: GetFile (`GET`) and PutFile (`POST`).
    Contents,
    /// `/wopi/links/<id>[/<name>]`: a host URL from a host response (`TemplateSource`,
    /// `FileUrl`, settings files), which editors fetch as given. `<name>` repeats the last
    /// segment of the host URL, because coolwsd and the settings page name a settings
    /// file by its URL's last segment; officeswitch ignores it.
    Link,
    /// `/wopi/settings/<id>`: richdocuments' settings endpoint, `GET` the settings
    /// configuration, `DELETE` a settings file ([`super::settings`]).
    Settings,
    /// `/wopi/settings/<id>/upload`: `POST` a settings file ([`super::settings`]).
    SettingsUpload,
}

impl WopiEndpoint {
    /// Short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            WopiEndpoint::File => "wopi_file",
            WopiEndpoint::Contents => "wopi_contents",
            WopiEndpoint::Link => "wopi_link",
            WopiEndpoint::Settings | WopiEndpoint::SettingsUpload => "wopi_settings",
        }
    }
}

/// A request in one suite's URL space: which suite, what kind of traffic, and what it
/// carries to route it by. Slices borrow the request's path and query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditorRequest<'a> {
    /// Suite whose URL space the path is in.
    pub suite: SuiteKind,
    /// What the request is within that suite.
    pub kind: Traffic,
    /// Raw (still percent-encoded) value of the document key query parameter: `WOPISrc`
    /// (any letter case: OnlyOffice lower-cases it to `wopisrc`), else OnlyOffice's
    /// `shardkey`. Present on pages, WebSockets and per-document calls; `None` when the
    /// query names neither.
    pub key: Option<&'a str>,
    /// Asset version segment when the path carries one: Collabora `/browser/<hash>/...`
    /// (also `/loleaflet/<hash>/`; a hex hash, so `dist` is not a version), OnlyOffice
    /// `/<x.y.z>-<build>/...` (e.g. `/9.3.1-abc123/web-apps/...`).
    pub version: Option<&'a str>,
}

/// Kinds of editor traffic; each routes its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// Editor HTML entry: Collabora `/browser/<hash>/cool.html` (`GET`/`POST`) and the
    /// settings page `/browser/<hash>/[admin/]adminIntegratorSettings.html`
    /// ([`is_settings_page`]), OnlyOffice `POST /hosting/wopi/<type>/<mode>` and
    /// `/hosting/wopi/convert-and-edit/...`.
    Page,
    /// Static files: Collabora's other `/browser/...`, `/loleaflet/...`, `/cool/signature`;
    /// OnlyOffice `/web-apps/`, `/sdkjs/`, `/sdkjs-plugins/`, `/fonts/`, `/dictionaries/`,
    /// `/document_editor_service_worker.js`, `/plugins.json`, `/themes.json`. Every
    /// OnlyOffice path of this and the kinds below may also come below a version segment
    /// (`/9.2.1-<hash>/doc/...`), as its nginx forwards them.
    Asset,
    /// Upgrade requests: Collabora `/cool/<enc WOPISrc>/ws`, `/cool/ws` (26.04+),
    /// `/lool/<enc WOPISrc>/ws`; OnlyOffice `/doc/...` (socket.io).
    WebSocket,
    /// Per-document calls that are not WebSockets: Collabora `/cool/clipboard`,
    /// `/cool/media`, `/cool/<enc WOPISrc>/download/...` and other `/cool/<enc WOPISrc>/...`;
    /// OnlyOffice `/doc/` long-polling, `/cache/files/...`, `/storage-cache/files/...`,
    /// `/downloadas/`, `/upload/`,
    /// `/savefile/`, `/printfile/`, `/downloadfile/`, `/coauthoring/CommandService.ashx`,
    /// `/hosting/wopi/convert-and-edit-handler`.
    Document,
    /// Any node will do: Collabora `/cool/convert-to[/<fmt>]` (also `/lool/`),
    /// `/cool/get-thumbnail`, `/cool/extract-link-targets`, `/cool/extract-document-structure`,
    /// `/cool/transform-document-structure`, `/cool/render-search-result`, the settings
    /// page's `/browser/dist/*-settings*` POSTs;
    /// OnlyOffice `/ConvertService.ashx`, `/converter`, `/docbuilder`, `/healthcheck`,
    /// `/meta/...`, `/ai-proxy`.
    Stateless,
}

impl Traffic {
    /// Short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Traffic::Page => "page",
            Traffic::Asset => "asset",
            Traffic::WebSocket => "websocket",
            Traffic::Document => "document",
            Traffic::Stateless => "stateless",
        }
    }
}

impl Class<'_> {
    /// Short name for logs (editor traffic is named by its [`Traffic`] kind).
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Discovery => "discovery",
            Class::Capabilities => "capabilities",
            Class::Health => "health",
            Class::Ready => "ready",
            Class::WrongMethod => "wrong_method",
            Class::Unknown => "unknown",
            Class::Open => "open",
            Class::Editor(request) => request.kind.as_str(),
            Class::Wopi(call) => call.endpoint.as_str(),
        }
    }

    /// Whether requests of this class are load-balancer probes (logged at debug level).
    pub fn is_probe(self) -> bool {
        matches!(self, Class::Health | Class::Ready)
    }
}

/// Classifies a request by method, path, query and whether it asks for an upgrade
/// (`Upgrade: websocket`, or HTTP/2 extended `CONNECT`).
pub fn classify<'a>(
    method: &Method,
    path: &'a str,
    query: Option<&'a str>,
    is_upgrade: bool,
) -> Class<'a> {
    let own = match path {
        "/hosting/discovery" => Some(Class::Discovery),
        "/hosting/capabilities" => Some(Class::Capabilities),
        "/healthz" => Some(Class::Health),
        "/readyz" => Some(Class::Ready),
        _ => None,
    };
    if let Some(class) = own {
        return if method == Method::GET || method == Method::HEAD {
            class
        } else {
            Class::WrongMethod
        };
    }
    if path.starts_with(OPEN_PATH_PREFIX) {
        return if method == Method::POST {
            Class::Open
        } else {
            Class::WrongMethod
        };
    }

    if let Some(rest) = path.strip_prefix("/wopi/") {
        return wopi_call(method, rest, is_upgrade);
    }

    let class = editor_class(method, path, query, is_upgrade);
    // coolwsd hex-decodes a `cool/0x<hex>` segment into the request before it routes it,
    // wherever it is: what it would route must be what officeswitch routes.
    if let Class::Editor(request) = &class
        && let Some(decoded) = coolwsd_dehexified(path, query)
    {
        let (decoded_path, decoded_query) = match decoded.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (decoded.as_str(), None),
        };
        let same = match editor_class(method, decoded_path, decoded_query, is_upgrade) {
            Class::Editor(inner) => (inner.suite, inner.kind) == (request.suite, request.kind),
            _ => false,
        };
        if !same {
            return Class::Unknown;
        }
    }
    class
}

/// The request target coolwsd routes for `path?query` when it holds `cool/0x`
/// (`RequestDetails::dehexify`: the first `cool/0x<hex>`, up to the next `/`, becomes the
/// bytes the hex encodes); `Some("")` when that hex is not valid (refused).
fn coolwsd_dehexified(path: &str, query: Option<&str>) -> Option<String> {
    const PREFIX: &str = "cool/0x";
    if !path.contains(PREFIX) && !query.is_some_and(|q| q.contains(PREFIX)) {
        return None;
    }
    let target = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let start = target.find(PREFIX)? + PREFIX.len();
    let end = target[start..]
        .find('/')
        .map_or(target.len(), |i| start + i);
    let hex = &target[start..end];
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(String::new());
    }
    let decoded =
        String::from_utf8_lossy(&HexBytes(hex.as_bytes()).collect::<Vec<u8>>()).into_owned();
    Some(format!(
        "{}{decoded}{}",
        &target[..start - 2],
        &target[end..]
    ))
}

/// Classifies a request for an editor's URL space.
fn editor_class<'a>(
    method: &Method,
    path: &'a str,
    query: Option<&'a str>,
    is_upgrade: bool,
) -> Class<'a> {
    let Some(found) = editor_path(path, is_upgrade) else {
        return Class::Unknown;
    };
    if has_dot_segment(path) {
        return Class::Unknown;
    }
    if (found.kind == Traffic::WebSocket) != is_upgrade {
        // Only WebSocket paths are upgraded, and they only as upgrades (their
        // non-upgrade forms were named Document above).
        return Class::Unknown;
    }
    let takes = match (found.kind, found.suite) {
        (Traffic::Page, SuiteKind::OnlyOffice) => method == Method::POST,
        // Nextcloud sends Smart Picker link targets and thumbnails as PUT; coolwsd takes
        // any method there.
        (Traffic::Stateless, SuiteKind::Collabora) if method == Method::PUT => true,
        (Traffic::Page, SuiteKind::Collabora) | (Traffic::Document | Traffic::Stateless, _) => {
            method == Method::GET || method == Method::HEAD || method == Method::POST
        }
        (Traffic::Asset, _) => method == Method::GET || method == Method::HEAD,
        (Traffic::WebSocket, _) => method == Method::GET || method == Method::CONNECT,
    };
    if !takes {
        return Class::WrongMethod;
    }
    let key = query.and_then(|q| {
        query_param(q, "WOPISrc").or_else(|| match found.suite {
            SuiteKind::OnlyOffice => query_param(q, "shardkey"),
            SuiteKind::Collabora => None,
        })
    });
    Class::Editor(EditorRequest {
        suite: found.suite,
        kind: found.kind,
        key,
        version: found.version,
    })
}

/// The raw value of the first query parameter named `name` (ASCII case-insensitive; the
/// name itself is compared as written, not percent-decoded). A parameter without `=` has
/// the empty value. Pairs are split on `&` only.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    let n = name.len();
    segments(query, b'&').find_map(|pair| {
        // The key is what precedes the first `=`: `pair` names `name` exactly when it is
        // `name`, or starts with `name=` (so the value is never scanned for `=`).
        let key = pair.get(..n)?;
        if !key.eq_ignore_ascii_case(name) {
            return None;
        }
        match pair.as_bytes().get(n) {
            None => Some(""),
            Some(b'=') => Some(&pair[n + 1..]),
            Some(_) => None,
        }
    })
}

/// `/wopi/files/<id>`, `/wopi/files/<id>/contents`, `/wopi/links/<id>[/<name>]` (`rest`
/// follows `/wopi/`), taking `GET`, `HEAD` and `POST`; `/wopi/settings/<id>` taking `GET`,
/// `HEAD` and `DELETE`, `/wopi/settings/<id>/upload` taking `POST`. Anything else below
/// `/wopi/` is unknown.
fn wopi_call<'a>(method: &Method, rest: &'a str, is_upgrade: bool) -> Class<'a> {
    let (space, tail) = split_segment(rest);
    let Some(tail) = tail else {
        return Class::Unknown;
    };
    let (file_id, below) = split_segment(tail);
    let endpoint = match (space, below) {
        ("files", None) => WopiEndpoint::File,
        ("files", Some("contents")) => WopiEndpoint::Contents,
        ("links", None) => WopiEndpoint::Link,
        ("links", Some(name)) if !name.is_empty() && find_byte(name, b'/').is_none() => {
            WopiEndpoint::Link
        }
        ("settings", None) => WopiEndpoint::Settings,
        ("settings", Some("upload")) => WopiEndpoint::SettingsUpload,
        _ => return Class::Unknown,
    };
    if file_id.is_empty() || is_upgrade {
        return Class::Unknown;
    }
    let read = method == Method::GET || method == Method::HEAD;
    let takes = match endpoint {
        WopiEndpoint::Settings => read || method == Method::DELETE,
        WopiEndpoint::SettingsUpload => method == Method::POST,
        WopiEndpoint::File | WopiEndpoint::Contents | WopiEndpoint::Link => {
            read || method == Method::POST
        }
    };
    if takes {
        Class::Wopi(WopiCall { file_id, endpoint })
    } else {
        Class::WrongMethod
    }
}

/// A path in a suite's URL space, before method checks.
struct Found<'a> {
    suite: SuiteKind,
    kind: Traffic,
    version: Option<&'a str>,
}

impl<'a> Found<'a> {
    fn collabora(kind: Traffic) -> Option<Found<'a>> {
        Some(Found {
            suite: SuiteKind::Collabora,
            kind,
            version: None,
        })
    }

    fn onlyoffice(kind: Traffic) -> Option<Found<'a>> {
        Some(Found {
            suite: SuiteKind::OnlyOffice,
            kind,
            version: None,
        })
    }
}

/// Which suite's URL space `path` is in, and what it is there; `None` for anything else.
fn editor_path(path: &str, is_upgrade: bool) -> Option<Found<'_>> {
    let (first, rest) = split_segment(path.strip_prefix('/')?);
    // Checked only where it is needed: Collabora's `/cool/<WOPISrc>/` is all `%2F`s.
    let plain = || !has_encoded_separator(path);
    match (first, rest) {
        // Collabora.
        ("browser" | "loleaflet", Some(rest)) if plain() => collabora_static(rest),
        ("cool" | "lool", Some(rest)) => collabora_cool(rest, is_upgrade),
        // coolwsd fetches the `callbackUrl` a caller posts: a request to any URL for anyone.
        // The merged capabilities say `hasWopiAccessCheck: false`, so nobody asks.
        ("hosting", Some("wopiAccessCheck")) => None,
        // OnlyOffice.
        ("hosting", Some(rest)) if plain() => onlyoffice_hosting(rest),
        (_, _) if !plain() => None,
        // ONLYOFFICE's nginx forwards any `/<ver>/<path>` as `/<path>`, and sdkjs builds its
        // dynamic URLs (socket, downloads, uploads, themes) below the versioned editor
        // directory: every path of its space may carry the version segment.
        (version, Some(rest)) if is_onlyoffice_version(version) => {
            let (first, rest) = split_segment(rest);
            onlyoffice_space(first, rest, is_upgrade).map(|found| Found {
                version: Some(version),
                ..found
            })
        }
        (first, rest) => onlyoffice_space(first, rest, is_upgrade),
    }
}

/// ONLYOFFICE's URL space below its optional version segment (`first` is the first
/// segment, `rest` what follows its slash).
fn onlyoffice_space<'a>(first: &str, rest: Option<&str>, is_upgrade: bool) -> Option<Found<'a>> {
    match (first, rest) {
        ("web-apps" | "sdkjs" | "sdkjs-plugins" | "fonts" | "dictionaries", Some(rest))
            if !rest.is_empty() =>
        {
            Found::onlyoffice(Traffic::Asset)
        }
        ("document_editor_service_worker.js" | "plugins.json" | "themes.json", None) => {
            Found::onlyoffice(Traffic::Asset)
        }
        ("doc", Some(rest)) if !rest.is_empty() => Found::onlyoffice(if is_upgrade {
            Traffic::WebSocket
        } else {
            Traffic::Document
        }),
        ("cache" | "storage-cache", Some(rest)) if rest.starts_with("files/") => {
            Found::onlyoffice(Traffic::Document)
        }
        ("downloadas" | "upload" | "savefile" | "printfile" | "downloadfile", Some(rest))
            if !rest.is_empty() =>
        {
            Found::onlyoffice(Traffic::Document)
        }
        ("coauthoring", Some("CommandService.ashx")) => Found::onlyoffice(Traffic::Document),
        ("ConvertService.ashx" | "converter" | "docbuilder" | "healthcheck" | "ai-proxy", None) => {
            Found::onlyoffice(Traffic::Stateless)
        }
        ("meta" | "ai-proxy", Some(rest)) if !rest.is_empty() => {
            Found::onlyoffice(Traffic::Stateless)
        }
        _ => None,
    }
}

/// Collabora's file server below `/browser/` (or `/loleaflet/`): `<hash>/cool.html` is the
/// page, the admin console is refused, the rest are assets.
fn collabora_static(rest: &str) -> Option<Found<'_>> {
    let (version, below) = split_segment(rest);
    let below = below.filter(|b| !b.is_empty())?;
    let (dir, _) = split_segment(below);
    let kind = match below {
        "cool.html" | "loleaflet.html" => Traffic::Page,
        // The one admin page richdocuments frames: per-user and shared settings
        // (discovery app `Settings`); the admin console stays closed. The editor's own
        // settings dialog asks for it without `admin/` (coolwsd serves it by file name).
        SETTINGS_PAGE | SETTINGS_PAGE_IN_ADMIN => Traffic::Page,
        _ if decodes_to_ignore_case(dir, "admin") => return None,
        // The settings page's XHRs (coolwsd's FileServer takes them as POSTs).
        "upload-settings"
        | "fetch-settings-config"
        | "fetch-settings-file"
        | "delete-settings-config"
        | "fetch-models"
            if version == "dist" =>
        {
            Traffic::Stateless
        }
        _ => Traffic::Asset,
    };
    Some(Found {
        suite: SuiteKind::Collabora,
        kind,
        version: is_collabora_hash(version).then_some(version),
    })
}

/// The settings page's file name below `/browser/<hash>/`, as the editor's settings
/// dialog asks for it.
const SETTINGS_PAGE: &str = "adminIntegratorSettings.html";

/// The settings page below `/browser/<hash>/`, as the discovery's `Settings` app names it.
const SETTINGS_PAGE_IN_ADMIN: &str = "admin/adminIntegratorSettings.html";

/// Whether `path` (below any service root) is Collabora's settings page,
/// `/browser/<hash or dist>/[admin/]adminIntegratorSettings.html`: the page whose form names
/// richdocuments' settings endpoint ([`super::settings`]).
pub fn is_settings_page(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/browser/") else {
        return false;
    };
    let (version, below) = split_segment(rest);
    !version.is_empty() && matches!(below, Some(SETTINGS_PAGE | SETTINGS_PAGE_IN_ADMIN))
}

/// Collabora's `/cool/` (or legacy `/lool/`) space, `rest` being what follows that prefix.
fn collabora_cool(rest: &str, is_upgrade: bool) -> Option<Found<'static>> {
    let (name, tail) = split_segment(rest);
    match (name, tail) {
        ("clipboard" | "media", None) => Found::collabora(Traffic::Document),
        ("signature", None) => Found::collabora(Traffic::Asset),
        ("ws", None) if is_upgrade => Found::collabora(Traffic::WebSocket),
        (
            "convert-to"
            | "get-thumbnail"
            | "extract-link-targets"
            | "extract-document-structure"
            | "transform-document-structure"
            | "render-search-result",
            // coolwsd takes an optional output format segment for all of these.
            tail,
        ) => match tail {
            None => Found::collabora(Traffic::Stateless),
            Some(format) if is_plain_segment(format) => Found::collabora(Traffic::Stateless),
            Some(_) => None,
        },
        (wopi_src, Some(tail)) if is_encoded_wopi_src(wopi_src) && !tail.is_empty() => {
            if has_encoded_separator(tail) {
                None
            } else if tail == "ws" && is_upgrade {
                Found::collabora(Traffic::WebSocket)
            } else {
                Found::collabora(Traffic::Document)
            }
        }
        _ => None,
    }
}

/// OnlyOffice's `/hosting/wopi/...` (`rest` follows `/hosting/`).
fn onlyoffice_hosting(rest: &str) -> Option<Found<'static>> {
    let rest = rest.strip_prefix("wopi/")?;
    if rest == "convert-and-edit-handler" {
        return Found::onlyoffice(Traffic::Document);
    }
    let (first, tail) = split_segment(rest);
    let tail = tail?;
    let page = if first == "convert-and-edit" {
        // `convert-and-edit/<ext>/<targetext>`
        matches!(split_segment(tail), (ext, Some(target)) if is_plain_segment(ext) && is_plain_segment(target))
    } else {
        // `<documentType>/<mode>`: word|cell|slide|pdf|diagram, view|edit (and future ones).
        is_plain_segment(first) && is_plain_segment(tail)
    };
    page.then_some(Found {
        suite: SuiteKind::OnlyOffice,
        kind: Traffic::Page,
        version: None,
    })
}

/// Splits `s` at its first `/`: (first segment, what follows the slash).
fn split_segment(s: &str) -> (&str, Option<&str>) {
    match find_byte(s, b'/') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// Index of the first `byte` (ASCII) in `s`. Segments are mostly short: a plain loop over
/// the first bytes, then `str::find` (memchr) for long ones such as an encoded WOPISrc.
/// (`str::find(char)` alone costs more than the whole rest of classifying a short path.)
fn find_byte(s: &str, byte: u8) -> Option<usize> {
    const HEAD: usize = 16;
    let bytes = s.as_bytes();
    let mut head = HEAD.min(bytes.len());
    if let Some(i) = bytes[..head].iter().position(|&b| b == byte) {
        return Some(i);
    }
    while !s.is_char_boundary(head) {
        head += 1;
    }
    s[head..].find(char::from(byte)).map(|i| head + i)
}

/// The pieces of `s` between `sep` bytes (ASCII), like `str::split` but with [`find_byte`].
fn segments(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let current = rest?;
        match find_byte(current, sep) {
            Some(i) => {
                rest = Some(&current[i + 1..]);
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// A single non-empty segment of letters, digits, `-`, `_` and `.`.
fn is_plain_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Collabora's version hash: a git hash, hex digits.
fn is_collabora_hash(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// OnlyOffice's version segment, as its nginx matches it: `\d+\.\d+\.\d+[.-]\w+`.
fn is_onlyoffice_version(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    for part in 0..3 {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
        if part < 2 {
            if b.get(i) != Some(&b'.') {
                return false;
            }
            i += 1;
        }
    }
    if !matches!(b.get(i), Some(b'.' | b'-')) {
        return false;
    }
    let build = &b[i + 1..];
    !build.is_empty()
        && build
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// The WOPISrc path segment of `/cool/<WOPISrc>/...`: URI-encoded `http(s)://...`, or the
/// "hexified" `0x<hex>` form coolwsd decodes itself, which must decode to the same (so a
/// hexified admin path such as `0x<hex of getMetrics>` is not a document).
fn is_encoded_wopi_src(s: &str) -> bool {
    let starts = |prefix: &str| {
        s.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    if starts("http%3a") || starts("https%3a") {
        return true;
    }
    s.strip_prefix("0x").is_some_and(|hex| {
        hex.len() % 2 == 0
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && (hex_starts_with(hex, b"http%3a%2f%2f") || hex_starts_with(hex, b"https%3a%2f%2f"))
    })
}

/// Whether the bytes `hex` encodes start with `prefix` (ASCII case-insensitive).
fn hex_starts_with(hex: &str, prefix: &[u8]) -> bool {
    let mut decoded = HexBytes(hex.as_bytes());
    prefix
        .iter()
        .all(|p| decoded.next().is_some_and(|b| b.eq_ignore_ascii_case(p)))
}

/// The bytes a run of hex digit pairs encodes (stops at the first invalid pair).
struct HexBytes<'a>(&'a [u8]);

impl Iterator for HexBytes<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let digit = |c: u8| char::from(c).to_digit(16);
        let (&[hi, lo], rest) = self.0.split_first_chunk::<2>()?;
        self.0 = rest;
        Some((digit(hi)? * 16 + digit(lo)?) as u8)
    }
}

/// The raw (percent-encoded) `WOPISrc` of a hexified Collabora path
/// (`/cool/0x<hex>/...`, `hexify_embedded_urls=true`), where the browser sends no query:
/// the hex decodes to `<enc(WOPISrc?access_token=...)>/ws?WOPISrc=<enc>&compat=`, and the
/// `WOPISrc` parameter of that text names the document. `None` for any other path.
pub fn hexified_wopi_src(path: &str) -> Option<String> {
    let rest = path
        .strip_prefix("/cool/0x")
        .or_else(|| path.strip_prefix("/lool/0x"))?;
    let (hex, _) = split_segment(rest);
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let text = String::from_utf8(HexBytes(hex.as_bytes()).collect()).ok()?;
    let (_, query) = text.split_once('?')?;
    query_param(query, "WOPISrc").map(str::to_string)
}

/// Whether `s` has `%2F` or `%5C` (any case), or a raw `\`.
fn has_encoded_separator(s: &str) -> bool {
    // Fast rejection (memchr) for the usual path without any.
    if !s.contains('%') && !s.contains('\\') {
        return false;
    }
    let b = s.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'\\'
            || (c == b'%'
                && matches!(
                    (b.get(i + 1), b.get(i + 2)),
                    (Some(b'2'), Some(b'f' | b'F')) | (Some(b'5'), Some(b'c' | b'C'))
                ))
    })
}

/// Whether a segment of `path` is `.` or `..`, literally or percent-encoded.
fn has_dot_segment(path: &str) -> bool {
    // Fast rejection (SIMD substring search): a dot segment starts with `.` or `%`.
    if !path.contains("/.") && !path.contains("/%") {
        return false;
    }
    segments(path, b'/').any(|seg| {
        // `%2e%2e` is the longest spelling.
        seg.len() <= 6 && {
            let mut dots = 0;
            let all_dots = percent_decode_str(seg).all(|b| {
                dots += 1;
                b == b'.'
            });
            all_dots && (dots == 1 || dots == 2)
        }
    })
}

/// Whether `seg`, percent-decoded, is `word` (ASCII case-insensitive).
fn decodes_to_ignore_case(seg: &str, word: &str) -> bool {
    percent_decode_str(seg)
        .map(|b| b.to_ascii_lowercase())
        .eq(word.bytes().map(|b| b.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WOPI: &str = "WOPISrc=http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1";
    const WOPI_VALUE: &str = "http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1";

    fn get(path: &str) -> Class<'_> {
        classify(&Method::GET, path, None, false)
    }

    fn editor<'a>(
        method: Method,
        path: &'a str,
        query: Option<&'a str>,
        up: bool,
    ) -> EditorRequest<'a> {
        match classify(&method, path, query, up) {
            Class::Editor(request) => request,
            other => panic!("{method} {path}: {other:?}, not editor traffic"),
        }
    }

    fn kind(method: Method, path: &str, up: bool) -> (SuiteKind, Traffic) {
        let r = editor(method, path, None, up);
        (r.suite, r.kind)
    }

    const C: SuiteKind = SuiteKind::Collabora;
    const O: SuiteKind = SuiteKind::OnlyOffice;

    #[test]
    fn hosting_and_health_paths() {
        assert_eq!(get("/hosting/discovery"), Class::Discovery);
        assert_eq!(
            classify(&Method::HEAD, "/hosting/capabilities", None, false),
            Class::Capabilities
        );
        assert_eq!(get("/healthz"), Class::Health);
        assert_eq!(get("/readyz"), Class::Ready);
        assert_eq!(
            classify(&Method::POST, "/hosting/discovery", None, false),
            Class::WrongMethod
        );
        assert_eq!(get("/hosting/discovery/"), Class::Unknown);
        assert_eq!(get("/"), Class::Unknown);
        assert!(get("/healthz").is_probe() && !get("/hosting/discovery").is_probe());
    }

    #[test]
    fn open_is_a_post_to_an_officeswitch_urlsrc() {
        let path = "/officeswitch/open/mime/application/vnd.oasis.opendocument.text/edit";
        let query = Some("WOPISrc=https%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1&lang=de");
        assert_eq!(classify(&Method::POST, path, query, false), Class::Open);
        assert_eq!(
            classify(&Method::GET, path, query, false),
            Class::WrongMethod
        );
        assert_eq!(Class::Open.as_str(), "open");
        assert_eq!(get("/officeswitch/other"), Class::Unknown);
    }

    #[test]
    fn collabora_websocket_by_encoded_wopi_src_path() {
        let path = "/cool/http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1/ws";
        let query = "WOPISrc=http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1&compat=/ws";
        let r = editor(Method::GET, path, Some(query), true);
        assert_eq!((r.suite, r.kind), (C, Traffic::WebSocket));
        assert_eq!(r.key, Some(WOPI_VALUE));
        assert_eq!(r.version, None);
        assert_eq!(Class::Editor(r).as_str(), "websocket");
    }

    #[test]
    fn collabora_websocket_hexified_new_and_legacy_forms() {
        // What the page builds with `hexify_embedded_urls`: the hex of
        // `<enc(WOPISrc?access_token=..)>/ws?WOPISrc=<enc>&compat=`, and no query.
        let text = format!("{WOPI_VALUE}%3Faccess_token%3Dtok/ws?{WOPI}&compat=");
        let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
        let path = format!("/cool/0x{hex}/ws");
        let r = editor(Method::GET, &path, None, true);
        assert_eq!((r.suite, r.kind, r.key), (C, Traffic::WebSocket, None));
        assert_eq!(hexified_wopi_src(&path).as_deref(), Some(WOPI_VALUE));
        let download = format!("/cool/0x{hex}/download/x");
        assert_eq!(kind(Method::GET, &download, false), (C, Traffic::Document));
        // coolwsd hex-decodes any `0x` segment: hex that is no encoded URL (here
        // `getMetrics`) is no document path.
        assert_eq!(get("/cool/0x6765744d657472696373/x"), Class::Unknown);
        assert_eq!(hexified_wopi_src("/cool/0x6765744d657472696373/x"), None);
        // The same decoding wherever `cool/0x` stands: what coolwsd would route is what is
        // classified (issue 13: admin endpoints through hexified paths).
        let hexify = |text: &str| -> String { text.bytes().map(|b| format!("{b:02x}")).collect() };
        let admin_ws = format!("/cool/0x{}/ws", hexify("adminws"));
        assert_eq!(
            classify(&Method::GET, &admin_ws, None, true),
            Class::Unknown,
            "{admin_ws}"
        );
        let admin_page = format!(
            "/browser/1a2b3c4d/cool/0x{}/x",
            hexify("../dist/admin/admin.html?")
        );
        assert_eq!(get(&admin_page), Class::Unknown, "{admin_page}");
        // In the query it changes no path: the page is the page.
        let in_query = format!("x=cool/0x{}", hexify("../y"));
        let page = editor(
            Method::GET,
            "/browser/1a2b3c4d/cool.html",
            Some(&in_query),
            false,
        );
        assert_eq!((page.suite, page.kind), (C, Traffic::Page));
        assert_eq!(get("/cool/0xzz/ws"), Class::Unknown, "not hex");
        assert_eq!(
            coolwsd_dehexified(&admin_page, None).as_deref(),
            Some("/browser/1a2b3c4d/cool/../dist/admin/admin.html?/x")
        );
        // 26.04+: no copy of the WOPISrc in the path.
        let r = editor(Method::GET, "/cool/ws", Some(WOPI), true);
        assert_eq!(
            (r.suite, r.kind, r.key),
            (C, Traffic::WebSocket, Some(WOPI_VALUE))
        );
        // Old LibreOffice Online paths.
        let lool = "/lool/https%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1/ws";
        assert_eq!(kind(Method::GET, lool, true), (C, Traffic::WebSocket));
        // HTTP/2 extended CONNECT.
        assert_eq!(
            kind(Method::CONNECT, "/cool/ws", true),
            (C, Traffic::WebSocket)
        );
        assert_eq!(
            classify(&Method::POST, "/cool/ws", Some(WOPI), true),
            Class::WrongMethod
        );
    }

    #[test]
    fn upgrades_only_on_websocket_paths() {
        assert_eq!(get("/cool/ws"), Class::Unknown);
        assert_eq!(
            classify(&Method::GET, "/browser/61cf2b4/cool.html", Some(WOPI), true),
            Class::Unknown
        );
        assert_eq!(
            classify(&Method::GET, "/cool/clipboard", Some(WOPI), true),
            Class::Unknown
        );
        let download = "/cool/http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1/download/x";
        assert_eq!(classify(&Method::GET, download, None, true), Class::Unknown);
    }

    #[test]
    fn collabora_page() {
        let query = "WOPISrc=https%3A%2F%2Fnc.example.com%2Findex.php%2Fapps%2Frichdocuments%2Fwopi%2Ffiles%2F42_oc1";
        for method in [Method::GET, Method::POST] {
            let r = editor(method, "/browser/61cf2b4/cool.html", Some(query), false);
            assert_eq!((r.suite, r.kind), (C, Traffic::Page));
            assert_eq!(r.version, Some("61cf2b4"));
            assert_eq!(
                r.key,
                Some(
                    "https%3A%2F%2Fnc.example.com%2Findex.php%2Fapps%2Frichdocuments%2Fwopi%2Ffiles%2F42_oc1"
                )
            );
        }
        assert_eq!(
            kind(Method::POST, "/loleaflet/3a8f1c2/loleaflet.html", false),
            (C, Traffic::Page)
        );
        assert_eq!(
            classify(&Method::PUT, "/browser/61cf2b4/cool.html", None, false),
            Class::WrongMethod
        );
    }

    #[test]
    fn collabora_settings_page() {
        for path in [
            "/browser/61cf2b4/admin/adminIntegratorSettings.html",
            "/browser/61cf2b4/adminIntegratorSettings.html",
        ] {
            assert_eq!(
                kind(Method::POST, path, false),
                (C, Traffic::Page),
                "{path}"
            );
            assert_eq!(kind(Method::GET, path, false), (C, Traffic::Page), "{path}");
            assert!(is_settings_page(path), "{path}");
        }
        for path in [
            "/browser/61cf2b4/cool.html",
            "/browser/61cf2b4/admin/admin.html",
            "/browser//admin/adminIntegratorSettings.html",
            "/browser/61cf2b4/x/admin/adminIntegratorSettings.html",
            "/loleaflet/61cf2b4/admin/adminIntegratorSettings.html",
        ] {
            assert!(!is_settings_page(path), "{path}");
        }
        assert_eq!(
            kind(Method::POST, "/browser/dist/fetch-settings-config", false),
            (C, Traffic::Stateless)
        );
    }

    #[test]
    fn collabora_assets() {
        let r = editor(Method::GET, "/browser/61cf2b4/bundle.js", None, false);
        assert_eq!(
            (r.suite, r.kind, r.version),
            (C, Traffic::Asset, Some("61cf2b4"))
        );
        let r = editor(
            Method::HEAD,
            "/browser/dist/images/lc_save.svg",
            None,
            false,
        );
        assert_eq!((r.kind, r.version), (Traffic::Asset, None));
        let r = editor(Method::GET, "/loleaflet/3a8f1c2/images/x.png", None, false);
        assert_eq!((r.kind, r.version), (Traffic::Asset, Some("3a8f1c2")));
        assert_eq!(
            kind(Method::GET, "/cool/signature", false),
            (C, Traffic::Asset)
        );
        assert_eq!(
            classify(&Method::POST, "/browser/61cf2b4/bundle.js", None, false),
            Class::WrongMethod
        );
        assert_eq!(get("/browser/61cf2b4"), Class::Unknown);
        assert_eq!(get("/browser/61cf2b4/"), Class::Unknown);
    }

    #[test]
    fn collabora_per_document_calls() {
        let q = "WOPISrc=http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1&ServerId=9c8b&ViewId=0&Tag=abc";
        for path in ["/cool/clipboard", "/cool/media"] {
            let r = editor(Method::GET, path, Some(q), false);
            assert_eq!(
                (r.suite, r.kind, r.key),
                (C, Traffic::Document, Some(WOPI_VALUE))
            );
        }
        let r = editor(Method::POST, "/cool/clipboard", Some(q), false);
        assert_eq!(r.kind, Traffic::Document);
        let download =
            "/cool/http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1%3Faccess_token%3Dx/download/0x1f/report.pdf";
        let r = editor(Method::GET, download, Some(WOPI), false);
        assert_eq!((r.kind, r.key), (Traffic::Document, Some(WOPI_VALUE)));
        let insert = "/cool/https%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1/insertfile";
        assert_eq!(kind(Method::POST, insert, false), (C, Traffic::Document));
        // The WebSocket path without an upgrade: coolwsd's long-polling transport.
        let ws = "/cool/http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1/ws/1/open/0";
        assert_eq!(kind(Method::POST, ws, false), (C, Traffic::Document));
        assert_eq!(
            classify(&Method::DELETE, "/cool/clipboard", Some(q), false),
            Class::WrongMethod
        );
        assert_eq!(
            get("/cool/http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1"),
            Class::Unknown
        );
        assert_eq!(
            get("/cool/http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1/"),
            Class::Unknown
        );
    }

    #[test]
    fn collabora_stateless_calls_even_though_onlyoffice_serves_convert_to() {
        for path in [
            "/cool/convert-to",
            "/cool/convert-to/pdf",
            "/lool/convert-to",
            "/lool/convert-to/png",
            "/cool/get-thumbnail",
            "/cool/extract-link-targets",
            "/cool/extract-document-structure",
            "/cool/transform-document-structure",
            "/cool/render-search-result",
        ] {
            let r = editor(Method::POST, path, None, false);
            assert_eq!((r.suite, r.kind), (C, Traffic::Stateless), "{path}");
        }
        // coolwsd would fetch a caller's URL (issue 13 item 6).
        assert_eq!(
            classify(&Method::POST, "/hosting/wopiAccessCheck", None, false),
            Class::Unknown
        );
        assert_eq!(get("/cool/convert-to/pdf/x"), Class::Unknown);
        assert_eq!(get("/cool/convert-to/"), Class::Unknown);
        // Nextcloud's Smart Picker sends these as PUT (coolwsd takes any method).
        for path in ["/cool/extract-link-targets", "/cool/get-thumbnail"] {
            let r = editor(Method::PUT, path, None, false);
            assert_eq!((r.suite, r.kind), (C, Traffic::Stateless), "{path}");
        }
        assert_eq!(
            classify(&Method::DELETE, "/cool/convert-to", None, false),
            Class::WrongMethod
        );
    }

    #[test]
    fn collabora_admin_endpoints_are_never_exposed() {
        for path in [
            "/cool/getMetrics",
            "/cool/adminws",
            "/cool/adminws/",
            "/lool/adminws",
            "/cool/getmetrics",
            "/cool/%67etMetrics",
            "/browser/dist/admin/admin.html",
            "/browser/61cf2b4/admin/admin.html",
            "/browser/dist/ADMIN/admin.html",
            "/browser/dist/%61dmin/admin.html",
            "/browser/dist/x/../admin/admin.html",
            "/browser/dist/x/%2e%2E/admin/admin.html",
            "/browser/dist/x%2F..%2Fadmin/admin.html",
            "/cool/http%3A%2F%2Fnc/../adminws",
            "/cool/",
            "/cool",
            "/cool/anything",
            "/wopi/files/1/contents/x",
            "/wopi/",
            "/",
            "/robots.txt",
        ] {
            assert_eq!(get(path), Class::Unknown, "{path}");
            assert_eq!(
                classify(&Method::GET, path, Some(WOPI), true),
                Class::Unknown,
                "{path} upgrade"
            );
        }
    }

    #[test]
    fn onlyoffice_pages() {
        let q = "wopisrc=https%3A%2F%2Fnc%2Fwopi%2Ffiles%2F7&usid=abc&lang=en-us";
        let r = editor(Method::POST, "/hosting/wopi/word/edit", Some(q), false);
        assert_eq!((r.suite, r.kind), (O, Traffic::Page));
        assert_eq!(r.key, Some("https%3A%2F%2Fnc%2Fwopi%2Ffiles%2F7"));
        assert_eq!(
            kind(Method::POST, "/hosting/wopi/cell/view", false),
            (O, Traffic::Page)
        );
        assert_eq!(
            kind(
                Method::POST,
                "/hosting/wopi/convert-and-edit/doc/docx",
                false
            ),
            (O, Traffic::Page)
        );
        assert_eq!(
            classify(&Method::GET, "/hosting/wopi/word/edit", Some(q), false),
            Class::WrongMethod
        );
        assert_eq!(get("/hosting/wopi/word"), Class::Unknown);
        assert_eq!(get("/hosting/wopi/word/edit/x"), Class::Unknown);
        assert_eq!(get("/hosting/wopi/convert-and-edit/doc"), Class::Unknown);
        assert_eq!(get("/hosting/other"), Class::Unknown);
    }

    #[test]
    fn onlyoffice_assets_versioned_and_not() {
        let r = editor(
            Method::GET,
            "/9.3.1-abc/web-apps/apps/api/documents/api.js",
            None,
            false,
        );
        assert_eq!(
            (r.suite, r.kind, r.version),
            (O, Traffic::Asset, Some("9.3.1-abc"))
        );
        for (path, version) in [
            (
                "/9.3.1-abc123/sdkjs/word/sdk-all-min.js",
                Some("9.3.1-abc123"),
            ),
            ("/8.0.1.45/sdkjs-plugins/v1/plugins.js", Some("8.0.1.45")),
            ("/9.3.1-abc/fonts/000", Some("9.3.1-abc")),
            ("/9.3.1-abc/dictionaries/en_US/en_US.dic", Some("9.3.1-abc")),
            (
                "/9.3.1-abc/document_editor_service_worker.js",
                Some("9.3.1-abc"),
            ),
            ("/web-apps/apps/api/documents/api.js", None),
            ("/sdkjs/common/AllFonts.js", None),
            ("/fonts/001", None),
            ("/document_editor_service_worker.js", None),
            ("/plugins.json", None),
            ("/themes.json", None),
        ] {
            let r = editor(Method::GET, path, None, false);
            assert_eq!(
                (r.suite, r.kind, r.version),
                (O, Traffic::Asset, version),
                "{path}"
            );
        }
        for path in [
            "/9.3.1/web-apps/x.js",
            "/9.3-abc/web-apps/x.js",
            "/9.3.1-/web-apps/x.js",
            "/9.3.1-abc/info/info.json",
            "/9.3.1-abc/web-apps/",
            "/web-apps/",
            "/web-apps",
        ] {
            assert_eq!(get(path), Class::Unknown, "{path}");
        }
        assert_eq!(
            classify(&Method::POST, "/plugins.json", None, false),
            Class::WrongMethod
        );
    }

    #[test]
    fn onlyoffice_dynamic_paths_below_the_version_segment() {
        // sdkjs builds these from the versioned editor directory (`../../../../<x>`), and
        // ONLYOFFICE's nginx forwards any `/<ver>/<path>`.
        let v = "9.2.1-d41d8cd98f";
        let query = format!("{WOPI}&EIO=4&transport=websocket");
        let socket = format!("/{v}/doc/4838796985634/c/");
        let r = editor(Method::GET, &socket, Some(&query), true);
        assert_eq!(
            (r.suite, r.kind, r.version),
            (O, Traffic::WebSocket, Some(v))
        );
        assert_eq!(r.key, Some(WOPI_VALUE));
        for (path, traffic) in [
            ("doc/4838796985634/c/", Traffic::Document),
            ("downloadas/4838796985634", Traffic::Document),
            ("upload/4838796985634/u1/1", Traffic::Document),
            ("savefile/4838796985634", Traffic::Document),
            ("downloadfile/4838796985634", Traffic::Document),
            (
                "cache/files/data/4838796985634/Editor.bin/Editor.bin",
                Traffic::Document,
            ),
            (
                "storage-cache/files/data/4838796985634/Editor.bin",
                Traffic::Document,
            ),
            ("plugins.json", Traffic::Asset),
            ("themes.json", Traffic::Asset),
            ("meta/formats", Traffic::Stateless),
            ("ai-proxy", Traffic::Stateless),
        ] {
            for path in [format!("/{v}/{path}"), format!("/{path}")] {
                let method = if traffic == Traffic::Asset {
                    Method::GET
                } else {
                    Method::POST
                };
                let r = editor(method, &path, None, false);
                assert_eq!((r.suite, r.kind), (O, traffic), "{path}");
            }
        }
        // The admin endpoints stay closed below a version too.
        for path in [
            format!("/{v}/internal/cluster/inactive"),
            format!("/{v}/info/info.json"),
        ] {
            assert_eq!(get(&path), Class::Unknown, "{path}");
        }
    }

    #[test]
    fn onlyoffice_socket_io_websocket_and_polling() {
        let path = "/doc/8f2b1e0c7a/c/";
        let q = "EIO=4&transport=websocket&WOPISrc=https%3A%2F%2Fnc%2Fwopi%2Ffiles%2F7";
        let r = editor(Method::GET, path, Some(q), true);
        assert_eq!((r.suite, r.kind), (O, Traffic::WebSocket));
        assert_eq!(r.key, Some("https%3A%2F%2Fnc%2Fwopi%2Ffiles%2F7"));
        let polling = "EIO=4&transport=polling&t=Pq1x&WOPISrc=https%3A%2F%2Fnc%2Fwopi%2Ffiles%2F7";
        for method in [Method::GET, Method::POST] {
            let r = editor(method, path, Some(polling), false);
            assert_eq!((r.kind, r.key.is_some()), (Traffic::Document, true));
        }
        assert_eq!(get("/doc/"), Class::Unknown);
    }

    #[test]
    fn onlyoffice_per_document_calls_and_shard_key() {
        let cache = "/cache/files/data/8f2b1e0c7a_123/output.docx/output.docx";
        let q = "md5=x&expires=1700000000&shardkey=8f2b1e0c7a&filename=output.docx";
        let r = editor(Method::GET, cache, Some(q), false);
        assert_eq!(
            (r.suite, r.kind, r.key),
            (O, Traffic::Document, Some("8f2b1e0c7a"))
        );
        for (method, path) in [
            (Method::POST, "/downloadas/8f2b1e0c7a"),
            (Method::POST, "/upload/8f2b1e0c7a/1/2"),
            (Method::POST, "/savefile/8f2b1e0c7a"),
            (Method::GET, "/printfile/8f2b1e0c7a/print.pdf"),
            (Method::GET, "/downloadfile/8f2b1e0c7a"),
            (Method::POST, "/coauthoring/CommandService.ashx"),
            (Method::GET, "/hosting/wopi/convert-and-edit-handler"),
        ] {
            let r = editor(method, path, Some(WOPI), false);
            assert_eq!(
                (r.suite, r.kind, r.key),
                (O, Traffic::Document, Some(WOPI_VALUE)),
                "{path}"
            );
        }
        // WOPISrc wins over shardkey; Collabora has no shardkey.
        let both = "shardkey=k&WOPISrc=w";
        assert_eq!(
            editor(Method::POST, "/downloadas/d", Some(both), false).key,
            Some("w")
        );
        assert_eq!(
            editor(Method::GET, "/cool/media", Some("shardkey=k"), false).key,
            None
        );
        assert_eq!(get("/downloadas/"), Class::Unknown);
        assert_eq!(get("/cache/other"), Class::Unknown);
    }

    #[test]
    fn onlyoffice_stateless_calls() {
        for path in [
            "/ConvertService.ashx",
            "/converter",
            "/docbuilder",
            "/healthcheck",
        ] {
            assert_eq!(
                kind(Method::POST, path, false),
                (O, Traffic::Stateless),
                "{path}"
            );
        }
        assert_eq!(
            kind(Method::GET, "/healthcheck", false),
            (O, Traffic::Stateless)
        );
    }

    #[test]
    fn onlyoffice_internal_endpoints_are_never_exposed() {
        for path in [
            "/internal/cluster/inactive",
            "/info/info.json",
            "/INFO/info.json",
            "/command",
            "/index.html",
            "/doc/../info/info.json",
            "/doc/%2E%2e/info/info.json",
            "/doc/x%2F..%2F..%2Finfo/info.json",
            "/cache/files/..%2f..%2finfo/info.json",
            "/web-apps/..%5Cinfo",
            "/web-apps/.%2e/info/info.json",
            "/9.3.1-abc/web-apps/../../internal/cluster/inactive",
            "/hosting/wopi/word%2F..%2F..%2Finfo/edit",
        ] {
            for method in [Method::GET, Method::PUT, Method::DELETE, Method::POST] {
                assert_eq!(
                    classify(&method, path, None, false),
                    Class::Unknown,
                    "{method} {path}"
                );
            }
        }
    }

    #[test]
    fn wopi_calls_name_file_id_and_endpoint() {
        let call = |method: Method, path| classify(&method, path, Some("access_token=t"), false);
        let id = "ABCDEFGHabcdefgh0123456789_-abcd";
        let files = format!("/wopi/files/{id}");
        let contents = format!("/wopi/files/{id}/contents");
        let link = format!("/wopi/links/{id}");
        let named_link = format!("/wopi/links/{id}/en_US%20(1).dic");
        let settings = format!("/wopi/settings/{id}");
        let upload = format!("/wopi/settings/{id}/upload");
        for (method, path, endpoint) in [
            (Method::GET, &files, WopiEndpoint::File),
            (Method::POST, &files, WopiEndpoint::File),
            (Method::GET, &contents, WopiEndpoint::Contents),
            (Method::POST, &contents, WopiEndpoint::Contents),
            (Method::GET, &link, WopiEndpoint::Link),
            (Method::GET, &named_link, WopiEndpoint::Link),
            (Method::GET, &settings, WopiEndpoint::Settings),
            (Method::DELETE, &settings, WopiEndpoint::Settings),
            (Method::POST, &upload, WopiEndpoint::SettingsUpload),
        ] {
            assert_eq!(
                call(method, path),
                Class::Wopi(WopiCall {
                    file_id: id,
                    endpoint
                }),
                "{path}"
            );
        }
        assert_eq!(call(Method::PUT, &contents), Class::WrongMethod);
        assert_eq!(call(Method::DELETE, &files), Class::WrongMethod);
        assert_eq!(call(Method::POST, &settings), Class::WrongMethod);
        assert_eq!(call(Method::GET, &upload), Class::WrongMethod);
        assert_eq!(
            Class::Wopi(WopiCall {
                file_id: id,
                endpoint: WopiEndpoint::SettingsUpload
            })
            .as_str(),
            "wopi_settings"
        );
        for path in [
            "/wopi/files/",
            "/wopi/files",
            "/wopi/",
            "/wopi/files/x/contents/more",
            "/wopi/files/x/other",
            "/wopi/other/x",
            "/wopi/links/x/a/b",
            "/wopi/links/x/",
            "/wopi/settings/x/other",
            "/wopi/settings/x/upload/more",
            "/wopi/settings/",
        ] {
            assert_eq!(call(Method::GET, path), Class::Unknown, "{path}");
        }
        assert_eq!(
            classify(&Method::GET, &files, None, true),
            Class::Unknown,
            "never upgraded"
        );
    }

    #[test]
    fn query_param_is_raw_case_insensitive_and_first() {
        let q = "a=1&wopisrc=first&WOPISrc=second&flag&empty=";
        assert_eq!(query_param(q, "WOPISrc"), Some("first"));
        assert_eq!(query_param(q, "A"), Some("1"));
        assert_eq!(query_param(q, "flag"), Some(""));
        assert_eq!(query_param(q, "empty"), Some(""));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param("", "a"), None);
        assert_eq!(query_param("&&a=%3D%26", "a"), Some("%3D%26"));
        assert_eq!(query_param("ab=1", "a"), None);
        assert_eq!(query_param("a=b=c", "a"), Some("b=c"));
    }

    #[test]
    fn versions_and_segments() {
        assert!(is_onlyoffice_version("9.3.1-abc123"));
        assert!(is_onlyoffice_version("10.0.0.7"));
        assert!(is_onlyoffice_version("8.2.0-a_b"));
        assert!(!is_onlyoffice_version("9.3.1"));
        assert!(!is_onlyoffice_version("9.3.1-ab.c"));
        assert!(!is_onlyoffice_version("a.3.1-b"));
        assert!(!is_onlyoffice_version(""));
        assert!(is_encoded_wopi_src("HTTPS%3A%2F%2Fnc"));
        assert!(!is_encoded_wopi_src("0x"));
        assert!(!is_encoded_wopi_src("0xzz"));
        assert!(!is_encoded_wopi_src("ftp%3A%2F%2Fnc"));
        assert!(has_dot_segment("/a/./b") && has_dot_segment("/a/%2e") && has_dot_segment("/.."));
        assert!(!has_dot_segment("/a/.b/...") && !has_dot_segment("/a//b"));
        // Past the plain-loop head, and with a multi-byte character across its end.
        assert_eq!(find_byte("aaaaaaaaaaaaaaaa/b", b'/'), Some(16));
        assert_eq!(find_byte("aaaaaaaaaaaaaaa\u{e9}/b", b'/'), Some(17));
        assert_eq!(find_byte("aaaaaaaaaaaaaaa\u{e9}", b'/'), None);
        assert_eq!(find_byte("", b'/'), None);
        let long = format!("/cool/{}/ws", "http%3A%2F%2Fnc".repeat(20));
        assert_eq!(split_segment(&long[1..]), ("cool", Some(&long[6..])));
        assert_eq!(segments("a&&b", b'&').collect::<Vec<_>>(), ["a", "", "b"]);
        assert_eq!(segments("", b'&').collect::<Vec<_>>(), [""]);
    }
}
