//! Opening documents and routing every request of a document to one node (issue 3).

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};

use http::{Method, StatusCode};

use crate::support::client::{self, Reply, encode, post_form};
use crate::support::editor::{EditorPage, StandInEditor, StandInOptions, Suite};
use crate::support::nextcloud::StandInNextcloud;
use crate::support::officeswitch::{Builder, OfficeSwitch, free_port};
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
const ODT: &str = "application/vnd.oasis.opendocument.text";

/// Two nodes per suite, one Nextcloud owned by organisation `acme`, officeswitch in front.
/// The Collabora nodes name officeswitch (`server_name` = its public host and port, as
/// docs/operations.md's "Setting up the editors" asks); the ONLYOFFICE nodes follow its
/// forwarding headers.
pub struct Lab {
    pub cool: Vec<StandInEditor>,
    pub oo: Vec<StandInEditor>,
    pub nc: StandInNextcloud,
    pub os: OfficeSwitch,
}

impl Lab {
    pub async fn start(configure: impl FnOnce(Builder, &StandInNextcloud) -> Builder) -> Lab {
        trace_init();
        let port = free_port().await;
        let named = || StandInOptions::default().server_name(format!("127.0.0.1:{port}"));
        let (c1, c2, o1, o2) = tokio::join!(
            StandInEditor::start_with(Suite::Collabora, named()),
            StandInEditor::start_with(Suite::Collabora, named()),
            StandInEditor::start(Suite::OnlyOffice),
            StandInEditor::start(Suite::OnlyOffice),
        );
        let nc = StandInNextcloud::start().await;
        let builder = OfficeSwitch::builder()
            .port(port)
            .pool("collabora", "collabora", &[c1.url(), c2.url()])
            .pool("onlyoffice", "onlyoffice", &[o1.url(), o2.url()])
            .org("acme", &[nc.origin()], "");
        let os = configure(builder, &nc).start().await;
        Lab {
            cool: vec![c1, c2],
            oo: vec![o1, o2],
            nc,
            os,
        }
    }

    /// The `urlsrc` richdocuments would use for `mime`.
    pub async fn urlsrc(&self, mime: &str) -> String {
        let (status, body) = self.os.get("/hosting/discovery").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let view = RichdocumentsView::parse(&body);
        view.url_src(mime)
            .unwrap_or_else(|| panic!("no {mime} app"))
            .1
            .to_string()
    }

    /// Opens `wopi_src` as richdocuments' frontend does: form POST to urlsrc + WOPISrc + lang.
    pub async fn open(&self, mime: &str, wopi_src: &str) -> Reply {
        let url = format!(
            "{}WOPISrc={}&lang=de",
            self.urlsrc(mime).await,
            encode(wopi_src)
        );
        post_form(&url, "access_token=tok-123&access_token_ttl=0").await
    }

    /// GET through officeswitch.
    pub async fn get(&self, path_and_query: &str) -> Reply {
        client::send(
            Method::GET,
            &format!("http://{}{path_and_query}", self.os.addr),
            &[],
            b"",
        )
        .await
    }

    /// Which of `editors` is `url`.
    pub fn is_one_of(url: Option<&str>, editors: &[StandInEditor]) -> bool {
        url.is_some_and(|u| editors.iter().any(|e| e.url() == u))
    }
}

#[tokio::test]
async fn docx_opens_on_onlyoffice_and_odt_on_collabora() {
    let lab = Lab::start(|b, _| b).await;
    let docx = lab.open(DOCX, &lab.nc.wopi_src("1_oc")).await;
    assert_eq!(docx.status, StatusCode::OK, "{}", docx.body);
    assert!(
        Lab::is_one_of(docx.node(), &lab.oo),
        "docx went to {:?}",
        docx.node()
    );
    let odt = lab.open(ODT, &lab.nc.wopi_src("2_oc")).await;
    assert_eq!(odt.status, StatusCode::OK, "{}", odt.body);
    assert!(
        Lab::is_one_of(odt.node(), &lab.cool),
        "odt went to {:?}",
        odt.node()
    );
    // The editor saw officeswitch's WOPISrc, never the host's, and was told to build URLs
    // on officeswitch.
    let node = lab
        .oo
        .iter()
        .find(|e| Some(e.url().as_str()) == docx.node())
        .unwrap();
    let open = node
        .requests()
        .into_iter()
        .find(|r| r.path_and_query.starts_with("/hosting/wopi/word/edit"))
        .expect("OnlyOffice got the open POST");
    assert!(
        open.path_and_query
            .contains(&encode(&format!("{}/wopi/files/", lab.os.public_url))),
        "{}",
        open.path_and_query
    );
    assert!(
        !open.path_and_query.contains(&encode(&lab.nc.origin())),
        "{}",
        open.path_and_query
    );
    assert!(
        open.path_and_query.contains("ui=de"),
        "placeholders filled: {}",
        open.path_and_query
    );
    let public_host = lab.os.public_url.trim_start_matches("http://");
    assert_eq!(open.headers["x-forwarded-host"], public_host);
    assert_eq!(open.headers["x-forwarded-proto"], "http");
    assert_eq!(open.headers["host"], node.addr().to_string());
    // The ONLYOFFICE page is relative, so it works at officeswitch's address; the Collabora
    // page builds its script and WebSocket URLs on officeswitch (its server_name), with
    // the WOPISrc of its own address, officeswitch's.
    let page = EditorPage::parse(&docx.body);
    assert!(page.asset_url.starts_with("../../../web-apps/"), "{page:?}");
    let page = EditorPage::parse(&odt.body);
    assert_eq!(page.asset_base, lab.os.public_url);
    let socket_prefix = format!("ws://{public_host}/cool/");
    assert!(
        page.websocket_url.starts_with(&socket_prefix),
        "{}",
        page.websocket_url
    );
    assert!(
        page.websocket_url.ends_with(&format!(
            "/ws?WOPISrc={}&compat=/ws",
            encode(&page.wopi_src)
        )),
        "{}",
        page.websocket_url
    );
}

#[tokio::test]
async fn the_collabora_page_admits_the_organisations_nextcloud_for_framing() {
    let lab = Lab::start(|b, _| b).await;
    let odt = lab.open(ODT, &lab.nc.wopi_src("3_oc")).await;
    assert_eq!(odt.status, StatusCode::OK, "{}", odt.body);
    // coolwsd frames its page on its own host and the WOPISrc's, officeswitch's; officeswitch
    // adds the organisation's Nextcloud origins to the CSP and to the page's list.
    let csp = odt
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let frame_ancestors = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("frame-ancestors"))
        .unwrap_or_else(|| panic!("no frame-ancestors: {csp}"));
    assert!(
        frame_ancestors.starts_with("frame-ancestors  127.0.0.1:*"),
        "{frame_ancestors}"
    );
    assert!(
        frame_ancestors
            .split_whitespace()
            .any(|s| s == lab.nc.origin()),
        "{frame_ancestors}"
    );
    let nc_host = lab.nc.origin().trim_start_matches("http://").to_string();
    assert!(
        odt.body.contains(&format!(
            "data-frame-ancestors = \"%20127.0.0.1:%2A%20{nc_host}\""
        )),
        "{}",
        odt.body
    );
}

#[tokio::test]
async fn collabora_below_a_service_root_with_hexified_urls_works_through_officeswitch() {
    trace_init();
    // As docs/operations.md's "Setting up the editors" allows: net.service_root=/collab (nodes
    // configured as http://node/collab/) and hexify_embedded_urls=true.
    let port = free_port().await;
    let options = || {
        StandInOptions::default()
            .server_name(format!("127.0.0.1:{port}"))
            .service_root("/collab")
            .hexify_embedded_urls()
    };
    let (c1, c2) = tokio::join!(
        StandInEditor::start_with(Suite::Collabora, options()),
        StandInEditor::start_with(Suite::Collabora, options()),
    );
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .port(port)
        .pool(
            "collabora",
            "collabora",
            &[format!("{}/", c1.base_url()), format!("{}/", c2.base_url())],
        )
        .org("acme", &[nc.origin()], "")
        .start()
        .await;
    let (status, xml) = os.get("/hosting/discovery").await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let urlsrc = RichdocumentsView::parse(&xml)
        .url_src(ODT)
        .expect("an odt urlsrc")
        .1
        .to_string();
    // Several documents over two nodes: each hexified socket must meet its page's node
    // (a route by anything but the WOPISrc inside the hex would miss some).
    let mut nodes_used = std::collections::HashSet::new();
    // Twelve: all on one node by chance is one run in 2,048.
    for i in 0..12 {
        let open = post_form(
            &format!(
                "{urlsrc}WOPISrc={}&lang=de",
                encode(&nc.wopi_src(&format!("{i}_oc")))
            ),
            "access_token=tok-123&access_token_ttl=0",
        )
        .await;
        assert_eq!(open.status, StatusCode::OK, "{}", open.body);
        let node = open.node().expect("a node answered").to_string();
        let page = EditorPage::parse(&open.body);
        assert_eq!(page.asset_base, format!("{}/collab", os.public_url));
        // The script, root-relative below the service root, through officeswitch.
        let script = client::send(
            Method::GET,
            &format!("{}{}", os.public_url, page.asset_url),
            &[],
            b"",
        )
        .await;
        assert_eq!(script.status, StatusCode::OK, "{}", page.asset_url);
        // The WebSocket the page opens: hexified, no query; WOPISrc only inside the hex. It
        // reaches the node of the page, through officeswitch.
        let prefix = format!("ws://127.0.0.1:{port}/collab/cool/0x");
        assert!(
            page.websocket_url.starts_with(&prefix) && !page.websocket_url.contains('?'),
            "{}",
            page.websocket_url
        );
        let (mut socket, response) = client::websocket(&page.websocket_url, &os.public_url)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", page.websocket_url));
        assert_eq!(
            response
                .headers()
                .get("x-standin-node")
                .and_then(|v| v.to_str().ok()),
            Some(node.as_str())
        );
        socket
            .send(tokio_tungstenite::tungstenite::Message::text("load"))
            .await
            .expect("send");
        let echo = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("echo in time");
        assert!(
            matches!(echo, Some(Ok(tokio_tungstenite::tungstenite::Message::Text(ref t))) if t.as_str() == "load"),
            "{echo:?}"
        );
        nodes_used.insert(node);
    }
    assert_eq!(nodes_used.len(), 2, "documents spread over both nodes");
}

#[tokio::test]
async fn an_organisation_override_sends_docx_to_collabora() {
    let other = StandInNextcloud::start().await;
    let origin = other.origin();
    let lab =
        Lab::start(move |b, _| b.org("beta", &[origin], "[extensions]\ndocx = \"collabora\"\n"))
            .await;
    let overridden = lab.open(DOCX, &other.wopi_src("7_oc")).await;
    assert_eq!(overridden.status, StatusCode::OK, "{}", overridden.body);
    assert!(
        Lab::is_one_of(overridden.node(), &lab.cool),
        "beta's docx went to {:?}",
        overridden.node()
    );
    let default = lab.open(DOCX, &lab.nc.wopi_src("7_oc")).await;
    assert!(
        Lab::is_one_of(default.node(), &lab.oo),
        "acme's docx went to {:?}",
        default.node()
    );
}

#[tokio::test]
async fn every_request_of_a_document_reaches_the_node_of_its_open() {
    let lab = Lab::start(|b, _| b).await;
    let mut nodes_used = std::collections::HashSet::new();
    for i in 0..12 {
        let src = lab.nc.wopi_src(&format!("{i}_oc"));
        let enc = encode(&src);
        // Collabora document.
        let open = lab.open(ODT, &src).await;
        let node = open.node().expect("node").to_string();
        nodes_used.insert(node.clone());
        // What the editor's browser traffic carries: officeswitch's WOPISrc.
        let own = EditorPage::parse(&open.body).wopi_src;
        assert!(own.starts_with(&lab.os.public_url), "{own}");
        let own = encode(&own);
        for path in [
            format!("/cool/{own}/download/x.pdf?WOPISrc={own}"),
            // Collabora's long-polling fallback for browsers without WebSockets.
            format!("/cool/{own}/ws/4f2a9c/open/0?WOPISrc={own}"),
            format!("/cool/{own}/ws/4f2a9c/write/1?WOPISrc={own}"),
            format!("/cool/clipboard?WOPISrc={own}&ServerId=x&ViewId=0&Tag=t"),
            format!("/browser/61cf2b4/cool.html?WOPISrc={}", encode(&own)),
            format!("/cool/{enc}/download/report.pdf?WOPISrc={enc}"),
            format!("/cool/clipboard?WOPISrc={enc}&ServerId=x&ViewId=0&Tag=t"),
            format!("/browser/61cf2b4/cool.html?WOPISrc={}", encode(&enc)),
            format!("/cool/{enc}/download/x?WOPISrc={src}"),
        ] {
            let reply = lab.get(&path).await;
            assert_eq!(reply.node(), Some(node.as_str()), "{path}: {}", reply.body);
        }
        // OnlyOffice document (another file: one document lives in one suite): its
        // assets carry WOPISrc too.
        let src = lab.nc.wopi_src(&format!("{i}_docx"));
        let enc = encode(&src);
        let open = lab.open(DOCX, &src).await;
        let node = open.node().expect("node").to_string();
        nodes_used.insert(node.clone());
        for path in [
            format!("/9.3.1-standin/web-apps/apps/api/documents/api.js?WOPISrc={enc}"),
            format!("/cache/files/data/{i}/output.docx?WOPISrc={enc}"),
        ] {
            let reply = lab.get(&path).await;
            assert_eq!(reply.node(), Some(node.as_str()), "{path}: {}", reply.body);
        }
    }
    assert_eq!(nodes_used.len(), 4, "documents spread over all four nodes");
}

#[tokio::test]
async fn an_unknown_wopisrc_origin_is_refused_and_never_contacted() {
    let lab = Lab::start(|b, _| b).await;
    let stranger = StandInNextcloud::start().await;
    let reply = lab.open(DOCX, &stranger.wopi_src("1_oc")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let ws_like = lab
        .get(&format!(
            "/cool/clipboard?WOPISrc={}",
            encode(&stranger.wopi_src("1"))
        ))
        .await;
    assert_eq!(ws_like.status, StatusCode::FORBIDDEN);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        stranger.requests().is_empty(),
        "the stranger host was contacted"
    );
    for editor in lab.cool.iter().chain(&lab.oo) {
        assert!(
            editor
                .requests()
                .iter()
                .all(|r| r.path_and_query.starts_with("/hosting/")
                    || r.path_and_query == "/healthcheck"),
            "an editor got a request for a refused document"
        );
    }
}

#[tokio::test]
async fn malformed_requests_get_precise_statuses() {
    let lab = Lab::start(|b, _| b).await;
    let urlsrc = lab.urlsrc(DOCX).await;
    let cases: Vec<(String, StatusCode)> = vec![
        (urlsrc.clone(), StatusCode::BAD_REQUEST),
        (
            format!("{urlsrc}WOPISrc=not%20a%20url"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{urlsrc}WOPISrc={}", encode("ftp://127.0.0.1/wopi/files/1")),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!(
                "{urlsrc}WOPISrc={}",
                encode(&lab.nc.wopi_src("1").replace("http://", "http://user:pw@"))
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!(
                "{urlsrc}WOPISrc={}",
                encode(
                    &lab.nc
                        .wopi_src("1")
                        .replace("127.0.0.1", "[::ffff:127.0.0.1]")
                )
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            format!(
                "{}/officeswitch/open/ext/xyz/edit?WOPISrc={}",
                lab.os.public_url,
                encode(&lab.nc.wopi_src("1"))
            ),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (url, expected) in cases {
        let reply = post_form(&url, "access_token=t").await;
        assert_eq!(reply.status, expected, "{url}: {}", reply.body);
    }
    let huge = "x".repeat(100 * 1024);
    let reply = client::send(
        Method::GET,
        &format!("http://{}/healthz", lab.os.addr),
        &[("x-big", &huge)],
        b"",
    )
    .await;
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(lab.nc.requests().is_empty());
}

#[tokio::test]
async fn stateless_convert_calls_go_to_collabora_and_spread() {
    let lab = Lab::start(|b, _| b).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let reply = client::send(
            Method::POST,
            &format!("http://{}/cool/convert-to/pdf", lab.os.addr),
            &[("content-type", "application/octet-stream")],
            b"document bytes",
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "document bytes");
        assert!(Lab::is_one_of(reply.node(), &lab.cool));
        seen.insert(reply.node().unwrap().to_string());
    }
    assert_eq!(
        seen.len(),
        2,
        "convert-to is spread over both Collabora nodes"
    );
}

#[tokio::test]
async fn node_failures_are_502_and_504_with_precise_logs() {
    trace_init();
    // A "node" that accepts connections and never answers, and one whose port is closed.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_url = format!("http://{}", hanging.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            open.push(socket);
        }
    });
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[hanging_url])
        .pool("onlyoffice", "onlyoffice", &[closed_url])
        .org("acme", &[nc.origin()], "")
        .section("[upstream]\nfirst_byte_timeout_secs = 1")
        .start()
        .await;
    let enc = encode(&nc.wopi_src("9_oc"));
    let get = |path: String| {
        let url = format!("http://{}{path}", os.addr);
        async move { client::send(Method::GET, &url, &[], b"").await }
    };
    let timeout = get(format!("/cool/clipboard?WOPISrc={enc}")).await;
    assert_eq!(
        timeout.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        timeout.body
    );
    let refused = get(format!("/cache/files/x?WOPISrc={enc}")).await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.body);
    // No discovery from either pool: an open cannot be routed yet.
    let open = post_form(
        &format!(
            "{}/officeswitch/open/ext/odt/edit?WOPISrc={enc}",
            os.public_url
        ),
        "access_token=t",
    )
    .await;
    assert_eq!(
        open.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        open.body
    );
    held.abort();
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    trace_init();
    // A node that streams a chunked body forever and reports when its socket is closed.
    let node = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node_url = format!("http://{}", node.local_addr().unwrap());
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<u64>();
    tokio::spawn(async move {
        let mut closed_tx = Some(closed_tx);
        // Bounded: discovery fetches plus the one streamed request.
        for _ in 0..20 {
            let Ok((mut socket, _)) = node.accept().await else {
                return;
            };
            let mut head = [0u8; 4096];
            let n = socket.read(&mut head).await.unwrap_or(0);
            if !head[..n].starts_with(b"GET /cache/") {
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
                continue;
            }
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            let chunk = format!("{:x}\r\n{}\r\n", 16384, "x".repeat(16384));
            let mut sent = 0u64;
            // Bounded: at most ~10 s of streaming.
            for _ in 0..1000 {
                if socket.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
                sent += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if let Some(tx) = closed_tx.take() {
                let _ = tx.send(sent);
            }
        }
    });
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("onlyoffice", "onlyoffice", &[node_url])
        .org("acme", &[nc.origin()], "")
        .start()
        .await;
    let mut client = tokio::net::TcpStream::connect(os.addr).await.unwrap();
    let request = format!(
        "GET /cache/files/big?WOPISrc={} HTTP/1.1\r\nhost: x\r\n\r\n",
        encode(&nc.wopi_src("1_oc"))
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let mut received = 0;
    while received < 100_000 {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream ended early");
        received += n;
    }
    drop(client);
    let sent = tokio::time::timeout(Duration::from_secs(5), closed_rx)
        .await
        .expect("the node's socket was closed after the client left")
        .unwrap();
    assert!(
        sent < 900,
        "the node kept streaming ({sent} chunks) after the client left"
    );
}
