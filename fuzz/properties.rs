//! The properties the fuzz targets check, one function per target, shared by the cargo-fuzz
//! targets (`fuzz/fuzz_targets/*.rs`, nightly) and `tests/fuzz_seeds.rs` (stable), which
//! replays every committed seed (`fuzz/corpus/<target>/*`) through [`TARGETS`]. Both include
//! this file with `#[path]`, so it uses only officeswitch and crates officeswitch depends
//! on.
//!
//! Every function takes the raw input and panics (assert) when a property fails; "no panic"
//! alone is the property only where nothing stronger holds. Structured inputs are fields
//! separated by `\n` (the last field takes the rest), so seeds stay readable and
//! hand-written.

use std::path::Path;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use officeswitch::config::{Config, PoolConfig, ProofPolicy, SuiteKind};
use officeswitch::discovery::document::{Discovery, ProofKeyPair};
use officeswitch::discovery::merge::{PoolDiscovery, merge};
use officeswitch::discovery::open_url::{FileFormat, OPEN_PATH_PREFIX, OpenUrl};
use officeswitch::proxy::classify::{Class, Traffic, WopiEndpoint, classify, query_param};
use officeswitch::proxy::translate;
use officeswitch::rules::RuleSet;
use officeswitch::wopi::token::{
    FILE_ID_LEN, FileId, Grant, GrantKind, TokenError, TokenKeys, TokenSecret, is_file_id,
};
use officeswitch::wopi::wopi_src::{self, WopiSrc, WopiSrcError};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use url::Url;

/// A target's check: panics when the input breaks a property.
pub type Check = fn(&[u8]);

/// Every target by name: the directory of its seeds under `fuzz/corpus/` and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("discovery", discovery),
    ("rules", rules),
    ("config", config),
    ("token_check", token_check),
    ("token_mint", token_mint),
    ("wopi_src", wopi_src),
    ("classify", classify_request),
];

/// officeswitch's public URL in every target.
const PUBLIC_URL: &str = "https://office.example.org/";
/// `{PUBLIC_URL}wopi/files/`: what officeswitch's own `WOPISrc`s start with.
const FILES_BASE: &str = "https://office.example.org/wopi/files/";
/// The clock every token target reads (2026-01-01T00:00:00Z).
const NOW: u64 = 1_767_225_600;
/// The file id the `token_check` seeds were minted for.
pub const CHECK_FILE_ID: &str = "AAAAAAAAbbbbbbbbccccccccdddddddd";
/// The first part of every token officeswitch mints (`{"typ":"JWT","alg":"HS256"}`).
const TOKEN_HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";
/// Longest token officeswitch mints or reads.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The OnlyOffice discovery every merge is made with (a real document, reduced).
const ONLYOFFICE_DISCOVERY: &[u8] =
    include_bytes!("../../shared/fixtures/onlyoffice-discovery-reduced-ocis.xml");
/// A real Collabora discovery with a proof key: officeswitch's stand-in keys.
const PROOF_KEY_DISCOVERY: &[u8] =
    include_bytes!("../../shared/fixtures/collabora-discovery-proof-key-reduced.xml");
/// officeswitch's shipped default rules.
const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

/// The two pools every rules and merge check uses.
fn pools() -> &'static [PoolConfig] {
    static POOLS: OnceLock<Vec<PoolConfig>> = OnceLock::new();
    POOLS.get_or_init(|| {
        let pool = |name: &str, kind, nodes: &[&str]| PoolConfig {
            name: name.to_string(),
            kind,
            nodes: nodes
                .iter()
                .map(|n| Url::parse(n).expect("node URL"))
                .collect(),
            proof: ProofPolicy::Auto,
        };
        vec![
            pool(
                "collabora",
                SuiteKind::Collabora,
                &["http://127.0.0.1:9980", "http://127.0.0.1:9981"],
            ),
            pool(
                "onlyoffice",
                SuiteKind::OnlyOffice,
                &["http://127.0.0.1:8000"],
            ),
        ]
    })
}

/// Token keys from two fixed secrets: current (seeds were minted with it) and old.
fn token_keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| TokenKeys::new(secret(0x11), Some(secret(0x22))))
}

/// A fixed 32-byte secret of `byte`.
fn secret(byte: u8) -> TokenSecret {
    TokenSecret::from_bytes(&[byte; 32]).expect("a 32-byte secret")
}

/// Splits `data` (lossily decoded) into `N` fields at `\n`; the last takes the rest, missing
/// ones are empty.
fn fields<const N: usize>(data: &[u8]) -> [String; N] {
    let text = String::from_utf8_lossy(data);
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (slot, part) in out.iter_mut().zip(text.splitn(N, '\n')) {
        *slot = part.to_string();
    }
    out
}

/// Whether `part` is a sub-slice of `whole` (same memory), as classify promises for every
/// slice it returns.
fn is_within(part: &str, whole: &str) -> bool {
    let (start, end) = (
        whole.as_ptr() as usize,
        whole.as_ptr() as usize + whole.len(),
    );
    let p = part.as_ptr() as usize;
    p >= start && p + part.len() <= end
}

// ---------------------------------------------------------------------------------------
// Discovery

/// A discovery document (bytes as an editor serves them). Properties: a parsed document
/// offers an action; writing it and parsing the result gives it back (and the same bytes
/// again); merged with a real OnlyOffice discovery, every `urlsrc` and icon is on
/// officeswitch's origin, every open `urlsrc` ends in `?` and reads back as the format and
/// action it was made for, and the merged document parses back to itself.
pub fn discovery(data: &[u8]) {
    let Ok(doc) = Discovery::parse(data) else {
        return;
    };
    assert!(doc.apps.iter().any(|a| !a.actions.is_empty()), "no action");
    let xml = doc.to_xml();
    let again = Discovery::parse(&xml)
        .unwrap_or_else(|e| panic!("to_xml output does not parse: {e}\n{}", lossy(&xml)));
    assert_eq!(again, doc, "parse(to_xml(doc)) differs\n{}", lossy(&xml));
    assert_eq!(again.to_xml(), xml, "to_xml is not stable");

    let public = Url::parse(PUBLIC_URL).expect("public URL");
    let onlyoffice = Discovery::parse(ONLYOFFICE_DISCOVERY).expect("OnlyOffice fixture");
    let pools = pools();
    let merged = merge(
        &[
            PoolDiscovery {
                pool: "collabora",
                node: &pools[0].nodes[0],
                discovery: &doc,
            },
            PoolDiscovery {
                pool: "onlyoffice",
                node: &pools[1].nodes[0],
                discovery: &onlyoffice,
            },
        ],
        default_rules(),
        &public,
        proof_keys(),
    );
    let out = &merged.discovery;
    assert_eq!(
        out.proof_key.as_ref(),
        Some(proof_keys()),
        "not officeswitch's key"
    );
    for app in &out.apps {
        if let Some(icon) = &app.fav_icon_url {
            assert_on_public_origin(icon, &public, &app.name);
        }
        for action in &app.actions {
            assert_on_public_origin(&action.urlsrc, &public, &app.name);
            if app.name == "Settings" {
                // richdocuments' CoolFrame appends `?lang=` to it.
                assert!(
                    !action.urlsrc.contains('?'),
                    "settings urlsrc {} has a query",
                    action.urlsrc
                );
            } else {
                assert!(
                    action.urlsrc.ends_with('?') || action.urlsrc.ends_with('&'),
                    "urlsrc {} does not end in ? or &",
                    action.urlsrc
                );
            }
            let url = Url::parse(&action.urlsrc).expect("checked above");
            if !url.path().starts_with(OPEN_PATH_PREFIX) {
                assert!(
                    matches!(app.name.as_str(), "Settings" | "Capabilities"),
                    "app {} has a urlsrc that is not an open URL: {}",
                    app.name,
                    action.urlsrc
                );
                continue;
            }
            let open = OpenUrl::parse_path(url.path()).unwrap_or_else(|| {
                panic!(
                    "officeswitch cannot read its own urlsrc {} (app {:?}, action {:?})",
                    action.urlsrc, app.name, action.name
                )
            });
            assert_eq!(open.action, action.name, "{}", action.urlsrc);
            let is_mime_app = matches!(
                app.name.split_once('/'),
                Some((t, s)) if !t.is_empty() && !s.is_empty()
            );
            let expected = if is_mime_app {
                FileFormat::Mime(app.name.clone())
            } else {
                FileFormat::Ext(action.ext.to_ascii_lowercase())
            };
            assert_eq!(open.format, expected, "{}", action.urlsrc);
        }
    }
    let merged_xml = out.to_xml();
    let reparsed = Discovery::parse(&merged_xml).expect("merged discovery parses");
    assert_eq!(&reparsed, out, "merged discovery does not round trip");
}

/// The grant's field a token must not reveal: org, pool, url, host token.
fn hidden_field(grant: &Grant, field: usize) -> &String {
    match field {
        0 => &grant.org,
        1 => &grant.pool,
        2 => &grant.url,
        _ => &grant.host_token,
    }
}

/// [`hidden_field`], to change it.
fn hidden_field_mut(grant: &mut Grant, field: usize) -> &mut String {
    match field {
        0 => &mut grant.org,
        1 => &mut grant.pool,
        2 => &mut grant.url,
        _ => &mut grant.host_token,
    }
}

/// `text` as UTF-8, lossily, for messages.
fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Asserts that `url` is an absolute URL on `public`'s origin (Nextcloud's CSP trusts
/// only that one).
fn assert_on_public_origin(url: &str, public: &Url, app: &str) {
    let parsed = Url::parse(url).unwrap_or_else(|e| panic!("{app}: {url:?} is not a URL: {e}"));
    assert_eq!(
        parsed.origin(),
        public.origin(),
        "{app}: {url:?} leaves officeswitch's origin"
    );
    assert!(
        !url.contains('<') && !url.contains('>'),
        "{app}: {url:?} has a placeholder"
    );
}

/// officeswitch's rules as shipped, for merging.
fn default_rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| {
        RuleSet::from_str(Path::new("default.toml"), DEFAULT_RULES, pools())
            .expect("shipped default rules")
    })
}

/// A real proof key pair, standing in for officeswitch's own.
fn proof_keys() -> &'static ProofKeyPair {
    static KEYS: OnceLock<ProofKeyPair> = OnceLock::new();
    KEYS.get_or_init(|| {
        // The fixture has only the key; one action makes it a discovery.
        let xml = String::from_utf8_lossy(PROOF_KEY_DISCOVERY).replace(
            "</wopi-discovery>",
            r#"<net-zone><app name="x"><action name="view" ext="x" urlsrc="http://a/?"/></app></net-zone></wopi-discovery>"#,
        );
        Discovery::parse(xml.as_bytes())
            .expect("proof-key fixture")
            .proof_key
            .expect("the fixture has a proof key")
    })
}

// ---------------------------------------------------------------------------------------
// Rules and settings

/// Rules files: `default.toml`, then `acme.toml` and `globex.toml`, separated by lines
/// `---`. Properties: compiled rules name only configured pools, list every pool once in
/// the preference order, give every organisation back for each of its origins (and for a
/// `WOPISrc` on each origin, read the way the router reads it), and pin only nodes of the
/// pinned pool; a refusal names its file and a line inside it.
pub fn rules(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, "\n---\n");
    let default = parts.next().unwrap_or_default();
    let orgs: Vec<(&Path, &str)> = [Path::new("acme.toml"), Path::new("globex.toml")]
        .into_iter()
        .zip(parts)
        .collect();
    let pools = pools();
    let rules = match RuleSet::from_sources((Path::new("default.toml"), default), &orgs, pools) {
        Ok(rules) => rules,
        Err(e) => {
            let source = std::iter::once(("default.toml", default))
                .chain(
                    orgs.iter()
                        .map(|(p, t)| (p.to_str().unwrap_or_default(), *t)),
                )
                .find(|(name, _)| Path::new(name) == e.file)
                .unwrap_or_else(|| panic!("error names an unknown file: {e}"));
            assert_error_line(&e, source.1);
            return;
        }
    };
    let is_pool = |name: &str| pools.iter().any(|p| p.name == name);
    let mut preference = rules.preference().to_vec();
    assert_eq!(preference.len(), pools.len(), "{preference:?}");
    preference.sort();
    preference.dedup();
    assert_eq!(
        preference.len(),
        pools.len(),
        "a pool twice in {preference:?}"
    );
    assert!(preference.iter().all(|p| is_pool(p)));
    assert_eq!(rules.organisations(), orgs.len());
    for org in rules.organisation_list() {
        assert!(
            std::ptr::eq(rules.organisation_named(org.name()).expect("by name"), org),
            "organisation_named({})",
            org.name()
        );
        for ext in ["docx", "odt", "pdf", "xyz", ""] {
            if let Some(pool) = rules.pool_for(org, ext) {
                assert!(is_pool(pool), "{} -> {pool}", org.name());
            }
        }
        for pool in pools {
            if let Some(nodes) = org.pinned_nodes(&pool.name) {
                assert!(!nodes.is_empty(), "an empty pin list");
                assert!(
                    nodes.iter().all(|n| pool.nodes.contains(n)),
                    "{} pins a node outside {}",
                    org.name(),
                    pool.name
                );
            }
        }
        assert!(!org.origins().is_empty());
        for origin in org.origins() {
            let url = Url::parse(origin).unwrap_or_else(|e| panic!("origin {origin}: {e}"));
            let found = rules.organisation_for(&url).map(|o| o.name());
            assert_eq!(found, Some(org.name()), "origin {origin}");
            // The router reads a WOPISrc's origin through `with_key`: it must land on the
            // same organisation as the rules' own spelling.
            let wopi = format!("{origin}/index.php/apps/richdocuments/wopi/files/1_oc");
            let routed = wopi_src::with_key(&wopi, |doc| {
                rules
                    .organisation_for_origin(doc.scheme, doc.host, doc.port)
                    .map(|o| o.name().to_string())
            });
            if let Ok(routed) = routed {
                assert_eq!(routed.as_deref(), Some(org.name()), "WOPISrc {wopi}");
            }
        }
    }
}

/// Asserts that a located error points inside its source text.
fn assert_error_line(e: &officeswitch::config::ConfigError, source: &str) {
    let lines = source.split('\n').count();
    if let Some(line) = e.line {
        assert!((1..=lines).contains(&line), "line {line} of {lines}: {e}");
    }
    let shown = e.to_string();
    assert!(shown.starts_with(&e.file.display().to_string()), "{shown}");
    assert!(!e.message.is_empty(), "{shown}");
}

/// `officeswitch.toml` text. Properties: a refusal points inside the text; accepted
/// settings have an origin-only http(s) `public_url`, a listener, and uniquely named
/// pools with nodes.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/etc/officeswitch/officeswitch.toml");
    let config = match Config::from_str(path, &text) {
        Ok(config) => config,
        Err(e) => {
            assert_eq!(e.file, path);
            assert_error_line(&e, &text);
            return;
        }
    };
    assert!(matches!(config.public_url.scheme(), "http" | "https"));
    assert_eq!(config.public_url.path(), "/");
    assert!(config.public_url.query().is_none() && config.public_url.fragment().is_none());
    assert!(
        config.listen.is_some() || config.tls.is_some(),
        "no listener"
    );
    let mut names: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    let count = names.len();
    names.dedup();
    assert_eq!(names.len(), count, "duplicate pool names");
    assert!(
        config.pools.iter().all(|p| !p.nodes.is_empty()),
        "a pool without nodes"
    );
}

// ---------------------------------------------------------------------------------------
// Tokens

/// A token string, checked for [`CHECK_FILE_ID`] at [`NOW`]. Properties: only a token that
/// starts with the one header officeswitch writes can pass; an accepted token gives a grant
/// for that file id, unexpired, that is refused at its expiry, for any other file id, and
/// by keys without the secret that signed it; re-minting the grant gives it back.
pub fn token_check(data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    let keys = token_keys();
    let grant = match keys.check(&token, CHECK_FILE_ID, NOW) {
        Ok(grant) => grant,
        Err(e) => {
            assert!(!e.reason().is_empty());
            // Longer than any of the fixed messages, which could contain a short input.
            if token.len() >= 48 {
                assert!(
                    !e.to_string().contains(token.as_ref()),
                    "error echoes the token"
                );
            }
            return;
        }
    };
    assert!(token.starts_with(&format!("{TOKEN_HEADER}.")), "{token}");
    assert!(token.len() <= MAX_TOKEN_LEN);
    assert_eq!(grant.file_id, CHECK_FILE_ID);
    assert!(grant.expires_at > NOW);
    assert_eq!(
        keys.check(&token, CHECK_FILE_ID, grant.expires_at),
        Err(TokenError::Expired)
    );
    let other = "ZZZZZZZZbbbbbbbbccccccccdddddddd";
    assert_eq!(keys.check(&token, other, NOW), Err(TokenError::OtherFile));
    // Exactly one of the two secrets signed it: a keyring holding only the other one
    // refuses it.
    let current_only = TokenKeys::new(secret(0x11), None);
    let old_only = TokenKeys::new(secret(0x22), None);
    let by_current = current_only.check(&token, CHECK_FILE_ID, NOW);
    let by_old = old_only.check(&token, CHECK_FILE_ID, NOW);
    assert!(
        by_current.is_ok() != by_old.is_ok(),
        "current {by_current:?}, old {by_old:?}"
    );
    let stranger = TokenKeys::new(secret(0x33), None);
    assert_eq!(
        stranger.check(&token, CHECK_FILE_ID, NOW),
        Err(TokenError::BadSignature)
    );
    let again = keys.mint(&grant).expect("an accepted grant mints");
    assert_eq!(keys.check(&again, CHECK_FILE_ID, NOW), Ok(grant));
}

/// Grant fields: `kind` (`l` for a link, `r` for a read-only file, anything else a
/// file), `expiry` (seconds from
/// [`NOW`], may be negative), `file_id` (empty: derived from org and url), `org`, `pool`,
/// `url`, `host_token`. Properties: a derived file id is 32 id characters starting with the
/// organisation's tag; minting succeeds for any well-formed file id and fields of modest
/// size, and fails for a malformed id; a minted token is URL-safe, has the fixed header,
/// reveals only `fid`, `exp`, `iat`, `k`, `sub` and `enc`, none of which holds a grant
/// field, and checks back to the same grant until it expires.
pub fn token_mint(data: &[u8]) {
    let [kind, expiry, file_id, org, pool, url, host_token] = fields::<7>(data);
    let keys = token_keys();
    let expires_at = match expiry.trim().parse::<i64>() {
        Ok(offset) => NOW.saturating_add_signed(offset),
        Err(_) => NOW + 3600,
    };
    let file_id = if file_id.is_empty() {
        let id = keys.file_id(&org, &url);
        assert_eq!(id.len(), FILE_ID_LEN);
        assert!(is_file_id(&id), "{id}");
        assert!(id.starts_with(&keys.org_tag(&org)));
        assert_eq!(id, keys.file_id(&org, &url), "file ids are stable");
        id
    } else {
        file_id
    };
    let grant = Grant {
        kind: if kind == "l" {
            GrantKind::Link
        } else {
            GrantKind::File
        },
        file_id,
        org,
        pool,
        url,
        host_token,
        expires_at,
        read_only: kind == "r",
    };
    let token = match keys.mint(&grant) {
        Ok(token) => token,
        Err(e) => {
            assert!(matches!(e, TokenError::Mint(_)), "{e:?}");
            let size =
                grant.org.len() + grant.pool.len() + grant.url.len() + grant.host_token.len();
            assert!(
                !is_file_id(&grant.file_id) || size > 1000,
                "minting {grant:?} failed: {e}"
            );
            return;
        }
    };
    assert!(is_file_id(&grant.file_id), "minted for a malformed file id");
    assert!(token.len() <= MAX_TOKEN_LEN);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
        "{token}"
    );
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    assert_eq!(parts[0], TOKEN_HEADER);
    let payload = URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url payload");
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&payload).expect("JSON claims");
    let mut names: Vec<&str> = claims.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["enc", "exp", "fid", "iat", "k", "sub"]);
    assert_eq!(claims["fid"], grant.file_id.as_str());
    assert_eq!(claims["exp"], grant.expires_at);
    for field in 0..4 {
        let hidden = hidden_field(&grant, field);
        // Long enough not to occur in random base64 by chance.
        if hidden.len() < 16 {
            continue;
        }
        for claim in ["enc", "sub"] {
            let value = claims[claim].as_str().unwrap_or_default();
            if value.contains(hidden.as_str()) {
                // The fuzzer copies compared bytes into its input, so a field can be set to
                // a claim's value. A leak follows the field: with the field changed, the
                // claim must no longer hold the old value.
                let mut other = grant.clone();
                // Every character changed, none longer (the token has a size limit).
                *hidden_field_mut(&mut other, field) = hidden
                    .chars()
                    .map(|c| if c == 'x' { 'y' } else { 'x' })
                    .collect();
                let again = keys
                    .mint(&other)
                    .expect("the same grant with one field changed");
                let payload = URL_SAFE_NO_PAD
                    .decode(again.split('.').nth(1).expect("payload"))
                    .expect("base64url payload");
                let claims: serde_json::Value =
                    serde_json::from_slice(&payload).expect("JSON claims");
                let value = claims[claim].as_str().unwrap_or_default();
                assert!(
                    value.contains(hidden.as_str()),
                    "{claim} reveals {hidden:?}"
                );
            }
        }
    }
    let checked = keys.check(&token, &grant.file_id, NOW);
    if grant.expires_at > NOW {
        assert_eq!(checked, Ok(grant.clone()));
        assert_eq!(
            keys.check(&token, &grant.file_id, grant.expires_at),
            Err(TokenError::Expired)
        );
    } else {
        assert_eq!(checked, Err(TokenError::Expired));
    }
}

// ---------------------------------------------------------------------------------------
// WOPISrc

/// A `WOPISrc` query value. Properties: an accepted WOPISrc is an http(s) URL with a host
/// and no user info, query or fragment, within the length limit; the router's
/// allocation-free reading (`with_key`) gives exactly what `parse` + `doc_key` give (or the
/// same error); its encoded and double-encoded forms give the same key; officeswitch's own
/// `WOPISrc` form is recognised only with a well-formed 32-character id at its end.
pub fn wopi_src(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let parsed = WopiSrc::parse(&raw);
    let routed = wopi_src::with_key(&raw, |doc| {
        (
            doc.scheme.to_string(),
            doc.host.to_string(),
            doc.port,
            String::from_utf8(doc.key.to_vec()).expect("keys are ASCII"),
            doc.origin(),
        )
    });
    match (&parsed, &routed) {
        (Ok(w), Ok((scheme, host, port, key, origin))) => {
            let url = w.url();
            assert!(matches!(url.scheme(), "http" | "https"), "{url}");
            assert!(
                url.username().is_empty() && url.password().is_none(),
                "{url}"
            );
            assert!(url.host_str().is_some_and(|h| !h.is_empty()), "{url}");
            assert!(url.query().is_none() && url.fragment().is_none(), "{url}");
            assert!(url.as_str().len() <= wopi_src::MAX_LEN);
            assert_eq!(scheme, url.scheme(), "{raw:?}");
            assert_eq!(Some(host.as_str()), url.host_str(), "{raw:?}");
            assert_eq!(Some(*port), url.port_or_known_default(), "{raw:?}");
            assert_eq!(*key, w.doc_key(), "{raw:?}: with_key and doc_key differ");
            assert_eq!(*origin, url.origin().ascii_serialization(), "{raw:?}");
            // Encoded once and twice (as a query value travels), the same document.
            let once = utf8_percent_encode(url.as_str(), NON_ALPHANUMERIC).to_string();
            let twice = utf8_percent_encode(&once, NON_ALPHANUMERIC).to_string();
            for spelling in [&once, &twice] {
                if spelling.len() > 4 * wopi_src::MAX_LEN {
                    continue;
                }
                let other = WopiSrc::parse(spelling)
                    .unwrap_or_else(|e| panic!("{raw:?} encoded as {spelling:?}: {e}"));
                assert_eq!(other.doc_key(), *key, "{raw:?} encoded as {spelling:?}");
            }
        }
        (Err(e), Err(g)) => assert_eq!(e, g, "{raw:?}"),
        _ => panic!("{raw:?}: parse {parsed:?}, with_key {routed:?}"),
    }
    if let Err(e) = &parsed {
        assert_refusal_is_safe(e, &raw);
    }

    if let Some(id) = wopi_src::own_file_id(&raw, FILES_BASE) {
        assert!(is_file_id(id), "{id:?}");
        assert!(raw.ends_with(id));
        assert_eq!(
            FileId::parse(id).map(|f| f.as_str().to_string()),
            Some(id.to_string())
        );
    }
    // The input as a file id on officeswitch's base: recognised in every spelling.
    let id: String = raw
        .bytes()
        .map(|b| {
            const ID_CHARS: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            char::from(ID_CHARS[usize::from(b) % ID_CHARS.len()])
        })
        .chain(std::iter::repeat('A'))
        .take(FILE_ID_LEN)
        .collect();
    // Encoded as encodeURIComponent (and PHP, Java, Python) do: id characters stay as
    // they are, which `own_file_id` relies on.
    let own = format!("{FILES_BASE}{id}");
    let once = utf8_percent_encode(&own, translate::URI_COMPONENT).to_string();
    let twice = utf8_percent_encode(&once, translate::URI_COMPONENT).to_string();
    for spelling in [&own, &once, &twice] {
        assert_eq!(
            wopi_src::own_file_id(spelling, FILES_BASE),
            Some(id.as_str()),
            "{spelling}"
        );
    }
}

/// Asserts that a refusal message does not repeat the raw value (it can carry tokens).
fn assert_refusal_is_safe(e: &WopiSrcError, raw: &str) {
    // Longer than any fixed message plus the 32 scheme characters one may quote.
    if raw.len() >= 128 {
        assert!(
            !e.to_string().contains(raw),
            "the error repeats the value: {e}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Classification

/// `method`, `path`, `upgrade` (`1` or anything else), `query` (the rest; empty: none).
/// Properties: every slice classify returns lies in the request it was given; officeswitch's
/// own endpoints and opens are exactly their paths and methods; a WOPI call names a
/// non-empty id segment, by GET, HEAD or POST, never as an upgrade, and a well-formed id
/// reads back as itself; editor traffic never has a dot segment, an admin path of either
/// suite, a method its kind does not take, or an upgrade outside WebSocket paths; its
/// document key is the query's `WOPISrc` (or OnlyOffice's `shardkey`), and an officeswitch
/// `WOPISrc` there yields a 32-character id.
pub fn classify_request(data: &[u8]) {
    let [method, path, upgrade, query] = fields::<4>(data);
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let is_upgrade = upgrade == "1";
    let query = (!query.is_empty()).then_some(query.as_str());
    let class = classify(&method, &path, query, is_upgrade);
    let read = matches!(method, Method::GET | Method::HEAD);
    match class {
        Class::Discovery | Class::Capabilities | Class::Health | Class::Ready => {
            assert!(read, "{method} {path}");
            let expected = match class {
                Class::Discovery => "/hosting/discovery",
                Class::Capabilities => "/hosting/capabilities",
                Class::Health => "/healthz",
                _ => "/readyz",
            };
            assert_eq!(path, expected);
        }
        Class::Open => {
            assert_eq!(method, Method::POST);
            assert!(path.starts_with(OPEN_PATH_PREFIX), "{path}");
        }
        Class::WrongMethod | Class::Unknown => {}
        Class::Wopi(call) => {
            let settings = matches!(
                call.endpoint,
                WopiEndpoint::Settings | WopiEndpoint::SettingsUpload
            );
            assert!(
                read || method == Method::POST || (settings && method == Method::DELETE),
                "{method} {path}"
            );
            assert!(!is_upgrade, "an upgrade to {path}");
            assert!(is_within(call.file_id, &path));
            assert!(
                !call.file_id.is_empty() && !call.file_id.contains('/'),
                "{path}"
            );
            assert!(
                path.starts_with("/wopi/files/")
                    || path.starts_with("/wopi/links/")
                    || path.starts_with("/wopi/settings/"),
                "{path}"
            );
            if let Some(id) = FileId::parse(call.file_id) {
                assert_eq!(id.as_str(), call.file_id);
                assert_eq!(id.as_str().len(), FILE_ID_LEN);
            }
        }
        Class::Editor(request) => {
            assert_eq!(request.kind == Traffic::WebSocket, is_upgrade, "{path}");
            let takes = match request.kind {
                Traffic::Asset => read,
                Traffic::WebSocket => method == Method::GET || method == Method::CONNECT,
                Traffic::Page if request.suite == SuiteKind::OnlyOffice => method == Method::POST,
                Traffic::Page | Traffic::Document | Traffic::Stateless => {
                    read || method == Method::POST
                }
            };
            assert!(takes, "{method} {path} as {:?}", request.kind);
            assert!(!has_dot_segment(&path), "dot segment forwarded: {path}");
            assert!(!is_admin_path(&path), "admin path forwarded: {path}");
            // What coolwsd routes after hex-decoding `cool/0x<hex>` must be as harmless.
            if let Some(decoded) = coolwsd_dehexify(&path, query) {
                let decoded_path = decoded.split('?').next().unwrap_or_default();
                assert!(
                    !has_dot_segment(decoded_path),
                    "dot segment after dehexify: {path} -> {decoded}"
                );
                assert!(
                    !is_admin_path(decoded_path),
                    "admin path after dehexify: {path} -> {decoded}"
                );
            }
            if let Some(version) = request.version {
                assert!(is_within(version, &path));
            }
            let q = query.unwrap_or_default();
            let expected = query.and_then(|q| {
                query_param(q, "WOPISrc").or_else(|| match request.suite {
                    SuiteKind::OnlyOffice => query_param(q, "shardkey"),
                    SuiteKind::Collabora => None,
                })
            });
            assert_eq!(request.key, expected, "{path}?{q}");
            if let Some(key) = request.key {
                // A parameter without `=` has the empty value (not a slice of the query).
                assert!(key.is_empty() || is_within(key, q), "{key:?}");
                assert!(!key.contains('&'), "{key}");
                if let Some(id) = wopi_src::own_file_id(key, FILES_BASE) {
                    assert!(is_file_id(id), "{id:?} from {key:?}");
                    assert!(is_within(id, key));
                }
            }
        }
    }
}

/// The request target coolwsd routes (`RequestDetails::dehexify`), written here apart
/// from officeswitch's own reading: the first `cool/0x` in `path?query`, the hex up to the
/// next `/` replaced by the bytes it encodes (nothing when it is not hex pairs). `None`
/// without `cool/0x`.
fn coolwsd_dehexify(path: &str, query: Option<&str>) -> Option<String> {
    let target = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let at = target.find("cool/0x")?;
    let start = at + "cool/0x".len();
    let end = target[start..]
        .find('/')
        .map_or(target.len(), |i| start + i);
    let hex = &target.as_bytes()[start..end];
    let decoded: Vec<u8> = if hex.len() % 2 == 0 && hex.iter().all(u8::is_ascii_hexdigit) {
        hex.chunks(2)
            .filter_map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect()
    } else {
        Vec::new()
    };
    Some(format!(
        "{}{}{}",
        &target[..at + "cool/".len()],
        String::from_utf8_lossy(&decoded),
        &target[end..]
    ))
}

/// Whether a path segment, percent-decoded (any number of times) and ASCII lower-cased, is
/// `.` or `..`.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = decode_fully(segment);
        decoded == "." || decoded == ".."
    })
}

/// The admin endpoints the vendors say to block: Collabora `/cool/adminws`,
/// `/cool/getMetrics` (also under `/lool/`), `/browser/dist/admin/` (also `/loleaflet/`);
/// OnlyOffice `/internal/` and `/info/`. Segments are compared percent-decoded and in any
/// letter case, the way a lenient node might read them.
fn is_admin_path(path: &str) -> bool {
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| decode_fully(s).to_ascii_lowercase())
        .collect();
    let at = |i: usize| segments.get(i).map(String::as_str).unwrap_or_default();
    match at(0) {
        "cool" | "lool" => matches!(at(1), "adminws" | "getmetrics"),
        "browser" | "loleaflet" => at(2) == "admin",
        "internal" | "info" => true,
        _ => false,
    }
}

/// `s` percent-decoded until it no longer changes (at most 4 rounds), lossily.
fn decode_fully(s: &str) -> String {
    let mut current = s.to_string();
    for _ in 0..4 {
        let next = percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if next == current {
            break;
        }
        current = next;
    }
    current
}
