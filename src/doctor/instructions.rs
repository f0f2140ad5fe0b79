//! What officeswitch does about framing, and the allow-lists the hoster must set on the
//! editors and on Nextcloud, as concrete instructions with the addresses filled in.
//!
//! Addresses are best guesses made without sending anything: host names are resolved
//! (bounded), and officeswitch's own address toward a peer is the one the kernel would use
//! (a connected UDP socket sends nothing). Behind NAT the peer sees another address; the
//! lines say so.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use url::Url;

use super::{Level, Verdict};
use crate::app::Prepared;
use crate::config::SuiteKind;

/// Longest wait for one name lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Framing and allow-list verdicts for the settings and rules in `prepared`.
pub async fn check(prepared: &Prepared) -> Vec<Verdict> {
    let config = &prepared.config;
    let public = &config.public_url;
    let orgs: Vec<(String, Vec<String>)> = prepared
        .rules
        .organisation_list()
        .iter()
        .map(|o| (o.name().to_string(), o.origins().to_vec()))
        .collect();
    let mut out = Vec::new();
    let nodes: Vec<&Url> = config.pools.iter().flat_map(|p| &p.nodes).collect();
    let node_addrs = addresses(&nodes).await;
    let towards_nodes = egress(&node_addrs);
    for pool in &config.pools {
        if pool.kind != SuiteKind::Collabora {
            continue;
        }
        let scope = format!("pool {}", pool.name);
        out.push(framing(&scope, &orgs));
        let alias = origin_with_port(public);
        out.push(Verdict::new(
            Level::Todo,
            &scope,
            "storage.wopi.host",
            format!(
                "on every node let officeswitch be the WOPI host (every WOPISrc is {}/wopi/files/...): \
                 coolwsd.xml <storage><wopi><alias_groups mode=\"groups\"><group><host allow=\"true\">{alias}</host></group></alias_groups> \
                 (Docker: aliasgroup1={alias})",
                public.origin().ascii_serialization()
            ),
        ));
        let mut callers: Vec<String> = Vec::new();
        for (org, origins) in &orgs {
            for origin in origins {
                let Ok(url) = Url::parse(origin) else {
                    continue;
                };
                let ips = addresses(&[&url]).await;
                callers.push(format!(
                    "{} of {org} ({})",
                    url.host_str().unwrap_or_default(),
                    listed(ips.iter().map(SocketAddr::ip))
                ));
            }
        }
        let regexes: Vec<String> = towards_nodes
            .iter()
            .map(|ip| format!("<host desc=\"officeswitch\">{}</host>", regex(ip)))
            .collect();
        out.push(Verdict::new(
            Level::Todo,
            &scope,
            "net.post_allow",
            format!(
                "on every node net.post_allow must admit officeswitch's address ({}, as the nodes see it) \
                 AND every Nextcloud server that asks for previews or conversions, because coolwsd checks \
                 each X-Forwarded-For hop and officeswitch appends the caller: {}; coolwsd.xml <net><post_allow> {} \
                 plus one <host> per Nextcloud address",
                listed(towards_nodes.iter().copied()),
                if callers.is_empty() {
                    "no organisation in the rules yet".to_string()
                } else {
                    callers.join(", ")
                },
                regexes.join(" ")
            ),
        ));
    }
    out.extend(nextcloud(prepared, &orgs, &node_addrs).await);
    out
}

/// What officeswitch does about the editor page's CSP: it adds each organisation's
/// Nextcloud origins, so the nodes need no frame-ancestors setting.
fn framing(scope: &str, orgs: &[(String, Vec<String>)]) -> Verdict {
    if orgs.is_empty() {
        return Verdict::with_fix(
            Level::Warn,
            scope,
            "framing",
            "no organisation in the rules: every WOPISrc is refused (403), and no Nextcloud origin can frame the editor".into(),
            "add rules/<organisation>.toml with origins = [\"https://cloud.example.org\"]".into(),
        );
    }
    let each: Vec<String> = orgs
        .iter()
        .map(|(name, origins)| format!("{name} ({})", origins.join(", ")))
        .collect();
    Verdict::new(
        Level::Ok,
        scope,
        "framing",
        format!(
            "officeswitch adds each organisation's Nextcloud origins to the editor page's CSP \
             (frame-ancestors), nothing to set on the nodes: {}",
            each.join(", ")
        ),
    )
}

/// Nextcloud's side, per organisation: `wopi_url` and `wopi_allowlist`.
async fn nextcloud(
    prepared: &Prepared,
    orgs: &[(String, Vec<String>)],
    node_addrs: &[SocketAddr],
) -> Vec<Verdict> {
    let public = prepared.config.public_url.origin().ascii_serialization();
    let node_ips: BTreeSet<IpAddr> = node_addrs.iter().map(SocketAddr::ip).collect();
    let mut out = Vec::new();
    for (org, origins) in orgs {
        let scope = format!("nextcloud {org}");
        let mut urls = Vec::new();
        for origin in origins {
            if let Ok(url) = Url::parse(origin) {
                urls.push(url);
            }
        }
        let refs: Vec<&Url> = urls.iter().collect();
        let towards = egress(&addresses(&refs).await);
        let mut allow: Vec<String> = towards.iter().map(IpAddr::to_string).collect();
        if allow.is_empty() {
            allow.push("OFFICESWITCH_ADDRESS".into());
        }
        allow.extend(node_ips.iter().map(IpAddr::to_string));
        allow.dedup();
        out.push(Verdict::new(
            Level::Todo,
            &scope,
            "wopi_url",
            format!("occ config:app:set richdocuments wopi_url --value {public}"),
        ));
        out.push(Verdict::new(
            Level::Todo,
            &scope,
            "wopi_allowlist",
            format!(
                "occ config:app:set richdocuments wopi_allowlist --value {}: officeswitch's address \
                 (it relays every WOPI call) and each editor node's egress address (\"insert image \
                 from Nextcloud\" makes the node download the image from Nextcloud itself); behind \
                 NAT use the addresses Nextcloud sees",
                allow.join(",")
            ),
        ));
    }
    out
}

/// The addresses `urls` resolve to (each lookup bounded; failures skipped), in order.
async fn addresses(urls: &[&Url]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for url in urls {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            continue;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let lookup = tokio::net::lookup_host((host, port));
        if let Ok(Ok(found)) = tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            for addr in found {
                if !out.contains(&addr) {
                    out.push(addr);
                }
            }
        }
    }
    out
}

/// The local addresses the kernel would send from toward `peers` (no packet is sent).
fn egress(peers: &[SocketAddr]) -> BTreeSet<IpAddr> {
    peers
        .iter()
        .filter_map(|peer| {
            let any: SocketAddr = if peer.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let socket = UdpSocket::bind(any).ok()?;
            socket.connect(peer).ok()?;
            socket.local_addr().ok().map(|a| a.ip())
        })
        .collect()
}

/// Addresses as `a, b`, or `address unknown`.
fn listed(ips: impl Iterator<Item = IpAddr>) -> String {
    let ips: BTreeSet<IpAddr> = ips.collect();
    if ips.is_empty() {
        return "address unknown".into();
    }
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An address as coolwsd's allow-lists take it: a regular expression.
fn regex(ip: &IpAddr) -> String {
    ip.to_string().replace('.', "\\.")
}

/// `scheme://host:port` with the port always written, as coolwsd's alias groups want it.
fn origin_with_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(0);
    format!("{}://{host}:{port}", url.scheme())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_spellings() {
        let url = Url::parse("https://office.example.org").unwrap();
        assert_eq!(origin_with_port(&url), "https://office.example.org:443");
        assert_eq!(regex(&"10.0.0.2".parse().unwrap()), "10\\.0\\.0\\.2");
        let loopback: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            egress(&[loopback]).into_iter().collect::<Vec<_>>(),
            vec![IpAddr::from([127, 0, 0, 1])]
        );
    }

    #[test]
    fn framing_names_each_organisation_or_warns_without_any() {
        let v = framing(
            "pool collabora",
            &[("acme".into(), vec!["https://cloud.acme.org:443".into()])],
        );
        assert_eq!(v.level, Level::Ok);
        assert!(v.message.contains("acme (https://cloud.acme.org:443)"));
        assert_eq!(framing("pool collabora", &[]).level, Level::Warn);
    }
}
