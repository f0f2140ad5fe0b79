//! Routing rules: which editor pool owns which file format.
//!
//! `rules/default.toml` gives the default pool per extension and a preference order
//! for formats it does not name. [`RuleSet`] is the compiled, validated form; it is
//! the only rules API the rest of officeswitch uses.

mod file;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::{ConfigError, PoolConfig};

/// Name of the file holding the defaults that apply to every organisation.
pub const DEFAULT_RULES_FILE: &str = "default.toml";

/// Compiled rules, checked against the configured pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// Lower-case extension -> owning pool name.
    owners: HashMap<String, String>,
    /// Pools in the order that decides formats no rule names.
    prefer: Vec<String>,
}

impl RuleSet {
    /// Loads `default.toml` from `dir` and checks it against `pools`.
    ///
    /// # Errors
    /// A located error for a missing or unreadable file, bad TOML, an unknown pool or a
    /// malformed extension.
    pub fn load(dir: &Path, pools: &[PoolConfig]) -> Result<RuleSet, ConfigError> {
        let path: PathBuf = dir.join(DEFAULT_RULES_FILE);
        let source = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::file(&path, format!("cannot read rules file: {e}")))?;
        RuleSet::from_str(&path, &source, pools)
    }

    /// Compiles rules given as text (`path` names them in errors).
    ///
    /// # Errors
    /// As [`RuleSet::load`].
    pub fn from_str(
        path: &Path,
        source: &str,
        pools: &[PoolConfig],
    ) -> Result<RuleSet, ConfigError> {
        let raw: file::FileRules =
            toml::from_str(source).map_err(|e| ConfigError::from_toml(path, source, &e))?;
        let known = |name: &str| pools.iter().any(|p| p.name == name);
        let pool_list = || {
            pools
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut owners = HashMap::with_capacity(raw.extensions.len());
        for (ext, pool) in &raw.extensions {
            let key = format!("extensions.{ext}");
            if !is_extension(ext) {
                return Err(ConfigError::at(
                    path,
                    source,
                    key,
                    Some(pool.span()),
                    "an extension is lower-case letters and digits, without the dot",
                ));
            }
            if !known(pool.get_ref()) {
                return Err(ConfigError::at(
                    path,
                    source,
                    key,
                    Some(pool.span()),
                    format!(
                        "no pool named `{}` (pools: {})",
                        pool.get_ref(),
                        pool_list()
                    ),
                ));
            }
            owners.insert(ext.clone(), pool.get_ref().clone());
        }
        let mut prefer = Vec::new();
        for (i, pool) in raw.prefer.iter().enumerate() {
            if !known(pool.get_ref()) {
                return Err(ConfigError::at(
                    path,
                    source,
                    format!("prefer[{i}]"),
                    Some(pool.span()),
                    format!(
                        "no pool named `{}` (pools: {})",
                        pool.get_ref(),
                        pool_list()
                    ),
                ));
            }
            if !prefer.contains(pool.get_ref()) {
                prefer.push(pool.get_ref().clone());
            }
        }
        // Pools the list leaves out come last, in settings-file order.
        for p in pools {
            if !prefer.contains(&p.name) {
                prefer.push(p.name.clone());
            }
        }
        Ok(RuleSet { owners, prefer })
    }

    /// The pool the rules give `ext` (lower-case, no dot), if any.
    pub fn owner_of(&self, ext: &str) -> Option<&str> {
        self.owners.get(ext).map(String::as_str)
    }

    /// All pools, most preferred first, for formats no rule names.
    pub fn preference(&self) -> &[String] {
        &self.prefer
    }
}

/// Whether `s` looks like a file extension as editors list them (`docx`, `7z`).
fn is_extension(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 16
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SuiteKind;

    fn pools() -> Vec<PoolConfig> {
        ["collabora", "onlyoffice"]
            .iter()
            .map(|n| PoolConfig {
                name: n.to_string(),
                kind: if *n == "collabora" {
                    SuiteKind::Collabora
                } else {
                    SuiteKind::OnlyOffice
                },
                nodes: vec![],
            })
            .collect()
    }

    #[test]
    fn shipped_default_rules_compile() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let rules = RuleSet::load(&dir, &pools()).unwrap();
        assert_eq!(rules.owner_of("docx"), Some("onlyoffice"));
        assert_eq!(rules.owner_of("odg"), Some("collabora"));
        assert_eq!(rules.owner_of("pdf"), None);
        assert_eq!(rules.preference(), ["collabora", "onlyoffice"]);
    }

    #[test]
    fn unknown_pool_is_located() {
        let src = "prefer = []\n[extensions]\ndocx = \"msoffice\"\n";
        let err = RuleSet::from_str(Path::new("r/default.toml"), src, &pools()).unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.line),
            ("extensions.docx", Some(3)),
            "{err}"
        );
        assert!(err.message.contains("msoffice"));
    }

    #[test]
    fn bad_extension_is_refused() {
        let src = "[extensions]\n\".docx\" = \"collabora\"\n";
        let err = RuleSet::from_str(Path::new("d.toml"), src, &pools()).unwrap_err();
        assert_eq!(err.key, "extensions..docx");
    }

    #[test]
    fn preference_is_completed_with_unlisted_pools() {
        let src = "prefer = [\"onlyoffice\"]\n";
        let rules = RuleSet::from_str(Path::new("d.toml"), src, &pools()).unwrap();
        assert_eq!(rules.preference(), ["onlyoffice", "collabora"]);
    }
}
