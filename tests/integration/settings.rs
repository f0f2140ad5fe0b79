//! Collabora's settings through officeswitch (issue 11 item 8): the settings iframe the
//! merged discovery publishes opens, its XHRs reach Nextcloud, and so do the presets a
//! document loads, with every call from the node going to officeswitch, never to a
//! Nextcloud, and never to a Nextcloud the rules do not name.
//!
//! The node is [`StandInSettingsNode`] (coolwsd's settings calls), Nextcloud the stand-in
//! with richdocuments' settings endpoints; officeswitch runs as its own process so its log
//! can be searched for secrets.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::client::{self, encode, post_form};
use crate::support::collabora_settings::{SettingsPage, StandInSettingsNode, VERSION_HASH};
use crate::support::nextcloud::{ADMIN_USER, StandInNextcloud, WopiOperation};
use crate::support::officeswitch::{OfficeSwitch, OfficeSwitchProcess};
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;

const ODT: &str = "application/vnd.oasis.opendocument.text";

/// A Collabora pool of one settings-capable node, organisation `acme` owning the
/// stand-in Nextcloud.
struct Lab {
    node: StandInSettingsNode,
    nc: StandInNextcloud,
    os: OfficeSwitchProcess,
}

impl Lab {
    async fn start() -> Lab {
        trace_init();
        let (node, nc) = tokio::join!(StandInSettingsNode::start(), StandInNextcloud::start());
        let os = OfficeSwitch::builder()
            .pool("collabora", "collabora", &[node.url()])
            .org("acme", &[nc.origin()], "")
            .spawn()
            .await;
        os.wait_ready().await;
        // The node set-up of docs/operations.md: officeswitch is the only WOPI host a node knows.
        node.allow_wopi_host(&os.public_url);
        Lab { node, nc, os }
    }

    async fn discovery(&self) -> RichdocumentsView {
        let (status, xml) = client::get(&format!("{}/hosting/discovery", self.os.public_url)).await;
        assert_eq!(status, StatusCode::OK, "{xml}");
        RichdocumentsView::parse(&xml)
    }

    /// POSTs the settings iframe's form as richdocuments' `CoolFrame` does: to the
    /// `Settings` urlsrc plus `?lang=`.
    async fn open_settings(&self, form: &str) -> client::Reply {
        let view = self.discovery().await;
        let (_, urlsrc) = view.url_src("Settings").expect("a Settings app");
        assert!(
            urlsrc.starts_with(&self.os.public_url),
            "the settings page is on officeswitch: {urlsrc}"
        );
        assert!(
            !urlsrc.contains('?'),
            "CoolFrame appends `?lang=`: the urlsrc must have no query: {urlsrc}"
        );
        post_form(&format!("{urlsrc}?lang=de"), form).await
    }

    /// Opens `file_id` as richdocuments does, its form naming the settings endpoint.
    async fn open_document(&self, file_id: &str, token: &str) -> client::Reply {
        let view = self.discovery().await;
        let (_, urlsrc) = view.url_src(ODT).expect("an odt app");
        let url = format!(
            "{urlsrc}WOPISrc={}&lang=de",
            encode(&self.nc.wopi_src(file_id))
        );
        let form = format!(
            "access_token={token}&access_token_ttl={}&wopi_setting_base_url={}",
            unix_now() + 3600,
            encode(&self.nc.settings_endpoint())
        );
        post_form(&url, &form).await
    }

    /// Every call the node made went to officeswitch.
    fn assert_node_called_only_officeswitch(&self) {
        let calls = self.node.calls();
        assert!(!calls.is_empty());
        for call in &calls {
            assert!(
                call.url.starts_with(&format!("{}/", self.os.public_url)),
                "the node called {} {} directly",
                call.method,
                call.url
            );
        }
    }
}

fn settings_form(token: &str, endpoint: &str, iframe_type: &str) -> String {
    format!(
        "access_token={}&access_token_ttl={}&wopi_setting_base_url={}&iframe_type={iframe_type}\
         &css_variables=--color-main-text%3D%23222&theme=nextcloud&ui_theme=light",
        encode(token),
        unix_now() + 3600,
        encode(endpoint)
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn json(reply: &client::Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

/// Nextcloud's settings requests, in order.
fn settings_requests(nc: &StandInNextcloud) -> Vec<crate::support::nextcloud::WopiRequest> {
    nc.requests()
        .into_iter()
        .filter(|r| {
            matches!(
                r.operation,
                Some(
                    WopiOperation::GetSettings
                        | WopiOperation::UploadSettings
                        | WopiOperation::DeleteSettings
                        | WopiOperation::GetSettingsFile
                )
            )
        })
        .collect()
}

#[tokio::test]
async fn the_settings_iframe_opens_and_its_calls_reach_nextcloud_through_officeswitch() {
    let lab = Lab::start().await;
    let os = &lab.os.public_url;
    let host_token = lab.nc.settings_token(ADMIN_USER);
    let endpoint = lab.nc.settings_endpoint();

    let reply = lab
        .open_settings(&settings_form(&host_token, &endpoint, "admin"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let page = SettingsPage::parse(&reply.body);
    // The node was given officeswitch's endpoint and token, nothing of Nextcloud's.
    assert!(
        page.wopi_setting_base_url
            .starts_with(&format!("{os}/wopi/settings/")),
        "wopi_setting_base_url reached the node as {}",
        page.wopi_setting_base_url
    );
    assert_eq!(page.iframe_type, "admin");
    assert!(!page.access_token.is_empty() && page.access_token != host_token);
    let visit = lab.node.pages().pop().expect("the node served the page");
    for (name, value) in &visit.fields {
        assert!(
            !value.contains(&lab.nc.origin()) && !value.contains(&host_token),
            "{name}={value} names Nextcloud"
        );
    }
    assert_eq!(visit.field("theme"), Some("nextcloud"));

    // The page's XHRs, as its script makes them.
    let dictionary = b"officeswitch\nproxy\n";
    let upload = page
        .upload_settings(os, "wordbook", "en_US (1).dic", dictionary)
        .await;
    assert_eq!(upload.status, StatusCode::OK, "{}", upload.body);
    assert_eq!(
        lab.nc
            .settings_file("systemconfig", ADMIN_USER, "wordbook", "en_US (1).dic")
            .as_deref(),
        Some(&dictionary[..])
    );

    let config = page.fetch_settings_config(os).await;
    assert_eq!(config.status, StatusCode::OK, "{}", config.body);
    let config = json(&config);
    assert_eq!(config["kind"], "shared");
    let uri = config["wordbook"][0]["uri"]
        .as_str()
        .expect("the dictionary");
    assert!(
        uri.starts_with(&format!("{os}/wopi/links/"))
            && uri
                .split('?')
                .next()
                .unwrap()
                .ends_with("/en_US%20%281%29.dic"),
        "{uri}"
    );

    let file = page.fetch_setting_file(os, uri).await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.body);
    assert_eq!(file.body.as_bytes(), dictionary);

    let delete = page
        .delete_settings_config(os, "wordbook", "en_US (1).dic")
        .await;
    assert_eq!(delete.status, StatusCode::OK, "{}", delete.body);
    assert_eq!(
        lab.nc
            .settings_file("systemconfig", ADMIN_USER, "wordbook", "en_US (1).dic"),
        None
    );

    // Every call the node made went to officeswitch, signed; Nextcloud got each with its
    // own token.
    lab.assert_node_called_only_officeswitch();
    for call in lab.node.calls() {
        assert!(call.signed, "{} {}", call.method, call.url);
        assert_eq!(
            call.status,
            Some(StatusCode::OK),
            "{} {}",
            call.method,
            call.url
        );
    }
    let requests = settings_requests(&lab.nc);
    let operations: Vec<_> = requests.iter().map(|r| r.operation.clone()).collect();
    assert_eq!(
        operations,
        [
            Some(WopiOperation::UploadSettings),
            Some(WopiOperation::GetSettings),
            Some(WopiOperation::GetSettingsFile),
            Some(WopiOperation::DeleteSettings),
        ]
    );
    for request in &requests {
        assert_eq!(
            request.status,
            Some(StatusCode::OK),
            "{}",
            request.path_and_query
        );
        if request.operation != Some(WopiOperation::GetSettingsFile) {
            assert_eq!(request.access_token().as_deref(), Some(host_token.as_str()));
        }
    }

    // No token, Nextcloud's or officeswitch's, in officeswitch's log.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = lab.os.log();
    let file_token = requests[2]
        .path_and_query
        .split('/')
        .nth(6)
        .expect("the file URL's token")
        .to_owned();
    for secret in [&host_token, &page.access_token, &file_token] {
        assert!(
            !log.contains(secret.as_str()),
            "the log shows a token: {secret}"
        );
    }
    assert!(log.contains("/wopi/settings/"), "settings calls are logged");
}

#[tokio::test]
async fn a_documents_settings_and_its_settings_dialog_go_through_officeswitch() {
    let lab = Lab::start().await;
    let os = &lab.os.public_url;
    lab.nc.add_file("71_ocabc", "a.odt", b"a".to_vec());
    lab.nc
        .grant_to_user("71_ocabc", "doc-token-1", "alice", true);
    lab.nc.add_file("72_ocabc", "b.odt", b"b".to_vec());
    lab.nc
        .grant_to_user("72_ocabc", "doc-token-2", "alice", true);
    lab.nc
        .put_settings_file("systemconfig", "", "xcu", "shared.xcu", b"<shared/>");
    lab.nc
        .put_settings_file("userconfig", "alice", "autotext", "mine.bau", b"autotext");

    let reply = lab.open_document("71_ocabc", "doc-token-1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let presets = lab.node.presets();
    let found = |group: &str, name: &str| {
        presets
            .iter()
            .find(|p| p.group == group && p.file_name == name)
            .unwrap_or_else(|| panic!("no {group}/{name} preset in {presets:#?}"))
    };
    let shared = found("xcu", "shared.xcu");
    assert_eq!(shared.status, Some(StatusCode::OK));
    assert_eq!(&shared.bytes[..], b"<shared/>");
    let user = found("autotext", "mine.bau");
    assert_eq!(
        (user.status, &user.bytes[..]),
        (Some(StatusCode::OK), &b"autotext"[..])
    );
    // coolwsd keys its shared presets by officeswitch's settings URL: one per Nextcloud,
    // not per document.
    assert!(
        shared.config_id.starts_with(&format!(
            "shared-{}/wopi/settings/",
            os.replacen("://", "_", 1)
        )),
        "{}",
        shared.config_id
    );
    lab.assert_node_called_only_officeswitch();
    let calls = lab.node.calls();
    assert!(calls[0].signed, "CheckFileInfo is signed");
    assert!(
        calls[1..].iter().all(|c| !c.signed),
        "presets are fetched unsigned"
    );

    // The editor page got officeswitch's settings endpoint for the document.
    let page = SettingsPage::parse(&reply.body);
    let visit = lab.node.pages().pop().expect("the document page");
    let file_id = visit
        .field("WOPISrc")
        .and_then(|w| w.rsplit('/').next())
        .expect("officeswitch's WOPISrc")
        .to_owned();
    assert_eq!(
        page.wopi_setting_base_url,
        format!("{os}/wopi/settings/{file_id}")
    );

    let second = lab.open_document("72_ocabc", "doc-token-2").await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let again = lab
        .node
        .presets()
        .into_iter()
        .rev()
        .find(|p| p.group == "xcu")
        .expect("the second document's shared presets");
    assert_eq!(again.config_id, shared.config_id);

    // The editor's settings dialog: the same page, by GET, with the document's token.
    let dialog = format!(
        "{os}/browser/{VERSION_HASH}/adminIntegratorSettings.html?ui_theme=light&lang=de&mobile=false\
         &access_token={}&access_token_ttl={}&wopi_setting_base_url={}&disable_ai_settings=false",
        encode(&page.access_token),
        encode(&page.access_token_ttl),
        encode(&page.wopi_setting_base_url)
    );
    let dialog = client::send(Method::GET, &dialog, &[], b"").await;
    assert_eq!(dialog.status, StatusCode::OK, "{}", dialog.body);
    let dialog = SettingsPage::parse(&dialog.body);
    let config = dialog.fetch_settings_config(os).await;
    assert_eq!(config.status, StatusCode::OK, "{}", config.body);
    let config = json(&config);
    assert_eq!(config["kind"], "user");
    let uri = config["autotext"][0]["uri"].as_str().expect("the autotext");
    let file = dialog.fetch_setting_file(os, uri).await;
    assert_eq!(
        (file.status, file.body.as_str()),
        (StatusCode::OK, "autotext")
    );
    lab.assert_node_called_only_officeswitch();
    // Nextcloud served the dialog's configuration to the document's own token.
    let get = settings_requests(&lab.nc)
        .into_iter()
        .rev()
        .find(|r| r.operation == Some(WopiOperation::GetSettings))
        .expect("a configuration request");
    assert_eq!(get.access_token().as_deref(), Some("doc-token-1"));
}

#[tokio::test]
async fn settings_naming_a_nextcloud_the_rules_do_not_know_are_refused() {
    let lab = Lab::start().await;
    let os = &lab.os.public_url;
    let stranger = StandInNextcloud::start().await;
    let token = stranger.settings_token(ADMIN_USER);

    // The settings page naming an unknown Nextcloud: refused before any node sees it.
    let reply = lab
        .open_settings(&settings_form(
            &token,
            &stranger.settings_endpoint(),
            "admin",
        ))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert!(
        reply.body.contains("not served by officeswitch"),
        "{}",
        reply.body
    );
    // Not the settings endpoint, or none: 400.
    let elsewhere = format!("{}/index.php/apps/richdocuments/assets/x", lab.nc.origin());
    for form in [
        settings_form(&token, &elsewhere, "admin"),
        format!("access_token={token}&iframe_type=admin"),
    ] {
        let reply = lab.open_settings(&form).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{form}: {}",
            reply.body
        );
    }
    assert!(
        lab.node.pages().is_empty(),
        "the node saw {:?}",
        lab.node.pages()
    );

    // A document whose settings name an unknown Nextcloud does not open.
    lab.nc.add_file("73_ocabc", "c.odt", b"c".to_vec());
    lab.nc.grant("73_ocabc", "doc-token-3");
    lab.nc.set_check_file_info_extra(
        "73_ocabc",
        json!({"SharedSettings": {
            "uri": format!("{}?type=systemconfig&access_token={token}&fileId=-1", stranger.settings_endpoint()),
            "stamp": "x",
        }}),
    );
    let reply = lab.open_document("73_ocabc", "doc-token-3").await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_GATEWAY,
        "CheckFileInfo refused"
    );
    assert!(lab.node.presets().is_empty());
    assert!(stranger.requests().is_empty(), "{:?}", stranger.requests());

    // Settings calls with a forged token, or another endpoint's, never reach Nextcloud.
    let acme = lab
        .open_settings(&settings_form(
            &lab.nc.settings_token(ADMIN_USER),
            &lab.nc.settings_endpoint(),
            "admin",
        ))
        .await;
    assert_eq!(acme.status, StatusCode::OK);
    let page = SettingsPage::parse(&acme.body);
    let before = settings_requests(&lab.nc).len();
    let forged = format!(
        "{}?access_token={}x&fileId=-1&type=systemconfig",
        page.wopi_setting_base_url, page.access_token
    );
    let other_id = format!(
        "{os}/wopi/settings/{}?access_token={}&fileId=-1&type=systemconfig",
        "A".repeat(32),
        page.access_token
    );
    let as_file = format!(
        "{os}/wopi/files/{}?access_token={}",
        page.wopi_setting_base_url.rsplit('/').next().unwrap(),
        page.access_token
    );
    for url in [forged, other_id, as_file] {
        let reply = client::send(Method::GET, &url, &[], b"").await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{url}: {}",
            reply.body
        );
    }
    assert_eq!(settings_requests(&lab.nc).len(), before);
}
