//! Merging the discoveries of every pool into the one document Nextcloud reads.
//!
//! Each format (extension or MIME type) appears once, owned by the pool the rules give it
//! when that pool offers it, else by the most preferred pool that does. Ownership comes
//! from rules, not from who answers: OnlyOffice also offers odt/ods/odp, Collabora also
//! offers docx. Every `urlsrc` is rewritten to officeswitch ([`OpenUrl`]), and the proof
//! key is officeswitch's own.

use std::collections::{BTreeMap, HashSet};

use url::Url;

use super::document::{Action, App, Discovery, ProofKeyPair};
use super::open_url::{FileFormat, OpenUrl};
use crate::rules::RuleSet;

/// One pool's contribution: its name and the discovery one of its nodes served.
#[derive(Debug, Clone, Copy)]
pub struct PoolDiscovery<'a> {
    /// Pool name, as rules know it.
    pub pool: &'a str,
    /// Base URL of the node that served `discovery` (its path prefix is stripped from URLs).
    pub node: &'a Url,
    /// The node's discovery.
    pub discovery: &'a Discovery,
}

/// The merged document and who owns each format in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The document served at `/hosting/discovery`.
    pub discovery: Discovery,
    /// Format -> owning pool, for every format in the document.
    pub owners: BTreeMap<FileFormat, String>,
}

/// App names that are not file formats.
const CAPABILITIES_APP: &str = "Capabilities";
const SETTINGS_APP: &str = "Settings";

/// Builds the merged discovery.
///
/// `pools` lists the pools that have a discovery, in settings-file order; `keys` are
/// officeswitch's own public proof keys.
pub fn merge(
    pools: &[PoolDiscovery<'_>],
    rules: &RuleSet,
    public_url: &Url,
    keys: &ProofKeyPair,
) -> Merged {
    let offers: Vec<Offer<'_>> = pools.iter().map(Offer::of).collect();
    let preference: Vec<&Offer<'_>> = rules
        .preference()
        .iter()
        .filter_map(|name| offers.iter().find(|o| o.pool == name))
        .collect();
    let mut owners = BTreeMap::new();
    let mut apps = Vec::new();

    // Extension-keyed apps (`writer`, `Word`...): each pool's app keeps its name and icon and
    // lists the extensions that pool owns.
    let ext_owner = |ext: &str| -> Option<&str> {
        let by_rule = rules
            .owner_of(ext)
            .filter(|p| offers.iter().any(|o| o.pool == *p && o.has_ext(ext)));
        by_rule.or_else(|| preference.iter().find(|o| o.has_ext(ext)).map(|o| o.pool))
    };
    for offer in &offers {
        for app in &offer.ext_apps {
            let mut seen = HashSet::new();
            let actions: Vec<Action> = app
                .actions
                .iter()
                .filter(|a| !a.ext.is_empty() && ext_owner(&a.ext) == Some(offer.pool))
                .filter(|a| seen.insert((a.name.as_str(), a.ext.as_str())))
                .map(|a| {
                    owners.insert(FileFormat::Ext(a.ext.clone()), offer.pool.to_string());
                    let open = OpenUrl {
                        format: FileFormat::Ext(a.ext.clone()),
                        action: a.name.clone(),
                    };
                    Action {
                        urlsrc: open.to_urlsrc(public_url),
                        ..a.clone()
                    }
                })
                .collect();
            if actions.is_empty() {
                continue;
            }
            let icon = app
                .fav_icon_url
                .as_deref()
                .and_then(|u| on_public_origin(u, offer.node, public_url));
            match apps.iter_mut().find(|a: &&mut App| a.name == app.name) {
                Some(existing) => existing.actions.extend(actions),
                None => apps.push(App {
                    name: app.name.clone(),
                    fav_icon_url: icon,
                    actions,
                }),
            }
        }
    }

    // MIME-type apps: what richdocuments reads (first action wins), so the owner's
    // actions come with `edit` first.
    let mut mimes: Vec<&str> = Vec::new();
    for offer in &offers {
        for (mime, _) in &offer.mime_apps {
            if !mimes.contains(mime) {
                mimes.push(mime);
            }
        }
    }
    for mime in mimes {
        let Some(owner) = mime_owner(mime, &offers, &preference, rules) else {
            continue;
        };
        let Some(mut actions) = owner.mime_actions(mime) else {
            continue;
        };
        actions.sort_by_key(|a| a.name != "edit");
        let format = FileFormat::Mime(mime.to_string());
        for a in &mut actions {
            a.urlsrc = OpenUrl {
                format: format.clone(),
                action: a.name.clone(),
            }
            .to_urlsrc(public_url);
        }
        owners.insert(format, owner.pool.to_string());
        apps.push(App {
            name: mime.to_string(),
            fav_icon_url: None,
            actions,
        });
    }

    // Settings iframe (Collabora): same path, officeswitch origin, no query. coolwsd
    // announces the bare page (`ClientRequestDispatcher`: base + `admin/adminIntegrator
    // Settings.html`) and richdocuments' `CoolFrame` appends `?lang=` to it, so a query
    // here (or a placeholder from a node) would garble the page's address.
    if let Some(offer) = preference.iter().find(|o| !o.settings.is_empty()) {
        let actions: Vec<Action> = offer
            .settings
            .iter()
            .flat_map(|app| &app.actions)
            .filter_map(|a| {
                let url = on_public_origin(&a.urlsrc, offer.node, public_url)?;
                let page = url.split_once('?').map_or(url.as_str(), |(page, _)| page);
                Some(Action {
                    urlsrc: page.to_string(),
                    ..a.clone()
                })
            })
            .collect();
        if !actions.is_empty() {
            apps.push(App {
                name: SETTINGS_APP.to_string(),
                fav_icon_url: None,
                actions,
            });
        }
    }

    // richdocuments' connectivity check requires a `Capabilities` app.
    apps.push(App {
        name: CAPABILITIES_APP.to_string(),
        fav_icon_url: None,
        actions: vec![Action {
            name: "getinfo".into(),
            ext: String::new(),
            default: false,
            requires: Some("locks,update".into()),
            target_ext: None,
            urlsrc: format!("{}hosting/capabilities?", public_url.as_str()),
        }],
    });

    Merged {
        discovery: Discovery {
            apps,
            proof_key: Some(keys.clone()),
        },
        owners,
    }
}

/// What one pool's discovery offers, indexed for merging.
struct Offer<'a> {
    pool: &'a str,
    node: &'a Url,
    ext_apps: Vec<&'a App>,
    /// MIME type -> apps of that name (a document may repeat a MIME app; XPath readers
    /// see their actions concatenated, so this does too).
    mime_apps: Vec<(&'a str, Vec<&'a App>)>,
    exts: HashSet<&'a str>,
    /// `Settings` apps (Collabora's settings iframe), in document order.
    settings: Vec<&'a App>,
}

impl<'a> Offer<'a> {
    fn of(p: &PoolDiscovery<'a>) -> Offer<'a> {
        let mut offer = Offer {
            pool: p.pool,
            node: p.node,
            ext_apps: Vec::new(),
            mime_apps: Vec::new(),
            exts: HashSet::new(),
            settings: Vec::new(),
        };
        for app in &p.discovery.apps {
            if app.name == CAPABILITIES_APP {
                continue;
            }
            if app.name == SETTINGS_APP {
                offer.settings.push(app);
            } else if is_mime(&app.name) {
                match offer.mime_apps.iter_mut().find(|(m, _)| *m == app.name) {
                    Some((_, list)) => list.push(app),
                    None => offer.mime_apps.push((&app.name, vec![app])),
                }
            } else {
                offer.ext_apps.push(app);
                offer.exts.extend(
                    app.actions
                        .iter()
                        .filter(|a| !a.ext.is_empty())
                        .map(|a| a.ext.as_str()),
                );
            }
        }
        offer
    }

    fn has_ext(&self, ext: &str) -> bool {
        self.exts.contains(ext)
    }

    fn has_mime(&self, mime: &str) -> bool {
        self.mime_apps.iter().any(|(m, _)| *m == mime)
    }

    /// The pool's actions for `mime`, first occurrence of each (name, ext) kept.
    fn mime_actions(&self, mime: &str) -> Option<Vec<Action>> {
        let (_, apps) = self.mime_apps.iter().find(|(m, _)| *m == mime)?;
        let mut seen = HashSet::new();
        let actions: Vec<Action> = apps
            .iter()
            .flat_map(|a| &a.actions)
            .filter(|a| seen.insert((a.name.clone(), a.ext.clone())))
            .cloned()
            .collect();
        (!actions.is_empty()).then_some(actions)
    }
}

/// The pool that owns `mime`: the rules' pool of one of its extensions when that pool
/// offers the MIME type, else the most preferred pool that offers it.
fn mime_owner<'o, 'a>(
    mime: &str,
    offers: &'o [Offer<'a>],
    preference: &[&'o Offer<'a>],
    rules: &RuleSet,
) -> Option<&'o Offer<'a>> {
    for ext in extensions_of(mime, offers) {
        if let Some(pool) = rules.owner_of(&ext)
            && let Some(offer) = offers.iter().find(|o| o.pool == pool && o.has_mime(mime))
        {
            return Some(offer);
        }
    }
    preference.iter().copied().find(|o| o.has_mime(mime))
}

/// Extensions that name `mime`: those the editors list on it, then the MIME database's.
fn extensions_of(mime: &str, offers: &[Offer<'_>]) -> Vec<String> {
    let listed = offers
        .iter()
        .flat_map(|o| o.mime_actions(mime).unwrap_or_default())
        .filter(|a| !a.ext.is_empty())
        .map(|a| a.ext);
    let known = mime_guess::get_mime_extensions_str(mime)
        .unwrap_or_default()
        .iter()
        .map(|e| e.to_ascii_lowercase());
    let mut exts: Vec<String> = Vec::new();
    for e in listed.chain(known) {
        if !exts.contains(&e) {
            exts.push(e);
        }
    }
    exts
}

/// Whether an app name is a MIME type (`type/subtype`).
fn is_mime(name: &str) -> bool {
    matches!(name.split_once('/'), Some((t, s)) if !t.is_empty() && !s.is_empty())
}

/// `url` (served by `node`) moved onto officeswitch's origin, the node's base path removed.
/// `None` for anything but an `http(s)` URL with a hierarchical path: another scheme's
/// opaque path is not percent-encoded and could carry anything into the discovery.
fn on_public_origin(url: &str, node: &Url, public_url: &Url) -> Option<String> {
    let parsed = Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
        return None;
    }
    let path = parsed.path();
    let rest = path
        .strip_prefix(node.path())
        .unwrap_or(path.trim_start_matches('/'));
    let mut out = format!("{}{}", public_url.as_str(), rest.trim_start_matches('/'));
    if let Some(q) = parsed.query() {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PoolConfig, SuiteKind};
    use crate::wopi::proof_key::ProofKey;

    fn fixture(name: &str) -> Discovery {
        let path = format!("{}/../shared/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        Discovery::parse(&std::fs::read(path).unwrap()).unwrap()
    }

    fn rules() -> RuleSet {
        let pools: Vec<PoolConfig> = [
            ("collabora", SuiteKind::Collabora),
            ("onlyoffice", SuiteKind::OnlyOffice),
        ]
        .into_iter()
        .map(|(name, kind)| PoolConfig {
            name: name.into(),
            kind,
            nodes: vec![],
            proof: Default::default(),
        })
        .collect();
        RuleSet::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"),
            &pools,
        )
        .unwrap()
    }

    fn merged() -> (Merged, ProofKeyPair) {
        let cool = fixture("collabora-discovery-code-61cf2b4.xml");
        let oo = fixture("onlyoffice-discovery-reduced-ocis.xml");
        let cool_node = Url::parse("http://collabora.test:9980/").unwrap();
        let oo_node = Url::parse("https://test.server.prv/").unwrap();
        let key = ProofKey::generate().unwrap().public().clone();
        let keys = ProofKeyPair {
            current: key.clone(),
            old: key,
        };
        let public = Url::parse("https://office.example.org/").unwrap();
        // OnlyOffice first in pool order: ownership must still follow the rules.
        let pools = [
            PoolDiscovery {
                pool: "onlyoffice",
                node: &oo_node,
                discovery: &oo,
            },
            PoolDiscovery {
                pool: "collabora",
                node: &cool_node,
                discovery: &cool,
            },
        ];
        (merge(&pools, &rules(), &public, &keys), keys)
    }

    fn actions_for_ext<'a>(d: &'a Discovery, ext: &str) -> Vec<(&'a str, &'a str)> {
        d.apps
            .iter()
            .flat_map(|app| app.actions.iter().map(move |a| (app, a)))
            .filter(|(_, a)| a.ext == ext)
            .map(|(app, a)| (app.name.as_str(), a.name.as_str()))
            .collect()
    }

    #[test]
    fn extensions_follow_rules_not_pool_order() {
        let (m, _) = merged();
        let docx = actions_for_ext(&m.discovery, "docx");
        assert_eq!(
            docx,
            [
                ("Word", "view"),
                ("Word", "embedview"),
                ("Word", "editnew"),
                ("Word", "edit")
            ]
        );
        assert_eq!(actions_for_ext(&m.discovery, "odt"), [("writer", "edit")]);
        assert_eq!(m.owners[&FileFormat::Ext("docx".into())], "onlyoffice");
        assert_eq!(m.owners[&FileFormat::Ext("odt".into())], "collabora");
        // No rule names doc; both offer it? Only Collabora does here: it owns it.
        assert_eq!(m.owners[&FileFormat::Ext("doc".into())], "collabora");
    }

    #[test]
    fn odp_mime_app_goes_to_collabora_although_onlyoffice_offers_it() {
        let (m, _) = merged();
        let app = m
            .discovery
            .app("application/vnd.oasis.opendocument.presentation")
            .unwrap();
        assert_eq!(app.actions.len(), 1);
        assert_eq!(app.actions[0].name, "edit");
        assert_eq!(
            app.actions[0].urlsrc,
            "https://office.example.org/officeswitch/open/mime/application/vnd.oasis.opendocument.presentation/edit?"
        );
        let mimes = m
            .discovery
            .apps
            .iter()
            .filter(|a| a.name == app.name)
            .count();
        assert_eq!(mimes, 1, "each MIME type appears once");
    }

    #[test]
    fn every_urlsrc_is_on_officeswitch_and_ends_in_question_mark() {
        let (m, keys) = merged();
        for app in &m.discovery.apps {
            for a in &app.actions {
                assert!(
                    a.urlsrc.starts_with("https://office.example.org/"),
                    "{}",
                    a.urlsrc
                );
                assert!(a.urlsrc.ends_with('?'), "{}", a.urlsrc);
                assert!(!a.urlsrc.contains('<'), "{}", a.urlsrc);
            }
            if let Some(icon) = &app.fav_icon_url {
                assert!(icon.starts_with("https://office.example.org/"), "{icon}");
            }
        }
        assert!(m.discovery.app("Capabilities").is_some());
        assert_eq!(m.discovery.proof_key, Some(keys));
    }

    #[test]
    fn merged_document_survives_its_own_parser() {
        let (m, _) = merged();
        let reparsed = Discovery::parse(&m.discovery.to_xml()).unwrap();
        assert_eq!(reparsed, m.discovery);
    }

    #[test]
    fn urls_that_are_not_http_paths_are_not_moved_onto_officeswitch() {
        let node = Url::parse("http://collabora.test:9980/").unwrap();
        let public = Url::parse("https://office.example.org/").unwrap();
        // Found by fuzzing: an opaque path keeps `<`, `>` and anything else raw.
        for url in [
            "hcollabora.test:9980W=UI_LLCC&><wopisrc=WOPI_SOURCE&>&",
            "javascript:alert(1)",
            "data:text/html,<b>",
        ] {
            assert_eq!(on_public_origin(url, &node, &public), None, "{url}");
        }
        assert_eq!(
            on_public_origin(
                "http://collabora.test:9980/browser/x/a.html",
                &node,
                &public
            )
            .as_deref(),
            Some("https://office.example.org/browser/x/a.html")
        );
    }

    #[test]
    fn settings_iframe_keeps_its_path_on_officeswitch() {
        let settings = fixture("collabora-discovery-settings-reduced.xml");
        let node = Url::parse("http://collabora.test:9980/").unwrap();
        let (_, keys) = merged();
        let public = Url::parse("https://office.example.org/").unwrap();
        let pools = [PoolDiscovery {
            pool: "collabora",
            node: &node,
            discovery: &settings,
        }];
        let m = merge(&pools, &rules(), &public, &keys);
        let app = m.discovery.app("Settings").unwrap();
        let iframe = app.actions.iter().find(|a| a.name == "iframe").unwrap();
        assert_eq!(
            iframe.urlsrc,
            "https://office.example.org/browser/3dc280be53/admin/adminIntegratorSettings.html"
        );
    }
}
