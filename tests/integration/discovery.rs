//! The merged discovery as Nextcloud richdocuments reads it.

use std::collections::BTreeSet;

use http::StatusCode;
use serde_json::Value;

use officeswitch::topology::TopologyStore;

use crate::support::editor::{StandInEditor, StandInOptions, Suite};
use crate::support::officeswitch::OfficeSwitch;
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;
use officeswitch::wopi::proof_key::PublicProofKey;

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const PPTX: &str = "application/vnd.openxmlformats-officedocument.presentationml.presentation";
const ODT: &str = "application/vnd.oasis.opendocument.text";
const ODS: &str = "application/vnd.oasis.opendocument.spreadsheet";
const ODP: &str = "application/vnd.oasis.opendocument.presentation";
const ODG: &str = "application/vnd.oasis.opendocument.graphics";

/// Both stand-in pools and an officeswitch in front of them.
struct Setup {
    cool: StandInEditor,
    oo: StandInEditor,
    os: OfficeSwitch,
}

async fn setup() -> Setup {
    trace_init();
    let (cool, oo) = tokio::join!(
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::OnlyOffice)
    );
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .pool("onlyoffice", "onlyoffice", &[oo.url()])
        .start()
        .await;
    Setup { cool, oo, os }
}

async fn merged(os: &OfficeSwitch) -> String {
    let (status, body) = os.get("/hosting/discovery").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The action names the app `mime` lists, in order, as richdocuments' XPath sees them.
fn action_names(view: &RichdocumentsView, mime: &str) -> Vec<String> {
    view.actions(mime)
        .iter()
        .map(|(name, _)| name.clone())
        .collect()
}

/// `names` with `edit` moved first, as officeswitch lists a suite's actions.
fn edit_first(mut names: Vec<String>) -> Vec<String> {
    names.sort_by_key(|n| n != "edit");
    names
}

#[tokio::test]
async fn ooxml_carries_onlyoffice_actions_and_odf_collabora_actions() {
    let s = setup().await;
    let merged = RichdocumentsView::parse(&merged(&s.os).await);
    let oo = RichdocumentsView::parse(s.oo.discovery_xml());
    let cool = RichdocumentsView::parse(s.cool.discovery_xml());
    for mime in [DOCX, XLSX, PPTX] {
        let names = action_names(&merged, mime);
        assert_eq!(names, edit_first(action_names(&oo, mime)), "{mime}");
        assert_ne!(
            names,
            action_names(&cool, mime),
            "{mime} must not be Collabora's"
        );
        assert_eq!(merged.url_src(mime).map(|(a, _)| a), Some("edit"), "{mime}");
    }
    for mime in [ODT, ODS, ODP, ODG] {
        let names = action_names(&merged, mime);
        assert_eq!(names, action_names(&cool, mime), "{mime}");
        assert_eq!(merged.url_src(mime).map(|(a, _)| a), Some("edit"), "{mime}");
    }
    // OnlyOffice offers odg for viewing only; Collabora edits it: the rules decide.
    assert_eq!(oo.url_src(ODG).map(|(a, _)| a), Some("view"));
}

#[tokio::test]
async fn every_urlsrc_is_on_officeswitch_and_ends_in_question_mark() {
    let s = setup().await;
    let body = merged(&s.os).await;
    for editor in [&s.cool, &s.oo] {
        let host = editor.addr().to_string();
        assert!(
            !body.contains(&host),
            "merged discovery still points at editor {host}"
        );
    }
    let view = RichdocumentsView::parse(&body);
    let mut count = 0;
    for name in view.app_names() {
        for (action, urlsrc) in view.actions(name) {
            count += 1;
            assert!(
                urlsrc.starts_with(&format!("{}/", s.os.public_url)),
                "{name}/{action}: {urlsrc}"
            );
            assert!(urlsrc.ends_with('?'), "{name}/{action}: {urlsrc}");
            assert!(
                !urlsrc.contains('<') && !urlsrc.contains('>'),
                "{name}/{action}: {urlsrc}"
            );
        }
    }
    assert!(count > 100, "only {count} actions");
    // The docx urlsrc origin becomes Nextcloud's only editor origin (CSP).
    let (_, docx) = view.url_src(DOCX).expect("docx app");
    assert!(docx.starts_with(&s.os.public_url));
    assert!(view.url_src("Capabilities").is_some());
}

#[tokio::test]
async fn richdocuments_finds_an_action_for_every_mimetype_either_suite_offers() {
    let s = setup().await;
    let merged = RichdocumentsView::parse(&merged(&s.os).await);
    let mut offered = BTreeSet::new();
    for editor in [&s.cool, &s.oo] {
        let view = RichdocumentsView::parse(editor.discovery_xml());
        offered.extend(
            view.app_names()
                .filter(|n| n.contains('/'))
                .map(String::from),
        );
    }
    assert!(
        offered.len() > 80,
        "stand-ins offer only {} MIME types",
        offered.len()
    );
    for mime in &offered {
        let (_, urlsrc) = merged
            .url_src(mime)
            .unwrap_or_else(|| panic!("no action for {mime} in the merged discovery"));
        assert!(urlsrc.starts_with(&s.os.public_url), "{mime}: {urlsrc}");
    }
}

#[tokio::test]
async fn proof_key_is_officeswitch_own_in_both_encodings() {
    let s = setup().await;
    let view = RichdocumentsView::parse(&merged(&s.os).await);
    let attrs = view
        .proof_key
        .as_ref()
        .expect("merged discovery has a proof-key");
    let ours = s.os.proof_key();
    let public = ours.public();
    assert_eq!(attrs["value"], public.capi_blob_b64());
    assert_eq!(attrs["modulus"], public.modulus_b64());
    assert_eq!(attrs["exponent"], public.exponent_b64());
    // No old key configured: old* repeat the current key, as the editors do.
    assert_eq!(attrs["oldvalue"], attrs["value"]);
    assert_eq!(attrs["oldmodulus"], attrs["modulus"]);
    assert_eq!(attrs["oldexponent"], attrs["exponent"]);
    // Both published forms verify a signature made with the key file's private key.
    let message = b"officeswitch proof key check";
    let signature = ours.sign(message).expect("sign");
    let from_modulus =
        PublicProofKey::from_modulus_exponent_b64(&attrs["modulus"], &attrs["exponent"]).unwrap();
    let from_blob = PublicProofKey::from_capi_blob_b64(&attrs["value"]).unwrap();
    assert!(from_modulus.verify(message, &signature));
    assert!(from_blob.verify(message, &signature));
    // And it is not an editor's key.
    assert_ne!(&from_modulus, s.cool.public_key());
    assert_ne!(&from_modulus, s.oo.public_key());
}

#[tokio::test]
async fn capabilities_are_collabora_based_with_flags_both_suites_support() {
    let s = setup().await;
    let (status, body) = s.os.get("/hosting/capabilities").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let merged: Value = serde_json::from_str(&body).expect("JSON");
    let cool: Value = serde_json::from_str(s.cool.capabilities_json()).unwrap();
    assert_eq!(merged["productName"], cool["productName"]);
    assert_eq!(merged["productVersion"], cool["productVersion"]);
    assert_eq!(merged["productVersionHash"], cool["productVersionHash"]);
    assert_eq!(merged["convert-to"], cool["convert-to"]);
    assert_eq!(merged["hasTemplateSource"], true);
    assert_eq!(merged["hasMobileSupport"], true);
    assert_eq!(merged["hasWASMSupport"], false);
    assert_eq!(merged["hasWopiAccessCheck"], false);
}

#[tokio::test]
async fn a_rolling_upgrade_pool_still_serves_one_answer() {
    trace_init();
    // Two Collabora nodes with different proof keys disagree; the first node speaks.
    let (a, b, oo) = tokio::join!(
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::OnlyOffice)
    );
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[a.url(), b.url()])
        .pool("onlyoffice", "onlyoffice", &[oo.url()])
        .start()
        .await;
    let view = RichdocumentsView::parse(&merged(&os).await);
    assert!(view.url_src(ODT).is_some());
    let (_, ready) = os.readiness().await;
    assert!(
        ready.contains(&format!("discovery of {}/", a.url())),
        "{ready}"
    );
    // Both nodes were asked, concurrently.
    for node in [&a, &b] {
        assert!(
            node.requests()
                .iter()
                .any(|r| r.path_and_query == "/hosting/discovery")
        );
    }
}

#[tokio::test]
async fn a_rotated_key_is_published_as_old() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .with_old_key()
        .start()
        .await;
    let view = RichdocumentsView::parse(&merged(&os).await);
    let attrs = view.proof_key.as_ref().expect("proof-key");
    let (current, old) = (os.proof_key(), os.old_proof_key());
    assert_eq!(attrs["modulus"], current.public().modulus_b64());
    assert_eq!(attrs["value"], current.public().capi_blob_b64());
    assert_eq!(attrs["oldmodulus"], old.public().modulus_b64());
    assert_eq!(attrs["oldexponent"], old.public().exponent_b64());
    assert_eq!(attrs["oldvalue"], old.public().capi_blob_b64());
    assert_ne!(attrs["oldmodulus"], attrs["modulus"]);
}

#[tokio::test]
async fn a_node_announcing_its_own_address_is_listed_in_readyz_and_the_instance_stays_ready() {
    trace_init();
    // Two stand-ins that build their urlsrc on another origin than officeswitch's: the
    // Collabora one on its own address, as coolwsd without server_name does (officeswitch
    // sends each node its own Host); the OnlyOffice one on the `wopi.host` its local.json
    // sets, which wins over the forwarding headers. A third, an OnlyOffice as shipped,
    // follows the forwarding headers and is not listed.
    let key = std::sync::Arc::new(
        tokio::task::spawn_blocking(officeswitch::wopi::proof_key::ProofKey::generate)
            .await
            .expect("key task")
            .expect("a key"),
    );
    let (cool, oo, good) = tokio::join!(
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start_with(
            Suite::OnlyOffice,
            StandInOptions::default()
                .key(key.clone())
                .wopi_host("http://docs.internal:8000")
        ),
        StandInEditor::start_with_key(Suite::OnlyOffice, key.clone()),
    );
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .pool("onlyoffice", "onlyoffice", &[oo.url(), good.url()])
        .start()
        .await;
    merged(&os).await;
    let (status, _) = os.get("/readyz").await;
    let (_, ready) = os.readiness().await;
    // Listed, but the instance stays ready: the node's settings are the same from every
    // instance, so a 503 would take them all out (see discovery/announced.rs).
    assert_eq!(status, StatusCode::OK, "{ready}");
    let public = os.public_url.trim_start_matches("http://");
    let line = ready
        .lines()
        .find(|l| {
            l.contains(&format!(
                "pool collabora node {}/: misconfigured",
                cool.url()
            ))
        })
        .unwrap_or_else(|| panic!("no misconfigured line for the Collabora node:\n{ready}"));
    assert!(
        line.contains(&format!(
            "announces {} instead of {}",
            cool.url(),
            os.public_url
        )),
        "{line}"
    );
    assert!(line.contains(&format!("server_name to {public}")), "{line}");
    let line = ready
        .lines()
        .find(|l| {
            l.contains(&format!(
                "pool onlyoffice node {}/: misconfigured",
                oo.url()
            ))
        })
        .unwrap_or_else(|| panic!("no misconfigured line for the OnlyOffice node:\n{ready}"));
    assert!(
        line.contains(&format!(
            "announces http://docs.internal:8000 instead of {}",
            os.public_url
        )),
        "{line}"
    );
    assert!(line.contains("X-Forwarded-Host"), "{line}");
    assert!(line.contains("wopi.host"), "{line}");
    assert!(
        !ready.contains(&format!("node {}/: misconfigured", good.url())),
        "{ready}"
    );
    // The discovery fetch carried the forwarding headers the proxy sends.
    let fetch = oo
        .requests()
        .into_iter()
        .find(|r| r.path() == "/hosting/discovery")
        .expect("discovery fetched");
    assert_eq!(fetch.headers["x-forwarded-host"], public);
    assert_eq!(fetch.headers["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn a_misconfigured_node_is_logged_once_per_change_not_per_refresh() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    let (_dir, prepared) = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .prepare()
        .await;
    let service =
        prepared.discovery_service(TopologyStore::new(&prepared.config), prepared.rules_store());
    let ((), logs) = crate::support::logs::capture(service.refresh()).await;
    let problems = logs.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("announces another origin than public_url"),
        "{}",
        problems[0]
    );
    assert!(problems[0].contains("server_name"), "{}", problems[0]);
    for _ in 0..2 {
        let ((), logs) = crate::support::logs::capture(service.refresh()).await;
        assert_eq!(logs.problems(), Vec::<String>::new());
    }
    assert_eq!(service.catalog().announced.len(), 1);
    assert_eq!(
        service.catalog().announced[0].node.as_str(),
        format!("{}/", cool.url())
    );
}
