//! ONLYOFFICE behind Nextcloud Office (issue 12): officeswitch speaks richdocuments'
//! Collabora dialect to ONLYOFFICE so that no ONLYOFFICE call loses data, and leaves
//! Collabora's exchange as it is.
//!
//! The stand-in Nextcloud behaves as richdocuments does where it matters here: a rename
//! writes the request body into the renamed file, a version id (`<fileid>_<instanceid>_<version>`)
//! opens with `UserCanWrite` and its PutFile writes the current file, and a save whose
//! `X-COOL-WOPI-Timestamp` is not the file's time gets 409 `{"COOLStatusCode":1010}`
//! (which officeswitch turns into a conflict copy for ONLYOFFICE). The
//! stand-in ONLYOFFICE sends what the real one sends: RENAME_FILE without a body, PutFile
//! with `X-LOOL-WOPI-*` headers.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::metrics;
use crate::routing::Lab;
use crate::support::client::{self, encode, post_form};
use crate::support::editor::{EditorSession, PutBody, StandInEditor, WopiCall, assert_ok};
use crate::support::nextcloud::{PutFault, WopiOperation, WopiRequest};
use crate::wopi::published_keys;

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
const ODT: &str = "application/vnd.oasis.opendocument.text";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Opens `host_file_id` (its WOPISrc, as richdocuments builds it) with `token`, `extra`
/// appended to the query as richdocuments appends it (`&permission=readonly`); returns
/// the editor that rendered the page and the session it was given.
async fn open<'a>(
    lab: &'a Lab,
    mime: &str,
    host_file_id: &str,
    token: &str,
    extra: &str,
) -> (&'a StandInEditor, EditorSession) {
    let url = format!(
        "{}WOPISrc={}&lang=de{extra}",
        lab.urlsrc(mime).await,
        encode(&lab.nc.wopi_src(host_file_id))
    );
    let reply = post_form(&url, &format!("access_token={token}&access_token_ttl=0")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let node = reply.node().expect("an editor answered").to_string();
    let editor = lab
        .cool
        .iter()
        .chain(&lab.oo)
        .find(|e| e.url() == node)
        .expect("a known node");
    let session = editor.last_session().expect("the editor kept the session");
    (editor, session)
}

fn is_onlyoffice(lab: &Lab, editor: &StandInEditor) -> bool {
    lab.oo.iter().any(|e| e.url() == editor.url())
}

/// The requests Nextcloud got for `operation`.
fn host_calls(lab: &Lab, operation: &WopiOperation) -> Vec<WopiRequest> {
    lab.nc
        .requests()
        .into_iter()
        .filter(|r| r.operation.as_ref() == Some(operation))
        .collect()
}

/// CheckFileInfo as Nextcloud answers it, asked directly with the host's token.
async fn host_check_file_info(lab: &Lab, host_file_id: &str, token: &str) -> Value {
    let url = format!("{}?access_token={token}", lab.nc.wopi_src(host_file_id));
    let reply = client::send(Method::GET, &url, &[], b"").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    serde_json::from_str(&reply.body).expect("CheckFileInfo JSON")
}

#[tokio::test]
async fn a_rename_through_onlyoffice_leaves_the_files_bytes_intact() {
    let lab = Lab::start(|b, _| b).await;
    let content = b"PK\x03\x04 the report's bytes".to_vec();
    lab.nc.add_file("51_oc", "report.docx", content.clone());
    lab.nc.grant("51_oc", "alice-token");
    let (editor, session) = open(&lab, DOCX, "51_oc", "alice-token", "").await;
    assert!(is_onlyoffice(&lab, editor), "docx opens in ONLYOFFICE");

    // ONLYOFFICE is told it cannot rename: it offers no rename and sends none.
    let info = editor.wopi(&session, WopiCall::CheckFileInfo).await;
    assert_ok(&info, "CheckFileInfo");
    let info = info.json().unwrap();
    assert_eq!(info["SupportsRename"], false, "{info}");
    assert_eq!(info["UserCanRename"], false, "{info}");

    // An ONLYOFFICE that renames anyway (empty body, as wopiClient.js sends it): refused
    // before Nextcloud, which would write the empty body into the renamed file.
    let lock = "doc-key".to_string();
    assert_ok(
        &editor
            .wopi(&session, WopiCall::Lock { lock: lock.clone() })
            .await,
        "Lock",
    );
    let renamed = editor
        .wopi(
            &session,
            WopiCall::RenameFile {
                lock,
                name: "renamed".into(),
            },
        )
        .await;
    assert_eq!(
        renamed.status,
        StatusCode::NOT_IMPLEMENTED,
        "{}",
        renamed.text()
    );
    assert!(
        renamed.header("x-wopi-servererror").contains("renam"),
        "{:?}",
        renamed.headers
    );
    assert!(host_calls(&lab, &WopiOperation::RenameFile).is_empty());
    let kept = lab.nc.contents_of("51_oc").expect("kept");
    assert_eq!(sha256_hex(&kept), sha256_hex(&content), "bytes intact");
    assert_eq!(lab.nc.name_of("51_oc").as_deref(), Some("report.docx"));
}

#[tokio::test]
async fn a_version_opened_in_onlyoffice_cannot_change_the_current_file() {
    let lab = Lab::start(|b, _| b).await;
    let current = b"PK current text".to_vec();
    let old = b"PK old text of version 1700000000".to_vec();
    lab.nc.add_file("61_oc", "report.docx", current.clone());
    lab.nc.add_version("61_oc", "1700000000", old.clone());
    lab.nc.grant("61_oc", "alice-token");

    // An old version by its id alone, and the current file opened read-only
    // (richdocuments' `permission=readonly`, which ONLYOFFICE ignores).
    for (host_id, extra, expected) in [
        ("61_oc_1700000000", "", &old),
        ("61_oc", "&permission=readonly", &current),
    ] {
        let (editor, session) = open(&lab, DOCX, host_id, "alice-token", extra).await;
        assert!(is_onlyoffice(&lab, editor));
        let info = editor.wopi(&session, WopiCall::CheckFileInfo).await;
        assert_ok(&info, "CheckFileInfo");
        let info = info.json().unwrap();
        assert_eq!(info["UserCanWrite"], false, "{host_id}: {info}");
        assert_eq!(info["ReadOnly"], true, "{host_id}: {info}");
        assert_eq!(info["UserCanNotWriteRelative"], true, "{host_id}: {info}");
        let got = editor
            .wopi(
                &session,
                WopiCall::GetFile {
                    max_expected_size: None,
                },
            )
            .await;
        assert_ok(&got, "GetFile");
        assert_eq!(got.body_sha256, sha256_hex(expected), "{host_id}");

        let put = editor
            .wopi(
                &session,
                WopiCall::PutFile {
                    lock: Some("doc-key".into()),
                    body: PutBody::Bytes(b"edited old version".to_vec()),
                },
            )
            .await;
        assert_eq!(
            put.status,
            StatusCode::FORBIDDEN,
            "{host_id}: {}",
            put.text()
        );
        assert!(put.header("x-wopi-servererror").contains("read-only"));
        let copy = editor
            .wopi(
                &session,
                WopiCall::PutRelativeFile {
                    suggested_target: ".docx".into(),
                    body: PutBody::Bytes(b"copy".to_vec()),
                },
            )
            .await;
        assert_eq!(copy.status, StatusCode::FORBIDDEN, "{host_id}");
        let rename = editor
            .wopi(
                &session,
                WopiCall::RenameFile {
                    lock: "doc-key".into(),
                    name: "old".into(),
                },
            )
            .await;
        assert_eq!(rename.status, StatusCode::FORBIDDEN, "{host_id}");
    }
    assert!(host_calls(&lab, &WopiOperation::PutFile).is_empty());
    assert!(host_calls(&lab, &WopiOperation::PutRelativeFile).is_empty());
    assert!(lab.nc.put_records().is_empty());
    let kept = lab.nc.contents_of("61_oc").expect("kept");
    assert_eq!(
        sha256_hex(&kept),
        sha256_hex(&current),
        "current bytes intact"
    );
    assert_eq!(lab.nc.file_ids(), ["61_oc"], "no copy was made");
}

/// A lab whose Nextcloud checks officeswitch's proofs (every call officeswitch makes must
/// be signed) and whose officeswitch serves `/metrics`.
async fn checked_lab() -> Lab {
    let lab = Lab::start(|b, _| b.admin(metrics::TOKEN)).await;
    lab.nc.verify_proofs_with(Some(published_keys(&lab).await));
    lab
}

/// officeswitch's `officeswitch_wopi_conflict_copies_total`.
async fn conflict_copies(lab: &Lab) -> f64 {
    let admin = lab.os.admin_addr();
    metrics::value(
        &metrics::scrape(admin).await,
        "officeswitch_wopi_conflict_copies_total",
    )
}

/// Opens `plan.docx` (`71_oc`) in ONLYOFFICE, reads it and locks it as ONLYOFFICE does;
/// then the file changes in Nextcloud (an upload in Files, a sync client). Returns the
/// editor, its session, its lock and the other client's bytes.
async fn onlyoffice_session_then_a_change_in_nextcloud(
    lab: &Lab,
) -> (&StandInEditor, EditorSession, String, Vec<u8>) {
    lab.nc.add_file("71_oc", "plan.docx", b"PK first".to_vec());
    lab.nc.grant("71_oc", "alice-token");
    let (editor, session) = open(lab, DOCX, "71_oc", "alice-token", "").await;
    assert!(is_onlyoffice(lab, editor));
    assert_ok(
        &editor.wopi(&session, WopiCall::CheckFileInfo).await,
        "CheckFileInfo",
    );
    let lock = "doc-key".to_string();
    assert_ok(
        &editor
            .wopi(&session, WopiCall::Lock { lock: lock.clone() })
            .await,
        "Lock",
    );
    let theirs = b"PK changed in Nextcloud".to_vec();
    lab.nc.change_in_storage("71_oc", theirs.clone());
    (editor, session, lock, theirs)
}

/// Whether `name` is `plan (conflict YYYY-MM-DD HHMMSS UTC).docx`.
fn is_conflict_copy_of_plan(name: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix("plan (conflict ")
        .and_then(|rest| rest.strip_suffix(" UTC).docx"))
    else {
        return false;
    };
    let shape = stamp.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b' ',
        _ => b.is_ascii_digit(),
    });
    stamp.len() == 17 && shape
}

#[tokio::test]
async fn an_out_of_date_onlyoffice_save_becomes_a_conflict_copy_and_leaves_the_newer_file() {
    let lab = checked_lab().await;
    let (editor, session, lock, theirs) = onlyoffice_session_then_a_change_in_nextcloud(&lab).await;
    let copies_before = conflict_copies(&lab).await;

    let mine = b"PK ONLYOFFICE's late save".to_vec();
    let stale = editor
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: Some(lock.clone()),
                body: PutBody::Bytes(mine.clone()),
            },
        )
        .await;
    // ONLYOFFICE hears of success, so it keeps no forgotten file to restore later; the
    // answer has no new time, so its next save is still out of date.
    assert_eq!(stale.status, StatusCode::OK, "{}", stale.text());
    assert_eq!(stale.json().unwrap(), json!({}));
    let kept = lab.nc.contents_of("71_oc").unwrap();
    assert_eq!(
        sha256_hex(&kept),
        sha256_hex(&theirs),
        "the newer file stays"
    );
    assert!(host_calls(&lab, &WopiOperation::PutFile).is_empty());
    let stored = lab.nc.put_records();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].operation, WopiOperation::PutRelativeFile);
    let copy = &stored[0].file_id;
    let name = lab.nc.name_of(copy).unwrap();
    assert!(is_conflict_copy_of_plan(&name), "{name}");
    assert_eq!(
        sha256_hex(&lab.nc.contents_of(copy).unwrap()),
        sha256_hex(&mine),
        "the copy holds exactly the saved bytes"
    );
    let relative = host_calls(&lab, &WopiOperation::PutRelativeFile);
    assert_eq!(
        relative[0].headers["x-wopi-size"],
        mine.len().to_string().as_str()
    );

    // The same session saves again: still out of date, so a second copy, never an
    // overwrite.
    let again = editor
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: Some(lock.clone()),
                body: PutBody::Bytes(b"PK typed more".to_vec()),
            },
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(lab.nc.put_records().len(), 2);
    let kept = lab.nc.contents_of("71_oc").unwrap();
    assert_eq!(sha256_hex(&kept), sha256_hex(&theirs));
    // Process-wide (tests in this binary share it): at least these two.
    assert!(conflict_copies(&lab).await >= copies_before + 2.0);

    // After a fresh CheckFileInfo (ONLYOFFICE reopening), a save is current: it writes the
    // file as before, no copy.
    assert_ok(
        &editor.wopi(&session, WopiCall::CheckFileInfo).await,
        "CheckFileInfo",
    );
    let current = b"PK saved on top of theirs".to_vec();
    let saved = editor
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: Some(lock),
                body: PutBody::Bytes(current.clone()),
            },
        )
        .await;
    assert_ok(&saved, "PutFile");
    assert!(saved.json().unwrap()["LastModifiedTime"].is_string());
    assert_eq!(
        sha256_hex(&lab.nc.contents_of("71_oc").unwrap()),
        sha256_hex(&current)
    );
    let sent = host_calls(&lab, &WopiOperation::PutFile);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].headers.contains_key("x-cool-wopi-timestamp"),
        "richdocuments got the timestamp under its name: {:?}",
        sent[0].headers
    );
    assert_eq!(lab.nc.put_records().len(), 3);
}

#[tokio::test]
async fn a_conflict_copy_the_host_fails_to_store_is_an_error_for_the_editor() {
    let lab = checked_lab().await;
    let (editor, session, lock, theirs) = onlyoffice_session_then_a_change_in_nextcloud(&lab).await;
    lab.nc.set_put_fault(Some(PutFault::ResetAfter(0)));
    let stale = editor
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: Some(lock),
                body: PutBody::Bytes(b"PK late save".to_vec()),
            },
        )
        .await;
    // Never 200: ONLYOFFICE keeps the edits (as it keeps any failed save).
    assert_eq!(stale.status, StatusCode::BAD_GATEWAY, "{}", stale.text());
    assert_eq!(host_calls(&lab, &WopiOperation::PutRelativeFile).len(), 1);
    assert!(lab.nc.put_records().is_empty());
    let kept = lab.nc.contents_of("71_oc").unwrap();
    assert_eq!(sha256_hex(&kept), sha256_hex(&theirs));
}

#[tokio::test]
async fn a_collabora_pools_out_of_date_save_still_gets_the_hosts_409() {
    let lab = checked_lab().await;
    lab.nc.add_file("75_oc", "plan.odt", b"odt first".to_vec());
    lab.nc.grant("75_oc", "carol-token");
    let (editor, session) = open(&lab, ODT, "75_oc", "carol-token", "").await;
    assert!(!is_onlyoffice(&lab, editor), "odt opens in Collabora");
    assert_ok(
        &editor.wopi(&session, WopiCall::CheckFileInfo).await,
        "CheckFileInfo",
    );
    let theirs = b"odt changed in Nextcloud".to_vec();
    lab.nc.change_in_storage("75_oc", theirs.clone());
    let checks = host_calls(&lab, &WopiOperation::CheckFileInfo).len();
    let stale = editor
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: None,
                body: PutBody::Bytes(b"odt late save".to_vec()),
            },
        )
        .await;
    // Collabora asks its user whether to overwrite or reload: it gets richdocuments' 409
    // as Nextcloud sent it, and officeswitch asked nothing first.
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.text());
    assert_eq!(stale.json().unwrap(), json!({"COOLStatusCode": 1010}));
    assert!(stale.header("x-wopi-lockfailurereason").is_empty());
    assert_eq!(
        host_calls(&lab, &WopiOperation::CheckFileInfo).len(),
        checks
    );
    assert!(host_calls(&lab, &WopiOperation::PutRelativeFile).is_empty());
    assert_eq!(lab.nc.file_ids(), ["75_oc"], "no copy was made");
    let kept = lab.nc.contents_of("75_oc").unwrap();
    assert_eq!(sha256_hex(&kept), sha256_hex(&theirs));
}

/// URL fields officeswitch rewrites for every pool: the editor fetches them from
/// officeswitch.
const REWRITTEN: [(&str, Option<&str>); 4] = [
    ("TemplateSource", None),
    ("FileUrl", None),
    ("UserSettings", Some("uri")),
    ("SharedSettings", Some("uri")),
];

fn without_rewritten(mut info: Value) -> Value {
    for (field, inner) in REWRITTEN {
        match inner {
            None => {
                info.as_object_mut().unwrap().remove(field);
            }
            Some(inner) => {
                if let Some(object) = info.get_mut(field).and_then(Value::as_object_mut) {
                    object.remove(inner);
                }
            }
        }
    }
    info
}

#[tokio::test]
async fn a_collabora_pools_check_file_info_is_field_for_field_what_nextcloud_sent() {
    let lab = Lab::start(|b, _| b).await;
    lab.nc.add_file("81_oc", "minutes.odt", b"odt".to_vec());
    lab.nc
        .add_version("81_oc", "1700000000", b"older odt".to_vec());
    lab.nc.grant("81_oc", "carol-token");
    // Everything the ONLYOFFICE dialect would change, on a secure-view guest file of a
    // Nextcloud below a path.
    let extra = json!({
        "PostMessageOrigin": format!("{}/nextcloud/", lab.nc.origin()),
        "DisableCopy": true,
        "WatermarkText": "carol 2026-01-01",
        "IsAnonymousUser": true,
        "UserFriendlyName": "Carol (guest)",
        "FileUrl": format!("{}/index.php/apps/richdocuments/wopi/files/81_oc/contents?access_token=carol-token", lab.nc.origin()),
    });
    lab.nc.set_check_file_info_extra("81_oc", extra);
    for (host_id, query) in [
        ("81_oc", ""),
        ("81_oc", "&permission=readonly"),
        ("81_oc_1700000000", "&permission=readonly"),
    ] {
        let (editor, session) = open(&lab, ODT, host_id, "carol-token", query).await;
        assert!(!is_onlyoffice(&lab, editor), "odt opens in Collabora");
        let through = editor.wopi(&session, WopiCall::CheckFileInfo).await;
        assert_ok(&through, "CheckFileInfo");
        let through = through.json().unwrap();
        let direct = host_check_file_info(&lab, host_id, "carol-token").await;
        // The rewritten URL fields point at officeswitch...
        for (field, inner) in REWRITTEN {
            let value = match inner {
                None => &through[field],
                Some(inner) => &through[field][inner],
            };
            if let Some(url) = value.as_str() {
                assert!(url.starts_with(&lab.os.public_url), "{field}: {url}");
            }
        }
        // ...and every other field is what Nextcloud sent.
        assert_eq!(
            without_rewritten(through),
            without_rewritten(direct),
            "{host_id}{query}"
        );
    }
}

#[tokio::test]
async fn onlyoffice_check_file_info_gets_the_fields_it_reads_and_secure_view_is_refused() {
    let lab = Lab::start(|b, _| b).await;
    lab.nc.add_file("91_oc", "memo.docx", b"PK memo".to_vec());
    lab.nc.grant("91_oc", "dave-token");
    let (editor, session) = open(&lab, DOCX, "91_oc", "dave-token", "").await;
    assert!(is_onlyoffice(&lab, editor));
    let origin = lab.nc.origin();
    lab.nc.set_check_file_info_extra(
        "91_oc",
        json!({
            "PostMessageOrigin": format!("{origin}/nextcloud/"),
            "DisableCopy": true,
            "IsAnonymousUser": true,
            "UserFriendlyName": "Dave (guest)",
            // richdocuments offers no sharing to guests.
            "EnableShare": false,
        }),
    );
    let info = editor.wopi(&session, WopiCall::CheckFileInfo).await;
    assert_ok(&info, "CheckFileInfo");
    let info = info.json().unwrap();
    let public = url::Url::parse(&lab.os.public_url).unwrap();
    assert_eq!(
        info["PostMessageOrigin"],
        public.origin().ascii_serialization(),
        "officeswitch's bare origin: the bridge page around the editor relays to Nextcloud"
    );
    assert_eq!(
        info["FileSharingPostMessage"], false,
        "no sharing for guests: no share button"
    );
    assert_eq!(info["EditNotificationPostMessage"], true);
    assert_eq!(info["CopyPasteRestrictions"], "BlockAll");
    assert_eq!(info["IsAnonymousUser"], false, "the guest keeps the name");
    assert_eq!(info["UserFriendlyName"], "Dave (guest)");
    assert_eq!(info["ClosePostMessage"], true);
    assert_eq!(info["FileVersionPostMessage"], false, "not for guests");
    assert_eq!(info["UserCanWrite"], true);

    lab.nc
        .set_check_file_info_extra("91_oc", json!({ "WatermarkText": "dave 2026-01-01" }));
    let refused = editor.wopi(&session, WopiCall::CheckFileInfo).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.header("x-wopi-servererror").contains("watermark"),
        "{:?}",
        refused.headers
    );
}
