//! The per-request routing pieces allocate nothing: classify, query_param, the WOPISrc key
//! and origin (`wopi_src::with_key`), the organisation lookup and hrw::pick run under a
//! counting global allocator that counts only on the calling thread.
//!
//! Its own test binary, because a `#[global_allocator]` applies to the whole binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure
#![allow(unsafe_code)] // a counting `GlobalAlloc` can only be written with unsafe

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use std::path::Path;

use http::Method;
use url::Url;

use officeswitch::config::{HealthConfig, PoolConfig, SuiteKind};
use officeswitch::discovery::Catalog;
use officeswitch::proxy::classify::{Class, classify, query_param};
use officeswitch::proxy::route::{EditorRoute, OrgTags, RouteContext};
use officeswitch::rules::RuleSet;
use officeswitch::sticky::health::Health;
use officeswitch::sticky::hrw;
use officeswitch::topology::Topology;
use officeswitch::wopi::token::{TokenKeys, TokenSecret};
use officeswitch::wopi::wopi_src;

/// Counts allocations made by threads that switched counting on.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Per thread, so tests running in parallel do not count each other's allocations.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread-locals may be gone while a thread is torn down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (ALLOCATIONS.with(Cell::get) - before, out)
}

const REQUESTS: &[(&str, &str, Option<&str>, bool)] = &[
    (
        "GET",
        "/cool/http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1/ws",
        Some("WOPISrc=http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1&compat=/ws"),
        true,
    ),
    (
        "GET",
        "/cool/ws",
        Some("WOPISrc=http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1"),
        true,
    ),
    (
        "POST",
        "/browser/61cf2b4/cool.html",
        Some("WOPISrc=http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1"),
        false,
    ),
    ("GET", "/browser/61cf2b4/bundle.js", None, false),
    (
        "GET",
        "/9.3.1-abc/web-apps/apps/api/documents/api.js",
        None,
        false,
    ),
    (
        "GET",
        "/doc/8f2b1e0c7a/c/",
        Some("EIO=4&transport=websocket&WOPISrc=http%3A%2F%2Fnc%2Fwopi%2Ffiles%2F1"),
        true,
    ),
    (
        "POST",
        "/hosting/wopi/word/edit",
        Some("wopisrc=x&usid=y"),
        false,
    ),
    (
        "GET",
        "/cache/files/data/k/output.docx/output.docx",
        Some("shardkey=k"),
        false,
    ),
    ("POST", "/cool/convert-to/pdf", None, false),
    (
        "POST",
        "/officeswitch/open/ext/docx/edit",
        Some("WOPISrc=x"),
        false,
    ),
    ("GET", "/hosting/discovery", None, false),
    ("GET", "/cool/getMetrics", None, false),
    ("GET", "/doc/..%2F..%2Finfo/info.json", None, false),
    ("DELETE", "/cool/clipboard", None, false),
];

#[test]
fn classify_query_param_and_pick_allocate_nothing() {
    let methods: Vec<(&str, Method)> = ["GET", "POST", "DELETE"]
        .into_iter()
        .map(|m| (m, m.parse().expect("method")))
        .collect();
    let nodes: Vec<String> = (1..=10)
        .map(|i| format!("http://collabora-{i}:9980/"))
        .collect();
    let key = "https://nc.example.com:443/index.php/apps/richdocuments/wopi/files/4242_oc";

    let (count, editor_requests) = allocations(|| {
        let mut editor_requests = 0;
        for &(name, path, query, upgrade) in REQUESTS {
            let method = &methods.iter().find(|(n, _)| *n == name).expect("method").1;
            if let Class::Editor(request) = classify(method, path, query, upgrade) {
                editor_requests += 1;
                if let Some(k) = request.key {
                    assert!(hrw::pick(k.as_bytes(), &nodes).is_some());
                }
            }
            if let Some(q) = query {
                std::hint::black_box(query_param(q, "WOPISrc"));
            }
        }
        assert!(hrw::pick(key.as_bytes(), &nodes[..3]).is_some());
        assert!(hrw::pick_where(key.as_bytes(), &nodes, |i| i % 2 == 0).is_some());
        editor_requests
    });
    assert_eq!(editor_requests, 9);
    assert_eq!(count, 0, "routing allocated {count} times");

    // The counter works: an allocation is seen.
    let (count, v) = allocations(|| vec![1u8; 16]);
    assert_eq!((count, v.len()), (1, 16));
}

/// Editor traffic naming a document, in the spellings browsers send.
const DOCUMENT_REQUESTS: &[(&str, &str, &str, bool)] = &[
    (
        "GET",
        "/cool/https%3A%2F%2Fnc.example.com%2Findex.php%2Fapps%2Frichdocuments%2Fwopi%2Ffiles%2F4242_ocabc123def%3Faccess_token%3Dq8Y/ws",
        "WOPISrc=https%3A%2F%2Fnc.example.com%2Findex.php%2Fapps%2Frichdocuments%2Fwopi%2Ffiles%2F4242_ocabc123def&compat=/ws",
        true,
    ),
    (
        "POST",
        "/browser/61cf2b4/cool.html",
        "WOPISrc=https%3A%2F%2Fnc.example.com%2Findex.php%2Fapps%2Frichdocuments%2Fwopi%2Ffiles%2F4242_ocabc123def&lang=de",
        false,
    ),
    (
        "GET",
        "/browser/61cf2b4/cool.html",
        "WOPISrc=https%253A%252F%252Fnc.example.com%252Fwopi%252Ffiles%252F7_oc",
        false,
    ),
    (
        "GET",
        "/cool/ws",
        "WOPISrc=https://nc.example.com/wopi/files/a%2520b+c",
        true,
    ),
    (
        "GET",
        "/doc/8f2b1e0c7a/c/",
        "EIO=4&transport=websocket&WOPISrc=http%3A%2F%2Fnc.internal%3A8080%2Fwopi%2Ffiles%2F1",
        true,
    ),
];

fn pools() -> Vec<PoolConfig> {
    [
        ("collabora", SuiteKind::Collabora),
        ("onlyoffice", SuiteKind::OnlyOffice),
    ]
    .into_iter()
    .map(|(name, kind)| PoolConfig {
        name: name.into(),
        kind,
        nodes: (1..=3)
            .map(|i| Url::parse(&format!("http://{name}-{i}:9980/")).expect("url"))
            .collect(),
        proof: Default::default(),
    })
    .collect()
}

fn rules(pools: &[PoolConfig]) -> RuleSet {
    let default =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/default.toml"))
            .expect("rules");
    let acme = "origins = [\"https://nc.example.com\", \"http://nc.internal:8080\"]\n";
    RuleSet::from_sources(
        (Path::new("default.toml"), &default),
        &[(Path::new("acme.toml"), acme)],
        pools,
    )
    .expect("rules")
}

#[test]
fn routing_decision_for_a_document_allocates_nothing() {
    let pools = pools();
    let rules = rules(&pools);
    let methods: Vec<(&str, Method)> = ["GET", "POST"]
        .into_iter()
        .map(|m| (m, m.parse().expect("method")))
        .collect();

    // What `RouteContext::editor` decides for a request naming a document: classify, read
    // the WOPISrc's origin and key, find the organisation, hash over its nodes.
    let (count, picked) = allocations(|| {
        let mut picked = 0;
        for &(name, path, query, upgrade) in DOCUMENT_REQUESTS {
            let method = &methods.iter().find(|(n, _)| *n == name).expect("method").1;
            let Class::Editor(request) = classify(method, path, Some(query), upgrade) else {
                panic!("{path}: not editor traffic");
            };
            let pool = pools
                .iter()
                .find(|p| p.kind == request.suite)
                .expect("pool");
            let raw = query_param(query, "WOPISrc").expect("WOPISrc");
            let node = wopi_src::with_key(raw, |doc| {
                let org = rules
                    .organisation_for_origin(doc.scheme, doc.host, doc.port)
                    .expect("organisation");
                let nodes = org.pinned_nodes(&pool.name).unwrap_or(&pool.nodes);
                hrw::pick(doc.key, nodes).map(|i| &nodes[i])
            })
            .expect("WOPISrc");
            std::hint::black_box(node.expect("node"));
            picked += 1;
        }
        picked
    });
    assert_eq!(picked, DOCUMENT_REQUESTS.len());
    assert_eq!(count, 0, "the routing decision allocated {count} times");
}

fn tokens() -> TokenKeys {
    TokenKeys::new(TokenSecret::from_bytes(&[7; 32]).expect("secret"), None)
}

#[test]
fn editor_route_with_officeswitch_wopi_src_allocates_nothing() {
    let pools = pools();
    let rules = Arc::new(rules(&pools));
    let catalog = Catalog::default();
    let spread: Vec<AtomicUsize> = pools.iter().map(|_| AtomicUsize::new(0)).collect();
    let tokens = tokens();
    let org_tags = OrgTags::new(Arc::clone(&rules), &tokens);
    let files_base = "https://os.example/wopi/files/";
    let health = Health::new(
        &pools,
        &HealthConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            fall: 3,
            rise: 2,
        },
    );
    let topology = Arc::new(Topology::new(pools.clone()));
    let ctx = RouteContext {
        topology: &topology,
        rules: &rules,
        catalog: &catalog,
        spread: &spread,
        tokens: &tokens,
        org_tags: &org_tags,
        files_base,
        health: &health,
    };
    let method: Method = "GET".parse().expect("method");
    // What editors carry after an open: officeswitch's own WOPISrc, encoded once.
    let file_id = tokens.file_id("acme", "https://nc.example.com:443/wopi/files/4242_oc");
    let own = format!("WOPISrc=https%3A%2F%2Fos.example%2Fwopi%2Ffiles%2F{file_id}&compat=/ws");
    let path = format!("/cool/https%3A%2F%2Fos.example%2Fwopi%2Ffiles%2F{file_id}/ws");
    let (count, target) = allocations(|| {
        let Class::Editor(request) = classify(&method, &path, Some(&own), true) else {
            panic!("not editor traffic");
        };
        ctx.editor(&request, &path, Some(&own)).expect("routed")
    });
    let EditorRoute::Document(document) = target else {
        panic!("a WebSocket of a document is a document's traffic");
    };
    assert_eq!(&*document.org, "acme");
    // The route names its pool by index and shares the organisation's name.
    assert_eq!(count, 0, "routing a WebSocket allocated {count} times");

    // Reading the file id from officeswitch's WOPISrc, as editors send it, allocates nothing.
    let spellings = [
        format!("https://os.example/wopi/files/{file_id}"),
        format!("https%3A%2F%2Fos.example%2Fwopi%2Ffiles%2F{file_id}"),
    ];
    let (count, found) = allocations(|| {
        spellings
            .iter()
            .filter(|raw| wopi_src::own_file_id(raw, files_base) == Some(file_id.as_str()))
            .count()
    });
    assert_eq!((count, found), (0, 2));

    // A host WOPISrc in editor traffic names the same document (its file id is derived).
    let (path, query) = (DOCUMENT_REQUESTS[0].1, DOCUMENT_REQUESTS[0].2);
    let Class::Editor(request) = classify(&method, path, Some(query), true) else {
        panic!("not editor traffic");
    };
    let file_of = |route: EditorRoute| match route {
        EditorRoute::Document(document) => document.file,
        EditorRoute::Node(_) => panic!("a document's traffic"),
    };
    let by_host = file_of(ctx.editor(&request, path, Some(query)).expect("routed"));
    let expected = tokens.file_id(
        "acme",
        "https://nc.example.com:443/index.php/apps/richdocuments/wopi/files/4242_ocabc123def",
    );
    let own = format!("WOPISrc=https%3A%2F%2Fos.example%2Fwopi%2Ffiles%2F{expected}");
    let by_own = file_of(ctx.editor(&request, path, Some(&own)).expect("routed"));
    assert_eq!(by_host, by_own);
}
