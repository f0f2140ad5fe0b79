//! WOPI proof costs: signing a forwarded call, verifying an editor's call, building the bytes.
//!
//! officeswitch verifies the editor's proof and signs a new one on every WOPI call it
//! forwards (CheckFileInfo, GetFile, PutFile, locks...), so these two RSA operations bound
//! the CPU a WOPI call costs. `cargo bench --bench proof`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};

use officeswitch::discovery::ProofKeyPair;
use officeswitch::wopi::proof::{self, ProofHeaders, Signer};
use officeswitch::wopi::proof_key::ProofKey;

/// A CheckFileInfo URL as officeswitch forwards it to Nextcloud.
const URL: &str = "https://nc.example.com/index.php/apps/richdocuments/wopi/files/4242_ocabc123def?access_token=q8YtZ0xZ1yQm3r7LkP2vN9sT4uW6xA8bC0dE2fG4hJ6&access_token_ttl=0";
const TOKEN: &str = "q8YtZ0xZ1yQm3r7LkP2vN9sT4uW6xA8bC0dE2fG4hJ6";

fn pair_of(key: &ProofKey) -> ProofKeyPair {
    ProofKeyPair {
        current: key.public().clone(),
        old: key.public().clone(),
    }
}

fn bench(c: &mut Criterion) {
    let ticks = proof::ticks_now();
    c.bench_function("proof message build", |b| {
        b.iter(|| proof::message(black_box(TOKEN), black_box(URL), black_box(ticks)))
    });

    let key = Arc::new(ProofKey::generate().expect("key"));
    let signer = Signer::new(Arc::clone(&key), None);
    c.bench_function("proof sign (RSA 2048, no old key)", |b| {
        b.iter(|| {
            signer
                .sign(black_box(TOKEN), black_box(URL), black_box(ticks))
                .expect("sign")
        })
    });
    let old = Arc::new(ProofKey::generate().expect("key"));
    let rotating = Signer::new(Arc::clone(&key), Some(old));
    c.bench_function("proof sign (RSA 2048, current + old key)", |b| {
        b.iter(|| {
            rotating
                .sign(black_box(TOKEN), black_box(URL), black_box(ticks))
                .expect("sign")
        })
    });

    let signed = signer.sign(TOKEN, URL, ticks).expect("sign");
    let headers = ProofHeaders {
        timestamp: Some(signed.timestamp.clone()),
        proof: Some(signed.proof.clone()),
        proof_old: Some(signed.proof_old.clone()),
    };
    let matching = pair_of(&key);
    let others: Vec<ProofKeyPair> = (0..2)
        .map(|_| pair_of(&ProofKey::generate().expect("key")))
        .collect();
    c.bench_function("proof verify valid (1 pair)", |b| {
        b.iter(|| {
            proof::verify(
                black_box(&headers),
                black_box(TOKEN),
                black_box(URL),
                black_box(&[&matching]),
                ticks,
            )
            .expect("valid")
        })
    });
    let three = [&others[0], &others[1], &matching];
    c.bench_function("proof verify valid (3 pairs, last matches)", |b| {
        b.iter(|| {
            proof::verify(
                black_box(&headers),
                black_box(TOKEN),
                black_box(URL),
                black_box(&three),
                ticks,
            )
            .expect("valid")
        })
    });
    c.bench_function("proof verify invalid (3 pairs)", |b| {
        b.iter(|| {
            proof::verify(
                black_box(&headers),
                black_box(TOKEN),
                black_box("https://nc.example.com/other"),
                black_box(&three),
                ticks,
            )
            .expect_err("invalid")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
