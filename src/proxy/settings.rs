//! Collabora's settings (shared and per-user presets: autotext, dictionaries, `xcu`
//! configuration, browser and view settings), which coolwsd keeps at the WOPI host, on
//! richdocuments' settings endpoint `<Nextcloud>/index.php/apps/richdocuments/wopi/settings`.
//!
//! # Who calls what (CollaboraOnline/online at 8010c096, nextcloud/richdocuments at 2ecfdd49)
//!
//! - The **settings page**: richdocuments' admin and personal settings POST a form into an
//!   iframe, to the discovery's `Settings` `urlsrc` (`/browser/<hash>/admin/
//!   adminIntegratorSettings.html`): `access_token` (a settings token, not tied to a file),
//!   `access_token_ttl`, `wopi_setting_base_url` (the settings endpoint), `iframe_type`,
//!   theme fields. coolwsd writes the token and the endpoint into the page; the page's
//!   XHRs POST them back (multipart, `Authorization: Bearer <token>`) to
//!   `/browser/dist/{fetch-settings-config, upload-settings, delete-settings-config,
//!   fetch-settings-file}`, and coolwsd, which refuses hosts outside its WOPI allow-list,
//!   calls the endpoint itself, with `Authorization: Bearer`, and a proof whenever the URL
//!   has an `access_token`:
//!   - `GET <endpoint>?access_token=T&fileId=-1&type=<userconfig|systemconfig>`: the
//!     configuration JSON, whose groups list files as `{"stamp","uri"}`; each `uri` is
//!     `<Nextcloud>/index.php/apps/richdocuments/settings/<type>/<token>/<category>/<name>`;
//!   - `POST <endpoint>/upload?fileId=/settings/<type>/<category>/<name>&access_token=T`
//!     with the file as the body;
//!   - `DELETE <endpoint>?access_token=T&fileId=/settings/<type>/<category>/<name>`;
//!   - `GET <uri>` of one file (with `access_token=T` added when the `uri` has none).
//! - The **editor page**: richdocuments puts `wopi_setting_base_url` in the open form too;
//!   the editor's own settings dialog loads the same page with it and the document's
//!   token.
//! - **Opening a document**: CheckFileInfo's `SharedSettings.uri` and `UserSettings.uri`
//!   (`<endpoint>?type=..&access_token=<settings token>&fileId=-1`) are fetched without a
//!   proof, then every file `uri` of the configuration likewise, into the document's
//!   jail. coolwsd names each file after its URL's last segment and keys its preset cache
//!   by the settings URL without its query (`shared-<scheme>_<authority><path>-<stamp>`).
//!
//! # What officeswitch does
//!
//! Every one of these calls comes to officeswitch, which checks it like a WOPI call and
//! forwards it to the organisation's Nextcloud; no node ever names a Nextcloud:
//!
//! - The settings page's form ([`page_form`]): `wopi_setting_base_url` must be
//!   richdocuments' endpoint on an origin some organisation owns (else 400 or 403: the
//!   node never sees the form). It becomes `{public_url}wopi/settings/{id}` and the
//!   settings token a minted [`GrantKind::Settings`] token carrying it, whose lifetime is
//!   the form's `access_token_ttl` (capped). `{id}` ([`settings_id`]) names the
//!   organisation and the endpoint, like a file id names a document, so it is the same
//!   for every page and document of one Nextcloud.
//! - The editor page's form ([`editor_settings_url`]): `wopi_setting_base_url` becomes
//!   `{public_url}wopi/settings/{file id}`, which the document's own token opens; the
//!   endpoint is then the one beside the document's `WOPISrc`
//!   ([`document_endpoint`]). A form naming any other endpoint gets none.
//! - CheckFileInfo's settings `uri`s ([`settings_uri`]) become
//!   `{public_url}wopi/settings/{id}?type=..&fileId=-1&access_token=<minted>`.
//! - `/wopi/settings/{id}[/upload]` is admitted as a WOPI call (token bound to `{id}`,
//!   organisation still owning the endpoint, the editor's proof when it sends one) and
//!   forwarded to the endpoint ([`host_endpoint`]) with Nextcloud's token, bodies
//!   streamed; the configuration's file `uri`s become named links
//!   `/wopi/links/{id}/<name>` ([`config`]), which keep the file name where coolwsd and
//!   the page look for it.
//!
//! `fetch-models` (the page's AI settings) calls the AI provider the page names, not the
//! WOPI host: it stays plain stateless traffic.

use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::answer::Answer;
use super::classify::WopiEndpoint;
use super::translate::{self, Minter};
use crate::rules::RuleSet;
use crate::wopi::token::{self, Grant, GrantKind, TokenKeys};

/// The form field (settings page and editor page) naming richdocuments' settings endpoint.
pub const FORM_FIELD: &str = "wopi_setting_base_url";

/// How the path of richdocuments' settings endpoint ends (`/index.php` before it, or not,
/// as Nextcloud's URL generator writes it).
const ENDPOINT_SUFFIX: &str = "/apps/richdocuments/wopi/settings";

/// What the path of a richdocuments `WOPISrc` has before the file id.
const FILES_MARK: &str = "/apps/richdocuments/wopi/files/";

/// officeswitch's settings endpoint for settings id (or file id) `id`.
pub fn own_endpoint(public_url: &Url, id: &str) -> String {
    format!("{public_url}wopi/settings/{id}")
}

/// The settings id of `org`'s settings endpoint `endpoint`: a file id (its organisation
/// tag first, so routing and rules treat it like a document's) derived from a key no
/// `WOPISrc` can have.
pub fn settings_id(tokens: &TokenKeys, org: &str, endpoint: &Url) -> String {
    tokens.file_id(org, &format!("settings {endpoint}"))
}

/// richdocuments' settings endpoint as `url` names it (its query dropped): an `http(s)`
/// URL without credentials or fragment whose path ends in [`ENDPOINT_SUFFIX`] (a trailing
/// `/` aside).
///
/// # Errors
/// Why `url` is not one, for the client.
fn endpoint_of(url: &str) -> Result<Url, &'static str> {
    let mut parsed = Url::parse(url).map_err(|_| "wopi_setting_base_url is not a URL")?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.fragment().is_some()
    {
        return Err("wopi_setting_base_url is not an http(s) URL without credentials");
    }
    let path = parsed.path().trim_end_matches('/').to_string();
    if !path.ends_with(ENDPOINT_SUFFIX) {
        return Err(
            "wopi_setting_base_url is not richdocuments' settings endpoint (.../apps/richdocuments/wopi/settings)",
        );
    }
    parsed.set_path(&path);
    parsed.set_query(None);
    Ok(parsed)
}

/// The settings endpoint beside a richdocuments `WOPISrc`
/// (`.../apps/richdocuments/wopi/files/<id>` gives `.../apps/richdocuments/wopi/settings`):
/// richdocuments builds both from the same callback URL.
pub fn document_endpoint(wopi_src: &str) -> Option<Url> {
    let mut url = Url::parse(wopi_src).ok()?;
    let path = url.path().to_string();
    let at = path.rfind(FILES_MARK)?;
    let file = &path[at + FILES_MARK.len()..];
    if file.is_empty() || file.contains('/') {
        return None;
    }
    url.set_path(&format!("{}{ENDPOINT_SUFFIX}", &path[..at]));
    url.set_query(None);
    url.set_fragment(None);
    Some(url)
}

/// What translating a settings page's form needs.
pub struct PageContext<'a> {
    /// Mints the settings token.
    pub tokens: &'a TokenKeys,
    /// Rules in force: which organisation owns the endpoint.
    pub rules: &'a RuleSet,
    /// officeswitch's public URL (origin, ending in `/`).
    pub public_url: &'a Url,
    /// The pool whose node serves the page (whose proof keys check its calls).
    pub pool: &'a str,
    /// The longest a minted token lives.
    pub max_token_ttl: Duration,
}

/// A settings page form, translated.
#[derive(Debug)]
pub struct SettingsPage {
    /// The organisation owning the form's endpoint; `None` when the form already named
    /// officeswitch (the editor's own settings dialog, posting what its page was given).
    pub org: Option<String>,
    /// The form to send to the node.
    pub form: String,
}

/// Translates the settings page's form: the settings endpoint becomes officeswitch's and
/// the settings token a minted one standing for both; other fields stay.
///
/// # Errors
/// 400 for a form without a usable endpoint or token or with an expired token, 403 when
/// no organisation owns the endpoint's origin, 500 when no token can be minted.
pub fn page_form(form: &[u8], ctx: &PageContext<'_>) -> Result<SettingsPage, Answer> {
    let raw = translate::form_field(form, FORM_FIELD)
        .filter(|url| !url.is_empty())
        .ok_or(Answer::BadRequest(
            "the settings form names no wopi_setting_base_url",
        ))?;
    let own = format!("{}wopi/settings/", ctx.public_url);
    if raw.starts_with(&own) {
        // Already officeswitch's: the editor's settings dialog re-posting its page's value
        // with the document's minted token.
        return Ok(SettingsPage {
            org: None,
            form: String::from_utf8_lossy(form).into_owned(),
        });
    }
    let endpoint = endpoint_of(&raw).map_err(Answer::BadRequest)?;
    if Url::parse(&raw).is_ok_and(|u| u.query().is_some()) {
        return Err(Answer::BadRequest("wopi_setting_base_url has a query"));
    }
    let org = ctx
        .rules
        .organisation_for(&endpoint)
        .ok_or_else(|| Answer::UnknownOrigin(endpoint.origin().ascii_serialization()))?
        .name()
        .to_string();
    let (host_token, host_ttl) = translate::form_token(form)?;
    let expiry = translate::expiry(host_ttl.as_deref(), token::unix_now(), ctx.max_token_ttl)?;
    let id = settings_id(ctx.tokens, &org, &endpoint);
    let grant = Grant {
        kind: GrantKind::Settings,
        file_id: id,
        org,
        pool: ctx.pool.to_string(),
        url: endpoint.to_string(),
        host_token,
        expires_at: expiry.expires_at,
        read_only: false,
    };
    let minted = ctx
        .tokens
        .mint(&grant)
        .map_err(|e| Answer::Internal(format!("cannot mint a settings token: {e}")))?;
    let own_endpoint = own_endpoint(ctx.public_url, &grant.file_id);
    Ok(SettingsPage {
        form: translate::open_form(form, &minted, &expiry.ttl_field, Some(&own_endpoint)),
        org: Some(grant.org),
    })
}

/// What the editor page's `wopi_setting_base_url` becomes: officeswitch's endpoint for
/// the document `file_id`, when the form named the endpoint beside the document's host
/// `WOPISrc`; else `None` (the field is emptied: no node is ever given a Nextcloud URL).
pub fn editor_settings_url(
    form_value: &str,
    host_wopi_src: &str,
    file_id: &str,
    public_url: &Url,
) -> Option<String> {
    let given = endpoint_of(form_value).ok()?;
    let beside = document_endpoint(host_wopi_src)?;
    (given == beside).then(|| own_endpoint(public_url, file_id))
}

/// The host URL (without query) a call to `/wopi/settings/{id}[/upload]` goes to: a
/// settings token's endpoint, or the endpoint beside a document token's `WOPISrc`;
/// `/upload` appended for an upload.
///
/// # Errors
/// 400 when a document's host has no richdocuments settings endpoint.
pub fn host_endpoint(endpoint: WopiEndpoint, grant: &Grant) -> Result<String, Answer> {
    let mut url = match grant.kind {
        GrantKind::Settings => grant.url.clone(),
        _ => document_endpoint(&grant.url)
            .map(|u| u.to_string())
            .ok_or(Answer::BadRequest(
                "the document's host has no richdocuments settings endpoint",
            ))?,
    };
    if endpoint == WopiEndpoint::SettingsUpload {
        url.push_str("/upload");
    }
    Ok(url)
}

/// A CheckFileInfo settings `uri` (richdocuments' endpoint with `type`, the settings token
/// and `fileId`) as officeswitch's `/wopi/settings/{id}` with a minted settings token, the
/// other parameters kept; `None` for a `uri` that is not that endpoint or carries no
/// token (it is then linked as any editor-fetched URL).
///
/// # Errors
/// 502 for a `uri` outside the organisation, or when no token can be minted.
pub fn settings_uri(minter: &Minter<'_>, field: &str, url: &str) -> Result<Option<String>, Answer> {
    let parsed = minter.allowed(field, url)?;
    let Ok(endpoint) = endpoint_of(parsed.as_str()) else {
        return Ok(None);
    };
    let Some(host_token) = parsed
        .query_pairs()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    let grant = Grant {
        kind: GrantKind::Settings,
        file_id: settings_id(minter.tokens, &minter.grant.org, &endpoint),
        org: minter.grant.org.clone(),
        pool: minter.grant.pool.clone(),
        url: endpoint.to_string(),
        host_token,
        expires_at: minter.grant.expires_at,
        read_only: false,
    };
    let token = minter.mint(&grant)?;
    let mut out = own_endpoint(minter.public_url, &grant.file_id);
    out.push('?');
    let others = parsed
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !pair.is_empty() && key != "access_token"
        });
    for pair in others {
        out.push_str(pair);
        out.push('&');
    }
    out.push_str("access_token=");
    out.push_str(&token);
    Ok(Some(out))
}

/// Rewrites a settings configuration (richdocuments' `{"kind", "<group>": [{"stamp",
/// "uri"}]}`): every file `uri` becomes a named officeswitch link.
///
/// # Errors
/// 502 when the host answered something that is not a JSON object, or a `uri` outside
/// the organisation.
pub fn config(json: &mut Value, minter: &Minter<'_>) -> Result<(), Answer> {
    let object = json.as_object_mut().ok_or_else(|| {
        Answer::HostFailed("the settings configuration is not a JSON object".into())
    })?;
    for (group, value) in object.iter_mut() {
        let Value::Array(items) = value else {
            continue;
        };
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(Value::String(uri)) = item.get("uri")
                && !uri.is_empty()
            {
                let link = minter.link_named(&format!("{group}.uri"), uri, true)?;
                item.insert("uri".to_string(), Value::String(link));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::config::{PoolConfig, ProofPolicy, SuiteKind};
    use crate::wopi::token::TokenSecret;

    const ENDPOINT: &str = "https://nc.acme/index.php/apps/richdocuments/wopi/settings";

    fn tokens() -> TokenKeys {
        TokenKeys::new(TokenSecret::from_bytes(&[5; 32]).unwrap(), None)
    }

    fn rules() -> RuleSet {
        let pools = [PoolConfig {
            name: "collabora".into(),
            kind: SuiteKind::Collabora,
            nodes: vec![Url::parse("http://cool:9980/").unwrap()],
            proof: ProofPolicy::Auto,
        }];
        RuleSet::from_sources(
            (
                Path::new("default.toml"),
                "[extensions]\nodt = \"collabora\"\n",
            ),
            &[
                (Path::new("acme.toml"), "origins = [\"https://nc.acme\"]\n"),
                (Path::new("beta.toml"), "origins = [\"https://nc.beta\"]\n"),
            ],
            &pools,
        )
        .unwrap()
    }

    fn public() -> Url {
        Url::parse("https://os.example/").unwrap()
    }

    fn field(form: &str, name: &str) -> Option<String> {
        translate::form_field(form.as_bytes(), name)
    }

    #[test]
    fn endpoints_must_be_richdocuments_settings() {
        assert_eq!(endpoint_of(ENDPOINT).unwrap().as_str(), ENDPOINT);
        assert_eq!(
            endpoint_of(&format!("{ENDPOINT}/?type=x"))
                .unwrap()
                .as_str(),
            ENDPOINT
        );
        assert!(endpoint_of("https://nc.acme/apps/richdocuments/wopi/settings").is_ok());
        for bad in [
            "https://nc.acme/index.php/apps/richdocuments/assets/x",
            "https://nc.acme/index.php/apps/richdocuments/wopi/settings/upload",
            "ftp://nc.acme/apps/richdocuments/wopi/settings",
            "https://u:p@nc.acme/apps/richdocuments/wopi/settings",
            "https://nc.acme/apps/richdocuments/wopi/settings#x",
            "not a url",
        ] {
            assert!(endpoint_of(bad).is_err(), "{bad}");
        }
        assert_eq!(
            document_endpoint("https://nc.acme/index.php/apps/richdocuments/wopi/files/42_oc")
                .unwrap()
                .as_str(),
            ENDPOINT
        );
        assert_eq!(document_endpoint("https://nc.acme/wopi/files/42"), None);
    }

    #[test]
    fn the_settings_page_form_names_officeswitch_with_a_minted_token() {
        let (tokens, rules, public) = (tokens(), rules(), public());
        let ctx = PageContext {
            tokens: &tokens,
            rules: &rules,
            public_url: &public,
            pool: "collabora",
            max_token_ttl: Duration::from_secs(36_000),
        };
        let ttl = token::unix_now() + 600;
        let form = format!(
            "access_token=nc%2Bsettings&access_token_ttl={ttl}&wopi_setting_base_url={}&iframe_type=admin",
            translate::encode(ENDPOINT)
        );
        let page = page_form(form.as_bytes(), &ctx).unwrap();
        assert_eq!(page.org.as_deref(), Some("acme"));
        let endpoint = Url::parse(ENDPOINT).unwrap();
        let id = settings_id(&tokens, "acme", &endpoint);
        assert_eq!(
            field(&page.form, FORM_FIELD).unwrap(),
            format!("https://os.example/wopi/settings/{id}")
        );
        assert_eq!(field(&page.form, "iframe_type").as_deref(), Some("admin"));
        assert_eq!(field(&page.form, "access_token_ttl"), Some(ttl.to_string()));
        assert!(!page.form.contains("nc.acme") && !page.form.contains("settings%2B"));
        let minted = field(&page.form, "access_token").unwrap();
        let grant = tokens.check(&minted, &id, token::unix_now()).unwrap();
        assert_eq!(grant.kind, GrantKind::Settings);
        assert_eq!(
            (grant.url.as_str(), grant.host_token.as_str()),
            (ENDPOINT, "nc+settings")
        );
        assert_eq!(
            (grant.org.as_str(), grant.pool.as_str()),
            ("acme", "collabora")
        );
        // One id per organisation and endpoint, whatever page or document.
        assert!(page_form(form.as_bytes(), &ctx).unwrap().form.contains(&id));
        assert_ne!(settings_id(&tokens, "beta", &endpoint), id);

        // Already officeswitch's (the editor's dialog): passed on as it is.
        let own = format!(
            "access_token=m&wopi_setting_base_url=https%3A%2F%2Fos.example%2Fwopi%2Fsettings%2F{id}"
        );
        let page = page_form(own.as_bytes(), &ctx).unwrap();
        assert_eq!((page.org, page.form), (None, own));

        let unknown = format!(
            "access_token=t&wopi_setting_base_url={}",
            translate::encode("https://nc.unknown/index.php/apps/richdocuments/wopi/settings")
        );
        assert!(matches!(
            page_form(unknown.as_bytes(), &ctx),
            Err(Answer::UnknownOrigin(origin)) if origin == "https://nc.unknown"
        ));
        for bad in [
            "access_token=t".to_string(),
            format!("wopi_setting_base_url={}", translate::encode(ENDPOINT)),
            format!(
                "access_token=t&wopi_setting_base_url={}",
                translate::encode("https://nc.acme/index.php/apps/files")
            ),
            format!(
                "access_token=t&wopi_setting_base_url={}",
                translate::encode(&format!("{ENDPOINT}?x=1"))
            ),
            format!(
                "access_token=t&access_token_ttl=1&wopi_setting_base_url={}",
                translate::encode(ENDPOINT)
            ),
        ] {
            assert!(
                matches!(page_form(bad.as_bytes(), &ctx), Err(Answer::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_editor_page_gets_the_documents_endpoint_or_none() {
        let public = public();
        let wopi_src = "https://nc.acme/index.php/apps/richdocuments/wopi/files/42_oc";
        assert_eq!(
            editor_settings_url(ENDPOINT, wopi_src, "FILE", &public).as_deref(),
            Some("https://os.example/wopi/settings/FILE")
        );
        for other in [
            "https://nc.beta/index.php/apps/richdocuments/wopi/settings",
            "https://nc.acme/apps/richdocuments/wopi/settings",
            "",
        ] {
            assert_eq!(
                editor_settings_url(other, wopi_src, "FILE", &public),
                None,
                "{other}"
            );
        }
        assert_eq!(
            editor_settings_url(ENDPOINT, "https://nc.acme/wopi/files/42", "FILE", &public),
            None
        );
    }

    fn grant(tokens: &TokenKeys, kind: GrantKind, url: &str) -> Grant {
        Grant {
            kind,
            file_id: tokens.file_id("acme", url),
            org: "acme".into(),
            pool: "collabora".into(),
            url: url.into(),
            host_token: "host".into(),
            expires_at: token::unix_now() + 3600,
            read_only: false,
        }
    }

    #[test]
    fn calls_go_to_the_settings_or_documents_endpoint() {
        let tokens = tokens();
        let settings = grant(&tokens, GrantKind::Settings, ENDPOINT);
        assert_eq!(
            host_endpoint(WopiEndpoint::Settings, &settings).unwrap(),
            ENDPOINT
        );
        assert_eq!(
            host_endpoint(WopiEndpoint::SettingsUpload, &settings).unwrap(),
            format!("{ENDPOINT}/upload")
        );
        let file = grant(
            &tokens,
            GrantKind::File,
            "https://nc.acme/index.php/apps/richdocuments/wopi/files/42_oc",
        );
        assert_eq!(
            host_endpoint(WopiEndpoint::Settings, &file).unwrap(),
            ENDPOINT
        );
        let elsewhere = grant(&tokens, GrantKind::File, "https://nc.acme/wopi/files/42");
        assert!(matches!(
            host_endpoint(WopiEndpoint::Settings, &elsewhere),
            Err(Answer::BadRequest(_))
        ));
    }

    #[test]
    fn check_file_info_uris_and_configuration_files_name_officeswitch() {
        let (tokens, rules, public) = (tokens(), rules(), public());
        let file = grant(
            &tokens,
            GrantKind::File,
            "https://nc.acme/index.php/apps/richdocuments/wopi/files/42_oc",
        );
        let minter = Minter {
            tokens: &tokens,
            rules: &rules,
            grant: &file,
            public_url: &public,
        };
        let uri = format!("{ENDPOINT}?type=systemconfig&access_token=st1&fileId=-1");
        let out = settings_uri(&minter, "SharedSettings.uri", &uri)
            .unwrap()
            .unwrap();
        let id = settings_id(&tokens, "acme", &Url::parse(ENDPOINT).unwrap());
        let prefix = format!(
            "https://os.example/wopi/settings/{id}?type=systemconfig&fileId=-1&access_token="
        );
        assert!(out.starts_with(&prefix), "{out}");
        let back = tokens
            .check(&out[prefix.len()..], &id, token::unix_now())
            .unwrap();
        assert_eq!(back.kind, GrantKind::Settings);
        assert_eq!(
            (back.url.as_str(), back.host_token.as_str()),
            (ENDPOINT, "st1")
        );
        assert_eq!(back.expires_at, file.expires_at);
        // Not the settings endpoint, or no token: linked like any other URL.
        for other in [
            "https://nc.acme/index.php/apps/other?access_token=x",
            &format!("{ENDPOINT}?type=userconfig"),
        ] {
            assert_eq!(settings_uri(&minter, "f", other).unwrap(), None, "{other}");
        }
        assert!(settings_uri(&minter, "f", &uri.replace("nc.acme", "nc.beta")).is_err());

        let settings = Grant {
            kind: GrantKind::Settings,
            file_id: id.clone(),
            url: ENDPOINT.into(),
            ..file.clone()
        };
        let minter = Minter {
            grant: &settings,
            ..minter
        };
        let file_uri = "https://nc.acme/index.php/apps/richdocuments/settings/systemconfig/st2/wordbook/en_US%20(1).dic";
        let mut json = json!({
            "kind": "shared",
            "wordbook": [{"stamp": "e1", "uri": file_uri}],
            "template": [],
        });
        config(&mut json, &minter).unwrap();
        let link = json["wordbook"][0]["uri"].as_str().unwrap();
        let prefix = format!("https://os.example/wopi/links/{id}/en_US%20(1).dic?access_token=");
        assert!(link.starts_with(&prefix), "{link}");
        let back = tokens
            .check(&link[prefix.len()..], &id, token::unix_now())
            .unwrap();
        assert_eq!((back.kind, back.url.as_str()), (GrantKind::Link, file_uri));
        assert_eq!(json["wordbook"][0]["stamp"], "e1");
        assert_eq!(json["kind"], "shared");
        let mut outside = json!({"xcu": [{"uri": "https://nc.beta/x.xcu"}]});
        assert!(matches!(
            config(&mut outside, &minter),
            Err(Answer::HostFailed(_))
        ));
        assert!(config(&mut json!([]), &minter).is_err());
    }
}
