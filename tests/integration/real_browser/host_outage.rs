//! Nextcloud restarting while the real ONLYOFFICE saves (issue 20, item 4): the save is
//! held by officeswitch and lands once Nextcloud is back. ONLYOFFICE Docs 9.2.1 does not
//! retry a failed PutFile itself, so without the hold the user's edit would be lost.

use super::*;
use crate::support::nextcloud::WopiOperation;

/// How long Nextcloud stays down once officeswitch holds the save.
const OUTAGE: Duration = Duration::from_secs(3);

/// The PutFile requests of `file_id` that reached the WOPI host.
fn put_files(stand: &Stand, file_id: &str) -> usize {
    stand
        .nc
        .requests()
        .iter()
        .filter(|r| r.operation == Some(WopiOperation::PutFile))
        .filter(|r| r.file_id.as_deref() == Some(file_id))
        .count()
}

#[tokio::test]
async fn onlyoffice_save_while_nextcloud_restarts_is_held_and_lands_once() {
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
        .add_document("51_oc", "report.docx", DOCX, docx, &["carol"])
        .await;
    let carol = open_in_browser(&browser, &stand, "carol", &form_url, "carol-token").await;
    wait_onlyoffice_document(&stand, &carol).await;
    type_text(&carol, "capybara").await;
    // Give the keystrokes time to reach the node before Nextcloud goes away.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stand.assert_clean(&[&carol], oo.urls(), &["carol-token"]);

    // Nextcloud restarts; meanwhile the user closes the editor, and ONLYOFFICE saves
    // (`savetimeoutdelay`, 5 s after the last editor left) into the closed port.
    stand.nc.go_down().await;
    drop(carol);
    let closed = tokio::time::Instant::now();
    let deadline = tokio::time::Instant::now() + SAVE_LIMIT;
    // The save's first call is its conflict check (a CheckFileInfo, `GET`) and then the
    // PutFile (`POST PUT`): whichever meets the closed port is held.
    let held = |log: &str| {
        log.lines().any(|l| {
            l.contains("WOPI host unreachable")
                && (l.contains("POST PUT") || l.contains("call=GET"))
        })
    };
    while !held(&stand.os.log()) {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "officeswitch never held ONLYOFFICE's save; host requests: {:#?}\n{}",
                stand.nc.requests(),
                stand.os.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let held_after = closed.elapsed();
    tokio::time::sleep(OUTAGE).await;
    stand
        .nc
        .come_back()
        .await
        .expect("Nextcloud back on its port");
    let back = tokio::time::Instant::now();

    // The held save lands, once, with what the user typed.
    let saved = wait_saved(&stand, "51_oc", &["capybara"], async |docx| {
        ooxml_text(&docx, "word/document.xml")
    })
    .await;
    if let Err(e) = saved {
        panic!("{e}\n{}", stand.os.log());
    }
    eprintln!(
        "host outage: ONLYOFFICE's save held {} ms after the editor closed, stored {} ms after Nextcloud was back",
        held_after.as_millis(),
        back.elapsed().as_millis()
    );
    // A second PutFile, were the save sent twice, would follow within seconds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        put_files(&stand, "51_oc"),
        1,
        "not exactly one PutFile: {:#?}",
        stand.nc.requests()
    );
    assert_eq!(stand.nc.puts().len(), 1, "one save: {:?}", stand.nc.puts());
    assert_signed(&stand, "51_oc");
    stand.assert_clean(&[], oo.urls(), &["carol-token"]);
    oo.stop().await;
}
