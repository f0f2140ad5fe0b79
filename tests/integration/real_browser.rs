//! Users open, edit, save and co-edit documents through officeswitch in a real browser,
//! against the real editors (issues 11, 19 and 20).
//!
//! The set-up is what a hoster runs: officeswitch (a separate process, its own log) in front
//! of two real nodes configured only as docs/operations.md's "Setting up the editors" says; a
//! stand-in Nextcloud WOPI host that checks officeswitch's proofs and refuses bad tokens as
//! richdocuments does; a stand-in Nextcloud *page* on another origin
//! (`nextcloud.localhost`) that POSTs the open form into an iframe and talks postMessage as
//! richdocuments' frontend does; and headless Chromium. officeswitch's public origin is
//! `http://127.0.0.1:<port>`: the nodes must be able to resolve the host of every
//! `WOPISrc` they call, and only Chromium resolves `*.localhost`.
//!
//! Each test prints, per user, what the browser saw when it fails ([`Page::report`]).

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use crate::support::browser::{Browser, Page};
use crate::support::client;
use crate::support::editor::{StandInEditor, Suite};
use crate::support::nextcloud::StandInNextcloud;
use crate::support::nextcloud_page::{NextcloudPage, OpenSpec, richdocuments_form_url};
use crate::support::officeswitch::{OfficeSwitch, OfficeSwitchProcess};
use crate::support::real_collabora::RealCollabora;
use crate::support::real_editor::{free_port, real_editor_lock};
use crate::support::real_onlyoffice::RealOnlyOffice;
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;

const ODT: &str = "application/vnd.oasis.opendocument.text";
const ODS: &str = "application/vnd.oasis.opendocument.spreadsheet";
const ODP: &str = "application/vnd.oasis.opendocument.presentation";
const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const PPTX: &str = "application/vnd.openxmlformats-officedocument.presentationml.presentation";

/// How long a real editor may take to show a document (ONLYOFFICE's develop mode loads
/// about 1,500 files).
const LOAD_LIMIT: Duration = Duration::from_secs(90);

/// Everything one test runs: the WOPI host, the Nextcloud page and officeswitch.
struct Stand {
    nc: StandInNextcloud,
    page: NextcloudPage,
    os: OfficeSwitchProcess,
    public: String,
}

impl Stand {
    /// officeswitch on `port` in front of `nodes` (`pool`, `kind`), with one organisation
    /// owning the WOPI host's origin and the Nextcloud page's origin (in production one
    /// origin; here the page needs a name only Chromium resolves).
    async fn start(port: u16, pools: &[(&str, &str, &[String])], org_extra: &str) -> Stand {
        let nc = StandInNextcloud::start().await;
        // What a user lives through depends on richdocuments' own lock semantics.
        nc.lock_like_richdocuments();
        let page = NextcloudPage::start().await;
        let public = format!("http://127.0.0.1:{port}");
        let mut builder = OfficeSwitch::builder().port(port);
        for (name, kind, nodes) in pools {
            builder = builder.pool(name, kind, nodes);
        }
        let os = builder
            .org("acme", &[nc.origin(), page.origin()], org_extra)
            .spawn()
            .await;
        os.wait_ready().await;
        Stand {
            nc,
            page,
            os,
            public,
        }
    }

    /// The form URL richdocuments builds for `file_id` from officeswitch's discovery.
    async fn form_url(&self, mime: &str, file_id: &str) -> String {
        let (status, xml) = client::get(&format!("{}/hosting/discovery", self.public)).await;
        assert_eq!(status, StatusCode::OK, "{xml}");
        let view = RichdocumentsView::parse(&xml);
        let (_, urlsrc) = view.url_src(mime).expect("a urlsrc for the format");
        richdocuments_form_url(urlsrc, &self.nc.wopi_src(file_id), "en")
    }

    /// What the browser must never do and officeswitch must never log, for every user.
    fn assert_clean(&self, pages: &[&Page], node_urls: &[String], secrets: &[&str]) {
        for page in pages {
            for request in page.requests() {
                assert!(
                    !node_urls
                        .iter()
                        .any(|n| request.url.starts_with(n.as_str())),
                    "the browser contacted a node directly: {}\n{}",
                    request.url,
                    page.report()
                );
            }
        }
        let log = self.os.log();
        for line in log.lines() {
            // Every minted token and open ticket is a JWT: `eyJ...`.
            assert!(!line.contains("eyJ"), "a token in the log: {line}");
            for secret in secrets {
                assert!(!line.contains(secret), "a secret in the log: {line}");
            }
            assert!(
                !line.contains("access_token="),
                "a token in the log: {line}"
            );
            // ONLYOFFICE's signed cache URLs (`/cache/files/...?md5=..&expires=..`).
            assert!(!line.contains("md5="), "a signed URL in the log: {line}");
        }
    }

    /// Adds `bytes` as `file_id` (`name`) to the WOPI host, writable by each of `users`
    /// (token `<user>-token`), with the Nextcloud page as its postMessage origin; returns
    /// the form URL richdocuments builds for it.
    async fn add_document(
        &self,
        file_id: &str,
        name: &str,
        mime: &str,
        bytes: Vec<u8>,
        users: &[&str],
    ) -> String {
        self.nc.add_file(file_id, name, bytes);
        for user in users {
            self.nc
                .grant_to_user(file_id, &format!("{user}-token"), user, true);
        }
        self.nc
            .set_check_file_info_extra(file_id, json!({ "PostMessageOrigin": self.page.origin() }));
        self.form_url(mime, file_id).await
    }

    /// The index, among `nodes`, of the one node the document's traffic went to so far.
    fn document_node(&self, nodes: &[String]) -> usize {
        let seen = self.nodes_of_document_traffic();
        assert_eq!(seen.len(), 1, "the document's traffic went to {seen:?}");
        nodes
            .iter()
            .position(|n| *n == seen[0])
            .expect("the document's node is one of the pool")
    }

    /// Waits until officeswitch's checks find a node down (`fall` failed checks,
    /// `interval` apart: 15 s by default); until then its documents still go to it.
    async fn wait_marked_down(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        while !self.os.log().contains("node marked down") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "officeswitch did not notice the crash:\n{}",
                self.os.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// An editor WebSocket went to `node` (the access log writes a socket's line when it
    /// closes).
    fn assert_socket_reached(&self, node: &str) {
        let node = format!("node=\"{node}\"");
        let log = self.os.log();
        assert!(
            log.lines().any(|l| l.contains("class=\"websocket\"")
                && l.contains(&node)
                && l.contains("status=101")),
            "no editor socket on {node}:\n{log}"
        );
    }

    /// The file is still `original`: nothing was written to it.
    fn assert_untouched(&self, file_id: &str, original: &[u8]) {
        assert_eq!(
            self.nc.contents_of(file_id).as_deref(),
            Some(original),
            "the crash wrote to the file: {:?}",
            self.nc.puts()
        );
    }

    /// The nodes officeswitch's access log sent `org`'s editor traffic to.
    fn nodes_of_document_traffic(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self
            .os
            .log()
            .lines()
            .filter(|l| l.contains("org=acme") || l.contains("org=\"acme\""))
            .filter(|l| {
                ["page", "websocket", "document"].iter().any(|c| {
                    l.contains(&format!("class={c} ")) || l.contains(&format!("class=\"{c}\""))
                })
            })
            .filter_map(|l| {
                let at = l.find("node=")? + 5;
                let rest = l[at..].trim_start_matches('"');
                Some(rest.split(['"', ' ']).next()?.to_string())
            })
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }
}

/// Requests to officeswitch that failed, and requests anywhere the browser blocked (CSP,
/// CORS). Not officeswitch's: requests the page itself cancelled (`net::ERR_ABORTED`:
/// Collabora's debug build probes for branding files it does not have), the stand-in
/// Nextcloud's missing avatars, and a 404 the node gives the same path when asked
/// directly (the test builds of the editors lack a few generated files: ONLYOFFICE's
/// font thumbnails and slide themes, Collabora's branding).
async fn broken_requests(page: &Page, public: &str, node: &str) -> Vec<String> {
    let mut broken = Vec::new();
    for r in page.failed_requests() {
        let ours = r.url.starts_with(public)
            && r.error
                .as_deref()
                .is_none_or(|e| !e.contains("ERR_ABORTED"));
        if !(r.blocked_reason.is_some() || r.cors_error.is_some() || ours) {
            continue;
        }
        if r.status == Some(404) && r.method == "GET" {
            let direct = format!(
                "{}/{}",
                node.trim_end_matches('/'),
                &r.url[public.len()..].trim_start_matches('/')
            );
            let (status, _) = client::get(&direct).await;
            if status == StatusCode::NOT_FOUND {
                continue;
            }
        }
        broken.push(format!(
            "{:?} {:?} {} {}",
            r.status, r.error, r.method, r.url
        ));
    }
    broken
}

/// Whether the Nextcloud page got `App_LoadingStatus` / `Document_Loaded`.
const DOCUMENT_LOADED: &str = "(window.__messages || []).some(m => m.data && \
    m.data.MessageId === 'App_LoadingStatus' && m.data.Values && \
    m.data.Values.Status === 'Document_Loaded')";

/// Fails with everything each user's browser saw.
fn fail(why: &str, pages: &[&Page]) -> ! {
    let reports: Vec<String> = pages.iter().map(|p| p.report()).collect();
    panic!("{why}\n{}", reports.join("\n"));
}

/// Opens `form_url` for `user` with `token` in the Nextcloud page and waits until the
/// editor says the document is loaded.
async fn open_in_browser(
    browser: &Browser,
    stand: &Stand,
    user: &str,
    form_url: &str,
    token: &str,
) -> Page {
    let url = stand.page.page_url(&OpenSpec {
        form_url: form_url.to_string(),
        access_token: token.to_string(),
        ttl: 0,
    });
    open_page(browser, user, &url).await
}

/// Opens `form_url` as Nextcloud's mobile app does (richdocuments' direct-editing page in
/// its WebView, which stays hidden until the page hears `Frame_Ready`) and waits until
/// the page says the document is loaded.
async fn open_in_mobile_app(
    browser: &Browser,
    stand: &Stand,
    user: &str,
    form_url: &str,
    token: &str,
) -> Page {
    let url = stand.page.direct_editing_url(&OpenSpec {
        form_url: form_url.to_string(),
        access_token: token.to_string(),
        ttl: 0,
    });
    open_page(browser, user, &url).await
}

/// Opens the Nextcloud page at `url` for `user` and waits for `Document_Loaded`.
///
/// The test build of ONLYOFFICE serves web-apps unbundled (upstream's develop mode), where
/// requirejs sometimes runs a module before the one it extends (`Cannot read properties
/// of undefined (reading 'extend')`, measured once in about twenty opens); the packaged
/// build bundles them. Such a page is opened once more, as its user would reload it;
/// anything else fails at once.
async fn open_page(browser: &Browser, user: &str, url: &str) -> Page {
    let person = browser.user(user).await.expect("a browser context");
    let mut reloaded = false;
    loop {
        let page = person
            .open(url)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        match page.wait_for(DOCUMENT_LOADED, LOAD_LIMIT).await {
            Ok(()) => return page,
            Err(_) if develop_mode_race(&page) && !reloaded => {
                eprintln!("{user}: ONLYOFFICE develop-mode script race; opening the page again");
                reloaded = true;
            }
            Err(e) => fail(
                &format!("{user}: the Nextcloud page got no Document_Loaded: {e}"),
                &[&page],
            ),
        }
    }
}

/// Whether a web-apps frame hit requirejs running a module before its base (see
/// [`open_page`]).
fn develop_mode_race(page: &Page) -> bool {
    page.console().iter().any(|line| {
        line.contains("Uncaught")
            && line.contains("reading 'extend'")
            && line.contains("/web-apps/vendor/requirejs/require.js")
    })
}

/// What a Collabora frame's map knows of the views (users) on its document: their count,
/// or -1 before the map exists.
const COLLABORA_VIEWS: &str = "(() => { const m = window.L && L.Map && L.Map.THIS; \
    return m && m._viewInfo ? Object.keys(m._viewInfo).length : -1; })()";

/// What an ONLYOFFICE editor frame's co-authoring connection knows of the users on its
/// document (`DocsCoApi._participants`, filled from the server's `auth` and
/// `connectState` messages): their count, or -1 before it has any.
const ONLYOFFICE_USERS: &str = "(() => { const a = (window.Asc && window.Asc.editor) || window.editor; \
    const c = a && a.CoAuthoringApi && a.CoAuthoringApi._CoAuthoringApi; \
    return c && c._participants ? Object.keys(c._participants).length : -1; })()";

/// Whether an ONLYOFFICE editor frame finished loading its document (sdkjs
/// `isDocumentLoadComplete`): 1 when it did, else -1.
const ONLYOFFICE_DOCUMENT_READY: &str = "(() => { const a = (window.Asc && window.Asc.editor) || window.editor; \
    return a && a.isDocumentLoadComplete === true ? 1 : -1; })()";

/// Waits until `probe`, run in every page's editor frame (the deepest frame on
/// officeswitch), counts at least `n` (users each editor lists, for example).
async fn wait_count(stand: &Stand, pages: &[&Page], probe: &str, n: usize) {
    let expr = format!("{probe} >= {n}");
    for page in pages {
        if let Err(e) = page
            .wait_for_in_frame(&format!("{}/", stand.public), &expr, LOAD_LIMIT)
            .await
        {
            let seen = page
                .eval_in_frame(&format!("{}/", stand.public), probe)
                .await;
            fail(
                &format!("the editor frame counts {seen:?}, not {n}: {e}"),
                pages,
            );
        }
    }
}

/// Waits until ONLYOFFICE's editor in `page` has its document. Its page posts
/// `Document_Loaded` when the editor *application* is ready (`onAppReady` in
/// `editor-wopi.ejs`), before sdkjs opened its socket and authorised the document; a user
/// can type only after that.
async fn wait_onlyoffice_document(stand: &Stand, page: &Page) {
    let socket_talks = |page: &Page| {
        page.websockets().iter().any(|ws| {
            ws.url.contains("/doc/") && ws.handshake_status == Some(101) && ws.frames_received > 0
        })
    };
    if let Err(e) = page
        .wait_observed("the editor's socket.io WebSocket", LOAD_LIMIT, socket_talks)
        .await
    {
        fail(&e, &[page]);
    }
    wait_count(stand, &[page], ONLYOFFICE_DOCUMENT_READY, 1).await;
    wait_count(stand, &[page], ONLYOFFICE_USERS, 1).await;
}

/// Clicks ONLYOFFICE's share button in `page`'s editor (shown because CheckFileInfo
/// says `FileSharingPostMessage`) and checks that Nextcloud's page hears richdocuments'
/// `UI_Share`, never ONLYOFFICE's `UI_Sharing`.
async fn assert_share_button_reaches_nextcloud(stand: &Stand, page: &Page) {
    let frame = format!("{}/", stand.public);
    let clicked = page
        .eval_in_frame(
            &frame,
            "(() => { const b = document.querySelector('.btn-header-share'); \
             if (!b || b.offsetParent === null) return false; b.click(); return true; })()",
        )
        .await;
    if clicked != Ok(json!(true)) {
        fail(&format!("no visible share button: {clicked:?}"), &[page]);
    }
    let shared =
        "window.__messages.some(m => m.fromFrame && m.data && m.data.MessageId === 'UI_Share')";
    if let Err(e) = page.wait_for(shared, LOAD_LIMIT).await {
        fail(&format!("Nextcloud heard no UI_Share: {e}"), &[page]);
    }
    let sharing = "window.__messages.some(m => m.data && m.data.MessageId === 'UI_Sharing')";
    if page.eval(sharing).await != Ok(json!(false)) {
        fail("ONLYOFFICE's UI_Sharing reached Nextcloud", &[page]);
    }
}

/// Types `text` into `page`'s editor as its user does.
async fn type_text(page: &Page, text: &str) {
    if let Err(e) = page.click_and_type(text).await {
        fail(&format!("typing failed: {e}"), &[page]);
    }
}

/// The frame rendered without a CSP refusal, no request of it failed, and its WebSocket
/// is up and talking.
async fn assert_editor_healthy(stand: &Stand, page: &Page, node: &str) {
    let refused: Vec<String> = page
        .console()
        .into_iter()
        .filter(|l| l.contains("Content Security Policy") || l.contains("Refused to frame"))
        .collect();
    if !refused.is_empty() {
        fail(&format!("CSP refusals: {refused:?}"), &[page]);
    }
    let broken = broken_requests(page, &stand.public, node).await;
    if !broken.is_empty() {
        fail(&format!("editor requests failed: {broken:#?}"), &[page]);
    }
    if !page
        .websockets()
        .iter()
        .any(|ws| ws.handshake_status == Some(101) && ws.frames_received > 0)
    {
        fail("no working WebSocket", &[page]);
    }
}

/// Every WOPI call of `file_id` reached the host signed.
fn assert_signed(stand: &Stand, file_id: &str) {
    let calls = stand.nc.requests();
    let of_file: Vec<_> = calls
        .iter()
        .filter(|r| r.path_and_query.contains(&format!("/wopi/files/{file_id}")))
        .collect();
    assert!(
        of_file.iter().any(|r| r.status == Some(StatusCode::OK)),
        "no WOPI call of {file_id} reached the host: {calls:#?}"
    );
    assert!(
        of_file.iter().all(|r| r.proof_headers.proof.is_some()),
        "a WOPI call without a proof: {calls:#?}"
    );
}

/// Waits (bounded) until the host stored a save of `file_id` whose text, read by
/// `text_of`, holds every one of `words` (whatever their case); the last text seen
/// otherwise.
async fn wait_saved(
    stand: &Stand,
    file_id: &str,
    words: &[&str],
    text_of: impl AsyncFn(Vec<u8>) -> String,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + SAVE_LIMIT;
    let mut seen = (0, String::new());
    loop {
        let puts = stand
            .nc
            .puts()
            .iter()
            .filter(|(id, _, _)| id == file_id)
            .count();
        if puts > seen.0 {
            let bytes = stand.nc.contents_of(file_id).expect("the file").to_vec();
            seen = (puts, text_of(bytes).await);
            // Editors capitalise a sentence's first word as the user types it.
            let text = seen.1.to_lowercase();
            if words.iter().all(|w| text.contains(&w.to_lowercase())) {
                return Ok(seen.1);
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "after {puts} saves the file's text is {:?}, missing some of {words:?}; saves: {:?}",
                seen.1,
                stand.nc.puts()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How long an editor may take to save after its last user left (ONLYOFFICE waits for its
/// `savetimeoutdelay`, then converts).
const SAVE_LIMIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn collabora_odt_two_users_co_edit_and_save_on_one_node_in_a_real_browser() {
    trace_init();
    let _turn = real_editor_lock().await;
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let port = free_port().await;
    let Ok(cool) = RealCollabora::start(2, &format!("127.0.0.1:{port}"), &[]).await else {
        return;
    };
    let stand = Stand::start(port, &[("collabora", "collabora", cool.urls())], "").await;
    // A real odt, made by the real node through officeswitch's convert-to.
    let odt = convert(&stand.public, "in.txt", b"hello from the host\n", "odt").await;
    let form_url = stand
        .add_document("7_oc", "notes.odt", ODT, odt, &["alice", "bob"])
        .await;

    let alice = open_in_browser(&browser, &stand, "alice", &form_url, "alice-token").await;
    assert_editor_healthy(&stand, &alice, &cool.urls()[0]).await;
    type_text(&alice, "alpaca").await;

    // A second user, in a second browser context, joins the same session: each editor
    // lists both.
    let bob = open_in_browser(&browser, &stand, "bob", &form_url, "bob-token").await;
    assert_editor_healthy(&stand, &bob, &cool.urls()[0]).await;
    wait_count(&stand, &[&alice, &bob], COLLABORA_VIEWS, 2).await;
    type_text(&bob, "bison").await;
    // Give the last keystrokes time to reach the node before the users leave.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let nodes = stand.nodes_of_document_traffic();
    assert_eq!(nodes.len(), 1, "the document's traffic went to {nodes:?}");
    stand.assert_clean(&[&alice, &bob], cool.urls(), &["alice-token", "bob-token"]);
    drop((alice, bob));

    // Both users left: the node saves, and what they typed is in the host's file.
    let public = stand.public.clone();
    let text = wait_saved(
        &stand,
        "7_oc",
        &["hello from the host", "alpaca", "bison"],
        async |odt| {
            let txt = convert(&public, "notes.odt", &odt, "txt").await;
            String::from_utf8_lossy(&txt).into_owned()
        },
    )
    .await;
    if let Err(e) = text {
        panic!("{e}\n{}", stand.os.log());
    }
    assert_signed(&stand, "7_oc");
    stand.assert_clean(&[], cool.urls(), &["alice-token", "bob-token"]);
    cool.stop().await;
}

/// The text of an ODF or OOXML document the real Collabora behind `public` reads.
async fn text_of(public: &str, name: &str, bytes: &[u8]) -> String {
    String::from_utf8_lossy(&convert(public, name, bytes, "txt").await).into_owned()
}

#[tokio::test]
async fn collabora_page_reconnects_to_the_same_node_after_officeswitch_restarts_and_saves_both_edits()
 {
    trace_init();
    let _turn = real_editor_lock().await;
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let port = free_port().await;
    let Ok(cool) = RealCollabora::start(2, &format!("127.0.0.1:{port}"), &[]).await else {
        return;
    };
    let mut stand = Stand::start(port, &[("collabora", "collabora", cool.urls())], "").await;
    let odt = convert(&stand.public, "in.txt", b"hello from the host\n", "odt").await;
    let form_url = stand
        .add_document("31_oc", "notes.odt", ODT, odt, &["alice"])
        .await;
    let alice = open_in_browser(&browser, &stand, "alice", &form_url, "alice-token").await;
    type_text(&alice, "alpaca").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = stand.nodes_of_document_traffic();

    // A deploy restarts officeswitch: it drains (close frames), a new process takes the
    // port, and Collabora's page reconnects on its own, to the same node, whose kit still
    // holds the unsaved edit.
    stand.os.restart().await;
    stand.os.wait_ready().await;
    let sockets_before = alice.websockets().len();
    let reconnected = |page: &Page| {
        page.websockets()
            .iter()
            .skip(sockets_before)
            .any(|ws| ws.handshake_status == Some(101) && ws.frames_received > 0)
    };
    if let Err(e) = alice
        .wait_observed("a new WebSocket after the restart", LOAD_LIMIT, reconnected)
        .await
    {
        fail(&e, &[&alice]);
    }
    // The document is usable again once the editor's map is back.
    wait_count(&stand, &[&alice], COLLABORA_VIEWS, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    type_text(&alice, "bison").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stand.nodes_of_document_traffic(),
        before,
        "the reconnected session moved"
    );
    stand.assert_clean(&[&alice], cool.urls(), &["alice-token"]);
    drop(alice);
    let public = stand.public.clone();
    let saved = wait_saved(&stand, "31_oc", &["alpaca", "bison"], async |odt| {
        text_of(&public, "notes.odt", &odt).await
    })
    .await;
    if let Err(e) = saved {
        panic!("{e}\n{}", stand.os.log());
    }
    cool.stop().await;
}

#[tokio::test]
async fn collabora_node_crash_mid_session_saves_nothing_wrong_and_reopening_lands_on_the_survivor()
{
    trace_init();
    let _turn = real_editor_lock().await;
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let port = free_port().await;
    let Ok(cool) = RealCollabora::start(2, &format!("127.0.0.1:{port}"), &[]).await else {
        return;
    };
    let stand = Stand::start(port, &[("collabora", "collabora", cool.urls())], "").await;
    let original = convert(&stand.public, "in.txt", b"hello from the host\n", "odt").await;
    let form_url = stand
        .add_document(
            "32_oc",
            "notes.odt",
            ODT,
            original.clone(),
            &["alice", "bob"],
        )
        .await;
    let alice = open_in_browser(&browser, &stand, "alice", &form_url, "alice-token").await;
    type_text(&alice, "alpaca").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let crashed = stand.document_node(cool.urls());
    cool.crash(crashed).await;

    // The user's socket ends; the page shows Collabora's own state (no officeswitch
    // page), and nothing reached the host: the file is as it was.
    let closed = |page: &Page| page.websockets().iter().all(|ws| ws.closed);
    if let Err(e) = alice
        .wait_observed("the editor's WebSocket closing", LOAD_LIMIT, closed)
        .await
    {
        fail(&e, &[&alice]);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stand.assert_untouched("32_oc", &original);
    drop(alice);

    stand.wait_marked_down().await;

    // Re-opening lands on the surviving node, and a save from there is the user's.
    let bob = open_in_browser(&browser, &stand, "bob", &form_url, "bob-token").await;
    type_text(&bob, "bison").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stand.assert_clean(&[&bob], cool.urls(), &["alice-token", "bob-token"]);
    drop(bob);
    let public = stand.public.clone();
    let saved = wait_saved(
        &stand,
        "32_oc",
        &["hello from the host", "bison"],
        async |odt| text_of(&public, "notes.odt", &odt).await,
    )
    .await;
    match saved {
        Ok(text) => assert!(
            !text.to_lowercase().contains("alpaca"),
            "a lost edit came back: {text}"
        ),
        Err(e) => panic!("{e}\n{}", stand.os.log()),
    }
    // Bob's editor socket (logged when it closed) was on the surviving node.
    stand.assert_socket_reached(&cool.urls()[1 - crashed]);
    cool.stop().await;
}

/// A minimal flat ODF presentation: one slide, one text box over the whole slide (so a
/// click in the editor lands in it).
const FODP: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"
 office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.presentation">
<office:body><office:presentation><draw:page draw:name="one">
<draw:frame svg:x="0cm" svg:y="0cm" svg:width="28cm" svg:height="21cm"><draw:text-box>
<text:p>hello from the host</text:p></draw:text-box></draw:frame>
</draw:page></office:presentation></office:body></office:document>
"#;

/// A minimal flat ODF spreadsheet: one sheet, the greeting in A2 (a click in the editor
/// lands on an empty cell near the top).
const FODS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.spreadsheet">
<office:body><office:spreadsheet><table:table table:name="one">
<table:table-row><table:table-cell/></table:table-row>
<table:table-row><table:table-cell office:value-type="string"><text:p>hello from the host</text:p>
</table:table-cell></table:table-row>
</table:table></office:spreadsheet></office:body></office:document>
"#;

#[tokio::test]
async fn collabora_ods_odp_and_a_docx_the_organisation_routes_to_collabora_open_edit_and_save_in_a_real_browser()
 {
    trace_init();
    let _turn = real_editor_lock().await;
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let port = free_port().await;
    let Ok(cool) = RealCollabora::start(2, &format!("127.0.0.1:{port}"), &[]).await else {
        return;
    };
    // An ONLYOFFICE pool is there too and owns docx by default; the organisation's rules
    // send docx to Collabora.
    let onlyoffice = StandInEditor::start(Suite::OnlyOffice).await;
    let onlyoffice_nodes = [onlyoffice.url()];
    let stand = Stand::start(
        port,
        &[
            ("collabora", "collabora", cool.urls()),
            ("onlyoffice", "onlyoffice", &onlyoffice_nodes),
        ],
        "[extensions]\ndocx = \"collabora\"\n",
    )
    .await;
    // (file id, name, MIME type, source, source name, text format)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [u8], &'a str, &'a str);
    let cases: [Case<'_>; 3] = [
        ("11_oc", "sheet.ods", ODS, FODS.as_bytes(), "in.fods", "csv"),
        (
            "12_oc",
            "slides.odp",
            ODP,
            FODP.as_bytes(),
            "in.fodp",
            "fodp",
        ),
        (
            "13_oc",
            "letter.docx",
            DOCX,
            b"hello from the host\n",
            "in.txt",
            "txt",
        ),
    ];
    for (file_id, name, mime, source, source_name, text_format) in cases {
        let ext = name.rsplit('.').next().expect("an extension");
        let bytes = convert(&stand.public, source_name, source, ext).await;
        let form_url = stand
            .add_document(file_id, name, mime, bytes, &["erin"])
            .await;
        let erin = open_in_browser(&browser, &stand, "erin", &form_url, "erin-token").await;
        assert_editor_healthy(&stand, &erin, &cool.urls()[0]).await;
        if mime == ODP {
            // A double click enters the slide's text box.
            let typed = async {
                erin.click_editor(2).await?;
                erin.insert_text("ibex").await
            };
            if let Err(e) = typed.await {
                fail(&format!("typing failed: {e}"), &[&erin]);
            }
        } else {
            type_text(&erin, "ibex").await;
        }
        if mime == ODS {
            // A cell's input is kept when the user confirms it.
            erin.press_enter().await.expect("Enter");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        stand.assert_clean(&[&erin], cool.urls(), &["erin-token"]);
        drop(erin);
        let public = stand.public.clone();
        let saved = wait_saved(&stand, file_id, &["hello", "ibex"], async |doc| {
            let text = convert(&public, name, &doc, text_format).await;
            String::from_utf8_lossy(&text).into_owned()
        })
        .await;
        if let Err(e) = saved {
            panic!("{name}: {e}");
        }
        assert_signed(&stand, file_id);
    }
    let nodes = stand.nodes_of_document_traffic();
    assert!(
        nodes.iter().all(|n| cool.urls().contains(n)),
        "a document went to {nodes:?}"
    );
    assert!(
        onlyoffice
            .requests()
            .iter()
            .all(|r| !r.path().starts_with("/hosting/wopi")),
        "an open reached ONLYOFFICE: {:?}",
        onlyoffice.requests()
    );
    cool.stop().await;
}

#[tokio::test]
async fn onlyoffice_docx_two_users_co_edit_and_save_on_one_node_in_a_real_browser() {
    trace_init();
    let _turn = real_editor_lock().await;
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let Ok(oo) = RealOnlyOffice::start(2).await else {
        return;
    };
    let port = free_port().await;
    let stand = Stand::start(port, &[("onlyoffice", "onlyoffice", oo.urls())], "").await;
    let docx = std::fs::read(oo.template("docx")).expect("ONLYOFFICE's blank docx");
    let form_url = stand
        .add_document("9_oc", "report.docx", DOCX, docx, &["carol", "dave"])
        .await;

    // The page sits at ONLYOFFICE's own path, so `../../../web-apps/...` resolves to the
    // API script, the versioned editor frame loads, and sdkjs opens its socket.io
    // WebSocket below the version segment, through officeswitch, to the document's node.
    let carol = open_in_browser(&browser, &stand, "carol", &form_url, "carol-token").await;
    wait_onlyoffice_document(&stand, &carol).await;
    assert_editor_healthy(&stand, &carol, &oo.urls()[0]).await;
    let requests = carol.requests();
    let loaded = |path: &str| {
        requests
            .iter()
            .any(|r| r.url.starts_with(&format!("{}{path}", stand.public)) && r.status == Some(200))
    };
    assert!(
        loaded("/hosting/wopi/word/edit?") && loaded("/web-apps/apps/api/documents/api.js"),
        "{}",
        carol.report()
    );
    type_text(&carol, "capybara").await;

    // Dave is on Nextcloud's mobile app: its WebView shows the editor on Frame_Ready,
    // which only officeswitch's bridge page posts for ONLYOFFICE.
    let dave = open_in_mobile_app(&browser, &stand, "dave", &form_url, "dave-token").await;
    wait_onlyoffice_document(&stand, &dave).await;
    assert_editor_healthy(&stand, &dave, &oo.urls()[0]).await;
    let shown = dave
        .eval("[window.__mobile, getComputedStyle(document.documentElement).visibility]")
        .await;
    if shown != Ok(json!([["documentLoaded", "loaded"], "visible"])) {
        fail(&format!("the mobile WebView: {shown:?}"), &[&dave]);
    }
    wait_count(&stand, &[&carol, &dave], ONLYOFFICE_USERS, 2).await;
    type_text(&dave, " dugong").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_share_button_reaches_nextcloud(&stand, &carol).await;
    let nodes = stand.nodes_of_document_traffic();
    assert_eq!(nodes.len(), 1, "the document's traffic went to {nodes:?}");
    stand.assert_clean(&[&carol, &dave], oo.urls(), &["carol-token", "dave-token"]);
    drop((carol, dave));

    // ONLYOFFICE saves once the last editor left; both users' words are in the file.
    let saved = wait_saved(&stand, "9_oc", &["capybara", "dugong"], async |docx| {
        ooxml_text(&docx, "word/document.xml")
    })
    .await;
    if let Err(e) = saved {
        panic!("{e}\n{}", stand.os.log());
    }
    assert_eq!(stand.nc.puts().len(), 1, "one save: {:?}", stand.nc.puts());
    assert_signed(&stand, "9_oc");
    stand.assert_clean(&[], oo.urls(), &["carol-token", "dave-token"]);
    oo.stop().await;
}

#[tokio::test]
async fn onlyoffice_xlsx_and_pptx_open_and_save_in_a_real_browser() {
    trace_init();
    let _turn = real_editor_lock().await;
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let Ok(oo) = RealOnlyOffice::start(2).await else {
        return;
    };
    let port = free_port().await;
    let stand = Stand::start(port, &[("onlyoffice", "onlyoffice", oo.urls())], "").await;
    let cases = [
        ("21_oc", "budget.xlsx", XLSX, "xl/sharedStrings.xml"),
        ("22_oc", "deck.pptx", PPTX, "ppt/slides/slide1.xml"),
    ];
    for (file_id, name, mime, part) in cases {
        let ext = name.rsplit('.').next().expect("an extension");
        let template = std::fs::read(oo.template(ext)).expect("ONLYOFFICE's blank file");
        let form_url = stand
            .add_document(file_id, name, mime, template, &["frank"])
            .await;
        let frank = open_in_browser(&browser, &stand, "frank", &form_url, "frank-token").await;
        wait_onlyoffice_document(&stand, &frank).await;
        assert_editor_healthy(&stand, &frank, &oo.urls()[0]).await;
        type_text(&frank, "okapi").await;
        frank.press_enter().await.expect("Enter");
        tokio::time::sleep(Duration::from_secs(2)).await;
        stand.assert_clean(&[&frank], oo.urls(), &["frank-token"]);
        drop(frank);
        let saved = wait_saved(&stand, file_id, &["okapi"], async |doc| {
            ooxml_text(&doc, part)
        })
        .await;
        if let Err(e) = saved {
            panic!("{name}: {e}");
        }
        assert_signed(&stand, file_id);
    }
    let nodes = stand.nodes_of_document_traffic();
    assert!(
        !nodes.is_empty() && nodes.iter().all(|n| oo.urls().contains(n)),
        "documents went to {nodes:?}"
    );
    oo.stop().await;
}

#[tokio::test]
async fn onlyoffice_reconnects_to_the_same_node_after_officeswitch_restarts_and_saves_both_edits() {
    trace_init();
    let _turn = real_editor_lock().await;
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let Ok(oo) = RealOnlyOffice::start(2).await else {
        return;
    };
    let port = free_port().await;
    let mut stand = Stand::start(port, &[("onlyoffice", "onlyoffice", oo.urls())], "").await;
    let docx = std::fs::read(oo.template("docx")).expect("ONLYOFFICE's blank docx");
    let form_url = stand
        .add_document("41_oc", "report.docx", DOCX, docx, &["carol"])
        .await;
    let carol = open_in_browser(&browser, &stand, "carol", &form_url, "carol-token").await;
    wait_onlyoffice_document(&stand, &carol).await;
    type_text(&carol, "capybara").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A deploy restarts officeswitch; socket.io reconnects through the new process to the
    // same node, which kept the edit.
    let sockets_before = carol.websockets().len();
    stand.os.restart().await;
    stand.os.wait_ready().await;
    let reconnected = |page: &Page| {
        page.websockets().iter().skip(sockets_before).any(|ws| {
            ws.url.contains("/doc/") && ws.handshake_status == Some(101) && ws.frames_received > 0
        })
    };
    if let Err(e) = carol
        .wait_observed(
            "socket.io reconnecting after the restart",
            LOAD_LIMIT,
            reconnected,
        )
        .await
    {
        fail(&e, &[&carol]);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    type_text(&carol, " dugong").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let nodes = stand.nodes_of_document_traffic();
    assert_eq!(nodes.len(), 1, "the document's traffic went to {nodes:?}");
    stand.assert_clean(&[&carol], oo.urls(), &["carol-token"]);
    drop(carol);
    let saved = wait_saved(&stand, "41_oc", &["capybara", "dugong"], async |docx| {
        ooxml_text(&docx, "word/document.xml")
    })
    .await;
    if let Err(e) = saved {
        panic!("{e}\n{}", stand.os.log());
    }
    oo.stop().await;
}

#[tokio::test]
async fn onlyoffice_node_crash_mid_session_saves_nothing_wrong_and_reopening_lands_on_the_survivor()
{
    trace_init();
    let _turn = real_editor_lock().await;
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let Ok(oo) = RealOnlyOffice::start(2).await else {
        return;
    };
    let port = free_port().await;
    let stand = Stand::start(port, &[("onlyoffice", "onlyoffice", oo.urls())], "").await;
    let original = std::fs::read(oo.template("docx")).expect("ONLYOFFICE's blank docx");
    let form_url = stand
        .add_document(
            "42_oc",
            "report.docx",
            DOCX,
            original.clone(),
            &["carol", "dave"],
        )
        .await;
    let carol = open_in_browser(&browser, &stand, "carol", &form_url, "carol-token").await;
    wait_onlyoffice_document(&stand, &carol).await;
    type_text(&carol, "capybara").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let crashed = stand.document_node(oo.urls());
    oo.crash(crashed).await;

    // The editor loses its socket; nothing reaches the host.
    let lost = |page: &Page| {
        page.websockets()
            .iter()
            .filter(|ws| ws.url.contains("/doc/"))
            .all(|ws| ws.closed || !ws.errors.is_empty())
    };
    if let Err(e) = carol
        .wait_observed("the editor's socket ending", LOAD_LIMIT, lost)
        .await
    {
        fail(&e, &[&carol]);
    }
    drop(carol);
    stand.wait_marked_down().await;
    stand.assert_untouched("42_oc", &original);

    // Re-opening lands on the surviving stack, and its save is the user's.
    let dave = open_in_browser(&browser, &stand, "dave", &form_url, "dave-token").await;
    wait_onlyoffice_document(&stand, &dave).await;
    type_text(&dave, "dugong").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stand.assert_clean(&[&dave], oo.urls(), &["carol-token", "dave-token"]);
    drop(dave);
    let saved = wait_saved(&stand, "42_oc", &["dugong"], async |docx| {
        ooxml_text(&docx, "word/document.xml")
    })
    .await;
    match saved {
        Ok(text) => assert!(
            !text.to_lowercase().contains("capybara"),
            "a lost edit came back: {text}"
        ),
        Err(e) => panic!("{e}\n{}", stand.os.log()),
    }
    stand.assert_socket_reached(&oo.urls()[1 - crashed]);
    oo.stop().await;
}

/// The text of one part (`word/document.xml`, ...) of an OOXML package, tags removed, or
/// the reason it could not be read. Read with Python's `zipfile` (the real-editor kits
/// need Python anyway), so the tests need no zip crate.
fn ooxml_text(package: &[u8], part: &str) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("package.zip");
    std::fs::write(&path, package).expect("write the package");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import re,sys,zipfile; \
             x = zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]).decode(); \
             print(re.sub(r'<[^>]+>', '', x))",
        ])
        .arg(&path)
        .arg(part)
        .output()
        .expect("python3 runs");
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        format!("unreadable: {}", String::from_utf8_lossy(&out.stderr))
    }
}

/// `bytes` (a file called `name`) converted to `format` by the real Collabora behind
/// `public` (`/cool/convert-to`, as Nextcloud's previews call it).
async fn convert(public: &str, name: &str, bytes: &[u8], format: &str) -> Vec<u8> {
    let boundary = "officeswitch-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, _, body) = client::send_bytes(
        http::Method::POST,
        &format!("{public}/cool/convert-to/{format}"),
        &[(
            "content-type",
            &format!("multipart/form-data; boundary={boundary}"),
        )],
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "convert-to {format} of {name}");
    body.to_vec()
}

mod host_outage;
mod onlyoffice_dialect;
