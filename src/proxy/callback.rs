//! WOPI callbacks: officeswitch is the WOPI host towards editors and the editor towards
//! the organisation's Nextcloud.
//!
//! A call to `/wopi/files/{id}[/contents]`, `/wopi/links/{id}[/<name>]` or
//! `/wopi/settings/{id}[/upload]` ([`super::settings`]) runs, in
//! [`super::Proxy::handle`]'s order:
//! 1. [`admit`]: the minted token must verify, be unexpired and bound to `{id}` (401
//!    otherwise); its organisation must still exist and own the host URL it carries (403);
//!    the editor's proof must verify against the keys in its pool's live discovery, as
//!    the pool's [`ProofPolicy`] says (500, as the WOPI specification asks); links and
//!    settings are fetched without proofs, so their proof is checked only when present.
//!    Nothing is sent to the host before all three hold.
//! 2. [`host_request`]: the request moves onto the host URL with the host's own token,
//!    loses the editor's proof, cookies and hop-by-hop headers, and is signed with
//!    officeswitch's key for exactly the URL sent.
//! 3. forward (streamed, like editor traffic; the host gets `wopi.host_timeout` to answer,
//!    and a call that finds the host's port closed is held and sent again: [`super::hold`]);
//!    around 2 and 3 the pool's [`super::dialect`] may refuse the call, rename headers and
//!    reshape the answer, and an ONLYOFFICE save the host would refuse as out of date is
//!    sent as a new file instead ([`super::conflict`]). 2 and 3 are [`Host::send`].
//! 4. [`host_response`]: redirects and cookies are dropped; CheckFileInfo and
//!    PutRelativeFile JSON goes through [`super::translate`], a settings configuration
//!    through [`super::settings::config`]; every other body streams.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Limited};
use percent_encoding::percent_decode_str;
use url::Url;

use super::answer::Answer;
use super::classify::{WopiCall, WopiEndpoint, query_param};
use super::hold;
use super::rewrite::strip_hop_by_hop;
use crate::config::{PoolConfig, ProofPolicy};
use crate::discovery::ProofKeyPair;
use crate::discovery::service::Catalog;
use crate::rules::RuleSet;
use crate::upstream::{self, UpstreamBody, UpstreamClient};
use crate::wopi::proof::{self, ProofHeaders, Signer};
use crate::wopi::token::{Grant, GrantKind, TokenKeys, unix_now};

/// Proof headers: the editor's are checked and dropped, officeswitch's replace them.
const PROOF_HEADERS: [&str; 3] = ["x-wopi-proof", "x-wopi-proofold", "x-wopi-timestamp"];

/// Request headers never passed to the host: they describe the editor's connection to
/// officeswitch, not the WOPI call.
const NOT_FOR_HOST: [HeaderName; 6] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
];

/// What [`admit`] reads.
pub struct AdmitContext<'a> {
    /// Token keys.
    pub tokens: &'a TokenKeys,
    /// Rules in force.
    pub rules: &'a RuleSet,
    /// Discoveries in force: the editors' proof keys.
    pub catalog: &'a Catalog,
    /// Configured pools: proof policy per pool.
    pub pools: &'a [PoolConfig],
    /// officeswitch's public URL (origin, ending in `/`): the URL editors signed.
    pub public_url: &'a Url,
}

/// Checks an editor's WOPI call and returns the grant its token stands for.
///
/// # Errors
/// 401 for a missing, forged, expired or other-file token (or a link token on a file
/// endpoint and the reverse; settings endpoints take settings and file tokens); 403 when
/// the rules no longer allow the grant's
/// organisation or host; 500 for a refused proof.
pub fn admit<B>(
    call: &WopiCall<'_>,
    request: &Request<B>,
    ctx: &AdmitContext<'_>,
) -> Result<Grant, Answer> {
    let query = request.uri().query();
    let raw_token = query
        .and_then(|q| query_param(q, "access_token"))
        .map(|t| percent_decode_str(t).decode_utf8_lossy().into_owned())
        .or_else(|| bearer(request.headers()))
        .ok_or_else(|| refused("token", "missing", Answer::BadToken("missing")))?;
    let grant = ctx
        .tokens
        .check(&raw_token, call.file_id, unix_now())
        .map_err(|e| refused("token", e.reason(), Answer::BadToken(e.reason())))?;
    // An open ticket opens nothing; a link token only its link; a file token only its file
    // and its settings (the editor's settings dialog sends the document's token); a
    // settings token only its settings endpoint.
    let wanted: &[GrantKind] = match call.endpoint {
        WopiEndpoint::Link => &[GrantKind::Link],
        WopiEndpoint::File | WopiEndpoint::Contents => &[GrantKind::File],
        WopiEndpoint::Settings | WopiEndpoint::SettingsUpload => {
            &[GrantKind::Settings, GrantKind::File]
        }
    };
    if !wanted.contains(&grant.kind) {
        return Err(refused(
            "token",
            "wrong_kind",
            Answer::BadToken("wrong_kind"),
        ));
    }
    let org = ctx.rules.organisation_named(&grant.org).ok_or_else(|| {
        refused(
            "rules",
            "organisation_gone",
            Answer::HostNotAllowed(format!("organisation {} is gone", grant.org)),
        )
    })?;
    let owns_host = Url::parse(&grant.url)
        .ok()
        .is_some_and(|u| ctx.rules.organisation_for(&u).map(|o| o.name()) == Some(org.name()));
    if !owns_host {
        return Err(refused(
            "rules",
            "host_not_owned",
            Answer::HostNotAllowed(format!(
                "organisation {} no longer owns the file's host",
                grant.org
            )),
        ));
    }
    check_proof(call, request, &raw_token, &grant, ctx)?;
    Ok(grant)
}

/// Applies the pool's proof policy to the editor's proof of this call.
fn check_proof<B>(
    call: &WopiCall<'_>,
    request: &Request<B>,
    token: &str,
    grant: &Grant,
    ctx: &AdmitContext<'_>,
) -> Result<(), Answer> {
    let policy = ctx
        .pools
        .iter()
        .find(|p| p.name == grant.pool)
        .map_or(ProofPolicy::Auto, |p| p.proof);
    let keys = pool_keys(ctx.catalog, &grant.pool);
    let headers = ProofHeaders::from_headers(request.headers());
    if headers.is_absent() {
        // Editors fetch host-provided URLs (TemplateSource, FileUrl, settings) without a
        // proof, as the WOPI specification says they may; the link token guards them.
        // coolwsd fetches CheckFileInfo's settings likewise (its settings page's calls
        // are signed); the settings token guards them.
        let settings = matches!(
            call.endpoint,
            WopiEndpoint::Settings | WopiEndpoint::SettingsUpload
        );
        if grant.kind == GrantKind::Link || settings {
            return Ok(());
        }
        return match policy {
            ProofPolicy::Optional => Ok(()),
            ProofPolicy::Auto if keys.is_empty() => Ok(()),
            ProofPolicy::Auto | ProofPolicy::Required => {
                let missing = proof::ProofError::Missing;
                Err(refused(
                    "proof",
                    missing.reason(),
                    Answer::BadProof(missing.to_string()),
                ))
            }
        };
    }
    if keys.is_empty() {
        // Signed, but the pool publishes no key to check it with.
        return match policy {
            ProofPolicy::Required => Err(refused(
                "proof",
                "no_key",
                Answer::BadProof(format!("pool {} publishes no proof key", grant.pool)),
            )),
            ProofPolicy::Auto | ProofPolicy::Optional => Ok(()),
        };
    }
    let signed_url = format!(
        "{}{}",
        ctx.public_url.as_str().trim_end_matches('/'),
        request.uri().path_and_query().map_or("/", |pq| pq.as_str())
    );
    proof::verify(&headers, token, &signed_url, &keys, proof::ticks_now())
        .map(|_| ())
        .map_err(|e| refused("proof", e.reason(), Answer::BadProof(e.to_string())))
}

/// Counts a refusal by the check that made it and why, and passes its answer on.
fn refused(check: &'static str, reason: &'static str, answer: Answer) -> Answer {
    crate::metrics::global().rejection(check, reason);
    answer
}

/// The proof keys of every node of `pool` that has a discovery (nodes may differ).
fn pool_keys<'a>(catalog: &'a Catalog, pool: &str) -> Vec<&'a ProofKeyPair> {
    let Some(state) = catalog.pools.iter().find(|p| p.name == pool) else {
        return Vec::new();
    };
    let mut keys: Vec<&ProofKeyPair> = Vec::new();
    let sources = state.nodes.iter().flatten().chain(state.source.iter());
    for pair in sources.filter_map(|s| s.discovery.proof_key.as_ref()) {
        if !keys.contains(&pair) {
            keys.push(pair);
        }
    }
    keys
}

/// The request to send to the host for an admitted call: its URL (the host's, with the
/// host's token), its headers (cleaned, `Host` set, signed by officeswitch).
///
/// # Errors
/// 502 when the host URL cannot be used or signing fails; 400 for a document's settings
/// when its host has no settings endpoint.
pub fn host_request<B>(
    mut request: Request<B>,
    call: &WopiCall<'_>,
    grant: &Grant,
    signer: &Signer,
) -> Result<Request<B>, Answer> {
    let url = host_url(call.endpoint, grant, request.uri().query())?;
    let uri: Uri = url
        .parse()
        .map_err(|_| Answer::HostFailed("the host URL is not a request URI".into()))?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .ok_or_else(|| Answer::HostFailed("the host URL has no host".into()))?;
    let signed_token = uri
        .query()
        .and_then(|q| query_param(q, "access_token"))
        .map(|t| percent_decode_str(t).decode_utf8_lossy().into_owned())
        .unwrap_or_default();
    let signed = signer
        .sign(&signed_token, &url, proof::ticks_now())
        .map_err(|e| Answer::HostFailed(format!("cannot sign: {e}")))?;
    let json_expected = matches!(call.endpoint, WopiEndpoint::File | WopiEndpoint::Settings);
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    strip_hop_by_hop(headers);
    for name in PROOF_HEADERS {
        headers.remove(name);
    }
    for name in &NOT_FOR_HOST {
        headers.remove(name);
    }
    if json_expected {
        // CheckFileInfo, PutRelativeFile and settings bodies are rewritten: ask for them
        // plain.
        headers.remove(header::ACCEPT_ENCODING);
    }
    if let Ok(host) = HeaderValue::from_str(&authority) {
        headers.insert(header::HOST, host);
    }
    signed.apply(headers);
    Ok(request)
}

/// The host of one admitted call, and the one way calls reach it: every request sent for
/// the call (the call itself, and the calls [`super::conflict`] makes first) is signed by
/// [`host_request`], held through a host restart ([`hold`]) and cleaned by
/// [`host_response`].
pub struct Host<'a> {
    /// The pooled client.
    pub client: &'a UpstreamClient,
    /// officeswitch's proof signer.
    pub signer: &'a Signer,
    /// The call's grant: the host URL and token.
    pub grant: &'a Grant,
    /// `wopi.host_timeout`.
    pub timeout: Duration,
    /// `wopi.max_json_bytes`.
    pub max_json_bytes: usize,
}

impl Host<'_> {
    /// Sends `request` as `call` of the grant's file.
    ///
    /// # Errors
    /// As [`host_request`]; 504 when the host does not answer within `timeout`, 502 when
    /// it failed otherwise.
    pub async fn send(
        &self,
        call: &WopiCall<'_>,
        request: Request<UpstreamBody>,
    ) -> Result<Response<upstream::Body>, Answer> {
        let request = host_request(request, call, self.grant, self.signer)?;
        let response = hold::send(self.client, request, self.timeout)
            .await
            .map_err(|answer| match answer {
                Answer::GatewayTimeout => Answer::HostTimeout,
                Answer::BadGateway(why) => Answer::HostFailed(why),
                other => other,
            })?;
        Ok(host_response(response))
    }

    /// The JSON body of a host answer, read whole up to `max_json_bytes`.
    ///
    /// # Errors
    /// 502 when it breaks off, is larger or is not JSON.
    pub async fn json(&self, body: upstream::Body) -> Result<serde_json::Value, Answer> {
        let bytes = Limited::new(body, self.max_json_bytes)
            .collect()
            .await
            .map_err(|e| Answer::HostFailed(format!("reading the host's JSON: {e}")))?
            .to_bytes();
        serde_json::from_slice(&bytes)
            .map_err(|_| Answer::HostFailed("the host's answer is not JSON".into()))
    }
}

/// The host URL of a call: a file's WOPISrc (plus `/contents`) with the host's token, a
/// link's URL as the host gave it, or a settings endpoint (plus `/upload`) with the host's
/// token; the editor's other query parameters follow.
///
/// # Errors
/// 400 for a document's settings when its host has no settings endpoint.
fn host_url(
    endpoint: WopiEndpoint,
    grant: &Grant,
    editor_query: Option<&str>,
) -> Result<String, Answer> {
    let mut url = match endpoint {
        WopiEndpoint::Settings | WopiEndpoint::SettingsUpload => {
            super::settings::host_endpoint(endpoint, grant)?
        }
        WopiEndpoint::Contents => format!("{}/contents", grant.url),
        WopiEndpoint::File | WopiEndpoint::Link => grant.url.clone(),
    };
    let mut separator = if url.contains('?') { '&' } else { '?' };
    if matches!(grant.kind, GrantKind::File | GrantKind::Settings) {
        url.push(separator);
        url.push_str("access_token=");
        url.push_str(&super::translate::encode(&grant.host_token));
        separator = '&';
    }
    // The host's own parameters win: PHP keeps the last of two equal names, and reads `.`
    // and ` ` in a name as `_`, so an editor (or a `/wopi/links` holder) appending
    // `access.token=` or one of the host's names would replace the host's value.
    let host_names: Vec<String> = url
        .split_once('?')
        .map(|(_, query)| query)
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(php_name)
        .chain(std::iter::once("access_token".to_string()))
        .collect();
    let others = editor_query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = php_name(pair);
            !host_names
                .iter()
                .any(|host| host.eq_ignore_ascii_case(&name))
        });
    for pair in others {
        url.push(separator);
        url.push_str(pair);
        separator = '&';
    }
    Ok(url)
}

/// The name of a query pair as PHP reads it: percent-decoded, `.` and ` ` as `_`, and only
/// up to a `[` (`a[b]=` sets `a`).
fn php_name(pair: &str) -> String {
    let raw = pair.split_once('=').map_or(pair, |(name, _)| name);
    let decoded = percent_encoding::percent_decode_str(&raw.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned();
    let name = decoded.split('[').next().unwrap_or_default();
    name.replace(['.', ' '], "_")
}

/// What to do with the host's response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostBody {
    /// Stream it as it comes.
    Stream,
    /// A CheckFileInfo JSON to rewrite.
    CheckFileInfo,
    /// A PutRelativeFile (or RenameFile) JSON to rewrite: its `Url` names a file.
    PutRelativeFile,
    /// A settings configuration JSON to rewrite: its files' `uri`s.
    SettingsConfig,
}

/// Which responses carry URLs the editor would call: successful CheckFileInfo (`GET` on
/// a file), PutRelativeFile and RenameFile (`POST` with `X-WOPI-Override: PUT_RELATIVE`
/// or `RENAME_FILE`), the settings configuration (`GET` on settings).
pub fn host_body<B>(call: &WopiCall<'_>, request: &Request<B>) -> HostBody {
    if call.endpoint == WopiEndpoint::Settings && request.method() == Method::GET {
        return HostBody::SettingsConfig;
    }
    if call.endpoint != WopiEndpoint::File {
        return HostBody::Stream;
    }
    let method = request.method();
    let is_override = |name: &str| {
        request
            .headers()
            .get("x-wopi-override")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(name))
    };
    if method == Method::GET {
        HostBody::CheckFileInfo
    } else if method == Method::POST && (is_override("PUT_RELATIVE") || is_override("RENAME_FILE"))
    {
        // richdocuments answers a rename with the file's `Url` too, carrying a new token.
        HostBody::PutRelativeFile
    } else {
        HostBody::Stream
    }
}

/// Cleans the host's response headers: hop-by-hop headers, redirects (never followed,
/// and an editor holding only officeswitch's token could not use them) and cookies go.
pub fn host_response<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    strip_hop_by_hop(headers);
    for name in [
        header::LOCATION,
        header::CONTENT_LOCATION,
        header::SET_COOKIE,
    ] {
        headers.remove(name);
    }
    response
}

/// The `Authorization: Bearer` token, which WOPI clients may send besides the query.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(kind: GrantKind, url: &str) -> Grant {
        Grant {
            kind,
            file_id: "F".repeat(32),
            org: "acme".into(),
            pool: "collabora".into(),
            url: url.into(),
            host_token: "host tok/+".into(),
            expires_at: 0,
            read_only: false,
        }
    }

    #[test]
    fn host_urls_carry_the_hosts_token_and_the_editors_other_parameters() {
        let file = grant(
            GrantKind::File,
            "https://nc/index.php/apps/richdocuments/wopi/files/1_oc",
        );
        assert_eq!(
            host_url(WopiEndpoint::File, &file, Some("access_token=minted")).unwrap(),
            "https://nc/index.php/apps/richdocuments/wopi/files/1_oc?access_token=host%20tok%2F%2B"
        );
        assert_eq!(
            host_url(WopiEndpoint::Contents, &file, Some("access_token=m&x=1")).unwrap(),
            "https://nc/index.php/apps/richdocuments/wopi/files/1_oc/contents?access_token=host%20tok%2F%2B&x=1"
        );
        // The editor's settings dialog: the settings endpoint beside the document.
        assert_eq!(
            host_url(
                WopiEndpoint::Settings,
                &file,
                Some("access_token=m&fileId=-1&type=userconfig")
            )
            .unwrap(),
            "https://nc/index.php/apps/richdocuments/wopi/settings?access_token=host%20tok%2F%2B&fileId=-1&type=userconfig"
        );
        let settings = Grant {
            kind: GrantKind::Settings,
            url: "https://nc/index.php/apps/richdocuments/wopi/settings".into(),
            ..file.clone()
        };
        assert_eq!(
            host_url(
                WopiEndpoint::SettingsUpload,
                &settings,
                Some("fileId=%2Fsettings%2Fsystemconfig%2Fxcu%2Fa.xcu&access_token=m")
            )
            .unwrap(),
            "https://nc/index.php/apps/richdocuments/wopi/settings/upload?access_token=host%20tok%2F%2B&fileId=%2Fsettings%2Fsystemconfig%2Fxcu%2Fa.xcu"
        );
        let link = grant(
            GrantKind::Link,
            "https://nc/wopi/settings?type=userconfig&access_token=s",
        );
        assert_eq!(
            host_url(WopiEndpoint::Link, &link, Some("ACCESS_TOKEN=m")).unwrap(),
            "https://nc/wopi/settings?type=userconfig&access_token=s"
        );
        // Appended names PHP would read as the host's own: dropped (issue 13 item 6).
        assert_eq!(
            host_url(
                WopiEndpoint::Link,
                &link,
                Some("access.token=x&access%5Ftoken=y&type=systemconfig&type[]=z&access+token=w&keep=1")
            )
            .unwrap(),
            "https://nc/wopi/settings?type=userconfig&access_token=s&keep=1"
        );
    }

    #[test]
    fn bearer_tokens_are_read() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&headers).as_deref(), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }
}
