//! Reads a discovery document exactly the way Nextcloud richdocuments does.
//!
//! Independent of officeswitch's own parser on purpose: this is the consumer's view
//! (`lib/WOPI/Parser.php`, `lib/Service/DiscoveryService.php`, see
//! `shared/fixtures/RICHDOCUMENTS-USAGE.md`): apps are looked up by name with the XPath
//! `/wopi-discovery/net-zone/app[@name=NAME]/action`, the first action wins whatever its
//! name, `\.` in `urlsrc` becomes `.`, and `//proof-key` attributes are read as strings.

use std::collections::HashMap;

use quick_xml::Reader;
use quick_xml::events::Event;

/// The parts of a discovery richdocuments reads.
#[derive(Debug, Default)]
pub struct RichdocumentsView {
    /// App name -> its actions (name, urlsrc), in document order, only for apps that are
    /// children of `/wopi-discovery/net-zone`.
    apps: HashMap<String, Vec<(String, String)>>,
    /// Attributes of the first `proof-key` element anywhere.
    pub proof_key: Option<HashMap<String, String>>,
}

impl RichdocumentsView {
    /// Parses `xml`; panics if it is not well-formed (richdocuments would fail too).
    pub fn parse(xml: &str) -> RichdocumentsView {
        let mut reader = Reader::from_str(xml);
        let mut view = RichdocumentsView::default();
        let mut path: Vec<String> = Vec::new();
        let mut app: Option<String> = None;
        loop {
            let event = reader.read_event().expect("well-formed XML");
            let (start, empty) = match &event {
                Event::Start(e) => (Some(e.clone()), false),
                Event::Empty(e) => (Some(e.clone()), true),
                _ => (None, false),
            };
            if let Some(e) = start {
                let name = e.local_name().as_ref().to_string();
                let attrs: HashMap<String, String> = e
                    .attributes()
                    .flatten()
                    .map(|a| {
                        let value = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .expect("attribute");
                        (a.key.local_name().as_ref().to_string(), value.into_owned())
                    })
                    .collect();
                let parents: Vec<&str> = path.iter().map(String::as_str).collect();
                match (name.as_str(), parents.as_slice()) {
                    ("app", ["wopi-discovery", "net-zone"]) => {
                        let n = attrs.get("name").cloned().unwrap_or_default();
                        view.apps.entry(n.clone()).or_default();
                        app = Some(n);
                    }
                    ("action", ["wopi-discovery", "net-zone", "app"]) => {
                        if let Some(app) = &app {
                            let urlsrc = attrs
                                .get("urlsrc")
                                .cloned()
                                .unwrap_or_default()
                                .replace("\\.", ".");
                            let action = attrs.get("name").cloned().unwrap_or_default();
                            view.apps.get_mut(app).expect("app").push((action, urlsrc));
                        }
                    }
                    ("proof-key", _) if view.proof_key.is_none() => view.proof_key = Some(attrs),
                    _ => {}
                }
                if !empty {
                    path.push(name);
                }
            }
            match event {
                Event::End(_) if path.pop().as_deref() == Some("app") => app = None,
                Event::Eof => break,
                _ => {}
            }
        }
        view
    }

    /// `getUrlSrc(name)`: the first action of the app named `name`, as (action, urlsrc).
    pub fn url_src(&self, name: &str) -> Option<(&str, &str)> {
        self.apps
            .get(name)
            .and_then(|actions| actions.first())
            .map(|(a, u)| (a.as_str(), u.as_str()))
    }

    /// All actions of the apps named `name`, as (action, urlsrc), in document order.
    pub fn actions(&self, name: &str) -> &[(String, String)] {
        self.apps.get(name).map_or(&[], Vec::as_slice)
    }

    /// Every app name.
    pub fn app_names(&self) -> impl Iterator<Item = &str> {
        self.apps.keys().map(String::as_str)
    }
}
