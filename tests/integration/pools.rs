//! Several pools of one suite (issue 14): a Collabora pool dedicated to a big
//! organisation next to the shared one. Rules name pools, not suites; the merged discovery
//! stays one document that richdocuments reads; the organisation's documents, their
//! editor traffic included, never reach the other pool.

use std::collections::BTreeSet;

use http::StatusCode;

use crate::sticky::{editor_request, open_page};
use crate::support::client;
use crate::support::editor::{StandInEditor, Suite};
use crate::support::nextcloud::StandInNextcloud;
use crate::support::officeswitch::OfficeSwitch;
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;

const ODT: &str = "application/vnd.oasis.opendocument.text";
const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

#[tokio::test]
async fn an_organisation_with_a_collabora_pool_of_its_own_never_reaches_the_shared_one() {
    trace_init();
    let (shared, dedicated, oo) = tokio::join!(
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::OnlyOffice),
    );
    let (small, big) = tokio::join!(StandInNextcloud::start(), StandInNextcloud::start());
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[shared.url()])
        .pool("onlyoffice", "onlyoffice", &[oo.url()])
        .pool("cool-big", "collabora", &[dedicated.url()])
        .org("small", &[small.origin()], "")
        .org(
            "big",
            &[big.origin()],
            "[extensions]\nodt = \"cool-big\"\nods = \"cool-big\"\n",
        )
        .start()
        .await;

    // One merged discovery, as richdocuments reads it: every format has one action.
    let (status, xml) = os.get("/hosting/discovery").await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let view = RichdocumentsView::parse(&xml);
    let mut offered = BTreeSet::new();
    for editor in [&shared, &dedicated, &oo] {
        let own = RichdocumentsView::parse(editor.discovery_xml());
        offered.extend(
            own.app_names()
                .filter(|n| n.contains('/'))
                .map(String::from),
        );
    }
    for mime in &offered {
        let (_, urlsrc) = view
            .url_src(mime)
            .unwrap_or_else(|| panic!("no action for {mime} in the merged discovery"));
        assert!(urlsrc.starts_with(&os.public_url), "{mime}: {urlsrc}");
    }
    // One app per MIME type: two pools of a suite do not make duplicates.
    let names: Vec<&str> = view.app_names().collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(names.len(), unique.len(), "an app is listed twice");
    let (status, _) = os.get("/hosting/capabilities").await;
    assert_eq!(status, StatusCode::OK);

    let url = os.public_url.clone();
    for i in 0..15 {
        // The big organisation's text documents, and their editor traffic: its own pool.
        let id = format!("{i}_big");
        let (node, own) = open_page(&url, ODT, &big, &id, "alice").await;
        assert_eq!(node, dedicated.url(), "{id} opened on the shared pool");
        assert_eq!(
            editor_request(&url, &own).await,
            dedicated.url(),
            "{id}: traffic"
        );
        // The small one's: the shared pool.
        let id = format!("{i}_small");
        let (node, own) = open_page(&url, ODT, &small, &id, "bob").await;
        assert_eq!(node, shared.url(), "{id} opened on the dedicated pool");
        assert_eq!(
            editor_request(&url, &own).await,
            shared.url(),
            "{id}: traffic"
        );
    }
    // The organisation goes back to the shared pool: documents open in its own pool stay
    // there, editor traffic included (it follows their pins, not the rules); new ones open
    // in the shared pool.
    let (_, open_own) = open_page(&url, ODT, &big, "kept_big", "alice").await;
    std::fs::write(
        os.rules_dir().join("big.toml"),
        format!("origins = [\"{}\"]\n", big.origin()),
    )
    .expect("rewrite the rules");
    let mut moved = false;
    for i in 0..50 {
        let (node, _) = open_page(&url, ODT, &big, &format!("new{i}_big"), "alice").await;
        if node == shared.url() {
            moved = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(moved, "the rules change never applied");
    assert_eq!(editor_request(&url, &open_own).await, dedicated.url());
    let (node, _) = open_page(&url, ODT, &big, "kept_big", "carol").await;
    assert_eq!(node, dedicated.url(), "an open document changed pools");

    // Formats the big organisation does not move still go where the defaults say.
    let (node, _) = open_page(&url, DOCX, &big, "docx_big", "alice").await;
    assert_eq!(node, oo.url());
    let (status, _) = client::get(&format!("{url}/readyz")).await;
    assert_eq!(status, StatusCode::OK);
}
