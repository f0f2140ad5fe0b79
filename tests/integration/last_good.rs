//! Last-known-good discovery: editor outages and bad answers never empty or corrupt it.

use http::StatusCode;

use officeswitch::topology::TopologyStore;

use crate::support::editor::{Fault, StandInEditor, Suite};
use crate::support::logs::capture;
use crate::support::officeswitch::OfficeSwitch;
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// Waits until readiness (the admin listener's detail) contains `needle`; returns the
/// public `/readyz` status then and the detail.
async fn wait_for_readyz(os: &OfficeSwitch, needle: &str) -> (StatusCode, String) {
    let detail = os.readiness_saying(needle).await;
    (os.get("/readyz").await.0, detail)
}

/// The action list richdocuments would use for docx.
async fn docx_actions(os: &OfficeSwitch) -> Vec<String> {
    let (status, body) = os.get("/hosting/discovery").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    RichdocumentsView::parse(&body)
        .actions(DOCX)
        .iter()
        .map(|(a, _)| a.clone())
        .collect()
}

async fn pools(refresh_secs: u64) -> (StandInEditor, StandInEditor, OfficeSwitch) {
    trace_init();
    let (cool, oo) = tokio::join!(
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::OnlyOffice)
    );
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .pool("onlyoffice", "onlyoffice", &[oo.url()])
        .refresh_secs(refresh_secs)
        .fetch_timeout_secs(1)
        .start()
        .await;
    (cool, oo, os)
}

#[tokio::test]
async fn last_good_survives_stopping_every_node_and_a_restart() {
    let (_cool, oo, os) = pools(1).await;
    wait_for_readyz(&os, "pool onlyoffice (onlyoffice): ok").await;
    let before = docx_actions(&os).await;
    assert!(before.len() > 1, "OnlyOffice's docx actions: {before:?}");

    oo.stop().await;
    let (status, body) = wait_for_readyz(&os, "pool onlyoffice (onlyoffice): degraded").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a pool with a last good discovery is ready: {body}"
    );
    assert_eq!(
        docx_actions(&os).await,
        before,
        "last good discovery is still served"
    );

    // A restart while OnlyOffice is still down reads it back from the state dir.
    let os = os.restart().await;
    let (status, body) = wait_for_readyz(&os, "pool onlyoffice (onlyoffice): degraded").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(docx_actions(&os).await, before);
}

#[tokio::test]
async fn a_pool_never_reached_is_absent_and_readiness_says_why() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    let oo = StandInEditor::start(Suite::OnlyOffice).await;
    let oo_url = oo.url();
    oo.stop().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .pool("onlyoffice", "onlyoffice", std::slice::from_ref(&oo_url))
        .fetch_timeout_secs(1)
        .start()
        .await;
    let needle =
        format!("pool onlyoffice (onlyoffice): no discovery: {oo_url}/: discovery: request failed");
    let (status, body) = wait_for_readyz(&os, &needle).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("pool collabora (collabora): ok"), "{body}");
    // Discovery is still served, from Collabora alone (it offers docx too).
    let actions = docx_actions(&os).await;
    assert_eq!(actions, ["edit"], "Collabora's docx actions");
    assert_eq!(os.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn bad_answers_never_replace_the_last_good_discovery() {
    let (_cool, oo, os) = pools(1).await;
    wait_for_readyz(&os, "pool onlyoffice (onlyoffice): ok").await;
    let good = docx_actions(&os).await;
    let cases = [
        (Fault::BrokenXml, "discovery rejected"),
        (Fault::Html, "root element is <html>"),
        (Fault::EmptyBody, "empty document"),
        (Fault::Status(500), "status 500"),
        (Fault::Hang, "no complete answer within 1s"),
        (Fault::Huge(50 * 1024 * 1024), "body larger than"),
    ];
    for (fault, reason) in cases {
        oo.set_fault(fault.clone());
        let (status, body) = wait_for_readyz(&os, reason).await;
        assert_eq!(status, StatusCode::OK, "{fault:?}: {body}");
        assert!(body.contains("degraded"), "{fault:?}: {body}");
        assert_eq!(
            docx_actions(&os).await,
            good,
            "{fault:?} replaced the last good discovery"
        );
        assert_eq!(os.get("/healthz").await.0, StatusCode::OK, "{fault:?}");
        oo.set_fault(Fault::None);
        wait_for_readyz(&os, "pool onlyoffice (onlyoffice): ok").await;
    }
}

#[tokio::test]
async fn each_bad_answer_costs_exactly_one_log_line_per_refresh() {
    trace_init();
    let oo = StandInEditor::start(Suite::OnlyOffice).await;
    let (_dir, prepared) = OfficeSwitch::builder()
        .pool("onlyoffice", "onlyoffice", &[oo.url()])
        .fetch_timeout_secs(1)
        .prepare()
        .await;
    let service =
        prepared.discovery_service(TopologyStore::new(&prepared.config), prepared.rules_store());
    let ((), logs) = capture(service.refresh()).await;
    assert_eq!(
        answer_problems(&logs),
        Vec::<String>::new(),
        "a good refresh logs no problem"
    );
    let good = service.catalog().discovery_xml.clone().expect("discovery");
    let cases = [
        (Fault::BrokenXml, "malformed XML"),
        (Fault::Html, "root element is <html>"),
        (Fault::EmptyBody, "empty document"),
        (Fault::Status(500), "status 500"),
        (Fault::Hang, "no complete answer within 1s"),
        (Fault::Huge(50 * 1024 * 1024), "body larger than"),
    ];
    for (fault, reason) in cases {
        oo.set_fault(fault.clone());
        let ((), logs) = capture(service.refresh()).await;
        let problems = logs.problems();
        assert_eq!(problems.len(), 1, "{fault:?}: {problems:#?}");
        assert!(problems[0].contains(reason), "{fault:?}: {}", problems[0]);
        assert!(
            problems[0].contains("serving the last good one"),
            "{}",
            problems[0]
        );
        assert_eq!(
            service.catalog().discovery_xml.as_ref(),
            Some(&good),
            "{fault:?}"
        );
    }
}

#[tokio::test]
async fn nodes_that_disagree_are_logged() {
    trace_init();
    let (a, b) = tokio::join!(
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::Collabora)
    );
    let (_dir, prepared) = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[a.url(), b.url()])
        .prepare()
        .await;
    let service =
        prepared.discovery_service(TopologyStore::new(&prepared.config), prepared.rules_store());
    let ((), logs) = capture(service.refresh()).await;
    // The two stand-ins have different proof keys: a misconfigured or upgrading pool.
    let problems = answer_problems(&logs);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("nodes of one pool serve different discoveries"),
        "{}",
        problems[0]
    );
    assert!(problems[0].contains(&b.url()), "{}", problems[0]);
}

/// Problems logged, without the one-per-node warning that a stand-in announces its own
/// address instead of `public_url` (tested in `discovery.rs`): these tests count what bad
/// answers cost.
fn answer_problems(logs: &crate::support::logs::Captured) -> Vec<String> {
    logs.problems()
        .into_iter()
        .filter(|l| !l.contains("announces another origin than public_url"))
        .collect()
}
