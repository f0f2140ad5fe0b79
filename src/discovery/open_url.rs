//! The `urlsrc` form of the merged discovery: `{public_url}/officeswitch/open/...?`.
//!
//! richdocuments appends `WOPISrc=...&lang=...` to a `urlsrc` as is, and the WOPISrc of a
//! Nextcloud file does not reveal its format. So the format and the action travel in the
//! path, and officeswitch picks the suite (rules, organisation overrides) when the browser
//! posts the open form, not when discovery is built:
//!
//! - `/officeswitch/open/ext/{ext}/{action}?` for actions of extension-keyed apps;
//! - `/officeswitch/open/mime/{type}/{subtype}/{action}?` for MIME-type apps (what richdocuments uses).
//!
//! One origin for every `urlsrc` keeps Nextcloud's CSP (which trusts only the docx
//! `urlsrc` origin) valid for both suites.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use url::Url;

/// Path prefix of every open URL; no editor uses it, so classification is unambiguous.
pub const OPEN_PATH_PREFIX: &str = "/officeswitch/open/";

/// Bytes left as they are in a path segment: what MIME types and extensions use.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'+');

/// How the opened file's format is named.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileFormat {
    /// By extension, lower-case, no dot.
    Ext(String),
    /// By MIME type (`type/subtype`).
    Mime(String),
}

/// What an open URL says: which format, which action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUrl {
    /// Format of the file being opened.
    pub format: FileFormat,
    /// Discovery action name (`edit`, `view`, ...).
    pub action: String,
}

impl OpenUrl {
    /// The `urlsrc` for this open URL on `public_url`: ends in `?`, no placeholders.
    pub fn to_urlsrc(&self, public_url: &Url) -> String {
        let origin = public_url.as_str().trim_end_matches('/');
        let action = utf8_percent_encode(&self.action, SEGMENT);
        match &self.format {
            FileFormat::Ext(ext) => format!(
                "{origin}{OPEN_PATH_PREFIX}ext/{}/{action}?",
                utf8_percent_encode(ext, SEGMENT)
            ),
            FileFormat::Mime(mime) => {
                let (ty, sub) = mime.split_once('/').unwrap_or((mime, ""));
                format!(
                    "{origin}{OPEN_PATH_PREFIX}mime/{}/{}/{action}?",
                    utf8_percent_encode(ty, SEGMENT),
                    utf8_percent_encode(sub, SEGMENT)
                )
            }
        }
    }

    /// Reads an open URL's path (without query); `None` if it is not one.
    pub fn parse_path(path: &str) -> Option<OpenUrl> {
        let rest = path.strip_prefix(OPEN_PATH_PREFIX)?;
        let mut parts = rest.split('/');
        // Segments are split before decoding, so a `/` an editor put in a name (sent as
        // `%2F` by `to_urlsrc`) comes back as part of that name.
        let decode = |s: &str| -> Option<String> {
            let d = percent_decode_str(s).decode_utf8().ok()?;
            (!d.is_empty()).then(|| d.into_owned())
        };
        let format = match parts.next()? {
            "ext" => FileFormat::Ext(decode(parts.next()?)?.to_ascii_lowercase()),
            "mime" => {
                let ty = decode(parts.next()?)?;
                let sub = decode(parts.next()?)?;
                FileFormat::Mime(format!("{ty}/{sub}"))
            }
            _ => return None,
        };
        let action = decode(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        Some(OpenUrl { format, action })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> Url {
        Url::parse("https://office.example.org:8443").unwrap()
    }

    #[test]
    fn names_with_slashes_round_trip() {
        // Found by the `discovery` fuzz target: a discovery action named `view/comment`
        // was offered to Nextcloud with a urlsrc officeswitch could not read back.
        for open in [
            OpenUrl {
                format: FileFormat::Ext("odt".into()),
                action: "view/comment".into(),
            },
            OpenUrl {
                format: FileFormat::Mime("application/vnd/x".into()),
                action: "edit".into(),
            },
        ] {
            let src = open.to_urlsrc(&public());
            let path = Url::parse(&src).unwrap().path().to_string();
            assert_eq!(OpenUrl::parse_path(&path), Some(open));
        }
    }

    #[test]
    fn ext_urlsrc_round_trips() {
        let open = OpenUrl {
            format: FileFormat::Ext("docx".into()),
            action: "edit".into(),
        };
        let src = open.to_urlsrc(&public());
        assert_eq!(
            src,
            "https://office.example.org:8443/officeswitch/open/ext/docx/edit?"
        );
        let path = Url::parse(&src).unwrap().path().to_string();
        assert_eq!(OpenUrl::parse_path(&path), Some(open));
    }

    #[test]
    fn mime_urlsrc_round_trips() {
        let open = OpenUrl {
            format: FileFormat::Mime("application/vnd.ms-word.document.macroEnabled.12".into()),
            action: "view_comment".into(),
        };
        let src = open.to_urlsrc(&public());
        assert!(
            src.ends_with("/mime/application/vnd.ms-word.document.macroEnabled.12/view_comment?")
        );
        let path = Url::parse(&src).unwrap().path().to_string();
        assert_eq!(OpenUrl::parse_path(&path), Some(open));
    }

    #[test]
    fn other_paths_are_not_open_urls() {
        for p in [
            "/officeswitch/open/",
            "/officeswitch/open/ext/docx",
            "/officeswitch/open/ext/docx/edit/more",
            "/officeswitch/open/zip/docx/edit",
            "/officeswitch/open/ext//edit",
            "/officeswitch/open/mime/text/edit",
            "/browser/abc/cool.html",
        ] {
            assert_eq!(OpenUrl::parse_path(p), None, "{p}");
        }
    }
}
