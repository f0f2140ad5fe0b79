//! Prometheus metrics on the admin listener move with the traffic (issue 6).

use http::{Method, StatusCode};

use crate::support::client::{self, encode, post_form};
use crate::support::editor::{StandInEditor, Suite};
use crate::support::nextcloud::StandInNextcloud;
use crate::support::officeswitch::OfficeSwitch;
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;

const TOKEN: &str = "metrics-test-token-0123456789";
const ODT: &str = "application/vnd.oasis.opendocument.text";

/// Scrapes `/metrics` on the admin listener at `admin`.
async fn scrape(admin: std::net::SocketAddr) -> String {
    let reply = client::send(
        Method::GET,
        &format!("http://{admin}/metrics"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        reply.body.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF"
    );
    reply.body
}

/// The value of the sample whose line starts with `series` (name and labels), or 0.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_appear_and_move_with_traffic() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .org("acme", &[nc.origin()], "")
        .admin(TOKEN)
        .start()
        .await;
    let admin = os.admin_addr().expect("admin listener");
    // Unauthenticated scrapes are refused like every admin request.
    let anonymous = client::get(&format!("http://{admin}/metrics")).await;
    assert_eq!(anonymous.0, StatusCode::UNAUTHORIZED);

    let before = scrape(admin).await;
    let (status, xml) = os.get("/hosting/discovery").await;
    assert_eq!(status, StatusCode::OK);
    let urlsrc = RichdocumentsView::parse(&xml)
        .url_src(ODT)
        .expect("odt")
        .1
        .to_string();
    nc.add_file("1_oc", "a.odt", b"a".to_vec());
    nc.grant("1_oc", "host-token");
    let open = post_form(
        &format!("{urlsrc}WOPISrc={}", encode(&nc.wopi_src("1_oc"))),
        "access_token=host-token&access_token_ttl=0",
    )
    .await;
    assert_eq!(open.status, StatusCode::OK);
    let session = cool.last_session().expect("session");
    let forged = client::get(&format!("{}?access_token=not-a-token", session.wopi_src)).await;
    assert_eq!(forged.0, StatusCode::UNAUTHORIZED);
    let after = scrape(admin).await;

    let discovery = "officeswitch_requests_total{class=\"discovery\",pool=\"\",status=\"200\"}";
    assert!(
        value(&after, discovery) >= value(&before, discovery) + 1.0,
        "discovery requests did not move:\n{after}"
    );
    let opens = "officeswitch_requests_total{class=\"open\",pool=\"collabora\",status=\"200\"}";
    assert!(value(&after, opens) >= 1.0, "{after}");
    let rejected = "officeswitch_wopi_rejections_total{check=\"token\",reason=\"malformed\"}";
    assert!(
        value(&after, rejected) >= value(&before, rejected) + 1.0,
        "{after}"
    );
    for series in [
        "officeswitch_request_duration_seconds_bucket{",
        "officeswitch_response_bytes_total{class=\"open\"}",
        "officeswitch_node_up{pool=\"collabora\"",
        "officeswitch_node_draining{pool=\"collabora\"",
        "officeswitch_pin_store_up 1",
        "officeswitch_documents_repinned_total ",
        "officeswitch_discovery_age_seconds{pool=\"collabora\"}",
        "officeswitch_rules_reload_failures_total 0",
    ] {
        assert!(after.contains(series), "{series} missing:\n{after}");
    }
    assert!(
        !after.contains("host-token") && !after.contains(&session.access_token),
        "metrics carry a token"
    );
}
