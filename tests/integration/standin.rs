//! Checks of the stand-ins themselves, so that a failing proxy test can be trusted to be
//! about the proxy: the documents the editors serve parse and have the shape Nextcloud
//! relies on, every fault mode does what it says, stop/restart behave like a crashed and
//! restarted editor, the editor URL space (pages calling CheckFileInfo, WebSockets,
//! streaming convert and download, the clipboard's ServerId check) speaks the real wire
//! protocol, the stand-in Nextcloud answers WOPI as richdocuments does (proof checks, 423
//! lock conflicts, the 1010 timestamp conflict, broken uploads never stored), and the
//! editors' WOPI client reaches it end to end. Plus a round trip through the test
//! certificates.

use std::error::Error;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use officeswitch::wopi::proof_key::{ProofKey, PublicProofKey};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::certs::TestCerts;
use crate::support::client::websocket;
use crate::support::editor::{
    COLLABORA_VERSION_HASH, CallOptions, CheckFileInfoOutcome, EditorPage, EditorSession, Fault,
    NO_ANSWER, NODE_HEADER, ONLYOFFICE_EDITORS, ONLYOFFICE_VERSION, PutBody, Signing,
    StandInEditor, StandInOptions, Suite, VERSION_HEADER, WOPI_CALL_TIMEOUT, WopiCall,
    encode_uri_component, onlyoffice_discovery, pattern_stream, proof_message, utf7_encode,
};
use crate::support::nextcloud::{
    ProofCheck, ProofMatch, PutFault, StandInNextcloud, WopiOperation, WopiRequest,
};
use crate::support::{fixture, trace_init};

type BoxError = Box<dyn Error + Send + Sync>;
type HttpClient = Client<HttpConnector, Empty<Bytes>>;
/// Request bodies for uploads: whole or streamed.
type TestBody = BoxBody<Bytes, BoxError>;
type BodyClient = Client<HttpConnector, TestBody>;

/// The docx MIME type: the app richdocuments requires and takes the editor origin from.
const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// One key for most tests: RSA key generation is the slowest part of starting a stand-in.
fn shared_key() -> Arc<ProofKey> {
    static KEY: OnceLock<Arc<ProofKey>> = OnceLock::new();
    Arc::clone(KEY.get_or_init(|| Arc::new(ProofKey::generate().expect("generate a proof key"))))
}

/// A plain HTTP/1.1 client with its own connection pool.
fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A whole response.
struct Fetched {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Fetched {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(client: &HttpClient, req: Request<Empty<Bytes>>) -> Result<Fetched, BoxError> {
    let (parts, body) = client.request(req).await?.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Fetched {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

async fn get(client: &HttpClient, url: &str) -> Result<Fetched, BoxError> {
    send(client, Request::get(url).body(Empty::new())?).await
}

/// An element's attributes in document order, unescaped.
type Attrs = Vec<(String, String)>;

fn attr<'a>(attrs: &'a Attrs, key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn keys(attrs: &Attrs) -> Vec<&str> {
    attrs.iter().map(|(k, _)| k.as_str()).collect()
}

#[derive(Debug)]
struct App {
    attrs: Attrs,
    actions: Vec<Attrs>,
}

impl App {
    fn name(&self) -> &str {
        attr(&self.attrs, "name").unwrap_or("")
    }
}

#[derive(Debug)]
struct Discovery {
    root: String,
    apps: Vec<App>,
    proof_key: Option<Attrs>,
}

impl Discovery {
    fn app(&self, name: &str) -> Option<&App> {
        self.apps.iter().find(|app| app.name() == name)
    }
}

/// Parses a discovery document strictly enough to tell broken from whole: every element
/// must be closed and end tags must match.
fn parse_discovery(xml: &str) -> Result<Discovery, String> {
    use quick_xml::events::{BytesStart, Event};

    fn attributes(element: &BytesStart<'_>) -> Result<Attrs, String> {
        element
            .attributes()
            .map(|attribute| {
                let attribute = attribute.map_err(|e| e.to_string())?;
                let value = attribute
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|e| e.to_string())?;
                Ok((text(attribute.key.as_ref()), value.into_owned()))
            })
            .collect()
    }

    /// Names and keys are `&str` in quick-xml 0.42.
    fn text(name: &str) -> String {
        name.to_owned()
    }

    let mut reader = quick_xml::Reader::from_str(xml);
    let mut depth = 0_usize;
    let mut discovery = Discovery {
        root: String::new(),
        apps: Vec::new(),
        proof_key: None,
    };
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        let (element, opens) = match &event {
            Event::Start(element) => (element, true),
            Event::Empty(element) => (element, false),
            Event::End(_) => {
                depth = depth.checked_sub(1).ok_or("unbalanced end tag")?;
                continue;
            }
            Event::Eof if depth == 0 && !discovery.root.is_empty() => return Ok(discovery),
            Event::Eof if depth == 0 => return Err("no root element".to_owned()),
            Event::Eof => return Err(format!("{depth} element(s) left open at end of input")),
            _ => continue,
        };
        let name = text(element.name().as_ref());
        if discovery.root.is_empty() {
            discovery.root.clone_from(&name);
        }
        match name.as_str() {
            "app" => discovery.apps.push(App {
                attrs: attributes(element)?,
                actions: Vec::new(),
            }),
            "action" => discovery
                .apps
                .last_mut()
                .ok_or("action outside an app")?
                .actions
                .push(attributes(element)?),
            "proof-key" => discovery.proof_key = Some(attributes(element)?),
            _ => {}
        }
        if opens {
            depth += 1;
        }
    }
}

/// Checks what both suites must publish for richdocuments: a docx MIME app whose first
/// action is `edit`, a `Capabilities` app, all URLs on the stand-in, and its proof key
/// (old = current).
fn assert_discovery_basics(editor: &StandInEditor, discovery: &Discovery) {
    assert_eq!(discovery.root, "wopi-discovery");
    let docx = discovery.app(DOCX).expect("docx MIME app");
    assert_eq!(attr(&docx.actions[0], "name"), Some("edit"), "{docx:?}");
    let capabilities = discovery.app("Capabilities").expect("Capabilities app");
    assert_eq!(
        attr(&capabilities.actions[0], "urlsrc"),
        Some(format!("{}/hosting/capabilities", editor.url()).as_str())
    );
    for app in &discovery.apps {
        for action in &app.actions {
            let urlsrc = attr(action, "urlsrc").expect("every action has urlsrc");
            assert!(
                urlsrc.starts_with(&format!("{}/", editor.url())),
                "{urlsrc}"
            );
        }
    }
    let key: &PublicProofKey = editor.public_key();
    let proof = discovery.proof_key.as_ref().expect("proof-key element");
    for (name, expected) in [
        ("value", key.capi_blob_b64()),
        ("modulus", key.modulus_b64()),
        ("exponent", key.exponent_b64()),
        ("oldvalue", key.capi_blob_b64()),
        ("oldmodulus", key.modulus_b64()),
        ("oldexponent", key.exponent_b64()),
    ] {
        assert_eq!(
            attr(proof, name),
            Some(expected.as_str()),
            "proof-key {name}"
        );
    }
}

#[tokio::test]
async fn collabora_serves_discovery_capabilities_and_health() {
    trace_init();
    let editor = StandInEditor::start_with_key(Suite::Collabora, shared_key()).await;
    assert_eq!(editor.suite(), Suite::Collabora);
    assert_eq!(
        editor.url(),
        format!("http://127.0.0.1:{}", editor.addr().port())
    );
    let client = client();

    let discovery = get(&client, &format!("{}/hosting/discovery", editor.url()))
        .await
        .unwrap();
    assert_eq!(discovery.status, StatusCode::OK);
    assert_eq!(discovery.content_type(), "text/xml");
    assert!(!discovery.text().contains("collabora.test"));
    assert!(
        discovery
            .text()
            .trim_end()
            .ends_with("/>\n</wopi-discovery>")
    );
    let parsed = parse_discovery(discovery.text()).unwrap();
    assert_discovery_basics(&editor, &parsed);
    // The fixture's 175 actions, all kept.
    assert_eq!(
        parsed
            .apps
            .iter()
            .map(|app| app.actions.len())
            .sum::<usize>(),
        175
    );
    let proof = parsed.proof_key.as_ref().unwrap();
    assert_eq!(
        keys(proof),
        [
            "exponent",
            "modulus",
            "oldexponent",
            "oldmodulus",
            "oldvalue",
            "value"
        ],
        "Poco writes attributes alphabetically"
    );

    let capabilities = get(&client, &format!("{}/hosting/capabilities", editor.url()))
        .await
        .unwrap();
    assert_eq!(capabilities.status, StatusCode::OK);
    assert_eq!(capabilities.content_type(), "application/json");
    assert!(
        capabilities
            .text()
            .starts_with(r#"{"convert-to":{"available":true,"endpoint":"/cool/convert-to"},"hasMobileSupport":true,"#),
        "{}",
        capabilities.text()
    );
    let json: serde_json::Value = serde_json::from_slice(&capabilities.body).unwrap();
    assert_eq!(json["productVersion"], "23.05.9.1");
    assert_eq!(json["productName"], "Collabora Online Development Edition");
    let server_id = json["serverId"].as_str().unwrap();
    assert_eq!(server_id.len(), 8, "{server_id}");
    assert!(
        server_id.chars().all(|c| c.is_ascii_hexdigit()),
        "{server_id}"
    );

    let health = get(&client, &format!("{}/", editor.url())).await.unwrap();
    assert_eq!(
        (health.status, health.text(), health.content_type()),
        (StatusCode::OK, "OK", "text/plain")
    );
    editor.stop().await;
}

#[tokio::test]
async fn onlyoffice_serves_discovery_capabilities_and_health() {
    trace_init();
    let editor = StandInEditor::start_with_key(Suite::OnlyOffice, shared_key()).await;
    let client = client();

    let discovery = get(&client, &format!("{}/hosting/discovery", editor.url()))
        .await
        .unwrap();
    assert_eq!(discovery.status, StatusCode::OK);
    assert!(discovery.content_type().starts_with("text/xml"));
    assert!(
        discovery
            .text()
            .starts_with(r#"<?xml version="1.0" encoding="utf-8"?><wopi-discovery><net-zone name="external-http"><app name="Word" favIconUrl=""#)
    );
    assert!(
        !discovery.text().contains("?&amp;&lt;"),
        "no pre-2023 extra '&'"
    );
    let parsed = parse_discovery(discovery.text()).unwrap();
    assert_discovery_basics(&editor, &parsed);

    let names: Vec<&str> = parsed.apps.iter().take(4).map(App::name).collect();
    assert_eq!(names, ["Word", "Excel", "PowerPoint", "Pdf"]);
    let proof = parsed.proof_key.as_ref().unwrap();
    assert_eq!(
        keys(proof),
        [
            "oldvalue",
            "oldmodulus",
            "oldexponent",
            "value",
            "modulus",
            "exponent"
        ]
    );
    for app in &parsed.apps {
        for action in &app.actions {
            let order = keys(action);
            if app.name() == "Capabilities" {
                assert_eq!(order, ["ext", "name", "requires", "urlsrc"]);
                continue;
            }
            let documented = ["name", "ext", "default", "targetext", "requires", "urlsrc"];
            let positions: Vec<usize> = order
                .iter()
                .map(|key| {
                    documented
                        .iter()
                        .position(|d| d == key)
                        .expect("known attribute")
                })
                .collect();
            assert!(positions.is_sorted(), "{} {action:?}", app.name());
            assert!(order.starts_with(&["name", "ext"]) && order.ends_with(&["urlsrc"]));
            if !["Word", "Excel", "PowerPoint", "Pdf"].contains(&app.name()) {
                assert_eq!(attr(action, "ext"), Some(""), "MIME apps have ext=\"\"");
            }
        }
    }
    // An editable MIME type: edit first, then mobileEdit, then editnew (docx has a template).
    let docx = parsed.app(DOCX).unwrap();
    let docx_actions: Vec<_> = docx
        .actions
        .iter()
        .map(|a| attr(a, "name").unwrap())
        .collect();
    assert_eq!(docx_actions, ["edit", "mobileEdit", "editnew"]);
    assert!(
        attr(&docx.actions[0], "urlsrc")
            .unwrap()
            .contains("/hosting/wopi/word/edit?<rs=DC_LLCC&>")
    );
    // A view-only MIME type: view first, and a convert action to docx.
    let doc = parsed.app("application/msword").unwrap();
    let doc_actions: Vec<_> = doc
        .actions
        .iter()
        .map(|a| attr(a, "name").unwrap())
        .collect();
    assert_eq!(doc_actions, ["view", "embedview", "mobileView", "convert"]);
    assert_eq!(attr(&doc.actions[3], "targetext"), Some("docx"));
    // PDF is a form: edit, formsubmit, mobileEdit.
    let pdf = parsed.app("application/pdf").unwrap();
    let pdf_actions: Vec<_> = pdf
        .actions
        .iter()
        .map(|a| attr(a, "name").unwrap())
        .collect();
    assert_eq!(pdf_actions, ["edit", "formsubmit", "mobileEdit"]);
    // The Word app's docx actions in upstream order.
    let word = parsed.app("Word").unwrap();
    let word_docx: Vec<_> = word
        .actions
        .iter()
        .filter(|a| attr(a, "ext") == Some("docx"))
        .map(|a| attr(a, "name").unwrap())
        .collect();
    assert_eq!(
        word_docx,
        [
            "view",
            "embedview",
            "mobileView",
            "edit",
            "mobileEdit",
            "editnew"
        ]
    );

    let capabilities = get(&client, &format!("{}/hosting/capabilities", editor.url()))
        .await
        .unwrap();
    assert_eq!(capabilities.status, StatusCode::OK);
    assert!(capabilities.content_type().starts_with("application/json"));
    assert_eq!(
        capabilities.text(),
        format!(
            r#"{{"convert-to":{{"available":true,"endpoint":"/lool/convert-to"}},"hasMobileSupport":true,"hasProxyPrefix":false,"hasTemplateSaveAs":false,"hasTemplateSource":true,"productVersion":"{ONLYOFFICE_VERSION}"}}"#
        )
    );

    let health = get(&client, &format!("{}/healthcheck", editor.url()))
        .await
        .unwrap();
    assert_eq!((health.status, health.text()), (StatusCode::OK, "true"));
    let not_coolwsd = get(&client, &format!("{}/", editor.url())).await.unwrap();
    assert_eq!(not_coolwsd.status, StatusCode::NOT_FOUND);
    editor.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_requests_are_recorded_in_order() {
    trace_init();
    let editor = StandInEditor::start_with_key(Suite::Collabora, shared_key()).await;
    let client = client();
    let missing = get(&client, &format!("{}/nothing/here?a=b&c", editor.url()))
        .await
        .unwrap();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let post = Request::post(format!("{}/hosting/discovery", editor.url()))
        .header("x-officeswitch-test", "marker")
        .body(Empty::new())
        .unwrap();
    assert_eq!(
        send(&client, post).await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    get(&client, &format!("{}/hosting/capabilities", editor.url()))
        .await
        .unwrap();

    let seen: Vec<(String, String)> = editor
        .requests()
        .iter()
        .map(|r| (r.method.to_string(), r.path_and_query.clone()))
        .collect();
    let expected = [
        ("GET", "/nothing/here?a=b&c"),
        ("POST", "/hosting/discovery"),
        ("GET", "/hosting/capabilities"),
    ]
    .map(|(m, p)| (m.to_owned(), p.to_owned()));
    assert_eq!(seen, expected);
    assert_eq!(
        editor.requests()[1].headers["x-officeswitch-test"],
        "marker"
    );
    editor.stop().await;
}

#[tokio::test]
async fn every_fault_mode_behaves_as_specified() {
    trace_init();
    for suite in [Suite::Collabora, Suite::OnlyOffice] {
        let editor = StandInEditor::start_with_key(suite, shared_key()).await;
        let client = client();
        let discovery_url = format!("{}/hosting/discovery", editor.url());
        let capabilities_url = format!("{}/hosting/capabilities", editor.url());
        let documents = [
            (discovery_url.as_str(), editor.discovery_xml().to_owned()),
            (
                capabilities_url.as_str(),
                editor.capabilities_json().to_owned(),
            ),
        ];

        for (url, normal) in &documents {
            let is_xml = url.ends_with("discovery");
            editor.set_fault(Fault::BrokenXml);
            let broken = get(&client, url).await.unwrap();
            assert_eq!(broken.status, StatusCode::OK);
            assert!(!broken.body.is_empty() && broken.body.len() < normal.len());
            assert!(
                normal.starts_with(broken.text()),
                "a prefix of the real document"
            );
            if is_xml {
                assert!(
                    parse_discovery(broken.text()).is_err(),
                    "{suite:?} broken XML parsed"
                );
            } else {
                assert!(serde_json::from_slice::<serde_json::Value>(&broken.body).is_err());
            }

            editor.set_fault(Fault::Html);
            let html = get(&client, url).await.unwrap();
            assert_eq!(
                (html.status, html.content_type()),
                (StatusCode::OK, "text/html")
            );
            assert!(html.text().contains("<h1>502 Bad Gateway</h1>"));
            assert_eq!(parse_discovery(html.text()).unwrap().root, "html");

            editor.set_fault(Fault::EmptyBody);
            let empty = get(&client, url).await.unwrap();
            assert_eq!(empty.status, StatusCode::OK);
            assert!(empty.body.is_empty());

            for code in [404, 500, 503] {
                editor.set_fault(Fault::Status(code));
                let failed = get(&client, url).await.unwrap();
                assert_eq!(failed.status.as_u16(), code);
                assert!(!failed.body.is_empty());
            }

            for size in [0, 7, 75, 76, 1_000, 200_003] {
                editor.set_fault(Fault::Huge(size));
                let huge = get(&client, url).await.unwrap();
                assert_eq!(
                    (huge.status, huge.content_type()),
                    (StatusCode::OK, "text/xml")
                );
                assert!(
                    huge.headers.get(header::CONTENT_LENGTH).is_none(),
                    "streamed, not sized"
                );
                assert_eq!(huge.body.len(), size);
                if size > 100 {
                    let parsed = parse_discovery(huge.text()).unwrap();
                    assert_eq!(
                        (parsed.root.as_str(), parsed.apps.len()),
                        ("wopi-discovery", 0)
                    );
                    assert!(huge.text().contains("<!-- padding -->"));
                }
            }

            editor.set_fault(Fault::Hang);
            let hung = tokio::time::timeout(Duration::from_millis(300), get(&client, url)).await;
            assert!(hung.is_err(), "{suite:?} {url}: Hang must not answer");

            editor.set_fault(Fault::None);
            let healed = get(&client, url).await.unwrap();
            assert_eq!(
                (healed.status, healed.text()),
                (StatusCode::OK, normal.as_str())
            );
        }

        // Faults never touch other routes.
        editor.set_fault(Fault::Status(500));
        let health_path = if suite == Suite::Collabora {
            "/"
        } else {
            "/healthcheck"
        };
        let health = get(&client, &format!("{}{health_path}", editor.url()))
            .await
            .unwrap();
        assert_eq!(health.status, StatusCode::OK);
        editor.stop().await;
    }
}

#[tokio::test]
async fn huge_streams_without_buffering_the_whole_body() {
    trace_init();
    let editor = StandInEditor::start_with_key(Suite::OnlyOffice, shared_key()).await;
    // A terabyte: only a lazy stream can serve this.
    editor.set_fault(Fault::Huge(1 << 40));
    let response = client()
        .request(
            Request::get(format!("{}/hosting/discovery", editor.url()))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut received = Vec::new();
    while received.len() < 4 << 20 {
        let frame = body.frame().await.expect("more frames").unwrap();
        received.extend_from_slice(frame.data_ref().expect("data frame"));
    }
    let text = String::from_utf8(received).unwrap();
    assert!(text.starts_with(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<wopi-discovery>\n<!-- padding -->\n"
    ));
    drop(body);
    editor.stop().await;
}

#[tokio::test]
async fn stop_fails_connections_and_start_on_revives_the_port() {
    trace_init();
    let key = shared_key();
    let editor = StandInEditor::start_with_key(Suite::Collabora, Arc::clone(&key)).await;
    let addr = editor.addr();

    // A kept-alive connection that has already been served once.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: editor\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\nOK") {
        let mut buf = [0_u8; 1024];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed early: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
    }

    // A request in flight that the editor never answers.
    editor.set_fault(Fault::Hang);
    let url = format!("{}/hosting/discovery", editor.url());
    let in_flight = tokio::spawn(async move { get(&client(), &url).await.map(|f| f.status) });
    while !editor
        .requests()
        .iter()
        .any(|r| r.path_and_query == "/hosting/discovery")
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    editor.stop().await;

    let outcome = tokio::time::timeout(Duration::from_secs(2), in_flight)
        .await
        .expect("stop must end the hung request, not leave it waiting")
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    let mut buf = [0_u8; 16];
    let read = idle.read(&mut buf).await;
    assert_eq!(
        read.as_ref().map_err(std::io::Error::kind).err(),
        Some(std::io::ErrorKind::ConnectionReset),
        "idle connection: {read:?}"
    );
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert_eq!(
        refused.as_ref().map_err(std::io::Error::kind).err(),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    assert!(get(&client(), &format!("http://{addr}/")).await.is_err());

    let revived = StandInEditor::start_on_with_key(Suite::Collabora, addr, key)
        .await
        .unwrap();
    assert_eq!(revived.addr(), addr);
    let health = get(&client(), &format!("{}/", revived.url()))
        .await
        .unwrap();
    assert_eq!((health.status, health.text()), (StatusCode::OK, "OK"));
    assert_eq!(
        revived.requests().len(),
        1,
        "a new editor starts with an empty log"
    );
    revived.stop().await;

    // And once more with a fresh key, through the plain constructor.
    let again = StandInEditor::start_on(Suite::OnlyOffice, addr)
        .await
        .unwrap();
    assert_eq!(
        get(&client(), &format!("{}/healthcheck", again.url()))
            .await
            .unwrap()
            .text(),
        "true"
    );
    again.stop().await;
}

#[tokio::test]
async fn editors_generate_or_share_proof_keys() {
    trace_init();
    let own_a = StandInEditor::start(Suite::Collabora).await;
    let own_b = StandInEditor::start(Suite::OnlyOffice).await;
    assert_ne!(
        own_a.public_key().modulus_b64(),
        own_b.public_key().modulus_b64()
    );
    let key = shared_key();
    let shared_a = StandInEditor::start_with_key(Suite::Collabora, Arc::clone(&key)).await;
    let shared_b = StandInEditor::start_with_key(Suite::OnlyOffice, key).await;
    assert_eq!(
        shared_a.public_key().modulus_b64(),
        shared_b.public_key().modulus_b64()
    );
    assert_ne!(shared_a.addr(), shared_b.addr());
    for editor in [own_a, own_b, shared_a, shared_b] {
        editor.stop().await;
    }
}

/// Strips scheme and host, and the pre-2023 extra `&` after `?`, leaving the path and
/// query shape that must match between OnlyOffice versions and hosts.
fn url_shape(urlsrc: &str) -> String {
    let after_scheme = urlsrc.split_once("://").map_or(urlsrc, |(_, rest)| rest);
    let path = after_scheme
        .find('/')
        .map_or("", |slash| &after_scheme[slash..]);
    path.replacen("?&", "?", 1)
}

/// The generated OnlyOffice discovery against the real (pre-2023, shortened) excerpt: every
/// action of its `Word` and `Excel` apps that the current version still emits for that
/// extension must be there, with the same attributes in the same order and the same URL
/// shape; likewise its MIME-type app and the proof-key attribute order.
#[test]
fn onlyoffice_discovery_matches_the_ocis_excerpt() {
    let excerpt_xml =
        std::fs::read_to_string(fixture("onlyoffice-discovery-reduced-ocis.xml")).unwrap();
    let excerpt = parse_discovery(&excerpt_xml).unwrap();
    let generated_xml = onlyoffice_discovery("http://127.0.0.1:9", shared_key().public());
    let generated = parse_discovery(&generated_xml).unwrap();

    let view_only = ["view", "embedview", "mobileView", "convert"];
    let editable = [
        "view",
        "embedview",
        "mobileView",
        "edit",
        "formsubmit",
        "mobileEdit",
        "editnew",
    ];
    let mut compared = 0;
    for app_name in ["Word", "Excel"] {
        let ours = generated.app(app_name).unwrap();
        let theirs = excerpt.app(app_name).unwrap();
        assert_eq!(keys(&ours.attrs), keys(&theirs.attrs));
        assert_eq!(
            url_shape(attr(&ours.attrs, "favIconUrl").unwrap()),
            url_shape(attr(&theirs.attrs, "favIconUrl").unwrap())
        );
        let editor = ONLYOFFICE_EDITORS
            .iter()
            .find(|e| e.app == app_name)
            .unwrap();
        for action in &theirs.actions {
            let (name, ext) = (attr(action, "name").unwrap(), attr(action, "ext").unwrap());
            let applies = if editor.view.contains(&ext) {
                view_only.contains(&name)
            } else if editor.edit.contains(&ext) {
                editable.contains(&name)
            } else {
                false
            };
            if !applies {
                eprintln!("skipped {app_name}/{name}/{ext}: not emitted by the current version");
                continue;
            }
            let mine = ours
                .actions
                .iter()
                .find(|a| attr(a, "name") == Some(name) && attr(a, "ext") == Some(ext))
                .unwrap_or_else(|| {
                    panic!("{app_name}/{name}/{ext} missing from the generated discovery")
                });
            let without_default = |attrs: &Attrs| -> Vec<String> {
                keys(attrs)
                    .into_iter()
                    .filter(|k| *k != "default")
                    .map(str::to_owned)
                    .collect()
            };
            assert_eq!(
                without_default(mine),
                without_default(action),
                "{app_name}/{name}/{ext}"
            );
            for key in ["targetext", "requires"] {
                assert_eq!(
                    attr(mine, key),
                    attr(action, key),
                    "{app_name}/{name}/{ext} {key}"
                );
            }
            assert_eq!(
                url_shape(attr(mine, "urlsrc").unwrap()),
                url_shape(attr(action, "urlsrc").unwrap()),
                "{app_name}/{name}/{ext}"
            );
            compared += 1;
        }
    }
    // docx: view, embedview, editnew, edit; xls: view, embedview, convert; xlsb (now
    // editable): view, embedview.
    assert_eq!(compared, 9);

    let mime = "application/vnd.oasis.opendocument.presentation";
    let (ours, theirs) = (
        &generated.app(mime).unwrap().actions[0],
        &excerpt.app(mime).unwrap().actions[0],
    );
    assert_eq!(keys(ours), keys(theirs));
    for key in ["name", "ext", "default", "requires"] {
        assert_eq!(attr(ours, key), attr(theirs, key), "{mime} {key}");
    }
    assert_eq!(
        url_shape(attr(ours, "urlsrc").unwrap()),
        url_shape(attr(theirs, "urlsrc").unwrap())
    );

    assert_eq!(
        keys(generated.proof_key.as_ref().unwrap()),
        keys(excerpt.proof_key.as_ref().unwrap())
    );
}

/// The certificates load into a real TLS server and a client trusting only the test CA
/// completes a handshake for both names, negotiating ALPN.
#[tokio::test]
async fn test_certs_complete_a_tls_handshake() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    trace_init();
    let certs = TestCerts::generate();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.cert_path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&certs.key_path).unwrap();
    assert!(matches!(key, PrivateKeyDer::Pkcs8(_)), "key.pem is PKCS#8");
    assert_eq!(
        std::fs::read_to_string(&certs.ca_path).unwrap(),
        certs.ca_pem
    );
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(certs.client_config(&[b"h2", b"http/1.1"])));
    let mut listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    for name in ["localhost", "127.0.0.1"] {
        let server = tokio::spawn({
            let acceptor = acceptor.clone();
            async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tls = acceptor.accept(tcp).await.unwrap();
                tls.write_all(b"hello").await.unwrap();
                tls.shutdown().await.unwrap();
                listener
            }
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let server_name = ServerName::try_from(name).unwrap().to_owned();
        let mut tls = connector.connect(server_name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "{name}");
        let mut greeting = String::new();
        tls.read_to_string(&mut greeting).await.unwrap();
        assert_eq!(greeting, "hello", "{name}");
        listener = server.await.unwrap();
    }
}

// ---- The editor URL space (issue 3) and the stand-in Nextcloud ----

/// The file most tests open, named as richdocuments names files (`<fileid>_<instanceid>`).
const FILE_ID: &str = "42_ocabc123";

/// A client whose request bodies may be streamed.
fn body_client() -> BodyClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn full_body(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn empty_body() -> TestBody {
    full_body(Bytes::new())
}

/// `size` pattern bytes, generated as they are sent.
fn pattern_body(size: u64) -> TestBody {
    BodyExt::boxed(StreamBody::new(
        pattern_stream(size).map(|chunk| Ok::<_, BoxError>(Frame::data(chunk))),
    ))
}

/// Length and SHA-256 (hex) of `size` pattern bytes, computed chunk by chunk.
async fn pattern_digest(size: u64) -> (u64, String) {
    let mut hasher = Sha256::new();
    let mut len = 0;
    let mut chunks = std::pin::pin!(pattern_stream(size));
    while let Some(chunk) = chunks.next().await {
        hasher.update(&chunk);
        len += chunk.len() as u64;
    }
    (len, hex(&hasher.finalize()))
}

/// Length and SHA-256 (hex) of a response body, read frame by frame (never collected).
async fn body_digest(mut body: Incoming) -> (u64, String) {
    let mut hasher = Sha256::new();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            hasher.update(&data);
            len += data.len() as u64;
        }
    }
    (len, hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// GETs `url` with a fresh plain client.
async fn fetch(url: &str) -> Result<Fetched, BoxError> {
    get(&client(), url).await
}

async fn send_body(client: &BodyClient, req: Request<TestBody>) -> Fetched {
    let (parts, body) = client.request(req).await.expect("request").into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Fetched {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

impl Fetched {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }
}

/// Starts a stand-in Nextcloud with [`FILE_ID`] (`report.odt`) readable and writable with
/// `token`.
async fn nextcloud_with_file(token: &str) -> StandInNextcloud {
    let nextcloud = StandInNextcloud::start().await;
    nextcloud.add_file(FILE_ID, "report.odt", b"odt bytes".to_vec());
    nextcloud.grant(FILE_ID, token);
    nextcloud
}

/// The form POST richdocuments makes to a urlsrc, as it comes through a proxy at
/// `https://office.example.com`.
fn open_request(url: &str, token: &str) -> Request<TestBody> {
    Request::post(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("x-forwarded-host", "office.example.com")
        .header("x-forwarded-proto", "https")
        .body(full_body(format!(
            "access_token={token}&access_token_ttl=1700000000&iframe_type=document"
        )))
        .unwrap()
}

#[tokio::test]
async fn editor_pages_call_check_file_info_on_the_host() {
    trace_init();
    let token = "secret-token-1";
    let nextcloud = nextcloud_with_file(token).await;
    let wopi_src = nextcloud.wopi_src(FILE_ID);
    assert_eq!(
        wopi_src,
        format!(
            "{}/index.php/apps/richdocuments/wopi/files/{FILE_ID}",
            nextcloud.origin()
        )
    );
    let encoded = encode_uri_component(&wopi_src);
    // coolwsd configured with server_name; DocService as shipped. The requests come through
    // a proxy at https://office.example.com that sends the forwarding headers.
    let collabora = StandInEditor::start_with(
        Suite::Collabora,
        StandInOptions::default()
            .key(shared_key())
            .server_name("office.example.com"),
    )
    .await;
    let onlyoffice = StandInEditor::start_with_key(Suite::OnlyOffice, shared_key()).await;
    let client = body_client();
    // What the real pages build their URLs from: coolwsd its server_name (never
    // X-Forwarded-*) and the page's own query, with the token; ONLYOFFICE nothing absolute
    // (the API script and the socket resolve against the page's address), only its
    // discovery base follows the forwarding headers.
    let collabora_socket = format!(
        "ws://office.example.com/cool/{}/ws?WOPISrc={encoded}&compat=/ws",
        encode_uri_component(&format!(
            "{wopi_src}?access_token={token}&access_token_ttl=1700000000&no_auth_header="
        ))
    );
    let pages = [
        (
            &collabora,
            format!("/browser/{COLLABORA_VERSION_HASH}/cool.html?WOPISrc={encoded}&lang=en"),
            "http://office.example.com".to_owned(),
            format!("/browser/{COLLABORA_VERSION_HASH}/bundle.js"),
            collabora_socket,
        ),
        (
            &onlyoffice,
            // OnlyOffice lower-cases query keys.
            format!("/hosting/wopi/word/edit?wopisrc={encoded}&lang=en"),
            "https://office.example.com".to_owned(),
            format!("../../../web-apps/apps/api/documents/api.js?WOPISrc={encoded}"),
            format!("/9.3.1-standin/doc/{FILE_ID}/c/?WOPISrc={encoded}&EIO=4&transport=websocket"),
        ),
    ];
    for (editor, path, asset_base, asset_url, websocket_url) in pages {
        let page = send_body(
            &client,
            open_request(&format!("{}{path}", editor.url()), token),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text());
        assert!(page.content_type().starts_with("text/html"), "{path}");
        assert_eq!(page.header(NODE_HEADER), editor.url());
        let parsed = EditorPage::parse(page.text());
        assert_eq!(parsed.suite, editor.suite().name());
        assert_eq!(parsed.node, editor.url());
        assert_eq!(parsed.wopi_src, wopi_src);
        assert_eq!(parsed.access_token_len, token.len());
        assert_eq!(parsed.access_token_ttl, "1700000000");
        assert_eq!(parsed.asset_base, asset_base, "{path}");
        assert_eq!(parsed.asset_url, asset_url, "{path}");
        assert!(
            page.text()
                .contains(&format!("<script src=\"{}\"", parsed.asset_url)),
            "{path}: {}",
            page.text()
        );
        assert_eq!(parsed.websocket_url, websocket_url, "{path}");
        assert_eq!(parsed.check_file_info, "200");
        assert_eq!(parsed.base_file_name, "report.odt");
        match editor.suite() {
            // coolwsd writes the form's token into the page (its script builds the
            // WebSocket URL with it), and a CSP framing it on its own host and the
            // WOPISrc host only, listed again for the postMessage check.
            Suite::Collabora => {
                for variable in [
                    format!("data-access-token = \"{token}\""),
                    "data-host = \"ws://office.example.com\"".to_owned(),
                    "data-frame-ancestors = \"%20office.example.com:%2A%20127.0.0.1:%2A\""
                        .to_owned(),
                ] {
                    assert!(
                        page.text().contains(&variable),
                        "{variable}: {}",
                        page.text()
                    );
                }
                let csp = page.header("content-security-policy");
                assert!(
                    csp.contains("frame-ancestors  office.example.com:* 127.0.0.1:*;"),
                    "{csp}"
                );
                assert!(
                    csp.contains("connect-src  'self' https://www.zotero.org https://api.zotero.org ws://office.example.com http://office.example.com; "),
                    "{csp}"
                );
                assert!(csp.contains("script-src  'self' 'unsafe-eval'; "), "{csp}");
            }
            Suite::OnlyOffice => {
                assert!(
                    !page.text().contains(token),
                    "{path}: the page echoes the token"
                );
                assert_eq!(page.header("content-security-policy"), "");
                assert!(page.text().contains(&format!("\"key\":\"{FILE_ID}\"")));
            }
        }

        let calls = editor.check_file_infos();
        assert_eq!(calls.len(), 1, "{path}");
        assert_eq!(calls[0].wopi_src, wopi_src);
        assert_eq!(calls[0].access_token_len, token.len());
        let info = calls[0].outcome.json().expect("CheckFileInfo JSON");
        assert_eq!(info["BaseFileName"], "report.odt");
        assert_eq!(info["Size"], 9);
        assert_eq!(info["Version"], "1");
        assert_eq!(info["UserCanWrite"], true);
        assert_eq!(info["PostMessageOrigin"], nextcloud.origin());
    }

    // Without server_name coolwsd builds on the request's Host, whatever the forwarding
    // headers say.
    let plain = StandInEditor::start_with_key(Suite::Collabora, shared_key()).await;
    let bare = send_body(
        &client,
        Request::get(format!(
            "{}/browser/{COLLABORA_VERSION_HASH}/cool.html?WOPISrc={encoded}",
            plain.url()
        ))
        .header("x-forwarded-host", "office.example.com")
        .header("x-forwarded-proto", "https")
        .body(empty_body())
        .unwrap(),
    )
    .await;
    let parsed = EditorPage::parse(bare.text());
    assert_eq!(parsed.asset_base, plain.url());
    assert!(
        parsed
            .websocket_url
            .starts_with(&format!("{}/cool/", plain.url().replacen("http", "ws", 1))),
        "{}",
        parsed.websocket_url
    );
    assert_eq!(parsed.check_file_info, "none");
    plain.stop().await;

    // The host saw two signed CheckFileInfo calls; the proofs verify with the editors' key
    // (both proofs: old = current, as the editors publish it).
    let requests = nextcloud.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.method, Method::GET);
        assert_eq!(request.file_id.as_deref(), Some(FILE_ID));
        assert_eq!(request.operation, Some(WopiOperation::CheckFileInfo));
        assert_eq!(request.status, Some(StatusCode::OK));
        assert_eq!(request.access_token().as_deref(), Some(token));
        let ProofCheck::NotChecked(proof) = &request.proof else {
            panic!("no proof headers: {:?}", request.headers);
        };
        assert_eq!(proof.url, format!("{wopi_src}?access_token={token}"));
        let ticks: u64 = proof.timestamp.as_deref().unwrap().parse().unwrap();
        let message = proof_message(&proof.access_token, &proof.url, ticks);
        for signature in [&proof.proof, &proof.proof_old] {
            let signature = base64::engine::general_purpose::STANDARD
                .decode(signature.as_deref().unwrap())
                .unwrap();
            assert!(shared_key().public().verify(&message, &signature));
        }
    }

    // A token the host does not know: the page is still served and says 403. Collabora
    // also takes the token from the query of a GET.
    let wrong = fetch(&format!(
        "{}/browser/{COLLABORA_VERSION_HASH}/cool.html?WOPISrc={encoded}&access_token=nope",
        collabora.url()
    ))
    .await
    .unwrap();
    assert_eq!(wrong.status, StatusCode::OK);
    assert_eq!(EditorPage::parse(wrong.text()).check_file_info, "403");
    assert_eq!(
        collabora.check_file_infos()[1].outcome.status(),
        Some(StatusCode::FORBIDDEN)
    );
    assert_eq!(nextcloud.requests()[2].status, Some(StatusCode::FORBIDDEN));

    // An unreachable host: the page is served and the failure recorded.
    let dead = "http://127.0.0.1:9/index.php/apps/richdocuments/wopi/files/1_oc";
    let page = send_body(
        &client,
        open_request(
            &format!(
                "{}/hosting/wopi/cell/view?WOPISrc={}",
                onlyoffice.url(),
                encode_uri_component(dead)
            ),
            token,
        ),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let parsed = EditorPage::parse(page.text());
    assert!(
        parsed.check_file_info.starts_with("error: "),
        "{}",
        parsed.check_file_info
    );
    let last = onlyoffice.check_file_infos().pop().unwrap();
    assert_eq!(last.wopi_src, dead);
    assert!(matches!(last.outcome, CheckFileInfoOutcome::Failed(_)));

    // No token, no call.
    let bare = fetch(&format!(
        "{}/browser/{COLLABORA_VERSION_HASH}/cool.html?WOPISrc={encoded}",
        collabora.url()
    ))
    .await
    .unwrap();
    assert_eq!(EditorPage::parse(bare.text()).check_file_info, "none");
    assert_eq!(collabora.check_file_infos().len(), 2);
    assert_eq!(nextcloud.requests().len(), 3);

    collabora.stop().await;
    onlyoffice.stop().await;
    nextcloud.stop().await;
}

/// The document WebSocket paths of both suites, as `ws://` URLs on `editor`.
fn websocket_urls(editor: &StandInEditor, wopi_src: &str) -> Vec<String> {
    let base = editor.url().replacen("http://", "ws://", 1);
    let encoded = encode_uri_component(wopi_src);
    match editor.suite() {
        Suite::Collabora => vec![
            format!("{base}/cool/{encoded}/ws?WOPISrc={encoded}&compat=/ws"),
            format!("{base}/cool/ws?WOPISrc={encoded}"),
            format!("{base}/lool/{encoded}/ws?WOPISrc={encoded}"),
        ],
        // The path the editor frame opens (below the version segment), and the one
        // DocService itself serves, which its nginx forwards it to.
        Suite::OnlyOffice => vec![
            format!(
                "{base}/9.3.1-standin/doc/{FILE_ID}/c/?WOPISrc={encoded}&EIO=4&transport=websocket"
            ),
            format!("{base}/doc/{FILE_ID}/c/?EIO=4&transport=websocket&WOPISrc={encoded}"),
        ],
    }
}

#[tokio::test]
async fn websockets_echo_a_thousand_messages_in_order() {
    trace_init();
    let wopi_src = format!("http://127.0.0.1:9/index.php/apps/richdocuments/wopi/files/{FILE_ID}");
    for suite in [Suite::Collabora, Suite::OnlyOffice] {
        let editor = StandInEditor::start_with_key(suite, shared_key()).await;
        let urls = websocket_urls(&editor, &wopi_src);
        for url in &urls {
            // As a browser on a page the node served: `Origin` is the node itself.
            let (socket, response) = websocket(url, &editor.url())
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(response.headers()[NODE_HEADER], editor.url().as_str());
            let (mut sink, mut stream) = socket.split();
            let messages: Vec<Message> = (0..1000_usize)
                .map(|i| {
                    if i % 2 == 0 {
                        Message::text(format!("message {i} of {url}"))
                    } else {
                        Message::binary(vec![u8::try_from(i % 256).unwrap(); i % 97 + 1])
                    }
                })
                .collect();
            let to_send = messages.clone();
            let writer = tokio::spawn(async move {
                for message in to_send {
                    sink.send(message).await.unwrap();
                }
                sink
            });
            for (i, expected) in messages.iter().enumerate() {
                let received = tokio::time::timeout(Duration::from_secs(5), stream.next())
                    .await
                    .unwrap_or_else(|_| panic!("{url}: message {i} not echoed"))
                    .expect("stream open")
                    .expect("message");
                assert_eq!(&received, expected, "{url}: message {i}");
            }
            let mut sink = writer.await.unwrap();
            sink.send(Message::Close(None)).await.unwrap();
            // The server acknowledges the close, then the stream ends.
            loop {
                match tokio::time::timeout(Duration::from_secs(2), stream.next())
                    .await
                    .expect("the server must end the session after a close")
                {
                    Some(Ok(Message::Close(_))) => {}
                    None => break,
                    other => panic!("{url}: after close: {other:?}"),
                }
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while editor.open_websockets() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "sessions left open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(editor.echoed_messages(), 1000 * urls.len() as u64);
        editor.stop().await;
    }
}

#[tokio::test]
async fn stopping_a_node_closes_its_websockets() {
    trace_init();
    let wopi_src = format!("http://127.0.0.1:9/index.php/apps/richdocuments/wopi/files/{FILE_ID}");
    for suite in [Suite::Collabora, Suite::OnlyOffice] {
        let editor = StandInEditor::start_with_key(suite, shared_key()).await;
        let url = websocket_urls(&editor, &wopi_src).remove(0);
        let (mut socket, _) = websocket(&url, &editor.url()).await.unwrap();
        socket.send(Message::text("hello")).await.unwrap();
        assert_eq!(
            socket.next().await.unwrap().unwrap(),
            Message::text("hello")
        );
        assert_eq!(editor.open_websockets(), 1);

        tokio::time::timeout(Duration::from_secs(2), editor.stop())
            .await
            .expect("stop must not wait for the client to close");
        let next = tokio::time::timeout(Duration::from_secs(2), socket.next())
            .await
            .unwrap_or_else(|_| panic!("{suite:?}: the WebSocket stayed open after stop"));
        assert!(
            matches!(next, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
            "{suite:?}: {next:?}"
        );
    }
}

#[tokio::test]
async fn convert_endpoints_echo_64_mib_streamed() {
    trace_init();
    const SIZE: u64 = 64 << 20;
    let expected = pattern_digest(SIZE).await;
    let collabora = StandInEditor::start_with_key(Suite::Collabora, shared_key()).await;
    let onlyoffice = StandInEditor::start_with_key(Suite::OnlyOffice, shared_key()).await;
    let client = body_client();
    let request = Request::post(format!("{}/cool/convert-to/pdf", collabora.url()))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(pattern_body(SIZE))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    assert_eq!(response.headers()[NODE_HEADER], collabora.url().as_str());
    assert_eq!(body_digest(response.into_body()).await, expected);

    // The other convert endpoints, with a smaller body and a Content-Length.
    let small = 1_000_003;
    let small_expected = pattern_digest(small).await;
    for (editor, path) in [
        (&collabora, "/cool/convert-to"),
        (&collabora, "/lool/convert-to/png"),
        (&onlyoffice, "/ConvertService.ashx"),
        (&onlyoffice, "/converter"),
        (&onlyoffice, "/lool/convert-to/pdf"),
    ] {
        let request = Request::post(format!("{}{path}", editor.url()))
            .header(header::CONTENT_LENGTH, small)
            .body(pattern_body(small))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()[header::CONTENT_LENGTH],
            small.to_string().as_str()
        );
        assert_eq!(
            body_digest(response.into_body()).await,
            small_expected,
            "{path}"
        );
    }
    collabora.stop().await;
    onlyoffice.stop().await;
}

#[tokio::test]
async fn downloads_stream_the_pattern_and_name_the_document() {
    trace_init();
    let editor = StandInEditor::start_with_key(Suite::Collabora, shared_key()).await;
    let wopi_src = format!("http://127.0.0.1:9/index.php/apps/richdocuments/wopi/files/{FILE_ID}");
    let encoded = encode_uri_component(&wopi_src);
    let size = 10_000_019;
    let url = format!(
        "{}/cool/{encoded}/download/big?size={size}&WOPISrc={encoded}",
        editor.url()
    );
    let response = client()
        .request(Request::get(url).body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_LENGTH],
        size.to_string().as_str()
    );
    assert_eq!(
        body_digest(response.into_body()).await,
        pattern_digest(size).await
    );

    let named = fetch(&format!(
        "{}/cool/{encoded}/download/report.pdf?WOPISrc={encoded}",
        editor.url()
    ))
    .await
    .unwrap();
    assert_eq!(named.status, StatusCode::OK);
    assert!(named.text().contains("report.pdf"), "{}", named.text());
    assert!(named.text().contains(&wopi_src), "{}", named.text());
    let no_size = fetch(&format!("{}/cool/{encoded}/download/big", editor.url()))
        .await
        .unwrap();
    assert_eq!(no_size.status, StatusCode::BAD_REQUEST);
    editor.stop().await;
}

#[tokio::test]
async fn clipboard_and_media_check_the_server_id() {
    trace_init();
    let editor = StandInEditor::start_with_key(Suite::Collabora, shared_key()).await;
    let other = StandInEditor::start_with_key(Suite::Collabora, shared_key()).await;
    let own = editor.server_id().unwrap().to_owned();
    assert_ne!(Some(own.as_str()), other.server_id());
    let capabilities: serde_json::Value = serde_json::from_str(editor.capabilities_json()).unwrap();
    assert_eq!(capabilities["serverId"], own.as_str());
    let wopi_src =
        encode_uri_component("http://127.0.0.1:9/index.php/apps/richdocuments/wopi/files/1_oc");
    let client = body_client();
    for path in ["/cool/clipboard", "/cool/media"] {
        for (server_id, expected) in [
            (Some(own.as_str()), StatusCode::OK),
            (other.server_id(), StatusCode::BAD_REQUEST),
            (None, StatusCode::BAD_REQUEST),
        ] {
            let mut url = format!("{}{path}?WOPISrc={wopi_src}&ViewId=1&Tag=abc", editor.url());
            if let Some(server_id) = server_id {
                url.push_str(&format!("&ServerId={server_id}"));
            }
            let request = Request::get(&url).body(empty_body()).unwrap();
            let response = send_body(&client, request).await;
            assert_eq!(response.status, expected, "{url}");
            assert_eq!(response.header(NODE_HEADER), editor.url());
        }
    }
    let post = Request::post(format!(
        "{}/cool/clipboard?WOPISrc={wopi_src}&ServerId={own}",
        editor.url()
    ))
    .body(full_body("clipboard content"))
    .unwrap();
    assert_eq!(send_body(&client, post).await.status, StatusCode::OK);
    editor.stop().await;
    other.stop().await;
}

/// The first `urlsrc` of a discovery document.
fn first_urlsrc(xml: &str) -> String {
    let discovery = parse_discovery(xml).expect("a discovery document");
    let action = discovery
        .apps
        .iter()
        .flat_map(|app| &app.actions)
        .next()
        .expect("an action");
    attr(action, "urlsrc").expect("a urlsrc").to_owned()
}

/// A GET with extra headers.
async fn get_with(url: &str, headers: &[(&str, &str)]) -> Fetched {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send_body(&body_client(), request.body(empty_body()).unwrap()).await
}

#[tokio::test]
async fn collabora_builds_its_urls_on_server_name_or_host_and_checks_the_websocket_origin() {
    trace_init();
    let wopi_src = format!("http://127.0.0.1:9/index.php/apps/richdocuments/wopi/files/{FILE_ID}");
    let encoded = encode_uri_component(&wopi_src);

    // As shipped: the request's Host, never X-Forwarded-*.
    let plain = StandInEditor::start_with_key(Suite::Collabora, shared_key()).await;
    let discovery = format!("{}/hosting/discovery", plain.url());
    let own = get_with(&discovery, &[]).await;
    assert_eq!(
        first_urlsrc(own.text()),
        format!(
            "{}/browser/{COLLABORA_VERSION_HASH}/cool.html?",
            plain.url()
        )
    );
    let forwarded = get_with(
        &discovery,
        &[
            ("x-forwarded-host", "office.example.com"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(forwarded.text(), own.text());
    let by_host = get_with(&discovery, &[("host", "office.example.com:8443")]).await;
    assert_eq!(
        first_urlsrc(by_host.text()),
        format!("http://office.example.com:8443/browser/{COLLABORA_VERSION_HASH}/cool.html?")
    );
    // 26.04 refuses a WebSocket without an Origin or from another origin than its own.
    let ws = format!(
        "{}/cool/{encoded}/ws?WOPISrc={encoded}&compat=/ws",
        plain.url().replacen("http", "ws", 1)
    );
    let bare = tokio_tungstenite::connect_async(ws.as_str()).await;
    assert!(
        matches!(&bare, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == StatusCode::FORBIDDEN),
        "{bare:?}"
    );
    for origin in ["http://nextcloud.example.com", "http://127.0.0.1:9"] {
        let refused = websocket(&ws, origin).await;
        assert!(
            matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == StatusCode::FORBIDDEN),
            "{origin}: {refused:?}"
        );
    }
    let (mut socket, _) = websocket(&ws, &plain.url()).await.expect("own origin");
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("hello")
    );
    drop(socket);
    plain.stop().await;

    // server_name, a service root and hexified URLs, as a hoster behind officeswitch.
    let cool = StandInEditor::start_with(
        Suite::Collabora,
        StandInOptions::default()
            .key(shared_key())
            .server_name("office.example.com:8443")
            .service_root("/collab/")
            .hexify_embedded_urls(),
    )
    .await;
    assert_eq!(cool.base_url(), format!("{}/collab", cool.url()));
    let discovery = get_with(&format!("{}/hosting/discovery", cool.base_url()), &[]).await;
    assert_eq!(
        first_urlsrc(discovery.text()),
        format!(
            "http://office.example.com:8443/collab/browser/{COLLABORA_VERSION_HASH}/cool.html?"
        )
    );
    assert_eq!(cool.discovery_xml(), discovery.text());
    let outside = get_with(&format!("{}/hosting/discovery", cool.url()), &[]).await;
    assert_eq!(outside.status, StatusCode::BAD_REQUEST);
    let health = get_with(&format!("{}/", cool.base_url()), &[]).await;
    assert_eq!((health.status, health.text()), (StatusCode::OK, "OK"));

    let page = get_with(
        &format!(
            "{}/browser/{COLLABORA_VERSION_HASH}/cool.html?WOPISrc={encoded}&access_token=tok&access_token_ttl=0",
            cool.base_url()
        ),
        &[],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let parsed = EditorPage::parse(page.text());
    assert_eq!(parsed.asset_base, "http://office.example.com:8443/collab");
    assert_eq!(
        parsed.asset_url,
        format!("/collab/browser/{COLLABORA_VERSION_HASH}/bundle.js")
    );
    let plain_tail = format!(
        "{}/ws?WOPISrc={encoded}&compat=",
        encode_uri_component(&format!(
            "{wopi_src}?access_token=tok&access_token_ttl=0&no_auth_header="
        ))
    );
    let hex: String = plain_tail.bytes().map(|b| format!("{b:x}")).collect();
    assert_eq!(
        parsed.websocket_url,
        format!("ws://office.example.com:8443/collab/cool/0x{hex}/ws")
    );
    assert!(page.text().contains("data-hexify-url = \"true\""));
    assert!(page.text().contains("data-service-root = \"/collab\""));
    let script = get_with(&format!("{}{}", cool.url(), parsed.asset_url), &[]).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.text().contains("hexEncode"), "{}", script.text());

    // The hexified socket, reached at the node's address: the browser's Origin is
    // server_name's; the node's own Host is allowed too; server_name without its port is
    // another origin.
    let path = parsed
        .websocket_url
        .strip_prefix("ws://office.example.com:8443")
        .unwrap();
    let ws = format!("{}{path}", cool.url().replacen("http", "ws", 1));
    for origin in ["http://office.example.com:8443", cool.url().as_str()] {
        let (mut socket, response) = websocket(&ws, origin)
            .await
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        socket.send(Message::text("load")).await.unwrap();
        assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("load"));
    }
    let refused = websocket(&ws, "http://office.example.com").await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == StatusCode::FORBIDDEN),
        "{refused:?}"
    );
    let recorded = cool.requests();
    let upgrade = recorded
        .iter()
        .find(|r| r.path().starts_with("/collab/cool/0x"))
        .expect("the hexified upgrade was recorded as it arrived");
    assert_eq!(upgrade.path_and_query, path);
    cool.stop().await;
}

#[tokio::test]
async fn onlyoffice_serves_what_its_page_and_editor_frame_resolve() {
    trace_init();
    let editor = StandInEditor::start_with_key(Suite::OnlyOffice, shared_key()).await;
    let discovery = format!("{}/hosting/discovery", editor.url());
    // DocService builds its discovery on the forwarding headers, else Host.
    let own = get_with(&discovery, &[]).await;
    assert!(
        first_urlsrc(own.text()).starts_with(&format!("{}/hosting/wopi/", editor.url())),
        "{}",
        first_urlsrc(own.text())
    );
    let forwarded = get_with(
        &discovery,
        &[
            ("x-forwarded-host", "office.example.com"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert!(first_urlsrc(forwarded.text()).starts_with("https://office.example.com/hosting/wopi/"));
    // ...unless wopi.host pins it.
    let pinned = StandInEditor::start_with(
        Suite::OnlyOffice,
        StandInOptions::default()
            .key(shared_key())
            .wopi_host("https://docs.example.org/"),
    )
    .await;
    let fetched = get_with(
        &format!("{}/hosting/discovery", pinned.url()),
        &[("x-forwarded-host", "office.example.com")],
    )
    .await;
    assert!(first_urlsrc(fetched.text()).starts_with("https://docs.example.org/hosting/wopi/"));
    assert_eq!(pinned.discovery_xml(), fetched.text());
    pinned.stop().await;

    // The page's relative API script, the versioned editor frame, and what the frame
    // fetches below the version segment.
    let api = get_with(
        &format!(
            "{}/web-apps/apps/api/documents/api.js?WOPISrc=x",
            editor.url()
        ),
        &[],
    )
    .await;
    assert_eq!(api.status, StatusCode::OK);
    assert!(api.content_type().contains("javascript"));
    assert!(
        api.text().contains("var VERSION = '9.3.1-standin';"),
        "{}",
        api.text()
    );
    for frame in [
        "/9.3.1-standin/web-apps/apps/documenteditor/main/index.html?_dc=0&lang=en",
        "/9.3.1-standin/web-apps/apps/spreadsheeteditor/main/index.html",
    ] {
        let page = get_with(&format!("{}{frame}", editor.url()), &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{frame}");
        assert!(page.content_type().starts_with("text/html"), "{frame}");
        assert!(page.text().contains("'../../../../doc/'"), "{frame}");
        assert!(page.text().contains("9.3.1-standin"), "{frame}");
    }
    for (path, expected) in [
        ("/9.3.1-standin/plugins.json", StatusCode::OK),
        ("/9.3.1-standin/themes.json", StatusCode::OK),
        ("/themes.json", StatusCode::OK),
        // nginx serves the cache itself, never below a version.
        (
            "/9.3.1-standin/cache/files/data/x/output.pdf",
            StatusCode::NOT_FOUND,
        ),
        ("/9.3.1-standin/nothing.json", StatusCode::NOT_FOUND),
    ] {
        let reply = get_with(&format!("{}{path}", editor.url()), &[]).await;
        assert_eq!(reply.status, expected, "{path}");
        if expected == StatusCode::OK {
            let json: serde_json::Value = serde_json::from_str(reply.text()).expect(path);
            assert!(json.is_object(), "{path}");
        }
    }
    editor.stop().await;
}

#[tokio::test]
async fn editor_url_space_answers_like_the_real_editors() {
    trace_init();
    let collabora = StandInEditor::start_with_key(Suite::Collabora, shared_key()).await;
    let onlyoffice = StandInEditor::start_with_key(Suite::OnlyOffice, shared_key()).await;
    assert_eq!(collabora.version(), COLLABORA_VERSION_HASH);
    assert_eq!(onlyoffice.version(), "9.3.1-standin");
    let encoded =
        encode_uri_component("http://127.0.0.1:9/index.php/apps/richdocuments/wopi/files/1_oc");
    let client = body_client();
    let cases: Vec<(&StandInEditor, Method, String, StatusCode)> = vec![
        (
            &collabora,
            Method::GET,
            format!("/browser/{COLLABORA_VERSION_HASH}/bundle.js"),
            StatusCode::OK,
        ),
        (
            &collabora,
            Method::GET,
            format!("/browser/{COLLABORA_VERSION_HASH}/images/x.svg"),
            StatusCode::OK,
        ),
        // Another version's path is served too (coolwsd ignores the hash); the version
        // header tells.
        (
            &collabora,
            Method::GET,
            "/browser/0123abc/bundle.js".to_owned(),
            StatusCode::OK,
        ),
        (
            &collabora,
            Method::GET,
            format!("/cool/{encoded}/ws?WOPISrc={encoded}&compat=/ws"),
            StatusCode::BAD_REQUEST,
        ),
        (
            &collabora,
            Method::GET,
            "/cool/convert-to".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            &collabora,
            Method::GET,
            "/hosting/wopi/word/edit".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            &collabora,
            Method::GET,
            "/nothing".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            &onlyoffice,
            Method::GET,
            "/9.3.1-standin/web-apps/apps/api/documents/api.js".to_owned(),
            StatusCode::OK,
        ),
        (
            &onlyoffice,
            Method::GET,
            "/8.2.0-abc/sdkjs/word/sdk-all.js".to_owned(),
            StatusCode::OK,
        ),
        (
            &onlyoffice,
            Method::GET,
            "/web-apps/apps/api/documents/api.js".to_owned(),
            StatusCode::OK,
        ),
        (
            &onlyoffice,
            Method::GET,
            "/fonts/000".to_owned(),
            StatusCode::OK,
        ),
        (
            &onlyoffice,
            Method::GET,
            "/9.3.1-standin/dictionaries/en_US/en_US.dic".to_owned(),
            StatusCode::OK,
        ),
        (
            &onlyoffice,
            Method::GET,
            format!("/cache/files/data/abc/output.pdf?md5=x&expires=1&WOPISrc={encoded}"),
            StatusCode::OK,
        ),
        (
            &onlyoffice,
            Method::GET,
            format!("/doc/{FILE_ID}/c/?EIO=4&transport=websocket&WOPISrc={encoded}"),
            StatusCode::BAD_REQUEST,
        ),
        // The OnlyOffice editor page is POST only; unknown types are not routed.
        (
            &onlyoffice,
            Method::GET,
            "/hosting/wopi/word/edit".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            &onlyoffice,
            Method::POST,
            "/hosting/wopi/diagram-x/edit".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            &onlyoffice,
            Method::GET,
            "/9.3.1-standin/other/x.js".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            &onlyoffice,
            Method::GET,
            format!("/browser/{COLLABORA_VERSION_HASH}/bundle.js"),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (editor, method, path, expected) in &cases {
        let request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", editor.url()))
            .body(empty_body())
            .unwrap();
        let response = send_body(&client, request).await;
        assert_eq!(
            response.status,
            *expected,
            "{method} {path}: {}",
            response.text()
        );
        assert_eq!(response.header(NODE_HEADER), editor.url(), "{path}");
        assert_eq!(response.header(VERSION_HEADER), editor.version(), "{path}");
        if *expected == StatusCode::OK && !path.starts_with("/cache/") {
            // As coolwsd and DocService's nginx mark static files.
            let max_age = match editor.suite() {
                Suite::Collabora => "max-age=11059200",
                Suite::OnlyOffice => "max-age=31536000",
            };
            assert_eq!(response.header("cache-control"), max_age, "{path}");
            assert!(!response.header("etag").is_empty(), "{path}");
            assert!(response.text().contains(editor.version()), "{path}");
        }
    }
    let js = fetch(&format!(
        "{}/browser/{COLLABORA_VERSION_HASH}/bundle.js",
        collabora.url()
    ))
    .await
    .unwrap();
    assert!(
        js.content_type().contains("javascript"),
        "{}",
        js.content_type()
    );

    // Every request is recorded with the node that got it.
    let recorded = onlyoffice.requests();
    assert!(recorded.iter().all(|r| r.node == onlyoffice.url()));
    let cache = recorded
        .iter()
        .find(|r| r.path().starts_with("/cache/files/"))
        .unwrap();
    assert_eq!(cache.query_param("md5").as_deref(), Some("x"));
    collabora.stop().await;
    onlyoffice.stop().await;
}

#[tokio::test]
async fn nextcloud_put_file_hashes_the_streamed_body() {
    trace_init();
    let token = "writer";
    let nextcloud = nextcloud_with_file(token).await;
    let client = body_client();
    let contents = format!(
        "{}/contents?access_token={token}",
        nextcloud.wopi_src(FILE_ID)
    );
    let size = 3 * 1024 * 1024 + 17;
    let put = Request::post(&contents)
        .header("X-WOPI-Override", "PUT")
        .body(pattern_body(size))
        .unwrap();
    let response = send_body(&client, put).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.header("x-wopi-itemversion"), "2");
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert!(body["LastModifiedTime"].as_str().unwrap().ends_with('Z'));
    let (len, sha256) = pattern_digest(size).await;
    assert_eq!(nextcloud.puts(), [(FILE_ID.to_owned(), len, sha256)]);
    assert_eq!(nextcloud.version_of(FILE_ID), Some(2));
    // Too big to keep: GetFile says so rather than serving stale bytes.
    let get_big = Request::get(&contents).body(empty_body()).unwrap();
    assert_eq!(
        send_body(&client, get_big).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    // A small PutFile is kept: GetFile returns it, CheckFileInfo shows it.
    let put = Request::post(&contents)
        .header("X-WOPI-Override", "PUT")
        .body(full_body("new"))
        .unwrap();
    assert_eq!(send_body(&client, put).await.status, StatusCode::OK);
    let got = send_body(&client, Request::get(&contents).body(empty_body()).unwrap()).await;
    assert_eq!((got.status, got.text()), (StatusCode::OK, "new"));
    assert_eq!(got.header("x-wopi-itemversion"), "3");
    let info_url = format!("{}?access_token={token}", nextcloud.wopi_src(FILE_ID));
    let info = send_body(&client, Request::get(&info_url).body(empty_body()).unwrap()).await;
    let info: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert_eq!(
        (info["Size"].clone(), info["Version"].clone()),
        (3.into(), "3".into())
    );

    // A big file served lazily, and X-WOPI-MaxExpectedSize.
    nextcloud.add_pattern_file("7_ocbig", "big.docx", 5_000_011);
    nextcloud.grant("7_ocbig", token);
    let big = format!(
        "{}/contents?access_token={token}",
        nextcloud.wopi_src("7_ocbig")
    );
    let response = client
        .request(Request::get(&big).body(empty_body()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body_digest(response.into_body()).await,
        pattern_digest(5_000_011).await
    );
    let limited = Request::get(&big)
        .header("X-WOPI-MaxExpectedSize", "1000")
        .body(empty_body())
        .unwrap();
    assert_eq!(
        send_body(&client, limited).await.status,
        StatusCode::PRECONDITION_FAILED
    );

    let operations: Vec<_> = nextcloud
        .requests()
        .into_iter()
        .map(|r| (r.operation.unwrap(), r.status.unwrap()))
        .collect();
    assert_eq!(operations[0], (WopiOperation::PutFile, StatusCode::OK));
    assert_eq!(operations.len(), 7);
    nextcloud.stop().await;
}

#[tokio::test]
async fn nextcloud_refuses_unknown_tokens() {
    trace_init();
    let nextcloud = nextcloud_with_file("good").await;
    nextcloud.add_file("43_ocabc123", "other.docx", b"x".to_vec());
    nextcloud.grant("43_ocabc123", "other-file-token");
    nextcloud.grant_read_only(FILE_ID, "reader");
    let client = body_client();
    let src = nextcloud.wopi_src(FILE_ID);
    for (url, expected) in [
        (format!("{src}?access_token=good"), StatusCode::OK),
        (format!("{src}?access_token=bad"), StatusCode::FORBIDDEN),
        (src.clone(), StatusCode::FORBIDDEN),
        (
            format!("{src}?access_token=other-file-token"),
            StatusCode::FORBIDDEN,
        ),
        (
            format!("{src}/contents?access_token=bad"),
            StatusCode::FORBIDDEN,
        ),
        (format!("{src}?access_token=reader"), StatusCode::OK),
        (
            format!("{}?access_token=good", nextcloud.wopi_src("99_ocnone")),
            StatusCode::FORBIDDEN,
        ),
        (
            format!("{}/index.php/apps/files/", nextcloud.url()),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = send_body(&client, Request::get(&url).body(empty_body()).unwrap()).await;
        assert_eq!(response.status, expected, "{url}");
        if url.ends_with("reader") {
            let info: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            assert_eq!(info["UserCanWrite"], false);
        }
    }
    // A read-only token cannot write.
    let put = Request::post(format!("{src}/contents?access_token=reader"))
        .header("X-WOPI-Override", "PUT")
        .body(full_body("x"))
        .unwrap();
    assert_eq!(send_body(&client, put).await.status, StatusCode::FORBIDDEN);
    assert!(nextcloud.puts().is_empty());

    let statuses: Vec<_> = nextcloud
        .requests()
        .iter()
        .map(|r| r.status.unwrap().as_u16())
        .collect();
    assert_eq!(statuses, [200, 403, 403, 403, 403, 200, 403, 404, 403]);
    assert_eq!(
        nextcloud.requests()[1].access_token().as_deref(),
        Some("bad")
    );
    assert_eq!(nextcloud.requests()[0].proof, ProofCheck::Missing);
    nextcloud.stop().await;
}

#[tokio::test]
async fn nextcloud_locks_conflict_with_423_as_richdocuments() {
    trace_init();
    let nextcloud = nextcloud_with_file("token").await;
    let client = body_client();
    let file = format!("{}?access_token=token", nextcloud.wopi_src(FILE_ID));
    let contents = format!(
        "{}/contents?access_token=token",
        nextcloud.wopi_src(FILE_ID)
    );
    let wopi = |url: &str, operation: &str, lock: Option<&str>, old: Option<&str>| {
        let mut request = Request::post(url).header("X-WOPI-Override", operation);
        if let Some(lock) = lock {
            request = request.header("X-WOPI-Lock", lock);
        }
        if let Some(old) = old {
            request = request.header("X-WOPI-OldLock", old);
        }
        request.body(full_body("body")).unwrap()
    };
    // (request, expected status, expected X-WOPI-Lock in the answer: None = absent).
    // Conflicts are 423 without X-WOPI-Lock, as richdocuments answers them; a PutFile
    // blocked by a lock gets 423 `{"message":"File locked"}`.
    let steps = [
        (wopi(&file, "GET_LOCK", None, None), 200, Some("")),
        (wopi(&file, "LOCK", Some("A"), None), 200, None),
        (wopi(&file, "LOCK", Some("A"), None), 200, None),
        (wopi(&file, "LOCK", Some("B"), None), 423, None),
        (wopi(&file, "REFRESH_LOCK", Some("B"), None), 423, None),
        (wopi(&file, "REFRESH_LOCK", Some("A"), None), 200, None),
        (wopi(&contents, "PUT", Some("B"), None), 423, None),
        (wopi(&contents, "PUT", None, None), 423, None),
        (wopi(&contents, "PUT", Some("A"), None), 200, None),
        (wopi(&file, "GET_LOCK", None, None), 200, Some("A")),
        (wopi(&file, "LOCK", Some("C"), Some("B")), 423, None),
        (wopi(&file, "LOCK", Some("C"), Some("A")), 200, None),
        (wopi(&file, "UNLOCK", Some("A"), None), 423, None),
        (wopi(&file, "LOCK", None, None), 400, None),
        (wopi(&file, "UNLOCK", Some("C"), None), 200, None),
        (wopi(&file, "UNLOCK", Some("C"), None), 423, None),
        (wopi(&file, "GET_LOCK", None, None), 200, Some("")),
        (wopi(&file, "NOT_AN_OVERRIDE", Some("C"), None), 501, None),
        // Unlocked again: PutFile needs no lock (as richdocuments).
        (wopi(&contents, "PUT", None, None), 200, None),
    ];
    for (i, (request, status, lock)) in steps.into_iter().enumerate() {
        let what = format!(
            "step {i}: {} {:?}",
            request.headers()["x-wopi-override"].to_str().unwrap(),
            request.headers().get("x-wopi-lock")
        );
        let response = send_body(&client, request).await;
        assert_eq!(
            response.status.as_u16(),
            status,
            "{what}: {}",
            response.text()
        );
        assert_eq!(
            response
                .headers
                .get("x-wopi-lock")
                .map(|v| v.to_str().unwrap()),
            lock,
            "{what}"
        );
        if status == 423 && what.contains("PUT") {
            assert_eq!(response.text(), r#"{"message":"File locked"}"#, "{what}");
        }
    }
    assert_eq!(nextcloud.lock_of(FILE_ID), None);
    assert_eq!(nextcloud.puts().len(), 2);
    let operations: Vec<_> = nextcloud
        .requests()
        .into_iter()
        .filter_map(|r| r.operation)
        .collect();
    assert_eq!(operations[0], WopiOperation::GetLock);
    assert_eq!(operations[1], WopiOperation::Lock);
    assert_eq!(operations[6], WopiOperation::PutFile);
    nextcloud.stop().await;
}

#[tokio::test]
async fn nextcloud_locking_like_richdocuments_holds_one_app_lock_whatever_the_string() {
    trace_init();
    let nextcloud = nextcloud_with_file("token").await;
    nextcloud.lock_like_richdocuments();
    let client = body_client();
    let file = format!("{}?access_token=token", nextcloud.wopi_src(FILE_ID));
    let contents = format!(
        "{}/contents?access_token=token",
        nextcloud.wopi_src(FILE_ID)
    );
    let wopi = |url: &str, operation: &str, lock: &str| {
        Request::post(url)
            .header("X-WOPI-Override", operation)
            .header("X-WOPI-Lock", lock)
            .body(full_body("body"))
            .unwrap()
    };
    // A node that died held "A"; another node's LOCK "B" extends the one app lock, and
    // writes and UNLOCK with any string pass, as richdocuments (files_lock) does.
    let steps = [
        (wopi(&file, "LOCK", "A"), 200),
        (wopi(&file, "LOCK", "B"), 200),
        (wopi(&file, "REFRESH_LOCK", "C"), 200),
        (wopi(&contents, "PUT", "D"), 200),
        (wopi(&file, "UNLOCK", "E"), 200),
    ];
    for (i, (request, status)) in steps.into_iter().enumerate() {
        let response = send_body(&client, request).await;
        assert_eq!(response.status.as_u16(), status, "step {i}");
    }
    assert_eq!(nextcloud.lock_of(FILE_ID), None);
    assert_eq!(nextcloud.puts().len(), 1);
    nextcloud.stop().await;
}

// ---- The editors' WOPI client against the stand-in Nextcloud, proofs verified ----

/// Opens `file_id` on `editor` as richdocuments does (form POST to the urlsrc, `WOPISrc`
/// in the query; OnlyOffice's key lower-cased) and returns the session the editor kept.
async fn open_session(
    editor: &StandInEditor,
    nextcloud: &StandInNextcloud,
    file_id: &str,
    token: &str,
) -> EditorSession {
    let encoded = encode_uri_component(&nextcloud.wopi_src(file_id));
    let path = match editor.suite() {
        Suite::Collabora => {
            format!("/browser/{COLLABORA_VERSION_HASH}/cool.html?WOPISrc={encoded}&lang=en")
        }
        Suite::OnlyOffice => format!("/hosting/wopi/word/edit?wopisrc={encoded}&lang=en"),
    };
    let page = send_body(
        &body_client(),
        open_request(&format!("{}{path}", editor.url()), token),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let session = editor.last_session().expect("the editor kept the session");
    assert_eq!(
        session,
        EditorSession {
            wopi_src: nextcloud.wopi_src(file_id),
            access_token: token.to_owned(),
            access_token_ttl: "1700000000".to_owned(),
            node: editor.url(),
        }
    );
    session
}

/// A Nextcloud verifying proofs against `key` (as current and old key).
async fn verifying_nextcloud(key: &PublicProofKey) -> StandInNextcloud {
    let nextcloud = StandInNextcloud::start().await;
    nextcloud.verify_proofs_with(Some((key.clone(), key.clone())));
    nextcloud
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The last request the host logged with this operation.
fn last_request(nextcloud: &StandInNextcloud, operation: &WopiOperation) -> WopiRequest {
    nextcloud
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.operation.as_ref() == Some(operation))
        .unwrap_or_else(|| panic!("no {operation:?} logged"))
}

/// Waits (up to 5 s) until the host has logged how the last request with `operation`
/// ended: its status, or why it got none.
async fn settled(nextcloud: &StandInNextcloud, operation: &WopiOperation) -> WopiRequest {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let request = last_request(nextcloud, operation);
        if request.status.is_some() || request.aborted.is_some() {
            return request;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{operation:?} never settled: {request:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// open -> CheckFileInfo -> GetFile -> Lock -> PutFile -> Unlock -> PutRelativeFile, for a
/// docx on OnlyOffice and an odt on Collabora, editor straight to host, every call signed
/// and verified by the host as richdocuments does.
#[tokio::test]
async fn wopi_flow_from_editor_to_nextcloud_with_verified_proofs() {
    trace_init();
    for (suite, name) in [
        (Suite::OnlyOffice, "report.docx"),
        (Suite::Collabora, "report.odt"),
    ] {
        let editor = StandInEditor::start_with_key(suite, shared_key()).await;
        assert!(editor.signs());
        let nextcloud = verifying_nextcloud(editor.public_key()).await;
        let original = format!("{name} original bytes").into_bytes();
        nextcloud.add_file(FILE_ID, name, original.clone());
        let token = "flow-token_1";
        nextcloud.grant(FILE_ID, token);
        let session = open_session(&editor, &nextcloud, FILE_ID, token).await;
        // The page's own CheckFileInfo passed verification.
        assert_eq!(
            editor.check_file_infos()[0].outcome.status(),
            Some(StatusCode::OK),
            "{suite:?}"
        );

        let info = editor.wopi(&session, WopiCall::CheckFileInfo).await;
        assert_eq!(info.status, StatusCode::OK, "{suite:?}: {}", info.text());
        let info = info.json().unwrap();
        assert_eq!(info["BaseFileName"], name);
        assert_eq!(info["UserId"], "user-flow-tok");
        assert_eq!(info["SupportsLocks"], true);
        assert_eq!(info["SupportsUpdate"], true);
        assert_eq!(info["HasContentRange"], true);
        assert_eq!(
            info["LastModifiedTime"].as_str(),
            nextcloud.last_modified_of(FILE_ID).as_deref()
        );
        assert_eq!(
            info["UserExtraInfo"]["avatar"],
            format!("{}/index.php/avatar/user-flow-tok/64", nextcloud.origin())
        );
        let settings = info["UserSettings"]["uri"].as_str().unwrap();
        assert!(
            settings.starts_with(&format!(
                "{}/index.php/apps/richdocuments/wopi/settings?type=userconfig&access_token=",
                nextcloud.origin()
            )),
            "{settings}"
        );
        assert!(info.get("TemplateSource").is_none());

        let got = editor
            .wopi(
                &session,
                WopiCall::GetFile {
                    max_expected_size: Some(1 << 20),
                },
            )
            .await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(
            (got.body_len, got.body_sha256.as_str()),
            (original.len() as u64, sha256_hex(&original).as_str())
        );

        let lock = format!("{suite:?}-lock");
        let locked = editor
            .wopi(&session, WopiCall::Lock { lock: lock.clone() })
            .await;
        assert_eq!(locked.status, StatusCode::OK);
        assert_eq!(nextcloud.lock_of(FILE_ID), Some(lock.clone()));

        // A streamed upload larger than what the host keeps, then a small one it keeps.
        let big = 3 * 1024 * 1024 + 5;
        let put = editor
            .wopi(
                &session,
                WopiCall::PutFile {
                    lock: Some(lock.clone()),
                    body: PutBody::Pattern(big),
                },
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{suite:?}: {}", put.text());
        assert!(put.json().unwrap()["LastModifiedTime"].is_string());
        let put_request = last_request(&nextcloud, &WopiOperation::PutFile);
        match suite {
            Suite::Collabora => {
                assert_eq!(
                    put_request.headers["x-cool-wopi-timestamp"],
                    info["LastModifiedTime"].as_str().unwrap(),
                    "Collabora sends the LastModifiedTime it saw"
                );
                assert_eq!(put_request.headers["x-cool-wopi-ismodifiedbyuser"], "true");
            }
            Suite::OnlyOffice => {
                assert_eq!(put_request.headers["x-wopi-editors"], "user-flow-tok");
                assert!(put_request.headers.contains_key("x-wopi-correlationid"));
            }
        }
        let small = b"edited contents".to_vec();
        let put = editor
            .wopi(
                &session,
                WopiCall::PutFile {
                    lock: Some(lock.clone()),
                    body: PutBody::Bytes(small.clone()),
                },
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{suite:?}: {}", put.text());
        assert_eq!(
            nextcloud.puts(),
            [
                (FILE_ID.to_owned(), big, pattern_digest(big).await.1),
                (FILE_ID.to_owned(), small.len() as u64, sha256_hex(&small)),
            ]
        );
        let got = editor
            .wopi(
                &session,
                WopiCall::GetFile {
                    max_expected_size: None,
                },
            )
            .await;
        assert_eq!(
            (got.status, got.body.as_ref()),
            (StatusCode::OK, &small[..])
        );

        let unlocked = editor
            .wopi(&session, WopiCall::Unlock { lock: lock.clone() })
            .await;
        assert_eq!(unlocked.status, StatusCode::OK);
        assert_eq!(nextcloud.lock_of(FILE_ID), None);

        let extension = name.rsplit_once('.').unwrap().1;
        let copy = editor
            .wopi(
                &session,
                WopiCall::PutRelativeFile {
                    suggested_target: format!("Copy of report.{extension}"),
                    body: PutBody::Bytes(b"copy".to_vec()),
                },
            )
            .await;
        assert_eq!(copy.status, StatusCode::OK, "{suite:?}: {}", copy.text());
        let copy = copy.json().unwrap();
        assert_eq!(copy["Name"], format!("Copy of report.{extension}"));
        let url = copy["Url"].as_str().unwrap();
        let (new_src, query) = url.split_once('?').unwrap();
        let new_id = new_src.rsplit('/').next().unwrap();
        assert_eq!(new_src, nextcloud.wopi_src(new_id));
        assert!(new_id.ends_with("_ocabc123"), "{new_id}");
        assert!(copy["HostEditUrl"].as_str().unwrap().contains("fileid="));
        let new_token = query.strip_prefix("access_token=").unwrap();
        assert_eq!(
            nextcloud.user_of(new_token).as_deref(),
            Some("user-flow-tok"),
            "a token for the same user"
        );
        // The editor goes on with the new file, as after "Save as".
        let new_session = EditorSession {
            wopi_src: new_src.to_owned(),
            access_token: new_token.to_owned(),
            ..session.clone()
        };
        let new_info = editor.wopi(&new_session, WopiCall::CheckFileInfo).await;
        assert_eq!(new_info.status, StatusCode::OK);
        assert_eq!(
            new_info.json().unwrap()["BaseFileName"],
            format!("Copy of report.{extension}")
        );
        assert_eq!(nextcloud.contents_of(new_id).unwrap(), &b"copy"[..]);
        assert_eq!(
            nextcloud.put_records().last().unwrap().operation,
            WopiOperation::PutRelativeFile
        );

        // Every call was signed and verified; a rotation-aware host accepts it too.
        let requests = nextcloud.requests();
        assert_eq!(requests.len(), 10, "{suite:?}");
        for request in &requests {
            assert_eq!(
                request.proof,
                ProofCheck::Valid(ProofMatch::Current),
                "{suite:?} {:?}",
                request.operation
            );
            assert_eq!(request.status, Some(StatusCode::OK));
        }
        let other = ProofKey::generate().unwrap();
        nextcloud.verify_proofs_with(Some((other.public().clone(), editor.public_key().clone())));
        assert_eq!(
            editor.wopi(&session, WopiCall::GetLock).await.status,
            StatusCode::OK
        );
        assert_eq!(
            last_request(&nextcloud, &WopiOperation::GetLock).proof,
            ProofCheck::Valid(ProofMatch::OldKey)
        );
        editor.stop().await;
        nextcloud.stop().await;
    }
}

/// Missing, wrong-key, stale and tampered proofs get 500 `[]` and change nothing, as
/// richdocuments' middleware answers; the settings endpoint is never checked.
#[tokio::test]
async fn bad_proofs_get_500_and_the_operation_is_not_performed() {
    trace_init();
    let editor = StandInEditor::start_with_key(Suite::Collabora, shared_key()).await;
    let nextcloud = verifying_nextcloud(editor.public_key()).await;
    nextcloud.add_file(FILE_ID, "report.odt", b"odt bytes".to_vec());
    nextcloud.grant(FILE_ID, "token");
    let session = open_session(&editor, &nextcloud, FILE_ID, "token").await;

    for signing in [
        Signing::None,
        Signing::WrongKey,
        Signing::Stale,
        Signing::Tampered,
    ] {
        let options = CallOptions {
            signing,
            ..CallOptions::default()
        };
        let lock = WopiCall::Lock {
            lock: "L".to_owned(),
        };
        let reply = editor.wopi_with(&session, lock, options.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{signing:?}"
        );
        assert_eq!(reply.json(), Some(serde_json::json!([])), "{signing:?}");
        assert_eq!(nextcloud.lock_of(FILE_ID), None, "{signing:?}");
        let verdict = last_request(&nextcloud, &WopiOperation::Lock).proof;
        match signing {
            Signing::None => assert_eq!(verdict, ProofCheck::Missing),
            Signing::Stale => assert_eq!(
                verdict,
                ProofCheck::Invalid("X-WOPI-TimeStamp is older than 20 minutes".to_owned())
            ),
            _ => assert!(
                matches!(&verdict, ProofCheck::Invalid(reason) if reason.starts_with("no proof verifies")),
                "{signing:?}: {verdict:?}"
            ),
        }

        // An upload with a bad proof: refused, its body read and dropped, nothing stored.
        let put = WopiCall::PutFile {
            lock: None,
            body: PutBody::Pattern(200_000),
        };
        let reply = editor.wopi_with(&session, put, options).await;
        assert_eq!(
            (reply.status, reply.error.as_deref()),
            (StatusCode::INTERNAL_SERVER_ERROR, None),
            "{signing:?}"
        );
        assert_eq!(
            last_request(&nextcloud, &WopiOperation::PutFile).body_bytes,
            Some(200_000)
        );
    }
    assert!(nextcloud.puts().is_empty());
    assert_eq!(nextcloud.version_of(FILE_ID), Some(1));

    // A token the host does not know, correctly signed: the proof passes, the token not.
    let stranger = CallOptions {
        token: Some("stranger".to_owned()),
        ..CallOptions::default()
    };
    let reply = editor
        .wopi_with(&session, WopiCall::CheckFileInfo, stranger)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        last_request(&nextcloud, &WopiOperation::CheckFileInfo).proof,
        ProofCheck::Valid(ProofMatch::Current)
    );

    // Settings are reached without proof; a template is not (richdocuments checks it).
    nextcloud.add_file_from_template("50_ocabc123", "new.odt", "7", b"template".to_vec());
    nextcloud.grant("50_ocabc123", "token");
    let new_session = open_session(&editor, &nextcloud, "50_ocabc123", "token").await;
    let info = editor
        .wopi(&new_session, WopiCall::CheckFileInfo)
        .await
        .json()
        .unwrap();
    let settings = editor
        .wopi(
            &new_session,
            WopiCall::Fetch {
                url: info["UserSettings"]["uri"].as_str().unwrap().to_owned(),
            },
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.text());
    assert_eq!(
        last_request(&nextcloud, &WopiOperation::GetSettings).proof,
        ProofCheck::Missing
    );
    let template = editor
        .wopi(
            &new_session,
            WopiCall::Fetch {
                url: info["TemplateSource"].as_str().unwrap().to_owned(),
            },
        )
        .await;
    assert_eq!(template.status, StatusCode::INTERNAL_SERVER_ERROR);

    // An unsigned OnlyOffice publishes no key and sends only a timestamp: refused.
    let unsigned = StandInEditor::start_unsigned(Suite::OnlyOffice).await;
    assert!(!unsigned.signs());
    assert!(
        parse_discovery(unsigned.discovery_xml())
            .unwrap()
            .proof_key
            .is_none()
    );
    let session = open_session(&unsigned, &nextcloud, FILE_ID, "token").await;
    assert_eq!(
        unsigned.check_file_infos()[0].outcome.status(),
        Some(StatusCode::INTERNAL_SERVER_ERROR)
    );
    let reply = unsigned.wopi(&session, WopiCall::CheckFileInfo).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let request = last_request(&nextcloud, &WopiOperation::CheckFileInfo);
    assert_eq!(request.proof, ProofCheck::Missing);
    assert!(request.headers.contains_key("x-wopi-timestamp"));
    // The same host without verification serves it.
    nextcloud.verify_proofs_with(None);
    let reply = unsigned.wopi(&session, WopiCall::CheckFileInfo).await;
    assert_eq!(reply.status, StatusCode::OK);

    unsigned.stop().await;
    editor.stop().await;
    nextcloud.stop().await;
}

/// Two sessions fight over the lock: 423 without `X-WOPI-Lock`, as richdocuments.
#[tokio::test]
async fn lock_conflicts_between_sessions_get_423() {
    trace_init();
    let editor = StandInEditor::start_with_key(Suite::OnlyOffice, shared_key()).await;
    let nextcloud = verifying_nextcloud(editor.public_key()).await;
    nextcloud.add_file(FILE_ID, "report.docx", b"docx".to_vec());
    nextcloud.grant(FILE_ID, "first");
    nextcloud.grant(FILE_ID, "second");
    let first = open_session(&editor, &nextcloud, FILE_ID, "first").await;
    let second = open_session(&editor, &nextcloud, FILE_ID, "second").await;
    assert_eq!(editor.sessions(), [first.clone(), second.clone()]);

    let lock = |lock: &str| WopiCall::Lock {
        lock: lock.to_owned(),
    };
    assert_eq!(editor.wopi(&first, lock("A")).await.status, StatusCode::OK);
    let conflict = editor.wopi(&second, lock("B")).await;
    assert_eq!(conflict.status, StatusCode::LOCKED);
    assert!(conflict.headers.get("x-wopi-lock").is_none());
    let refresh = WopiCall::RefreshLock {
        lock: "B".to_owned(),
    };
    assert_eq!(
        editor.wopi(&second, refresh).await.status,
        StatusCode::LOCKED
    );
    let put = WopiCall::PutFile {
        lock: Some("B".to_owned()),
        body: PutBody::Bytes(b"mine".to_vec()),
    };
    let refused = editor.wopi(&second, put).await;
    assert_eq!(refused.status, StatusCode::LOCKED);
    assert_eq!(
        refused.json(),
        Some(serde_json::json!({"message": "File locked"}))
    );
    let current = editor.wopi(&second, WopiCall::GetLock).await;
    assert_eq!(
        (current.status, current.header("x-wopi-lock")),
        (StatusCode::OK, "A")
    );
    let relock = WopiCall::UnlockAndRelock {
        lock: "C".to_owned(),
        old_lock: "A".to_owned(),
    };
    assert_eq!(editor.wopi(&first, relock).await.status, StatusCode::OK);
    assert_eq!(nextcloud.lock_of(FILE_ID).as_deref(), Some("C"));
    assert!(nextcloud.puts().is_empty());
    editor.stop().await;
    nextcloud.stop().await;
}

/// Collabora's `X-COOL-WOPI-Timestamp`: a stale one gets 409 `{"COOLStatusCode":1010}` and
/// writes nothing; the one it tracks from CheckFileInfo and PutFile answers passes.
#[tokio::test]
async fn put_file_with_a_stale_timestamp_gets_1010() {
    trace_init();
    let editor = StandInEditor::start_with_key(Suite::Collabora, shared_key()).await;
    let nextcloud = verifying_nextcloud(editor.public_key()).await;
    nextcloud.add_file(FILE_ID, "report.odt", b"odt".to_vec());
    nextcloud.grant(FILE_ID, "token");
    let session = open_session(&editor, &nextcloud, FILE_ID, "token").await;
    let put = |body: &[u8]| WopiCall::PutFile {
        lock: None,
        body: PutBody::Bytes(body.to_vec()),
    };
    let stale = CallOptions {
        cool_timestamp: Some("2001-01-01T00:00:00.000000Z".to_owned()),
        ..CallOptions::default()
    };
    let conflict = editor.wopi_with(&session, put(b"lost?"), stale).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(
        conflict.json(),
        Some(serde_json::json!({"COOLStatusCode": 1010}))
    );
    assert!(nextcloud.puts().is_empty());
    assert_eq!(nextcloud.contents_of(FILE_ID).unwrap(), &b"odt"[..]);

    // Tracked from the page's CheckFileInfo, then from each PutFile answer.
    for body in [&b"first"[..], b"second"] {
        let expected = nextcloud.last_modified_of(FILE_ID).unwrap();
        let saved = editor.wopi(&session, put(body)).await;
        assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
        let request = last_request(&nextcloud, &WopiOperation::PutFile);
        assert_eq!(request.headers["x-cool-wopi-timestamp"], expected.as_str());
    }
    // Without the header nothing is compared.
    let without = CallOptions {
        cool_timestamp: Some(String::new()),
        ..CallOptions::default()
    };
    assert_eq!(
        editor
            .wopi_with(&session, put(b"third"), without)
            .await
            .status,
        StatusCode::OK
    );
    assert!(
        !last_request(&nextcloud, &WopiOperation::PutFile)
            .headers
            .contains_key("x-cool-wopi-timestamp")
    );
    assert_eq!(nextcloud.puts().len(), 3);
    editor.stop().await;
    nextcloud.stop().await;
}

/// What ONLYOFFICE meets in richdocuments without officeswitch between them, as
/// `../shared/notes/richdocuments-onlyoffice.md` reads it from both sources: its
/// `X-LOOL-WOPI-Timestamp` is not read, so a stale save overwrites a change made in
/// Nextcloud; its body-less RENAME_FILE empties the renamed file; an old version's id opens
/// writable and its PutFile writes the current file. The dialect tests rely on these.
#[tokio::test]
async fn onlyoffice_meets_richdocuments_hazards_without_officeswitch() {
    trace_init();
    let editor = StandInEditor::start_with_key(Suite::OnlyOffice, shared_key()).await;
    let nextcloud = verifying_nextcloud(editor.public_key()).await;
    nextcloud.add_file(FILE_ID, "report.docx", b"PK current".to_vec());
    nextcloud.add_version(FILE_ID, "1700000000", b"PK old".to_vec());
    nextcloud.grant(FILE_ID, "token");
    let session = open_session(&editor, &nextcloud, FILE_ID, "token").await;
    let put = |body: &[u8]| WopiCall::PutFile {
        lock: Some("doc-key".to_owned()),
        body: PutBody::Bytes(body.to_vec()),
    };

    // A save after a change in Nextcloud: X-LOOL- only, and it overwrites.
    let seen = nextcloud.last_modified_of(FILE_ID).unwrap();
    nextcloud.change_in_storage(FILE_ID, b"PK theirs".to_vec());
    assert_ne!(nextcloud.last_modified_of(FILE_ID).unwrap(), seen);
    let saved = editor.wopi(&session, put(b"PK mine")).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
    let request = last_request(&nextcloud, &WopiOperation::PutFile);
    assert_eq!(request.headers["x-lool-wopi-timestamp"], seen.as_str());
    assert_eq!(request.headers["x-lool-wopi-isautosave"], "false");
    assert!(!request.headers.contains_key("x-cool-wopi-timestamp"));
    assert_eq!(nextcloud.contents_of(FILE_ID).unwrap(), &b"PK mine"[..]);

    // A rename without a body: the renamed file has 0 bytes.
    let renamed = editor
        .wopi(
            &session,
            WopiCall::RenameFile {
                lock: "doc-key".to_owned(),
                name: "renamed".to_owned(),
            },
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text());
    assert_eq!(
        last_request(&nextcloud, &WopiOperation::RenameFile).body_bytes,
        Some(0),
        "no body sent"
    );
    assert_eq!(nextcloud.name_of(FILE_ID).as_deref(), Some("renamed.docx"));
    assert_eq!(nextcloud.contents_of(FILE_ID).unwrap().len(), 0);

    // An old version: writable, its bytes on GetFile, its PutFile on the current file.
    nextcloud.add_file(FILE_ID, "report.docx", b"PK current".to_vec());
    let version_id = format!("{FILE_ID}_1700000000");
    let version = open_session(&editor, &nextcloud, &version_id, "token").await;
    let info = editor
        .wopi(&version, WopiCall::CheckFileInfo)
        .await
        .json()
        .unwrap();
    assert_eq!(info["UserCanWrite"], true);
    assert_eq!(info["Version"], "1700000000");
    assert_eq!(info["SupportsRename"], false);
    let got = editor
        .wopi(
            &version,
            WopiCall::GetFile {
                max_expected_size: None,
            },
        )
        .await;
    assert_eq!(got.body.as_ref(), b"PK old");
    let saved = editor.wopi(&version, put(b"PK old, edited")).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text());
    assert_eq!(
        nextcloud.contents_of(FILE_ID).unwrap(),
        &b"PK old, edited"[..],
        "the current file was overwritten"
    );
    editor.stop().await;
    nextcloud.stop().await;
}

/// Uploads that do not complete are never stored: the host resetting or stalling midway
/// ([`PutFault`]), and the editor cutting its own upload ([`PutBody::CutAfter`]).
#[tokio::test]
async fn broken_uploads_are_never_recorded() {
    trace_init();
    let editor = StandInEditor::start_with_key(Suite::OnlyOffice, shared_key()).await;
    let nextcloud = verifying_nextcloud(editor.public_key()).await;
    nextcloud.add_file(FILE_ID, "report.docx", b"docx".to_vec());
    nextcloud.grant(FILE_ID, "token");
    let session = open_session(&editor, &nextcloud, FILE_ID, "token").await;
    let put = |body: PutBody| WopiCall::PutFile { lock: None, body };

    nextcloud.set_put_fault(Some(PutFault::ResetAfter(64 * 1024)));
    let reset = editor.wopi(&session, put(PutBody::Pattern(4 << 20))).await;
    assert_ne!(reset.status, StatusCode::OK);
    assert!(
        reset.error.is_some() || reset.status.is_server_error(),
        "{reset:?}"
    );
    let logged = settled(&nextcloud, &WopiOperation::PutFile).await;
    assert_eq!(logged.status, None);
    assert!(
        logged
            .aborted
            .as_deref()
            .unwrap()
            .starts_with("reset after")
    );
    assert!(logged.body_bytes.unwrap() >= 64 * 1024);
    let relative = WopiCall::PutRelativeFile {
        suggested_target: "copy.docx".to_owned(),
        body: PutBody::Pattern(300_000),
    };
    let reset = editor.wopi(&session, relative).await;
    assert_ne!(reset.status, StatusCode::OK);
    assert_eq!(nextcloud.file_ids(), [FILE_ID]);

    nextcloud.set_put_fault(Some(PutFault::StallAfter(10_000)));
    editor.set_wopi_timeout(Duration::from_millis(500));
    let stalled = editor.wopi(&session, put(PutBody::Pattern(1 << 20))).await;
    assert_eq!(stalled.status.as_u16(), NO_ANSWER);
    assert!(
        stalled
            .error
            .as_deref()
            .unwrap()
            .contains("no complete answer")
    );
    let logged = settled(&nextcloud, &WopiOperation::PutFile).await;
    assert!(
        logged
            .aborted
            .as_deref()
            .unwrap()
            .starts_with("stalled after")
    );
    editor.set_wopi_timeout(WOPI_CALL_TIMEOUT);

    nextcloud.set_put_fault(None);
    let cut = editor
        .wopi(
            &session,
            put(PutBody::CutAfter {
                declared: 1 << 20,
                sent: 100_000,
            }),
        )
        .await;
    assert_ne!(cut.status, StatusCode::OK);
    assert!(
        cut.error.as_deref().unwrap().contains("100000 of 1048576"),
        "{cut:?}"
    );
    let logged = settled(&nextcloud, &WopiOperation::PutFile).await;
    assert_eq!(logged.body_bytes, Some(100_000));
    assert_eq!(logged.headers[header::CONTENT_LENGTH], "1048576");
    assert!(
        matches!(logged.proof, ProofCheck::Valid(_)),
        "the cut upload was signed: {:?}",
        logged.proof
    );
    assert!(nextcloud.puts().is_empty(), "{:?}", nextcloud.puts());
    assert_eq!(nextcloud.contents_of(FILE_ID).unwrap(), &b"docx"[..]);

    // Healed: the same upload goes through.
    let whole = editor.wopi(&session, put(PutBody::Pattern(1 << 20))).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(nextcloud.puts().len(), 1);
    editor.stop().await;
    nextcloud.stop().await;
}

/// Templates, settings, injected CheckFileInfo fields, RenameFile, PUT_USER_INFO,
/// GET_SHARE_URL, DeleteFile and a PutRelativeFile `Url` pointing elsewhere.
#[tokio::test]
async fn nextcloud_serves_templates_settings_and_the_other_overrides() {
    trace_init();
    let editor = StandInEditor::start_with_key(Suite::Collabora, shared_key()).await;
    let nextcloud = StandInNextcloud::start().await;
    let template = b"template bytes".to_vec();
    nextcloud.add_file_from_template(FILE_ID, "new.odt", "77", template.clone());
    nextcloud.grant(FILE_ID, "token");
    nextcloud.add_file("43_ocabc123", "other.odt", b"x".to_vec());
    nextcloud.grant("43_ocabc123", "other-token");
    let session = open_session(&editor, &nextcloud, FILE_ID, "token").await;

    let info = editor
        .wopi(&session, WopiCall::CheckFileInfo)
        .await
        .json()
        .unwrap();
    assert_eq!(info["Size"], 0);
    let source = info["TemplateSource"].as_str().unwrap().to_owned();
    assert_eq!(
        source,
        format!(
            "{}/index.php/apps/richdocuments/wopi/template/77?access_token=token",
            nextcloud.origin()
        )
    );
    let fetched = editor
        .wopi(
            &session,
            WopiCall::Fetch {
                url: source.clone(),
            },
        )
        .await;
    assert_eq!(
        (fetched.status, fetched.body.as_ref()),
        (StatusCode::OK, &template[..])
    );
    let fetch = last_request(&nextcloud, &WopiOperation::GetTemplate);
    assert_eq!(fetch.file_id.as_deref(), Some("77"));
    assert!(
        fetch.headers.get("x-wopi-proof").is_none(),
        "fetched unsigned"
    );
    let foreign = source.replace("token", "other-token");
    assert_eq!(
        editor
            .wopi(&session, WopiCall::Fetch { url: foreign })
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    for (kind, expected) in [("UserSettings", "user"), ("SharedSettings", "shared")] {
        let url = info[kind]["uri"].as_str().unwrap().to_owned();
        let settings = editor.wopi(&session, WopiCall::Fetch { url }).await;
        assert_eq!(settings.status, StatusCode::OK);
        assert_eq!(settings.json().unwrap()["kind"], expected);
    }
    let bad_type = format!(
        "{}/index.php/apps/richdocuments/wopi/settings?type=&access_token=token&fileId=-1",
        nextcloud.origin()
    );
    assert_eq!(
        editor
            .wopi(&session, WopiCall::Fetch { url: bad_type })
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // Injected fields override, add, and (null) remove.
    nextcloud.set_check_file_info_extra(
        FILE_ID,
        serde_json::json!({
            "PostMessageOrigin": "https://elsewhere.example",
            "FileUrl": "https://elsewhere.example/download/42",
            "UserSettings": null,
        }),
    );
    let info = editor
        .wopi(&session, WopiCall::CheckFileInfo)
        .await
        .json()
        .unwrap();
    assert_eq!(info["PostMessageOrigin"], "https://elsewhere.example");
    assert_eq!(info["FileUrl"], "https://elsewhere.example/download/42");
    assert!(info.get("UserSettings").is_none());
    assert!(info.get("SharedSettings").is_some());

    // The first save forgets the template, as richdocuments does.
    let put = WopiCall::PutFile {
        lock: None,
        body: PutBody::Bytes(b"saved".to_vec()),
    };
    assert_eq!(editor.wopi(&session, put).await.status, StatusCode::OK);
    let info = editor
        .wopi(&session, WopiCall::CheckFileInfo)
        .await
        .json()
        .unwrap();
    assert!(info.get("TemplateSource").is_none());
    assert_eq!(
        editor
            .wopi(&session, WopiCall::Fetch { url: source })
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // RenameFile: the extension is kept, names stay unique, the answer has a new token.
    let rename = |name: &str| WopiCall::RenameFile {
        lock: String::new(),
        name: name.to_owned(),
    };
    let renamed = editor.wopi(&session, rename("other")).await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text());
    let renamed = renamed.json().unwrap();
    assert_eq!(renamed["Name"], "other (2).odt");
    assert_eq!(nextcloud.name_of(FILE_ID).as_deref(), Some("other (2).odt"));
    let url = renamed["Url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}?access_token=", nextcloud.wopi_src(FILE_ID))));
    // Non-ASCII names travel UTF-7 encoded.
    let renamed = editor.wopi(&session, rename("Résumé + notes")).await;
    assert_eq!(renamed.json().unwrap()["Name"], "Résumé + notes.odt");
    assert_eq!(
        last_request(&nextcloud, &WopiOperation::RenameFile).headers["x-wopi-requestedname"],
        "R+AOk-sum+AOk- +- notes"
    );
    assert_eq!(utf7_encode("a+b~ü"), "a+-b+AH4A/A-");

    let info_body = r#"{"theme":"dark"}"#;
    let stored = editor
        .wopi(&session, WopiCall::PutUserInfo(info_body.to_owned()))
        .await;
    assert_eq!(stored.status, StatusCode::OK);
    assert_eq!(
        nextcloud.user_info_of("user-token").as_deref(),
        Some(info_body)
    );
    let info = editor
        .wopi(&session, WopiCall::CheckFileInfo)
        .await
        .json()
        .unwrap();
    assert_eq!(info["UserInfo"], info_body);
    assert_eq!(
        editor.wopi(&session, WopiCall::GetShareUrl).await.status,
        StatusCode::NOT_IMPLEMENTED
    );

    // A PutRelativeFile answer can be made to point anywhere.
    let elsewhere = "https://elsewhere.example/wopi/files/9?access_token=leak";
    nextcloud.set_put_relative_url_override(Some(elsewhere.to_owned()));
    let copy = editor
        .wopi(
            &session,
            WopiCall::PutRelativeFile {
                suggested_target: ".pdf".to_owned(),
                body: PutBody::Bytes(b"%PDF".to_vec()),
            },
        )
        .await;
    let copy = copy.json().unwrap();
    assert_eq!(copy["Url"], elsewhere);
    assert_eq!(copy["Name"], "Résumé + notes.pdf");
    nextcloud.set_put_relative_url_override(None);

    assert_eq!(
        editor.wopi(&session, WopiCall::DeleteFile).await.status,
        StatusCode::OK
    );
    assert_eq!(nextcloud.name_of(FILE_ID), None);
    assert_eq!(
        editor.wopi(&session, WopiCall::CheckFileInfo).await.status,
        StatusCode::NOT_FOUND
    );
    editor.stop().await;
    nextcloud.stop().await;
}
