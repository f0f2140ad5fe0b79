//! Stickiness that survives nodes joining and failing, several officeswitch instances and a
//! Redis outage (issue 5).
//!
//! A node "joins" by coming up: it is in the settings from the start but down (its port
//! closed) until the test starts it, which is also how a node added to the settings of a
//! running fleet behaves once officeswitch sees it healthy.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use http::StatusCode;

use crate::support::client::{self, encode, post_form};
use crate::support::editor::{EditorPage, StandInEditor, Suite};
use crate::support::nextcloud::StandInNextcloud;
use crate::support::officeswitch::{
    Builder, KIT_ADMIN_TOKEN, OfficeSwitch, OfficeSwitchProcess, fleet, free_port, set_pool_nodes,
};
use crate::support::redis::RedisServer;
use crate::support::richdocuments::RichdocumentsView;
use crate::support::trace_init;

const ODT: &str = "application/vnd.oasis.opendocument.text";
const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// Health checks fast enough for a test: a node is down after 2 failed checks 300 ms apart.
const FAST_HEALTH: &str = "[health]\ninterval_secs = 1\ntimeout_secs = 1\nfall = 2\nrise = 1";

/// Documents opened in each phase.
const DOCUMENTS: usize = 200;

/// The `urlsrc` richdocuments would use for `mime` on the officeswitch at `public_url`.
async fn urlsrc(public_url: &str, mime: &str) -> String {
    let (status, xml) = client::get(&format!("{public_url}/hosting/discovery")).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    RichdocumentsView::parse(&xml)
        .url_src(mime)
        .unwrap_or_else(|| panic!("no {mime}"))
        .1
        .to_string()
}

/// Opens document `id` through `public_url` as user `user`; the node that answered.
async fn open(public_url: &str, mime: &str, nc: &StandInNextcloud, id: &str, user: &str) -> String {
    open_page(public_url, mime, nc, id, user).await.0
}

/// Opens document `id` as [`open`] does; the node and the `WOPISrc` the editor was given.
pub(crate) async fn open_page(
    public_url: &str,
    mime: &str,
    nc: &StandInNextcloud,
    id: &str,
    user: &str,
) -> (String, String) {
    // The urlsrc names the fleet's public URL; send it to this instance, as the load
    // balancer would.
    let src = urlsrc(public_url, mime).await;
    let path = &src[src.find("/officeswitch/open/").expect("an open urlsrc")..];
    let url = format!("{public_url}{path}WOPISrc={}", encode(&nc.wopi_src(id)));
    let reply = post_form(
        &url,
        &format!("access_token={user}-{id}&access_token_ttl=0"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{id}: {}", reply.body);
    let node = reply.node().expect("an editor answered").to_string();
    (node, EditorPage::parse(&reply.body).wopi_src)
}

/// The node a Collabora download of the document with officeswitch `WOPISrc` `own`
/// reaches through `public_url`: editor traffic, not an open.
pub(crate) async fn editor_request(public_url: &str, own: &str) -> String {
    let enc = encode(own);
    let url = format!("{public_url}/cool/{enc}/download/x.pdf?WOPISrc={enc}");
    let reply = client::send(http::Method::GET, &url, &[], b"").await;
    reply.node().expect("an editor answered").to_string()
}

/// Waits (15 s at most) until the readiness detail of `os` says whether `node` is down.
async fn wait_node(os: &OfficeSwitch, node: &str, down: bool) {
    for _ in 0..150 {
        let (_, detail) = os.readiness().await;
        let listed = detail
            .lines()
            .any(|l| l.contains(node) && l.contains("down"));
        if listed == down {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{node} never became {}", if down { "down" } else { "up" });
}

/// Four Collabora nodes, the fourth not started yet.
struct Nodes {
    running: Vec<StandInEditor>,
    fourth: SocketAddr,
    urls: Vec<String>,
}

impl Nodes {
    async fn start() -> Nodes {
        let mut running = Vec::new();
        for _ in 0..3 {
            running.push(StandInEditor::start(Suite::Collabora).await);
        }
        // Reserve a port for the node that joins later.
        let fourth = SocketAddr::from(([127, 0, 0, 1], free_port().await));
        let mut urls: Vec<String> = running.iter().map(StandInEditor::url).collect();
        urls.push(format!("http://{fourth}"));
        Nodes {
            running,
            fourth,
            urls,
        }
    }

    async fn join_fourth(&mut self) {
        let node = StandInEditor::start_on(Suite::Collabora, self.fourth)
            .await
            .expect("start the fourth node");
        self.running.push(node);
    }
}

/// Opens `count` documents `prefix-i` through the officeswitches at `urls` (round robin),
/// each by two users concurrently, and checks both users reached one node.
pub(crate) async fn open_many(
    urls: &[String],
    nc: &StandInNextcloud,
    prefix: &str,
    count: usize,
) -> HashMap<String, String> {
    let jobs = (0..count).map(|i| {
        let id = format!("{prefix}{i}_oc");
        let a = urls[i % urls.len()].clone();
        let b = urls[(i + 1) % urls.len()].clone();
        async move {
            let ((first, own), second) = tokio::join!(
                open_page(&a, ODT, nc, &id, "alice"),
                open(&b, ODT, nc, &id, "bob")
            );
            assert_eq!(first, second, "{id}: two users on two nodes");
            // The editor's own traffic, through the other instance, meets them there.
            assert_eq!(
                editor_request(&b, &own).await,
                first,
                "{id}: editor traffic moved"
            );
            (id, first)
        }
    });
    futures_util::stream::iter(jobs)
        .buffer_unordered(16)
        .collect()
        .await
}

/// Re-opens every document of `placed` (as a third user) and returns the fraction moved.
pub(crate) async fn moved(
    urls: &[String],
    nc: &StandInNextcloud,
    placed: &HashMap<String, String>,
) -> (usize, HashMap<String, String>) {
    let jobs = placed.keys().enumerate().map(|(i, id)| {
        let url = urls[i % urls.len()].clone();
        async move { (id.clone(), open(&url, ODT, nc, id, "carol").await) }
    });
    let now: HashMap<String, String> = futures_util::stream::iter(jobs)
        .buffer_unordered(16)
        .collect()
        .await;
    let count = now
        .iter()
        .filter(|(id, node)| placed[*id] != **node)
        .count();
    (count, now)
}

/// The whole membership story against `instances` (each reached by its own address, as
/// a load balancer would) whose nodes are `nodes`.
async fn membership_story(
    instances: &[OfficeSwitch],
    nodes: &mut Nodes,
    nc: &StandInNextcloud,
    label: &str,
) {
    let urls = &addresses(instances);
    let fourth = nodes.urls[3].clone();
    for os in instances {
        wait_node(os, &fourth, true).await;
    }
    let placed = open_many(urls, nc, "a", DOCUMENTS).await;
    let used: HashSet<&String> = placed.values().collect();
    assert_eq!(
        used.len(),
        3,
        "{label}: 200 documents over the 3 live nodes"
    );

    // A node joins: no open document moves, new ones spread over all four.
    nodes.join_fourth().await;
    for os in instances {
        wait_node(os, &fourth, false).await;
    }
    let (moved_on_join, _) = moved(urls, nc, &placed).await;
    let fresh = open_many(urls, nc, "b", DOCUMENTS / 2).await;
    let on_fourth = fresh.values().filter(|n| **n == fourth).count();
    eprintln!(
        "{label}: node joined: {moved_on_join}/{} open documents moved (target 0); \
         {on_fourth}/{} new documents on the new node",
        placed.len(),
        fresh.len()
    );
    assert_eq!(
        moved_on_join, 0,
        "{label}: documents moved when a node joined"
    );
    assert!(on_fourth > 0, "{label}: the new node took no new document");

    // A node fails: only its documents move, to live nodes.
    let victim = nodes.running.remove(1);
    let victim_url = victim.url();
    victim.stop().await;
    for os in instances {
        wait_node(os, &victim_url, true).await;
    }
    let mut all = placed.clone();
    all.extend(fresh);
    let on_victim = all.values().filter(|n| **n == victim_url).count();
    let (moved_on_fail, now) = moved(urls, nc, &all).await;
    eprintln!(
        "{label}: node failed: {moved_on_fail}/{} documents moved, {on_victim} were on it \
         (target: only those)",
        all.len()
    );
    assert_eq!(
        moved_on_fail, on_victim,
        "{label}: documents of live nodes moved"
    );
    assert!(now.values().all(|n| *n != victim_url));
}

/// Each instance's own address as a base URL.
fn addresses(instances: &[OfficeSwitch]) -> Vec<String> {
    instances
        .iter()
        .map(|os| format!("http://{}", os.addr))
        .collect()
}

fn instance(nodes: &Nodes, nc: &StandInNextcloud, store: &str) -> Builder {
    OfficeSwitch::builder()
        .pool("collabora", "collabora", &nodes.urls)
        .org("acme", &[nc.origin()], "")
        .section(FAST_HEALTH)
        .section(store)
}

#[tokio::test]
async fn one_instance_with_the_embedded_store_keeps_documents_on_their_node() {
    trace_init();
    let mut nodes = Nodes::start().await;
    let nc = StandInNextcloud::start().await;
    let os = instance(&nodes, &nc, "").start().await;
    membership_story(std::slice::from_ref(&os), &mut nodes, &nc, "memory").await;
}

#[tokio::test]
async fn three_instances_sharing_redis_agree_and_survive_a_redis_outage() {
    trace_init();
    let redis = RedisServer::start().await;
    let mut nodes = Nodes::start().await;
    let nc = StandInNextcloud::start().await;
    // A generous store timeout: three debug builds share two cores with the test.
    let store = format!("[pins]\nstore = \"{}\"\ntimeout_ms = 2000", redis.url());
    // One fleet: the instances share the proof key and token secret (file ids are
    // derived from it), the load balancer's public URL, and the pins in Redis.
    let instances = fleet(3, || instance(&nodes, &nc, &store)).await;
    membership_story(&instances, &mut nodes, &nc, "redis, 3 instances").await;
    let urls = addresses(&instances);

    // Redis goes away: every instance keeps serving, and documents keep their node while
    // the instance that saw them serves them.
    let known = open_many(&urls[..1], &nc, "c", 20).await;
    redis.stop().await;
    let (moved_without_redis, _) = moved(&urls[..1], &nc, &known).await;
    assert_eq!(
        moved_without_redis, 0,
        "documents moved while Redis was down"
    );
    let fresh = open_many(&urls, &nc, "d", 10).await;
    assert_eq!(fresh.len(), 10, "new documents open without Redis");
    let (_, ready) = instances[0].readiness().await;
    assert!(ready.contains("UNREACHABLE"), "{ready}");

    // Redis returns: pins are shared again.
    redis.restart().await;
    for os in &instances {
        let mut back = false;
        for _ in 0..100 {
            let (_, ready) = os.readiness().await;
            if !ready.contains("UNREACHABLE") {
                back = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(back, "{} never saw Redis back", os.addr);
    }
    // Shared again: two users of each new document through two instances meet.
    let again = open_many(&urls, &nc, "e", 20).await;
    assert_eq!(again.len(), 20);
}

#[tokio::test]
async fn an_open_document_stays_in_its_suite_and_failover_opens_new_ones_elsewhere() {
    trace_init();
    let cool = StandInEditor::start(Suite::Collabora).await;
    let oo = StandInEditor::start(Suite::OnlyOffice).await;
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[cool.url()])
        .pool("onlyoffice", "onlyoffice", &[oo.url()])
        .org("acme", &[nc.origin()], "failover = true\n")
        .section(FAST_HEALTH)
        .start()
        .await;
    let url = os.public_url.clone();
    assert_eq!(open(&url, DOCX, &nc, "1_oc", "alice").await, oo.url());

    // The organisation moves docx to Collabora: the open document stays in OnlyOffice for
    // a second user, a new docx opens in Collabora.
    std::fs::write(
        os.rules_dir().join("acme.toml"),
        format!(
            "origins = [\"{}\"]\nfailover = true\n[extensions]\ndocx = \"collabora\"\n",
            nc.origin()
        ),
    )
    .unwrap();
    let mut moved_rules = false;
    for i in 0..50 {
        // A new document each time: an opened one stays pinned where it opened.
        if open(&url, DOCX, &nc, &format!("2_{i}_oc"), "alice").await == cool.url() {
            moved_rules = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(moved_rules, "the rules change never applied");
    assert_eq!(open(&url, DOCX, &nc, "1_oc", "bob").await, oo.url());

    // Back to the defaults, then OnlyOffice fails: with failover, a new docx opens in
    // Collabora.
    std::fs::write(
        os.rules_dir().join("acme.toml"),
        format!("origins = [\"{}\"]\nfailover = true\n", nc.origin()),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let oo_url = oo.url();
    oo.stop().await;
    wait_node(&os, &oo_url, true).await;
    assert_eq!(open(&url, DOCX, &nc, "3_oc", "alice").await, cool.url());
}

#[tokio::test]
async fn a_restart_to_add_a_node_keeps_open_documents_with_the_memory_store() {
    trace_init();
    let mut nodes = Nodes::start().await;
    nodes.join_fourth().await;
    let nc = StandInNextcloud::start().await;
    // Settings name the first three nodes only.
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &nodes.urls[..3])
        .org("acme", &[nc.origin()], "")
        .section(FAST_HEALTH)
        .start()
        .await;
    let url = os.public_url.clone();
    let placed = open_many(std::slice::from_ref(&url), &nc, "r", 60).await;

    // The hoster adds the fourth node to the settings and restarts officeswitch.
    let settings = std::fs::read_to_string(os.config_path()).unwrap();
    let three = nodes.urls[..3]
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let four = nodes
        .urls
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(os.config_path(), settings.replace(&three, &four)).unwrap();
    let os = os.restart().await;
    assert_eq!(os.public_url, url);
    let (moved_on_restart, _) = moved(std::slice::from_ref(&url), &nc, &placed).await;
    let fresh = open_many(std::slice::from_ref(&url), &nc, "s", 60).await;
    let on_fourth = fresh.values().filter(|n| **n == nodes.urls[3]).count();
    eprintln!(
        "memory store, restart with a node added: {moved_on_restart}/{} open documents moved \
         (target 0); {on_fourth}/{} new documents on the new node",
        placed.len(),
        fresh.len()
    );
    assert_eq!(moved_on_restart, 0, "documents moved over the restart");
    assert!(on_fourth > 0, "the new node took no new document");
}

/// `POST /admin/nodes/{drain|undrain}` of `node` on instance `os`; the JSON answer.
async fn set_draining(os: &OfficeSwitch, node: &str, draining: bool) -> serde_json::Value {
    let verb = if draining { "drain" } else { "undrain" };
    let reply = client::send(
        http::Method::POST,
        &format!("http://{}/admin/nodes/{verb}", os.admin_addr()),
        &[("authorization", &format!("Bearer {KIT_ADMIN_TOKEN}"))],
        format!(r#"{{"node": "{node}"}}"#).as_bytes(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    serde_json::from_str(&reply.body).expect("JSON answer")
}

/// Whether `os`'s admin listener lists `node` as draining.
async fn lists_draining(os: &OfficeSwitch, node: &str) -> bool {
    let reply = client::send(
        http::Method::GET,
        &format!("http://{}/admin/nodes", os.admin_addr()),
        &[("authorization", &format!("Bearer {KIT_ADMIN_TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let list: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON node list");
    let wanted = format!("{node}/");
    list["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .any(|n| n["node"] == wanted.as_str() && n["draining"] == true)
}

/// How long until every one of `instances` lists `node` as `draining` (10 s at most).
async fn time_until_all(instances: &[&OfficeSwitch], node: &str, draining: bool) -> Duration {
    let started = std::time::Instant::now();
    for os in instances {
        while lists_draining(os, node).await != draining {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{} never saw {node} draining = {draining}",
                os.addr
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    started.elapsed()
}

#[tokio::test]
async fn a_drain_through_one_instance_holds_on_every_instance_within_the_refresh_interval() {
    trace_init();
    let redis = RedisServer::start().await;
    let nodes = Nodes::start().await;
    let nc = StandInNextcloud::start().await;
    let refresh = Duration::from_secs(1);
    let store = format!(
        "[pins]\nstore = \"{}\"\ntimeout_ms = 2000\nrefresh_secs = {}",
        redis.url(),
        refresh.as_secs()
    );
    let instances = fleet(3, || instance(&nodes, &nc, &store)).await;
    let urls = addresses(&instances);
    let fourth = nodes.urls[3].clone();
    for os in &instances {
        wait_node(os, &fourth, true).await;
    }
    let placed = open_many(&urls, &nc, "a", 60).await;
    let target = nodes.urls[0].clone();
    let on_target = placed.values().filter(|n| **n == target).count();
    assert!(on_target > 0, "no document landed on {target}");

    // Drained through the first instance: the others follow within the refresh interval.
    let answer = set_draining(&instances[0], &target, true).await;
    assert_eq!(answer["shared"], true, "{answer}");
    let others: Vec<&OfficeSwitch> = instances[1..].iter().collect();
    let followed = time_until_all(&others, &target, true).await;
    eprintln!(
        "drain through instance 1 seen by instances 2 and 3 after {followed:?} \
         (pins.refresh_secs = {refresh:?})"
    );
    assert!(
        followed <= refresh + Duration::from_millis(500),
        "the others followed after {followed:?}, beyond the {refresh:?} refresh interval"
    );

    // No new document lands on it through any instance; its open documents stay there.
    let fresh = open_many(&urls, &nc, "b", 60).await;
    assert!(
        fresh.values().all(|n| *n != target),
        "a new document on a drained node"
    );
    let (moved_by_drain, _) = moved(&urls, &nc, &placed).await;
    assert_eq!(moved_by_drain, 0, "open documents left the drained node");

    // An instance started later learns the drain from the store.
    let late = instance(&nodes, &nc, &store)
        .share_keys_with(&instances[0])
        .public_url(&instances[0].public_url)
        .start()
        .await;
    time_until_all(&[&late], &target, true).await;

    // Undrained through another instance: every instance places new documents there again.
    let answer = set_draining(&instances[2], &target, false).await;
    assert_eq!(answer["shared"], true, "{answer}");
    let all: Vec<&OfficeSwitch> = instances.iter().chain([&late]).collect();
    let followed = time_until_all(&all, &target, false).await;
    assert!(
        followed <= refresh + Duration::from_millis(500),
        "{followed:?}"
    );
    let again = open_many(&urls, &nc, "c", 60).await;
    assert!(
        again.values().any(|n| *n == target),
        "the undrained node took nothing"
    );
}

#[tokio::test]
async fn a_drain_set_while_the_store_is_down_holds_here_and_reaches_the_others_when_it_is_back() {
    trace_init();
    let redis = RedisServer::start().await;
    let nodes = Nodes::start().await;
    let nc = StandInNextcloud::start().await;
    let store = format!(
        "[pins]\nstore = \"{}\"\ntimeout_ms = 500\nrefresh_secs = 1",
        redis.url()
    );
    let first = instance(&nodes, &nc, &store).start().await;
    let second = instance(&nodes, &nc, &store)
        .share_keys_with(&first)
        .public_url(&first.public_url)
        .start()
        .await;
    let target = nodes.urls[1].clone();

    redis.stop().await;
    let answer = set_draining(&first, &target, true).await;
    assert_eq!(answer["shared"], false, "{answer}");
    assert_eq!(answer["draining"], true, "{answer}");
    // Here at once, and it stays through refreshes that cannot read the store.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(lists_draining(&first, &target).await);
    assert!(!lists_draining(&second, &target).await);

    redis.restart().await;
    time_until_all(&[&first, &second], &target, true).await;
}

/// Polls the readiness detail of `fleet` (10 s at most each) until every instance
/// `says(detail)`; returns the last detail of the last instance.
async fn until_every(fleet: &[OfficeSwitchProcess], says: impl Fn(&str) -> bool) -> String {
    let mut detail = String::new();
    for os in fleet {
        let started = std::time::Instant::now();
        loop {
            detail = os.readiness().await.1;
            if says(&detail) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "{} never got there; readiness:\n{detail}",
                os.addr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    detail
}

/// Sets pool `collabora`'s nodes to `nodes` on every instance and sends each `SIGHUP`.
fn relist(fleet: &[OfficeSwitchProcess], nodes: &[String]) {
    for os in fleet {
        os.set_pool_nodes("collabora", nodes);
        os.signal("HUP");
    }
}

#[tokio::test]
async fn nodes_join_and_leave_by_sighup_without_moving_a_document() {
    trace_init();
    let redis = RedisServer::start().await;
    let mut nodes = Vec::new();
    for _ in 0..4 {
        nodes.push(StandInEditor::start(Suite::Collabora).await);
    }
    let urls: Vec<String> = nodes.iter().map(StandInEditor::url).collect();
    let nc = StandInNextcloud::start().await;
    // Pins live 8 s without a request, so a node that left goes idle within the test.
    let store = format!(
        "[pins]\nstore = \"{}\"\ntimeout_ms = 2000\nttl_secs = 8",
        redis.url()
    );
    // Only the signal reloads here (the file watch has its own test).
    let builder = || {
        OfficeSwitch::builder()
            .pool("collabora", "collabora", &urls[..3])
            .org("acme", &[nc.origin()], "")
            .setting("watch_settings = false")
            .section(FAST_HEALTH)
            .section(&store)
    };
    let first = builder().spawn().await;
    let mut fleet = vec![first];
    for _ in 0..2 {
        let next = builder()
            .share_keys_in(&fleet[0].dir)
            .public_url(&fleet[0].public_url)
            .spawn()
            .await;
        fleet.push(next);
    }
    for os in &fleet {
        os.wait_ready().await;
    }
    let addresses: Vec<String> = fleet
        .iter()
        .map(|os| format!("http://{}", os.addr))
        .collect();
    let placed = open_many(&addresses, &nc, "a", 60).await;

    // A node joins the settings: SIGHUP, and no open document moves.
    relist(&fleet, &urls);
    until_every(&fleet, |d| {
        d.contains("topology: generation 2, nodes: 4 listed")
    })
    .await;
    let (moved_on_join, _) = moved(&addresses, &nc, &placed).await;
    let fresh = open_many(&addresses, &nc, "b", 60).await;
    let on_new = fresh.values().filter(|n| **n == urls[3]).count();
    eprintln!(
        "node joined by SIGHUP: {moved_on_join}/{} open documents moved, {on_new}/{} new \
         documents on the new node",
        placed.len(),
        fresh.len()
    );
    assert_eq!(moved_on_join, 0, "documents moved when a node joined");
    assert!(on_new > 0, "the new node took no new document");

    // A node leaves the settings: its documents finish there, new ones go elsewhere.
    let leaving = urls[2].clone();
    let mut open: HashMap<String, String> = placed;
    open.extend(fresh);
    let on_leaving = open.values().filter(|n| **n == leaving).count();
    assert!(on_leaving > 0, "no document on {leaving}");
    relist(&fleet, &[urls[0].clone(), urls[1].clone(), urls[3].clone()]);
    until_every(&fleet, |d| {
        d.contains(&format!("node {leaving}/ (collabora): leaving"))
    })
    .await;
    let (moved_on_leave, _) = moved(&addresses, &nc, &open).await;
    let later = open_many(&addresses, &nc, "c", 40).await;
    eprintln!(
        "node left by SIGHUP: {moved_on_leave}/{} open documents moved ({on_leaving} on it \
         stayed), {} of {} new documents on it",
        open.len(),
        later.values().filter(|n| **n == leaving).count(),
        later.len()
    );
    assert_eq!(moved_on_leave, 0, "documents moved off a leaving node");
    assert!(
        later.values().all(|n| *n != leaving),
        "a new document on a leaving node"
    );

    // Idle: once no pin names it, it is gone and nothing reaches it any more.
    until_every(&fleet, |d| {
        !d.contains("1 leaving") && d.contains("nodes: 3 listed")
    })
    .await;
    let heard = nodes[2].requests().len();
    let (moved_after, now) = moved(&addresses, &nc, &open).await;
    assert!(
        now.values().all(|n| *n != leaving),
        "a document reached a gone node"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        nodes[2].requests().len(),
        heard,
        "a gone node still gets requests (checks, discovery or traffic)"
    );
    eprintln!(
        "node gone when idle: the {} documents reopened after their pins expired, \
         {moved_after} of them on another node than before, none on the gone node",
        open.len()
    );

    // A settings file that does not load changes nothing and says why.
    for os in &fleet {
        std::fs::write(os.dir.path().join("officeswitch.toml"), "public_url = 42\n").unwrap();
        os.signal("HUP");
    }
    let detail = until_every(&fleet, |d| d.contains("the last node list reload failed")).await;
    assert!(detail.contains("nodes: 3 listed"), "{detail}");
    let still = open_many(&addresses, &nc, "d", 10).await;
    assert_eq!(still.len(), 10);
}

#[tokio::test]
async fn a_changed_settings_file_relists_the_nodes_without_a_signal() {
    trace_init();
    let (a, b) = tokio::join!(
        StandInEditor::start(Suite::Collabora),
        StandInEditor::start(Suite::Collabora),
    );
    let nc = StandInNextcloud::start().await;
    let os = OfficeSwitch::builder()
        .pool("collabora", "collabora", &[a.url()])
        .org("acme", &[nc.origin()], "")
        .start()
        .await;
    os.readiness_saying("nodes: 1 listed").await;
    set_pool_nodes(&os.config_path(), "collabora", &[a.url(), b.url()]);
    os.readiness_saying("generation 2, nodes: 2 listed").await;
    set_pool_nodes(&os.config_path(), "collabora", &[b.url()]);
    let detail = os
        .readiness_saying(&format!("node {}/ (collabora): leaving", a.url()))
        .await;
    assert!(detail.contains("nodes: 1 listed, 1 leaving"), "{detail}");
}
