//! richdocuments' settings endpoints on the stand-in Nextcloud (a child module of
//! `nextcloud.rs`, so it shares its state), modelled on nextcloud/richdocuments at 2ecfdd49:
//! `WopiController::{getSettings, uploadSettingsFile, deleteSettingsFile}`,
//! `SettingsController::getSettingsFile`, `SettingsService`, `WOPI\SettingsUrl`.
//!
//! | request | answer |
//! |---|---|
//! | `GET wopi/settings?type=T&access_token=X` | `{"kind": "user"\|"shared", "<category>": [{"stamp","uri"}], "template": []}`; each `uri` is `settings/<type>/<fresh settings token>/<category>/<name>`. 400 for an empty `type`, 401 for an unknown token |
//! | `POST wopi/settings/upload?fileId=/settings/<type>/<category>/<name>&access_token=X` | stores the body; `{"status":"success","filename","details":{"stamp","uri"}}`. 403 `Invalid token` for an unknown token, 403 `Not permitted` for `systemconfig` by a non-admin, 500 for a `fileId` that is no settings path |
//! | `DELETE wopi/settings?fileId=..&access_token=X` | settings tokens only (403 `Invalid token type` for a document token); 404 when absent |
//! | `GET settings/<type>/<token>/<category>/<name>` | the file; 403 `Forbidden.` unless `<token>` is a settings token, 404 `File not found.` |
//!
//! Tokens: a settings token ([`StandInNextcloud::settings_token`], and the one
//! CheckFileInfo hands out) or a document token (granted on any file) may read the
//! configuration and upload, as richdocuments lets `TOKEN_TYPE_USER` do; only settings
//! tokens delete or read files. User [`ADMIN_USER`] is the one administrator (richdocuments
//! asks Nextcloud's group manager). richdocuments checks no proof on any of these.
//! `userconfig` files are kept per user (`userconfig/<user>`), as richdocuments' app data.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use super::{
    ADMIN_USER, Body, BodyReader, KEPT_PUT_LIMIT, StandInNextcloud, State, WopiOperation,
    json_response, query_param, text,
};

/// The path of the upload endpoint.
const UPLOAD_PATH: &str = "/index.php/apps/richdocuments/wopi/settings/upload";

/// The path settings files are served below (`SettingsController::getSettingsFile`).
const SETTINGS_FILES_PATH: &str = "/index.php/apps/richdocuments/settings/";

/// What PHP's `rawurlencode` leaves alone (Nextcloud's URL generator encodes route
/// parameters with it).
const RAW_URL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Settings files by `(type directory, category)`, then name: `systemconfig` or
/// `userconfig/<user>`, as richdocuments' app data folders.
#[derive(Default)]
pub(super) struct Store {
    files: BTreeMap<(String, String), BTreeMap<String, StoredFile>>,
    /// Bumped on every write, for etags.
    generation: u64,
}

/// One settings file.
#[derive(Clone)]
struct StoredFile {
    bytes: Bytes,
    etag: String,
}

/// A settings request.
pub(super) enum Route {
    /// `GET wopi/settings`.
    Config,
    /// `POST wopi/settings/upload`.
    Upload,
    /// `DELETE wopi/settings`.
    Delete,
    /// `GET settings/<type>/<token>/<category>/<name>`.
    File {
        kind: String,
        token: String,
        category: String,
        name: String,
    },
}

impl Route {
    /// The operation recorded for it.
    pub(super) fn operation(&self) -> WopiOperation {
        match self {
            Self::Config => WopiOperation::GetSettings,
            Self::Upload => WopiOperation::UploadSettings,
            Self::Delete => WopiOperation::DeleteSettings,
            Self::File { .. } => WopiOperation::GetSettingsFile,
        }
    }
}

/// The settings route of a request, `None` for any other path (or a method the route does
/// not take, which richdocuments' router answers 404 too).
pub(super) fn route(method: &Method, path: &str) -> Option<Route> {
    match (method.as_str(), path) {
        ("GET", super::WOPI_SETTINGS_PATH) => return Some(Route::Config),
        ("DELETE", super::WOPI_SETTINGS_PATH) => return Some(Route::Delete),
        ("POST", UPLOAD_PATH) => return Some(Route::Upload),
        _ => {}
    }
    let rest = path.strip_prefix(SETTINGS_FILES_PATH)?;
    if *method != Method::GET {
        return None;
    }
    let mut parts = rest.splitn(4, '/');
    let (kind, token, category, name) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    (plain(kind) && plain(category) && !token.is_empty() && !name.is_empty()).then(|| Route::File {
        kind: kind.to_owned(),
        token: decode(token),
        category: category.to_owned(),
        name: decode(name),
    })
}

/// Serves a settings route.
pub(super) async fn serve(
    state: &State,
    parts: &Parts,
    body: &mut Option<BodyReader<'_>>,
    route: Route,
) -> Response<Body> {
    let query = parts.uri.query().unwrap_or_default();
    let param = |name: &str| query_param(query, name).unwrap_or_default();
    match route {
        Route::Config => config(state, &param("type"), &param("access_token")),
        Route::Upload => {
            let Some(reader) = body.take() else {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "no body");
            };
            let content = reader.collect_limited(KEPT_PUT_LIMIT as usize).await;
            upload(state, &param("fileId"), &param("access_token"), content)
        }
        Route::Delete => delete(state, &param("fileId"), &param("access_token")),
        Route::File {
            kind,
            token,
            category,
            name,
        } => file(state, &kind, &token, &category, &name),
    }
}

/// How a token is known: the user, and whether it is a settings token (richdocuments'
/// `TOKEN_TYPE_SETTING_AUTH`) rather than a document's.
fn token_user(state: &State, token: &str) -> Option<(String, bool)> {
    let host = state.host();
    if let Some(user) = host.settings_tokens.get(token) {
        return Some((user.clone(), true));
    }
    host.grants
        .iter()
        .find(|((_, granted), _)| granted == token)
        .map(|(_, grant)| (grant.user.clone(), false))
}

/// A fresh settings token for `user` (`generateIframeToken`).
fn mint_settings_token(state: &State, user: &str) -> String {
    let token = format!("st{}", state.mint("settings"));
    state
        .host()
        .settings_tokens
        .insert(token.clone(), user.to_owned());
    token
}

/// The app data folder of `kind` for `user`.
fn type_dir(kind: &str, user: &str) -> String {
    if kind == "userconfig" {
        format!("userconfig/{user}")
    } else {
        kind.to_owned()
    }
}

/// `generateFileUri`: the absolute `getSettingsFile` URL.
fn file_uri(state: &State, kind: &str, token: &str, category: &str, name: &str) -> String {
    format!(
        "{}{SETTINGS_FILES_PATH}{kind}/{token}/{category}/{}",
        state.origin,
        utf8_percent_encode(name, RAW_URL)
    )
}

/// `getSettings`: the configuration of `kind` for the token's user.
fn config(state: &State, kind: &str, token: &str) -> Response<Body> {
    if kind.is_empty() {
        return error(StatusCode::BAD_REQUEST, "Invalid type parameter");
    }
    let Some((user, _)) = token_user(state, token) else {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let file_token = mint_settings_token(state, &user);
    let dir = type_dir(kind, &user);
    let mut config = Map::new();
    let shown = if kind == "userconfig" {
        "user"
    } else {
        "shared"
    };
    config.insert("kind".into(), shown.into());
    let host = state.host();
    for ((folder, category), files) in &host.settings.files {
        if *folder != dir {
            continue;
        }
        let list: Vec<Value> = files
            .iter()
            .map(|(name, stored)| {
                json!({
                    "stamp": stored.etag,
                    "uri": file_uri(state, kind, &file_token, category, name),
                })
            })
            .collect();
        config.insert(category.clone(), Value::Array(list));
    }
    config.insert("template".into(), json!([]));
    json_response(StatusCode::OK, &Value::Object(config))
}

/// `SettingsUrl`: type, category and file name after `/settings/` in a (decoded) path.
fn settings_path(file_id: &str) -> Option<(String, String, String)> {
    let decoded = percent_encoding::percent_decode_str(file_id)
        .decode_utf8_lossy()
        .into_owned();
    let (_, rest) = decoded.split_once("/settings/")?;
    let mut parts = rest.splitn(3, '/');
    let (kind, category, name) = (parts.next()?, parts.next()?, parts.next()?);
    (!kind.is_empty() && !category.is_empty() && !name.is_empty())
        .then(|| (kind.to_owned(), category.to_owned(), name.to_owned()))
}

/// `uploadSettingsFile`.
fn upload(state: &State, file_id: &str, token: &str, content: Option<Vec<u8>>) -> Response<Body> {
    let Some((user, _)) = token_user(state, token) else {
        return error(StatusCode::FORBIDDEN, "Invalid token");
    };
    let Some((kind, category, name)) = settings_path(file_id) else {
        let why = "Invalid settings URL format: Expected 'type/category/fileName'.";
        return error(StatusCode::INTERNAL_SERVER_ERROR, why);
    };
    if kind == "systemconfig" && user != ADMIN_USER {
        return error(StatusCode::FORBIDDEN, "Not permitted");
    }
    let Some(content) = content else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to read input stream.",
        );
    };
    let etag = {
        let mut host = state.host();
        host.settings.generation += 1;
        let etag = format!("etag-{}", host.settings.generation);
        host.settings
            .files
            .entry((type_dir(&kind, &user), category.clone()))
            .or_default()
            .insert(
                name.clone(),
                StoredFile {
                    bytes: Bytes::from(content),
                    etag: etag.clone(),
                },
            );
        etag
    };
    let file_token = mint_settings_token(state, &user);
    let answer = json!({
        "status": "success",
        "filename": name,
        "details": {
            "stamp": etag,
            "uri": file_uri(state, &kind, &file_token, &category, &name),
        },
    });
    json_response(StatusCode::OK, &answer)
}

/// `deleteSettingsFile`.
fn delete(state: &State, file_id: &str, token: &str) -> Response<Body> {
    let Some((user, is_settings)) = token_user(state, token) else {
        return error(StatusCode::FORBIDDEN, "Invalid token");
    };
    if !is_settings {
        return error(StatusCode::FORBIDDEN, "Invalid token type");
    }
    let Some((kind, category, name)) = settings_path(file_id) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    if kind == "systemconfig" && user != ADMIN_USER {
        return error(StatusCode::FORBIDDEN, "Not permitted");
    }
    let removed = state
        .host()
        .settings
        .files
        .get_mut(&(type_dir(&kind, &user), category.clone()))
        .and_then(|files| files.remove(&name));
    if removed.is_none() {
        return error(StatusCode::NOT_FOUND, "File not found");
    }
    let message = format!("File '{name}' deleted from '{category}' of type '{kind}'.");
    json_response(
        StatusCode::OK,
        &json!({"status": "success", "message": message}),
    )
}

/// `getSettingsFile`: the token in the path must be a settings token.
fn file(state: &State, kind: &str, token: &str, category: &str, name: &str) -> Response<Body> {
    match token_user(state, token) {
        Some((user, true)) => {
            let dir = type_dir(kind, &user);
            let host = state.host();
            let stored = host
                .settings
                .files
                .get(&(dir, category.to_owned()))
                .and_then(|files| files.get(name));
            match stored {
                Some(stored) => {
                    let mut response = text(StatusCode::OK, stored.bytes.clone());
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/octet-stream"),
                    );
                    response
                }
                None => text(StatusCode::NOT_FOUND, "File not found."),
            }
        }
        Some((_, false)) => text(StatusCode::FORBIDDEN, "Forbidden."),
        // `getWopiForToken` throws, caught as any exception.
        None => text(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong"),
    }
}

/// richdocuments' `{"error": why}` answers.
fn error(status: StatusCode, why: &str) -> Response<Body> {
    json_response(status, &json!({ "error": why }))
}

impl StandInNextcloud {
    /// A fresh settings token for `user`, as `settings/generateToken/<admin|user>` gives
    /// the settings page (richdocuments refuses `admin` to non-administrators; tests ask
    /// for [`ADMIN_USER`]'s).
    pub fn settings_token(&self, user: &str) -> String {
        mint_settings_token(&self.state, user)
    }

    /// Stores a settings file, as an upload would (`kind` is `systemconfig` or
    /// `userconfig`, `user` the owner of a `userconfig` file).
    pub fn put_settings_file(
        &self,
        kind: &str,
        user: &str,
        category: &str,
        name: &str,
        bytes: &[u8],
    ) {
        let mut host = self.state.host();
        host.settings.generation += 1;
        let etag = format!("etag-{}", host.settings.generation);
        host.settings
            .files
            .entry((type_dir(kind, user), category.to_owned()))
            .or_default()
            .insert(
                name.to_owned(),
                StoredFile {
                    bytes: Bytes::copy_from_slice(bytes),
                    etag,
                },
            );
    }

    /// A settings file's bytes, if stored.
    pub fn settings_file(
        &self,
        kind: &str,
        user: &str,
        category: &str,
        name: &str,
    ) -> Option<Bytes> {
        let host = self.state.host();
        host.settings
            .files
            .get(&(type_dir(kind, user), category.to_owned()))
            .and_then(|files| files.get(name))
            .map(|stored| stored.bytes.clone())
    }

    /// The settings endpoint as richdocuments' frontend names it
    /// (`wopi_setting_base_url`): `http://127.0.0.1:PORT/index.php/apps/richdocuments/wopi/settings`.
    pub fn settings_endpoint(&self) -> String {
        format!("{}{}", self.state.origin, super::WOPI_SETTINGS_PATH)
    }
}
