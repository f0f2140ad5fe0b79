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
    scheme: Scheme,
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
            scheme,
            authority,
            host,
            base_path,
        })
    }

    /// The absolute URI of `path` (relative to the node's base, no leading `/`) and
    /// `query` on this node.
    ///
    /// # Errors
    /// When the path or query holds bytes a URI may not.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let mut text = String::with_capacity(
            self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        text.push_str(&self.base_path);
        text.push_str(path);
        if let Some(q) = query {
            text.push('?');
            text.push_str(q);
        }
        let path_and_query = PathAndQuery::from_maybe_shared(Bytes::from(text))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
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
            let written = format!(
                "{url}{path}{}",
                query.map(|q| format!("?{q}")).unwrap_or_default()
            );
            let built = address(node).uri(path, query).unwrap();
            assert_eq!(
                built.to_string(),
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
    fn refuses_what_no_request_can_name() {
        assert!(NodeAddress::of(&Url::parse("ftp://127.0.0.1/").unwrap()).is_err());
        assert!(address("http://127.0.0.1/").uri("a b", None).is_err());
    }
}
