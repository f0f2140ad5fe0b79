//! The admin listener as operators use it: `admin::serve` on loopback driven by a real HTTP
//! client (bearer token, node list, draining), and the `officeswitch nodes` binary against it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

use officeswitch::admin;
use officeswitch::app::App;
use officeswitch::config::{PinStoreConfig, PoolConfig, ProofPolicy, SuiteKind};
use officeswitch::sticky::pins::Stickiness;

use crate::support::client::{self, Reply};
use crate::support::logs::Captured;
use crate::support::officeswitch::OfficeSwitch;
use crate::support::placement::placement;

const BIN: &str = env!("CARGO_BIN_EXE_officeswitch");
const TOKEN: &str = "admin-token-0123456789-abcdef";
const COOL_1: &str = "http://10.0.0.1:9980/";
const COOL_2: &str = "http://10.0.0.2:9980/";
const ONLYOFFICE: &str = "http://10.0.1.1/onlyoffice/";

fn url(s: &str) -> Url {
    Url::parse(s).expect("URL")
}

/// Two Collabora nodes and one OnlyOffice node; nothing listens there, and nothing is
/// contacted (health checks are not running).
fn pools() -> Vec<PoolConfig> {
    vec![
        PoolConfig {
            name: "collabora".into(),
            kind: SuiteKind::Collabora,
            nodes: vec![url(COOL_1), url(COOL_2)],
            proof: ProofPolicy::Auto,
        },
        PoolConfig {
            name: "onlyoffice".into(),
            kind: SuiteKind::OnlyOffice,
            nodes: vec![url(ONLYOFFICE)],
            proof: ProofPolicy::Auto,
        },
    ]
}

/// Stickiness as `App::new` builds it, over [`pools`] and the given pin store.
fn sticky(store: PinStoreConfig) -> Arc<Stickiness> {
    placement(pools(), store, Duration::from_millis(250), 3)
}

/// `admin::serve` on a listener, stopped by `stop`.
struct AdminServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl AdminServer {
    async fn start(sticky: Arc<Stickiness>) -> AdminServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        AdminServer::on(listener, sticky)
    }

    fn on(listener: TcpListener, sticky: Arc<Stickiness>) -> AdminServer {
        let addr = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(admin::serve(
            listener,
            sticky,
            None,
            None,
            Arc::from(TOKEN),
            true,
            shutdown.clone(),
        ));
        AdminServer {
            addr,
            shutdown,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a request with the right token.
    async fn send(&self, method: Method, path: &str, body: &str) -> Reply {
        let bearer = format!("Bearer {TOKEN}");
        client::send(
            method,
            &self.url(path),
            &[("authorization", &bearer)],
            body.as_bytes(),
        )
        .await
    }

    async fn nodes(&self) -> Value {
        let reply = self.send(Method::GET, "/admin/nodes", "").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        serde_json::from_str(&reply.body).expect("JSON node list")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("admin::serve returns once shutdown is cancelled")
            .expect("admin::serve does not panic");
    }
}

/// The entry of `node` in a node list.
fn entry<'a>(list: &'a Value, node: &str) -> &'a Value {
    list["nodes"]
        .as_array()
        .expect("nodes array")
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("{node} not listed in {list}"))
}

#[tokio::test]
async fn requests_without_the_right_token_get_401_and_the_token_is_never_logged() {
    // A current-thread runtime: every task, the server's included, logs into `captured`.
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = AdminServer::start(sticky(PinStoreConfig::Memory)).await;
    let wrong = "Bearer admin-token-0123456789-abcdeX";
    let cut = "Bearer admin-token-0123456789";
    let basic = format!("Basic {TOKEN}");
    for (path, headers) in [
        ("/admin/nodes", vec![]),
        ("/admin/nodes", vec![("authorization", wrong)]),
        ("/admin/nodes", vec![("authorization", cut)]),
        ("/admin/nodes", vec![("authorization", basic.as_str())]),
        ("/admin/nodes", vec![("authorization", "Bearer")]),
        ("/elsewhere", vec![]),
    ] {
        let reply = client::send(Method::GET, &server.url(path), &headers, b"").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(
            reply.headers.get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Bearer"[..]),
            "{headers:?}"
        );
        assert!(!reply.body.contains(TOKEN), "{}", reply.body);
    }
    let drain = client::send(
        Method::POST,
        &server.url("/admin/nodes/drain"),
        &[("authorization", wrong)],
        format!(r#"{{"node":"{COOL_1}"}}"#).as_bytes(),
    )
    .await;
    assert_eq!(drain.status, StatusCode::UNAUTHORIZED);
    assert!(
        !server.nodes().await["nodes"][0]["draining"]
            .as_bool()
            .expect("draining"),
        "a refused drain changes nothing"
    );

    // The scheme is case-insensitive, as HTTP says.
    let lower = format!("bearer {TOKEN}");
    let reply = client::send(
        Method::GET,
        &server.url("/admin/nodes"),
        &[("authorization", &lower)],
        b"",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    server.stop().await;

    let lines = captured.lines();
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("admin request refused"))
        .collect();
    assert_eq!(refused.len(), 7, "one line per refusal: {lines:#?}");
    assert!(refused.iter().any(|l| l.contains("wrong bearer token")));
    assert!(
        refused
            .iter()
            .any(|l| l.contains("no Authorization header"))
    );
    for line in &lines {
        assert!(
            !line.contains("admin-token-0123456789"),
            "a token (or part of one) was logged: {line}"
        );
    }
}

#[tokio::test]
async fn the_node_list_has_health_draining_and_pinned_documents() {
    let sticky = sticky(PinStoreConfig::Memory);
    let cool = [url(COOL_1), url(COOL_2)];
    let mut pinned = [0u64; 2];
    for doc in 0..10 {
        let node = sticky
            .node_for(&format!("document-{doc}"), 0, &cool)
            .await
            .expect("a node");
        pinned[node] += 1;
    }
    for _ in 0..3 {
        sticky
            .health()
            .report_failure(1, 0, "status 503 Service Unavailable");
    }
    let server = AdminServer::start(sticky).await;

    let reply = server.send(Method::GET, "/admin/nodes", "").await;
    assert_eq!(
        reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let list: Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(
        list["pins"],
        serde_json::json!({"store": "memory", "reachable": true})
    );
    let nodes = list["nodes"].as_array().expect("nodes");
    let names: Vec<&str> = nodes.iter().filter_map(|n| n["node"].as_str()).collect();
    assert_eq!(names, [COOL_1, COOL_2, ONLYOFFICE], "settings order");

    let first = entry(&list, COOL_1);
    for field in [
        "pool",
        "suite",
        "node",
        "healthy",
        "draining",
        "consecutive_failures",
        "last_error",
        "since_unix",
        "pinned_documents",
    ] {
        assert!(first.get(field).is_some(), "{field} missing from {first}");
    }
    assert_eq!(first["pool"], "collabora");
    assert_eq!(first["suite"], "collabora");
    assert_eq!(first["healthy"], true);
    assert_eq!(first["draining"], false);
    assert_eq!(first["last_error"], Value::Null);
    assert_eq!(first["pinned_documents"], pinned[0]);
    assert_eq!(entry(&list, COOL_2)["pinned_documents"], pinned[1]);
    assert_eq!(pinned[0] + pinned[1], 10);

    let down = entry(&list, ONLYOFFICE);
    assert_eq!(down["suite"], "onlyoffice");
    assert_eq!(down["healthy"], false);
    assert_eq!(down["consecutive_failures"], 3);
    assert_eq!(down["last_error"], "status 503 Service Unavailable");
    assert_eq!(down["pinned_documents"], 0);
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_pin_store_leaves_counts_null_and_still_answers() {
    // Nothing listens on port 1: every store operation fails at once.
    let server = AdminServer::start(sticky(PinStoreConfig::Redis(
        "redis://127.0.0.1:1/0".into(),
    )))
    .await;
    let list = server.nodes().await;
    assert_eq!(
        list["pins"],
        serde_json::json!({"store": "redis", "reachable": false})
    );
    for node in list["nodes"].as_array().expect("nodes") {
        assert_eq!(node["pinned_documents"], Value::Null, "{node}");
        assert_eq!(node["healthy"], true, "{node}");
    }
    server.stop().await;
}

#[tokio::test]
async fn drain_keeps_new_documents_off_a_node_and_undrain_brings_them_back() {
    let sticky = sticky(PinStoreConfig::Memory);
    let cool = [url(COOL_1), url(COOL_2)];
    // A document already open on the node about to be drained.
    let mut open = None;
    for doc in 0..50 {
        let id = format!("open-{doc}");
        if sticky.node_for(&id, 0, &cool).await == Some(1) {
            open = Some(id);
            break;
        }
    }
    let open = open.expect("some document hashes to the second node");
    let server = AdminServer::start(sticky.clone()).await;

    let reply = server
        .send(
            Method::POST,
            "/admin/nodes/drain",
            &format!(r#"{{"node":"{COOL_2}"}}"#),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let answer: Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(
        answer,
        serde_json::json!({"node": COOL_2, "draining": true, "changed": true, "shared": true})
    );
    let health = sticky.health();
    assert!(health.is_draining(0, 1));
    assert!(!health.takes_new_documents(0, 1));
    assert!(health.is_healthy(0, 1), "draining is not being down");
    let list = server.nodes().await;
    assert_eq!(entry(&list, COOL_2)["draining"], true);
    assert_eq!(entry(&list, COOL_1)["draining"], false);

    // Again, without the trailing slash: found, nothing changes.
    let reply = server
        .send(
            Method::POST,
            "/admin/nodes/drain",
            r#"{"node":"http://10.0.0.2:9980"}"#,
        )
        .await;
    let answer: Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(
        answer,
        serde_json::json!({"node": COOL_2, "draining": true, "changed": false, "shared": true})
    );

    // Open documents stay; new ones go elsewhere.
    assert_eq!(sticky.node_for(&open, 0, &cool).await, Some(1));
    for doc in 0..30 {
        assert_eq!(
            sticky.node_for(&format!("new-{doc}"), 0, &cool).await,
            Some(0),
            "new-{doc} went to the draining node"
        );
    }

    // Undrain through the query form.
    let query = client::encode(COOL_2);
    let reply = server
        .send(
            Method::POST,
            &format!("/admin/nodes/undrain?node={query}"),
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let answer: Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(
        answer,
        serde_json::json!({"node": COOL_2, "draining": false, "changed": true, "shared": true})
    );
    assert!(health.takes_new_documents(0, 1));
    assert_eq!(entry(&server.nodes().await, COOL_2)["draining"], false);
    server.stop().await;
}

#[tokio::test]
async fn unknown_nodes_bad_bodies_wrong_methods_and_paths_are_refused() {
    let sticky = sticky(PinStoreConfig::Memory);
    let server = AdminServer::start(sticky.clone()).await;
    let drain = "/admin/nodes/drain";
    for (method, path, body, status) in [
        (
            Method::POST,
            drain,
            r#"{"node":"http://10.0.0.9:9980/"}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            drain,
            r#"{"node":"https://10.0.0.1:9980/"}"#,
            StatusCode::NOT_FOUND,
        ),
        (Method::POST, drain, "", StatusCode::BAD_REQUEST),
        (Method::POST, drain, "node=x", StatusCode::BAD_REQUEST),
        (
            Method::POST,
            drain,
            r#"{"node":7}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            drain,
            r#"{"node":"not a url"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            drain,
            r#"{"nodes":"http://10.0.0.1:9980/"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, drain, "", StatusCode::METHOD_NOT_ALLOWED),
        (
            Method::DELETE,
            "/admin/nodes/undrain",
            "",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::POST,
            "/admin/nodes",
            "",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (Method::GET, "/admin/pins", "", StatusCode::NOT_FOUND),
        (Method::GET, "/", "", StatusCode::NOT_FOUND),
        (Method::GET, "/admin/nodes/", "", StatusCode::NOT_FOUND),
    ] {
        let reply = server.send(method.clone(), path, body).await;
        assert_eq!(
            reply.status, status,
            "{method} {path} {body}: {}",
            reply.body
        );
        let error: Value = serde_json::from_str(&reply.body).expect("JSON error");
        assert!(error["error"].is_string(), "{}", reply.body);
    }
    let reply = server.send(Method::GET, drain, "").await;
    assert_eq!(
        reply.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let big = format!(r#"{{"node":"{COOL_1}","pad":"{}"}}"#, "x".repeat(10_000));
    let reply = server.send(Method::POST, drain, &big).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    for node in 0..2 {
        assert!(!sticky.health().is_draining(0, node), "nothing was drained");
    }
    server.stop().await;
}

// The `officeswitch nodes` binary.

/// Writes the token to a file in `dir`.
fn token_file(dir: &Path, token: &str) -> PathBuf {
    let path = dir.join("admin.token");
    std::fs::write(&path, format!("{token}\n")).expect("write token");
    path
}

/// Runs the binary; returns exit code, standard output and standard error.
async fn officeswitch(args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run officeswitch");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn nodes_command_prints_the_table_drains_and_exits_0() {
    let sticky = sticky(PinStoreConfig::Memory);
    sticky
        .node_for("document-1", 0, &[url(COOL_1), url(COOL_2)])
        .await
        .expect("a node");
    let server = AdminServer::start(sticky.clone()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let token = token_file(dir.path(), TOKEN);
    let token = token.to_str().expect("UTF-8 path");
    let admin = format!("http://{}", server.addr);
    // No settings file exists: --admin and --token-file are enough.
    let missing = dir.path().join("none.toml");
    let common = [
        "--config",
        missing.to_str().expect("UTF-8 path"),
        "nodes",
        "--admin",
        &admin,
        "--token-file",
        token,
    ];

    let (code, out, err) = officeswitch(&common).await;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "POOL", "NODE", "HEALTH", "DRAINING", "PINNED", "LAST", "ERROR"
        ],
        "{out}"
    );
    assert!(
        lines[1].starts_with("collabora   http://10.0.0.1:9980/"),
        "{out}"
    );
    assert!(
        lines[1].contains(" up ") && lines[1].contains(" no "),
        "{out}"
    );
    assert!(
        lines[3].starts_with("onlyoffice  http://10.0.1.1/onlyoffice/"),
        "{out}"
    );
    assert_eq!(lines[4], "pins: memory store", "{out}");
    let pinned: u64 = lines[1..3]
        .iter()
        .map(|l| {
            l.split_whitespace()
                .nth(4)
                .and_then(|c| c.parse::<u64>().ok())
                .expect("PINNED column")
        })
        .sum();
    assert_eq!(pinned, 1, "{out}");
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN));

    let (code, out, err) = officeswitch(&[&common[..], &["--json"]].concat()).await;
    assert_eq!(code, 0, "{out}{err}");
    let list: Value = serde_json::from_str(&out).expect("--json prints the JSON");
    assert_eq!(list["nodes"].as_array().map(Vec::len), Some(3));

    let (code, out, err) = officeswitch(&[&common[..], &["drain", COOL_1]].concat()).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("http://10.0.0.1:9980/: draining now"),
        "{out}"
    );
    assert!(sticky.health().is_draining(0, 0));
    let (code, out, _) = officeswitch(&common).await;
    assert_eq!(code, 0);
    assert!(
        out.lines().nth(1).is_some_and(|l| l.contains(" yes ")),
        "{out}"
    );

    // The flags also go after the subcommand.
    let after = [
        "--config",
        missing.to_str().expect("UTF-8 path"),
        "nodes",
        "undrain",
        COOL_1,
        "--admin",
        &admin,
        "--token-file",
        token,
        "--json",
    ];
    let (code, out, err) = officeswitch(&after).await;
    assert_eq!(code, 0, "{out}{err}");
    let answer: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(answer["changed"], true, "{out}");
    assert!(!sticky.health().is_draining(0, 0));

    let (code, out, err) =
        officeswitch(&[&common[..], &["drain", "http://10.9.9.9/"]].concat()).await;
    assert_eq!(code, 1, "an unknown node is the API's 404: {out}{err}");
    assert!(err.contains("404"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn nodes_command_with_a_wrong_token_exits_1_with_the_status() {
    let server = AdminServer::start(sticky(PinStoreConfig::Memory)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let wrong = "not-the-admin-token-at-all";
    let token = token_file(dir.path(), wrong);
    let admin = server.addr.to_string();
    let (code, out, err) = officeswitch(&[
        "nodes",
        "--admin",
        &admin,
        "--token-file",
        token.to_str().expect("UTF-8 path"),
    ])
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("Bearer"), "the body is printed: {err}");
    assert!(!err.contains(wrong), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn nodes_command_exits_2_when_nothing_listens_or_nothing_is_configured() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = token_file(dir.path(), TOKEN);
    let token = token.to_str().expect("UTF-8 path");
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("address")
    };
    let admin = format!("http://{closed}");
    let (code, out, err) = officeswitch(&["nodes", "--admin", &admin, "--token-file", token]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("cannot reach the admin listener"), "{err}");
    assert!(err.contains(&closed.to_string()), "{err}");

    // A settings file without [admin].
    let (dir, _) = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[COOL_1.to_string()])
        .without_admin()
        .prepare()
        .await;
    let config = dir.path().join("officeswitch.toml");
    let config = config.to_str().expect("UTF-8 path");
    let (code, out, err) = officeswitch(&["--config", config, "nodes"]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("no [admin] section"), "{err}");

    // No settings file at all.
    let (code, _, err) =
        officeswitch(&["--config", "/nonexistent/officeswitch.toml", "nodes"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--admin and --token-file"), "{err}");

    // A token file too short to be used.
    let short = token_file(dir.path(), "short");
    let (code, _, err) = officeswitch(&[
        "nodes",
        "--admin",
        &admin,
        "--token-file",
        short.to_str().expect("UTF-8 path"),
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("shorter than 16"), "{err}");
}

#[tokio::test]
async fn nodes_command_finds_the_admin_listener_in_the_settings_file() {
    let (dir, prepared) = OfficeSwitch::builder()
        .pool(
            "collabora",
            "collabora",
            &[COOL_1.to_string(), COOL_2.to_string()],
        )
        .admin(TOKEN)
        .prepare()
        .await;
    let settings = prepared.config.admin.clone().expect("[admin] written");
    assert_eq!(
        admin::load_token(&settings.token_file).expect("token file"),
        TOKEN
    );
    let app = App::new(prepared).await;
    let listener = TcpListener::bind(settings.listen)
        .await
        .expect("bind admin");
    let server = AdminServer::on(listener, app.sticky().clone());
    let config = dir.path().join("officeswitch.toml");
    let config = config.to_str().expect("UTF-8 path");

    let (code, out, err) = officeswitch(&["--config", config, "nodes"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("http://10.0.0.2:9980/"), "{out}");
    let (code, out, err) = officeswitch(&["--config", config, "nodes", "drain", COOL_2]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(app.sticky().health().is_draining(0, 1));
    server.stop().await;
}

#[tokio::test]
async fn a_running_officeswitch_serves_the_admin_api_on_its_own_address() {
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[COOL_1.to_string()])
        .admin(TOKEN)
        .start()
        .await;
    let addr = os.admin_addr();
    let mut up = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        up,
        "nothing listens on [admin] listen {addr}: App::run serves no admin API"
    );
    let url = format!("http://{addr}/admin/nodes");
    let refused = client::send(Method::GET, &url, &[], b"").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let bearer = format!("Bearer {TOKEN}");
    let reply = client::send(Method::GET, &url, &[("authorization", &bearer)], b"").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let list: Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(list["nodes"][0]["node"], COOL_1);
    // The public listener does not serve it.
    let (status, _) = os.get("/admin/nodes").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    os.stop().await;
}
