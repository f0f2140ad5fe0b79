//! Users open, edit, save and co-edit documents through officeswitch in a real browser,
//! against the real editors (issues 11, 19 and 20).
//!
//! The set-up is what a hoster runs: officeswitch (a separate process, its own log) in front
//! of two real nodes configured only as the README's "Setting up the editors" says; a
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
use crate::support::nextcloud::StandInNextcloud;
use crate::support::nextcloud_page::{NextcloudPage, OpenSpec, richdocuments_form_url};
use crate::support::officeswitch::{OfficeSwitch, OfficeSwitchProcess};
use crate::support::real_collabora::RealCollabora;
use crate::support::real_editor::{free_port, real_editor_lock};
use crate::support::real_onlyoffice::RealOnlyOffice;
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;

const ODT: &str = "application/vnd.oasis.opendocument.text";
const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

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
        }
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
/// CORS). Requests the page itself cancelled (`net::ERR_ABORTED`: Collabora's debug build
/// probes for branding files it does not have) and the stand-in Nextcloud's missing
/// avatars are not officeswitch's.
fn broken_requests(page: &Page, public: &str) -> Vec<String> {
    page.failed_requests()
        .into_iter()
        .filter(|r| {
            r.blocked_reason.is_some()
                || r.cors_error.is_some()
                || (r.url.starts_with(public)
                    && r.error
                        .as_deref()
                        .is_none_or(|e| !e.contains("ERR_ABORTED")))
        })
        .map(|r| format!("{:?} {:?} {} {}", r.status, r.error, r.method, r.url))
        .collect()
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
    let person = browser.user(user).await.expect("a browser context");
    let url = stand.page.page_url(&OpenSpec {
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
    page
}

#[tokio::test]
async fn collabora_odt_opens_for_two_users_on_one_node_in_a_real_browser() {
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
    let odt = convert(&stand.public, "hello from the host\n", "odt").await;
    stand.nc.add_file("7_oc", "notes.odt", odt);
    stand.nc.grant_to_user("7_oc", "alice-token", "alice", true);
    stand.nc.grant_to_user("7_oc", "bob-token", "bob", true);
    stand
        .nc
        .set_check_file_info_extra("7_oc", json!({ "PostMessageOrigin": stand.page.origin() }));
    let form_url = stand.form_url(ODT, "7_oc").await;

    let alice = open_in_browser(&browser, &stand, "alice", &form_url, "alice-token").await;
    // The editor frame rendered (no CSP block) and every request of it succeeded.
    let refused: Vec<String> = alice
        .console()
        .into_iter()
        .filter(|l| l.contains("Content Security Policy") || l.contains("Refused to frame"))
        .collect();
    if !refused.is_empty() {
        fail(&format!("CSP refusals: {refused:?}"), &[&alice]);
    }
    let broken = broken_requests(&alice, &stand.public);
    if !broken.is_empty() {
        fail(&format!("editor requests failed: {broken:#?}"), &[&alice]);
    }
    if !alice
        .websockets()
        .iter()
        .any(|ws| ws.handshake_status == Some(101) && ws.frames_received > 0)
    {
        fail("no working WebSocket", &[&alice]);
    }

    // A second user, in a second browser context, joins the same document.
    let bob = open_in_browser(&browser, &stand, "bob", &form_url, "bob-token").await;
    let broken = broken_requests(&bob, &stand.public);
    if !broken.is_empty() {
        fail(&format!("editor requests failed: {broken:#?}"), &[&bob]);
    }
    // The editor called the host through officeswitch, every call signed.
    let calls = stand.nc.requests();
    assert!(
        calls
            .iter()
            .filter(|r| r.status == Some(StatusCode::OK))
            .count()
            >= 2,
        "CheckFileInfo and GetFile reached the host: {calls:#?}"
    );
    assert!(
        calls
            .iter()
            .filter(|r| r.path_and_query.contains("/wopi/files/7_oc"))
            .all(|r| r.proof_headers.proof.is_some()),
        "a WOPI call without a proof: {calls:#?}"
    );
    let nodes = stand.nodes_of_document_traffic();
    assert_eq!(nodes.len(), 1, "the document's traffic went to {nodes:?}");
    stand.assert_clean(&[&alice, &bob], cool.urls(), &["alice-token", "bob-token"]);
    drop((alice, bob));
    cool.stop().await;
}

#[tokio::test]
async fn onlyoffice_docx_editor_loads_and_connects_through_officeswitch_in_a_real_browser() {
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
    stand.nc.add_file("9_oc", "report.docx", docx);
    stand.nc.grant_to_user("9_oc", "carol-token", "carol", true);
    stand
        .nc
        .set_check_file_info_extra("9_oc", json!({ "PostMessageOrigin": stand.page.origin() }));
    let form_url = stand.form_url(DOCX, "9_oc").await;

    let person = browser.user("carol").await.expect("a browser context");
    let url = stand.page.page_url(&OpenSpec {
        form_url: form_url.clone(),
        access_token: "carol-token".into(),
        ttl: 0,
    });
    let carol = person
        .open(&url)
        .await
        .unwrap_or_else(|e| panic!("carol: {e}"));
    // The page sits at ONLYOFFICE's own path, so `../../../web-apps/...` resolves to the
    // API script, the versioned editor frame loads, and sdkjs opens its socket.io
    // WebSocket below the version segment, through officeswitch, to the document's node.
    let socket_open = |page: &Page| {
        page.websockets()
            .iter()
            .any(|ws| ws.url.contains("/doc/") && ws.handshake_status == Some(101))
    };
    if let Err(e) = carol
        .wait_observed("the editor's socket.io WebSocket", LOAD_LIMIT, socket_open)
        .await
    {
        fail(&e, &[&carol]);
    }
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
    let broken = broken_requests(&carol, &stand.public);
    if !broken.is_empty() {
        fail(&format!("editor requests failed: {broken:#?}"), &[&carol]);
    }
    let nodes = stand.nodes_of_document_traffic();
    assert_eq!(nodes.len(), 1, "the document's traffic went to {nodes:?}");
    stand.assert_clean(&[&carol], oo.urls(), &["carol-token"]);
    drop(carol);
    oo.stop().await;
}

/// `text` converted to `format` by the real Collabora behind `public` (`/cool/convert-to`).
async fn convert(public: &str, text: &str, format: &str) -> Vec<u8> {
    let boundary = "officeswitch-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"in.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n{text}\r\n--{boundary}--\r\n"
    );
    let (status, _, body) = client::send_bytes(
        http::Method::POST,
        &format!("{public}/cool/convert-to/{format}"),
        &[(
            "content-type",
            &format!("multipart/form-data; boundary={boundary}"),
        )],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "convert-to {format}");
    body.to_vec()
}
