//! Rules reload: file changes and SIGHUP swap rules atomically; broken files change nothing.

use std::time::Duration;

use http::StatusCode;

use crate::routing::Lab;
use crate::support::client::{encode, post_form};
use crate::support::editor::{StandInEditor, Suite};
use crate::support::nextcloud::StandInNextcloud;
use crate::support::officeswitch::OfficeSwitch;
use crate::support::trace_init;

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// Opens `wopi_src` through `public_url` until the status is `want` (at most 5 s).
async fn open_until(public_url: &str, wopi_src: &str, want: StatusCode) -> StatusCode {
    let url = format!(
        "{public_url}/officeswitch/open/ext/docx/edit?WOPISrc={}&lang=en",
        encode(wopi_src)
    );
    let mut last = StatusCode::IM_A_TEAPOT;
    for _ in 0..50 {
        last = post_form(&url, "access_token=t").await.status;
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test]
async fn a_new_rules_file_is_picked_up_and_a_broken_one_changes_nothing() {
    let lab = Lab::start(|b, _| b).await;
    let newcomer = StandInNextcloud::start().await;
    let src = newcomer.wopi_src("1_oc");
    let public = lab.os.public_url.clone();
    assert_eq!(
        open_until(&public, &src, StatusCode::FORBIDDEN).await,
        StatusCode::FORBIDDEN
    );

    std::fs::write(
        lab.os.rules_dir().join("newcomer.toml"),
        format!("origins = [\"{}\"]\n", newcomer.origin()),
    )
    .unwrap();
    assert_eq!(
        open_until(&public, &src, StatusCode::OK).await,
        StatusCode::OK,
        "file change reloaded"
    );

    // A broken file: the previous rules stay in force, readiness says why.
    std::fs::write(
        lab.os.rules_dir().join("newcomer.toml"),
        "origins = [\"not an origin\"]\n",
    )
    .unwrap();
    let mut ready = String::new();
    for _ in 0..50 {
        ready = lab.os.readiness().await.1;
        if ready.contains("the last reload failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready.contains("newcomer.toml:1: origins[0]"), "{ready}");
    assert_eq!(
        open_until(&public, &src, StatusCode::OK).await,
        StatusCode::OK,
        "old rules still in force"
    );
    let acme = lab.open(DOCX, &lab.nc.wopi_src("2_oc")).await;
    assert_eq!(acme.status, StatusCode::OK);
}

#[tokio::test]
async fn sighup_reloads_rules_when_watching_is_off() {
    trace_init();
    let (cool, oo) = tokio::join!(
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::OnlyOffice)
    );
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .pool("onlyoffice", "onlyoffice", &[oo.url()])
        .setting("watch_rules = false")
        .spawn()
        .await;
    let src = nc.wopi_src("1_oc");
    // Discovery must be in before an open can be routed.
    for _ in 0..50 {
        if crate::support::client::get(&format!("{}/readyz", os.public_url))
            .await
            .0
            == StatusCode::OK
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        open_until(&os.public_url, &src, StatusCode::FORBIDDEN).await,
        StatusCode::FORBIDDEN
    );
    std::fs::write(
        os.rules_dir().join("acme.toml"),
        format!("origins = [\"{}\"]\n", nc.origin()),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        open_until(&os.public_url, &src, StatusCode::FORBIDDEN).await,
        StatusCode::FORBIDDEN,
        "no watcher: the file alone changes nothing"
    );
    os.signal("HUP");
    assert_eq!(
        open_until(&os.public_url, &src, StatusCode::OK).await,
        StatusCode::OK,
        "SIGHUP reloaded"
    );
}
