//! The real-editor test kit works: real coolwsd nodes and real ONLYOFFICE stacks start,
//! answer as a pool behind officeswitch needs them to, and stop without leaving a process.
//!
//! Each test takes [`real_editor_lock`] first. Without a real editor (no build and the
//! build fails, or `OFFICESWITCH_NO_REAL_EDITORS=1`) each prints `skipped: no real ...`
//! and passes.

use std::time::Instant;

use http::{Method, StatusCode};

use crate::support::client;
use crate::support::real_collabora::RealCollabora;
use crate::support::real_editor::{alive, real_editor_lock};
use crate::support::real_onlyoffice::RealOnlyOffice;

/// The public `host:port` of the proxy in front, as a hoster writes it in `server_name`.
const PUBLIC: &str = "office.example.test:8443";

/// Every `urlsrc="..."` of a discovery document.
fn urlsrcs(discovery: &str) -> Vec<&str> {
    discovery
        .split("urlsrc=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect()
}

/// The `<proof-key .../>` element of a discovery document.
fn proof_key(discovery: &str) -> &str {
    let start = discovery.find("<proof-key").expect("a <proof-key> element");
    let len = discovery[start..].find("/>").expect("<proof-key .../>") + 2;
    &discovery[start..start + len]
}

/// GETs `<base>hosting/discovery` with `headers`; panics unless 200.
async fn discovery(base: &str, headers: &[(&str, &str)]) -> String {
    let url = format!("{base}hosting/discovery");
    let reply = client::send(Method::GET, &url, headers, b"").await;
    assert_eq!(reply.status, StatusCode::OK, "{url}: {}", reply.body);
    reply.body
}

#[tokio::test]
async fn collabora_nodes_build_urls_from_server_name_and_share_one_proof_key() {
    let _turn = real_editor_lock().await;
    let Ok(cool) = RealCollabora::start(2, PUBLIC, &[]).await else {
        return;
    };
    let mut keys = Vec::new();
    for (i, url) in cool.urls().iter().enumerate() {
        let doc = discovery(url, &[]).await;
        let srcs = urlsrcs(&doc);
        assert!(!srcs.is_empty(), "node {i}: no urlsrc in discovery");
        if let Some(name) = cool.server_name() {
            // The SERVER_NAME plumb: urls point at the proxy, not at the node's 127.0.0.1:port.
            // (cool.html under /browser/<hash>/, capabilities under /hosting/).
            let want = format!("http://{name}/");
            for src in &srcs {
                assert!(
                    src.starts_with(&want),
                    "node {i}: urlsrc {src}, want {want}..."
                );
            }
        }
        keys.push(proof_key(&doc).to_string());
    }
    assert!(keys[0].contains("value=\""), "{}", keys[0]);
    assert_eq!(
        keys[0], keys[1],
        "the two nodes publish different proof keys"
    );

    let pids = cool.pids();
    let started = Instant::now();
    cool.stop().await;
    let left = still_running(pids);
    assert!(
        left.is_empty(),
        "coolwsd processes left after stop: {left:?}"
    );
    eprintln!(
        "2 Collabora nodes stopped in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn a_test_that_panics_leaves_no_collabora_process() {
    let _turn = real_editor_lock().await;
    let Ok(cool) = RealCollabora::start(1, PUBLIC, &[]).await else {
        return;
    };
    if cool.is_external() {
        return; // not ours to stop
    }
    let pids = cool.pids();
    assert!(!pids.is_empty(), "no coolwsd process found");
    let test = tokio::spawn(async move {
        let _cool = cool;
        panic!("a failing assertion while the editor runs");
    });
    assert!(test.await.expect_err("the task panics").is_panic());
    let left = still_running(pids);
    assert!(
        left.is_empty(),
        "coolwsd processes left after a panic: {left:?}"
    );
}

#[tokio::test]
async fn collabora_converts_text_to_pdf() {
    let _turn = real_editor_lock().await;
    let Ok(cool) = RealCollabora::start(1, PUBLIC, &[]).await else {
        return;
    };
    // A POST from 127.0.0.1 passes net.post_allow's default list (127\.0\.0\.1 is in it);
    // coolwsd checks the peer and every X-Forwarded-For hop, so none is sent here.
    let boundary = "officeswitch-real-editors-boundary";
    let body = format!(
        "--{boundary}\r\n\
         Content-Disposition: form-data; name=\"data\"; filename=\"hello.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n\
         Hello from officeswitch's real-editor test kit.\r\n\
         --{boundary}--\r\n"
    );
    let url = format!("{}cool/convert-to/pdf", cool.urls()[0]);
    let started = Instant::now();
    let reply = client::send(
        Method::POST,
        &url,
        &[(
            "content-type",
            &format!("multipart/form-data; boundary={boundary}"),
        )],
        body.as_bytes(),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{url}: {}\n{}",
        reply.body,
        cool.log_tail(0, 30)
    );
    assert!(
        reply.body.starts_with("%PDF-"),
        "not a PDF: {:?}",
        &reply.body[..reply.body.len().min(200)]
    );
    eprintln!(
        "convert-to pdf took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn onlyoffice_stacks_publish_actions_share_one_proof_key_and_follow_forwarded_host() {
    let _turn = real_editor_lock().await;
    let Ok(oo) = RealOnlyOffice::start(2).await else {
        return;
    };
    let mut keys = Vec::new();
    for (i, url) in oo.urls().iter().enumerate() {
        let doc = discovery(url, &[]).await;
        assert!(
            doc.contains("<action "),
            "stack {i}: no <action in discovery"
        );
        keys.push(proof_key(&doc).to_string());

        // Behind a proxy: the urlsrc host is the proxy's, from X-Forwarded-Host/-Proto.
        let forwarded = discovery(
            url,
            &[("x-forwarded-host", PUBLIC), ("x-forwarded-proto", "https")],
        )
        .await;
        let srcs = urlsrcs(&forwarded);
        assert!(!srcs.is_empty(), "stack {i}: no urlsrc in discovery");
        let want = format!("https://{PUBLIC}/hosting/");
        for src in &srcs {
            assert!(
                src.starts_with(&want),
                "stack {i}: urlsrc {src}, want {want}..."
            );
        }
    }
    assert!(keys[0].contains("value=\""), "{}", keys[0]);
    assert_eq!(
        keys[0], keys[1],
        "the two stacks publish different proof keys"
    );

    let pids = oo.pids();
    let managed = !oo.is_external();
    assert!(!managed || !pids.is_empty(), "no recorded processes");
    let started = Instant::now();
    oo.stop().await;
    let left = still_running(pids);
    assert!(
        left.is_empty(),
        "ONLYOFFICE processes left after stop: {left:?}"
    );
    eprintln!(
        "2 ONLYOFFICE stacks stopped in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Those of `pids` that still run.
fn still_running(pids: Vec<u32>) -> Vec<u32> {
    pids.into_iter().filter(|p| alive(*p)).collect()
}

/// A Nextcloud on another machine (here `127.0.0.2`) converting through officeswitch:
/// officeswitch appends that address to `X-Forwarded-For`, and coolwsd's `net.post_allow`
/// checks the peer and every hop, so docs/operations.md tells hosters to list their Nextclouds'
/// addresses there. Without that entry the node refuses the conversion (so the test can
/// fail); with it, a preview (`png`) and an export (`pdf`) come back as those types.
#[tokio::test]
async fn nextclouds_conversions_through_officeswitch_pass_post_allow_as_the_readme_sets_it() {
    let _turn = real_editor_lock().await;
    let nextcloud: std::net::IpAddr = [127, 0, 0, 2].into();
    let convert = async |public: &str, format: &str| {
        let boundary = "officeswitch-real-editors-boundary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"n.txt\"\r\n\
             Content-Type: text/plain\r\n\r\nA preview, please.\r\n--{boundary}--\r\n"
        );
        client::send_bytes_from(
            Some(nextcloud),
            Method::POST,
            &format!("{public}/cool/convert-to/{format}"),
            &[(
                "content-type",
                &format!("multipart/form-data; boundary={boundary}"),
            )],
            body.as_bytes(),
        )
        .await
    };
    for allowed in [false, true] {
        let port = crate::support::real_editor::free_port().await;
        // coolwsd.xml's post_allow has entries 0-12; the last (10.x, Podman) is replaced.
        let extra: &[&str] = if allowed {
            &["--o:net.post_allow.host[12]=127\\.0\\.0\\.2"]
        } else {
            &[]
        };
        let Ok(cool) = RealCollabora::start(1, &format!("127.0.0.1:{port}"), extra).await else {
            return;
        };
        let os = crate::support::officeswitch::OfficeSwitch::builder()
            .port(port)
            .pool("collabora", "collabora", cool.urls())
            .spawn()
            .await;
        os.wait_ready().await;
        let public = format!("http://127.0.0.1:{port}");
        let (status, headers, body) = convert(&public, "png").await;
        if !allowed {
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "coolwsd admitted a conversion from an address post_allow does not list"
            );
            cool.stop().await;
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{}", cool.log_tail(0, 30));
        assert!(body.starts_with(b"\x89PNG\r\n"), "not a PNG: {headers:?}");
        let (status, _, body) = convert(&public, "pdf").await;
        assert_eq!(status, StatusCode::OK, "{}", cool.log_tail(0, 30));
        assert!(body.starts_with(b"%PDF-"), "not a PDF");
        let log = os.log();
        assert!(
            log.lines()
                .any(|l| l.contains("/cool/convert-to/pdf") && l.contains("200")),
            "no access log line for the conversion: {log}"
        );
        cool.stop().await;
    }
}
