//! A pool whose nodes come from DNS, as a Kubernetes headless Service gives them, behind
//! three officeswitch instances sharing a real Redis: pods
//! that appear in the answer join, pods that disappear leave, without a signal; a DNS
//! failure changes nothing. The name is served by a DNS server of the test's on loopback
//! ([`DnsServer`]), never the machine's resolver.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::sticky::{moved, open_many};
use crate::support::dns::DnsServer;
use crate::support::editor::{StandInEditor, Suite};
use crate::support::nextcloud::StandInNextcloud;
use crate::support::officeswitch::{OfficeSwitch, fleet};
use crate::support::redis::RedisServer;
use crate::support::trace_init;

/// Three pods: stand-in Collabora nodes on one port of three loopback addresses.
async fn pods() -> (Vec<StandInEditor>, u16) {
    for _ in 0..20 {
        let probe = std::net::TcpListener::bind("127.0.0.11:0").expect("bind");
        let port = probe.local_addr().expect("address").port();
        drop(probe);
        let mut pods = Vec::new();
        for ip in [11, 12, 13] {
            let addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, ip), port));
            match StandInEditor::start_on(Suite::Collabora, addr).await {
                Ok(pod) => pods.push(pod),
                Err(_) => break,
            }
        }
        if pods.len() == 3 {
            return (pods, port);
        }
    }
    panic!("no port free on 127.0.0.11-13");
}

fn pod(ip: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, ip)
}

#[tokio::test]
async fn pods_that_appear_in_the_answer_join_and_those_that_vanish_leave_without_a_signal() {
    trace_init();
    let (_pods, port) = pods().await;
    let dns = DnsServer::start("cool.editors.test", &[pod(11), pod(12)]).await;
    let nc = StandInNextcloud::start().await;
    // Three instances sharing a real Redis, as behind a load balancer.
    let redis = RedisServer::start().await;
    let builder = || {
        OfficeSwitch::builder()
            .pool("collabora", "collabora", &[])
            .pool_setting(
                "collabora",
                &format!("dns = \"http://{}:{port}/\"", dns.name()),
            )
            .section(&format!(
                "[dns]\nservers = [\"{}\"]\ninterval_secs = 1",
                dns.addr
            ))
            .section("[health]\ninterval_secs = 1\ntimeout_secs = 1\nfall = 2\nrise = 1")
            .section(&format!(
                "[pins]\nstore = \"{}\"\ntimeout_ms = 2000",
                redis.url()
            ))
            .org("acme", &[nc.origin()], "")
    };
    let fleet = fleet(3, builder).await;
    let every = |needle: String| {
        let fleet = &fleet;
        async move {
            for os in fleet {
                os.readiness_saying(&needle).await;
            }
        }
    };
    // A node as the stand-ins name themselves (no final `/`).
    let node = |ip: u8| format!("http://127.0.0.{ip}:{port}");
    every("nodes: 2 listed".into()).await;
    every("ok, discovery of".into()).await;
    let urls: Vec<String> = fleet
        .iter()
        .map(|os| format!("http://{}", os.addr))
        .collect();
    let placed = open_many(&urls, &nc, "a", 40).await;
    assert!(placed.values().all(|n| *n == node(11) || *n == node(12)));

    // A pod appears in the answer: it joins, no open document moves.
    dns.set(&[pod(11), pod(12), pod(13)]);
    every("nodes: 3 listed".into()).await;
    let (moved_on_join, _) = moved(&urls, &nc, &placed).await;
    let fresh = open_many(&urls, &nc, "b", 40).await;
    let on_new = fresh.values().filter(|n| **n == node(13)).count();
    eprintln!("DNS join: {moved_on_join}/40 moved, {on_new}/40 new documents on the new pod");
    assert_eq!(moved_on_join, 0);
    assert!(on_new > 0, "the new pod took nothing");

    // A DNS failure changes nothing.
    dns.fail(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for os in &fleet {
        let detail = os.readiness().await.1;
        assert!(detail.contains("nodes: 3 listed, 0 leaving"), "{detail}");
    }
    dns.fail(false);

    // A pod vanishes from the answer: it leaves, its documents stay, new ones go elsewhere.
    let gone = node(11);
    dns.set(&[pod(12), pod(13)]);
    every(format!("node {gone}/ (collabora): leaving")).await;
    let mut open = placed;
    open.extend(fresh);
    let (moved_on_leave, _) = moved(&urls, &nc, &open).await;
    let later = open_many(&urls, &nc, "c", 30).await;
    assert_eq!(moved_on_leave, 0, "documents moved off a leaving pod");
    assert!(
        later.values().all(|n| *n != gone),
        "a new document on a leaving pod"
    );
}
