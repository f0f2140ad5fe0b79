//! WOPI token translation and proof re-signing (issue 4): editors only ever talk WOPI to
//! officeswitch, and Nextcloud can trust every call it gets.
//!
//! The stand-in editors sign their calls with their own keys (as Collabora does); the
//! stand-in Nextcloud verifies every call with the key officeswitch's discovery publishes,
//! as richdocuments does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::StatusCode;
use sha2::{Digest, Sha256};

use crate::routing::Lab;
use crate::support::client::{self, encode, post_form};
use crate::support::editor::{
    CallOptions, EditorSession, PutBody, Signing, StandInEditor, Suite, WopiCall, WopiReply,
    assert_ok,
};
use crate::support::nextcloud::{ProofCheck, PutFault, StandInNextcloud};
use crate::support::officeswitch::OfficeSwitch;
use crate::support::richdocuments::RichdocumentsView;
use officeswitch::wopi::proof_key::PublicProofKey;

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
const ODT: &str = "application/vnd.oasis.opendocument.text";

/// officeswitch's published proof keys (current, old), read as richdocuments reads them.
pub(crate) async fn published_keys(lab: &Lab) -> (PublicProofKey, PublicProofKey) {
    let (status, xml) = lab.os.get("/hosting/discovery").await;
    assert_eq!(status, StatusCode::OK);
    let view = RichdocumentsView::parse(&xml);
    let attrs = view.proof_key.expect("officeswitch publishes a proof-key");
    let key = |m: &str, e: &str| {
        PublicProofKey::from_modulus_exponent_b64(&attrs[m], &attrs[e]).expect("usable key")
    };
    (key("modulus", "exponent"), key("oldmodulus", "oldexponent"))
}

/// A lab whose Nextcloud checks proofs against officeswitch's published key.
async fn verifying_lab() -> Lab {
    let lab = Lab::start(|b, _| b).await;
    let keys = published_keys(&lab).await;
    lab.nc.verify_proofs_with(Some(keys));
    lab
}

/// Opens `file_id` (granted to `token`) as richdocuments does and returns the node that
/// rendered the editor and the session that editor was given.
async fn open(lab: &Lab, mime: &str, file_id: &str, token: &str) -> (&'static str, EditorSession) {
    let url = format!(
        "{}WOPISrc={}&lang=de",
        lab.urlsrc(mime).await,
        encode(&lab.nc.wopi_src(file_id))
    );
    let ttl = unix_now() + 3600;
    let reply = post_form(
        &url,
        &format!("access_token={token}&access_token_ttl={ttl}"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let node = reply.node().expect("an editor answered").to_string();
    let editor = editor_at(lab, &node);
    let session = editor.last_session().expect("the editor kept the session");
    (
        if mime == DOCX {
            "onlyoffice"
        } else {
            "collabora"
        },
        session,
    )
}

fn editor_at<'a>(lab: &'a Lab, node: &str) -> &'a StandInEditor {
    lab.cool
        .iter()
        .chain(&lab.oo)
        .find(|e| e.url() == node)
        .expect("a known node")
}

fn editor_of<'a>(lab: &'a Lab, session: &EditorSession) -> &'a StandInEditor {
    editor_at(lab, &session.node)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The editor sees only officeswitch: its WOPISrc and a token that is not the host's and
/// reveals neither the host's token nor its URL.
fn assert_translated(lab: &Lab, session: &EditorSession, host_token: &str) {
    let files = format!("{}/wopi/files/", lab.os.public_url);
    assert!(
        session.wopi_src.starts_with(&files),
        "the editor got {}",
        session.wopi_src
    );
    assert!(
        !session.wopi_src.contains('?'),
        "no query in the minted WOPISrc"
    );
    assert_ne!(session.access_token, host_token);
    assert!(
        session
            .access_token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "URL-safe token"
    );
    let readable: String = session
        .access_token
        .split('.')
        .filter_map(|part| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .ok()
        })
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .collect();
    for secret in [host_token, &lab.nc.origin(), "acme", "richdocuments"] {
        assert!(
            !readable.contains(secret) && !session.access_token.contains(secret),
            "the token reveals {secret}"
        );
    }
}

/// Runs open -> CheckFileInfo -> GetFile -> Lock -> PutFile -> Unlock -> PutRelativeFile
/// -> CheckFileInfo of the new file for one document.
async fn whole_flow(lab: &Lab, mime: &str, file_id: &str, name: &str) {
    let host_token = format!("nc-token-{file_id}");
    let content = format!("original content of {name}").into_bytes();
    lab.nc.add_file(file_id, name, content.clone());
    lab.nc.grant(file_id, &host_token);
    let (_, session) = open(lab, mime, file_id, &host_token).await;
    assert_translated(lab, &session, &host_token);
    let editor = editor_of(lab, &session);

    let info = editor.wopi(&session, WopiCall::CheckFileInfo).await;
    assert_ok(&info, "CheckFileInfo");
    let json = info.json().expect("CheckFileInfo JSON");
    assert_eq!(json["BaseFileName"], name);

    let get = editor
        .wopi(
            &session,
            WopiCall::GetFile {
                max_expected_size: None,
            },
        )
        .await;
    assert_ok(&get, "GetFile");
    assert_eq!(get.body_sha256, sha256_hex(&content));

    let lock = "lock-1".to_string();
    let locked = editor
        .wopi(&session, WopiCall::Lock { lock: lock.clone() })
        .await;
    assert_ok(&locked, "Lock");

    let saved = format!("edited content of {name}").into_bytes();
    let put = editor
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: Some(lock.clone()),
                body: PutBody::Bytes(saved.clone()),
            },
        )
        .await;
    assert_ok(&put, "PutFile");
    assert!(
        lab.nc
            .puts()
            .contains(&(file_id.to_string(), saved.len() as u64, sha256_hex(&saved))),
        "Nextcloud got the save byte for byte"
    );

    let unlocked = editor.wopi(&session, WopiCall::Unlock { lock }).await;
    assert_ok(&unlocked, "Unlock");

    let relative = editor
        .wopi(
            &session,
            WopiCall::PutRelativeFile {
                suggested_target: ".pdf".into(),
                body: PutBody::Bytes(b"exported".to_vec()),
            },
        )
        .await;
    assert_ok(&relative, "PutRelativeFile");
    let json = relative.json().expect("PutRelativeFile JSON");
    let url = json["Url"].as_str().expect("Url");
    let files = format!("{}/wopi/files/", lab.os.public_url);
    assert!(url.starts_with(&files), "Url rewritten: {url}");
    let (new_src, query) = url.split_once('?').expect("token in Url");
    let new_token = query.strip_prefix("access_token=").expect("access_token");
    let new_session = EditorSession {
        wopi_src: new_src.to_string(),
        access_token: new_token.to_string(),
        ..session.clone()
    };
    let new_info = editor.wopi(&new_session, WopiCall::CheckFileInfo).await;
    assert_ok(&new_info, "CheckFileInfo of the PutRelativeFile result");

    // Nextcloud saw only its own tokens and only valid proofs from officeswitch.
    let calls: Vec<_> = lab
        .nc
        .requests()
        .into_iter()
        .filter(|r| r.file_id.is_some())
        .collect();
    assert!(calls.len() >= 8, "{} calls", calls.len());
    for call in &calls {
        assert!(
            matches!(call.proof, ProofCheck::Valid(_)),
            "{}: {:?}",
            call.path_and_query,
            call.proof
        );
        // Nextcloud's own tokens (the one granted for the file, or the one it made for
        // the PutRelativeFile result), never one officeswitch minted (a JWT).
        let token = call.access_token().unwrap_or_default();
        assert!(
            !token.is_empty() && !token.contains('.'),
            "{}",
            call.path_and_query
        );
    }
}

#[tokio::test]
async fn a_docx_and_an_odt_pass_the_whole_wopi_flow_with_verified_proofs() {
    let lab = verifying_lab().await;
    whole_flow(&lab, DOCX, "11_oc", "report.docx").await;
    whole_flow(&lab, ODT, "12_oc", "notes.odt").await;
}

#[tokio::test]
async fn co_editors_of_one_document_share_one_file_id_and_node() {
    let lab = verifying_lab().await;
    lab.nc.add_file("21_oc", "shared.odt", b"x".to_vec());
    lab.nc.grant("21_oc", "alice-token");
    lab.nc.grant("21_oc", "bob-token");
    let (_, alice) = open(&lab, ODT, "21_oc", "alice-token").await;
    let (_, bob) = open(&lab, ODT, "21_oc", "bob-token").await;
    assert_eq!(alice.wopi_src, bob.wopi_src);
    assert_eq!(alice.node, bob.node);
    assert_ne!(alice.access_token, bob.access_token);
    // Each token still acts as its own user on Nextcloud.
    for session in [&alice, &bob] {
        let reply = editor_of(&lab, session)
            .wopi(session, WopiCall::CheckFileInfo)
            .await;
        assert_ok(&reply, "CheckFileInfo");
    }
    let tokens: Vec<String> = lab
        .nc
        .requests()
        .iter()
        .filter_map(|r| r.access_token())
        .collect();
    assert!(tokens.iter().any(|t| t == "alice-token"));
    assert!(tokens.iter().any(|t| t == "bob-token"));
}

/// Sends `call` with `options` and checks the status and that Nextcloud got nothing.
async fn refused(
    lab: &Lab,
    session: &EditorSession,
    call: WopiCall,
    options: CallOptions,
    expected: StatusCode,
    what: &str,
) {
    let before = lab.nc.requests().len();
    let reply = editor_of(lab, session)
        .wopi_with(session, call, options)
        .await;
    assert_eq!(reply.status, expected, "{what}: {:?}", reply.error);
    assert_eq!(
        lab.nc.requests().len(),
        before,
        "{what}: Nextcloud was contacted"
    );
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_and_bad_proofs_never_reach_nextcloud() {
    let lab = verifying_lab().await;
    lab.nc.add_file("31_oc", "a.odt", b"a".to_vec());
    lab.nc.add_file("32_oc", "b.odt", b"b".to_vec());
    lab.nc.grant("31_oc", "token-a");
    lab.nc.grant("32_oc", "token-b");
    let (_, a) = open(&lab, ODT, "31_oc", "token-a").await;
    let (_, b) = open(&lab, ODT, "32_oc", "token-b").await;

    let mut forged = a.access_token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let with_token = |token: String| CallOptions {
        token: Some(token),
        ..CallOptions::default()
    };
    let signing = |signing: Signing| CallOptions {
        signing,
        ..CallOptions::default()
    };
    let cases = [
        (with_token(forged), StatusCode::UNAUTHORIZED, "forged token"),
        (
            with_token(b.access_token.clone()),
            StatusCode::UNAUTHORIZED,
            "another file's token",
        ),
        (
            with_token("not-a-token".into()),
            StatusCode::UNAUTHORIZED,
            "garbage token",
        ),
        (
            signing(Signing::Tampered),
            StatusCode::INTERNAL_SERVER_ERROR,
            "bad proof",
        ),
        (
            signing(Signing::WrongKey),
            StatusCode::INTERNAL_SERVER_ERROR,
            "proof with another key",
        ),
        (
            signing(Signing::Stale),
            StatusCode::INTERNAL_SERVER_ERROR,
            "stale proof",
        ),
        (
            signing(Signing::None),
            StatusCode::INTERNAL_SERVER_ERROR,
            "missing proof (Collabora publishes a key)",
        ),
    ];
    for (options, expected, what) in cases {
        refused(&lab, &a, WopiCall::CheckFileInfo, options, expected, what).await;
    }
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let lab = verifying_lab().await;
    lab.nc.add_file("41_oc", "a.odt", b"a".to_vec());
    lab.nc.grant("41_oc", "token-a");
    let url = format!(
        "{}WOPISrc={}",
        lab.urlsrc(ODT).await,
        encode(&lab.nc.wopi_src("41_oc"))
    );
    // The host's token expires in two seconds; officeswitch's may not outlive it.
    let ttl = unix_now() + 2;
    let reply = post_form(
        &url,
        &format!("access_token=token-a&access_token_ttl={ttl}"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let session = editor_at(&lab, reply.node().unwrap())
        .last_session()
        .unwrap();
    assert_eq!(session.access_token_ttl, ttl.to_string());
    tokio::time::sleep(Duration::from_millis(3100)).await;
    refused(
        &lab,
        &session,
        WopiCall::CheckFileInfo,
        CallOptions::default(),
        StatusCode::UNAUTHORIZED,
        "expired token",
    )
    .await;
}

#[tokio::test]
async fn host_responses_pointing_outside_the_organisation_are_refused() {
    let lab = verifying_lab().await;
    let stranger = StandInNextcloud::start().await;
    lab.nc.add_file("51_oc", "a.docx", b"a".to_vec());
    lab.nc.grant("51_oc", "token-a");
    let (_, session) = open(&lab, DOCX, "51_oc", "token-a").await;
    let editor = editor_of(&lab, &session);
    lab.nc.set_check_file_info_extra(
        "51_oc",
        serde_json::json!({ "TemplateSource": stranger.wopi_src("1") + "?access_token=x" }),
    );
    let reply = editor.wopi(&session, WopiCall::CheckFileInfo).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    lab.nc
        .set_check_file_info_extra("51_oc", serde_json::json!({}));
    lab.nc
        .set_put_relative_url_override(Some(stranger.wopi_src("2") + "?access_token=y"));
    let reply = editor
        .wopi(
            &session,
            WopiCall::PutRelativeFile {
                suggested_target: ".pdf".into(),
                body: PutBody::Bytes(b"x".to_vec()),
            },
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(stranger.requests().is_empty(), "the stranger was contacted");
}

#[tokio::test]
async fn template_sources_become_officeswitch_links_signed_for_nextcloud() {
    let lab = verifying_lab().await;
    // A new document made from a template, as richdocuments creates one: its
    // CheckFileInfo names the template in TemplateSource, with the file's token.
    lab.nc.add_file_from_template(
        "61_oc",
        "from-template.odt",
        "tpl-1",
        b"template bytes".to_vec(),
    );
    lab.nc.grant("61_oc", "token-a");
    let (_, session) = open(&lab, ODT, "61_oc", "token-a").await;
    let editor = editor_of(&lab, &session);
    let info = editor.wopi(&session, WopiCall::CheckFileInfo).await;
    assert_ok(&info, "CheckFileInfo");
    let source = info.json().unwrap()["TemplateSource"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        source.starts_with(&format!("{}/wopi/links/", lab.os.public_url)),
        "{source}"
    );
    assert!(!source.contains("token-a"));
    // Editors fetch it as given, without a proof; officeswitch signs it for Nextcloud.
    let fetched = editor.wopi(&session, WopiCall::Fetch { url: source }).await;
    assert_ok(&fetched, "TemplateSource fetch");
    assert_eq!(fetched.body.as_ref(), b"template bytes");
}

#[tokio::test]
async fn a_save_cut_short_by_nextcloud_is_an_error_for_the_editor() {
    let lab = verifying_lab().await;
    lab.nc.add_file("71_oc", "a.odt", b"a".to_vec());
    lab.nc.grant("71_oc", "token-a");
    let (_, session) = open(&lab, ODT, "71_oc", "token-a").await;
    let editor = editor_of(&lab, &session);
    lab.nc.set_put_fault(Some(PutFault::ResetAfter(64 * 1024)));
    let reply = editor
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: None,
                body: PutBody::Pattern(8 << 20),
            },
        )
        .await;
    assert!(
        !reply.status.is_success(),
        "a reset save answered {}",
        reply.status
    );
    assert!(lab.nc.puts().is_empty(), "no save was recorded");
    // The editor's own upload cut short never becomes a save either.
    lab.nc.set_put_fault(None);
    let _ = editor
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: None,
                body: PutBody::CutAfter {
                    declared: 4 << 20,
                    sent: 1 << 20,
                },
            },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(lab.nc.puts().is_empty(), "a truncated save was recorded");
}

#[tokio::test]
async fn a_save_nextcloud_stops_reading_is_a_timeout_for_the_editor() {
    let lab = Lab::start(|b, _| b.section("[wopi]\nhost_timeout_secs = 2")).await;
    lab.nc.add_file("72_oc", "a.odt", b"a".to_vec());
    lab.nc.grant("72_oc", "token-a");
    let (_, session) = open(&lab, ODT, "72_oc", "token-a").await;
    lab.nc.set_put_fault(Some(PutFault::StallAfter(64 * 1024)));
    let reply = editor_of(&lab, &session)
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: None,
                body: PutBody::Pattern(8 << 20),
            },
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{:?}",
        reply.error
    );
    assert!(lab.nc.puts().is_empty(), "no save was recorded");
}

#[tokio::test]
async fn each_refusal_is_one_log_line_without_tokens() {
    let cool = StandInEditor::start(Suite::Collabora).await;
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .org("acme", &[nc.origin()], "")
        .spawn()
        .await;
    os.wait_ready().await;
    nc.add_file("81_oc", "a.odt", b"a".to_vec());
    nc.grant("81_oc", "secret-host-token");
    let (_, xml) = client::get(&format!("{}/hosting/discovery", os.public_url)).await;
    let view = RichdocumentsView::parse(&xml);
    let (_, urlsrc) = view.url_src(ODT).expect("odt");
    let open = post_form(
        &format!("{urlsrc}WOPISrc={}", encode(&nc.wopi_src("81_oc"))),
        "access_token=secret-host-token&access_token_ttl=0",
    )
    .await;
    assert_eq!(open.status, StatusCode::OK);
    let session = cool.last_session().expect("session");
    let forged = format!("{}x", session.access_token);
    let cases = [
        (
            CallOptions {
                token: Some(forged.clone()),
                ..CallOptions::default()
            },
            StatusCode::UNAUTHORIZED,
            "access token refused: ",
        ),
        (
            CallOptions {
                signing: Signing::Tampered,
                ..CallOptions::default()
            },
            StatusCode::INTERNAL_SERVER_ERROR,
            "proof refused: ",
        ),
    ];
    for (options, status, reason) in cases {
        let before = os.log().lines().count();
        let reply = cool
            .wopi_with(&session, WopiCall::CheckFileInfo, options)
            .await;
        assert_eq!(reply.status, status);
        // The access line is written when the response ends: give it a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = os.log();
        let new: Vec<&str> = log.lines().skip(before).collect();
        assert_eq!(new.len(), 1, "one line per refusal: {new:#?}");
        assert!(new[0].contains(reason), "{}", new[0]);
        assert!(
            new[0].contains(&format!("status={}", status.as_u16())),
            "{}",
            new[0]
        );
    }
    let log = os.log();
    for secret in [
        "secret-host-token",
        session.access_token.as_str(),
        forged.as_str(),
        "access_token=",
    ] {
        assert!(!log.contains(secret), "the log contains a token:\n{log}");
    }
}

#[tokio::test]
async fn every_wopi_operation_passes_with_its_status_and_headers() {
    let lab = verifying_lab().await;
    lab.nc.add_file("91_oc", "ops.odt", b"ops".to_vec());
    lab.nc.grant("91_oc", "alice");
    lab.nc.grant("91_oc", "bob");
    let (_, alice) = open(&lab, ODT, "91_oc", "alice").await;
    let (_, bob) = open(&lab, ODT, "91_oc", "bob").await;
    let editor = editor_of(&lab, &alice);
    let lock = |l: &str| WopiCall::Lock { lock: l.into() };
    let status = |reply: &WopiReply| reply.status.as_u16();

    assert_eq!(status(&editor.wopi(&alice, lock("A")).await), 200);
    // richdocuments' quirks pass through untouched: a lock conflict is 423.
    assert_eq!(status(&editor.wopi(&bob, lock("B")).await), 423);
    let refresh = editor
        .wopi(&alice, WopiCall::RefreshLock { lock: "A".into() })
        .await;
    assert_eq!(status(&refresh), 200);
    let get_lock = editor.wopi(&alice, WopiCall::GetLock).await;
    assert_eq!(status(&get_lock), 200);
    assert_eq!(get_lock.header("x-wopi-lock"), "A");
    let relock = editor
        .wopi(
            &alice,
            WopiCall::UnlockAndRelock {
                lock: "A2".into(),
                old_lock: "A".into(),
            },
        )
        .await;
    assert_eq!(status(&relock), 200);
    // A save against a changed file: 409 with COOLStatusCode 1010, body intact.
    let stale = editor
        .wopi_with(
            &alice,
            WopiCall::PutFile {
                lock: Some("A2".into()),
                body: PutBody::Bytes(b"late".to_vec()),
            },
            CallOptions {
                cool_timestamp: Some("2001-01-01T00:00:00.000000Z".into()),
                ..CallOptions::default()
            },
        )
        .await;
    assert_eq!(status(&stale), 409);
    assert_eq!(stale.json().unwrap()["COOLStatusCode"], 1010);
    let renamed = editor
        .wopi(
            &alice,
            WopiCall::RenameFile {
                lock: "A2".into(),
                name: "renamed".into(),
            },
        )
        .await;
    assert_eq!(status(&renamed), 200);
    let json = renamed.json().unwrap();
    assert!(
        json["Name"].as_str().unwrap().starts_with("renamed"),
        "{json}"
    );
    // richdocuments answers a rename with the file's Url and a new token: rewritten.
    let url = json["Url"].as_str().expect("Url");
    assert!(
        url.starts_with(&lab.os.public_url),
        "rename Url rewritten: {url}"
    );
    let unlock = editor
        .wopi(&alice, WopiCall::Unlock { lock: "A2".into() })
        .await;
    assert_eq!(status(&unlock), 200);
    let user_info = editor
        .wopi(&alice, WopiCall::PutUserInfo("{\"theme\":\"dark\"}".into()))
        .await;
    assert_eq!(status(&user_info), 200);
    assert_eq!(
        status(&editor.wopi(&alice, WopiCall::GetShareUrl).await),
        501
    );
    assert_eq!(
        status(&editor.wopi(&alice, WopiCall::DeleteFile).await),
        200
    );
    assert_eq!(
        status(&editor.wopi(&alice, WopiCall::CheckFileInfo).await),
        404
    );
}

#[tokio::test]
async fn a_token_of_one_organisation_opens_nothing_of_another() {
    let beta_nc = StandInNextcloud::start().await;
    let beta_origin = beta_nc.origin();
    let lab = Lab::start(move |b, _| b.org("beta", &[beta_origin], "")).await;
    lab.nc.add_file("1_oc", "a.odt", b"a".to_vec());
    lab.nc.grant("1_oc", "acme-token");
    beta_nc.add_file("1_oc", "b.odt", b"b".to_vec());
    beta_nc.grant("1_oc", "beta-token");
    let (_, acme) = open(&lab, ODT, "1_oc", "acme-token").await;
    let url = format!(
        "{}WOPISrc={}",
        lab.urlsrc(ODT).await,
        encode(&beta_nc.wopi_src("1_oc"))
    );
    let reply = post_form(&url, "access_token=beta-token&access_token_ttl=0").await;
    assert_eq!(reply.status, StatusCode::OK);
    let beta = editor_at(&lab, reply.node().unwrap())
        .last_session()
        .unwrap();
    assert_ne!(
        acme.wopi_src, beta.wopi_src,
        "same path, different organisations"
    );
    // acme's token on beta's file: refused, and neither Nextcloud hears of it.
    let crossed = EditorSession {
        access_token: acme.access_token.clone(),
        ..beta.clone()
    };
    let before = (lab.nc.requests().len(), beta_nc.requests().len());
    let reply = editor_of(&lab, &crossed)
        .wopi(&crossed, WopiCall::CheckFileInfo)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!((lab.nc.requests().len(), beta_nc.requests().len()), before);
}
