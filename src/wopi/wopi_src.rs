//! The document identity: a `WOPISrc`, the WOPI file URL of the host (Nextcloud), parsed
//! and checked once, and its canonical key for hashing a document onto a node.
//!
//! Browsers and editors carry one document's `WOPISrc` in several spellings: encoded once
//! in a query string, decoded, sometimes encoded twice, with or without the default port,
//! host in any letter case. Hashing those spellings as they come is a known cause of one
//! document being split across nodes (two users, two editing sessions, conflicting saves).
//! [`WopiSrc::doc_key`] gives all of them one key.
//!
//! Collabora's "hexified" path copy (`/cool/0x6874.../ws`) is not a WOPISrc and is refused
//! here: the router reads the `WOPISrc` query parameter, which every such request carries.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};
use url::Url;

/// Longest accepted WOPISrc (decoded URL). Nextcloud's are about 100 bytes.
pub const MAX_LEN: usize = 2048;

/// Longest accepted raw (encoded) value: room for encoding every byte of a
/// [`MAX_LEN`] URL, with headroom for a second round of encoding.
const MAX_RAW_LEN: usize = 4 * MAX_LEN;

/// Rounds of percent-decoding tried before a value counts as decoded.
const MAX_DECODE_ROUNDS: usize = 3;

/// Bytes written as they are in a canonical key path: RFC 3986 unreserved and `/`.
const KEY_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// A checked WOPISrc: an absolute `http(s)` URL with a host and nothing else (no user
/// info, query or fragment).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WopiSrc {
    url: Url,
}

/// Why a value is not a usable WOPISrc.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WopiSrcError {
    /// Nothing given.
    #[error("WOPISrc is empty")]
    Empty,
    /// Longer than [`MAX_LEN`] bytes (or its raw form longer than four times that).
    #[error("WOPISrc is {len} bytes long, over the {MAX_LEN}-byte limit")]
    TooLong {
        /// Length of the offending form, in bytes.
        len: usize,
    },
    /// A control character (C0, DEL or C1), raw or percent-encoded.
    #[error("WOPISrc contains a control character")]
    ControlCharacter,
    /// Percent-decoding gave bytes that are not UTF-8.
    #[error("WOPISrc is not UTF-8 once percent-decoded")]
    NotUtf8,
    /// Not an absolute URL.
    #[error("WOPISrc is not an absolute URL: {0}")]
    NotAUrl(url::ParseError),
    /// A scheme other than `http` and `https`.
    #[error("WOPISrc scheme {0:?} is not http or https")]
    Scheme(String),
    /// A user name or password (`https://user:pw@host/...`).
    #[error("WOPISrc carries user info")]
    UserInfo,
    /// No host.
    #[error("WOPISrc has no host")]
    NoHost,
    /// A `#fragment`.
    #[error("WOPISrc has a fragment")]
    Fragment,
    /// A query string: a WOPISrc never has one (editors append `?access_token=` to it).
    #[error("WOPISrc has a query string")]
    Query,
}

impl WopiSrc {
    /// Parses a raw query value (percent-encoded, maybe `+` for space) or an already
    /// decoded URL.
    ///
    /// A value that does not start with `scheme://` is percent-decoded (up to three
    /// rounds, for values encoded twice) until it does.
    ///
    /// # Errors
    /// A [`WopiSrcError`] naming the first problem found: empty, not a URL, scheme other
    /// than http/https, user info, no host, fragment, query string, over [`MAX_LEN`]
    /// bytes, control characters.
    pub fn parse(raw: &str) -> Result<WopiSrc, WopiSrcError> {
        if raw.is_empty() {
            return Err(WopiSrcError::Empty);
        }
        if raw.len() > MAX_RAW_LEN {
            return Err(WopiSrcError::TooLong { len: raw.len() });
        }
        let mut value = Cow::Borrowed(raw);
        for round in 0..MAX_DECODE_ROUNDS {
            if has_control(value.as_bytes()) {
                return Err(WopiSrcError::ControlCharacter);
            }
            if starts_with_scheme(&value) || !value.contains('%') {
                break;
            }
            // `+` means space only in a form-encoded query value, i.e. the first round.
            let bytes: Cow<[u8]> = if round == 0 && value.contains('+') {
                Cow::Owned(value.replace('+', " ").into_bytes())
            } else {
                Cow::Borrowed(value.as_bytes())
            };
            let decoded: Vec<u8> = percent_decode(&bytes).collect();
            value = Cow::Owned(String::from_utf8(decoded).map_err(|_| WopiSrcError::NotUtf8)?);
        }
        if has_control(value.as_bytes()) {
            return Err(WopiSrcError::ControlCharacter);
        }
        if value.is_empty() {
            return Err(WopiSrcError::Empty);
        }
        if value.len() > MAX_LEN {
            return Err(WopiSrcError::TooLong { len: value.len() });
        }
        let url = Url::parse(&value).map_err(|e| match e {
            url::ParseError::EmptyHost => WopiSrcError::NoHost,
            e => WopiSrcError::NotAUrl(e),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WopiSrcError::Scheme(
                url.scheme().chars().take(32).collect(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WopiSrcError::UserInfo);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(WopiSrcError::NoHost);
        }
        if url.fragment().is_some() {
            return Err(WopiSrcError::Fragment);
        }
        if url.query().is_some() {
            return Err(WopiSrcError::Query);
        }
        if url.as_str().len() > MAX_LEN {
            // Serialising may percent-encode what was given raw.
            return Err(WopiSrcError::TooLong {
                len: url.as_str().len(),
            });
        }
        Ok(WopiSrc { url })
    }

    /// The URL (as the url crate normalises it: lower-case scheme and host, IPv4 in
    /// dotted decimal, default port omitted, `.`/`..` segments resolved).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Canonical document key: lower-case scheme and host, explicit port, path
    /// percent-decoded to a fixed point (at most 3 rounds) and re-encoded one canonical
    /// way (unreserved bytes and `/` as they are, every other byte `%XX` upper-case), no
    /// query. Encoded, decoded and double-encoded forms of one WOPISrc give the same key,
    /// and so do `https://NC:443/x` and `https://nc/x`.
    pub fn doc_key(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        let port = self.url.port_or_known_default().unwrap_or_default();
        let mut path: Cow<[u8]> = Cow::Borrowed(self.url.path().as_bytes());
        for _ in 0..MAX_DECODE_ROUNDS {
            let decoded: Cow<[u8]> = percent_decode(&path).into();
            if decoded.len() == path.len() {
                break;
            }
            path = Cow::Owned(decoded.into_owned());
        }
        format!(
            "{}://{}:{}{}",
            self.url.scheme(),
            host,
            port,
            percent_encode(&path, KEY_PATH)
        )
    }
}

impl FromStr for WopiSrc {
    type Err = WopiSrcError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WopiSrc::parse(s)
    }
}

impl fmt::Display for WopiSrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

/// Whether `s` begins with `scheme://` (RFC 3986 scheme characters).
fn starts_with_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once("://") else {
        return false;
    };
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Whether `bytes` hold a C0 control, DEL, or a C1 control (UTF-8 `C2 80`..`C2 9F`).
fn has_control(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| {
        b < 0x20
            || b == 0x7f
            || (b == 0xc2 && bytes.get(i + 1).is_some_and(|n| (0x80..0xa0).contains(n)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NC: &str = "https://nc.example.com/index.php/apps/richdocuments/wopi/files/42_ocabc123";

    fn key(raw: &str) -> String {
        WopiSrc::parse(raw)
            .unwrap_or_else(|e| panic!("{raw}: {e}"))
            .doc_key()
    }

    fn err(raw: &str) -> WopiSrcError {
        match WopiSrc::parse(raw) {
            Ok(w) => panic!("{raw} parsed as {w}"),
            Err(e) => e,
        }
    }

    fn encode(s: &str) -> String {
        percent_encode(s.as_bytes(), NON_ALPHANUMERIC).to_string()
    }

    #[test]
    fn decoded_encoded_and_double_encoded_forms_share_a_key() {
        let decoded = key(NC);
        assert_eq!(
            decoded,
            "https://nc.example.com:443/index.php/apps/richdocuments/wopi/files/42_ocabc123"
        );
        let once = encode(NC);
        assert!(once.starts_with("https%3A%2F%2F"));
        assert_eq!(key(&once), decoded);
        // Lower-case hex, as some clients write it.
        assert_eq!(key(&once.to_ascii_lowercase()), decoded);
        let twice = encode(&once);
        assert!(twice.starts_with("https%253A%252F%252F"));
        assert_eq!(key(&twice), decoded);
        // The form encodeURIComponent gives (only reserved bytes escaped).
        let component = NC.replace(':', "%3A").replace('/', "%2F");
        assert_eq!(key(&component), decoded);
    }

    #[test]
    fn host_case_and_default_port_do_not_change_the_key() {
        assert_eq!(key("https://NC:443/x"), key("https://nc/x"));
        assert_eq!(
            key("HTTPS://Nc.Example.COM/x"),
            key("https://nc.example.com:443/x")
        );
        assert_eq!(key("http://nc:80/x"), "http://nc:80/x");
        assert_ne!(key("http://nc/x"), key("https://nc/x"));
        assert_ne!(key("https://nc:8443/x"), key("https://nc/x"));
        assert_eq!(key("https://nc:8443/x"), "https://nc:8443/x");
        // IPv4 spellings the url crate normalises (hosts a rule could not name otherwise).
        assert_eq!(key("http://0x7f.0.0.1/x"), key("http://127.0.0.1/x"));
        assert_eq!(key("http://2130706433/x"), key("http://127.0.0.1/x"));
        assert_eq!(key("http://[::1]/x"), "http://[::1]:80/x");
    }

    #[test]
    fn path_encodings_give_one_canonical_path() {
        let expected = "https://nc:443/wopi/files/a%20b~c";
        assert_eq!(key("https://nc/wopi/files/a b~c"), expected);
        assert_eq!(key("https://nc/wopi/files/a%20b%7Ec"), expected);
        assert_eq!(key("https://nc/wopi/files/a%2520b~c"), expected);
        assert_eq!(key("https%3A%2F%2Fnc%2Fwopi%2Ffiles%2Fa%2520b~c"), expected);
        // `+` is a space in a form-encoded query value, a plus in a decoded URL.
        assert_eq!(key("https%3A%2F%2Fnc%2Fwopi%2Ffiles%2Fa+b~c"), expected);
        assert_eq!(
            key("https://nc/wopi/files/a+b"),
            "https://nc:443/wopi/files/a%2Bb"
        );
        // Non-ASCII: one spelling whether given raw or encoded.
        assert_eq!(key("https://nc/f/%C3%A9"), key("https://nc/f/é"));
        assert_eq!(key("https://nc/f/%C3%A9"), "https://nc:443/f/%C3%A9");
        // Dot segments resolved by the URL parser, encoded ones too.
        assert_eq!(
            key("https://nc/a/../wopi/files/1"),
            key("https://nc/wopi/files/1")
        );
        assert_eq!(
            key("https://nc/a/%2e%2e/wopi/files/1"),
            key("https://nc/wopi/files/1")
        );
    }

    #[test]
    fn url_accessor_and_display() {
        let w = WopiSrc::parse(&encode(NC)).expect("parses");
        assert_eq!(w.url().as_str(), NC);
        assert_eq!(w.to_string(), NC);
        assert_eq!(w.url().host_str(), Some("nc.example.com"));
        assert_eq!(NC.parse::<WopiSrc>(), Ok(w));
    }

    #[test]
    fn refusals() {
        assert_eq!(err(""), WopiSrcError::Empty);
        assert!(matches!(err("not a url"), WopiSrcError::NotAUrl(_)));
        assert!(matches!(err("/wopi/files/1"), WopiSrcError::NotAUrl(_)));
        assert!(matches!(
            err("nc.example.com/wopi/files/1"),
            WopiSrcError::NotAUrl(_)
        ));
        assert_eq!(
            err("ftp://nc/wopi/files/1"),
            WopiSrcError::Scheme("ftp".into())
        );
        assert_eq!(
            err("file:///etc/passwd"),
            WopiSrcError::Scheme("file".into())
        );
        assert_eq!(
            err("javascript%3Aalert(1)//x"),
            WopiSrcError::Scheme("javascript".into())
        );
        assert_eq!(err("https://user@nc/wopi/files/1"), WopiSrcError::UserInfo);
        assert_eq!(
            err("https://user:pw@nc/wopi/files/1"),
            WopiSrcError::UserInfo
        );
        assert_eq!(err("https://:pw@nc/wopi/files/1"), WopiSrcError::UserInfo);
        assert_eq!(
            err("https%3A%2F%2Fevil%40nc%2Fwopi"),
            WopiSrcError::UserInfo
        );
        assert_eq!(err("https://"), WopiSrcError::NoHost);
        assert_eq!(err("http://:80/x"), WopiSrcError::NoHost);
        assert_eq!(err("https://nc/wopi/files/1#frag"), WopiSrcError::Fragment);
        assert_eq!(err("https://nc/wopi/files/1#"), WopiSrcError::Fragment);
        assert_eq!(
            err("https://nc/wopi/files/1?access_token=x"),
            WopiSrcError::Query
        );
        assert_eq!(err("https://nc/wopi/files/1?"), WopiSrcError::Query);
        assert_eq!(err("https%3A%2F%2Fnc%2Fwopi%3Fa%3Db"), WopiSrcError::Query);
        let long = format!("https://nc/{}", "a".repeat(MAX_LEN));
        assert_eq!(err(&long), WopiSrcError::TooLong { len: long.len() });
        let raw = "a".repeat(MAX_RAW_LEN + 1);
        assert_eq!(err(&raw), WopiSrcError::TooLong { len: raw.len() });
        // The url crate would silently drop tabs and newlines: refused before parsing.
        assert_eq!(
            err("https://nc/wo\npi/files/1"),
            WopiSrcError::ControlCharacter
        );
        assert_eq!(
            err("https://nc/wopi\t/files/1"),
            WopiSrcError::ControlCharacter
        );
        assert_eq!(
            err("https%3A%2F%2Fnc%2Fwo%0Api"),
            WopiSrcError::ControlCharacter
        );
        assert_eq!(
            err("https%3A%2F%2Fnc%2Fwo%7Fpi"),
            WopiSrcError::ControlCharacter
        );
        assert_eq!(err("https://nc/wo\u{85}pi"), WopiSrcError::ControlCharacter);
        assert_eq!(err("https%3A%2F%2Fnc%2F%FF"), WopiSrcError::NotUtf8);
        // Collabora's hexified path copy is not a WOPISrc.
        assert!(matches!(
            err("0x68747470733a2f2f6e632f776f70692f66696c65732f31"),
            WopiSrcError::NotAUrl(_)
        ));
    }

    #[test]
    fn refusals_read_well() {
        assert_eq!(
            err("ftp://nc/x").to_string(),
            "WOPISrc scheme \"ftp\" is not http or https"
        );
        assert_eq!(
            err("https://nc/x?y").to_string(),
            "WOPISrc has a query string"
        );
        assert_eq!(
            err("x").to_string(),
            "WOPISrc is not an absolute URL: relative URL without a base"
        );
        let long = format!("https://nc/{}", "a".repeat(MAX_LEN));
        assert_eq!(
            err(&long).to_string(),
            format!(
                "WOPISrc is {} bytes long, over the 2048-byte limit",
                long.len()
            )
        );
    }
}
