//! Checks of the stand-in editors themselves, so that a failing proxy test can be trusted
//! to be about the proxy: the documents they serve parse and have the shape Nextcloud
//! relies on, every fault mode does what it says, and stop/restart behave like a crashed
//! and restarted editor. Plus a round trip through the test certificates.

use std::error::Error;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use officeswitch::wopi::proof_key::{ProofKey, PublicProofKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::certs::TestCerts;
use crate::support::editor::{
    Fault, ONLYOFFICE_EDITORS, ONLYOFFICE_VERSION, StandInEditor, Suite, onlyoffice_discovery,
};
use crate::support::{fixture, trace_init};

type BoxError = Box<dyn Error + Send + Sync>;
type HttpClient = Client<HttpConnector, Empty<Bytes>>;

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
