//! A configuration error that points at the file, key and line to fix.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One precise configuration problem: `file:line: key: message`.
///
/// `check-config` prints it and exits non-zero; the server refuses to start on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file that holds the mistake.
    pub file: PathBuf,
    /// Dotted key path (`pool[1].nodes[0]`), empty when the file as a whole is wrong.
    pub key: String,
    /// 1-based line of the offending value, when the source text is known.
    pub line: Option<usize>,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl ConfigError {
    /// An error about `key` in `file`, located by the byte `span` of its value in `source`.
    pub fn at(
        file: &Path,
        source: &str,
        key: impl Into<String>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            key: key.into(),
            line: span.map(|s| line_of(source, s.start)),
            message: message.into(),
        }
    }

    /// An error about a file that could not be read or parsed at all.
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            key: String::new(),
            line: None,
            message: message.into(),
        }
    }

    /// Turns a TOML syntax or type error into a located error.
    pub fn from_toml(file: &Path, source: &str, err: &toml::de::Error) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            key: String::new(),
            line: err.span().map(|s| line_of(source, s.start)),
            message: err.message().trim().to_string(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line number of byte `offset` in `source`.
fn line_of(source: &str, offset: usize) -> usize {
    let end = offset.min(source.len());
    source.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_and_key() {
        let src = "a = 1\nb = 2\n";
        let err = ConfigError::at(Path::new("x.toml"), src, "b", Some(10..11), "too big");
        assert_eq!(err.to_string(), "x.toml:2: b: too big");
    }

    #[test]
    fn toml_syntax_errors_carry_their_line() {
        let src = "a = 1\nb = \n";
        let err = toml::from_str::<toml::Table>(src).unwrap_err();
        let err = ConfigError::from_toml(Path::new("x.toml"), src, &err);
        assert_eq!(err.line, Some(2), "{err}");
    }
}
