//! Collabora's editor page, framed by the organisation's Nextcloud.
//!
//! coolwsd answers `cool.html` with a CSP whose `frame-ancestors` (and `img-src`, for
//! avatars) is `net.frame_ancestors` plus its own host plus the host of the `WOPISrc` the
//! page received; the page's script checks incoming postMessages against the same list
//! (`window.frameAncestors` in 22.05, `data-frame-ancestors` in 26.04). Behind officeswitch
//! that `WOPISrc` host is officeswitch, so the browser would refuse to show the editor
//! inside Nextcloud. officeswitch knows the organisation of every page it routes by its own
//! `WOPISrc`, so it adds that organisation's origins to both lists: no hoster has to list
//! every Nextcloud on every node.
//!
//! Only this page is read and rewritten, bounded ([`MAX_PAGE`]); file bodies stream.

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use url::Url;

use super::answer::{Answer, ProxyBody};

/// Largest page officeswitch rewrites (cool.html is 20-60 KiB).
pub const MAX_PAGE: usize = 2 * 1024 * 1024;

/// The directives whose source lists get the organisation's origins.
const FRAMING_DIRECTIVES: [&str; 2] = ["frame-ancestors", "img-src"];

/// Adds `origins` (the organisation's Nextcloud origins, `scheme://host[:port]`) to the
/// page's CSP framing directives and to its postMessage allow-list.
///
/// # Errors
/// 502 when the page is larger than [`MAX_PAGE`] or breaks off.
pub async fn admit_framing<B>(
    response: Response<B>,
    origins: &[String],
) -> Result<Response<ProxyBody>, Answer>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (mut parts, body) = response.into_parts();
    let html = Limited::new(body, MAX_PAGE)
        .collect()
        .await
        .map_err(|e| Answer::BadGateway(format!("reading the editor page: {e}")))?
        .to_bytes();
    let csp = parts
        .headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .map(|v| with_origins(v, origins));
    if let Some(value) = csp.and_then(|v| HeaderValue::from_str(&v).ok()) {
        parts.headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    // A page that is not UTF-8 is no cool.html: passed on as it came.
    let html = match std::str::from_utf8(&html) {
        Ok(text) => Bytes::from(with_frame_ancestors(text, origins)),
        Err(_) => html,
    };
    parts.headers.remove(header::CONTENT_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(html.len()));
    Ok(Response::from_parts(
        parts,
        Full::new(html).map_err(|never| match never {}).boxed(),
    ))
}

/// The CSP `policy` with `origins` added to the framing directives it has (a policy
/// without `frame-ancestors` allows any parent already).
pub fn with_origins(policy: &str, origins: &[String]) -> String {
    policy
        .split(';')
        .map(|directive| {
            let trimmed = directive.trim();
            let name = trimmed.split_ascii_whitespace().next().unwrap_or_default();
            if !FRAMING_DIRECTIVES
                .iter()
                .any(|d| d.eq_ignore_ascii_case(name))
                || trimmed.contains("'none'")
            {
                return directive.to_string();
            }
            let mut out = directive.trim_end().to_string();
            for origin in origins {
                if !trimmed.split_ascii_whitespace().any(|s| s == origin) {
                    out.push(' ');
                    out.push_str(origin);
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// The page with the organisation's hosts added to the list its script checks
/// postMessage origins against. That list holds `host[:port]` entries, URI-encoded and
/// space-separated; the script matches `(http|https)://<entry>`.
fn with_frame_ancestors(html: &str, origins: &[String]) -> String {
    let extra: String = origins
        .iter()
        .filter_map(|o| Url::parse(o).ok())
        .filter_map(|u| {
            let host = u.host_str()?;
            Some(match u.port() {
                Some(port) => format!("%20{host}:{port}"),
                None => format!("%20{host}"),
            })
        })
        .collect();
    if extra.is_empty() {
        return html.to_string();
    }
    // One copy of the page, grown in place.
    // 22.05: `window.frameAncestors = decodeURIComponent('<list>');`
    // 26.04: `data-frame-ancestors = "<list>"` (cool.html.m4 writes spaces around `=`).
    let mut out = html.to_string();
    let open = "window.frameAncestors = decodeURIComponent('";
    if let Some(start) = out.find(open).map(|i| i + open.len())
        && let Some(len) = out[start..].find('\'')
    {
        out.insert_str(start + len, &extra);
    }
    if let Some(end) = attribute_value_end(&out, "data-frame-ancestors") {
        out.insert_str(end, &extra);
    }
    out
}

/// Where the value of the first `name` attribute ends (the index of its closing quote),
/// whitespace around `=` and either quote allowed.
fn attribute_value_end(html: &str, name: &str) -> Option<usize> {
    let after_name = html.find(name)? + name.len();
    let rest = html[after_name..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value_start = html.len() - rest.len() + 1;
    html[value_start..].find(quote).map(|len| value_start + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NC: &str = "https://cloud.example.org";

    #[test]
    fn framing_directives_get_the_organisations_origins() {
        let policy = "default-src 'none'; img-src 'self' data: https://www.collaboraoffice.com/ office.example:*; frame-ancestors office.example:*";
        let out = with_origins(policy, &[NC.into(), "http://nc2.test:8080".into()]);
        assert!(
            out.ends_with(
                "frame-ancestors office.example:* https://cloud.example.org http://nc2.test:8080"
            ),
            "{out}"
        );
        assert!(
            out.contains("office.example:* https://cloud.example.org http://nc2.test:8080; frame"),
            "{out}"
        );
        assert!(out.starts_with("default-src 'none';"), "{out}");
        // Idempotent, and 'none' is never widened.
        assert_eq!(with_origins(&out, &[NC.into()]), out);
        assert_eq!(
            with_origins("frame-ancestors 'none'", &[NC.into()]),
            "frame-ancestors 'none'"
        );
    }

    #[test]
    fn the_pages_postmessage_list_gets_their_hosts() {
        let old =
            "<script>window.frameAncestors = decodeURIComponent('%20office.example:*');</script>";
        let out = with_frame_ancestors(old, &[NC.into(), "http://nc2.test:8080".into()]);
        assert!(
            out.contains(
                "decodeURIComponent('%20office.example:*%20cloud.example.org%20nc2.test:8080')"
            ),
            "{out}"
        );
        let new =
            r#"<div id="initial-variables" data-frame-ancestors="%20office.example:*" data-x="1">"#;
        let out = with_frame_ancestors(new, &[NC.into()]);
        assert!(
            out.contains(r#"data-frame-ancestors="%20office.example:*%20cloud.example.org""#),
            "{out}"
        );
        // As cool.html.m4 of 26.04 writes it: spaces around `=`, `*` encoded.
        let real = "<input type=\"hidden\" id=\"initial-variables\"\n      \
                    data-frame-ancestors = \"%20127.0.0.1:%2A%20office.example:%2A\"\n      \
                    data-geolocation-setup = \"\"";
        let out = with_frame_ancestors(real, &[NC.into(), "http://nc2.test:8080".into()]);
        assert!(
            out.contains(
                "data-frame-ancestors = \"%20127.0.0.1:%2A%20office.example:%2A\
                 %20cloud.example.org%20nc2.test:8080\"\n"
            ),
            "{out}"
        );
        assert!(out.ends_with("data-geolocation-setup = \"\""), "{out}");
        // No such attribute, or one without a value: the page is left alone.
        for page in ["<p>data-frame-ancestors</p>", "<i data-frame-ancestors>"] {
            assert_eq!(with_frame_ancestors(page, &[NC.into()]), page);
        }
    }
}
