//! HTTP client helpers for tests (plain HTTP/1.1, bodies collected: test payloads only).

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A collected response.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body as text (lossy).
    pub body: String,
}

impl Reply {
    /// The stand-in node that produced this response (`X-Standin-Node`), if any.
    pub fn node(&self) -> Option<&str> {
        self.headers
            .get("x-standin-node")
            .and_then(|v| v.to_str().ok())
    }
}

/// GETs `url`; returns status and body as text. Panics on transport errors.
pub async fn get(url: &str) -> (StatusCode, String) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .get(url.parse().expect("valid URL"))
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Sends one request and returns status, headers and the body's bytes (binary bodies,
/// such as converted documents); panics on transport errors.
pub async fn send_bytes(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (StatusCode, HeaderMap, Bytes) {
    send_bytes_from(None, method, url, headers, body).await
}

/// [`send_bytes`] from the loopback address `local` (`127.0.0.2`, ...) when given, so a
/// test can be a second machine (a Nextcloud) in the proxy's eyes.
pub async fn send_bytes_from(
    local: Option<std::net::IpAddr>,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_local_address(local);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("valid request");
    let response = client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, body)
}

/// Sends one request, the body as text; panics on transport errors.
pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let (status, headers, body) = send_bytes(method, url, headers, body).await;
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// POSTs an `application/x-www-form-urlencoded` form, as a browser submits the open form:
/// a `307`/`308` (officeswitch's step to the editor page) is followed with the same form,
/// as browsers do; the final reply is returned. The location's path and query are sent to
/// the server `url` names: tests address instances directly, and fleet tests share one
/// `public_url` between them (a sticky load balancer would do the same).
/// [`post_form_once`] stops at the first reply.
///
/// A bridge page (officeswitch's step 1 for ONLYOFFICE pools) is followed as the
/// browser's script does: its form `officeswitch-open` is posted, fields as the page
/// wrote them, to its action.
pub async fn post_form(url: &str, form: &str) -> Reply {
    let first = post_form_once(url, form).await;
    let (location, form) = if matches!(first.status.as_u16(), 307 | 308) {
        let location = first
            .headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("a redirect names its location");
        (location.to_string(), form.to_string())
    } else if let Some(bridged) = bridge_form(&first.body) {
        bridged
    } else {
        return first;
    };
    let location = url::Url::parse(url)
        .and_then(|base| base.join(&location))
        .expect("a usable location");
    let mut next = url::Url::parse(url).expect("a URL");
    next.set_path(location.path());
    next.set_query(location.query());
    post_form_once(next.as_str(), &form).await
}

/// The action and the encoded fields of a bridge page's form, when `html` is one.
pub fn bridge_form(html: &str) -> Option<(String, String)> {
    let start = html.find("<form id=\"officeswitch-open\"")?;
    let form = &html[start..start + html[start..].find("</form>")?];
    let attribute = |text: &str, name: &str| -> Option<String> {
        let at = text.find(&format!("{name}=\""))? + name.len() + 2;
        let value = &text[at..at + text[at..].find('"')?];
        Some(
            value
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    };
    let action = attribute(form, "action")?;
    let mut fields = url::form_urlencoded::Serializer::new(String::new());
    for input in form.split("<input").skip(1) {
        fields.append_pair(&attribute(input, "name")?, &attribute(input, "value")?);
    }
    Some((action, fields.finish()))
}

/// POSTs an `application/x-www-form-urlencoded` form once, following nothing.
pub async fn post_form_once(url: &str, form: &str) -> Reply {
    send(
        Method::POST,
        url,
        &[("content-type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .await
}

/// Percent-encodes `s` for a query value (as JavaScript's encodeURIComponent).
pub fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A client WebSocket as [`websocket`] returns it.
pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `url` as a browser does from a page on `origin`: with
/// `Origin: <origin>` (coolwsd refuses an upgrade without one, or from another origin than
/// its own, with 403).
///
/// # Errors
/// The handshake's error (a refused upgrade is `Http` with the response).
pub async fn websocket(
    url: &str,
    origin: &str,
) -> Result<
    (
        WebSocket,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = url.into_client_request()?;
    let origin = http::HeaderValue::from_str(origin).expect("an origin is a header value");
    request.headers_mut().insert(http::header::ORIGIN, origin);
    tokio_tungstenite::connect_async(request).await
}
