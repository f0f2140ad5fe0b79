//! Phase 1: name what a request is for, from its method and path alone.
//!
//! Pure and allocation-free: a `match` on borrowed path bytes.

use http::Method;

/// What a request asks officeswitch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `GET /hosting/discovery`: the merged WOPI discovery.
    Discovery,
    /// `GET /hosting/capabilities`: the merged capabilities.
    Capabilities,
    /// `GET /healthz`: is the process alive.
    Health,
    /// `GET /readyz`: can it serve Nextcloud (every pool has a discovery).
    Ready,
    /// A known path with a method it does not take.
    WrongMethod,
    /// Nothing officeswitch serves.
    Unknown,
}

impl Class {
    /// Short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Discovery => "discovery",
            Class::Capabilities => "capabilities",
            Class::Health => "health",
            Class::Ready => "ready",
            Class::WrongMethod => "wrong_method",
            Class::Unknown => "unknown",
        }
    }

    /// Whether requests of this class are load-balancer probes (logged at debug level).
    pub fn is_probe(self) -> bool {
        matches!(self, Class::Health | Class::Ready)
    }
}

/// Classifies a request by method and path.
pub fn classify(method: &Method, path: &str) -> Class {
    let class = match path {
        "/hosting/discovery" => Class::Discovery,
        "/hosting/capabilities" => Class::Capabilities,
        "/healthz" => Class::Health,
        "/readyz" => Class::Ready,
        _ => return Class::Unknown,
    };
    if method == Method::GET || method == Method::HEAD {
        class
    } else {
        Class::WrongMethod
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosting_and_health_paths() {
        assert_eq!(
            classify(&Method::GET, "/hosting/discovery"),
            Class::Discovery
        );
        assert_eq!(
            classify(&Method::HEAD, "/hosting/capabilities"),
            Class::Capabilities
        );
        assert_eq!(classify(&Method::GET, "/healthz"), Class::Health);
        assert_eq!(classify(&Method::GET, "/readyz"), Class::Ready);
        assert_eq!(
            classify(&Method::POST, "/hosting/discovery"),
            Class::WrongMethod
        );
        assert_eq!(
            classify(&Method::GET, "/hosting/discovery/"),
            Class::Unknown
        );
        assert_eq!(classify(&Method::GET, "/"), Class::Unknown);
    }
}
