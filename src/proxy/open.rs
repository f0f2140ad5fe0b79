//! Opens: how the editor page comes to sit at the address its suite's page expects.
//!
//! richdocuments POSTs the open form (the host's `access_token`) into an iframe, to the
//! merged discovery's `urlsrc` with the host's `WOPISrc` appended. Both editor pages read
//! their own address: ONLYOFFICE's loads `../../../web-apps/apps/api/documents/api.js`
//! relative to it (and sdkjs builds the socket and download URLs from there), Collabora's
//! takes the `WOPISrc` of its WebSocket and downloads from its query. An
//! `/officeswitch/open/...` address satisfies neither, whatever its depth: the suite is only
//! chosen when the form arrives, and its query names the host's file. So an open takes two
//! steps, both on officeswitch's origin:
//!
//! 1. `POST /officeswitch/open/<format>/<action>?WOPISrc=<host's>`: route (rules, pin),
//!    check the form's token and lifetime, and answer **307** to the chosen node's own page
//!    path (its discovery `urlsrc`, placeholders filled as the host asked) with
//!    officeswitch's `WOPISrc` and an open ticket in the query ([`redirect`]). A 307 makes
//!    the browser repeat the same POST, form included, at that address. (For a pool whose
//!    page needs a postMessage bridge, the same address and form go into a
//!    [`super::bridge`] page instead, whose script posts them into its own frame.)
//! 2. `POST /hosting/wopi/word/edit?...` or `/browser/<hash>/cool.html?...`: editor traffic,
//!    routed by officeswitch's `WOPISrc` to the document's pinned node. The ticket says
//!    which host `WOPISrc` the document stands for; the form's host token becomes a minted
//!    one and its settings endpoint officeswitch's ([`page_form`]), and the ticket leaves
//!    the query before the node sees it.
//!
//! The page then resolves every relative URL exactly as on the node, and every URL it
//! builds from its own query names officeswitch's `WOPISrc`. The ticket is sealed like a
//! token but opens nothing: no host token, and the WOPI endpoints refuse its kind. It
//! carries one more thing from step 1 to the minted token: whether richdocuments asked for
//! a read-only view (`permission=readonly`), which editors that ignore the query are held
//! to ([`super::dialect`]).

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use url::Url;

use super::answer::Answer;
use super::classify::query_param;
use super::dialect;
use super::rewrite;
use super::route::Target;
use super::settings;
use super::translate;
use crate::wopi::token::{self, FileId, Grant, GrantKind, TokenKeys};

/// The query parameter that carries the open ticket from step 1 to step 2.
pub const TICKET_PARAM: &str = "officeswitch_ticket";

/// Largest open form accepted (richdocuments' is a token, a TTL and a few theme
/// settings: about 2 KiB).
const MAX_OPEN_FORM: usize = 64 * 1024;

/// What an open needs of the proxy: keys and limits.
pub struct OpenContext<'a> {
    /// Mints tickets and tokens.
    pub tokens: &'a TokenKeys,
    /// officeswitch's public URL: the origin of every editor page.
    pub public_url: &'a Url,
    /// `{public_url}wopi/files/`.
    pub files_base: &'a str,
    /// The longest a minted token lives.
    pub max_token_ttl: std::time::Duration,
}

/// Reads an open form whole (it is a few hundred bytes), bounded in size and in time (a
/// client that sends it slowly would hold the request forever).
///
/// # Errors
/// 413 above the bound, 400 when the body breaks off, 408 when it takes longer than
/// `timeout`.
pub async fn read_form(body: Incoming, timeout: std::time::Duration) -> Result<Bytes, Answer> {
    tokio::time::timeout(timeout, Limited::new(body, MAX_OPEN_FORM).collect())
        .await
        .map_err(|_| Answer::ClientBodyStalled)?
        .map(|collected| collected.to_bytes())
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Answer::FormTooLarge
            } else {
                Answer::BadRequest("the open form broke off")
            }
        })
}

/// Step 1: the `307` to the suite's page for an open routed to `target`, whose query was
/// `host_query` and whose form was `form`.
///
/// # Errors
/// 400 for a form without a token or with an expired one, 500 when no ticket can be
/// minted, 502 for an unusable `urlsrc`.
pub fn redirect(
    target: &Target,
    host_query: Option<&str>,
    form: &[u8],
    ctx: &OpenContext<'_>,
) -> Result<Answer, Answer> {
    let (Some(urlsrc), Some(file), Some(host_wopi_src)) =
        (&target.urlsrc, target.file, &target.host_wopi_src)
    else {
        return Err(Answer::Internal(
            "an open was routed without its urlsrc".into(),
        ));
    };
    let (_, host_ttl) = translate::form_token(form)?;
    let expiry = translate::expiry(host_ttl.as_deref(), token::unix_now(), ctx.max_token_ttl)?;
    let ticket = ctx
        .tokens
        .mint(&Grant {
            kind: GrantKind::Open,
            file_id: file.as_str().to_string(),
            org: target.org.as_deref().unwrap_or_default().to_string(),
            pool: String::new(),
            url: host_wopi_src.clone(),
            host_token: String::new(),
            expires_at: expiry.expires_at,
            read_only: dialect::read_only_open(host_query),
        })
        .map_err(|e| Answer::Internal(format!("cannot mint an open ticket: {e}")))?;
    let on_node = rewrite::open_url(urlsrc, host_query);
    let node_url = Url::parse(&on_node)
        .map_err(|_| Answer::BadGateway(format!("unusable urlsrc {urlsrc}")))?;
    let own_wopi_src = format!("{}{}", ctx.files_base, file.as_str());
    let query = translate::open_query(node_url.query().unwrap_or_default(), &own_wopi_src);
    let origin = ctx.public_url.as_str().trim_end_matches('/');
    Ok(Answer::EditorPage(format!(
        "{origin}{}?{query}&{TICKET_PARAM}={ticket}",
        node_url.path()
    )))
}

/// Step 2: checks the ticket of an editor page POST routed to `target` (its document is
/// `file`) and returns the URI without the ticket and the form with a minted token and
/// officeswitch's settings endpoint for the document ([`settings::editor_settings_url`]).
///
/// # Errors
/// 400 for a missing, forged, expired or foreign ticket, or a form without a token; 500
/// when no token can be minted.
pub fn page_form(
    uri: &Uri,
    form: &[u8],
    target: &Target,
    file: FileId,
    pool: &str,
    ctx: &OpenContext<'_>,
) -> Result<(Uri, String), Answer> {
    let query = uri.query().unwrap_or_default();
    let ticket = query_param(query, TICKET_PARAM).ok_or(Answer::BadTicket("missing"))?;
    let now = token::unix_now();
    let ticket = ctx
        .tokens
        .check(ticket, file.as_str(), now)
        .map_err(|e| Answer::BadTicket(e.reason()))?;
    if ticket.kind != GrantKind::Open || Some(ticket.org.as_str()) != target.org.as_deref() {
        return Err(Answer::BadTicket("wrong_kind"));
    }
    let (host_token, host_ttl) = translate::form_token(form)?;
    // The re-posted form is the one step 1 read: the same lifetime, from the same TTL.
    let expiry = translate::expiry(host_ttl.as_deref(), now, ctx.max_token_ttl)?;
    let grant = Grant {
        kind: GrantKind::File,
        file_id: file.as_str().to_string(),
        org: ticket.org,
        pool: pool.to_string(),
        url: ticket.url,
        host_token,
        expires_at: expiry.expires_at,
        // Sealed from step 1's query: the page's own query is the browser's to change.
        read_only: ticket.read_only,
    };
    let token = ctx
        .tokens
        .mint(&grant)
        .map_err(|e| Answer::Internal(format!("cannot mint a token: {e}")))?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !key.eq_ignore_ascii_case(TICKET_PARAM)
        })
        .collect();
    let uri = format!("{}?{}", uri.path(), kept.join("&"))
        .parse()
        .map_err(|_| Answer::BadRequest("the editor page URL cannot be rewritten"))?;
    let settings_url = translate::form_field(form, settings::FORM_FIELD).and_then(|given| {
        settings::editor_settings_url(&given, &grant.url, file.as_str(), ctx.public_url)
    });
    let form = translate::open_form(form, &token, &expiry.ttl_field, settings_url.as_deref());
    Ok((uri, form))
}

/// Whether a query carries an open ticket (an editor page POST of step 2).
pub fn has_ticket(query: Option<&str>) -> bool {
    query.is_some_and(|q| query_param(q, TICKET_PARAM).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::config::SuiteKind;
    use crate::topology::Topology;
    use crate::wopi::token::TokenSecret;

    fn keys() -> TokenKeys {
        TokenKeys::new(TokenSecret::from_bytes(&[7; 32]).unwrap(), None)
    }

    fn target(tokens: &TokenKeys, urlsrc: &str) -> Target {
        let id = tokens.file_id("acme", "https://nc.example/wopi/files/1");
        Target {
            topology: Arc::new(Topology::new(Vec::new())),
            suite: SuiteKind::OnlyOffice,
            pool: 0,
            node: 0,
            org: Some("acme".into()),
            urlsrc: Some(urlsrc.into()),
            file: FileId::parse(&id),
            host_wopi_src: Some("https://nc.example/wopi/files/1".into()),
        }
    }

    fn ctx<'a>(tokens: &'a TokenKeys, public: &'a Url) -> OpenContext<'a> {
        OpenContext {
            tokens,
            public_url: public,
            files_base: "https://office.example:8443/wopi/files/",
            max_token_ttl: std::time::Duration::from_secs(36_000),
        }
    }

    const HOST_QUERY: &str = "WOPISrc=https%3A%2F%2Fnc.example%2Fwopi%2Ffiles%2F1&lang=de";

    fn location(answer: Answer) -> Url {
        match answer {
            Answer::EditorPage(location) => Url::parse(&location).unwrap(),
            other => panic!("not a redirect: {other:?}"),
        }
    }

    #[test]
    fn onlyoffice_page_keeps_the_nodes_path_depth_so_relative_urls_resolve_as_there() {
        let tokens = keys();
        let public = Url::parse("https://office.example:8443/").unwrap();
        let target = target(
            &tokens,
            "http://10.0.0.5:8000/hosting/wopi/word/edit?<rs=DC_LLCC&><dchat=DISABLE_CHAT&>",
        );
        let form = b"access_token=host&access_token_ttl=0";
        let to =
            location(redirect(&target, Some(HOST_QUERY), form, &ctx(&tokens, &public)).unwrap());
        assert_eq!(
            to.origin().ascii_serialization(),
            "https://office.example:8443"
        );
        assert_eq!(to.path(), "/hosting/wopi/word/edit");
        // What api.js's `../../../web-apps/...` resolves to from the page: the node's path.
        assert_eq!(
            to.join("../../../web-apps/apps/api/documents/api.js")
                .unwrap()
                .path(),
            "/web-apps/apps/api/documents/api.js"
        );
        let pairs: Vec<(String, String)> = to.query_pairs().into_owned().collect();
        let value = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(value("rs").as_deref(), Some("de"));
        let own = value("WOPISrc").unwrap();
        assert!(
            own.starts_with("https://office.example:8443/wopi/files/"),
            "{own}"
        );
        assert!(!to.as_str().contains("nc.example"), "{to}");
        assert!(value(TICKET_PARAM).is_some());
    }

    #[test]
    fn the_ticket_turns_the_host_token_into_a_minted_one_and_leaves_the_query() {
        let tokens = keys();
        let public = Url::parse("https://office.example:8443/").unwrap();
        let target = target(&tokens, "http://10.0.0.9:9980/browser/abc123/cool.html?");
        let ctx = ctx(&tokens, &public);
        let form = b"access_token=host+tok&access_token_ttl=0&theme=dark\
            &wopi_setting_base_url=https%3A%2F%2Fnc.example%2Fapps%2Frichdocuments%2Fwopi%2Fsettings";
        let to = location(redirect(&target, Some(HOST_QUERY), form, &ctx).unwrap());
        assert_eq!(to.path(), "/browser/abc123/cool.html");
        let uri: Uri = format!("{}?{}", to.path(), to.query().unwrap())
            .parse()
            .unwrap();
        let file = target.file.unwrap();
        let (uri, form) = page_form(&uri, form, &target, file, "collabora", &ctx).unwrap();
        assert!(!uri.query().unwrap().contains(TICKET_PARAM), "{uri}");
        let token = url::form_urlencoded::parse(form.as_bytes())
            .find(|(k, _)| k == "access_token")
            .unwrap()
            .1
            .into_owned();
        let grant = tokens
            .check(&token, file.as_str(), token::unix_now())
            .unwrap();
        assert_eq!(grant.kind, GrantKind::File);
        assert_eq!(grant.host_token, "host tok");
        assert_eq!(grant.url, "https://nc.example/wopi/files/1");
        assert_eq!(grant.pool, "collabora");
        assert!(form.contains("theme=dark"));
        // This WOPISrc has no richdocuments settings endpoint beside it: no node is given
        // the host's.
        assert!(form.ends_with("&wopi_setting_base_url="), "{form}");
    }

    #[test]
    fn a_read_only_open_is_sealed_in_the_minted_token() {
        let tokens = keys();
        let public = Url::parse("https://office.example:8443/").unwrap();
        let target = target(&tokens, "http://10.0.0.5:8000/hosting/wopi/word/edit?");
        let ctx = ctx(&tokens, &public);
        let file = target.file.unwrap();
        let form = b"access_token=host&access_token_ttl=0";
        for (query, read_only) in [
            (format!("{HOST_QUERY}&permission=readonly"), true),
            (HOST_QUERY.to_string(), false),
        ] {
            let to = location(redirect(&target, Some(&query), form, &ctx).unwrap());
            // The browser may drop the page's own `permission`: the ticket keeps it.
            let stripped: Vec<&str> = to
                .query()
                .unwrap()
                .split('&')
                .filter(|p| !p.starts_with("permission="))
                .collect();
            let uri: Uri = format!("{}?{}", to.path(), stripped.join("&"))
                .parse()
                .unwrap();
            let (_, form) = page_form(&uri, form, &target, file, "onlyoffice", &ctx).unwrap();
            let token = url::form_urlencoded::parse(form.as_bytes())
                .find(|(k, _)| k == "access_token")
                .unwrap()
                .1
                .into_owned();
            let grant = tokens
                .check(&token, file.as_str(), token::unix_now())
                .unwrap();
            assert_eq!(grant.read_only, read_only, "{query}");
        }
    }

    #[test]
    fn pages_without_a_valid_ticket_are_refused() {
        let tokens = keys();
        let public = Url::parse("https://office.example:8443/").unwrap();
        let target = target(&tokens, "http://n/browser/a/cool.html?");
        let ctx = ctx(&tokens, &public);
        let file = target.file.unwrap();
        let form = b"access_token=t";
        for query in ["WOPISrc=x", "WOPISrc=x&officeswitch_ticket=forged"] {
            let uri: Uri = format!("/browser/a/cool.html?{query}").parse().unwrap();
            let refused = page_form(&uri, form, &target, file, "collabora", &ctx).unwrap_err();
            assert!(matches!(refused, Answer::BadTicket(_)), "{refused:?}");
        }
        // A file token is no ticket.
        let token = tokens
            .mint(&Grant {
                kind: GrantKind::File,
                file_id: file.as_str().into(),
                org: "acme".into(),
                pool: "collabora".into(),
                url: "https://nc.example/wopi/files/1".into(),
                host_token: "t".into(),
                expires_at: token::unix_now() + 60,
                read_only: false,
            })
            .unwrap();
        let uri: Uri = format!("/browser/a/cool.html?{TICKET_PARAM}={token}")
            .parse()
            .unwrap();
        let refused = page_form(&uri, form, &target, file, "collabora", &ctx).unwrap_err();
        assert!(
            matches!(refused, Answer::BadTicket("wrong_kind")),
            "{refused:?}"
        );
    }
}
