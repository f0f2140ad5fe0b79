//! One organisation file (`rules/<name>.toml`) compiled: the Nextcloud origins the
//! organisation owns, its pool overrides and its node pins.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use toml::Spanned;
use url::Url;

use super::Source;
use super::file::FileOrganisation;
use crate::config::{ConfigError, PoolConfig};

/// One organisation: a set of Nextcloud origins and how their documents are routed.
///
/// The router finds it with [`RuleSet::organisation_for`](super::RuleSet::organisation_for)
/// from a document's `WOPISrc`, asks [`RuleSet::pool_for`](super::RuleSet::pool_for) for the
/// pool, then restricts the pool's nodes to [`Organisation::pinned_nodes`] when set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    /// File stem of its rules file; shared, so routed requests carry it without copying.
    name: Arc<str>,
    /// Normalised origins, `scheme://host:port` with the port always written.
    origins: Vec<String>,
    /// Pool for every format, if the file sets `all`.
    all: Option<String>,
    /// Lower-case extension -> pool, winning over `all`.
    extensions: HashMap<String, String>,
    /// Pool name -> the nodes (as in `PoolConfig::nodes`) this organisation may use.
    pins: Vec<(String, Vec<Url>)>,
    /// Whether new documents may open in the other suite when theirs has no healthy node.
    failover: bool,
}

impl Organisation {
    /// The organisation's name (its rules file without `.toml`), for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared (a reference count, not a copy).
    pub fn shared_name(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    /// The origins it owns, normalised as `scheme://host:port` (for logs and readiness).
    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// The nodes this organisation is pinned to in `pool`, if it pins that pool.
    ///
    /// Each URL is one of the pool's `PoolConfig::nodes` (same normalisation, so they
    /// compare equal); the router hashes over these instead of the whole pool.
    pub fn pinned_nodes(&self, pool: &str) -> Option<&[Url]> {
        self.pins
            .iter()
            .find(|(p, _)| p == pool)
            .map(|(_, nodes)| nodes.as_slice())
    }

    /// Whether new documents may open in the other suite when the one the rules give
    /// them has no node taking new documents (`failover = true`; off by default, since
    /// the other suite renders some documents differently).
    pub fn failover(&self) -> bool {
        self.failover
    }

    /// Whether the organisation's own rules send some format to pool `pool`.
    pub fn names_pool(&self, pool: &str) -> bool {
        self.all.as_deref() == Some(pool) || self.extensions.values().any(|p| p == pool)
    }

    /// The pool this organisation's own rules give `ext`: extension override, then `all`.
    pub(super) fn pool_override(&self, ext: &str) -> Option<&str> {
        self.extensions
            .get(ext)
            .or(self.all.as_ref())
            .map(String::as_str)
    }
}

/// An origin as compared: scheme, normalised host, port with the default made explicit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct OriginKey {
    /// `https` (true) or `http`.
    pub https: bool,
    /// Host as `Url::host_str` gives it (lower-case, IDNA, canonical IP literal).
    pub host: String,
    /// Port, default included.
    pub port: u16,
}

impl OriginKey {
    /// `scheme://host:port`, for messages and [`Organisation::origins`].
    fn display(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

/// Who already claimed an origin while compiling a rules directory.
#[derive(Debug)]
pub(super) struct Owner {
    /// Index of the organisation in the rule set.
    pub index: usize,
    /// Its name.
    name: String,
    /// Its file.
    file: PathBuf,
    /// Line of the origin there.
    line: usize,
    /// Key of the origin there (`origins[1]`).
    key: String,
}

/// Compiles the organisation file `src` as the `index`-th organisation, claiming its
/// origins in `seen` (shared by all files of one directory, to refuse duplicates).
pub(super) fn compile(
    src: &Source<'_>,
    index: usize,
    pools: &[PoolConfig],
    seen: &mut HashMap<OriginKey, Owner>,
) -> Result<Organisation, ConfigError> {
    let name = organisation_name(src)?;
    let raw: FileOrganisation = src.parse()?;

    if raw.origins.get_ref().is_empty() {
        return Err(src.err(
            "origins",
            raw.origins.span(),
            "an organisation needs at least one origin (scheme://host[:port] of its Nextcloud)",
        ));
    }
    let mut origins = Vec::with_capacity(raw.origins.get_ref().len());
    for (i, value) in raw.origins.get_ref().iter().enumerate() {
        let key = format!("origins[{i}]");
        let origin = origin(src, &key, value)?;
        let line = src.line_of(value.span().start);
        if let Some(owner) = seen.get(&origin) {
            let message = if owner.index == index {
                format!(
                    "origin `{}` is listed twice (also {}, line {})",
                    origin.display(),
                    owner.key,
                    owner.line
                )
            } else {
                format!(
                    "origin `{}` already belongs to organisation `{}` ({}:{}); \
                     an origin belongs to one organisation only",
                    origin.display(),
                    owner.name,
                    owner.file.display(),
                    owner.line
                )
            };
            return Err(src.err(&key, value.span(), message));
        }
        origins.push(origin.display());
        seen.insert(
            origin,
            Owner {
                index,
                name: name.clone(),
                file: src.path.to_path_buf(),
                line,
                key,
            },
        );
    }

    let all = raw
        .all
        .as_ref()
        .map(|pool| src.pool("all", pool, pools))
        .transpose()?;

    let mut extensions = HashMap::with_capacity(raw.extensions.len());
    for (ext, pool) in &raw.extensions {
        extensions.insert(ext.clone(), src.extension(ext, pool, pools)?);
    }

    let mut pins = Vec::with_capacity(raw.nodes.len());
    for (pool_name, list) in &raw.nodes {
        let key = format!("nodes.{pool_name}");
        let Some(pool) = pools.iter().find(|p| &p.name == pool_name) else {
            return Err(src.err(&key, list.span(), super::unknown_pool(pool_name, pools)));
        };
        if list.get_ref().is_empty() {
            return Err(src.err(
                &key,
                list.span(),
                "a pin lists at least one node; remove the line to use every node of the pool",
            ));
        }
        let mut nodes: Vec<Url> = Vec::with_capacity(list.get_ref().len());
        for (j, value) in list.get_ref().iter().enumerate() {
            let key = format!("{key}[{j}]");
            let node = pinned_node(src, &key, value, pool)?;
            if nodes.contains(&node) {
                return Err(src.err(&key, value.span(), "this node is listed twice"));
            }
            nodes.push(node);
        }
        pins.push((pool_name.clone(), nodes));
    }

    Ok(Organisation {
        name: name.into(),
        origins,
        all,
        extensions,
        pins,
        failover: raw.failover,
    })
}

/// The organisation's name: its file stem, checked so it is safe in logs and metrics.
fn organisation_name(src: &Source<'_>) -> Result<String, ConfigError> {
    let stem = src.path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let ok = !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(ConfigError::file(
            src.path,
            "an organisation file is named `<organisation>.toml`, the name made of ASCII \
             letters, digits, `-`, `_` and `.`",
        ));
    }
    Ok(stem.to_string())
}

/// Parses one entry of `origins`, normalised the way `url::Url` normalises a `WOPISrc`.
fn origin(src: &Source<'_>, key: &str, value: &Spanned<String>) -> Result<OriginKey, ConfigError> {
    let err = |message: String| src.err(key, value.span(), message);
    let text = value.get_ref();
    let url = Url::parse(text).map_err(|e| err(format!("`{text}` is not a URL: {e}")))?;
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        other => {
            return Err(err(format!(
                "an origin is http:// or https://, not `{other}:`"
            )));
        }
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err(err(format!("`{text}` has no host")));
    };
    let problem = if !url.username().is_empty() || url.password().is_some() {
        Some("credentials (`user@`)".to_string())
    } else if url.path() != "/" {
        Some(format!("a path (`{}`)", url.path()))
    } else if url.query().is_some() {
        Some("a query (`?...`)".to_string())
    } else if url.fragment().is_some() {
        Some("a fragment (`#...`)".to_string())
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(err(format!(
            "an origin is scheme://host[:port] only; `{text}` has {problem}"
        )));
    }
    Ok(OriginKey {
        https,
        host: host.to_string(),
        port,
    })
}

/// Parses one pinned node the way the settings parse `[[pool]] nodes` (a trailing `/` is
/// added to the path) and checks it is a node of `pool`; returns the pool's own URL.
fn pinned_node(
    src: &Source<'_>,
    key: &str,
    value: &Spanned<String>,
    pool: &PoolConfig,
) -> Result<Url, ConfigError> {
    let err = |message: String| src.err(key, value.span(), message);
    let text = value.get_ref();
    let mut url = Url::parse(text).map_err(|e| err(format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(err("a node is an http:// or https:// URL".to_string()));
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(err(
            "a node URL takes no query, fragment or credentials".to_string()
        ));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    match pool.nodes.iter().find(|n| **n == url) {
        Some(node) => Ok(node.clone()),
        None => {
            let list = pool
                .nodes
                .iter()
                .map(Url::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            Err(err(format!(
                "`{url}` is not a node of pool `{}` (its nodes: {list})",
                pool.name
            )))
        }
    }
}
