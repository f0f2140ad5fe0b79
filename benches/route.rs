//! Per-request routing costs: classifying a request, reading its document key, and picking
//! a node by rendezvous hashing.
//!
//! These run on every request (every asset, every WebSocket, every download), so they must
//! stay well under a microsecond and allocate nothing (`tests/alloc.rs` checks the latter).
//! `cargo bench --bench route`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use url::Url;

use officeswitch::config::{HealthConfig, PoolConfig, SuiteKind};
use officeswitch::discovery::Catalog;
use officeswitch::proxy::classify::{Class, classify, query_param};
use officeswitch::proxy::route::{OrgTags, RouteContext};
use officeswitch::rules::RuleSet;
use officeswitch::sticky::health::Health;
use officeswitch::sticky::hrw;
use officeswitch::topology::Topology;
use officeswitch::wopi::token::{TokenKeys, TokenSecret};
use officeswitch::wopi::wopi_src;

/// A Collabora WebSocket upgrade as browsers send it.
const WS_PATH: &str = "/cool/https%3A%2F%2Fnc.example.com%2Findex.php%2Fapps%2Frichdocuments%2Fwopi%2Ffiles%2F4242_ocabc123def%3Faccess_token%3Dq8YtZ0xZ1y%26access_token_ttl%3D0/ws";
const WS_QUERY: &str = "WOPISrc=https%3A%2F%2Fnc.example.com%2Findex.php%2Fapps%2Frichdocuments%2Fwopi%2Ffiles%2F4242_ocabc123def&compat=/ws";
/// An OnlyOffice versioned static file.
const ASSET_PATH: &str = "/9.3.1-abc123/sdkjs/word/sdk-all-min.js";
/// Collabora's editor page.
const PAGE_PATH: &str = "/browser/61cf2b4/cool.html";
const PAGE_QUERY: &str = "WOPISrc=https%3A%2F%2Fnc.example.com%2Findex.php%2Fapps%2Frichdocuments%2Fwopi%2Ffiles%2F4242_ocabc123def&lang=de&closebutton=1&revisionhistory=1";
/// An OnlyOffice socket.io query, the key last.
const SOCKET_QUERY: &str = "EIO=4&transport=websocket&sid=Yx2vW1AbC&WOPISrc=https%3A%2F%2Fnc.example.com%2Findex.php%2Fapps%2Frichdocuments%2Fwopi%2Ffiles%2F4242_ocabc123def";
/// A document key as `WopiSrc::doc_key` gives it.
const DOC_KEY: &str =
    "https://nc.example.com:443/index.php/apps/richdocuments/wopi/files/4242_ocabc123def";

fn bench(c: &mut Criterion) {
    c.bench_function("classify websocket (collabora)", |b| {
        b.iter(|| {
            classify(
                black_box(&Method::GET),
                black_box(WS_PATH),
                black_box(Some(WS_QUERY)),
                black_box(true),
            )
        })
    });
    c.bench_function("classify asset (onlyoffice, versioned)", |b| {
        b.iter(|| {
            classify(
                black_box(&Method::GET),
                black_box(ASSET_PATH),
                black_box(None),
                black_box(false),
            )
        })
    });
    c.bench_function("classify page (collabora)", |b| {
        b.iter(|| {
            classify(
                black_box(&Method::POST),
                black_box(PAGE_PATH),
                black_box(Some(PAGE_QUERY)),
                black_box(false),
            )
        })
    });
    c.bench_function("query_param WOPISrc (last of 4)", |b| {
        b.iter(|| query_param(black_box(SOCKET_QUERY), black_box("WOPISrc")))
    });

    let three: Vec<String> = (1..=3)
        .map(|i| format!("http://collabora-{i}:9980/"))
        .collect();
    let ten: Vec<String> = (1..=10)
        .map(|i| format!("http://collabora-{i}:9980/"))
        .collect();
    c.bench_function("hrw pick over 3 nodes", |b| {
        b.iter(|| hrw::pick(black_box(DOC_KEY.as_bytes()), black_box(&three)))
    });
    c.bench_function("hrw pick over 10 nodes", |b| {
        b.iter(|| hrw::pick(black_box(DOC_KEY.as_bytes()), black_box(&ten)))
    });
    let raw = query_param(WS_QUERY, "WOPISrc").expect("WOPISrc");
    c.bench_function("wopi_src with_key (encoded once)", |b| {
        b.iter(|| wopi_src::with_key(black_box(raw), |doc| doc.key.len()))
    });
    full_route(c);
}

/// classify + route of a WebSocket upgrade, as `Proxy::handle` runs them: parse and
/// canonicalise the WOPISrc, find the organisation, hash over three nodes.
fn full_route(c: &mut Criterion) {
    let pools: Vec<PoolConfig> = [
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
    .collect();
    let default =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/default.toml"))
            .expect("rules");
    let org = "origins = [\"https://nc.example.com\"]\n";
    let rules = Arc::new(
        RuleSet::from_sources(
            (Path::new("default.toml"), &default),
            &[(Path::new("acme.toml"), org)],
            &pools,
        )
        .expect("rules"),
    );
    let catalog = Catalog::default();
    let spread: Vec<AtomicUsize> = pools.iter().map(|_| AtomicUsize::new(0)).collect();
    let health = Health::new(
        &pools,
        &HealthConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            fall: 3,
            rise: 2,
        },
    );
    let tokens = TokenKeys::new(TokenSecret::from_bytes(&[7; 32]).expect("secret"), None);
    let org_tags = OrgTags::new(Arc::clone(&rules), &tokens);
    let topology = Arc::new(Topology::new(pools.clone()));
    let ctx = RouteContext {
        topology: &topology,
        rules: &rules,
        catalog: &catalog,
        spread: &spread,
        tokens: &tokens,
        org_tags: &org_tags,
        files_base: "https://os.example/wopi/files/",
        health: &health,
    };
    // What editors carry after an open: officeswitch's WOPISrc, encoded once.
    let file_id = tokens.file_id("acme", DOC_KEY);
    let own_query =
        format!("WOPISrc=https%3A%2F%2Fos.example%2Fwopi%2Ffiles%2F{file_id}&compat=/ws");
    let own_path = format!("/cool/https%3A%2F%2Fos.example%2Fwopi%2Ffiles%2F{file_id}/ws");
    c.bench_function(
        "classify + route websocket, officeswitch WOPISrc (3 nodes)",
        |b| {
            b.iter(|| {
                let class = classify(
                    &Method::GET,
                    black_box(&own_path),
                    black_box(Some(&own_query)),
                    true,
                );
                let Class::Editor(request) = class else {
                    panic!("not editor traffic")
                };
                ctx.editor(&request, &own_path, Some(&own_query))
                    .expect("routed")
            })
        },
    );
    // The routing decision alone, as `RouteContext::editor` makes it before building its
    // owned `Target`: classify, WOPISrc origin and key, organisation, rendezvous pick.
    c.bench_function("routing decision websocket (collabora, 3 nodes)", |b| {
        b.iter(|| {
            let class = classify(
                &Method::GET,
                black_box(WS_PATH),
                black_box(Some(WS_QUERY)),
                true,
            );
            let Class::Editor(request) = class else {
                panic!("not editor traffic")
            };
            let pool = pools
                .iter()
                .find(|p| p.kind == request.suite)
                .expect("pool");
            let raw = query_param(black_box(WS_QUERY), "WOPISrc").expect("WOPISrc");
            wopi_src::with_key(raw, |doc| {
                let org = rules
                    .organisation_for_origin(doc.scheme, doc.host, doc.port)
                    .expect("organisation");
                let nodes = org.pinned_nodes(&pool.name).unwrap_or(&pool.nodes);
                hrw::pick(doc.key, nodes).map(|i| &nodes[i])
            })
            .expect("WOPISrc")
            .expect("node")
            .port()
        })
    });
    c.bench_function("classify + route websocket, host WOPISrc (3 nodes)", |b| {
        b.iter(|| {
            let class = classify(
                &Method::GET,
                black_box(WS_PATH),
                black_box(Some(WS_QUERY)),
                true,
            );
            let Class::Editor(request) = class else {
                panic!("not editor traffic")
            };
            ctx.editor(&request, WS_PATH, Some(WS_QUERY))
                .expect("routed")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
