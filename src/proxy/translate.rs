//! Token translation: what the editor is given instead of the host's `WOPISrc`, token and
//! URLs.
//!
//! - At open time the form's `access_token` becomes a token officeswitch minted (carrying
//!   the host's, encrypted) and the query's `WOPISrc` becomes `{public_url}wopi/files/{id}`
//!   ([`open_query`], [`open_form`]).
//! - In host responses, every URL an editor would call itself becomes an officeswitch URL
//!   with a freshly minted token: CheckFileInfo's `TemplateSource` and `FileUrl` become
//!   `/wopi/links/{id}`, its `UserSettings.uri` and `SharedSettings.uri` the organisation's
//!   `/wopi/settings/{id}` ([`check_file_info`], [`super::settings`]); PutRelativeFile's
//!   `Url`, a new file, becomes that file's `/wopi/files/{id}` ([`put_relative_file`]). URLs the browser
//!   uses itself (`HostEditUrl`, `PostMessageOrigin`, avatars...) stay, but must belong to
//!   the organisation too.
//!
//! A URL outside the organisation's origins is never passed on: the response is refused
//! (502), so an editor never calls, and officeswitch never forwards to, a host the rules
//! do not name.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use url::Url;

use super::answer::Answer;
use crate::rules::RuleSet;
use crate::wopi::token::{Grant, GrantKind, TokenKeys};
use crate::wopi::wopi_src::WopiSrc;

/// `access_token_ttl` values above this are milliseconds (the WOPI specification's
/// unit); below, seconds (what richdocuments sends). 10^11 seconds is the year 5138.
const MILLIS_THRESHOLD: u64 = 100_000_000_000;

/// CheckFileInfo fields holding a URL the editor fetches itself.
const EDITOR_FETCHED: [&str; 2] = ["TemplateSource", "FileUrl"];

/// CheckFileInfo objects whose `uri` the editor fetches itself (richdocuments' settings,
/// which become the organisation's `/wopi/settings/{id}`).
const EDITOR_FETCHED_OBJECTS: [&str; 2] = ["UserSettings", "SharedSettings"];

/// CheckFileInfo fields the browser opens itself: they stay, but must name the
/// organisation's host.
const BROWSER_URLS: [&str; 6] = [
    "HostEditUrl",
    "HostViewUrl",
    "DownloadUrl",
    "CloseUrl",
    "BreadcrumbFolderUrl",
    "FileSharingUrl",
];

/// When a minted token expires, and the `access_token_ttl` to tell the editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// Unix seconds.
    pub expires_at: u64,
    /// The form value: in the unit the host used (milliseconds for `0` or absent, as the
    /// WOPI specification defines it).
    pub ttl_field: String,
}

/// The expiry of a minted token: the host's (`access_token_ttl`, in seconds or
/// milliseconds since the epoch, `0` meaning unknown) capped at `now + max_ttl`.
///
/// # Errors
/// 400 when the host's token has already expired or the value is not a number.
pub fn expiry(host_ttl: Option<&str>, now: u64, max_ttl: Duration) -> Result<Expiry, Answer> {
    let cap = now.saturating_add(max_ttl.as_secs());
    let value: u64 = match host_ttl.map(str::trim) {
        None | Some("") => 0,
        Some(v) => v
            .parse()
            .map_err(|_| Answer::BadRequest("access_token_ttl is not a number"))?,
    };
    let (host_expiry, millis) = match value {
        0 => (cap, true),
        v if v > MILLIS_THRESHOLD => (v / 1000, true),
        v => (v, false),
    };
    let expires_at = host_expiry.min(cap);
    if expires_at <= now {
        return Err(Answer::BadRequest("the host's access token has expired"));
    }
    let ttl_field = if millis {
        expires_at.saturating_mul(1000).to_string()
    } else {
        expires_at.to_string()
    };
    Ok(Expiry {
        expires_at,
        ttl_field,
    })
}

/// The open query with `WOPISrc` (any letter case, as OnlyOffice lower-cases it)
/// replaced by `minted_wopi_src`; every other parameter stays as it was.
pub fn open_query(query: &str, minted_wopi_src: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            if key.eq_ignore_ascii_case("WOPISrc") {
                format!("{key}={}", encode(minted_wopi_src))
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The host's token and `access_token_ttl` from an open form.
///
/// # Errors
/// 400 without an `access_token`.
pub fn form_token(form: &[u8]) -> Result<(String, Option<String>), Answer> {
    let mut token = None;
    let mut ttl = None;
    for (key, value) in url::form_urlencoded::parse(form) {
        match key.as_ref() {
            "access_token" if token.is_none() => token = Some(value.into_owned()),
            "access_token_ttl" if ttl.is_none() => ttl = Some(value.into_owned()),
            _ => {}
        }
    }
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or(Answer::BadRequest("the open form has no access_token"))?;
    Ok((token, ttl))
}

/// The first value of field `name` in a form, decoded.
pub fn form_field(form: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(form)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The open form with `access_token` and `access_token_ttl` replaced, and
/// `wopi_setting_base_url` (richdocuments' settings endpoint) replaced by `settings_url`,
/// or emptied without one (the page then offers no settings dialog); other fields
/// (`css_variables`, `theme`...) stay.
pub fn open_form(
    form: &[u8],
    minted_token: &str,
    ttl_field: &str,
    settings_url: Option<&str>,
) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    let mut saw_ttl = false;
    for (key, value) in url::form_urlencoded::parse(form) {
        match key.as_ref() {
            "access_token" => out.append_pair("access_token", minted_token),
            "access_token_ttl" => {
                saw_ttl = true;
                out.append_pair("access_token_ttl", ttl_field)
            }
            super::settings::FORM_FIELD => out.append_pair(&key, settings_url.unwrap_or("")),
            _ => out.append_pair(&key, &value),
        };
    }
    if !saw_ttl {
        out.append_pair("access_token_ttl", ttl_field);
    }
    out.finish()
}

/// Mints officeswitch URLs for one grant's document: what host responses are rewritten to.
pub struct Minter<'a> {
    /// Token keys.
    pub tokens: &'a TokenKeys,
    /// Rules in force: which origins the organisation owns.
    pub rules: &'a RuleSet,
    /// The grant of the call whose response is rewritten.
    pub grant: &'a Grant,
    /// officeswitch's public URL (origin, ending in `/`).
    pub public_url: &'a Url,
}

impl Minter<'_> {
    /// `url` if it is an `http(s)` URL on one of the organisation's origins.
    ///
    /// # Errors
    /// 502 naming `field` and the origin otherwise.
    pub(super) fn allowed(&self, field: &str, url: &str) -> Result<Url, Answer> {
        let parsed =
            Url::parse(url).map_err(|_| Answer::HostFailed(format!("{field} is not a URL")))?;
        let owner = self.rules.organisation_for(&parsed).map(|o| o.name());
        if owner != Some(self.grant.org.as_str()) || !parsed.username().is_empty() {
            return Err(Answer::HostFailed(format!(
                "{field} points at {}, outside organisation {}",
                parsed.origin().ascii_serialization(),
                self.grant.org
            )));
        }
        Ok(parsed)
    }

    /// An officeswitch link standing for host URL `url` (query and token included).
    fn link(&self, field: &str, url: &str) -> Result<String, Answer> {
        self.link_named(field, url, false)
    }

    /// An officeswitch link standing for host URL `url`; with `named`, its path ends in
    /// the last segment of `url`'s path (`/wopi/links/{id}/{name}`), for clients that name
    /// what they fetch after its URL (coolwsd's settings presets, the settings page).
    pub(super) fn link_named(&self, field: &str, url: &str, named: bool) -> Result<String, Answer> {
        let parsed = self.allowed(field, url)?;
        let name = parsed
            .path_segments()
            .and_then(|mut segments| segments.next_back())
            .filter(|name| named && !name.is_empty())
            .map(|name| format!("/{name}"))
            .unwrap_or_default();
        let grant = Grant {
            kind: GrantKind::Link,
            file_id: self.grant.file_id.clone(),
            org: self.grant.org.clone(),
            pool: self.grant.pool.clone(),
            url: parsed.to_string(),
            host_token: String::new(),
            expires_at: self.grant.expires_at,
            read_only: self.grant.read_only,
        };
        let token = self.mint(&grant)?;
        Ok(format!(
            "{}wopi/links/{}{name}?access_token={token}",
            self.public_url, grant.file_id
        ))
    }

    /// An officeswitch `WOPISrc` with token for the host file URL `url`, which carries the
    /// host's token for that file in its `access_token` parameter.
    fn file(&self, field: &str, url: &str) -> Result<String, Answer> {
        let mut parsed = self.allowed(field, url)?;
        let host_token = parsed
            .query_pairs()
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| Answer::HostFailed(format!("{field} carries no access_token")))?;
        parsed.set_query(None);
        let wopi_src = WopiSrc::parse(parsed.as_str())
            .map_err(|e| Answer::HostFailed(format!("{field} is not a WOPISrc: {e}")))?;
        let file_id = self.tokens.file_id(&self.grant.org, &wopi_src.doc_key());
        let grant = Grant {
            kind: GrantKind::File,
            file_id,
            org: self.grant.org.clone(),
            pool: self.grant.pool.clone(),
            url: parsed.to_string(),
            host_token,
            expires_at: self.grant.expires_at,
            read_only: false,
        };
        let token = self.mint(&grant)?;
        Ok(format!(
            "{}wopi/files/{}?access_token={token}",
            self.public_url, grant.file_id
        ))
    }

    /// A token for `grant`.
    ///
    /// # Errors
    /// 502 when minting fails (a host URL too long for a token).
    pub(super) fn mint(&self, grant: &Grant) -> Result<String, Answer> {
        self.tokens
            .mint(grant)
            .map_err(|e| Answer::HostFailed(format!("cannot mint a token: {e}")))
    }
}

/// Rewrites a CheckFileInfo response: editor-fetched URLs become officeswitch links,
/// browser URLs are checked.
///
/// # Errors
/// 502 when the host answered something that is not a JSON object, or a URL outside
/// the organisation.
pub fn check_file_info(json: &mut Value, minter: &Minter<'_>) -> Result<(), Answer> {
    let object = json
        .as_object_mut()
        .ok_or_else(|| Answer::HostFailed("CheckFileInfo is not a JSON object".into()))?;
    for field in EDITOR_FETCHED {
        if let Some(Value::String(url)) = object.get(field)
            && !url.is_empty()
        {
            let link = minter.link(field, url)?;
            object.insert(field.to_string(), Value::String(link));
        }
    }
    for field in EDITOR_FETCHED_OBJECTS {
        if let Some(Value::Object(inner)) = object.get_mut(field)
            && let Some(Value::String(url)) = inner.get("uri")
            && !url.is_empty()
        {
            let field = format!("{field}.uri");
            let uri = match super::settings::settings_uri(minter, &field, url)? {
                Some(uri) => uri,
                // Not richdocuments' settings endpoint: fetched as given, as a link.
                None => minter.link(&field, url)?,
            };
            inner.insert("uri".to_string(), Value::String(uri));
        }
    }
    for field in BROWSER_URLS {
        if let Some(Value::String(url)) = object.get(field)
            && !url.is_empty()
        {
            minter.allowed(field, url)?;
        }
    }
    Ok(())
}

/// Rewrites a PutRelativeFile response: `Url` (the new file, with the host's token for
/// it) becomes the new file's officeswitch `WOPISrc` with a minted token; the browser's
/// `HostEditUrl`/`HostViewUrl` are checked.
///
/// # Errors
/// 502 when the host answered something that is not a JSON object, or a URL outside
/// the organisation.
pub fn put_relative_file(json: &mut Value, minter: &Minter<'_>) -> Result<(), Answer> {
    let object = json
        .as_object_mut()
        .ok_or_else(|| Answer::HostFailed("PutRelativeFile is not a JSON object".into()))?;
    if let Some(Value::String(url)) = object.get("Url")
        && !url.is_empty()
    {
        let file = minter.file("Url", url)?;
        object.insert("Url".to_string(), Value::String(file));
    }
    for field in ["HostEditUrl", "HostViewUrl"] {
        if let Some(Value::String(url)) = object.get(field)
            && !url.is_empty()
        {
            minter.allowed(field, url)?;
        }
    }
    Ok(())
}

/// What JavaScript's `encodeURIComponent` leaves as it is, so that officeswitch writes
/// query values the way richdocuments and the editors do.
pub const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// `encodeURIComponent(text)`.
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, URI_COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::config::{PoolConfig, ProofPolicy, SuiteKind};
    use crate::wopi::token::TokenSecret;

    fn tokens() -> TokenKeys {
        TokenKeys::new(TokenSecret::from_bytes(&[9; 32]).unwrap(), None)
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

    /// Keys, rules (acme and beta) and a grant of acme's, as a Minter borrows them.
    struct Fixture {
        tokens: TokenKeys,
        rules: RuleSet,
        grant: Grant,
        public_url: Url,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tokens = tokens();
            let grant = grant(&tokens);
            Fixture {
                tokens,
                rules: rules(),
                grant,
                public_url: Url::parse("https://os.example/").unwrap(),
            }
        }

        fn minter(&self) -> Minter<'_> {
            Minter {
                tokens: &self.tokens,
                rules: &self.rules,
                grant: &self.grant,
                public_url: &self.public_url,
            }
        }
    }

    fn grant(tokens: &TokenKeys) -> Grant {
        Grant {
            kind: GrantKind::File,
            file_id: tokens.file_id("acme", "https://nc.acme:443/wopi/files/1"),
            org: "acme".into(),
            pool: "collabora".into(),
            url: "https://nc.acme/wopi/files/1".into(),
            host_token: "host-1".into(),
            expires_at: NOW + 3600,
            read_only: false,
        }
    }

    #[test]
    fn check_file_info_links_editor_fetched_urls_and_keeps_browser_ones() {
        let fixture = Fixture::new();
        let (tokens, grant) = (&fixture.tokens, &fixture.grant);
        let minter = fixture.minter();
        let template = "https://nc.acme/wopi/template/9?access_token=tpl";
        let mut info = json!({
            "BaseFileName": "a.odt",
            "TemplateSource": template,
            "UserSettings": {"uri": "https://nc.acme/wopi/settings?type=userconfig&access_token=s"},
            "SharedSettings": {"uri": "https://nc.acme/index.php/apps/richdocuments/wopi/settings?type=systemconfig&access_token=s&fileId=-1"},
            "HostEditUrl": "https://nc.acme/apps/files/?fileid=1",
            "PostMessageOrigin": "https://nc.acme",
        });
        check_file_info(&mut info, &minter).unwrap();
        let link = info["TemplateSource"].as_str().unwrap();
        let prefix = format!(
            "https://os.example/wopi/links/{}?access_token=",
            grant.file_id
        );
        assert!(link.starts_with(&prefix), "{link}");
        let minted = &link[prefix.len()..];
        let back = tokens.check(minted, &grant.file_id, NOW).unwrap();
        assert_eq!(back.kind, GrantKind::Link);
        assert_eq!(back.url, template);
        assert!(
            info["UserSettings"]["uri"]
                .as_str()
                .unwrap()
                .starts_with("https://os.example/wopi/links/")
        );
        // richdocuments' settings endpoint: the organisation's settings id.
        assert!(
            info["SharedSettings"]["uri"]
                .as_str()
                .unwrap()
                .starts_with("https://os.example/wopi/settings/"),
            "{}",
            info["SharedSettings"]
        );
        assert_eq!(info["HostEditUrl"], "https://nc.acme/apps/files/?fileid=1");
        assert_eq!(info["PostMessageOrigin"], "https://nc.acme");

        for outside in [
            json!({"TemplateSource": "https://nc.beta/wopi/template/9?access_token=x"}),
            json!({"FileUrl": "http://nc.acme/wopi/files/1/contents"}),
            json!({"HostEditUrl": "https://evil.example/"}),
            json!({"UserSettings": {"uri": "https://user:pw@nc.acme/x"}}),
        ] {
            let mut info = outside.clone();
            assert!(
                matches!(
                    check_file_info(&mut info, &minter),
                    Err(Answer::HostFailed(_))
                ),
                "{outside}"
            );
        }
        assert!(check_file_info(&mut json!([]), &minter).is_err());
    }

    #[test]
    fn put_relative_file_url_becomes_an_officeswitch_file() {
        let fixture = Fixture::new();
        let (tokens, grant) = (&fixture.tokens, &fixture.grant);
        let minter = fixture.minter();
        let mut answer = json!({
            "Name": "a.pdf",
            "Url": "https://nc.acme/wopi/files/2?access_token=host-2",
            "HostEditUrl": "https://nc.acme/apps/files/?fileid=2",
        });
        put_relative_file(&mut answer, &minter).unwrap();
        let url = answer["Url"].as_str().unwrap();
        let new_id = tokens.file_id("acme", "https://nc.acme:443/wopi/files/2");
        let prefix = format!("https://os.example/wopi/files/{new_id}?access_token=");
        assert!(url.starts_with(&prefix), "{url}");
        let back = tokens.check(&url[prefix.len()..], &new_id, NOW).unwrap();
        assert_eq!(back.host_token, "host-2");
        assert_eq!(back.url, "https://nc.acme/wopi/files/2");
        assert_eq!(back.expires_at, grant.expires_at);
        for bad in [
            json!({"Url": "https://nc.beta/wopi/files/2?access_token=x"}),
            json!({"Url": "https://nc.acme/wopi/files/2"}),
            json!({"Url": "https://nc.acme/wopi/files/2?access_token=x", "HostViewUrl": "https://evil/"}),
        ] {
            let mut answer = bad.clone();
            assert!(put_relative_file(&mut answer, &minter).is_err(), "{bad}");
        }
    }

    const NOW: u64 = 1_800_000_000;
    const TEN_HOURS: Duration = Duration::from_secs(36_000);

    #[test]
    fn expiry_keeps_the_hosts_unit_and_caps_it() {
        let seconds = expiry(Some("1800003600"), NOW, TEN_HOURS).unwrap();
        assert_eq!(seconds.expires_at, 1_800_003_600);
        assert_eq!(seconds.ttl_field, "1800003600");
        let millis = expiry(Some("1800003600000"), NOW, TEN_HOURS).unwrap();
        assert_eq!(millis.expires_at, 1_800_003_600);
        assert_eq!(millis.ttl_field, "1800003600000");
        let capped = expiry(Some("1900000000"), NOW, TEN_HOURS).unwrap();
        assert_eq!(capped.expires_at, NOW + 36_000);
        for unknown in [None, Some("0"), Some("")] {
            let e = expiry(unknown, NOW, TEN_HOURS).unwrap();
            assert_eq!(e.expires_at, NOW + 36_000);
            assert_eq!(e.ttl_field, ((NOW + 36_000) * 1000).to_string());
        }
        assert!(matches!(
            expiry(Some("1799999999"), NOW, TEN_HOURS),
            Err(Answer::BadRequest(_))
        ));
        assert!(matches!(
            expiry(Some("soon"), NOW, TEN_HOURS),
            Err(Answer::BadRequest(_))
        ));
    }

    #[test]
    fn open_query_replaces_wopisrc_in_any_case_only() {
        let q = "wopisrc=http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1&lang=de&closebutton=1";
        assert_eq!(
            open_query(q, "https://os.example/wopi/files/I-D_"),
            "wopisrc=https%3A%2F%2Fos.example%2Fwopi%2Ffiles%2FI-D_&lang=de&closebutton=1"
        );
        let q = "lang=de&WOPISrc=x";
        assert_eq!(open_query(q, "y"), "lang=de&WOPISrc=y");
    }

    #[test]
    fn open_form_swaps_token_and_ttl_and_keeps_the_rest() {
        let form = b"access_token=host%2Bsecret&access_token_ttl=1800003600&theme=dark+mode&css_variables=--a%3A1";
        let (token, ttl) = form_token(form).unwrap();
        assert_eq!(token, "host+secret");
        assert_eq!(ttl.as_deref(), Some("1800003600"));
        let out = open_form(form, "minted.tok-en_1", "1800003600", None);
        assert_eq!(
            out,
            "access_token=minted.tok-en_1&access_token_ttl=1800003600&theme=dark+mode&css_variables=--a%3A1"
        );
        assert!(!out.contains("secret"));
        let added = open_form(b"access_token=a", "b", "7", Some("unused"));
        assert_eq!(added, "access_token=b&access_token_ttl=7");
        // The settings endpoint: replaced, or emptied.
        let settings = b"access_token=a&wopi_setting_base_url=https%3A%2F%2Fnc%2Fs";
        assert_eq!(
            open_form(settings, "b", "7", Some("https://os/wopi/settings/x")),
            "access_token=b&wopi_setting_base_url=https%3A%2F%2Fos%2Fwopi%2Fsettings%2Fx&access_token_ttl=7"
        );
        assert_eq!(
            open_form(settings, "b", "7", None),
            "access_token=b&wopi_setting_base_url=&access_token_ttl=7"
        );
        assert_eq!(
            form_field(settings, "wopi_setting_base_url").as_deref(),
            Some("https://nc/s")
        );
        assert_eq!(form_field(settings, "missing"), None);
        assert!(matches!(form_token(b"theme=x"), Err(Answer::BadRequest(_))));
        assert!(matches!(
            form_token(b"access_token="),
            Err(Answer::BadRequest(_))
        ));
    }
}
