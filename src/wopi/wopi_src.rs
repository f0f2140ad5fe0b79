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

use super::token;

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
    /// A host spelt as no host writes its own address: a trailing dot, or full-width or
    /// ideographic dots and digits. The url crate reads them as an ordinary host, so the
    /// organisation would match, but officeswitch calls the host as it was written, and
    /// that name resolves nowhere: refused at the open, not as a 502 later.
    #[error("WOPISrc host is not spelt as a host writes it")]
    HostSpelling,
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
        // The text, and the host as parsed: percent-encoded bytes in the authority can
        // decode to a final dot that the text does not show (found by fuzzing).
        if odd_host_spelling(&value) || url.host_str().is_some_and(|h| h.ends_with('.')) {
            return Err(WopiSrcError::HostSpelling);
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

/// Longest raw value the allocation-free path of [`with_key`] takes; longer ones go
/// through [`WopiSrc::parse`].
const FAST_RAW_LEN: usize = 1536;

/// Longest decoded value the allocation-free path takes: a third of [`MAX_LEN`] and less,
/// so that even a URL the url crate would percent-encode throughout stays under
/// [`MAX_LEN`], as [`WopiSrc::parse`] requires.
const FAST_MAX_LEN: usize = 512;

/// Room for a key from a value of at most [`FAST_MAX_LEN`] bytes (`scheme://host:port`
/// and the path with every byte written `%XX`).
const FAST_KEY_LEN: usize = 16 + 3 * FAST_MAX_LEN;

/// A document's identity as the router needs it, borrowed: the origin (to find the
/// organisation) and the canonical key (to hash onto a node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocRef<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Host as [`Url::host_str`] gives it (lower-case, IDNA, canonical IP literal).
    pub host: &'a str,
    /// Port, the scheme's default made explicit.
    pub port: u16,
    /// The key [`WopiSrc::doc_key`] gives, byte for byte.
    pub key: &'a [u8],
}

impl DocRef<'_> {
    /// The origin as `Url::origin().ascii_serialization()` writes it (default port left
    /// out), for messages.
    pub fn origin(&self) -> String {
        let default = match self.scheme {
            "https" => 443,
            _ => 80,
        };
        if self.port == default {
            format!("{}://{}", self.scheme, self.host)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Parses `raw` as [`WopiSrc::parse`] does and hands `f` the document's origin and key
/// ([`WopiSrc::doc_key`]), without allocating for the spellings editors send: a plain
/// `http(s)://host[:port]/path` WOPISrc, raw or percent-encoded up to three times. Anything
/// unusual (upper-case or non-ASCII hosts, IP literals the url crate would rewrite, user
/// info, dot segments, over 512 bytes...) goes through [`WopiSrc::parse`] and
/// [`WopiSrc::doc_key`], so results and errors are always theirs.
///
/// # Errors
/// The [`WopiSrcError`] [`WopiSrc::parse`] gives.
pub fn with_key<R>(raw: &str, f: impl FnOnce(DocRef<'_>) -> R) -> Result<R, WopiSrcError> {
    let mut value = [0u8; FAST_RAW_LEN];
    let mut key = [0u8; FAST_KEY_LEN];
    if let Some(doc) = fast_doc(raw, &mut value, &mut key) {
        return Ok(f(doc));
    }
    let wopi_src = WopiSrc::parse(raw)?;
    let key = wopi_src.doc_key();
    let url = wopi_src.url();
    Ok(f(DocRef {
        scheme: url.scheme(),
        host: url.host_str().unwrap_or_default(),
        port: url.port_or_known_default().unwrap_or_default(),
        key: key.as_bytes(),
    }))
}

/// The allocation-free path of [`with_key`]: `None` whenever `raw` is not a plain
/// WOPISrc it can be sure to read exactly as the url crate would.
fn fast_doc<'a>(
    raw: &str,
    buf: &'a mut [u8; FAST_RAW_LEN],
    key: &'a mut [u8; FAST_KEY_LEN],
) -> Option<DocRef<'a>> {
    if raw.is_empty() || raw.len() > FAST_RAW_LEN {
        return None;
    }
    let mut len = raw.len();
    buf[..len].copy_from_slice(raw.as_bytes());
    if has_control(&buf[..len]) {
        return None;
    }
    // The decoding rounds of `WopiSrc::parse`, in place (decoding only shrinks); each
    // round checks what it writes for control bytes, as `parse` checks every round.
    for round in 0..MAX_DECODE_ROUNDS {
        let value = &mut buf[..len];
        // Only http(s) can take this path; any other scheme ends up on the slow path,
        // which stops decoding at the same point.
        if value.starts_with(b"https://") || value.starts_with(b"http://") || !value.contains(&b'%')
        {
            break;
        }
        len = decode_round(value, round == 0)?;
        std::str::from_utf8(&buf[..len]).ok()?;
    }
    let value = &buf[..len];
    if value.is_empty()
        || value.len() > FAST_MAX_LEN
        // The url crate trims trailing spaces, reads `\` as `/`.
        || value.last() == Some(&b' ')
        || value.iter().any(|b| matches!(b, b'?' | b'#' | b'\\'))
    {
        return None;
    }
    let (scheme, default_port, start) = if value.starts_with(b"https://") {
        ("https", 443, 8)
    } else if value.starts_with(b"http://") {
        ("http", 80, 7)
    } else {
        return None;
    };
    let path_start = start + value[start..].iter().position(|&b| b == b'/')?;
    let authority = &value[start..path_start];
    let (host, port) = match authority.iter().position(|&b| b == b':') {
        Some(i) => (&authority[..i], parse_port(&authority[i + 1..])?),
        None => (authority, default_port),
    };
    if !is_plain_host(host) || has_dot_segment(&value[path_start..]) {
        return None;
    }
    let host_end = start + host.len();

    let (head, tail) = buf.split_at_mut(path_start);
    let host = std::str::from_utf8(&head[start..host_end]).ok()?;
    // `WopiSrc::doc_key`'s path: decoded to a fixed point (at most 3 rounds). Decoding
    // what the url crate serialises gives what decoding the value's own path gives: it
    // only escapes bytes that are neither `%` nor hex digits.
    let mut path_len = len - path_start;
    for _ in 0..MAX_DECODE_ROUNDS {
        if !tail[..path_len].contains(&b'%') {
            break;
        }
        let n = decode_in_place(&mut tail[..path_len]);
        if n == path_len {
            break;
        }
        path_len = n;
    }
    let mut out = Writer { buf: key, len: 0 };
    out.put(scheme.as_bytes());
    out.put(b"://");
    out.put(host.as_bytes());
    out.put(b":");
    out.put_u16(port);
    for &b in &tail[..path_len] {
        if KEEP_IN_KEY[usize::from(b)] {
            out.byte(b);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.byte(b'%');
            out.byte(HEX[usize::from(b >> 4)]);
            out.byte(HEX[usize::from(b & 0xf)]);
        }
    }
    let Writer { buf: key, len } = out;
    Some(DocRef {
        scheme,
        host,
        port,
        key: &key[..len],
    })
}

/// Bytes a key path keeps as they are: unreserved characters and `/`.
const KEEP_IN_KEY: [bool; 256] = {
    let mut keep = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        keep[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'/');
        b += 1;
    }
    keep
};

/// One percent-decoding round in place (`+` read as space when `plus`); `None` when a
/// decoded byte is a control (C0, DEL, or the second byte of a UTF-8 C1 control).
fn decode_round(bytes: &mut [u8], plus: bool) -> Option<usize> {
    let mut read = 0;
    let mut write = 0;
    let mut previous = 0u8;
    while read < bytes.len() {
        let mut b = bytes[read];
        read += 1;
        if b == b'%'
            && let (Some(hi), Some(lo)) =
                (hex_value(bytes.get(read)), hex_value(bytes.get(read + 1)))
        {
            b = (hi << 4) | lo;
            read += 2;
        } else if plus && b == b'+' {
            b = b' ';
        }
        if b < 0x20 || b == 0x7f || (previous == 0xc2 && (0x80..0xa0).contains(&b)) {
            return None;
        }
        bytes[write] = b;
        write += 1;
        previous = b;
    }
    Some(write)
}

/// Appends to a fixed buffer (sized so that it cannot overflow).
struct Writer<'a> {
    buf: &'a mut [u8; FAST_KEY_LEN],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn put_u16(&mut self, n: u16) {
        let mut digits = [0u8; 5];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&digits[i..]);
    }
}

/// Percent-decodes `bytes` in place as `percent_decode` does (`%` and two hex digits);
/// returns the decoded length.
fn decode_in_place(bytes: &mut [u8]) -> usize {
    let mut read = 0;
    let mut write = 0;
    while read < bytes.len() {
        let b = bytes[read];
        if b == b'%'
            && let (Some(hi), Some(lo)) = (
                hex_value(bytes.get(read + 1)),
                hex_value(bytes.get(read + 2)),
            )
        {
            bytes[write] = (hi << 4) | lo;
            read += 3;
        } else {
            bytes[write] = b;
            read += 1;
        }
        write += 1;
    }
    write
}

/// The value of a hex digit.
fn hex_value(b: Option<&u8>) -> Option<u8> {
    match *b? {
        d @ b'0'..=b'9' => Some(d - b'0'),
        d @ b'a'..=b'f' => Some(d - b'a' + 10),
        d @ b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

/// A port written as 1 to 5 decimal digits, up to 65535.
fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok()
}

/// Whether the url crate keeps `host` as it is: lower-case ASCII labels of letters,
/// digits and `-` (no punycode), within DNS lengths, and not a number it would read as
/// IPv4 unless already a canonical dotted quad.
fn is_plain_host(host: &[u8]) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let labels_ok = host.split(|&b| b == b'.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with(b"xn--")
            && label
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    });
    if !labels_ok {
        return false;
    }
    let last = host.rsplit(|&b| b == b'.').next().unwrap_or_default();
    !last.first().is_some_and(u8::is_ascii_digit) || is_dotted_quad(host)
}

/// Whether the host of `value`, as written (before the url crate maps it), ends with a dot
/// or holds a character of the full-width forms (`．`, `０`-`９`...) or an ideographic
/// full stop.
fn odd_host_spelling(value: &str) -> bool {
    let after_scheme = value.split_once("://").map_or(value, |(_, rest)| rest);
    let authority = after_scheme
        .split(['/', '?', '#', '\\'])
        .next()
        .unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(host, _)| host);
    host.ends_with('.')
        || authority
            .chars()
            .any(|c| matches!(c, '\u{3002}' | '\u{FF00}'..='\u{FFEF}'))
}

/// Whether `host` is four decimal numbers 0-255 without leading zeros.
fn is_dotted_quad(host: &[u8]) -> bool {
    let mut count = 0;
    let ok = host.split(|&b| b == b'.').all(|part| {
        count += 1;
        !part.is_empty()
            && part.len() <= 3
            && part.iter().all(u8::is_ascii_digit)
            && (part.len() == 1 || part[0] != b'0')
            && parse_port(part).is_some_and(|n| n <= 255)
    });
    ok && count == 4
}

/// Whether `path` has a `.` or `..` segment, in any spelling the url crate resolves
/// (`%2e` in either case).
fn has_dot_segment(path: &[u8]) -> bool {
    // Every dot segment starts `/.` or `/%`: most paths have neither.
    if !path
        .windows(2)
        .any(|w| w[0] == b'/' && (w[1] == b'.' || w[1] == b'%'))
    {
        return false;
    }
    path.split(|&b| b == b'/').any(|segment| {
        [&b"."[..], b"..", b"%2e", b".%2e", b"%2e.", b"%2e%2e"]
            .iter()
            .any(|dot| segment.eq_ignore_ascii_case(dot))
    })
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
    bytes.iter().any(|&b| b < 0x20 || b == 0x7f)
        || (bytes.contains(&0xc2)
            && bytes
                .windows(2)
                .any(|w| w[0] == 0xc2 && (0x80..0xa0).contains(&w[1])))
}

/// The file id of a `WOPISrc` officeswitch minted itself, `{files_base}{id}`, where
/// `files_base` is `{public_url}wopi/files/`; `None` for any other value. `raw` is the
/// query parameter as it came: plain, or percent-encoded up to three times. Only the form
/// of the id is checked ([`token::is_file_id`]); the token decides whether it is any good.
///
/// Every request of an open document carries this, so the usual spellings (plain and
/// encoded once) are one backward step and one forward pass over the bytes, without
/// allocating.
pub fn own_file_id<'a>(raw: &'a str, files_base: &str) -> Option<&'a str> {
    // An id is `FILE_ID_LEN` bytes of `[A-Za-z0-9_-]`, the same in every spelling.
    let start = raw.len().checked_sub(token::FILE_ID_LEN)?;
    let id = raw.get(start..)?;
    if !token::is_file_id(id) {
        return None;
    }
    let prefix = &raw.as_bytes()[..start];
    if prefix.eq_ignore_ascii_case(files_base.as_bytes())
        || decodes_to(prefix, files_base.as_bytes())
    {
        return Some(id);
    }
    // Encoded more than once: decode (allocating) and compare.
    let mut decoded = Cow::Borrowed(&raw[..start]);
    for _ in 0..MAX_DECODE_ROUNDS {
        if !decoded.contains('%') {
            break;
        }
        decoded = Cow::Owned(
            percent_decode(decoded.as_bytes())
                .decode_utf8()
                .ok()?
                .into_owned(),
        );
        if decoded
            .as_bytes()
            .eq_ignore_ascii_case(files_base.as_bytes())
        {
            return Some(id);
        }
    }
    None
}

/// Whether `encoded`, percent-decoded once, is `expected` (ASCII case-insensitive).
fn decodes_to(encoded: &[u8], expected: &[u8]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < encoded.len() {
        let byte = match encoded[i] {
            b'%' => match (hex_value(encoded.get(i + 1)), hex_value(encoded.get(i + 2))) {
                (Some(h), Some(l)) => {
                    i += 3;
                    h << 4 | l
                }
                _ => return false,
            },
            other => {
                i += 1;
                other
            }
        };
        if expected
            .get(j)
            .is_none_or(|e| !e.eq_ignore_ascii_case(&byte))
        {
            return false;
        }
        j += 1;
    }
    j == expected.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_file_ids_are_read_in_every_spelling() {
        let base = "https://os.example/wopi/files/";
        let id = "ABCDEFGHabcdefgh0123456789_-abcd";
        for raw in [
            format!("https://os.example/wopi/files/{id}"),
            format!("https%3A%2F%2Fos.example%2Fwopi%2Ffiles%2F{id}"),
            format!("https%3a%2f%2fOS.EXAMPLE%2fwopi%2ffiles%2f{id}"),
            format!("https%253A%252F%252Fos.example%252Fwopi%252Ffiles%252F{id}"),
        ] {
            assert_eq!(own_file_id(&raw, base), Some(id), "{raw}");
        }
        for raw in [
            format!("https://other.example/wopi/files/{id}"),
            format!("https://os.example/wopi/files/x/{id}"),
            format!("http://os.example/wopi/files/{id}"),
            format!("https://os.example/index.php/apps/richdocuments/wopi/files/{id}"),
            "https://os.example/wopi/files/".to_string(),
            "https%3A%2F%2Fos.example%2Fwopi%2Ffiles%2F".to_string(),
            String::new(),
            "%".to_string(),
            "%2".to_string(),
            format!("https://os.example/wopi/files/x{id}"),
            "https://os.example/wopi/files/short".to_string(),
            format!("https%3A%2F%2Fos.example%2Fwopi%2Ffiles%2{id}"),
        ] {
            assert_eq!(own_file_id(&raw, base), None, "{raw}");
        }
    }

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
        // Spellings the url crate maps to an ordinary host but no host can be called by
        // (issue 13 item 6).
        for odd in [
            "http://127.0.0.21./wopi/files/1",
            "https://nc.example./wopi/files/1",
            "https://nc.example%2E/wopi/files/1",
            "http://127\u{FF0E}0\u{FF0E}0\u{FF0E}21/wopi/files/1",
            "https://nc\u{3002}example/wopi/files/1",
            "http://\u{FF11}27.0.0.1/wopi/files/1",
        ] {
            assert_eq!(err(odd), WopiSrcError::HostSpelling, "{odd}");
            assert_eq!(
                with_key(odd, |_| ()).unwrap_err(),
                WopiSrcError::HostSpelling,
                "{odd}"
            );
        }
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

    /// What the slow path gives: origin and key, or the error.
    fn slow(raw: &str) -> Result<(String, String, u16, String), WopiSrcError> {
        WopiSrc::parse(raw).map(|w| {
            let url = w.url();
            (
                url.scheme().to_string(),
                url.host_str().unwrap_or_default().to_string(),
                url.port_or_known_default().unwrap_or_default(),
                w.doc_key(),
            )
        })
    }

    /// What the allocation-free path gives, `None` when it hands over to the slow one.
    fn fast(raw: &str) -> Option<(String, String, u16, String)> {
        let mut buf = [0u8; FAST_RAW_LEN];
        let mut key = [0u8; FAST_KEY_LEN];
        fast_doc(raw, &mut buf, &mut key).map(|d| {
            (
                d.scheme.to_string(),
                d.host.to_string(),
                d.port,
                String::from_utf8(d.key.to_vec()).expect("ASCII key"),
            )
        })
    }

    /// Checks that `raw` gives the same through `with_key` as through `parse` +
    /// `doc_key`; returns whether the fast path took it.
    fn same(raw: &str) -> bool {
        let expected = slow(raw);
        let got = with_key(raw, |d| {
            let s = d.origin();
            (
                d.scheme.to_string(),
                d.host.to_string(),
                d.port,
                String::from_utf8(d.key.to_vec()).expect("ASCII key"),
                s,
            )
        });
        match (&expected, &got) {
            (Ok(e), Ok(g)) => {
                assert_eq!((&e.0, &e.1, e.2, &e.3), (&g.0, &g.1, g.2, &g.3), "{raw:?}");
                let url = WopiSrc::parse(raw).expect("parses").url().clone();
                assert_eq!(g.4, url.origin().ascii_serialization(), "{raw:?}");
            }
            (Err(e), Err(g)) => assert_eq!(e, g, "{raw:?}"),
            _ => panic!("{raw:?}: slow {expected:?}, with_key {got:?}"),
        }
        match fast(raw) {
            Some(f) => {
                assert_eq!(Ok(f), expected, "{raw:?}: the fast path differs");
                true
            }
            None => false,
        }
    }

    /// Small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }

        fn of<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    /// The spellings a value travels in: as is, encoded 1 to 4 times (all bytes, or only
    /// `:`, `/`, `?`, `#`, `%` and space as encodeURIComponent does), lower-case hex,
    /// spaces as `+`.
    fn spellings(url: &str) -> Vec<String> {
        let component = |s: &str| {
            s.replace('%', "%25")
                .replace(':', "%3A")
                .replace('/', "%2F")
                .replace('?', "%3F")
                .replace('#', "%23")
                .replace(' ', "%20")
        };
        let once = encode(url);
        let twice = encode(&once);
        vec![
            url.to_string(),
            once.clone(),
            once.to_ascii_lowercase(),
            once.replace("%20", "+"),
            twice.clone(),
            encode(&twice),
            encode(&encode(&twice)),
            component(url),
            component(url).replace("%20", "+"),
            component(&component(url)),
        ]
    }

    #[test]
    fn fast_path_takes_the_usual_spellings() {
        // All but the one encoded four times (three rounds of decoding do not reach a URL).
        for raw in spellings(NC).iter().filter(|r| !r.contains("%252525")) {
            assert!(same(raw), "{raw} not taken by the fast path");
        }
        for raw in [
            "https://nc:8443/wopi/files/1",
            "http://nc:80/wopi/files/1",
            "http://10.0.0.1/wopi/files/1",
            "https://nc/wopi/files/a%2520b~c",
            "https%3A%2F%2Fnc%2Fwopi%2Ffiles%2Fa+b~c",
            "https://nc/f/é",
        ] {
            assert!(same(raw), "{raw} not taken by the fast path");
        }
    }

    #[test]
    fn fast_path_matches_parse_and_doc_key() {
        let schemes = ["http", "https", "HTTP", "Https", "ftp", "http:", "https:/"];
        let hosts = [
            "nc",
            "nc.example.com",
            "NC.Example.COM",
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "127.1",
            "0x7f.0.0.1",
            "0177.0.0.1",
            "2130706433",
            "1.2.3.04",
            "256.1.1.1",
            "1.2.3.4.5",
            "1abc",
            "a.1b",
            "a.0x1",
            "b1.c",
            "xn--nxasmq6b.com",
            "xn--abc",
            "XN--nxasmq6b.com",
            "a..b",
            "nc.",
            ".nc",
            "-nc",
            "nc-",
            "a_b",
            "[::1]",
            "[0:0::1]",
            "user@nc",
            "user:pw@nc",
            ":pw@nc",
            "nc%2Ecom",
            "n%63",
            "é.com",
            "ÉCOLE.fr",
            "localhost",
            "",
            " nc",
            "nc ",
            "n\tc",
            "nc\u{85}",
        ];
        let ports = [
            "",
            ":443",
            ":80",
            ":8443",
            ":0443",
            ":00080",
            ":",
            ":0",
            ":65535",
            ":65536",
            ":99999999",
            ":x",
            ":44 3",
        ];
        let paths = [
            "",
            "/",
            "//",
            "/wopi/files/42_ocabc123",
            "/index.php/apps/richdocuments/wopi/files/4242_ocabc123def",
            "/a b",
            "/a+b",
            "/a%20b",
            "/a%2520b",
            "/a%25252520b",
            "/a%2525252520b",
            "/./x",
            "/../x",
            "/a/..",
            "/a/.",
            "/a/%2e%2e/x",
            "/a/%2E./x",
            "/a/.%2E/x",
            "/%2e/x",
            "/a/%252e%252e/x",
            "/a/.../b",
            "/.hidden/..x",
            "/é/ü",
            "/%C3%A9",
            "/%c3%a9",
            "/%FF",
            "/%25FF",
            "/a?b",
            "/a?",
            "/a#b",
            "/a#",
            "/a\\b",
            "/a%5Cb",
            "/a%3Fb",
            "/a%23b",
            "/a%2Fb",
            "/~x_y-z.w",
            "/a%",
            "/a%4",
            "/a%zz",
            "/a%%41",
            "/a%%2541",
            "/{}<>\"`^|[]@!$&'()*,;=",
            "/a ",
            "/a%20",
            "/a%00",
            "/a%7f",
            "/a%C2%85",
            "/0x68747470733a2f2f6e63",
            "/a\u{1F600}b",
            "/\u{FEFF}x",
        ];
        let mut rng = Rng(0x000f_f1ce_51c4);
        let mut taken = 0;
        let mut total = 0;
        for _ in 0..6000 {
            let url = format!(
                "{}://{}{}{}",
                rng.of(&schemes),
                rng.of(&hosts),
                rng.of(&ports),
                rng.of(&paths)
            );
            for raw in spellings(&url) {
                total += 1;
                taken += usize::from(same(&raw));
            }
        }
        // Long values around the fast path's and the parser's limits.
        for n in [
            400,
            490,
            500,
            510,
            600,
            700,
            1000,
            MAX_LEN - 20,
            MAX_LEN,
            MAX_LEN + 5,
        ] {
            for fill in ["a", "é", " ", "%2e", "%25"] {
                let url = format!("https://nc/{}", fill.repeat(n / fill.len()));
                for raw in spellings(&url) {
                    total += 1;
                    taken += usize::from(same(&raw));
                }
            }
        }
        for raw in [
            "",
            "x",
            "%",
            "%%",
            "+",
            "https://",
            "https:///nc/x",
            "https:nc/x",
            "https:/nc/x",
            "https://nc",
            "https://nc:443",
            "0x68747470733a2f2f6e632f776f70692f66696c65732f31",
            "https%3A%2F%2Fnc%2F%FF",
            "https%3A%2F%2Fevil%40nc%2Fwopi",
            "javascript%3Aalert(1)//x",
            "https%253A%252F%252Fnc%252Fx+y",
            "https%3A%2F%2Fnc%2Fx%2Ba+b",
            "  https://nc/x",
            "https://nc/x\u{a0}",
        ] {
            total += 1;
            taken += usize::from(same(raw));
        }
        // The fast path is not vacuous, nor the slow path unexercised.
        assert!(taken > 1000, "{taken} of {total} taken by the fast path");
        assert!(
            taken * 2 < total,
            "{taken} of {total} taken by the fast path"
        );
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
