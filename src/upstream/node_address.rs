//! A node's base URL taken apart once, when it joins the topology, so that forwarding a
//! request builds the node's URI from parts instead of writing out and parsing the whole
//! URL again on every request.

use bytes::Bytes;
use http::HeaderValue;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use url::Url;

/// Scheme, authority, `Host` value and base path of one node.
#[derive(Debug, Clone)]
pub struct NodeAddress {
    https: bool,
    authority: Authority,
    host: HeaderValue,
    /// The node's path, ending in `/` (`/` for most nodes).
    base_path: String,
}

impl NodeAddress {
    /// `node` taken apart.
    ///
    /// # Errors
    /// Why `node` cannot be a request URI's origin (no host, not HTTP(S)).
    pub fn of(node: &Url) -> Result<NodeAddress, String> {
        let uri: Uri = node.as_str().parse().map_err(|e| format!("{e}"))?;
        let scheme = uri.scheme().cloned().ok_or("no scheme")?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!("scheme {scheme} is not http or https"));
        }
        let authority = uri.authority().cloned().ok_or("no host")?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|e| format!("{e}"))?;
        let mut base_path = uri.path().to_owned();
        if !base_path.ends_with('/') {
            base_path.push('/');
        }
        Ok(NodeAddress {
            https: scheme == Scheme::HTTPS,
            authority,
            host,
            base_path,
        })
    }

    /// The origin-form URI (`/path?query`) on this node of `local_path`, the client's path
    /// below any service root, with the query of `client`, the client's URI.
    ///
    /// # Errors
    /// When the path or query holds bytes a URI may not.
    pub fn origin_form(&self, local_path: &str, client: &Uri) -> Result<Uri, http::Error> {
        // A node at the root asked for the client's own path: the path and query the
        // server parsed go on as they are, without writing them out and parsing again.
        let own_path = local_path.len() == client.path().len()
            && local_path.starts_with('/')
            && !local_path.starts_with("//");
        if self.base_path == "/"
            && own_path
            && let Some(path_and_query) = client.path_and_query()
        {
            return Ok(Uri::from(path_and_query.clone()));
        }
        let path = local_path.trim_start_matches('/');
        let query = client.query();
        let mut text = String::with_capacity(
            self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        text.push_str(&self.base_path);
        text.push_str(path);
        if let Some(q) = query {
            text.push('?');
            text.push_str(q);
        }
        Ok(Uri::from(PathAndQuery::from_maybe_shared(Bytes::from(
            text,
        ))?))
    }

    /// Whether the node speaks HTTPS.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The node's host and port, as its pool of connections is keyed.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The `Host` header a request to this node carries.
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(url: &str) -> NodeAddress {
        NodeAddress::of(&Url::parse(url).unwrap()).unwrap()
    }

    /// The node's URL with `origin_form` after its authority, as one text.
    fn absolute(node: &str, local_path: &str, client: &str) -> String {
        let address = address(node);
        let scheme = if address.is_https() { "https" } else { "http" };
        let client: Uri = client.parse().unwrap();
        let origin_form = address.origin_form(local_path, &client).unwrap();
        format!("{scheme}://{}{origin_form}", address.authority())
    }

    #[test]
    fn builds_the_same_uri_as_writing_out_the_url() {
        for (node, path, query) in [
            ("http://127.0.0.1:9980/", "browser/61cf2b4/cool.html", None),
            (
                "https://cool.example.org/",
                "cool/http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1/ws",
                Some("WOPISrc=http%3A%2F%2Fnc&compat="),
            ),
            (
                "https://cool.example.org:443/sub/",
                "hosting/discovery",
                None,
            ),
            ("http://[::1]:8000/", "", Some("a=b")),
        ] {
            let url = Url::parse(node).unwrap();
            let query_part = query.map(|q| format!("?{q}")).unwrap_or_default();
            let written = format!("{url}{path}{query_part}");
            let client = format!("/{path}{query_part}");
            assert_eq!(
                absolute(node, &format!("/{path}"), &client),
                written.parse::<Uri>().unwrap().to_string()
            );
            assert_eq!(
                address(node).host(),
                written
                    .parse::<Uri>()
                    .unwrap()
                    .authority()
                    .unwrap()
                    .as_str()
            );
        }
    }

    #[test]
    fn a_path_below_a_service_root_or_with_doubled_slashes_is_written_anew() {
        // The client asked for `/office/browser/x.js`; the node serves `/browser/x.js`.
        assert_eq!(
            absolute(
                "http://127.0.0.1:9980/",
                "/browser/x.js",
                "/office/browser/x.js?v=1"
            ),
            "http://127.0.0.1:9980/browser/x.js?v=1"
        );
        // Leading slashes never make a path an authority on the node.
        assert_eq!(
            absolute("http://127.0.0.1:9980/", "//evil/x", "//evil/x"),
            "http://127.0.0.1:9980/evil/x"
        );
        assert_eq!(
            absolute("http://127.0.0.1:9980/base/", "/x", "/x?q"),
            "http://127.0.0.1:9980/base/x?q"
        );
    }

    #[test]
    fn refuses_what_no_request_can_name() {
        assert!(NodeAddress::of(&Url::parse("ftp://127.0.0.1/").unwrap()).is_err());
        let client: Uri = "/x".parse().unwrap();
        assert!(
            address("http://127.0.0.1/")
                .origin_form("/a b", &client)
                .is_err()
        );
    }
}
