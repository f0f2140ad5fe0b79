//! The asset cache (issue 15): versioned static files are served from memory, and nothing
//! that carries a document, a token, a cookie or a `private`/`no-store` answer, nor a path
//! without a version, is ever served from it; two versions of one path never mix.
//!
//! The stand-in editors send the caching headers the real ones do (coolwsd
//! `max-age=11059200` and `ETag: "<hash>"` on static files *and* on its token-carrying
//! page; DocService's nginx `max-age=31536000`), so "the node said cacheable" is never
//! enough. Every assertion counts what reached the node, and the metrics are this
//! instance's own, asserted exactly.

use std::net::SocketAddr;

use http::{Method, StatusCode};

use crate::metrics::{TOKEN, scrape, value};
use crate::support::client::{self, Reply, encode};
use crate::support::editor::{StandInEditor, StandInOptions, Suite};
use crate::support::nextcloud::StandInNextcloud;
use crate::support::officeswitch::OfficeSwitch;
use crate::support::trace_init;

/// The Collabora fixture's version hash, as the stand-in serves it.
const HASH: &str = "61cf2b4";

/// GETs `path` from officeswitch with `headers`.
async fn get(os: &OfficeSwitch, path: &str, headers: &[(&str, &str)]) -> Reply {
    client::send(
        Method::GET,
        &format!("http://{}{path}", os.addr),
        headers,
        b"",
    )
    .await
}

/// How many requests for exactly `path_and_query` reached `node`.
fn reached(node: &StandInEditor, path_and_query: &str) -> usize {
    node.requests()
        .iter()
        .filter(|r| r.path_and_query == path_and_query)
        .count()
}

/// GETs `path` twice (with `headers`); how many of the two reached the node. Both answers
/// must be the node's 200 and alike.
async fn twice(
    os: &OfficeSwitch,
    node: &StandInEditor,
    path: &str,
    headers: &[(&str, &str)],
) -> usize {
    let before = reached(node, path);
    let first = get(os, path, headers).await;
    let second = get(os, path, headers).await;
    assert_eq!(first.status, StatusCode::OK, "{path}: {}", first.body);
    assert_eq!(second.status, StatusCode::OK, "{path}: {}", second.body);
    assert_eq!(first.body, second.body, "{path}: both answers alike");
    reached(node, path) - before
}

/// The asset cache's sample `name` with `labels`, from this instance's admin listener.
async fn cache_metric(admin: SocketAddr, series: &str) -> f64 {
    value(
        &scrape(admin).await,
        &format!("officeswitch_asset_cache_{series}"),
    )
}

#[tokio::test]
async fn versioned_assets_are_served_from_memory_and_nothing_private_ever_is() {
    trace_init();
    let cool = StandInEditor::start_with(
        Suite::Collabora,
        StandInOptions::default()
            .static_header("private.js", "cache-control", "private, max-age=600")
            .static_header("no-store.js", "cache-control", "no-store")
            .static_header("cookie.js", "set-cookie", "session=abc; HttpOnly")
            .static_header("vary.js", "vary", "Cookie"),
    )
    .await;
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .org("acme", &[nc.origin()], "")
        .admin(TOKEN)
        .section("[cache]\nmax_bytes = 1048576\nmax_entry_bytes = 1024\n")
        .start()
        .await;
    let admin = os.admin_addr();

    // A versioned asset: the node is asked once, the repeat comes from memory with the
    // node's headers and its age.
    let asset = format!("/browser/{HASH}/images/lc_bold.svg");
    assert_eq!(
        twice(&os, &cool, &asset, &[]).await,
        1,
        "the repeat is a hit"
    );
    let hit = get(&os, &asset, &[]).await;
    assert_eq!(hit.headers["cache-control"], "max-age=11059200");
    assert_eq!(hit.headers["etag"], format!("\"{HASH}\""));
    assert_eq!(hit.headers["x-content-type-options"], "nosniff");
    assert!(hit.headers.contains_key("age"), "a hit says its age");
    assert!(
        hit.body.contains(&format!("static file {asset}")),
        "{}",
        hit.body
    );
    // The browser's validator: 304 from memory, no body.
    let revalidated = get(&os, &asset, &[("if-none-match", &format!("\"{HASH}\""))]).await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert!(revalidated.body.is_empty());
    assert_eq!(reached(&cool, &asset), 1, "hits never reach the node");

    // Two versions of one path never mix: each is its own entry, each answer its own.
    let old = "/browser/0aa1bb2/images/lc_bold.svg";
    assert_eq!(twice(&os, &cool, old, &[]).await, 1);
    let (now_body, old_body) = (
        get(&os, &asset, &[]).await.body,
        get(&os, old, &[]).await.body,
    );
    assert!(
        now_body.contains(&format!("/browser/{HASH}/")),
        "{now_body}"
    );
    assert!(old_body.contains("/browser/0aa1bb2/"), "{old_body}");
    assert_ne!(now_body, old_body);

    // Encodings are separate entries: a gzip answer never reaches a client that did not ask.
    let gzip = [("accept-encoding", "gzip, deflate, br")];
    assert_eq!(
        twice(&os, &cool, &asset, &gzip).await,
        1,
        "a variant of its own"
    );

    // Never from memory: a path without a version, the token-carrying editor page (which
    // coolwsd marks cacheable), a request naming a document or carrying a token, ranges,
    // and answers that are private, not to be stored, set a cookie or vary on more.
    let never: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/browser/dist/images/lc_bold.svg".into(), vec![]),
        (format!("/browser/{HASH}/cool.html"), vec![]),
        (
            format!(
                "/browser/{HASH}/images/x.svg?WOPISrc={}",
                encode(&nc.wopi_src("4242"))
            ),
            vec![],
        ),
        (
            format!("/browser/{HASH}/images/y.svg?access_token=secret"),
            vec![],
        ),
        (
            format!("/browser/{HASH}/images/range.svg"),
            vec![("range", "bytes=0-")],
        ),
        (format!("/browser/{HASH}/private.js"), vec![]),
        (format!("/browser/{HASH}/no-store.js"), vec![]),
        (format!("/browser/{HASH}/cookie.js"), vec![]),
        (format!("/browser/{HASH}/vary.js"), vec![]),
        // Stored only from a request without cookies: the node may personalise.
        (
            format!("/browser/{HASH}/with-cookie.js"),
            vec![("cookie", "oc_sessionPassphrase=x")],
        ),
    ];
    for (path, headers) in &never {
        let before = reached(&cool, path);
        for _ in 0..2 {
            let reply = get(&os, path, headers).await;
            assert!(
                reply.status.is_success(),
                "{path}: {} {}",
                reply.status,
                reply.body
            );
        }
        assert_eq!(
            reached(&cool, path) - before,
            2,
            "{path} must reach the node each time"
        );
    }

    // Larger than max_entry_bytes (the page's real script): streamed on whole, not kept.
    let large = format!("/browser/{HASH}/bundle.js");
    assert_eq!(twice(&os, &cool, &large, &[]).await, 2, "too large to keep");
    assert!(get(&os, &large, &[]).await.body.len() > 1024);

    // This instance's figures, exactly. Hits: the asset's repeat, its second GET and the
    // 304; the old version's repeat; one more GET of each; the gzip variant's repeat.
    // Stores: the asset, the old version, the gzip variant.
    assert_eq!(
        cache_metric(admin, "lookups_total{result=\"hit\"}").await,
        7.0
    );
    // Misses: the three stored, then two each for the five refused and the large file.
    assert_eq!(
        cache_metric(admin, "lookups_total{result=\"miss\"}").await,
        3.0 + 10.0 + 3.0
    );
    assert_eq!(cache_metric(admin, "stores_total").await, 3.0);
    assert_eq!(
        cache_metric(admin, "refusals_total{reason=\"too_large\"}").await,
        3.0
    );
    assert_eq!(cache_metric(admin, "entries").await, 3.0);
    assert_eq!(
        cache_metric(admin, "refusals_total{reason=\"private\"}").await,
        2.0
    );
    assert_eq!(
        cache_metric(admin, "refusals_total{reason=\"no_store\"}").await,
        2.0
    );
    assert_eq!(
        cache_metric(admin, "refusals_total{reason=\"set_cookie\"}").await,
        2.0
    );
    assert_eq!(
        cache_metric(admin, "refusals_total{reason=\"vary\"}").await,
        2.0
    );
    assert_eq!(
        cache_metric(admin, "refusals_total{reason=\"request_credentials\"}").await,
        2.0
    );
    assert!(cache_metric(admin, "bytes").await > 0.0);
    assert_eq!(cache_metric(admin, "capacity_bytes").await, 1_048_576.0);
}
