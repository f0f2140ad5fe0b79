//! The richdocuments dialect (issue 12) against the real ONLYOFFICE Docs in a real browser
//! (issue 20, item 3): what `src/proxy/dialect.rs` adapts, checked where it matters, in
//! the real editor's page and on the stand-in Nextcloud that behaves as richdocuments does
//! (a rename writes its body into the file, a version id's PutFile writes the current
//! file, an out-of-date `X-COOL-WOPI-Timestamp` gets 409).
//!
//! What the editor decided is read from its own frames: the WOPI page
//! (`editor-wopi.ejs`, its `fileInfo` global is the CheckFileInfo ONLYOFFICE got) and the
//! web-apps frame inside it (`DE.getController('Main')`, sdkjs' `Asc.editor`). What the
//! editor's server did is read from DocService's log (level ALL in the kit), when the
//! stacks are ours.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    DOCX, SAVE_LIMIT, Stand, fail, ooxml_text, open_in_browser, type_text, wait_onlyoffice_document,
};
use crate::support::browser::{Browser, Page};
use crate::support::nextcloud::{WopiOperation, WopiRequest};
use crate::support::real_editor::{free_port, real_editor_lock};
use crate::support::real_onlyoffice::RealOnlyOffice;
use crate::support::trace_init;

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The requests the host got for `operation` on `file_id` or any version of it.
fn host_calls(stand: &Stand, file_id: &str, operation: &WopiOperation) -> Vec<WopiRequest> {
    stand
        .nc
        .requests()
        .into_iter()
        .filter(|r| r.operation.as_ref() == Some(operation))
        .filter(|r| {
            r.file_id
                .as_deref()
                .is_some_and(|id| id.starts_with(file_id))
        })
        .collect()
}

/// Evaluates `js` in `page`'s frame at `prefix` (under officeswitch's public URL), or fails
/// with what the browser saw.
async fn in_frame(stand: &Stand, page: &Page, prefix: &str, js: &str) -> Value {
    match page
        .eval_in_frame(&format!("{}{prefix}", stand.public), js)
        .await
    {
        Ok(value) => value,
        Err(e) => fail(&format!("evaluating in the {prefix} frame: {e}"), &[page]),
    }
}

/// The CheckFileInfo fields ONLYOFFICE's WOPI page received (its `fileInfo` global, the
/// frame the Nextcloud page's form posted to).
const PAGE_FILE_INFO: &str = "(() => ({ SupportsRename: fileInfo.SupportsRename, \
    UserCanRename: fileInfo.UserCanRename, UserCanWrite: fileInfo.UserCanWrite, \
    ReadOnly: fileInfo.ReadOnly }))()";

/// What the web-apps editor made of it: its mode, permissions and rename flag, whether the
/// title field in the header can be edited, and sdkjs' own view-mode and modified flags.
const EDITOR_STATE: &str = "(() => { const m = DE.getController('Main'); \
    const a = (window.Asc && window.Asc.editor) || window.editor; \
    const title = document.getElementById('title-doc-name'); \
    return { mode: m.editorConfig.mode, canRename: !!m.appOptions.canRename, \
      isEdit: !!m.appOptions.isEdit, permissionsEdit: m.permissions.edit, \
      titleDisabled: title ? title.disabled : null, viewMode: a.getViewMode(), \
      modified: a.isDocumentModified() }; })()";

/// The WOPI page's frame (`/hosting/wopi/word/edit?...`), below officeswitch's URL.
const WOPI_PAGE: &str = "/hosting/wopi/";

/// The web-apps editor frame: the deepest frame on officeswitch.
const EDITOR: &str = "/";

/// DocService's log of the stack that served the document (empty when the stacks are
/// not ours: then the log assertions are skipped).
fn docservice_log(oo: &RealOnlyOffice, stand: &Stand) -> String {
    let node = stand.document_node(oo.urls());
    oo.log_tail(node, "docservice.log", 100_000)
}

/// Waits (bounded) until DocService logs a line holding `needle`; the log then.
async fn wait_logged(oo: &RealOnlyOffice, stand: &Stand, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + SAVE_LIMIT;
    loop {
        let log = docservice_log(oo, stand);
        if log.contains(needle) || oo.is_external() {
            return log;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "DocService never logged {needle:?}; its log ends:\n{}",
                tail(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The last lines of a log, each cut to its start (DocService logs whole CheckFileInfo
/// answers), for messages.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..]
        .iter()
        .map(|l| l.chars().take(400).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// DocService's lines about `what` (`"PutFile"`), for messages.
fn lines_about(log: &str, what: &str) -> String {
    log.lines()
        .filter(|l| l.contains(what))
        .map(|l| l.chars().take(1500).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// ONLYOFFICE's blank docx (`template`) with one paragraph saying `text` (plain words):
/// a real document that differs from the blank one. Written with Python's `zipfile`, as
/// [`ooxml_text`] reads one.
fn docx_saying(template: &[u8], text: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (from, to) = (dir.path().join("in.docx"), dir.path().join("out.docx"));
    std::fs::write(&from, template).expect("write the template");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys,zipfile; a = zipfile.ZipFile(sys.argv[1]); \
             b = zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED); \
             p = lambda d: d.decode().replace('<w:body><w:p><w:r/><w:r/></w:p>', \
               '<w:body><w:p><w:r><w:t>' + sys.argv[3] + '</w:t></w:r></w:p>', 1).encode(); \
             [b.writestr(i, p(a.read(i)) if i.filename == 'word/document.xml' else a.read(i)) \
               for i in a.infolist()]; \
             b.close()",
        ])
        .arg(&from)
        .arg(&to)
        .arg(text)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "python3 could not write the docx");
    let docx = std::fs::read(&to).expect("the written docx");
    assert!(
        ooxml_text(&docx, "word/document.xml").contains(text),
        "the template changed shape"
    );
    docx
}

/// The text of the document in an ONLYOFFICE word editor frame, paragraph by paragraph.
const DOCUMENT_TEXT: &str = "(() => { const a = window.Asc.editor || window.editor; \
    return a.WordControl.m_oLogicDocument.Content.map(p => p.GetText ? p.GetText() : '').join('\\n'); })()";

/// How long after an editor session ended ONLYOFFICE would have sent its save:
/// `savetimeoutdelay` (5 s), the conversion, and a margin for a loaded 2-core machine.
const SAVE_WINDOW: Duration = Duration::from_secs(20);

#[tokio::test]
async fn onlyoffice_offers_no_rename_and_a_rename_from_the_editor_keeps_the_files_bytes() {
    trace_init();
    let _turn = real_editor_lock().await;
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let Ok(oo) = RealOnlyOffice::start(1).await else {
        return;
    };
    let port = free_port().await;
    let stand = Stand::start(port, &[("onlyoffice", "onlyoffice", oo.urls())], "").await;
    let original = std::fs::read(oo.template("docx")).expect("ONLYOFFICE's blank docx");
    let form_url = stand
        .add_document("51_oc", "report.docx", DOCX, original.clone(), &["alice"])
        .await;
    let alice = open_in_browser(&browser, &stand, "alice", &form_url, "alice-token").await;
    wait_onlyoffice_document(&stand, &alice).await;

    // ONLYOFFICE's page got rename turned off, so it registers no `onRequestRename`, and
    // web-apps offers no rename: `canRename` false, the title in the header disabled.
    let info = in_frame(&stand, &alice, WOPI_PAGE, PAGE_FILE_INFO).await;
    if info["SupportsRename"] != false || info["UserCanRename"] != false {
        fail(&format!("the WOPI page may rename: {info}"), &[&alice]);
    }
    let state = in_frame(&stand, &alice, EDITOR, EDITOR_STATE).await;
    if state["canRename"] != false || state["titleDisabled"] != true {
        fail(&format!("the editor offers a rename: {state}"), &[&alice]);
    }
    if state["isEdit"] != true {
        fail(&format!("the editor is not editing: {state}"), &[&alice]);
    }

    // The rename the header and File menu would send in WOPI mode (web-apps `LeftMenu`
    // calls sdkjs `asc_wopi_renameFile`): an RPC over the editor's socket to DocService,
    // whose `wopiClient.renameFile` sends RENAME_FILE (without a body) only when the
    // CheckFileInfo it keeps says `SupportsRename`. The editor reports the outcome as
    // `asc_onMeta` (renamed) or `asc_onError`.
    let outcome = in_frame(
        &stand,
        &alice,
        EDITOR,
        "new Promise(resolve => { const a = window.Asc.editor || window.editor; \
           a.asc_registerCallback('asc_onError', (id, level) => resolve({error: id, level})); \
           a.asc_registerCallback('asc_onMeta', meta => resolve({renamed: meta})); \
           a.asc_wopi_renameFile('renamed'); \
           setTimeout(() => resolve({timeout: true}), 30000); })",
    )
    .await;
    if outcome.get("error").is_none() {
        fail(
            &format!("the rename was not refused to the editor: {outcome}"),
            &[&alice],
        );
    }
    if !oo.is_external() {
        let log = wait_logged(&oo, &stand, "wopi RenameFile end").await;
        assert!(
            log.contains("wopi SupportsRename = false"),
            "DocService did not decline the rename itself:\n{}",
            tail(&log)
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(alice);
    let renames = host_calls(&stand, "51_oc", &WopiOperation::RenameFile);
    assert!(renames.is_empty(), "Nextcloud heard a rename: {renames:#?}");
    let kept = stand.nc.contents_of("51_oc").expect("the file");
    assert_eq!(
        sha256_hex(&kept),
        sha256_hex(&original),
        "the bytes changed"
    );
    assert_eq!(stand.nc.name_of("51_oc").as_deref(), Some("report.docx"));
    oo.stop().await;
}

#[tokio::test]
async fn onlyoffice_opens_an_old_version_read_only_and_it_cannot_overwrite_the_current_file() {
    trace_init();
    let _turn = real_editor_lock().await;
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let Ok(oo) = RealOnlyOffice::start(1).await else {
        return;
    };
    let port = free_port().await;
    let stand = Stand::start(port, &[("onlyoffice", "onlyoffice", oo.urls())], "").await;
    let blank = std::fs::read(oo.template("docx")).expect("ONLYOFFICE's blank docx");
    let (old, current) = (
        docx_saying(&blank, "the old text"),
        docx_saying(&blank, "the current text"),
    );
    stand
        .add_document("61_oc", "report.docx", DOCX, current.clone(), &["alice"])
        .await;
    stand.nc.add_version("61_oc", "1700000000", old);
    // The version by its id alone (no `permission=readonly`, which richdocuments adds and
    // ONLYOFFICE ignores): officeswitch knows it from the id.
    let form_url = stand.form_url(DOCX, "61_oc_1700000000").await;
    let alice = open_in_browser(&browser, &stand, "alice", &form_url, "alice-token").await;
    wait_onlyoffice_document(&stand, &alice).await;

    let info = in_frame(&stand, &alice, WOPI_PAGE, PAGE_FILE_INFO).await;
    if info["UserCanWrite"] != false || info["ReadOnly"] != true {
        fail(&format!("the WOPI page may write: {info}"), &[&alice]);
    }
    let state = in_frame(&stand, &alice, EDITOR, EDITOR_STATE).await;
    if state["mode"] != "view"
        || state["isEdit"] != false
        || state["permissionsEdit"] != false
        || state["viewMode"] != true
    {
        fail(&format!("the version is editable: {state}"), &[&alice]);
    }

    let text = in_frame(&stand, &alice, EDITOR, DOCUMENT_TEXT).await;
    if !text.as_str().is_some_and(|t| t.contains("the old text")) {
        fail(
            &format!("the viewer does not show the version: {text}"),
            &[&alice],
        );
    }

    // The user tries to type: the viewer takes no change.
    type_text(&alice, "vandal").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = in_frame(&stand, &alice, EDITOR, EDITOR_STATE).await;
    if state["modified"] != false {
        fail(&format!("typing changed the version: {state}"), &[&alice]);
    }
    drop(alice);

    // DocService ends a *view* session, and nothing is saved after it.
    let log = wait_logged(&oo, &stand, "closeDocument").await;
    assert!(
        oo.is_external() || log.contains("closeDocument view session"),
        "DocService did not end a view session:\n{}",
        tail(&log)
    );
    tokio::time::sleep(SAVE_WINDOW).await;
    for operation in [
        WopiOperation::Lock,
        WopiOperation::PutFile,
        WopiOperation::PutRelativeFile,
    ] {
        let calls = host_calls(&stand, "61_oc", &operation);
        assert!(
            calls.is_empty(),
            "{operation:?} reached Nextcloud: {calls:#?}"
        );
    }
    assert!(stand.nc.put_records().is_empty(), "{:?}", stand.nc.puts());
    let kept = stand.nc.contents_of("61_oc").expect("the file");
    assert_eq!(
        sha256_hex(&kept),
        sha256_hex(&current),
        "the current file changed"
    );
    oo.stop().await;
}

#[tokio::test]
async fn an_onlyoffice_save_after_the_file_changed_in_nextcloud_becomes_a_conflict_copy_and_a_reopen_shows_the_other_clients_bytes()
 {
    trace_init();
    let _turn = real_editor_lock().await;
    let Ok(browser) = Browser::launch().await else {
        return;
    };
    let Ok(oo) = RealOnlyOffice::start(1).await else {
        return;
    };
    let port = free_port().await;
    let stand = Stand::start(port, &[("onlyoffice", "onlyoffice", oo.urls())], "").await;
    let docx = std::fs::read(oo.template("docx")).expect("ONLYOFFICE's blank docx");
    let form_url = stand
        .add_document("71_oc", "plan.docx", DOCX, docx.clone(), &["alice"])
        .await;
    let opened_at = stand.nc.last_modified_of("71_oc").expect("the file");
    let alice = open_in_browser(&browser, &stand, "alice", &form_url, "alice-token").await;
    wait_onlyoffice_document(&stand, &alice).await;
    type_text(&alice, "walrus").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Meanwhile another client (a sync client, an upload in Files) writes the file.
    let theirs = docx_saying(&docx, "written by another client");
    stand.nc.change_in_storage("71_oc", theirs.clone());
    drop(alice);

    // The editor's exit save carries the time it opened, which richdocuments would refuse
    // (and ONLYOFFICE would keep as a forgotten file): officeswitch stores it as a new file.
    let deadline = tokio::time::Instant::now() + SAVE_LIMIT;
    let copy = loop {
        if let Some(copy) = stand.nc.put_records().first() {
            break copy.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no save reached Nextcloud: {:#?}\n{}",
            stand.nc.requests(),
            tail(&docservice_log(&oo, &stand))
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(copy.operation, WopiOperation::PutRelativeFile, "{copy:?}");
    let relative = host_calls(&stand, "71_oc", &WopiOperation::PutRelativeFile);
    let timestamp = relative[0]
        .headers
        .get("x-lool-wopi-timestamp")
        .and_then(|v| v.to_str().ok());
    assert_eq!(timestamp, Some(opened_at.as_str()), "{relative:#?}");
    assert!(
        host_calls(&stand, "71_oc", &WopiOperation::PutFile).is_empty(),
        "the stale save reached Nextcloud as a PutFile"
    );
    let name = stand.nc.name_of(&copy.file_id).expect("the copy");
    assert!(
        name.starts_with("plan (conflict ") && name.ends_with(" UTC).docx"),
        "{name}"
    );
    let copied = stand
        .nc
        .contents_of(&copy.file_id)
        .expect("the copy's bytes");
    let copied_text = ooxml_text(&copied, "word/document.xml");
    assert!(
        copied_text.contains("walrus"),
        "the copy says: {copied_text}"
    );

    // ONLYOFFICE heard of success: it keeps nothing back.
    wait_logged(&oo, &stand, "wopi PutFile end").await;
    tokio::time::sleep(SAVE_WINDOW).await;
    let log = docservice_log(&oo, &stand);
    assert!(
        oo.is_external()
            || (log.contains("wopi PutFile response body:{}") && !log.contains("storeForgotten")),
        "DocService did not take the save as done:\n{}",
        lines_about(&log, "PutFile")
    );
    let kept = stand.nc.contents_of("71_oc").expect("the file");
    assert_eq!(
        sha256_hex(&kept),
        sha256_hex(&theirs),
        "the other client's bytes were overwritten; the file's text: {}",
        ooxml_text(&kept, "word/document.xml")
    );

    // The same user opens the document again: Nextcloud's file (the other client's text),
    // not the edits officeswitch stored as a copy; closing without typing saves nothing
    // over it.
    let again = open_in_browser(&browser, &stand, "alice", &form_url, "alice-token").await;
    wait_onlyoffice_document(&stand, &again).await;
    let text = in_frame(&stand, &again, EDITOR, DOCUMENT_TEXT).await;
    if !text
        .as_str()
        .is_some_and(|t| t.contains("written by another client") && !t.contains("walrus"))
    {
        fail(
            &format!("the reopened document is not Nextcloud's: {text}"),
            &[&again],
        );
    }
    drop(again);
    tokio::time::sleep(SAVE_WINDOW).await;
    let log = docservice_log(&oo, &stand);
    assert!(
        !log.contains("commandOpen from forgotten"),
        "DocService restored a forgotten file:\n{}",
        tail(&log)
    );
    let kept = stand.nc.contents_of("71_oc").expect("the file");
    assert_eq!(
        sha256_hex(&kept),
        sha256_hex(&theirs),
        "the reopened session overwrote the other client's bytes; saves: {:#?}; the file's text: {}",
        host_calls(&stand, "71_oc", &WopiOperation::PutFile),
        ooxml_text(&kept, "word/document.xml")
    );
    let copied = stand.nc.contents_of(&copy.file_id).expect("the copy");
    assert!(ooxml_text(&copied, "word/document.xml").contains("walrus"));
    oo.stop().await;
}
