//! Phase 3: turn the client's request into the node's, and the node's response into the
//! client's.
//!
//! Requests: the URI moves onto the chosen node (for opens: the suite's real `urlsrc`
//! with its placeholders filled as the host asked), `Host` becomes the node's,
//! hop-by-hop headers go, and `X-Forwarded-For/-Proto/-Host` plus `Forwarded` tell the
//! editor to build every URL on officeswitch's `public_url`. Responses: hop-by-hop
//! headers go and `Location`-style headers that name the node are moved onto
//! `public_url`, so no redirect sends a browser straight to a node. Bodies are never
//! touched: they stream.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};
use url::Url;

use super::answer::Answer;
use super::classify::query_param;
use crate::discovery::announced;
use crate::upstream::node_address::NodeAddress;

/// officeswitch's public origin as the forwarding headers spell it, rendered once at start
/// instead of on every request.
pub struct PublicOrigin {
    /// `public_url`.
    url: Url,
    /// `X-Forwarded-Proto`.
    proto: HeaderValue,
    /// `X-Forwarded-Host`: host and port as clients wrote them.
    host: HeaderValue,
    /// The `Forwarded` element after `for=...`: `;proto=https;host="office.example.org"`.
    forwarded_tail: String,
}

impl PublicOrigin {
    /// The forwarding headers for `public_url`.
    pub fn new(public_url: &Url) -> PublicOrigin {
        // The same host[:port] discovery fetches send ([`announced::forwarding_headers`]).
        let host = announced::host_port(public_url);
        let proto = public_url.scheme();
        PublicOrigin {
            url: public_url.clone(),
            proto: HeaderValue::from_str(proto).unwrap_or(HeaderValue::from_static("http")),
            // A `Url`'s host and port are valid header text.
            host: HeaderValue::from_str(&host).unwrap_or(HeaderValue::from_static("")),
            forwarded_tail: format!(";proto={proto};host=\"{host}\""),
        }
    }

    /// `public_url`.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

/// Rewrites `request` for `node`: `local_path` (the request's path below any service root,
/// see [`super::service_root`]) goes below the node's base URL, in origin form (the
/// client sends it to the node's pool: [`crate::upstream::Destination::Node`]). `upgrade`
/// keeps `Connection: upgrade` and `Upgrade`.
///
/// # Errors
/// 400 when the path or query cannot be sent on (bytes a URI may not hold).
pub fn request<B>(
    mut request: Request<B>,
    local_path: &str,
    node: &NodeAddress,
    public: &PublicOrigin,
    client: &Client,
    upgrade: bool,
) -> Result<Request<B>, Answer> {
    // The query is left out of messages: WOPI and signed cache URLs carry secrets there.
    let uri = node
        .origin_form(local_path, request.uri())
        .map_err(|_| Answer::BadRequest("the request's path cannot be sent on"))?;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    let upgrade_to = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(headers);
    if upgrade && let Some(protocol) = upgrade_to {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    headers.insert(header::HOST, node.host().clone());
    forwarded(headers, public, client);
    Ok(request)
}

/// Rewrites a node's response for the client.
pub fn response<B>(mut response: Response<B>, node: &Url, public: &PublicOrigin) -> Response<B> {
    let switching = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    let upgrade_to = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(headers);
    if switching && let Some(protocol) = upgrade_to {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let moved = headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| onto_public(v, node, &public.url))
            .and_then(|v| HeaderValue::from_str(&v).ok());
        if let Some(value) = moved {
            headers.insert(name, value);
        }
    }
    response
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names and values a message has, and no allocation when it has
    // none of them (most messages).
    let mut unwanted = Vec::new();
    for (name, value) in headers.iter() {
        if !is_hop_by_hop(name.as_str()) {
            continue;
        }
        unwanted.push(name.clone());
        if *name != header::CONNECTION {
            continue;
        }
        // Browsers send `Connection: keep-alive` (or `upgrade`): names removed anyway, so
        // the common request adds nothing here.
        let Ok(value) = value.to_str() else { continue };
        for named in value.split(',').map(str::trim) {
            if !["keep-alive", "close", "upgrade"]
                .iter()
                .any(|known| named.eq_ignore_ascii_case(known))
                && let Ok(named) = HeaderName::from_bytes(named.as_bytes())
            {
                unwanted.push(named);
            }
        }
    }
    for name in &unwanted {
        headers.remove(name);
    }
}

/// The names in `headers` that `is_unwanted`: one pass over the names a message has, and
/// no allocation when it has none of them (most messages).
fn unwanted(headers: &HeaderMap, is_unwanted: fn(&str) -> bool) -> Vec<HeaderName> {
    headers
        .keys()
        .filter(|name| is_unwanted(name.as_str()))
        .cloned()
        .collect()
}

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), and
/// `Upgrade`, which [`request`] and [`response`] put back only on an upgrade.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Forwarding headers a client may send that editors or their web servers read as the
/// address or path they are served under: officeswitch names those itself, or not at all.
fn is_client_forwarding(name: &str) -> bool {
    matches!(
        name,
        "x-real-ip"
            | "x-forwarded-prefix"
            | "x-forwarded-port"
            | "x-forwarded-server"
            | "x-forwarded-ssl"
            | "x-original-url"
            | "x-rewrite-url"
            | "proxyprefix"
    )
}

/// Adds `X-Forwarded-For/-Proto/-Host` and `Forwarded` naming the client and
/// officeswitch's public origin, so editors build URLs back through officeswitch.
/// `Forwarded` is officeswitch's element alone (a client's own elements could name
/// another host to an editor that reads the first); `X-Forwarded-For` keeps its chain
/// (editors only log it); [`is_client_forwarding`] headers go.
fn forwarded(headers: &mut HeaderMap, public: &PublicOrigin, client: &Client) {
    for name in unwanted(headers, is_client_forwarding) {
        headers.remove(name);
    }
    let chain = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) => HeaderValue::try_from(format!("{prior}, {}", client.ip_text())).ok(),
        None => Some(client.ip.clone()),
    };
    // The client address and earlier proxies' values are header text already.
    if let Some(chain) = chain {
        headers.insert(X_FORWARDED_FOR, chain);
    }
    if let Some(element) = client.element.clone() {
        headers.insert(header::FORWARDED, element);
    }
    headers.insert(X_FORWARDED_PROTO, public.proto.clone());
    headers.insert(X_FORWARDED_HOST, public.host.clone());
}

/// `X-Forwarded-For`.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// A client connection's address, with the forwarding values that name it rendered once
/// per connection rather than per request.
#[derive(Debug, Clone)]
pub struct Client {
    /// The IP address as `X-Forwarded-For` writes it.
    ip: HeaderValue,
    /// The whole `Forwarded` element for `public`, when it could be rendered.
    element: Option<HeaderValue>,
}

impl Client {
    /// The client at `addr`, reaching officeswitch at `public`.
    pub fn new(addr: SocketAddr, public: &PublicOrigin) -> Client {
        let ip = addr.ip().to_string();
        let element = if addr.is_ipv6() {
            format!("for=\"[{ip}]\"{}", public.forwarded_tail)
        } else {
            format!("for={ip}{}", public.forwarded_tail)
        };
        Client {
            // An IP address is header text.
            ip: HeaderValue::try_from(ip).unwrap_or(HeaderValue::from_static("unknown")),
            element: HeaderValue::try_from(element).ok(),
        }
    }

    fn ip_text(&self) -> &str {
        self.ip.to_str().unwrap_or("unknown")
    }
}

/// The open request's URL on the node: the suite's `urlsrc` with its `<name=PLACEHOLDER&>`
/// blocks filled from the host's query (`lang`) or dropped, followed by the host's own
/// query (`WOPISrc=...&lang=...`, which richdocuments appends to every `urlsrc`).
pub(super) fn open_url(urlsrc: &str, host_query: Option<&str>) -> String {
    let (base, template) = urlsrc.split_once('?').unwrap_or((urlsrc, ""));
    let lang = host_query.and_then(|q| query_param(q, "lang"));
    let mut params: Vec<String> = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        let (literal, after) = match rest.find('<') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        params.extend(
            literal
                .split('&')
                .filter(|p| !p.is_empty())
                .map(String::from),
        );
        rest = after;
        if let Some(block) = rest.strip_prefix('<') {
            let (inner, after) = block.split_once('>').unwrap_or((block, ""));
            if let Some(param) = fill_placeholder(inner.trim_end_matches('&'), lang) {
                params.push(param);
            }
            rest = after;
        }
    }
    params.extend(
        host_query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(String::from),
    );
    format!("{base}?{}", params.join("&"))
}

/// `name=PLACEHOLDER` -> `name=value` for the placeholders the host's query answers.
/// WOPI_SOURCE is dropped: the host's own `WOPISrc` follows.
fn fill_placeholder(block: &str, lang: Option<&str>) -> Option<String> {
    let (name, placeholder) = block.split_once('=')?;
    let value = match placeholder {
        "UI_LLCC" | "DC_LLCC" => lang?,
        _ => return None,
    };
    Some(format!("{name}={value}"))
}

/// `value` (a URL naming `node`) moved onto `public_url`; `None` if it names another host.
fn onto_public(value: &str, node: &Url, public_url: &Url) -> Option<String> {
    let url = Url::parse(value).ok()?;
    if url.origin() != node.origin() {
        return None;
    }
    let path = url.path();
    let rest = path
        .strip_prefix(node.path())
        .unwrap_or(path.trim_start_matches('/'));
    let mut out = format!("{public_url}{rest}");
    if let Some(q) = url.query() {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OO: &str = "http://10.0.0.2:8000/hosting/wopi/word/edit?<rs=DC_LLCC&><dchat=DISABLE_CHAT&><embed=EMBEDDED&><fs=FULLSCREEN&><hid=HOST_SESSION_ID&><rec=RECORDING&><sc=SESSION_CONTEXT&><thm=THEME_ID&><ui=UI_LLCC&><wopisrc=WOPI_SOURCE&>&";

    #[test]
    fn onlyoffice_placeholders_are_filled_or_dropped() {
        let url = open_url(
            OO,
            Some("WOPISrc=https%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1&lang=de"),
        );
        assert_eq!(
            url,
            "http://10.0.0.2:8000/hosting/wopi/word/edit?rs=de&ui=de&WOPISrc=https%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1&lang=de"
        );
    }

    #[test]
    fn collabora_urlsrc_gets_the_host_query_appended() {
        let url = open_url(
            "http://n:9980/browser/61cf2b4/cool.html?",
            Some("WOPISrc=x&lang=en&closebutton=1"),
        );
        assert_eq!(
            url,
            "http://n:9980/browser/61cf2b4/cool.html?WOPISrc=x&lang=en&closebutton=1"
        );
        // Old OnlyOffice with `?&`, and no lang: placeholders dropped, no empty params.
        let old = open_url(
            "http://n/hosting/wopi/cell/view?&<ui=UI_LLCC&>&",
            Some("WOPISrc=y"),
        );
        assert_eq!(old, "http://n/hosting/wopi/cell/view?WOPISrc=y");
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-wopi-override", HeaderValue::from_static("PUT"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-wopi-override"));
    }

    #[test]
    fn forwarded_headers_name_the_public_origin_and_extend_the_chain() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        // What a client sends to steer an editor's URLs elsewhere.
        h.insert(
            "forwarded",
            HeaderValue::from_static("host=evil.example;proto=http"),
        );
        h.insert("x-forwarded-prefix", HeaderValue::from_static("/evil"));
        h.insert("x-real-ip", HeaderValue::from_static("10.0.0.1"));
        h.insert(
            "proxyprefix",
            HeaderValue::from_static("http://evil.example/"),
        );
        let public = PublicOrigin::new(&Url::parse("https://office.example.org").unwrap());
        let client = Client::new("[2001:db8::1]:5000".parse().unwrap(), &public);
        forwarded(&mut h, &public, &client);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 2001:db8::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "office.example.org");
        assert_eq!(
            h["forwarded"],
            "for=\"[2001:db8::1]\";proto=https;host=\"office.example.org\""
        );
        for gone in ["x-forwarded-prefix", "x-real-ip", "proxyprefix"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
    }

    #[test]
    fn redirects_to_the_node_move_onto_public_url() {
        let node = Url::parse("http://10.0.0.2:9980/prefix/").unwrap();
        let public = Url::parse("https://office.example.org/").unwrap();
        assert_eq!(
            onto_public(
                "http://10.0.0.2:9980/prefix/browser/x/cool.html?a=1",
                &node,
                &public
            )
            .as_deref(),
            Some("https://office.example.org/browser/x/cool.html?a=1")
        );
        assert_eq!(
            onto_public("https://elsewhere.example/x", &node, &public),
            None
        );
    }
}
