//! Token costs: every editor WOPI call is checked, every open and every rewritten host URL
//! mints, and routing derives a file id for each host `WOPISrc` it sees.
//!
//! They must stay a few microseconds: a document open mints a handful of tokens and a busy
//! editor node makes hundreds of WOPI calls a second. `cargo bench --bench token`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use officeswitch::wopi::token::{Grant, GrantKind, TokenKeys, TokenSecret};

/// A Nextcloud `WOPISrc` as richdocuments builds it.
const WOPI_SRC: &str =
    "https://nc.example.com:443/index.php/apps/richdocuments/wopi/files/4242_ocabc123def";
/// A Nextcloud access token (32 random characters).
const HOST_TOKEN: &str = "q8YtZ0xZ1yAbCdEfGhIjKlMnOpQrStUv";
/// Checks happen "now"; tokens expire an hour later.
const NOW: u64 = 1_750_000_000;

fn bench(c: &mut Criterion) {
    let keys = TokenKeys::new(
        TokenSecret::from_bytes(&[7; 32]).expect("secret"),
        Some(TokenSecret::from_bytes(&[8; 32]).expect("old secret")),
    );
    let grant = Grant {
        kind: GrantKind::File,
        file_id: keys.file_id("acme", WOPI_SRC),
        org: "acme".into(),
        pool: "collabora".into(),
        url: WOPI_SRC.into(),
        host_token: HOST_TOKEN.into(),
        expires_at: NOW + 3600,
        read_only: false,
    };
    let token = keys.mint(&grant).expect("mint");
    // One character changed in the middle of the signature: refused after trying both keys.
    let mut forged = token.clone().into_bytes();
    let at = token.len() - 20;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    assert!(keys.check(&forged, &grant.file_id, NOW).is_err());

    c.bench_function("token mint (file)", |b| {
        b.iter(|| keys.mint(black_box(&grant)))
    });
    c.bench_function("token check (valid)", |b| {
        b.iter(|| keys.check(black_box(&token), black_box(&grant.file_id), NOW))
    });
    c.bench_function("token check (forged, old secret tried too)", |b| {
        b.iter(|| keys.check(black_box(&forged), black_box(&grant.file_id), NOW))
    });
    c.bench_function("file_id", |b| {
        b.iter(|| keys.file_id(black_box("acme"), black_box(WOPI_SRC)))
    });
    println!("token length: {} bytes", token.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
