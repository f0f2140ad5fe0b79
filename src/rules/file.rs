//! A rules file exactly as written (serde mirror of `rules/*.toml`).

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
