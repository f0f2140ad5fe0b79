//! Nodes below a path: Collabora's `net.service_root` (and a node URL with a path).
//!
//! coolwsd with `net.service_root=/collab` builds every browser URL as `/collab/browser/...`,
//! `/collab/cool/...`; its discovery `urlsrc` does too. Such a node is configured as
//! `http://node:9980/collab/`. officeswitch classifies and routes by the path below that
//! root and forwards the same path below the node's base URL, so the node sees exactly
//! what the browser asked for.

use crate::config::PoolConfig;

/// The distinct path prefixes of the configured nodes (`/collab`, no trailing slash).
#[derive(Debug, Default)]
pub struct ServiceRoots(Vec<String>);

impl ServiceRoots {
    /// The prefixes of every node of `pools` whose base URL has a path.
    pub fn of(pools: &[PoolConfig]) -> ServiceRoots {
        let mut roots: Vec<String> = pools
            .iter()
            .flat_map(|p| &p.nodes)
            .map(|n| n.path().trim_end_matches('/').to_string())
            .filter(|p| !p.is_empty())
            .collect();
        roots.sort();
        roots.dedup();
        // Longest first, so `/a/b` wins over `/a`.
        roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
        ServiceRoots(roots)
    }

    /// `path` below the first root it starts with (`/collab/browser/x` -> `/browser/x`), or
    /// `path` itself. A bare root (`/collab`) stays as it is.
    pub fn strip<'a>(&self, path: &'a str) -> &'a str {
        self.0
            .iter()
            .find_map(|root| {
                path.strip_prefix(root.as_str())
                    .filter(|rest| rest.starts_with('/'))
            })
            .unwrap_or(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SuiteKind;

    #[test]
    fn paths_below_a_node_root_are_read_below_it() {
        let pool = PoolConfig {
            name: "collabora".into(),
            kind: SuiteKind::Collabora,
            nodes: vec![
                "http://a:9980/collab/".parse().unwrap(),
                "http://b:9980/".parse().unwrap(),
            ],
            proof: Default::default(),
        };
        let roots = ServiceRoots::of(std::slice::from_ref(&pool));
        assert_eq!(
            roots.strip("/collab/browser/h/cool.html"),
            "/browser/h/cool.html"
        );
        assert_eq!(roots.strip("/collab/cool/x/ws"), "/cool/x/ws");
        assert_eq!(roots.strip("/collabx/browser/h"), "/collabx/browser/h");
        assert_eq!(roots.strip("/browser/h/cool.html"), "/browser/h/cool.html");
        assert_eq!(roots.strip("/collab"), "/collab");
    }
}
