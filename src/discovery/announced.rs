//! Does a node announce officeswitch's public origin? One pure check, shared by the
//! discovery service (readiness detail, one log line per change) and `officeswitch doctor`.
//!
//! An editor builds every URL the browser will use (its discovery `urlsrc`, the editor
//! page's asset and WebSocket URLs, its CSP) on the origin it believes it is reached at,
//! and its discovery shows which one that is:
//!
//! - **Collabora** (coolwsd) takes its `server_name` setting, else the request's `Host`,
//!   never `X-Forwarded-*`; the scheme comes from `ssl.enable`/`ssl.termination`.
//!   officeswitch sends each node its own `Host`, so a node without `server_name`
//!   announces its own address. Since 2025 coolwsd also refuses WebSocket upgrades whose
//!   `Origin` is neither `server_name` nor `Host`: such a node opens no document at all
//!   (`shared/notes/real-editors.md` §1, §3).
//! - **ONLYOFFICE** (DocService) builds its base URL from `X-Forwarded-Host` and
//!   `X-Forwarded-Proto` (or `wopi.host` when set). officeswitch sends them on every request
//!   and on its discovery fetches ([`forwarding_headers`]), so a discovery fetched by
//!   officeswitch that names another origin means something between officeswitch and
//!   DocService dropped them (its own nginx, another proxy), or `wopi.host` is set elsewhere.
//!
//! Either way editing breaks for every user of that node: pages, assets and WebSockets
//! would go straight to the node (or be refused), bypassing officeswitch.
//!
//! **Readiness.** A misconfigured node is listed in the readiness detail (one line per node) and logged
//! once per change, but does **not** turn `/readyz` to 503. Readiness tells a load balancer
//! which officeswitch *instance* may take clients; a node's settings are the same seen from
//! every instance, so a 503 would take every instance out together and stop editing on the
//! healthy nodes and the other suite too, while fixing nothing. Keeping the node from new
//! documents is a routing decision (per node, like draining), which the catalog exposes in
//! [`Catalog::announced`](super::Catalog::announced) for the router to use.

use std::fmt;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use url::{Origin, Url};

use super::document::Discovery;
use crate::config::SuiteKind;

/// A node whose discovery names an origin other than officeswitch's `public_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misconfig {
    /// The node's suite: the fix differs.
    pub suite: SuiteKind,
    /// The origin(s) the node's `urlsrc`s name instead (`http://127.0.0.1:9980`), sorted.
    pub announced: Vec<String>,
    /// officeswitch's public origin (`https://office.example.org`).
    pub expected: String,
    /// What to change on the node.
    pub fix: String,
}

impl fmt::Display for Misconfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "discovery announces {} instead of {}; fix: {}",
            self.announced.join(", "),
            self.expected,
            self.fix
        )
    }
}

/// Checks that every `urlsrc` of a node's `discovery` is on `public_url`'s origin.
///
/// # Errors
/// [`Misconfig`] naming what the node announced and the setting to change.
pub fn announced_origin(
    suite: SuiteKind,
    discovery: &Discovery,
    public_url: &Url,
) -> Result<(), Misconfig> {
    let expected = public_url.origin();
    let mut announced: Vec<String> = discovery
        .apps
        .iter()
        .flat_map(|app| &app.actions)
        .filter_map(|action| match Url::parse(&action.urlsrc) {
            Ok(url) if url.origin() == expected => None,
            Ok(url) => Some(ascii(&url.origin())),
            Err(_) => Some(action.urlsrc.clone()),
        })
        .collect();
    if announced.is_empty() {
        return Ok(());
    }
    announced.sort();
    announced.dedup();
    let fix = match suite {
        SuiteKind::Collabora => collabora_fix(&announced, public_url),
        SuiteKind::OnlyOffice => onlyoffice_fix(public_url),
    };
    Err(Misconfig {
        suite,
        announced,
        expected: ascii(&expected),
        fix,
    })
}

/// The forwarding headers officeswitch sends a node for `public_url`, as the proxy does on
/// every request (`X-Forwarded-Proto`, `X-Forwarded-Host`, `Forwarded`), so that a
/// discovery fetch sees what the browser's requests will see. No `X-Forwarded-For`: the
/// fetch has no client; officeswitch itself is the peer.
pub fn forwarding_headers(public_url: &Url) -> HeaderMap {
    let host = host_port(public_url);
    let proto = public_url.scheme();
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        // A `Url`'s scheme, host and port are always valid header text.
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    put("x-forwarded-proto", proto.to_string());
    put("x-forwarded-host", host.clone());
    put("forwarded", format!("proto={proto};host=\"{host}\""));
    headers
}

/// `host[:port]` of `url`, the port only when it is not the scheme's default: what
/// coolwsd's `server_name` and `X-Forwarded-Host` hold.
pub fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// An origin as `scheme://host[:port]`.
fn ascii(origin: &Origin) -> String {
    origin.ascii_serialization()
}

/// Collabora: `server_name` for the host, `ssl.termination` for the scheme.
fn collabora_fix(announced: &[String], public_url: &Url) -> String {
    let host = host_port(public_url);
    let public_https = public_url.scheme() == "https";
    let mut fix = format!(
        "set coolwsd's server_name to {host} (coolwsd.xml <server_name>{host}</server_name>, \
         Docker: server_name={host} or extra_params=--o:server_name={host})"
    );
    let announces_http = announced.iter().any(|a| a.starts_with("http://"));
    let announces_https = announced.iter().any(|a| a.starts_with("https://"));
    if public_https && announces_http {
        fix.push_str(
            ", and ssl.termination=true (with ssl.enable=false when officeswitch reaches the \
             node over http): public_url is https",
        );
    } else if !public_https && announces_https {
        fix.push_str(", and ssl.termination=false: public_url is http");
    }
    fix
}

/// ONLYOFFICE: the forwarding headers did not arrive, or `wopi.host` overrides them.
fn onlyoffice_fix(public_url: &Url) -> String {
    format!(
        "the node did not honour X-Forwarded-Host/X-Forwarded-Proto ({} / {}) that officeswitch \
         sent: something between officeswitch and DocService drops them (DocService's own nginx \
         must pass them on, as the stock ds.conf does; a proxy in between must not replace them), \
         or local.json sets wopi.host: unset it or set it to {}",
        host_port(public_url),
        public_url.scheme(),
        ascii(&public_url.origin()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../shared/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// The captured CODE discovery with its origin (`http://collabora.test:9980`) replaced,
    /// as coolwsd fills `%SRV_URI%`.
    fn collabora_at(origin: &str) -> Discovery {
        let xml = fixture("collabora-discovery-code-61cf2b4.xml")
            .replace("http://collabora.test:9980", origin);
        Discovery::parse(xml.as_bytes()).unwrap()
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn a_node_announcing_public_url_passes_whatever_the_spelling() {
        let d = collabora_at("https://office.example.org");
        for public in [
            "https://office.example.org",
            "https://OFFICE.example.org:443/",
        ] {
            assert_eq!(
                announced_origin(SuiteKind::Collabora, &d, &url(public)),
                Ok(())
            );
        }
    }

    #[test]
    fn collabora_without_server_name_is_told_server_name_with_the_port() {
        let d = collabora_at("http://127.0.0.1:9980");
        let err = announced_origin(
            SuiteKind::Collabora,
            &d,
            &url("http://office.example.org:8080"),
        )
        .unwrap_err();
        assert_eq!(err.announced, vec!["http://127.0.0.1:9980".to_string()]);
        assert_eq!(err.expected, "http://office.example.org:8080");
        let text = err.to_string();
        assert!(text.contains("announces http://127.0.0.1:9980"), "{text}");
        assert!(
            text.contains("server_name to office.example.org:8080"),
            "{text}"
        );
        assert!(!text.contains("ssl.termination"), "{text}");
    }

    #[test]
    fn collabora_on_http_behind_https_is_told_ssl_termination() {
        // server_name is right, the scheme is not: coolwsd without ssl.termination.
        let d = collabora_at("http://office.example.org");
        let err = announced_origin(SuiteKind::Collabora, &d, &url("https://office.example.org"))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("ssl.termination=true"), "{text}");
        assert!(
            text.contains("server_name to office.example.org "),
            "{text}"
        );
    }

    #[test]
    fn onlyoffice_is_told_the_forwarding_headers_were_lost() {
        let xml = fixture("onlyoffice-discovery-reduced-ocis.xml");
        let d = Discovery::parse(xml.as_bytes()).unwrap();
        let err = announced_origin(
            SuiteKind::OnlyOffice,
            &d,
            &url("https://office.example.org"),
        )
        .unwrap_err();
        assert_eq!(err.announced, vec!["https://test.server.prv".to_string()]);
        let text = err.to_string();
        assert!(text.contains("X-Forwarded-Host"), "{text}");
        assert!(text.contains("wopi.host"), "{text}");
        let fixed = Discovery::parse(
            xml.replace("https://test.server.prv", "https://office.example.org")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            announced_origin(
                SuiteKind::OnlyOffice,
                &fixed,
                &url("https://office.example.org")
            ),
            Ok(())
        );
    }

    #[test]
    fn one_stray_urlsrc_is_enough_and_each_origin_is_named_once() {
        let mut d = collabora_at("https://office.example.org");
        d.apps[0].actions[0].urlsrc = "http://10.0.0.5:9980/browser/x/cool.html?".into();
        d.apps[1].actions[0].urlsrc = "http://10.0.0.5:9980/browser/x/cool.html?".into();
        let err = announced_origin(SuiteKind::Collabora, &d, &url("https://office.example.org"))
            .unwrap_err();
        assert_eq!(err.announced, vec!["http://10.0.0.5:9980".to_string()]);
    }

    #[test]
    fn forwarding_headers_name_public_url() {
        let h = forwarding_headers(&url("https://office.example.org:8443"));
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "office.example.org:8443");
        assert_eq!(
            h["forwarded"],
            "proto=https;host=\"office.example.org:8443\""
        );
        let h = forwarding_headers(&url("https://office.example.org"));
        assert_eq!(h["x-forwarded-host"], "office.example.org");
    }
}
