//! Hostile clients (issue 13): each test reproduces an attack an adversarial review found,
//! with the attack's bytes in the test, against officeswitch in front of loopback nodes.

use std::time::Duration;

use futures_util::future::join_all;
use http::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::client::{self, encode, post_form};
use crate::support::editor::{StandInEditor, StandInOptions, Suite};
use crate::support::nextcloud::StandInNextcloud;
use crate::support::officeswitch::{OfficeSwitch, free_port};
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;

const ODT: &str = "application/vnd.oasis.opendocument.text";
const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
const ADMIN_TOKEN: &str = "hostile-admin-token";

/// An upload that announces 1,000,000 bytes and sends 10: cut off (the client closes) or
/// stalled (the client waits), it never completes. `{path}` and `{host}` are filled in.
const SHORT_UPLOAD: &str = "POST {path} HTTP/1.1\r\nHost: {host}\r\n\
    Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n0123456789";

/// The conversion endpoints anyone may call, one per suite.
const CONVERSIONS: [&str; 2] = ["/cool/convert-to/pdf", "/ConvertService.ashx"];

/// Sends [`SHORT_UPLOAD`] to `path`; a cut-off one closes at once, a stalled one waits for
/// officeswitch's answer (at most 10 s) and returns its status line.
async fn short_upload(addr: &str, path: &str, cut_off: bool) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = SHORT_UPLOAD.replace("{path}", path).replace("{host}", addr);
    stream.write_all(request.as_bytes()).await.expect("write");
    if cut_off {
        return String::new();
    }
    let mut head = vec![0; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut head)).await;
    let n = read.ok().and_then(Result::ok).unwrap_or(0);
    String::from_utf8_lossy(&head[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Two stand-in Collabora nodes and a stand-in Nextcloud holding `1_odt`, granted to
/// `tok`.
async fn two_collabora_nodes_and_a_host() -> (StandInEditor, StandInEditor, StandInNextcloud) {
    let (c1, c2) = tokio::join!(
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::Collabora),
    );
    let nc = StandInNextcloud::start().await;
    nc.add_file("1_odt", "a.odt", b"content".to_vec());
    nc.grant("1_odt", "tok");
    (c1, c2, nc)
}

/// `/admin/nodes`: every node with its health.
async fn nodes(os: &OfficeSwitch) -> Vec<Value> {
    let admin = os.admin_addr();
    let reply = client::send(
        Method::GET,
        &format!("http://{admin}/admin/nodes"),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let list: Value = serde_json::from_str(&reply.body).expect("JSON");
    list["nodes"].as_array().cloned().unwrap_or_default()
}

/// Opens `file_id` of `mime` through officeswitch and returns the status.
async fn open(os: &OfficeSwitch, nc: &StandInNextcloud, mime: &str, file_id: &str) -> StatusCode {
    let (_, xml) = os.get("/hosting/discovery").await;
    let view = RichdocumentsView::parse(&xml);
    let (_, urlsrc) = view.url_src(mime).expect("a urlsrc");
    let url = format!("{urlsrc}WOPISrc={}&lang=en", encode(&nc.wopi_src(file_id)));
    post_form(&url, "access_token=tok&access_token_ttl=0")
        .await
        .status
}

#[tokio::test]
async fn cut_off_and_stalled_uploads_mark_no_node_down_but_a_refusing_node_still_goes_down() {
    trace_init();
    let whole = || StandInOptions::default().converts_whole_uploads();
    let (c1, c2, o1, o2) = tokio::join!(
        StandInEditor::start_with(Suite::Collabora, whole()),
        StandInEditor::start_with(Suite::Collabora, whole()),
        StandInEditor::start_with(Suite::OnlyOffice, whole()),
        StandInEditor::start_with(Suite::OnlyOffice, whole()),
    );
    let nc = StandInNextcloud::start().await;
    for (id, name) in [("1_odt", "a.odt"), ("2_docx", "b.docx")] {
        nc.add_file(id, name, b"content".to_vec());
        nc.grant(id, "tok");
    }
    // Checks that never run during the attack (an hour apart): only passive reports could
    // mark a node down, and two of them would.
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[c1.url(), c2.url()])
        .pool("onlyoffice", "onlyoffice", &[o1.url(), o2.url()])
        .org("acme", &[nc.origin()], "")
        .admin(ADMIN_TOKEN)
        .section("[upstream]\nfirst_byte_timeout_secs = 1")
        .section("[health]\ninterval_secs = 3600\nfall = 2\nrise = 1")
        .start()
        .await;
    let addr = os
        .public_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();

    // 200 anonymous uploads, half cut off and half stalled, 50 at a time.
    let mut stalled_answers = Vec::new();
    for round in 0..4 {
        let batch = (0..50).map(|i| {
            let path = CONVERSIONS[i % 2];
            short_upload(&addr, path, round % 2 == 0)
        });
        let answers = join_all(batch).await;
        if round % 2 == 1 {
            stalled_answers.extend(answers);
        }
    }
    for answer in &stalled_answers {
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "a stalled upload is the client's fault: {answer:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for node in nodes(&os).await {
        assert_eq!(node["healthy"], true, "{node}");
        assert_eq!(node["consecutive_failures"], 0, "{node}");
    }
    assert_eq!(open(&os, &nc, ODT, "1_odt").await, StatusCode::OK);
    assert_eq!(open(&os, &nc, DOCX, "2_docx").await, StatusCode::OK);
    // A node that really refuses connections still goes down within `fall` requests.
    let refusing = c2.url();
    c2.stop().await;
    // Round robin: every other conversion meets the stopped node; `fall` (2) refusals.
    let mut refused = 0;
    for _ in 0..10 {
        let reply = client::send(
            Method::POST,
            &format!(
                "{}/cool/convert-to/pdf",
                os.public_url.trim_end_matches('/')
            ),
            &[],
            b"x",
        )
        .await;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::BAD_GATEWAY => refused += 1,
            other => panic!("{other}: {}", reply.body),
        }
        if refused == 2 {
            break;
        }
    }
    assert_eq!(refused, 2, "the stopped node refused twice");
    let down: Vec<Value> = nodes(&os)
        .await
        .into_iter()
        .filter(|n| n["healthy"] == false)
        .collect();
    assert!(
        down.len() == 1
            && down[0]["node"].as_str().map(|n| n.trim_end_matches('/'))
                == Some(refusing.trim_end_matches('/')),
        "only the refusing node is down: {down:?}"
    );
}

#[tokio::test]
async fn client_forwarding_headers_never_reach_a_node_and_answers_are_not_sniffed() {
    trace_init();
    let node = StandInEditor::start(Suite::Collabora).await;
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[node.url()])
        .org("acme", &[nc.origin()], "")
        .start()
        .await;
    let public = os.public_url.trim_end_matches('/').to_string();

    // Headers a client sends so that an editor builds its URLs on another host or path.
    let spoof = [
        ("forwarded", "for=1.2.3.4;host=evil.example;proto=http"),
        ("x-forwarded-prefix", "/evil"),
        ("x-real-ip", "10.0.0.1"),
        ("proxyprefix", "http://evil.example/"),
        ("x-forwarded-host", "evil.example"),
    ];
    let reply = client::send(
        Method::GET,
        &format!("{public}/hosting/capabilities"),
        &spoof,
        b"",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let asset = client::send(
        Method::GET,
        &format!("{public}/browser/1a2b/x.js"),
        &spoof,
        b"",
    )
    .await;
    assert!(asset.status.is_client_error() || asset.status.is_success());
    let seen = node
        .requests()
        .into_iter()
        .find(|r| r.path() == "/browser/1a2b/x.js")
        .expect("the asset reached the node");
    for (name, _) in &spoof {
        let value = seen
            .headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            !value.contains("evil") && !value.contains("10.0.0.1"),
            "{name}: {value}"
        );
    }

    // A 60 KiB path of text an attacker chose comes back as plain text, never sniffed.
    let long = format!(
        "{public}/unknown/{}",
        "%3Cscript%3Ex%3C%2Fscript%3E".repeat(2_200)
    );
    let reply = client::send(Method::GET, &long, &[], b"").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn requests_naming_made_up_documents_create_no_pins_only_opens_do() {
    trace_init();
    let (c1, c2, nc) = two_collabora_nodes_and_a_host().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[c1.url(), c2.url()])
        .org("acme", &[nc.origin()], "")
        .admin(ADMIN_TOKEN)
        .start()
        .await;
    let public = os.public_url.trim_end_matches('/').to_string();
    let pinned = async || -> u64 {
        nodes(&os)
            .await
            .iter()
            .filter_map(|n| n["pinned_documents"].as_u64())
            .sum()
    };

    // 500 page loads, each naming a fresh document under the organisation's origin: each
    // used to add a pin (~0.5 KB for an hour, in Redis too).
    let loads = (0..500).map(|n| {
        let wopi_src = encode(&nc.wopi_src(&format!("{n}_made_up")));
        let url = format!("{public}/browser/1a2b3c/cool.html?WOPISrc={wopi_src}");
        async move { client::get(&url).await.0 }
    });
    for status in join_all(loads).await {
        assert_ne!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(pinned().await, 0, "made-up documents left pins");

    // An open pins its document; its traffic then follows the pin.
    assert_eq!(open(&os, &nc, ODT, "1_odt").await, StatusCode::OK);
    assert_eq!(pinned().await, 1);
}

/// Whether the server closed `stream` within `limit` (a read gets end of stream or an
/// error).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0; 256];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // An answer: keep reading until the server closes.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn one_client_holding_many_idle_connections_starves_nobody_and_idle_ones_close() {
    trace_init();
    let node = StandInEditor::start(Suite::Collabora).await;
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[node.url()])
        .org("acme", &[nc.origin()], "")
        .section(
            "[server]\nmax_connections_per_client = 20\nidle_timeout_secs = 2\n\
             body_timeout_secs = 2\nheader_timeout_secs = 3",
        )
        .start()
        .await;
    let addr = os
        .public_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();

    // 60 connections from 127.0.0.1, each sending the HTTP/2 preface and nothing more.
    const H2C_PREFACE: &[u8] =
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let mut held = Vec::new();
    for _ in 0..60 {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        let _ = stream.write_all(H2C_PREFACE).await;
        held.push(stream);
    }
    let closed = join_all(
        held.iter_mut()
            .map(|stream| closed_within(stream, Duration::from_millis(500))),
    )
    .await;
    let refused = closed.iter().filter(|c| **c).count();
    assert_eq!(
        refused, 40,
        "all but max_connections_per_client closed at once"
    );
    // Another client is served meanwhile.
    let other = std::net::IpAddr::from([127, 0, 0, 2]);
    let public = os.public_url.trim_end_matches('/').to_string();
    let (status, _, _) = client::send_bytes_from(
        Some(other),
        Method::GET,
        &format!("{public}/healthz"),
        &[],
        b"",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The silent ones go at the header deadline; their places come back.
    for stream in &mut held {
        assert!(closed_within(stream, Duration::from_secs(6)).await);
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A kept-alive HTTP/1.1 connection closes once idle for idle_timeout_secs.
    let mut keep_alive = TcpStream::connect(&addr).await.expect("connect");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    keep_alive.write_all(request.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    assert!(closed_within(&mut keep_alive, Duration::from_secs(6)).await);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before the idle time"
    );

    // An open form that stops arriving gets 408 after body_timeout_secs.
    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /officeswitch/open/ext/odt/edit?WOPISrc={} HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\naccess_tok",
        encode(&nc.wopi_src("1_odt"))
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 64];
    let n = tokio::time::timeout(Duration::from_secs(6), slow.read(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    let line = String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(line.starts_with("HTTP/1.1 408"), "{line}");
}

#[tokio::test]
async fn an_open_whose_node_refuses_the_connection_lands_on_the_next_node() {
    trace_init();
    let (c1, c2, nc) = two_collabora_nodes_and_a_host().await;
    // No check runs during the test: only the refusal itself can move the document.
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[c1.url(), c2.url()])
        .org("acme", &[nc.origin()], "")
        .admin(ADMIN_TOKEN)
        .section("[health]\ninterval_secs = 3600\nfall = 3")
        .start()
        .await;

    // Step 1 routes and pins; the pinned node then dies before the page is posted to it.
    let (_, xml) = os.get("/hosting/discovery").await;
    let view = RichdocumentsView::parse(&xml);
    let (_, urlsrc) = view.url_src(ODT).expect("a urlsrc");
    let form = "access_token=tok&access_token_ttl=0";
    let url = format!("{urlsrc}WOPISrc={}&lang=en", encode(&nc.wopi_src("1_odt")));
    let step1 = client::post_form_once(&url, form).await;
    assert_eq!(
        step1.status,
        StatusCode::TEMPORARY_REDIRECT,
        "{}",
        step1.body
    );
    let pinned: Vec<String> = nodes(&os)
        .await
        .iter()
        .filter(|n| n["pinned_documents"] == 1)
        .filter_map(|n| {
            n["node"]
                .as_str()
                .map(|s| s.trim_end_matches('/').to_string())
        })
        .collect();
    assert_eq!(pinned.len(), 1, "{pinned:?}");
    let (dead, survivor) = if c1.url().trim_end_matches('/') == pinned[0] {
        (c1, c2)
    } else {
        (c2, c1)
    };
    dead.stop().await;

    let location = step1.headers["location"].to_str().unwrap().to_string();
    let page = client::post_form_once(&location, form).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        page.node(),
        Some(survivor.url().as_str()),
        "rendered by the survivor"
    );
    let now_pinned: Vec<Value> = nodes(&os)
        .await
        .into_iter()
        .filter(|n| n["pinned_documents"] == 1)
        .collect();
    assert_eq!(
        now_pinned[0]["node"]
            .as_str()
            .map(|s| s.trim_end_matches('/')),
        Some(survivor.url().trim_end_matches('/')),
        "the document is pinned to the survivor"
    );
}

#[tokio::test]
async fn mixed_conversions_of_two_pools_spread_over_every_node_of_each() {
    trace_init();
    let (c1, c2, o1, o2) = tokio::join!(
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::OnlyOffice),
        StandInEditor::start(Suite::OnlyOffice),
    );
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[c1.url(), c2.url()])
        .pool("onlyoffice", "onlyoffice", &[o1.url(), o2.url()])
        .org("acme", &[nc.origin()], "")
        .start()
        .await;
    let public = os.public_url.trim_end_matches('/').to_string();
    // One pool's conversion, then the other's: with one counter for both pools, each pool
    // saw only every other position and always the same node.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        for path in CONVERSIONS {
            let reply = client::send(Method::POST, &format!("{public}{path}"), &[], b"x").await;
            assert_eq!(reply.status, StatusCode::OK, "{path}");
            seen.insert(reply.node().expect("a node answered").to_string());
        }
    }
    assert_eq!(seen.len(), 4, "every node converted: {seen:?}");
}

#[tokio::test]
async fn an_open_naming_its_host_in_a_spelling_no_host_uses_is_refused_at_once() {
    trace_init();
    let node = StandInEditor::start(Suite::Collabora).await;
    let nc = StandInNextcloud::start().await;
    nc.add_file("1_odt", "a.odt", b"content".to_vec());
    nc.grant("1_odt", "tok");
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[node.url()])
        .org("acme", &[nc.origin()], "")
        .start()
        .await;
    let (_, xml) = os.get("/hosting/discovery").await;
    let view = RichdocumentsView::parse(&xml);
    let (_, urlsrc) = view.url_src(ODT).expect("a urlsrc");
    let proper = nc.wopi_src("1_odt");
    // The organisation's host with a trailing dot, and with full-width dots.
    let trailing = proper.replacen("127.0.0.1", "127.0.0.1.", 1);
    let full_width = proper.replacen("127.0.0.1", "127\u{FF0E}0\u{FF0E}0\u{FF0E}1", 1);
    for wopi_src in [trailing, full_width] {
        let url = format!("{urlsrc}WOPISrc={}&lang=en", encode(&wopi_src));
        let reply = post_form(&url, "access_token=tok&access_token_ttl=0").await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{wopi_src}: {}",
            reply.body
        );
    }
    assert!(nc.requests().is_empty(), "the host was never called");
}

#[tokio::test]
async fn a_malformed_chunk_is_the_clients_400_and_no_failure_of_the_node() {
    trace_init();
    let node = StandInEditor::start_with(
        Suite::Collabora,
        StandInOptions::default().converts_whole_uploads(),
    )
    .await;
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[node.url()])
        .org("acme", &[nc.origin()], "")
        .admin(ADMIN_TOKEN)
        .section("[health]\ninterval_secs = 3600\nfall = 1")
        .start()
        .await;
    let addr = os
        .public_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    // A first chunk of 10 bytes, then a chunk size that is no hex number.
    let request = format!(
        "POST /cool/convert-to/pdf HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n\
         a\r\n0123456789\r\nzz\r\nabc\r\n"
    );
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap_or(0);
    let line = String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        line.is_empty() || line.starts_with("HTTP/1.1 400"),
        "{line}"
    );
    // The node was not blamed (`fall = 1`).
    tokio::time::sleep(Duration::from_millis(200)).await;
    for node in nodes(&os).await {
        assert_eq!(node["healthy"], true, "{node}");
    }
}

#[tokio::test]
async fn public_readiness_names_no_node_error_or_rules_file_and_the_admin_listener_does() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    // Nodes that refuse connections, and a pool that has nothing but one.
    let dead = format!("http://127.0.0.1:{}", free_port().await);
    let also_dead = format!("http://127.0.0.1:{}", free_port().await);
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url(), also_dead])
        .pool("onlyoffice", "onlyoffice", std::slice::from_ref(&dead))
        .section("[health]\ninterval_secs = 1\ntimeout_secs = 1\nfall = 1\nrise = 1")
        .admin(ADMIN_TOKEN)
        .start()
        .await;
    let dead_line = format!("node {dead}/ (onlyoffice): down since");
    // The admin listener tells the operator everything: the dead node and why, then a
    // rules file that does not load.
    let detail = os.readiness_saying(&dead_line).await;
    assert!(detail.contains("Connection refused"), "{detail}");
    let detail = os
        .readiness_saying(&format!("ok, discovery of {}", cool.url()))
        .await;
    assert!(detail.contains("no discovery"), "{detail}");
    std::fs::write(
        os.rules_dir().join("tenant-secret.toml"),
        "origins = [\"not an origin\"]\n",
    )
    .expect("write a broken rules file");
    let detail = os.readiness_saying("tenant-secret.toml").await;
    assert!(detail.contains("tenant-secret.toml:1"), "{detail}");

    // The public listener, which anyone reaches: the status and a reason without addresses.
    let (status, body) = os.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body, "not ready: pool onlyoffice has no discovery\n");

    // And the detail needs the admin token.
    let reply = client::send(
        Method::GET,
        &format!("http://{}/admin/ready", os.admin_addr()),
        &[("authorization", "Bearer not-the-admin-token")],
        b"",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert!(!reply.body.contains("127.0.0.1"), "{}", reply.body);
}
