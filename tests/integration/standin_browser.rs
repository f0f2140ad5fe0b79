//! Users open documents through officeswitch in a real browser, with the stand-in editors
//! (issue 11): the flows of `real_browser.rs`, in seconds and without the real editors.
//!
//! The stand-ins behave as the real editors do where a browser can tell
//! (`shared/notes/real-editors.md` §1-3, §6; [`crate::support::editor`]): the Collabora
//! page builds its WebSocket URL on its `server_name` and the `WOPISrc` of its own address,
//! carries coolwsd's CSP (framing only on its own host and the `WOPISrc`'s) and refuses a
//! WebSocket from another origin; the ONLYOFFICE page loads `api.js` by a relative address,
//! which creates the versioned editor frame, which fetches `plugins.json`/`themes.json` and
//! opens its socket below the version. Both check the echo and post `Document_Loaded` to
//! the Nextcloud page. So these tests fail if officeswitch serves a page at the wrong
//! address, misroutes a resolved path, drops the CSP rewrite or splits a document.
//!
//! Set-up: two stand-in nodes per suite (the Collabora ones with `server_name` =
//! officeswitch's public host and port, as docs/operations.md asks), officeswitch
//! in-process, two organisations each with a stand-in Nextcloud (WOPI host, on `127.0.0.1`)
//! and a stand-in Nextcloud page (`nextcloud.localhost` / `cloud.localhost`, which only
//! Chromium resolves),
//! the second organisation sending docx to Collabora. Each test prints what every user's
//! browser saw when it fails. Without Chromium each test prints `skipped: no chromium`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use officeswitch::wopi::proof_key::ProofKey;
use serde_json::{Value, json};

use crate::support::browser::{Browser, Page};
use crate::support::client;
use crate::support::editor::{
    COLLABORA_VERSION_HASH, StandInEditor, StandInOptions, Suite, encode_uri_component,
};
use crate::support::nextcloud::StandInNextcloud;
use crate::support::nextcloud_page::{NextcloudPage, OpenSpec, richdocuments_form_url};
use crate::support::officeswitch::{OfficeSwitch, free_port};
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;

const ODT: &str = "application/vnd.oasis.opendocument.text";
const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// How long a stand-in editor may take to say the document is loaded (it takes well under
/// a second; the machine may be busy).
const LOAD_LIMIT: Duration = Duration::from_secs(30);

/// The Nextcloud page got `App_LoadingStatus` / `Document_Loaded` from its editor frame.
const DOCUMENT_LOADED: &str = "(window.__messages || []).some(m => m.fromFrame && m.data && \
    m.data.MessageId === 'App_LoadingStatus' && m.data.Values && \
    m.data.Values.Status === 'Document_Loaded')";

/// One organisation: its WOPI host and its frontend.
struct Org {
    nc: StandInNextcloud,
    page: NextcloudPage,
}

/// Everything a test runs besides the browser.
struct Stand {
    cool: Vec<StandInEditor>,
    oo: Vec<StandInEditor>,
    /// `acme`: docx on ONLYOFFICE (the shipped rules).
    acme: Org,
    /// `beta`: docx on Collabora (its rules override the extension).
    beta: Org,
    os: OfficeSwitch,
}

impl Stand {
    async fn start() -> Stand {
        let port = free_port().await;
        // As docs/operations.md's "Setting up the editors" asks: Collabora's server_name is
        // officeswitch's public host and port; ONLYOFFICE follows the forwarding headers.
        // The nodes of a pool share one proof key, as a real pool's must.
        let (cool_key, oo_key) = tokio::join!(pool_key(), pool_key());
        let named = || {
            StandInOptions::default()
                .key(Arc::clone(&cool_key))
                .server_name(format!("127.0.0.1:{port}"))
        };
        let (c1, c2, o1, o2) = tokio::join!(
            StandInEditor::start_with(Suite::Collabora, named()),
            StandInEditor::start_with(Suite::Collabora, named()),
            StandInEditor::start_with_key(Suite::OnlyOffice, Arc::clone(&oo_key)),
            StandInEditor::start_with_key(Suite::OnlyOffice, Arc::clone(&oo_key)),
        );
        let acme = Org {
            nc: StandInNextcloud::start().await,
            page: NextcloudPage::start().await,
        };
        let beta = Org {
            nc: StandInNextcloud::start().await,
            page: NextcloudPage::start().await,
        };
        let os = OfficeSwitch::builder()
            .port(port)
            .pool("collabora", "collabora", &[c1.url(), c2.url()])
            .pool("onlyoffice", "onlyoffice", &[o1.url(), o2.url()])
            // In production the page and the WOPI host share one origin; here the page
            // needs a name only Chromium resolves, so the organisation owns both.
            .org("acme", &[acme.nc.origin(), acme.page.origin()], "")
            .org(
                "beta",
                &[beta.nc.origin(), beta.page.origin()],
                "[extensions]\ndocx = \"collabora\"\n",
            )
            .start()
            .await;
        Stand {
            cool: vec![c1, c2],
            oo: vec![o1, o2],
            acme,
            beta,
            os,
        }
    }

    fn editors(&self) -> impl Iterator<Item = &StandInEditor> {
        self.cool.iter().chain(&self.oo)
    }

    /// The form URL richdocuments builds for `file_id` of `org` from officeswitch's
    /// merged discovery.
    async fn form_url(&self, org: &Org, mime: &str, file_id: &str) -> String {
        let (status, xml) = client::get(&format!("{}/hosting/discovery", self.os.public_url)).await;
        assert_eq!(status, StatusCode::OK, "{xml}");
        let view = RichdocumentsView::parse(&xml);
        let (_, urlsrc) = view.url_src(mime).expect("a urlsrc for the format");
        assert!(
            urlsrc.starts_with(&self.os.public_url),
            "the urlsrc names officeswitch: {urlsrc}"
        );
        richdocuments_form_url(urlsrc, &org.nc.wopi_src(file_id), "en")
    }

    /// Puts `file_id` on `org`'s host, for `users` (`(name, token)`), and has CheckFileInfo
    /// name the org's page as `PostMessageOrigin` (richdocuments names its own origin).
    fn add_file(&self, org: &Org, file_id: &str, name: &str, users: &[(&str, &str)]) {
        org.nc
            .add_file(file_id, name, b"stand-in document".to_vec());
        for (user, token) in users {
            org.nc.grant_to_user(file_id, token, user, true);
        }
        org.nc
            .set_check_file_info_extra(file_id, json!({ "PostMessageOrigin": org.page.origin() }));
    }

    /// The nodes that received a request carrying the document whose (officeswitch)
    /// `WOPISrc` is `own`: its page, its WebSocket, anything else of it.
    fn nodes_of(&self, own: &str) -> BTreeSet<String> {
        let encoded = encode_uri_component(own);
        self.editors()
            .flat_map(StandInEditor::requests)
            .filter(|r| {
                let query = r.path_and_query.split_once('?').map_or("", |(_, q)| q);
                url::form_urlencoded::parse(query.as_bytes())
                    .any(|(k, v)| k.eq_ignore_ascii_case("wopisrc") && v == own)
                    || r.path().contains(&encoded)
            })
            .map(|r| r.node)
            .collect()
    }

    /// The nodes' own addresses, which no browser request may name.
    fn node_urls(&self) -> Vec<String> {
        self.editors().map(StandInEditor::url).collect()
    }
}

/// A fresh proof key for the nodes of one pool.
async fn pool_key() -> Arc<ProofKey> {
    Arc::new(
        tokio::task::spawn_blocking(ProofKey::generate)
            .await
            .expect("key task")
            .expect("a proof key"),
    )
}

/// Fails with everything each user's browser saw.
fn fail(why: &str, pages: &[&Page]) -> ! {
    let reports: Vec<String> = pages.iter().map(|p| p.report()).collect();
    panic!("{why}\n{}", reports.join("\n"));
}

/// Opens `form_url` in `org`'s Nextcloud page as `user` (a browser context of its own
/// per name) with `token`, and waits until the page got `Document_Loaded`.
async fn open(
    browser: &Browser,
    org: &Org,
    user: &str,
    form_url: &str,
    token: &str,
) -> (crate::support::browser::User, Page) {
    let person = browser.user(user).await.expect("a browser context");
    let url = org.page.page_url(&OpenSpec {
        form_url: form_url.to_string(),
        access_token: token.to_string(),
        ttl: 0,
    });
    let page = person
        .open(&url)
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}"));
    if let Err(e) = page.wait_for(DOCUMENT_LOADED, LOAD_LIMIT).await {
        fail(
            &format!("{user}: the Nextcloud page got no Document_Loaded: {e}"),
            &[&page],
        );
    }
    (person, page)
}

/// What every editor page must have done in the browser: rendered (no CSP refusal), no
/// failed request anywhere, a WebSocket on officeswitch under `socket_path` that echoed,
/// `Document_Loaded` from officeswitch's origin, and no request to a node's own address.
fn assert_loaded(stand: &Stand, page: &Page, socket_path: &str) {
    let refused: Vec<String> = page
        .console()
        .into_iter()
        .filter(|l| l.contains("Content Security Policy") || l.contains("Refused to"))
        .collect();
    if !refused.is_empty() {
        fail(&format!("CSP refusals: {refused:#?}"), &[page]);
    }
    let failed: Vec<String> = page
        .failed_requests()
        .into_iter()
        .chain(
            page.requests()
                .into_iter()
                .filter(|r| r.blocked_reason.is_some() || r.cors_error.is_some()),
        )
        .map(|r| format!("{:?} {:?} {} {}", r.status, r.error, r.method, r.url))
        .collect();
    if !failed.is_empty() {
        fail(&format!("requests failed: {failed:#?}"), &[page]);
    }
    let socket_prefix = format!(
        "{}{socket_path}",
        stand.os.public_url.replacen("http://", "ws://", 1)
    );
    if !page.websockets().iter().any(|ws| {
        ws.url.starts_with(&socket_prefix)
            && ws.handshake_status == Some(101)
            && ws.frames_received >= 1
    }) {
        fail(
            &format!("no WebSocket under {socket_prefix} that echoed"),
            &[page],
        );
    }
    let node_urls = stand.node_urls();
    let ws_node_urls: Vec<String> = node_urls
        .iter()
        .map(|u| u.replacen("http://", "ws://", 1))
        .collect();
    for url in page
        .requests()
        .into_iter()
        .map(|r| r.url)
        .chain(page.websockets().into_iter().map(|ws| ws.url))
    {
        if node_urls
            .iter()
            .chain(&ws_node_urls)
            .any(|n| url.starts_with(n.as_str()))
        {
            fail(
                &format!("the browser contacted a node directly: {url}"),
                &[page],
            );
        }
    }
}

/// The `Document_Loaded` messages the Nextcloud page got, with their origins.
async fn loaded_origins(page: &Page) -> Vec<Value> {
    let messages = page.eval("window.__messages").await.expect("messages");
    messages
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["data"]["Values"]["Status"] == "Document_Loaded")
        .map(|m| m["origin"].clone())
        .collect()
}

/// `eval_in_frame`, failing with the report.
async fn in_frame(page: &Page, prefix: &str, js: &str) -> Value {
    page.eval_in_frame(prefix, js)
        .await
        .unwrap_or_else(|e| fail(&format!("in frame {prefix}: {js}: {e}"), &[page]))
}

#[tokio::test]
async fn documents_open_through_officeswitch_on_stand_in_editors_in_a_browser() {
    trace_init();
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let stand = Stand::start().await;
    let public = stand.os.public_url.clone();
    stand.add_file(
        &stand.acme,
        "1_docx",
        "report.docx",
        &[("alice", "alice-token")],
    );
    stand.add_file(
        &stand.acme,
        "2_odt",
        "notes.odt",
        &[("alice", "alice-token"), ("bob", "bob-token")],
    );
    stand.add_file(
        &stand.beta,
        "3_docx",
        "plan.docx",
        &[("carol", "carol-token")],
    );

    // A docx of acme: ONLYOFFICE. The page sits at ONLYOFFICE's own path, so its relative
    // api.js resolves on officeswitch, the versioned editor frame loads, fetches its JSON
    // and opens the socket below the version, all through officeswitch.
    let form = stand.form_url(&stand.acme, DOCX, "1_docx").await;
    let (_alice, docx) = open(&browser, &stand.acme, "alice", &form, "alice-token").await;
    assert_loaded(&stand, &docx, "/9.3.1-standin/doc/");
    let requests = docx.requests();
    for path in [
        "/hosting/wopi/word/edit?".to_string(),
        "/web-apps/apps/api/documents/api.js?WOPISrc=".to_string(),
        "/9.3.1-standin/web-apps/apps/documenteditor/main/index.html?".to_string(),
        "/9.3.1-standin/plugins.json".to_string(),
        "/9.3.1-standin/themes.json".to_string(),
    ] {
        let url = format!("{public}{path}");
        if !requests
            .iter()
            .any(|r| r.url.starts_with(&url) && r.status == Some(200))
        {
            fail(&format!("no 200 for {url}"), &[&docx]);
        }
    }
    let page_frame = format!("{public}/hosting/wopi/");
    let editor_frame = format!("{public}/9.3.1-standin/web-apps/");
    let own_docx = in_frame(&docx, &page_frame, "window.__standinEditor.wopiSrc").await;
    let own_docx = own_docx.as_str().unwrap_or_default().to_string();
    assert!(
        own_docx.starts_with(&format!("{public}/wopi/files/")),
        "{own_docx}"
    );
    let frame = in_frame(&docx, &editor_frame, "window.__standin").await;
    if frame["echoed"] != true || frame["documentReady"] != true {
        fail(&format!("the editor frame: {frame}"), &[&docx]);
    }
    assert_eq!(
        frame["fetched"],
        json!({"../../../../plugins.json": 200, "../../../../themes.json": 200})
    );
    if loaded_origins(&docx).await != [json!(public)] {
        fail(
            "Document_Loaded did not come from officeswitch's origin",
            &[&docx],
        );
    }
    let nodes = stand.nodes_of(&own_docx);
    assert_eq!(nodes.len(), 1, "the docx reached {nodes:?}");
    let node = nodes.first().unwrap();
    assert!(
        stand.oo.iter().any(|e| &e.url() == node),
        "the docx went to {node}, not ONLYOFFICE"
    );

    // An odt of acme: Collabora, for two users in two browser contexts.
    let form = stand.form_url(&stand.acme, ODT, "2_odt").await;
    let (_alice2, odt) = open(&browser, &stand.acme, "alice", &form, "alice-token").await;
    assert_loaded(&stand, &odt, "/cool/");
    let cool_frame = format!("{public}/browser/{COLLABORA_VERSION_HASH}/cool.html");
    let state = in_frame(&odt, &cool_frame, "window.__standin").await;
    let own_odt = state["wopiSrc"].as_str().unwrap_or_default().to_string();
    assert!(
        own_odt.starts_with(&format!("{public}/wopi/files/")),
        "{state}"
    );
    // The page built its socket on its server_name (officeswitch) with its own WOPISrc.
    let expected_socket = format!("{}/cool/", public.replacen("http://", "ws://", 1));
    if !state["websocketUrl"].as_str().is_some_and(|u| {
        u.starts_with(&expected_socket)
            && u.ends_with(&format!(
                "/ws?WOPISrc={}&compat=/ws",
                encode_uri_component(&own_odt)
            ))
    }) {
        fail(&format!("the page's socket: {state}"), &[&odt]);
    }
    // The Nextcloud page's answer was taken: its origin is in the page's frame-ancestors
    // list, which only officeswitch's rewrite puts there.
    let answered = odt
        .wait_for_in_frame(
            &cool_frame,
            "window.__standin.fromHost.some(m => m.messageId === 'Host_PostmessageReady' && m.accepted)",
            LOAD_LIMIT,
        )
        .await;
    if let Err(e) = answered {
        fail(
            &format!("the editor refused the host's messages: {e}"),
            &[&odt],
        );
    }
    let (_bob, odt_bob) = open(&browser, &stand.acme, "bob", &form, "bob-token").await;
    assert_loaded(&stand, &odt_bob, "/cool/");
    let state_bob = in_frame(&odt_bob, &cool_frame, "window.__standin.wopiSrc").await;
    assert_eq!(state_bob, json!(own_odt), "both users edit one document");
    let nodes = stand.nodes_of(&own_odt);
    if nodes.len() != 1 {
        fail(&format!("the odt reached {nodes:?}"), &[&odt, &odt_bob]);
    }
    let node = nodes.first().unwrap();
    let node = stand
        .cool
        .iter()
        .find(|e| &e.url() == node)
        .unwrap_or_else(|| panic!("the odt went to {node}, not Collabora"));
    let upgrades = node
        .requests()
        .into_iter()
        .filter(|r| r.path().starts_with("/cool/") && r.path().ends_with("/ws"))
        .filter(|r| r.path().contains(&encode_uri_component(&own_odt)))
        .count();
    assert_eq!(upgrades, 2, "both users' WebSockets reached {}", node.url());

    // A docx of beta: Collabora, by beta's rules.
    let form = stand.form_url(&stand.beta, DOCX, "3_docx").await;
    let (_carol, overridden) = open(&browser, &stand.beta, "carol", &form, "carol-token").await;
    assert_loaded(&stand, &overridden, "/cool/");
    let own_beta = in_frame(&overridden, &cool_frame, "window.__standin.wopiSrc").await;
    let own_beta = own_beta.as_str().unwrap_or_default().to_string();
    let nodes = stand.nodes_of(&own_beta);
    assert_eq!(nodes.len(), 1, "beta's docx reached {nodes:?}");
    assert!(
        stand.cool.iter().any(|e| Some(&e.url()) == nodes.first()),
        "beta's docx went to {nodes:?}, not Collabora"
    );
    if loaded_origins(&overridden).await != [json!(public)] {
        fail(
            "Document_Loaded did not come from officeswitch",
            &[&overridden],
        );
    }
    println!("{}", overridden.report());
}

/// The same Collabora page, served by a node straight to the Nextcloud page (no
/// officeswitch, so no CSP rewrite): coolwsd frames it only on its own host and the
/// `WOPISrc`'s, so Chromium refuses to show it and no `Document_Loaded` arrives. This is
/// what the test above would see if officeswitch passed the page through unchanged.
#[tokio::test]
async fn a_collabora_page_without_officeswitchs_rewrite_is_refused_framing() {
    trace_init();
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let cool = StandInEditor::start(Suite::Collabora).await;
    let org = Org {
        nc: StandInNextcloud::start().await,
        page: NextcloudPage::start().await,
    };
    org.nc
        .add_file("4_odt", "direct.odt", b"stand-in document".to_vec());
    org.nc.grant_to_user("4_odt", "dora-token", "dora", true);
    org.nc
        .set_check_file_info_extra("4_odt", json!({ "PostMessageOrigin": org.page.origin() }));
    let urlsrc = format!("{}/browser/{COLLABORA_VERSION_HASH}/cool.html?", cool.url());
    let form = richdocuments_form_url(&urlsrc, &org.nc.wopi_src("4_odt"), "en");
    let person = browser.user("dora").await.expect("a browser context");
    let page = person
        .open(&org.page.page_url(&OpenSpec {
            form_url: form,
            access_token: "dora-token".into(),
            ttl: 0,
        }))
        .await
        .unwrap_or_else(|e| panic!("dora: {e}"));
    let refused = page
        .wait_observed("a frame-ancestors refusal", LOAD_LIMIT, |page| {
            page.console().iter().any(|line| {
                (line.contains("Framing") || line.contains("Refused to frame"))
                    && line.contains("frame-ancestors")
            })
        })
        .await;
    if let Err(e) = refused {
        fail(&e, &[&page]);
    }
    // The node did answer the page (200, with its CSP), the browser blocked it.
    let served = cool
        .requests()
        .iter()
        .any(|r| r.path().ends_with("/cool.html") && r.method == http::Method::POST);
    assert!(served, "the node never got the form");
    let blocked = page
        .failed_requests()
        .into_iter()
        .any(|r| r.url.starts_with(&cool.url()) && r.error.is_some());
    if !blocked {
        fail("the frame's document was not reported blocked", &[&page]);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    if page.eval(DOCUMENT_LOADED).await == Ok(json!(true)) {
        fail("a refused frame still loaded the document", &[&page]);
    }
    println!("{}", page.report());
    cool.stop().await;
}

/// The messages the Nextcloud page got from its frame, by `MessageId` (`Status` for
/// `App_LoadingStatus`), in order.
async fn message_names(page: &Page) -> Vec<String> {
    let messages = page.eval("window.__messages").await.expect("messages");
    messages
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["fromFrame"] == true)
        .map(|m| {
            let id = m["data"]["MessageId"].as_str().unwrap_or("?");
            match m["data"]["Values"]["Status"].as_str() {
                Some(status) if id == "App_LoadingStatus" => format!("{id} {status}"),
                _ => id.to_string(),
            }
        })
        .collect()
}

#[tokio::test]
async fn onlyoffice_pages_sit_in_a_bridge_that_speaks_richdocuments_postmessages() {
    trace_init();
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let stand = Stand::start().await;
    let public = stand.os.public_url.clone();
    stand.add_file(
        &stand.acme,
        "7_docx",
        "memo.docx",
        &[("erin", "erin-token")],
    );
    stand.add_file(&stand.acme, "8_odt", "memo.odt", &[("erin", "erin-token")]);

    // Step 1 of an open: ONLYOFFICE gets the bridge page, framed only by the
    // organisation; Collabora keeps its 307 and its own page.
    let docx_form = stand.form_url(&stand.acme, DOCX, "7_docx").await;
    let odt_form = stand.form_url(&stand.acme, ODT, "8_odt").await;
    let form = "access_token=erin-token&access_token_ttl=0";
    let bridge = client::post_form_once(&docx_form, form).await;
    assert_eq!(bridge.status, StatusCode::OK, "{}", bridge.body);
    let csp = bridge
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        csp.contains(&format!("frame-ancestors {}", stand.acme.nc.origin()))
            && csp.contains(&stand.acme.page.origin())
            && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let odt = client::post_form_once(&odt_form, form).await;
    assert_eq!(odt.status, StatusCode::TEMPORARY_REDIRECT, "{}", odt.body);

    // A mobile app's WebView stays hidden until Frame_Ready, which ONLYOFFICE never
    // posts: the bridge does, once the editor page has loaded.
    let person = browser.user("erin").await.expect("a browser context");
    let url = stand.acme.page.direct_editing_url(&OpenSpec {
        form_url: docx_form,
        access_token: "erin-token".into(),
        ttl: 0,
    });
    let page = person.open(&url).await.unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = page.wait_for(DOCUMENT_LOADED, LOAD_LIMIT).await {
        fail(&format!("no Document_Loaded: {e}"), &[&page]);
    }
    assert_loaded(&stand, &page, "/9.3.1-standin/doc/");
    let mobile = page.eval("window.__mobile").await.expect("mobile calls");
    let shown = page
        .eval("getComputedStyle(document.documentElement).visibility")
        .await
        .expect("visibility");
    if mobile != json!(["documentLoaded", "loaded"]) || shown != "visible" {
        fail(
            &format!("the WebView: calls {mobile}, visibility {shown}"),
            &[&page],
        );
    }
    let names = message_names(&page).await;
    if names
        != [
            "App_LoadingStatus Frame_Ready",
            "App_LoadingStatus Document_Loaded",
        ]
    {
        fail(&format!("the page got {names:?}"), &[&page]);
    }
    // Nextcloud's answers reach ONLYOFFICE's page, from the origin it accepts.
    let page_frame = format!("{public}/hosting/wopi/");
    page.wait_for_in_frame(
        &page_frame,
        "window.__standin.fromHost.some(m => m.messageId === 'Host_PostmessageReady')",
        LOAD_LIMIT,
    )
    .await
    .unwrap_or_else(|e| fail(&format!("nothing relayed to the editor: {e}"), &[&page]));

    // ONLYOFFICE's share button posts UI_Sharing; Nextcloud hears UI_Share.
    in_frame(&page, &page_frame, "window.__standin.requestSharing()").await;
    let shared = "window.__mobile.includes('share') && window.__messages.some(m => \
        m.fromFrame && m.data && m.data.MessageId === 'UI_Share')";
    if let Err(e) = page.wait_for(shared, LOAD_LIMIT).await {
        fail(&format!("no UI_Share: {e}"), &[&page]);
    }
    let names = message_names(&page).await;
    assert!(!names.iter().any(|n| n == "UI_Sharing"), "{names:?}");
}

#[tokio::test]
async fn a_bridged_open_that_fails_before_the_editor_page_tells_nextcloud_why() {
    trace_init();
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let node = StandInEditor::start(Suite::OnlyOffice).await;
    let org = Org {
        nc: StandInNextcloud::start().await,
        page: NextcloudPage::start().await,
    };
    org.nc.add_file("9_docx", "gone.docx", b"x".to_vec());
    org.nc.grant_to_user("9_docx", "gina-token", "gina", true);
    // Checks an hour apart: officeswitch still takes the node for alive when it is gone.
    let os = OfficeSwitch::builder()
        .pool("onlyoffice", "onlyoffice", &[node.url()])
        .org("acme", &[org.nc.origin(), org.page.origin()], "")
        .section("[health]\ninterval_secs = 3600")
        .start()
        .await;
    let (_, xml) = client::get(&format!("{}/hosting/discovery", os.public_url)).await;
    let view = RichdocumentsView::parse(&xml);
    let (_, urlsrc) = view.url_src(DOCX).expect("a docx urlsrc");
    let form_url = richdocuments_form_url(urlsrc, &org.nc.wopi_src("9_docx"), "en");
    node.stop().await;

    // The bridge loads, its editor page does not (502 from officeswitch): Nextcloud hears
    // Action_Load_Resp with success false and the reason, instead of waiting for its timeout.
    let person = browser.user("gina").await.expect("a browser context");
    let url = org.page.page_url(&OpenSpec {
        form_url,
        access_token: "gina-token".into(),
        ttl: 0,
    });
    let page = person.open(&url).await.unwrap_or_else(|e| panic!("{e}"));
    let failed = "window.__messages.some(m => m.fromFrame && m.data && \
        m.data.MessageId === 'Action_Load_Resp' && m.data.Values.success === false && \
        /node/.test(m.data.Values.errorMsg))";
    if let Err(e) = page.wait_for(failed, LOAD_LIMIT).await {
        fail(&format!("no Action_Load_Resp: {e}"), &[&page]);
    }
    if page.eval(DOCUMENT_LOADED).await == Ok(json!(true)) {
        fail("a failed open reported Document_Loaded", &[&page]);
    }
}
