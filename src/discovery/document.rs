//! The WOPI discovery document: model, parser and writer.
//!
//! Both suites serve the same shape (see `shared/notes/wopi-protocol.md`):
//! `<wopi-discovery><net-zone><app name><action name ext urlsrc/>...</app></net-zone>
//! <proof-key .../></wopi-discovery>`. Apps are named either after a product part
//! (`writer`, `Word`: actions keyed by `ext`) or after a MIME type (what richdocuments
//! reads). Anything else in the document (comments, unknown attributes) is dropped.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use crate::wopi::proof_key::PublicProofKey;

/// A parsed discovery document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Discovery {
    /// Every `<app>` of every net-zone, in document order.
    pub apps: Vec<App>,
    /// The `<proof-key>` keys the editor signs WOPI calls with, if it signs.
    pub proof_key: Option<ProofKeyPair>,
}

/// One `<app>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Product part (`writer`, `Word`), a MIME type, or a special name (`Capabilities`).
    pub name: String,
    /// Icon URL, kept so hosts that show it can.
    pub fav_icon_url: Option<String>,
    /// The app's actions, in document order (richdocuments takes the first).
    pub actions: Vec<Action>,
}

/// One `<action>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// `edit`, `view`, `embedview`, `getinfo`...
    pub name: String,
    /// Extension without dot; empty in MIME-type apps.
    pub ext: String,
    /// `default="true"`.
    pub default: bool,
    /// `requires` (`locks,update`).
    pub requires: Option<String>,
    /// `targetext` of conversion actions.
    pub target_ext: Option<String>,
    /// The URL the host sends the browser to.
    pub urlsrc: String,
}

/// The current and previous public proof keys of a `<proof-key>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofKeyPair {
    /// Key of `X-WOPI-Proof`.
    pub current: PublicProofKey,
    /// Key of `X-WOPI-ProofOld`; equals `current` when the editor has no older key.
    pub old: PublicProofKey,
}

/// Why a document is not a usable discovery.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not well-formed XML.
    #[error("malformed XML at byte {position}: {message}")]
    Xml {
        /// Byte offset of the problem.
        position: u64,
        /// What the XML reader said.
        message: String,
    },
    /// Well-formed, but the root is not `<wopi-discovery>` (an HTML error page, say).
    #[error("root element is <{0}>, not <wopi-discovery>")]
    WrongRoot(String),
    /// The body is empty or holds no element.
    #[error("empty document")]
    Empty,
    /// The document ended inside an element.
    #[error("document ends before </wopi-discovery>")]
    Truncated,
    /// No app offers any action.
    #[error("no <app> with an <action>")]
    NoActions,
    /// An `<action>` lacks `name` or `urlsrc`.
    #[error("<action> in app `{app}` lacks the `{attribute}` attribute")]
    MissingAttribute {
        /// App holding the bad action.
        app: String,
        /// Missing attribute.
        attribute: &'static str,
    },
    /// `<proof-key>` is present but does not hold a usable RSA key.
    #[error("<proof-key> is unusable: {0}")]
    ProofKey(String),
}

impl Discovery {
    /// Parses a discovery document as an editor serves it.
    ///
    /// # Errors
    /// [`ParseError`] when the body is not a discovery that offers at least one action.
    pub fn parse(xml: &[u8]) -> Result<Discovery, ParseError> {
        let mut reader = Reader::from_reader(xml);
        reader.config_mut().trim_text(true);
        let mut doc = Discovery::default();
        let mut depth = 0usize;
        let mut saw_root = false;
        let mut current_app: Option<App> = None;
        loop {
            let event = reader.read_event().map_err(|e| ParseError::Xml {
                position: reader.error_position(),
                message: e.to_string(),
            })?;
            match event {
                Event::Start(e) if !saw_root => {
                    root(&e)?;
                    saw_root = true;
                    depth = 1;
                }
                Event::Empty(e) if !saw_root => {
                    root(&e)?;
                    saw_root = true;
                }
                Event::Start(e) => {
                    depth += 1;
                    element(&mut doc, &mut current_app, &e)?;
                }
                Event::Empty(e) => {
                    element(&mut doc, &mut current_app, &e)?;
                    if e.local_name().as_ref() == "app"
                        && let Some(app) = current_app.take()
                    {
                        doc.apps.push(app);
                    }
                }
                Event::End(e) => {
                    depth = depth.saturating_sub(1);
                    if e.local_name().as_ref() == "app"
                        && let Some(app) = current_app.take()
                    {
                        doc.apps.push(app);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if !saw_root {
            return Err(ParseError::Empty);
        }
        if depth != 0 {
            return Err(ParseError::Truncated);
        }
        if !doc.apps.iter().any(|a| !a.actions.is_empty()) {
            return Err(ParseError::NoActions);
        }
        Ok(doc)
    }

    /// Serialises the document the way coolwsd does (attributes in alphabetical order,
    /// one `<net-zone name="external-http">`, `<proof-key>` last).
    pub fn to_xml(&self) -> Vec<u8> {
        let mut w = Writer::new_with_indent(Vec::with_capacity(64 * 1024), b' ', 2);
        // Writing to a Vec cannot fail; the results are ignored for that reason only.
        let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        let _ = w.write_event(Event::Start(BytesStart::new("wopi-discovery")));
        let mut zone = BytesStart::new("net-zone");
        zone.push_attribute(("name", "external-http"));
        let _ = w.write_event(Event::Start(zone));
        for app in &self.apps {
            let mut start = BytesStart::new("app");
            if let Some(icon) = &app.fav_icon_url {
                start.push_attribute(("favIconUrl", icon.as_str()));
            }
            start.push_attribute(("name", app.name.as_str()));
            let _ = w.write_event(Event::Start(start));
            for a in &app.actions {
                let mut el = BytesStart::new("action");
                if a.default {
                    el.push_attribute(("default", "true"));
                }
                el.push_attribute(("ext", a.ext.as_str()));
                el.push_attribute(("name", a.name.as_str()));
                if let Some(r) = &a.requires {
                    el.push_attribute(("requires", r.as_str()));
                }
                if let Some(t) = &a.target_ext {
                    el.push_attribute(("targetext", t.as_str()));
                }
                el.push_attribute(("urlsrc", a.urlsrc.as_str()));
                let _ = w.write_event(Event::Empty(el));
            }
            let _ = w.write_event(Event::End(BytesEnd::new("app")));
        }
        let _ = w.write_event(Event::End(BytesEnd::new("net-zone")));
        if let Some(key) = &self.proof_key {
            let mut el = BytesStart::new("proof-key");
            let attrs = [
                ("exponent", key.current.exponent_b64()),
                ("modulus", key.current.modulus_b64()),
                ("oldexponent", key.old.exponent_b64()),
                ("oldmodulus", key.old.modulus_b64()),
                ("oldvalue", key.old.capi_blob_b64()),
                ("value", key.current.capi_blob_b64()),
            ];
            for (k, v) in &attrs {
                el.push_attribute((*k, v.as_str()));
            }
            let _ = w.write_event(Event::Empty(el));
        }
        let _ = w.write_event(Event::End(BytesEnd::new("wopi-discovery")));
        let mut out = w.into_inner();
        out.push(b'\n');
        out
    }

    /// The app named `name`, if any.
    pub fn app(&self, name: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.name == name)
    }
}

/// Accepts only `<wopi-discovery>` as the root element.
fn root(e: &BytesStart<'_>) -> Result<(), ParseError> {
    let name = e.local_name();
    if name.as_ref() == "wopi-discovery" {
        Ok(())
    } else {
        Err(ParseError::WrongRoot(name.as_ref().to_string()))
    }
}

/// Handles one element inside the root.
fn element(
    doc: &mut Discovery,
    current_app: &mut Option<App>,
    e: &BytesStart<'_>,
) -> Result<(), ParseError> {
    match e.local_name().as_ref() {
        "app" => {
            *current_app = Some(App {
                name: attr(e, "name").unwrap_or_default(),
                fav_icon_url: attr(e, "favIconUrl"),
                actions: Vec::new(),
            });
        }
        "action" => {
            let Some(app) = current_app.as_mut() else {
                return Ok(());
            };
            let name = attr(e, "name").ok_or_else(|| ParseError::MissingAttribute {
                app: app.name.clone(),
                attribute: "name",
            })?;
            let urlsrc = attr(e, "urlsrc").ok_or_else(|| ParseError::MissingAttribute {
                app: app.name.clone(),
                attribute: "urlsrc",
            })?;
            app.actions.push(Action {
                name,
                ext: attr(e, "ext").unwrap_or_default().to_ascii_lowercase(),
                default: attr(e, "default").as_deref() == Some("true"),
                requires: attr(e, "requires"),
                target_ext: attr(e, "targetext"),
                urlsrc,
            });
        }
        "proof-key" => doc.proof_key = Some(proof_key(e)?),
        _ => {}
    }
    Ok(())
}

/// Reads the six attributes of `<proof-key>`; `old*` default to the current key.
fn proof_key(e: &BytesStart<'_>) -> Result<ProofKeyPair, ParseError> {
    let key = |modulus: &str,
               exponent: &str,
               value: &str|
     -> Result<Option<PublicProofKey>, ParseError> {
        match (attr(e, modulus), attr(e, exponent)) {
            (Some(m), Some(x)) => PublicProofKey::from_modulus_exponent_b64(&m, &x)
                .map(Some)
                .map_err(|err| ParseError::ProofKey(format!("{modulus}/{exponent}: {err}"))),
            _ => match attr(e, value) {
                Some(v) => PublicProofKey::from_capi_blob_b64(&v)
                    .map(Some)
                    .map_err(|err| ParseError::ProofKey(format!("{value}: {err}"))),
                None => Ok(None),
            },
        }
    };
    let current = key("modulus", "exponent", "value")?
        .ok_or_else(|| ParseError::ProofKey("neither modulus/exponent nor value".into()))?;
    let old = key("oldmodulus", "oldexponent", "oldvalue")?.unwrap_or_else(|| current.clone());
    Ok(ProofKeyPair { current, old })
}

/// The unescaped value of attribute `name`, if present and valid.
fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| {
            a.normalized_value(XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../shared/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn collabora_fixtures_parse() {
        for name in [
            "collabora-discovery-code-61cf2b4.xml",
            "collabora-discovery-80a6f97-cloudreve.xml",
        ] {
            let d = Discovery::parse(&fixture(name)).unwrap();
            let docx = d
                .app("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
                .unwrap();
            assert_eq!(docx.actions[0].name, "edit", "{name}");
            assert!(d.app("Capabilities").is_some(), "{name}");
            assert!(d.proof_key.is_none(), "{name}");
        }
        let count: usize = Discovery::parse(&fixture("collabora-discovery-code-61cf2b4.xml"))
            .unwrap()
            .apps
            .iter()
            .map(|a| a.actions.len())
            .sum();
        assert_eq!(count, 175, "SOURCES.md counts 175 actions");
    }

    #[test]
    fn onlyoffice_excerpt_parses_with_its_proof_key_and_placeholders_unescaped() {
        let d = Discovery::parse(&fixture("onlyoffice-discovery-reduced-ocis.xml")).unwrap();
        let word = d.app("Word").unwrap();
        assert!(
            word.fav_icon_url
                .as_deref()
                .unwrap()
                .ends_with("favicon.ico")
        );
        let edit = word
            .actions
            .iter()
            .find(|a| a.name == "edit" && a.ext == "docx")
            .unwrap();
        assert!(edit.default);
        assert_eq!(edit.requires.as_deref(), Some("locks,update"));
        assert!(edit.urlsrc.contains("<rs=DC_LLCC&>"), "{}", edit.urlsrc);
        let key = d.proof_key.unwrap();
        assert_eq!(key.current, key.old);
    }

    #[test]
    fn reduced_proof_key_fixture_has_distinct_old_key() {
        let d = Discovery::parse(&fixture("collabora-discovery-proof-key-reduced.xml"));
        // A proof-key alone offers no action: not a usable discovery.
        assert_eq!(d.unwrap_err(), ParseError::NoActions);
    }

    #[test]
    fn bad_bodies_are_rejected_with_a_reason() {
        let full = fixture("collabora-discovery-code-61cf2b4.xml");
        let cases: [(&[u8], &str); 5] = [
            (b"", "empty"),
            (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "root element is <html>"),
            (&full[..full.len() / 2], ""),
            (b"<wopi-discovery><net-zone></net-zone></wopi-discovery>", "no <app>"),
            (b"<wopi-discovery><net-zone><app name='x'><action ext='a'/></app></net-zone></wopi-discovery>", "lacks"),
        ];
        for (body, reason) in cases {
            let err = Discovery::parse(body).unwrap_err().to_string();
            assert!(err.contains(reason), "{err}");
        }
    }

    #[test]
    fn bad_proof_key_is_rejected() {
        let xml = br#"<wopi-discovery><net-zone><app name="a"><action name="view" ext="x" urlsrc="http://e/"/></app></net-zone><proof-key modulus="!!" exponent="AQAB"/></wopi-discovery>"#;
        assert!(matches!(
            Discovery::parse(xml),
            Err(ParseError::ProofKey(_))
        ));
    }
}
