//! Rules files exactly as written (serde mirrors of `rules/*.toml`).
//!
//! Values keep their spans so validation can name the line of a mistake.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `rules/default.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRules {
    /// Pool names, most preferred first, for formats `extensions` does not name.
    #[serde(default)]
    pub prefer: Vec<Spanned<String>>,
    /// Extension (no dot) -> pool name.
    #[serde(default)]
    pub extensions: BTreeMap<String, Spanned<String>>,
}

/// `rules/<organisation>.toml`: one organisation, named by the file stem.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOrganisation {
    /// Nextcloud origins (`scheme://host[:port]`) whose `WOPISrc` belongs to this organisation.
    pub origins: Spanned<Vec<Spanned<String>>>,
    /// One pool for every format, overriding `default.toml`.
    #[serde(default)]
    pub all: Option<Spanned<String>>,
    /// Extension (no dot) -> pool name; wins over `all`.
    #[serde(default)]
    pub extensions: BTreeMap<String, Spanned<String>>,
    /// Pool name -> the subset of its nodes this organisation is pinned to.
    #[serde(default)]
    pub nodes: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    /// Open new documents in the other suite when the chosen one has no healthy node.
    #[serde(default)]
    pub failover: bool,
}
