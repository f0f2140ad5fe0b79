//! Routing rules: which editor pool opens which file, for which organisation.
//!
//! The rules directory holds `default.toml` (the default pool per extension, and a
//! preference order for formats it does not name) and one `<organisation>.toml` per
//! organisation: the Nextcloud origins it owns, optional pool overrides (per extension
//! or for every format) and optional pins to a subset of a pool's nodes.
//! [`RuleSet`] is the compiled, validated form of the whole directory; it is the only
//! rules API the rest of officeswitch uses. [`RulesStore`] keeps the current
//! [`RuleSet`] and swaps in a new one when the directory changes (hot reload).
//!
//! Lookups ([`RuleSet::organisation_for`], [`RuleSet::pool_for`]) run for every opened
//! document, so they only hash and compare: no allocation.

mod file;
mod organisation;
pub mod watch;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use url::Url;

use crate::config::{ConfigError, PoolConfig, SuiteKind};

pub use organisation::Organisation;
pub use watch::RulesStore;

/// Name of the file holding the defaults that apply to every organisation.
pub const DEFAULT_RULES_FILE: &str = "default.toml";

/// Compiled rules, checked against the configured pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// Lower-case extension -> owning pool name.
    owners: HashMap<String, String>,
    /// Pools in the order that decides formats no rule names.
    prefer: Vec<String>,
    /// Organisations, in file-name order.
    organisations: Vec<Organisation>,
    /// Normalised host (as `Url::host_str` gives it) -> the origins on that host.
    by_host: HashMap<String, Vec<OriginEntry>>,
    /// Organisation name -> index, for requests that carry the name (tokens, targets).
    by_name: HashMap<String, usize>,
}

/// One origin of one organisation, filed under its host in [`RuleSet::by_host`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct OriginEntry {
    /// `https` (true) or `http`.
    https: bool,
    /// Port, with the scheme's default made explicit.
    port: u16,
    /// Index into [`RuleSet::organisations`].
    organisation: usize,
}

impl RuleSet {
    /// Loads the rules directory `dir` (`default.toml` and every other `*.toml`, one per
    /// organisation) and checks it against `pools`.
    ///
    /// Files whose names start with `.` (editor lock and temporary files) are ignored, as
    /// are files not ending in `.toml` (such as `example-org.toml.sample`).
    ///
    /// # Errors
    /// A located error for a missing or unreadable file, bad TOML, an unknown pool, a
    /// malformed extension, a bad or duplicate origin, or a bad node pin.
    pub fn load(dir: &Path, pools: &[PoolConfig]) -> Result<RuleSet, ConfigError> {
        let default_path: PathBuf = dir.join(DEFAULT_RULES_FILE);
        let default_source = read_rules_file(&default_path)?;
        let mut organisations = Vec::new();
        for path in organisation_files(dir)? {
            let source = read_rules_file(&path)?;
            organisations.push((path, source));
        }
        let organisations: Vec<(&Path, &str)> = organisations
            .iter()
            .map(|(p, s)| (p.as_path(), s.as_str()))
            .collect();
        RuleSet::from_sources((&default_path, &default_source), &organisations, pools)
    }

    /// Compiles `default.toml` rules given as text, with no organisation (`path` names
    /// them in errors).
    ///
    /// # Errors
    /// As [`RuleSet::load`].
    pub fn from_str(
        path: &Path,
        source: &str,
        pools: &[PoolConfig],
    ) -> Result<RuleSet, ConfigError> {
        RuleSet::from_sources((path, source), &[], pools)
    }

    /// Compiles rules given as text: `default` is `(path, text)` of `default.toml`,
    /// `organisations` the `(path, text)` of each organisation file, named by its path's
    /// file stem. Lets tests and tools build rules without a directory.
    ///
    /// # Errors
    /// As [`RuleSet::load`]; a duplicate origin is reported in the later file of
    /// `organisations`, naming the earlier one.
    pub fn from_sources(
        default: (&Path, &str),
        organisations: &[(&Path, &str)],
        pools: &[PoolConfig],
    ) -> Result<RuleSet, ConfigError> {
        let (owners, prefer) = compile_default(&Source::new(default.0, default.1), pools)?;
        let mut compiled = Vec::with_capacity(organisations.len());
        let mut seen = HashMap::new();
        for (path, text) in organisations {
            let index = compiled.len();
            let src = Source::new(path, text);
            compiled.push(organisation::compile(&src, index, pools, &mut seen)?);
        }
        let mut by_host: HashMap<String, Vec<OriginEntry>> = HashMap::new();
        for (origin, owner) in seen {
            by_host.entry(origin.host).or_default().push(OriginEntry {
                https: origin.https,
                port: origin.port,
                organisation: owner.index,
            });
        }
        let by_name = compiled
            .iter()
            .enumerate()
            .map(|(i, o)| (o.name().to_string(), i))
            .collect();
        Ok(RuleSet {
            owners,
            prefer,
            organisations: compiled,
            by_host,
            by_name,
        })
    }

    /// The pool `default.toml` gives `ext` (lower-case, no dot), if any.
    pub fn owner_of(&self, ext: &str) -> Option<&str> {
        self.owners.get(ext).map(String::as_str)
    }

    /// All pools, most preferred first, for formats no rule names.
    pub fn preference(&self) -> &[String] {
        &self.prefer
    }

    /// The organisation owning the origin of `url` (scheme, host, port), if any.
    ///
    /// The router calls this for every `WOPISrc`: a `WOPISrc` whose origin no
    /// organisation owns is refused and never contacted. Only `http` and `https` URLs can
    /// match; the default port counts as written (`https://a` is `https://a:443`). Only
    /// the origin is compared: rejecting credentials or odd paths in `url` is the
    /// caller's job. No allocation.
    pub fn organisation_for(&self, url: &Url) -> Option<&Organisation> {
        self.organisation_for_origin(url.scheme(), url.host_str()?, url.port_or_known_default()?)
    }

    /// The organisation owning the origin `scheme://host:port`, if any: `host` as
    /// `Url::host_str` gives it (lower-case, IDNA, canonical IP literal), `port` with the
    /// scheme's default made explicit. Only `http` and `https` match. No allocation.
    pub fn organisation_for_origin(
        &self,
        scheme: &str,
        host: &str,
        port: u16,
    ) -> Option<&Organisation> {
        let https = match scheme {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let entries = self.by_host.get(host)?;
        let entry = entries
            .iter()
            .find(|e| e.https == https && e.port == port)?;
        self.organisations.get(entry.organisation)
    }

    /// The pool that opens `ext` (lower-case, no dot) for `org`: the organisation's
    /// extension override, then its `all`, then `default.toml`'s owner; `None` if nothing
    /// names it (the caller may then fall back to [`RuleSet::preference`]).
    pub fn pool_for<'a>(&'a self, org: &'a Organisation, ext: &str) -> Option<&'a str> {
        org.pool_override(ext).or_else(|| self.owner_of(ext))
    }

    /// The pool of suite `kind` that traffic of `org` without a pin goes to, among `pools`
    /// (several pools may run one suite: a dedicated pool, a canary): the first pool of
    /// that kind the organisation's own rules name, else the most preferred one
    /// (`default.toml`'s `prefer`), else the first configured. `None` when no pool runs `kind`.
    pub fn pool_of_kind<'p>(
        &self,
        org: Option<&Organisation>,
        kind: SuiteKind,
        pools: &'p [PoolConfig],
    ) -> Option<&'p PoolConfig> {
        let of_kind = || pools.iter().filter(|p| p.kind == kind);
        let named_by_org = |pool: &&PoolConfig| org.is_some_and(|o| o.names_pool(&pool.name));
        of_kind()
            .find(named_by_org)
            .or_else(|| {
                self.prefer
                    .iter()
                    .find_map(|name| of_kind().find(|p| p.name == *name))
            })
            .or_else(|| of_kind().next())
    }

    /// Every organisation, in file-name order.
    pub fn organisation_list(&self) -> &[Organisation] {
        &self.organisations
    }

    /// The organisation called `name` (the file it came from, without `.toml`).
    pub fn organisation_named(&self, name: &str) -> Option<&Organisation> {
        self.organisations.get(*self.by_name.get(name)?)
    }

    /// Number of organisations (for logs and readiness).
    pub fn organisations(&self) -> usize {
        self.organisations.len()
    }
}

/// A rules file's path and text, to locate errors in it.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl<'a> Source<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        Source { path, text }
    }

    /// An error about `key`, located by the byte `span` of its value.
    fn err(&self, key: &str, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, self.text, key, Some(span), message)
    }

    /// Parses the text as TOML into `T`; unknown top-level keys are reported under their
    /// own name.
    fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(self.text).map_err(|e| {
            let mut err = ConfigError::from_toml(self.path, self.text, &e);
            if let Some(field) = unknown_field(&err.message) {
                err.key = field.to_string();
            }
            err
        })
    }

    /// The 1-based line of byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// Checks that `value` names a configured pool; returns the name.
    fn pool(
        &self,
        key: &str,
        value: &Spanned<String>,
        pools: &[PoolConfig],
    ) -> Result<String, ConfigError> {
        let name = value.get_ref();
        if pools.iter().any(|p| &p.name == name) {
            return Ok(name.clone());
        }
        Err(self.err(key, value.span(), unknown_pool(name, pools)))
    }

    /// Checks an `[extensions]` entry (`ext = "pool"`); returns the pool name.
    fn extension(
        &self,
        ext: &str,
        pool: &Spanned<String>,
        pools: &[PoolConfig],
    ) -> Result<String, ConfigError> {
        let key = format!("extensions.{ext}");
        if !is_extension(ext) {
            return Err(self.err(
                &key,
                pool.span(),
                "an extension is lower-case letters and digits, without the dot",
            ));
        }
        self.pool(&key, pool, pools)
    }
}

/// The message for a pool name the settings do not define.
fn unknown_pool(name: &str, pools: &[PoolConfig]) -> String {
    let list = pools
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    format!("no pool named `{name}` (pools: {list})")
}

/// The field a serde "unknown field `x`, expected ..." message names.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

/// Compiles `default.toml` into (extension -> pool, preference order).
fn compile_default(
    src: &Source<'_>,
    pools: &[PoolConfig],
) -> Result<(HashMap<String, String>, Vec<String>), ConfigError> {
    let raw: file::FileRules = src.parse()?;
    let mut owners = HashMap::with_capacity(raw.extensions.len());
    for (ext, pool) in &raw.extensions {
        owners.insert(ext.clone(), src.extension(ext, pool, pools)?);
    }
    let mut prefer = Vec::new();
    for (i, pool) in raw.prefer.iter().enumerate() {
        let name = src.pool(&format!("prefer[{i}]"), pool, pools)?;
        if !prefer.contains(&name) {
            prefer.push(name);
        }
    }
    // Pools the list leaves out come last, in settings-file order.
    for p in pools {
        if !prefer.contains(&p.name) {
            prefer.push(p.name.clone());
        }
    }
    Ok((owners, prefer))
}

/// Reads one rules file.
fn read_rules_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::file(path, format!("cannot read rules file: {e}")))
}

/// The organisation files of `dir`, sorted by name: every `*.toml` but `default.toml`,
/// skipping names that start with `.` and directories.
fn organisation_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let unreadable =
        |e: std::io::Error| ConfigError::file(dir, format!("cannot read rules directory: {e}"));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if !is_organisation_file(&path) || path.is_dir() {
            continue;
        }
        files.push(path);
    }
    files.sort();
    Ok(files)
}

/// Whether `path` names an organisation file: `*.toml`, not hidden, not `default.toml`.
fn is_organisation_file(path: &Path) -> bool {
    let Some(name) = path.file_name() else {
        return false;
    };
    let hidden = name.as_encoded_bytes().first() == Some(&b'.');
    !hidden && name != DEFAULT_RULES_FILE && path.extension().is_some_and(|e| e == "toml")
}

/// Whether `s` looks like a file extension as editors list them (`docx`, `7z`).
fn is_extension(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 16
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests;
