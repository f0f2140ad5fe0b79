//! The latency one WOPI callback gains by going through officeswitch: a CheckFileInfo
//! (token check, proof policy, re-signing with RSA 2048, JSON rewrite) and a small GetFile
//! (streamed), each against the same call made straight to the stand-in Nextcloud.
//!
//! Everything runs on loopback in this process: the stand-in Nextcloud of the integration
//! tests and a real officeswitch (`App`) on a settings file written to a temp dir. The
//! pool's only node is unreachable, so it publishes no proof key and the default proof
//! policy lets proof-less calls in: what is measured is officeswitch's own work.
//! `cargo bench --bench callback`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

#[path = "../tests/integration/support/nextcloud.rs"]
#[allow(dead_code)]
mod nextcloud;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

use officeswitch::app::{self, App, Listeners, MissingKey};
use officeswitch::config::Config;
use officeswitch::server::drain::Drain;
use officeswitch::wopi::token::{Grant, GrantKind, TokenKeys, TokenSecret};
use officeswitch::wopi::wopi_src::WopiSrc;

use nextcloud::StandInNextcloud;

/// A running officeswitch, the stand-in host behind it, and the two URLs compared.
struct Setup {
    direct_info: String,
    proxied_info: String,
    direct_get: String,
    proxied_get: String,
    _nextcloud: StandInNextcloud,
    _dir: tempfile::TempDir,
    stop: Arc<Drain>,
}

async fn setup() -> Setup {
    let nextcloud = StandInNextcloud::start().await;
    nextcloud.add_file("7_oc", "bench.odt", vec![7u8; 16 * 1024]);
    nextcloud.grant("7_oc", "bench-token");
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    // An unreachable node (port 9 on loopback: discard, closed on this machine).
    let settings = format!(
        "public_url = \"http://{addr}\"\nlisten = \"{addr}\"\nwatch_rules = false\n\
         [keys]\nproof_key = \"keys/proof.pem\"\ntoken_secret = \"keys/token.secret\"\n\
         generate_missing = true\n\
         [discovery]\nfetch_timeout_secs = 1\n\
         [[pool]]\nname = \"collabora\"\nkind = \"collabora\"\nnodes = [\"http://127.0.0.1:9/\"]\n"
    );
    std::fs::write(dir.path().join("officeswitch.toml"), settings).expect("settings");
    std::fs::create_dir(dir.path().join("rules")).expect("rules dir");
    std::fs::write(
        dir.path().join("rules/default.toml"),
        "prefer = [\"collabora\"]\n[extensions]\nodt = \"collabora\"\n",
    )
    .expect("default rules");
    std::fs::write(
        dir.path().join("rules/acme.toml"),
        format!("origins = [\"{}\"]\n", nextcloud.origin()),
    )
    .expect("org rules");
    let config = Config::from_file(&dir.path().join("officeswitch.toml")).expect("settings");
    let prepared = app::prepare(config, MissingKey::GenerateIfAllowed).expect("prepare");
    let app = App::new(prepared).await;
    let stop = app.drain().clone();
    tokio::spawn(app.run(Listeners {
        plain: Some(listener),
        tls: None,
        admin: None,
    }));

    // A token as officeswitch mints it at open time, made with the same secret.
    let secret = TokenSecret::load(&dir.path().join("keys/token.secret")).expect("secret");
    let tokens = TokenKeys::new(secret, None);
    let wopi_src = nextcloud.wopi_src("7_oc");
    let key = WopiSrc::parse(&wopi_src).expect("WOPISrc").doc_key();
    let file_id = tokens.file_id("acme", &key);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let token = tokens
        .mint(&Grant {
            kind: GrantKind::File,
            file_id: file_id.clone(),
            org: "acme".into(),
            pool: "collabora".into(),
            url: wopi_src.clone(),
            host_token: "bench-token".into(),
            expires_at: now + 3600,
            read_only: false,
        })
        .expect("mint");
    Setup {
        direct_info: format!("{wopi_src}?access_token=bench-token"),
        proxied_info: format!("http://{addr}/wopi/files/{file_id}?access_token={token}"),
        direct_get: format!("{wopi_src}/contents?access_token=bench-token"),
        proxied_get: format!("http://{addr}/wopi/files/{file_id}/contents?access_token={token}"),
        _nextcloud: nextcloud,
        _dir: dir,
        stop,
    }
}

/// GETs `url` over a kept-alive connection and reads the whole body.
async fn get(client: &Client<HttpConnector, Empty<Bytes>>, url: &str) -> usize {
    let response = client
        .get(url.parse().expect("uri"))
        .await
        .expect("response");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let body = response.into_body().collect().await.expect("body");
    body.to_bytes().len()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let setup = runtime.block_on(setup());
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    // Both paths answer before measuring.
    runtime.block_on(async {
        get(&client, &setup.direct_info).await;
        get(&client, &setup.proxied_info).await;
    });
    let mut group = c.benchmark_group("wopi callback");
    for (name, url) in [
        ("CheckFileInfo direct to Nextcloud", &setup.direct_info),
        ("CheckFileInfo through officeswitch", &setup.proxied_info),
        ("GetFile 16 KiB direct to Nextcloud", &setup.direct_get),
        ("GetFile 16 KiB through officeswitch", &setup.proxied_get),
    ] {
        group.bench_function(name, |b| b.iter(|| runtime.block_on(get(&client, url))));
    }
    group.finish();
    setup.stop.request_stop();
}

criterion_group!(benches, bench);
criterion_main!(benches);
