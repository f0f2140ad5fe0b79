//! The pin store's contract, written once and run against both stores: the in-process
//! [`MemoryStore`] and the [`RedisStore`] on a real `redis-server` ([`RedisServer`]).
//!
//! Each contract test takes two handles on one store, `a` and `b`: for memory the same
//! store twice, for Redis two `RedisStore`s on one server, as two officeswitch instances
//! would have. Then come the Redis-only properties: the wire format other instances read, a
//! Redis that is down or hangs costs at most the timeout, a Redis that comes back is used
//! again without reopening the store, a value that is not a pin does not block its key, and
//! a Sentinel-managed master followed through a failover.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use officeswitch::sticky::store::{MemoryStore, Pin, PinStore, RedisStore, StoreError};

use crate::support::redis::RedisServer;

/// `pins.timeout_ms` in these tests.
const TIMEOUT: Duration = Duration::from_millis(250);

/// A TTL no test outlives.
const LONG: Duration = Duration::from_secs(600);

/// A 32-character file id, as officeswitch makes them.
fn key(name: &str, i: usize) -> String {
    format!("{name:-<24}{i:08}")
}

fn pin(pool: &str, n: usize) -> Pin {
    Pin::new(pool, format!("http://{pool}-{n}.test:9980/"))
}

type Pair = (Arc<dyn PinStore>, Arc<dyn PinStore>);

fn memory_pair() -> Pair {
    let store: Arc<dyn PinStore> = Arc::new(MemoryStore::new());
    (store.clone(), store)
}

fn redis_store(server: &RedisServer) -> Arc<dyn PinStore> {
    Arc::new(RedisStore::open(&server.url(), TIMEOUT).expect("open the Redis store"))
}

/// Generates, for each contract test, `memory::NAME` and `redis::NAME` (each with its own
/// server).
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::memory_pair()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = crate::support::redis::RedisServer::start().await;
                    let pair = (super::redis_store(&server), super::redis_store(&server));
                    super::$name(pair).await;
                }
            )*
        }
    };
}

contract!(
    get_of_a_missing_key_is_none,
    create_then_get,
    concurrent_creates_agree_on_the_first_writer,
    replace_only_from_the_current_pin,
    concurrent_replaces_agree,
    ttl_expires_and_get_refreshes,
    release_node_removes_exactly_its_pins,
    counts_live_pins_per_node,
    drain_marks_are_seen_by_every_handle_until_cleared,
);

async fn drain_marks_are_seen_by_every_handle_until_cleared((a, b): Pair) {
    assert_eq!(b.draining().await.unwrap(), vec![]);
    a.set_draining(&pin("cool", 2), true).await.unwrap();
    a.set_draining(&pin("cool", 1), true).await.unwrap();
    // Marking twice is one mark; pins on the node are untouched (they are not marks).
    b.set_draining(&pin("cool", 1), true).await.unwrap();
    a.create(&key("doc", 0), &pin("cool", 1), LONG)
        .await
        .unwrap();
    assert_eq!(
        b.draining().await.unwrap(),
        vec![pin("cool", 1), pin("cool", 2)]
    );
    assert_eq!(a.counts().await.unwrap(), vec![(pin("cool", 1), 1)]);
    b.set_draining(&pin("cool", 1), false).await.unwrap();
    // Clearing a mark that is not there is no error.
    b.set_draining(&pin("onlyoffice", 1), false).await.unwrap();
    assert_eq!(a.draining().await.unwrap(), vec![pin("cool", 2)]);
}

async fn get_of_a_missing_key_is_none((a, b): Pair) {
    assert_eq!(a.get(&key("missing", 0), LONG).await.unwrap(), None);
    assert_eq!(b.get(&key("missing", 1), LONG).await.unwrap(), None);
    assert!(["memory", "redis"].contains(&a.kind()));
}

async fn create_then_get((a, b): Pair) {
    let k = key("create", 0);
    assert_eq!(
        a.create(&k, &pin("cool", 1), LONG).await.unwrap(),
        pin("cool", 1)
    );
    assert_eq!(a.get(&k, LONG).await.unwrap(), Some(pin("cool", 1)));
    // The other instance sees it, and cannot overwrite it with a create.
    assert_eq!(b.get(&k, LONG).await.unwrap(), Some(pin("cool", 1)));
    assert_eq!(
        b.create(&k, &pin("cool", 2), LONG).await.unwrap(),
        pin("cool", 1)
    );
    assert_eq!(a.get(&k, LONG).await.unwrap(), Some(pin("cool", 1)));
    // Other keys are untouched.
    assert_eq!(a.get(&key("create", 1), LONG).await.unwrap(), None);
}

async fn concurrent_creates_agree_on_the_first_writer((a, b): Pair) {
    const KEYS: usize = 200;
    let mut tasks = Vec::new();
    for i in 0..KEYS {
        let k = key("race", i);
        let (a, b) = (a.clone(), b.clone());
        let ka = k.clone();
        let ta = tokio::spawn(async move { a.create(&ka, &pin("cool", 1), LONG).await });
        let tb = tokio::spawn(async move { b.create(&k, &pin("cool", 2), LONG).await });
        tasks.push((i, ta, tb));
    }
    let mut wins = [0; 2];
    for (i, ta, tb) in tasks {
        let ra = ta.await.unwrap().unwrap();
        let rb = tb.await.unwrap().unwrap();
        assert_eq!(
            ra, rb,
            "key {i}: both writers must get the one pin in force"
        );
        assert_eq!(
            a.get(&key("race", i), LONG).await.unwrap(),
            Some(ra.clone())
        );
        wins[usize::from(ra == pin("cool", 2))] += 1;
    }
    assert_eq!(wins[0] + wins[1], KEYS, "{wins:?}");
}

async fn replace_only_from_the_current_pin((a, b): Pair) {
    let k = key("replace", 0);
    a.create(&k, &pin("cool", 1), LONG).await.unwrap();
    // From a pin that is not the current one: nothing changes, the current one comes back.
    let stale = b.replace(&k, &pin("cool", 9), &pin("cool", 2), LONG).await;
    assert_eq!(stale.unwrap(), pin("cool", 1));
    assert_eq!(a.get(&k, LONG).await.unwrap(), Some(pin("cool", 1)));
    // From the current one: replaced, for everyone.
    let moved = b.replace(&k, &pin("cool", 1), &pin("cool", 2), LONG).await;
    assert_eq!(moved.unwrap(), pin("cool", 2));
    assert_eq!(a.get(&k, LONG).await.unwrap(), Some(pin("cool", 2)));
    // The old pin is no longer current: a late re-pin from it loses.
    let late = a.replace(&k, &pin("cool", 1), &pin("cool", 3), LONG).await;
    assert_eq!(late.unwrap(), pin("cool", 2));
    // A key without a pin (expired, released) counts as still the old one.
    let k2 = key("replace", 1);
    let fresh = a.replace(&k2, &pin("cool", 1), &pin("cool", 4), LONG).await;
    assert_eq!(fresh.unwrap(), pin("cool", 4));
    assert_eq!(b.get(&k2, LONG).await.unwrap(), Some(pin("cool", 4)));
}

async fn concurrent_replaces_agree((a, b): Pair) {
    const KEYS: usize = 100;
    for i in 0..KEYS {
        a.create(&key("repin", i), &pin("cool", 1), LONG)
            .await
            .unwrap();
    }
    // Both instances see node 1 fail at once and move every document, each elsewhere.
    let mut tasks = Vec::new();
    for i in 0..KEYS {
        let (a, b) = (a.clone(), b.clone());
        let (ka, kb) = (key("repin", i), key("repin", i));
        let ta =
            tokio::spawn(
                async move { a.replace(&ka, &pin("cool", 1), &pin("cool", 2), LONG).await },
            );
        let tb =
            tokio::spawn(
                async move { b.replace(&kb, &pin("cool", 1), &pin("cool", 3), LONG).await },
            );
        tasks.push((i, ta, tb));
    }
    for (i, ta, tb) in tasks {
        let ra = ta.await.unwrap().unwrap();
        let rb = tb.await.unwrap().unwrap();
        assert_eq!(ra, rb, "key {i}: both re-pins must end on one node");
        assert_ne!(ra, pin("cool", 1));
        assert_eq!(b.get(&key("repin", i), LONG).await.unwrap(), Some(ra));
    }
}

async fn ttl_expires_and_get_refreshes((a, b): Pair) {
    let ttl = Duration::from_millis(1000);
    let (read, unread) = (key("ttl", 0), key("ttl", 1));
    a.create(&read, &pin("cool", 1), ttl).await.unwrap();
    a.create(&unread, &pin("cool", 1), ttl).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // A read extends the pin's life to a full TTL from now.
    assert_eq!(b.get(&read, ttl).await.unwrap(), Some(pin("cool", 1)));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        a.get(&unread, ttl).await.unwrap(),
        None,
        "expired after its TTL"
    );
    assert_eq!(
        a.get(&read, ttl).await.unwrap(),
        Some(pin("cool", 1)),
        "refreshed"
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        a.get(&read, ttl).await.unwrap(),
        None,
        "expired a TTL after its last read"
    );
    // An expired key is free again.
    assert_eq!(
        b.create(&read, &pin("cool", 2), LONG).await.unwrap(),
        pin("cool", 2)
    );
    assert_eq!(a.counts().await.unwrap(), vec![(pin("cool", 2), 1)]);
}

async fn release_node_removes_exactly_its_pins((a, b): Pair) {
    let failed = pin("cool", 1);
    // Same node URL in another pool: not the failed node.
    let other_pool = Pin::new("other", failed.node.clone());
    for i in 0..25 {
        a.create(&key("failed", i), &failed, LONG).await.unwrap();
    }
    for i in 0..7 {
        a.create(&key("healthy", i), &pin("cool", 2), LONG)
            .await
            .unwrap();
        a.create(&key("otherpool", i), &other_pool, LONG)
            .await
            .unwrap();
    }
    assert_eq!(b.release_node("cool", &failed.node).await.unwrap(), 25);
    for i in 0..25 {
        assert_eq!(a.get(&key("failed", i), LONG).await.unwrap(), None);
    }
    for i in 0..7 {
        assert_eq!(
            a.get(&key("healthy", i), LONG).await.unwrap(),
            Some(pin("cool", 2))
        );
        assert_eq!(
            a.get(&key("otherpool", i), LONG).await.unwrap(),
            Some(other_pool.clone())
        );
    }
    assert_eq!(b.release_node("cool", &failed.node).await.unwrap(), 0);
    // The released documents are re-pinned on their next access, by a plain create.
    assert_eq!(
        a.create(&key("failed", 0), &pin("cool", 2), LONG)
            .await
            .unwrap(),
        pin("cool", 2)
    );
}

async fn counts_live_pins_per_node((a, b): Pair) {
    assert_eq!(a.counts().await.unwrap(), vec![]);
    for i in 0..12 {
        a.create(&key("n1", i), &pin("cool", 1), LONG)
            .await
            .unwrap();
    }
    for i in 0..3 {
        b.create(&key("n2", i), &pin("cool", 2), LONG)
            .await
            .unwrap();
        b.create(&key("oo", i), &pin("onlyoffice", 1), LONG)
            .await
            .unwrap();
    }
    // Expired pins are not counted.
    a.create(&key("short", 0), &pin("cool", 3), Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let expected = vec![
        (pin("cool", 1), 12),
        (pin("cool", 2), 3),
        (pin("onlyoffice", 1), 3),
    ];
    assert_eq!(a.counts().await.unwrap(), expected);
    assert_eq!(b.counts().await.unwrap(), expected);
    // Moving one document moves one count.
    b.replace(&key("n1", 0), &pin("cool", 1), &pin("cool", 2), LONG)
        .await
        .unwrap();
    assert_eq!(
        a.counts().await.unwrap(),
        vec![
            (pin("cool", 1), 11),
            (pin("cool", 2), 4),
            (pin("onlyoffice", 1), 3),
        ]
    );
}

/// Many pins: `counts` and `release_node` walk the keyspace in several SCAN batches.
#[tokio::test]
async fn redis_counts_and_release_span_scan_batches() {
    let server = RedisServer::start().await;
    // A generous timeout: the test is about SCAN, not about 2500 inserts on a busy machine.
    let store: Arc<dyn PinStore> =
        Arc::new(RedisStore::open(&server.url(), Duration::from_secs(10)).unwrap());
    const N: usize = 2500;
    let creates = futures_util::stream::iter(0..N).map(|i| {
        let store = store.clone();
        async move {
            let p = pin("cool", i % 2);
            store.create(&key("many", i), &p, LONG).await
        }
    });
    let results: Vec<_> = creates.buffer_unordered(50).collect().await;
    for r in results {
        r.unwrap();
    }
    // Unrelated keys in the same database are neither counted nor released.
    server.command("SET unrelated:key x").await;
    assert_eq!(
        store.counts().await.unwrap(),
        vec![
            (pin("cool", 0), N as u64 / 2),
            (pin("cool", 1), N as u64 / 2)
        ]
    );
    assert_eq!(
        store
            .release_node("cool", &pin("cool", 0).node)
            .await
            .unwrap(),
        N as u64 / 2
    );
    assert_eq!(
        store.counts().await.unwrap(),
        vec![(pin("cool", 1), N as u64 / 2)]
    );
    assert!(server.command("GET unrelated:key").await.contains('x'));
}

/// What other instances (and operators with redis-cli) read: `officeswitch:pin:{id}` =
/// `pool\nnode`, with a TTL in milliseconds that a read renews.
#[tokio::test]
async fn redis_wire_format() {
    let server = RedisServer::start().await;
    let store = redis_store(&server);
    let k = key("wire", 0);
    let p = pin("cool", 1);
    store
        .create(&k, &p, Duration::from_secs(100))
        .await
        .unwrap();
    let raw = server.command(&format!("GET officeswitch:pin:{k}")).await;
    let value = format!("{}\n{}", p.pool, p.node);
    assert_eq!(raw, format!("${}\r\n{value}\r\n", value.len()));
    let pttl = |reply: String| -> i64 {
        reply
            .trim()
            .trim_start_matches(':')
            .parse()
            .unwrap_or_else(|_| panic!("PTTL reply {reply:?}"))
    };
    let ttl = pttl(server.command(&format!("PTTL officeswitch:pin:{k}")).await);
    assert!((90_000..=100_000).contains(&ttl), "{ttl}");
    store.get(&k, Duration::from_secs(500)).await.unwrap();
    let ttl = pttl(server.command(&format!("PTTL officeswitch:pin:{k}")).await);
    assert!(
        (490_000..=500_000).contains(&ttl),
        "renewed by the read: {ttl}"
    );
}

/// A value under the pin prefix that is not a pin is reported (without its content) and
/// removed, so the next request re-pins rather than the key being blocked for good.
#[tokio::test]
async fn redis_value_that_is_not_a_pin_is_reported_and_cleared() {
    let server = RedisServer::start().await;
    let store = redis_store(&server);
    let k = key("corrupt", 0);
    server
        .command(&format!("SET officeswitch:pin:{k} garbage-without-newline"))
        .await;
    match store.get(&k, LONG).await {
        Err(e @ StoreError::Corrupt(_)) => assert!(!e.to_string().contains("garbage"), "{e}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(store.get(&k, LONG).await.unwrap(), None);
    assert_eq!(
        store.create(&k, &pin("cool", 1), LONG).await.unwrap(),
        pin("cool", 1)
    );
    // counts skips such values rather than failing.
    server
        .command(&format!("SET officeswitch:pin:{} junk", key("corrupt", 1)))
        .await;
    assert_eq!(store.counts().await.unwrap(), vec![(pin("cool", 1), 1)]);
}

/// Runs every operation once and returns how long the slowest took; each must fail.
async fn all_fail(store: &Arc<dyn PinStore>) -> Duration {
    let k = key("outage", 0);
    let (p, q) = (pin("cool", 1), pin("cool", 2));
    let mut slowest = Duration::ZERO;
    macro_rules! must_fail {
        ($op:expr) => {{
            let started = Instant::now();
            let result = $op.await;
            let took = started.elapsed();
            assert!(result.is_err(), "{}: {result:?}", stringify!($op));
            slowest = slowest.max(took);
        }};
    }
    must_fail!(store.get(&k, LONG));
    must_fail!(store.create(&k, &p, LONG));
    must_fail!(store.replace(&k, &p, &q, LONG));
    must_fail!(store.release_node("cool", &p.node));
    must_fail!(store.counts());
    slowest
}

/// Retries `get` until it succeeds; returns how long that took.
async fn until_back(store: &Arc<dyn PinStore>, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if store.get(&key("outage", 1), LONG).await.is_ok() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "the store did not come back within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Redis killed: every operation fails within about the timeout (no hang), for as long as
/// it is down; Redis back (empty, on the same port): the same store works again, without
/// being reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_costs_at_most_the_timeout_and_recovery_needs_no_reopen() {
    let server = RedisServer::start().await;
    let store = redis_store(&server);
    let k = key("outage", 0);
    store.create(&k, &pin("cool", 1), LONG).await.unwrap();

    server.stop().await;
    let bound = TIMEOUT + Duration::from_millis(250);
    for round in 0..5 {
        let slowest = all_fail(&store).await;
        eprintln!("round {round}: slowest failing operation {slowest:?}");
        assert!(
            slowest <= bound,
            "round {round}: an operation took {slowest:?}"
        );
    }

    server.restart().await;
    let took = until_back(&store, Duration::from_secs(10)).await;
    eprintln!("back {took:?} after the restart");
    assert!(took < Duration::from_secs(3), "back after {took:?}");
    // Redis came back empty (no persistence here): the document is re-pinned.
    assert_eq!(store.get(&k, LONG).await.unwrap(), None);
    assert_eq!(
        store.create(&k, &pin("cool", 2), LONG).await.unwrap(),
        pin("cool", 2)
    );
    assert_eq!(store.counts().await.unwrap(), vec![(pin("cool", 2), 1)]);
}

/// Redis never up at all when the store is opened: officeswitch starts regardless, and the
/// store works as soon as Redis does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_open_then_up() {
    let server = RedisServer::start().await;
    server.stop().await;
    let store = redis_store(&server);
    let slowest = all_fail(&store).await;
    assert!(
        slowest <= TIMEOUT + Duration::from_millis(250),
        "{slowest:?}"
    );
    server.restart().await;
    until_back(&store, Duration::from_secs(10)).await;
    assert_eq!(
        store
            .create(&key("late", 0), &pin("cool", 1), LONG)
            .await
            .unwrap(),
        pin("cool", 1)
    );
}

/// Redis hangs (SIGSTOP: connections stay open, nothing answers): every operation times
/// out within about the timeout; when it answers again, so does the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hung_costs_at_most_the_timeout() {
    let server = RedisServer::start().await;
    let store = redis_store(&server);
    store
        .create(&key("outage", 0), &pin("cool", 1), LONG)
        .await
        .unwrap();

    server.signal("STOP");
    let bound = TIMEOUT + Duration::from_millis(250);
    for round in 0..3 {
        let slowest = all_fail(&store).await;
        eprintln!("round {round}: slowest failing operation {slowest:?}");
        assert!(
            slowest <= bound,
            "round {round}: an operation took {slowest:?}"
        );
    }
    server.signal("CONT");
    let took = until_back(&store, Duration::from_secs(10)).await;
    eprintln!("back {took:?} after SIGCONT");
    assert_eq!(
        store.get(&key("outage", 0), LONG).await.unwrap(),
        Some(pin("cool", 1)),
        "the server kept its data while stopped"
    );
}

/// `redis+sentinel://`: the store asks the sentinel for the master, and after a failover
/// (the replica promoted) writes reach the new master without reopening the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_follows_a_failover() {
    let master = RedisServer::start().await;
    let replica =
        RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port().to_string()]).await;
    let sentinel = RedisServer::start_sentinel("pins", &master).await;
    let url = format!("redis+sentinel://127.0.0.1:{}/pins", sentinel.port());
    let store: Arc<dyn PinStore> = Arc::new(RedisStore::open(&url, TIMEOUT).unwrap());

    let k = key("sentinel", 0);
    assert_eq!(
        store.create(&k, &pin("cool", 1), LONG).await.unwrap(),
        pin("cool", 1)
    );
    assert!(
        master
            .command(&format!("EXISTS officeswitch:pin:{k}"))
            .await
            .starts_with(":1"),
        "written on the master"
    );

    // The sentinel must know the replica before it can promote it.
    wait_for(
        Duration::from_secs(20),
        "the sentinel to see the replica",
        || async {
            sentinel
                .command("SENTINEL REPLICAS pins")
                .await
                .contains(&replica.port().to_string())
        },
    )
    .await;
    wait_for(Duration::from_secs(20), "the replica to sync", || async {
        replica
            .command("INFO replication")
            .await
            .contains("master_link_status:up")
    })
    .await;
    let reply = sentinel.command("SENTINEL FAILOVER pins").await;
    assert!(reply.starts_with("+OK"), "{reply}");
    wait_for(
        Duration::from_secs(30),
        "the replica to become master",
        || async {
            replica
                .command("INFO replication")
                .await
                .contains("role:master")
        },
    )
    .await;

    // Until the old master is told to follow, it still takes writes (and loses them when it
    // resyncs): that window is Redis's, not the store's, so the test waits it out.
    wait_for(
        Duration::from_secs(30),
        "the old master to be demoted",
        || async {
            master
                .command("INFO replication")
                .await
                .contains("role:slave")
        },
    )
    .await;

    // The store's connection still goes to the old master, now read-only: the store asks
    // the sentinel again and finds the new one.
    let k2 = key("sentinel", 1);
    let started = Instant::now();
    loop {
        match store.create(&k2, &pin("cool", 2), LONG).await {
            Ok(p) => {
                assert_eq!(p, pin("cool", 2));
                break;
            }
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(30),
                "writes did not reach the new master: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        replica
            .command(&format!("EXISTS officeswitch:pin:{k2}"))
            .await
            .starts_with(":1"),
        "written on the new master"
    );
    assert_eq!(
        store.get(&k, LONG).await.unwrap(),
        Some(pin("cool", 1)),
        "replicated"
    );
}

async fn wait_for<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
