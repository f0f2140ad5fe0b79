//! Discovery costs: parsing an editor's document, merging two pools, rendering the result.
//!
//! These run on every refresh (not per request: requests are served a pre-rendered
//! document), so the numbers bound how often refreshing is affordable.
//! `cargo bench --bench discovery`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

#[path = "../tests/integration/support/editor.rs"]
#[allow(dead_code)]
mod editor;

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use url::Url;

use officeswitch::config::{PoolConfig, SuiteKind};
use officeswitch::discovery::merge::{PoolDiscovery, merge};
use officeswitch::discovery::{Discovery, ProofKeyPair};
use officeswitch::rules::RuleSet;
use officeswitch::wopi::proof_key::ProofKey;

fn inputs() -> (Vec<u8>, String, ProofKeyPair, RuleSet) {
    let collabora = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/collabora-discovery-code-61cf2b4.xml"
    ))
    .expect("fixture");
    let key = ProofKey::generate().expect("key").public().clone();
    let onlyoffice = editor::onlyoffice_discovery("http://127.0.0.1:8000", &key);
    let pools: Vec<PoolConfig> = [
        ("collabora", SuiteKind::Collabora),
        ("onlyoffice", SuiteKind::OnlyOffice),
    ]
    .into_iter()
    .map(|(name, kind)| PoolConfig {
        name: name.into(),
        kind,
        nodes: vec![],
        proof: Default::default(),
    })
    .collect();
    let rules =
        RuleSet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"), &pools).expect("rules");
    let keys = ProofKeyPair {
        current: key.clone(),
        old: key,
    };
    (collabora, onlyoffice, keys, rules)
}

fn discovery(c: &mut Criterion) {
    let (collabora, onlyoffice, keys, rules) = inputs();
    c.bench_function("parse collabora discovery (30 KB)", |b| {
        b.iter(|| Discovery::parse(std::hint::black_box(&collabora)).expect("parse"))
    });
    c.bench_function("parse onlyoffice discovery", |b| {
        b.iter(|| Discovery::parse(std::hint::black_box(onlyoffice.as_bytes())).expect("parse"))
    });
    let cool = Discovery::parse(&collabora).expect("parse");
    let oo = Discovery::parse(onlyoffice.as_bytes()).expect("parse");
    let cool_node = Url::parse("http://127.0.0.1:9980/").expect("url");
    let oo_node = Url::parse("http://127.0.0.1:8000/").expect("url");
    let public = Url::parse("https://office.example.org/").expect("url");
    let pools = [
        PoolDiscovery {
            pool: "collabora",
            node: &cool_node,
            discovery: &cool,
        },
        PoolDiscovery {
            pool: "onlyoffice",
            node: &oo_node,
            discovery: &oo,
        },
    ];
    c.bench_function("merge two pools", |b| {
        b.iter(|| merge(std::hint::black_box(&pools), &rules, &public, &keys))
    });
    let merged = merge(&pools, &rules, &public, &keys);
    c.bench_function("render merged discovery", |b| {
        b.iter(|| merged.discovery.to_xml())
    });
}

criterion_group!(benches, discovery);
criterion_main!(benches);
