//! Rendezvous hashing plus pins under membership churn (issue 14): three placement
//! instances (as three officeswitch instances have) share one real Redis; nodes join and
//! leave twenty times in a row while 500 documents are open, and every document must stay
//! on one node, the same from every instance. Nothing is contacted on the nodes: routing
//! is what is measured.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use officeswitch::config::{PinStoreConfig, PoolConfig, ProofPolicy, SuiteKind};
use officeswitch::sticky::pins::Stickiness;

use crate::support::placement::placement;
use crate::support::redis::RedisServer;

/// Documents open through the churn.
const DOCUMENTS: usize = 500;

/// Joins and leaves, alternating.
const CHANGES: usize = 20;

fn node(i: usize) -> Url {
    Url::parse(&format!("http://10.0.{}.{}:9980/", i / 200, i % 200 + 1)).expect("URL")
}

fn pool(nodes: &[usize]) -> Vec<PoolConfig> {
    vec![PoolConfig {
        name: "collabora".into(),
        kind: SuiteKind::Collabora,
        nodes: nodes.iter().map(|&i| node(i)).collect(),
        proof: ProofPolicy::Auto,
    }]
}

/// One instance's placement: health (never checked here), topology, pins in `redis`.
fn instance(redis: &RedisServer, nodes: &[usize]) -> Arc<Stickiness> {
    placement(
        pool(nodes),
        PinStoreConfig::Redis(redis.url()),
        Duration::from_secs(2),
        1,
    )
}

/// A document's file id (32 characters, as officeswitch makes them).
fn doc(i: usize) -> String {
    format!("{:0>32}", format!("doc{i}"))
}

/// Where every document in `docs` is, asked through instance `i % 3` for document `i`
/// (editor traffic, which follows pins); panics if two instances disagree.
async fn placements(
    fleet: &[Arc<Stickiness>],
    docs: usize,
    listed: &[Url],
) -> HashMap<String, Url> {
    let mut out = HashMap::new();
    for i in 0..docs {
        let id = doc(i);
        let mut seen = Vec::new();
        for k in 0..fleet.len() {
            let sticky = &fleet[(i + k) % fleet.len()];
            let node = sticky
                .node_for_traffic(&id, 0, listed)
                .await
                .expect("a node");
            let topology = sticky.topology().current();
            seen.push(topology.pools()[0].nodes[node.node].clone());
        }
        assert!(
            seen.windows(2).all(|w| w[0] == w[1]),
            "{id} is split across nodes: {seen:?}"
        );
        out.insert(id, seen.swap_remove(0));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_joins_and_leaves_with_500_documents_open_split_none_and_move_none() {
    let redis = RedisServer::start().await;
    let mut listed: Vec<usize> = (0..5).collect();
    let fleet: Vec<Arc<Stickiness>> = (0..3).map(|_| instance(&redis, &listed)).collect();
    let urls = |listed: &[usize]| listed.iter().map(|&i| node(i)).collect::<Vec<Url>>();

    // Open every document once (an open pins it), through the instances in turn.
    for i in 0..DOCUMENTS {
        let sticky = &fleet[i % fleet.len()];
        sticky
            .node_for(&doc(i), 0, &urls(&listed))
            .await
            .expect("a node");
    }
    let before = placements(&fleet, DOCUMENTS, &urls(&listed)).await;

    let mut next_node = 5;
    let mut moved_total = 0;
    for step in 0..CHANGES {
        if step % 2 == 0 {
            listed.push(next_node);
            next_node += 1;
        } else {
            // The oldest listed node leaves.
            listed.remove(0);
        }
        for sticky in &fleet {
            sticky.list_nodes(&pool(&listed)).expect("same pools");
        }
        let now = placements(&fleet, DOCUMENTS, &urls(&listed)).await;
        let moved = now.iter().filter(|(id, n)| before[*id] != **n).count();
        moved_total += moved;
    }
    eprintln!(
        "churn: {CHANGES} joins and leaves with {DOCUMENTS} documents open: {moved_total} \
         moves, none split; {} nodes listed, {} leaving",
        listed.len(),
        fleet[0].topology().current().leaving().len()
    );
    assert_eq!(moved_total, 0, "open documents moved during churn");

    // New documents during churn land on listed nodes only, the same from every instance.
    for i in DOCUMENTS..DOCUMENTS + 100 {
        fleet[i % fleet.len()]
            .node_for(&doc(i), 0, &urls(&listed))
            .await
            .expect("a node");
    }
    let fresh = placements(&fleet, DOCUMENTS + 100, &urls(&listed)).await;
    let listed_urls = urls(&listed);
    for i in DOCUMENTS..DOCUMENTS + 100 {
        assert!(
            listed_urls.contains(&fresh[&doc(i)]),
            "{} on a leaving node",
            doc(i)
        );
    }

    // One of the listed nodes fails: exactly its documents move, to live nodes.
    let victim = listed_urls[0].clone();
    let on_victim = fresh.values().filter(|n| **n == victim).count();
    for sticky in &fleet {
        let health = sticky.health();
        let (p, n) = health.find(&victim).expect("victim listed");
        health.report_failure(p, n, "connection refused");
    }
    let after = placements(&fleet, DOCUMENTS + 100, &listed_urls).await;
    let moved = after.iter().filter(|(id, n)| fresh[*id] != **n).count();
    eprintln!(
        "one of {} listed nodes fails: {moved} of {} documents moved, {on_victim} were on it",
        listed_urls.len(),
        DOCUMENTS + 100
    );
    assert_eq!(moved, on_victim, "documents of live nodes moved");
    assert!(after.values().all(|n| *n != victim));
}
