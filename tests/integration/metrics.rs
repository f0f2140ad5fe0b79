//! Prometheus metrics on the admin listener appear and move with real traffic (issue 6).
//!
//! Event metrics (requests, bytes, WebSockets, rejections) are process-wide and these
//! tests share the process with others, so they assert growth ("at least this much
//! more") or use a label only this test's stand-in produces (its node's address). State
//! metrics (pins, pin store errors, discovery fetches, rules reloads, repins) belong to one
//! instance and are asserted exactly.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use http::{Method, StatusCode};
use tokio_tungstenite::tungstenite::Message;

use crate::support::client::{self, encode, post_form};
use crate::support::editor::{Fault, PutBody, StandInEditor, StandInOptions, Suite, WopiCall};
use crate::support::nextcloud::{PutFault, StandInNextcloud};
use crate::support::officeswitch::{OfficeSwitch, free_port};
use crate::support::redis::RedisServer;
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;

pub(crate) const TOKEN: &str = "metrics-test-token-0123456789";
const ODT: &str = "application/vnd.oasis.opendocument.text";

/// Every family and its type as `# TYPE` names it (OpenMetrics: counters without
/// `_total`).
const FAMILIES: &[(&str, &str)] = &[
    ("requests", "counter"),
    ("request_duration_seconds", "histogram"),
    ("response_bytes", "counter"),
    ("request_bytes", "counter"),
    ("websockets_open", "gauge"),
    ("websocket_bytes", "counter"),
    ("wopi_rejections", "counter"),
    ("shutting_down", "gauge"),
    ("build_info", "gauge"),
    ("node_up", "gauge"),
    ("node_draining", "gauge"),
    ("pin_store_up", "gauge"),
    ("pin_store_errors", "counter"),
    ("pins", "gauge"),
    ("documents_repinned", "counter"),
    ("discovery_age_seconds", "gauge"),
    ("discovery_fetches", "counter"),
    ("rules_reloads", "counter"),
    ("asset_cache_lookups", "counter"),
    ("asset_cache_stores", "counter"),
    ("asset_cache_refusals", "counter"),
    ("asset_cache_evictions", "counter"),
    ("asset_cache_bytes", "gauge"),
    ("asset_cache_entries", "gauge"),
    ("asset_cache_capacity_bytes", "gauge"),
];

/// Pin store operations, as the errors counter labels them.
const STORE_OPERATIONS: [&str; 7] = [
    "get", "create", "replace", "release", "count", "probe", "drain",
];

/// A fast health check, so a failing node is down within a few seconds.
const FAST_HEALTH: &str = "[health]\ninterval_secs = 1\ntimeout_secs = 1\nfall = 2\nrise = 1";

/// One Collabora node, a Nextcloud owned by `acme`, officeswitch with an admin listener
/// (returned last).
async fn instance() -> (StandInEditor, StandInNextcloud, OfficeSwitch, SocketAddr) {
    trace_init();
    // The node names officeswitch (server_name), as docs/operations.md asks.
    let port = free_port().await;
    let cool = StandInEditor::start_with(
        Suite::Collabora,
        StandInOptions::default().server_name(format!("127.0.0.1:{port}")),
    )
    .await;
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .port(port)
        .pool("collabora", "collabora", &[cool.url()])
        .org("acme", &[nc.origin()], "")
        .admin(TOKEN)
        .start()
        .await;
    let admin = os.admin_addr();
    (cool, nc, os, admin)
}

/// Scrapes `/metrics` on the admin listener at `admin`, with the bearer token.
pub(crate) async fn scrape(admin: SocketAddr) -> String {
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

/// The value of the sample `series` (name and labels exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// [`sample`], 0 when absent (a counter not yet moved).
pub(crate) fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or(0.0)
}

/// Scrapes until `done` holds (10 s at most); returns that scrape.
async fn scrape_until(admin: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(admin).await;
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "not within 10 s: {what}\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node's label value: its base URL as configured (`http://127.0.0.1:PORT/`).
fn node_label(editor: &StandInEditor) -> String {
    format!("{}/", editor.url())
}

/// Opens `file_id` (granted to `host_token`) through officeswitch at `public_url`; the
/// node that answered.
async fn open(public_url: &str, nc: &StandInNextcloud, file_id: &str, host_token: &str) -> String {
    let (status, xml) = client::get(&format!("{public_url}/hosting/discovery")).await;
    assert_eq!(status, StatusCode::OK);
    let urlsrc = RichdocumentsView::parse(&xml)
        .url_src(ODT)
        .expect("odt")
        .1
        .to_string();
    let path = &urlsrc[urlsrc.find("/officeswitch/open/").expect("an open urlsrc")..];
    let reply = post_form(
        &format!(
            "{public_url}{path}WOPISrc={}",
            encode(&nc.wopi_src(file_id))
        ),
        &format!("access_token={host_token}&access_token_ttl=0"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{file_id}: {}", reply.body);
    reply.node().expect("an editor answered").to_string()
}

#[tokio::test]
async fn metrics_appear_and_move_with_traffic() {
    let (cool, nc, os, admin) = instance().await;
    let node = node_label(&cool);
    // Unauthenticated scrapes are refused like every admin request (the default).
    let anonymous = client::get(&format!("http://{admin}/metrics")).await;
    assert_eq!(anonymous.0, StatusCode::UNAUTHORIZED);

    // A fresh instance describes every family, with or without samples.
    let before = scrape(admin).await;
    for (family, kind) in FAMILIES {
        assert!(
            before.contains(&format!("# TYPE officeswitch_{family} {kind}\n")),
            "{family} ({kind}) not described:\n{before}"
        );
    }
    let build = format!(
        "officeswitch_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&before, &build), Some(1.0), "{before}");
    assert_eq!(
        sample(&before, "officeswitch_rules_reloads_total{result=\"ok\"}"),
        Some(1.0),
        "the start-up load counts"
    );
    assert_eq!(
        sample(
            &before,
            "officeswitch_rules_reloads_total{result=\"failed\"}"
        ),
        Some(0.0)
    );
    for operation in STORE_OPERATIONS {
        let series = format!("officeswitch_pin_store_errors_total{{operation=\"{operation}\"}}");
        assert_eq!(sample(&before, &series), Some(0.0), "{series}");
    }
    assert!(before.contains("\nofficeswitch_shutting_down "), "{before}");

    // Traffic: discovery, an open, a forged token, CheckFileInfo, GetFile, PutFile.
    let content = vec![b'c'; 300_000];
    nc.add_file("1_oc", "a.odt", content.clone());
    nc.grant("1_oc", "host-token");
    let opened_on = open(&os.public_url, &nc, "1_oc", "host-token").await;
    assert_eq!(opened_on, cool.url());
    let session = cool.last_session().expect("session");
    let forged = client::get(&format!("{}?access_token=not-a-token", session.wopi_src)).await;
    assert_eq!(forged.0, StatusCode::UNAUTHORIZED);
    let info = cool.wopi(&session, WopiCall::CheckFileInfo).await;
    assert_eq!(info.status, StatusCode::OK);
    let get = cool
        .wopi(
            &session,
            WopiCall::GetFile {
                max_expected_size: None,
            },
        )
        .await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.body_len, content.len() as u64);
    let saved: u64 = 200_000;
    let put = cool
        .wopi(
            &session,
            WopiCall::PutFile {
                lock: None,
                body: PutBody::Pattern(saved),
            },
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    let after = scrape(admin).await;

    let grew = |series: &str, by: f64| {
        assert!(
            value(&after, series) >= value(&before, series) + by,
            "{series} did not grow by {by}:\nbefore:\n{before}\nafter:\n{after}"
        );
    };
    grew(
        "officeswitch_requests_total{class=\"discovery\",pool=\"\",node=\"\",status=\"200\"}",
        1.0,
    );
    // Only this test's node has this label value: exactly one open, which sends the
    // browser on to the editor page (307), which the node serves.
    let opens = format!(
        "officeswitch_requests_total{{class=\"open\",pool=\"collabora\",node=\"{node}\",status=\"307\"}}"
    );
    assert_eq!(sample(&after, &opens), Some(1.0), "{after}");
    let pages = format!(
        "officeswitch_requests_total{{class=\"page\",pool=\"collabora\",node=\"{node}\",status=\"200\"}}"
    );
    assert_eq!(sample(&after, &pages), Some(1.0), "{after}");
    // WOPI calls go to the host, not to a node.
    grew(
        "officeswitch_requests_total{class=\"wopi_file\",pool=\"collabora\",node=\"\",status=\"200\"}",
        1.0,
    );
    grew(
        "officeswitch_requests_total{class=\"wopi_contents\",pool=\"collabora\",node=\"\",status=\"200\"}",
        2.0,
    );
    grew(
        "officeswitch_wopi_rejections_total{check=\"token\",reason=\"malformed\"}",
        1.0,
    );
    grew(
        "officeswitch_request_duration_seconds_count{class=\"open\"}",
        1.0,
    );
    grew(
        "officeswitch_response_bytes_total{class=\"wopi_contents\"}",
        content.len() as f64,
    );
    grew(
        "officeswitch_request_bytes_total{class=\"wopi_contents\"}",
        saved as f64,
    );
    // The open form ("access_token=host-token&access_token_ttl=0").
    grew("officeswitch_request_bytes_total{class=\"open\"}", 40.0);
    let up = format!("officeswitch_node_up{{pool=\"collabora\",node=\"{node}\"}}");
    assert_eq!(sample(&after, &up), Some(1.0), "{after}");
    assert_eq!(
        sample(&after, "officeswitch_pins{pool=\"collabora\"}"),
        Some(1.0),
        "one document is pinned:\n{after}"
    );
    assert_eq!(sample(&after, "officeswitch_pin_store_up"), Some(1.0));
    assert_eq!(
        sample(&after, "officeswitch_documents_repinned_total"),
        Some(0.0)
    );
    assert!(
        value(
            &after,
            "officeswitch_discovery_fetches_total{pool=\"collabora\",result=\"ok\"}"
        ) >= 1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "officeswitch_discovery_age_seconds{pool=\"collabora\"}"
        )
        .is_some(),
        "{after}"
    );
    assert!(
        !after.contains("host-token") && !after.contains(&session.access_token),
        "metrics carry a token"
    );

    // Draining shows at once.
    let draining = format!("officeswitch_node_draining{{pool=\"collabora\",node=\"{node}\"}}");
    assert_eq!(sample(&after, &draining), Some(0.0));
    let drain = client::send(
        Method::POST,
        &format!("http://{admin}/admin/nodes/drain"),
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("content-type", "application/json"),
        ],
        format!("{{\"node\":\"{node}\"}}").as_bytes(),
    )
    .await;
    assert_eq!(drain.status, StatusCode::OK, "{}", drain.body);
    assert_eq!(sample(&scrape(admin).await, &draining), Some(1.0));
}

#[tokio::test]
async fn an_upload_is_counted_while_it_streams() {
    let (cool, nc, os, admin) = instance().await;
    nc.add_file("up_oc", "up.odt", b"x".to_vec());
    nc.grant("up_oc", "up-token");
    open(&os.public_url, &nc, "up_oc", "up-token").await;
    let session = cool.last_session().expect("session");

    // The host reads the first MiB and then stops reading: the rest of a 64 MiB upload
    // cannot fit in the buffers between, so the upload is still going when the first MiB
    // shows on /metrics.
    const READ: u64 = 1 << 20;
    nc.set_put_fault(Some(PutFault::StallAfter(READ)));
    let series = "officeswitch_request_bytes_total{class=\"wopi_contents\"}";
    let before = value(&scrape(admin).await, series);
    let upload = cool.wopi(
        &session,
        WopiCall::PutFile {
            lock: None,
            body: PutBody::Pattern(64 << 20),
        },
    );
    let watch = scrape_until(admin, "the first MiB of the upload is counted", |text| {
        value(text, series) >= before + READ as f64
    });
    tokio::select! {
        reply = upload => panic!("the stalled upload ended first: {:?}", reply.status),
        _ = watch => {}
    }
    nc.set_put_fault(None);
}

#[tokio::test]
async fn discovery_fetch_errors_are_counted_per_pool() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    // A node that refuses connections: a port nothing listens on any more.
    let refusing = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .pool("onlyoffice", "onlyoffice", &[refusing])
        .admin(TOKEN)
        .start()
        .await;
    let admin = os.admin_addr();
    let ok = "officeswitch_discovery_fetches_total{pool=\"collabora\",result=\"ok\"}";
    let cool_errors = "officeswitch_discovery_fetches_total{pool=\"collabora\",result=\"error\"}";
    let errors = "officeswitch_discovery_fetches_total{pool=\"onlyoffice\",result=\"error\"}";
    let refused_ok = "officeswitch_discovery_fetches_total{pool=\"onlyoffice\",result=\"ok\"}";
    // The start-up refresh.
    let first = scrape_until(admin, "the start-up refresh is counted", |text| {
        value(text, ok) >= 1.0 && value(text, errors) >= 1.0
    })
    .await;
    // A pool without discovery makes the next /hosting/discovery refresh at once.
    let (status, _) = os.get("/hosting/discovery").await;
    assert_eq!(status, StatusCode::OK);
    let second = scrape_until(admin, "the on-demand refresh is counted", |text| {
        value(text, ok) > value(&first, ok) && value(text, errors) > value(&first, errors)
    })
    .await;
    assert_eq!(sample(&second, cool_errors), Some(0.0), "{second}");
    assert_eq!(sample(&second, refused_ok), Some(0.0), "{second}");
    assert!(
        sample(
            &second,
            "officeswitch_discovery_age_seconds{pool=\"collabora\"}"
        )
        .is_some(),
        "{second}"
    );
    assert!(
        sample(
            &second,
            "officeswitch_discovery_age_seconds{pool=\"onlyoffice\"}"
        )
        .is_none(),
        "a pool never fetched has no age:\n{second}"
    );
}

#[tokio::test]
async fn rules_reloads_are_counted_ok_and_failed() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .org("acme", &["https://acme.example".to_string()], "")
        .admin(TOKEN)
        .start()
        .await;
    let admin = os.admin_addr();
    let ok = "officeswitch_rules_reloads_total{result=\"ok\"}";
    let failed = "officeswitch_rules_reloads_total{result=\"failed\"}";
    let start = scrape(admin).await;
    assert_eq!(
        (sample(&start, ok), sample(&start, failed)),
        (Some(1.0), Some(0.0))
    );

    let acme = os.rules_dir().join("acme.toml");
    std::fs::write(
        &acme,
        "origins = [\"https://acme.example\"]\nall = \"msoffice\"\n",
    )
    .expect("write broken rules");
    scrape_until(admin, "the broken rules are counted", |text| {
        sample(text, failed) == Some(1.0)
    })
    .await;
    std::fs::write(
        &acme,
        "origins = [\"https://acme.example\"]\nall = \"collabora\"\n",
    )
    .expect("write good rules");
    let end = scrape_until(admin, "the good rules are counted", |text| {
        sample(text, ok) == Some(2.0)
    })
    .await;
    assert_eq!(sample(&end, failed), Some(1.0), "{end}");
}

#[tokio::test]
async fn pins_repins_node_health_and_pin_store_errors_follow_redis_and_the_nodes() {
    trace_init();
    let redis = RedisServer::start().await;
    let (a, b) = tokio::join!(
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::Collabora),
    );
    let nc = StandInNextcloud::start().await;
    let nodes = [a.url(), b.url()];
    let store = format!("[pins]\nstore = \"{}\"\ntimeout_ms = 2000", redis.url());
    // `first` watches its nodes closely; `second` (the same fleet) checks once an hour,
    // so it keeps pinning documents to a node `first` knows is down.
    let first = OfficeSwitch::builder()
        .pool("collabora", "collabora", &nodes)
        .org("acme", &[nc.origin()], "")
        .admin(TOKEN)
        .section(FAST_HEALTH)
        .section(&store)
        .start()
        .await;
    let second = OfficeSwitch::builder()
        .pool("collabora", "collabora", &nodes)
        .org("acme", &[nc.origin()], "")
        .section("[health]\ninterval_secs = 3600")
        .section(&store)
        .share_keys_with(&first)
        .public_url(&first.public_url)
        .start()
        .await;
    let admin = first.admin_addr();
    let first_url = format!("http://{}", first.addr);
    let second_url = format!("http://{}", second.addr);
    let pins = "officeswitch_pins{pool=\"collabora\"}";
    let repinned = "officeswitch_documents_repinned_total";

    let start = scrape(admin).await;
    assert_eq!(sample(&start, pins), Some(0.0), "{start}");
    nc.grant("p0_oc", "p0-token");
    nc.add_file("p0_oc", "p0.odt", b"p".to_vec());
    let victim = open(&first_url, &nc, "p0_oc", "p0-token").await;
    assert_eq!(sample(&scrape(admin).await, pins), Some(1.0));

    // The node with the document fails its checks: down on `first`, its pins released.
    let (victim, victim_label) = if victim == a.url() {
        (&a, node_label(&a))
    } else {
        (&b, node_label(&b))
    };
    victim.set_health_fault(Fault::Status(503));
    let up = format!("officeswitch_node_up{{pool=\"collabora\",node=\"{victim_label}\"}}");
    scrape_until(admin, "the victim is down and its pin released", |text| {
        sample(text, &up) == Some(0.0) && sample(text, pins) == Some(0.0)
    })
    .await;

    // `second` still pins new documents to it; `first` moves such a document.
    let mut moved = None;
    for i in 1..=40 {
        let id = format!("p{i}_oc");
        let token = format!("p{i}-token");
        nc.add_file(&id, "p.odt", b"p".to_vec());
        nc.grant(&id, &token);
        if open(&second_url, &nc, &id, &token).await == victim.url() {
            moved = Some((id, token));
            break;
        }
    }
    let (id, token) = moved.expect("one of 40 documents hashes to the victim");
    assert_eq!(sample(&scrape(admin).await, repinned), Some(0.0));
    let now_on = open(&first_url, &nc, &id, &token).await;
    assert_ne!(now_on, victim.url());
    let after_repin = scrape(admin).await;
    assert_eq!(sample(&after_repin, repinned), Some(1.0), "{after_repin}");
    assert_eq!(sample(&after_repin, "officeswitch_pin_store_up"), Some(1.0));
    let get_errors = "officeswitch_pin_store_errors_total{operation=\"get\"}";
    let count_errors = "officeswitch_pin_store_errors_total{operation=\"count\"}";
    assert_eq!(sample(&after_repin, get_errors), Some(0.0));

    // Redis goes away: the next document's pin read fails and is counted; pins cannot be
    // counted (no sample, the family still described).
    redis.stop().await;
    nc.add_file("gone_oc", "gone.odt", b"g".to_vec());
    nc.grant("gone_oc", "gone-token");
    open(&first_url, &nc, "gone_oc", "gone-token").await;
    let down = scrape(admin).await;
    assert!(value(&down, get_errors) >= 1.0, "{down}");
    assert!(value(&down, count_errors) >= 1.0, "{down}");
    assert_eq!(
        sample(&down, "officeswitch_pin_store_up"),
        Some(0.0),
        "{down}"
    );
    assert!(down.contains("# TYPE officeswitch_pins gauge\n"), "{down}");
    assert!(sample(&down, pins).is_none(), "{down}");
}

/// `[admin] metrics_need_token = false`: Prometheus scrapes without credentials, every
/// other admin endpoint still needs the token. (The default, token needed, is checked in
/// [`metrics_appear_and_move_with_traffic`].)
#[tokio::test]
async fn metrics_can_be_scraped_without_the_token_when_configured() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .admin(TOKEN)
        // The first section lands in the builder's `[admin]` table.
        .section("metrics_need_token = false")
        .start()
        .await;
    let admin = os.admin_addr();
    let (status, text) = client::get(&format!("http://{admin}/metrics")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        text.contains("# TYPE officeswitch_requests counter\n"),
        "{text}"
    );
    // Only GET /metrics is open.
    let (status, _) = client::get(&format!("http://{admin}/admin/nodes")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let post = client::send(Method::POST, &format!("http://{admin}/metrics"), &[], b"").await;
    assert_eq!(post.status, StatusCode::UNAUTHORIZED);
    let drain = client::send(
        Method::POST,
        &format!("http://{admin}/admin/nodes/drain"),
        &[("content-type", "application/json")],
        format!("{{\"node\":\"{}\"}}", node_label(&cool)).as_bytes(),
    )
    .await;
    assert_eq!(drain.status, StatusCode::UNAUTHORIZED);
    // With the token it answers as well.
    scrape(admin).await;
}

/// Needs the tunnel to report through `Metrics::websocket_opened` (the coordinator's
/// tunnel rewrite): until then `websockets_open` has an empty `node` and no bytes move.
#[tokio::test]
async fn websocket_metrics_follow_the_tunnel() {
    let (cool, nc, os, admin) = instance().await;
    let open_series = format!(
        "officeswitch_websockets_open{{pool=\"collabora\",node=\"{}\"}}",
        node_label(&cool)
    );
    let to_node = "officeswitch_websocket_bytes_total{pool=\"collabora\",direction=\"to_node\"}";
    let to_client =
        "officeswitch_websocket_bytes_total{pool=\"collabora\",direction=\"to_client\"}";
    let before = scrape(admin).await;

    let src = encode(&nc.wopi_src("ws_oc"));
    let url = format!("ws://{}/cool/{src}/ws?WOPISrc={src}&compat=/ws", os.addr);
    let (mut socket, _) = tokio::time::timeout(
        Duration::from_secs(10),
        client::websocket(&url, &os.public_url),
    )
    .await
    .expect("handshake in time")
    .expect("WebSocket through officeswitch");
    let message = "m".repeat(10_000);
    for _ in 0..10 {
        socket
            .send(Message::text(message.clone()))
            .await
            .expect("send");
        let echo = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("echo in time");
        assert!(matches!(echo, Some(Ok(Message::Text(_)))), "{echo:?}");
    }
    let during = scrape(admin).await;
    assert_eq!(sample(&during, &open_series), Some(1.0), "{during}");
    for series in [to_node, to_client] {
        assert!(
            value(&during, series) >= value(&before, series) + 100_000.0,
            "{series}:\n{during}"
        );
    }
    socket.close(None).await.expect("close");
    drop(socket);
    scrape_until(admin, "the tunnel is counted as closed", |text| {
        sample(text, &open_series) == Some(0.0)
    })
    .await;
}
