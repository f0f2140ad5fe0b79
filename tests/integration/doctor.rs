//! `officeswitch doctor`, the real binary, against real loopback editors: a Collabora node
//! that announces its own address (coolwsd without `server_name`), an ONLYOFFICE pool whose
//! nodes publish different proof keys, and a healthy set-up.
//!
//! The healthy nodes are small loopback servers serving the discoveries the stand-in
//! editors would serve ([`collabora_discovery`], [`onlyoffice_discovery`], built from
//! `../shared/fixtures`) on officeswitch's `public_url`, as coolwsd with `server_name` and
//! DocService behind forwarding headers do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use officeswitch::wopi::proof_key::ProofKey;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::support::editor::{StandInEditor, Suite, collabora_discovery, onlyoffice_discovery};
use crate::support::officeswitch::OfficeSwitch;
use crate::support::trace_init;

/// A loopback server answering `GET /hosting/discovery` with a fixed document (and 404
/// otherwise); stops when dropped.
struct DiscoveryNode {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DiscoveryNode {
    async fn start(discovery: String) -> DiscoveryNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let body = Bytes::from(discovery);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let body = body.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let body = body.clone();
                        async move {
                            let response = if req.uri().path() == "/hosting/discovery" {
                                Response::new(Full::new(body))
                            } else {
                                let mut r = Response::new(Full::new(Bytes::new()));
                                *r.status_mut() = StatusCode::NOT_FOUND;
                                r
                            };
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        DiscoveryNode { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for DiscoveryNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `officeswitch doctor` (with `extra` arguments) on the settings in `dir`; returns
/// the exit code and standard output.
async fn doctor(dir: &Path, extra: &[&str]) -> (i32, String) {
    let config = dir.join("officeswitch.toml");
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_officeswitch"))
            .arg("doctor")
            .arg("--config")
            .arg(config)
            .args(extra)
            .env_remove("RUST_LOG")
            .output()
            .expect("run officeswitch doctor")
    })
    .await
    .expect("doctor task");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    (output.status.code().expect("exit code"), stdout)
}

/// A free loopback origin for `public_url` (nothing listens there; doctor does not call it).
async fn free_public_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    format!("http://{}", l.local_addr().expect("addr"))
}

async fn key() -> Arc<ProofKey> {
    Arc::new(
        tokio::task::spawn_blocking(ProofKey::generate)
            .await
            .expect("key task")
            .expect("key"),
    )
}

#[tokio::test]
async fn a_collabora_node_announcing_its_own_address_fails_naming_server_name() {
    trace_init();
    // The stand-in builds its urlsrc on its own address, as coolwsd without server_name
    // does behind a proxy that sends the node's own Host.
    let cool = StandInEditor::start(Suite::Collabora).await;
    let (dir, _) = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .org("acme", &["https://cloud.acme.test".into()], "")
        .prepare()
        .await;
    let (code, out) = doctor(dir.path(), &[]).await;
    assert_eq!(code, 1, "{out}");
    let public_host = std::fs::read_to_string(dir.path().join("officeswitch.toml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("public_url = \"http://"))
        .map(|h| h.trim_end_matches('"').to_string())
        .expect("public_url");
    let fail = out
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains("server_name"))
        .unwrap_or_else(|| panic!("no FAIL line naming server_name:\n{out}"));
    assert!(
        fail.starts_with(&format!("FAIL pool collabora node {}/", cool.url())),
        "{fail}"
    );
    assert!(
        fail.contains(&format!("announces {}", cool.url())),
        "{fail}"
    );
    assert!(
        fail.contains(&format!("server_name to {public_host}")),
        "{fail}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok   pool collabora node") && l.contains("discovery parsed")),
        "{out}"
    );
    assert!(
        out.contains("todo pool collabora: on every node net.post_allow"),
        "{out}"
    );
    assert!(out.lines().last().unwrap().starts_with("doctor: "), "{out}");
}

#[tokio::test]
async fn onlyoffice_nodes_with_different_proof_keys_fail() {
    trace_init();
    let public_url = free_public_url().await;
    let (a, b) = tokio::join!(key(), key());
    let one = DiscoveryNode::start(onlyoffice_discovery(&public_url, a.public())).await;
    let two = DiscoveryNode::start(onlyoffice_discovery(&public_url, b.public())).await;
    let (dir, _) = OfficeSwitch::builder()
        .public_url(&public_url)
        .pool("onlyoffice", "onlyoffice", &[one.url(), two.url()])
        .org("acme", &["https://cloud.acme.test".into()], "")
        .prepare()
        .await;
    let (code, out) = doctor(dir.path(), &[]).await;
    assert_eq!(code, 1, "{out}");
    let fail: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fail.len(), 1, "{out}");
    assert!(
        fail[0].starts_with("FAIL pool onlyoffice: nodes publish different proof keys"),
        "{}",
        fail[0]
    );
    assert!(fail[0].contains("wopi.privateKey"), "{}", fail[0]);
    for node in [&one, &two] {
        assert!(
            out.contains(&format!(
                "ok   pool onlyoffice node {}/: WOPI enabled",
                node.url()
            )),
            "{out}"
        );
    }
    let (code, json) = doctor(dir.path(), &["--json"]).await;
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(json["fail"], 1);
    assert!(
        json["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["check"] == "proof_keys" && v["level"] == "fail")
    );
}

#[tokio::test]
async fn a_healthy_set_up_exits_zero() {
    trace_init();
    let public_url = free_public_url().await;
    let (cool_key, oo_key) = tokio::join!(key(), key());
    let (c1, c2, o1, o2) = tokio::join!(
        DiscoveryNode::start(collabora_discovery(&public_url, cool_key.public())),
        DiscoveryNode::start(collabora_discovery(&public_url, cool_key.public())),
        DiscoveryNode::start(onlyoffice_discovery(&public_url, oo_key.public())),
        DiscoveryNode::start(onlyoffice_discovery(&public_url, oo_key.public())),
    );
    let (dir, _) = OfficeSwitch::builder()
        .public_url(&public_url)
        .pool("collabora", "collabora", &[c1.url(), c2.url()])
        .pool("onlyoffice", "onlyoffice", &[o1.url(), o2.url()])
        .org("acme", &["http://127.0.0.1:8000".into()], "")
        .prepare()
        .await;
    let (code, out) = doctor(dir.path(), &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.lines().any(|l| l.starts_with("FAIL")), "{out}");
    assert!(
        out.contains("doctor: 21 ok, 0 warn, 0 FAIL, 4 todo"),
        "{out}"
    );
    for pool in ["collabora", "onlyoffice"] {
        assert!(
            out.contains(&format!(
                "ok   pool {pool}: all 2 nodes that answered publish the same proof key"
            )),
            "{out}"
        );
    }
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("announces officeswitch's public origin"))
            .count(),
        4,
        "{out}"
    );
    assert!(
        out.contains(
            "ok   pool collabora: officeswitch adds each organisation's Nextcloud origins"
        ),
        "{out}"
    );
    assert!(out.contains("acme (http://127.0.0.1:8000)"), "{out}");
    assert!(
        out.contains(
            "todo nextcloud acme: occ config:app:set richdocuments wopi_allowlist --value 127.0.0.1"
        ),
        "{out}"
    );
    assert!(
        !out.contains("token"),
        "no token or secret is printed:\n{out}"
    );
}
