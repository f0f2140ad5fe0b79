//! Health and readiness, the TLS listener, and the command line.

use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::certs::TestCerts;
use crate::support::editor::{StandInEditor, Suite};
use crate::support::officeswitch::OfficeSwitch;
use crate::support::{client, trace_init};

const BIN: &str = env!("CARGO_BIN_EXE_officeswitch");

/// GET `path` over TLS with `alpn`; returns the negotiated protocol and the status.
async fn tls_get(
    os: &OfficeSwitch,
    certs: &TestCerts,
    alpn: &[u8],
    path: &str,
) -> (Vec<u8>, StatusCode, String) {
    let config = certs.client_config(&[alpn]);
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(os.tls_addr.expect("tls listener"))
        .await
        .unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the test CA");
    let negotiated = tls
        .get_ref()
        .1
        .alpn_protocol()
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let request = Request::get(format!("https://localhost{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = if negotiated == b"h2" {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    };
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        negotiated,
        status,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn tls_listener_speaks_h2_and_http1_with_a_test_certificate() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    let certs = Arc::new(TestCerts::generate());
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .with_tls(certs.clone())
        .start()
        .await;
    let (alpn, status, _) = tls_get(&os, &certs, b"h2", "/healthz").await;
    assert_eq!((alpn.as_slice(), status), (&b"h2"[..], StatusCode::OK));
    let (alpn, status, body) = tls_get(&os, &certs, b"http/1.1", "/hosting/discovery").await;
    assert_eq!(
        (alpn.as_slice(), status),
        (&b"http/1.1"[..], StatusCode::OK)
    );
    assert!(body.contains("<wopi-discovery>"));
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_precise_statuses() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .start()
        .await;
    assert_eq!(os.get("/nothing-here").await.0, StatusCode::NOT_FOUND);
    let client: hyper_util::client::legacy::Client<_, Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let post = Request::post(format!("http://{}/hosting/discovery", os.addr))
        .body(Empty::new())
        .unwrap();
    let response = client.request(post).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
}

/// Copies the shipped `officeswitch.toml` and `rules/` into a temp dir, on free ports.
fn shipped_config_on_free_port() -> (tempfile::TempDir, std::path::PathBuf, u16) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/officeswitch.toml")).unwrap();
    let settings = shipped.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    // Editors that cannot be there: port 9 (discard) is never an editor (two addresses:
    // a node belongs to one pool).
    let settings = settings
        .replace("127.0.0.1:9980", "127.0.0.1:9")
        .replace("127.0.0.1:8000", "127.0.0.2:9");
    let path = dir.path().join("officeswitch.toml");
    std::fs::write(&path, settings).unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/rules/default.toml"),
        dir.path().join("rules/default.toml"),
    )
    .unwrap();
    (dir, path, port)
}

/// Kills the child on drop so a failing test leaves no process behind.
struct Child(Option<std::process::Child>);

impl Child {
    fn spawn(command: &mut Command) -> Child {
        Child(Some(command.spawn().expect("run officeswitch")))
    }

    /// Stops the process and returns what it wrote.
    fn kill_and_collect(mut self) -> std::process::Output {
        let mut child = self.0.take().expect("running");
        let _ = child.kill();
        child.wait_with_output().expect("output")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn default_configuration_starts_without_editors_and_waits_for_them() {
    let (dir, path, port) = shipped_config_on_free_port();
    let _child = Child::spawn(Command::new(BIN).arg("--config").arg(&path));
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = None;
    for _ in 0..100 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            drop(s);
            ready = Some(());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ready.expect("officeswitch listens");
    assert_eq!(
        client::get(&format!("{base}/healthz")).await.0,
        StatusCode::OK
    );
    let (status, body) = client::get(&format!("{base}/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // The public body says why in words that name no node (the detail is on the admin
    // listener).
    assert_eq!(
        body,
        "not ready: pool collabora has no discovery; pool onlyoffice has no discovery\n"
    );
    assert!(
        dir.path().join("state/keys/proof_key.pem").exists(),
        "first run generates the key"
    );
}

#[test]
fn check_config_accepts_the_shipped_configuration() {
    let (_dir, path, _) = shipped_config_on_free_port();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    assert!(
        !path
            .parent()
            .unwrap()
            .join("state/keys/proof_key.pem")
            .exists(),
        "check-config writes nothing"
    );
}

#[test]
fn check_config_names_file_line_and_key_of_each_error() {
    let (dir, path, _) = shipped_config_on_free_port();
    let settings = std::fs::read_to_string(&path).unwrap();
    // The line of the shipped file each broken value is on (1-based).
    let line_of = |needle: &str| {
        settings
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{needle} is in the shipped settings"))
    };
    let cases = [
        (
            settings.replace("kind = \"onlyoffice\"", "kind = \"msoffice\""),
            format!(
                "officeswitch.toml:{}: pool[1].kind: unknown suite `msoffice`",
                line_of("kind = \"onlyoffice\"")
            ),
        ),
        (
            settings.replace("format = \"text\"", "format = \"xml\""),
            format!(
                "officeswitch.toml:{}: log.format",
                line_of("format = \"text\"")
            ),
        ),
        (
            settings.replace(
                "public_url = \"http://127.0.0.1",
                "public_url = \"ftp://127.0.0.1",
            ),
            format!(
                "officeswitch.toml:{}: public_url",
                line_of("public_url = \"http://127.0.0.1")
            ),
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&expected),
            "expected {expected:?} in {stderr}"
        );
    }
    // A broken rules file is located too.
    std::fs::write(&path, &settings).unwrap();
    std::fs::write(
        dir.path().join("rules/default.toml"),
        "[extensions]\ndocx = \"wordperfect\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("default.toml:2: extensions.docx: no pool named `wordperfect`"),
        "{stderr}"
    );
    // The server refuses to start on the same error.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("wordperfect")
            || String::from_utf8_lossy(&out.stderr).contains("wordperfect")
    );
}

#[test]
fn keys_generate_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k/proof.pem");
    let run = |force: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["keys", "generate", "--out"]).arg(&key);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    assert!(run(false).status.success());
    let first = std::fs::read(&key).unwrap();
    let refused = run(false);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert_eq!(std::fs::read(&key).unwrap(), first);
    assert!(run(true).status.success());
    assert_ne!(std::fs::read(&key).unwrap(), first);
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_without_query_strings() {
    let (_dir, path, port) = shipped_config_on_free_port();
    let settings = std::fs::read_to_string(&path)
        .unwrap()
        .replace("format = \"text\"", "format = \"json\"");
    std::fs::write(&path, settings).unwrap();
    let child = Child::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .stdout(std::process::Stdio::piped()),
    );
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let secret = "access_token=SECRET-TOKEN";
    assert_eq!(
        client::get(&format!("{base}/nowhere?{secret}")).await.0,
        StatusCode::NOT_FOUND
    );
    let output = child.kill_and_collect();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let request = lines
        .iter()
        .find(|l| l["message"] == "request" && l["path"] == "/nowhere")
        .unwrap_or_else(|| panic!("no access log line in {stdout}"));
    assert_eq!(request["status"], 404);
    assert!(
        !stdout.contains("SECRET-TOKEN"),
        "a query string reached the log: {stdout}"
    );
}
