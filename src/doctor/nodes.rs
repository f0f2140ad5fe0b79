//! What each node answers: reachable, discovery usable, ONLYOFFICE's WOPI on, the origin
//! it announces, its proof key; and per pool, whether the nodes share one proof key.

use futures_util::future::join_all;
use http::StatusCode;
use url::Url;

use super::{Level, Verdict};
use crate::app::Prepared;
use crate::config::{PoolConfig, ProofPolicy, SuiteKind};
use crate::discovery::announced::{self, Misconfig};
use crate::discovery::document::ParseError;
use crate::discovery::fetch::FetchError;
use crate::discovery::service::{self, NodeDiscovery, NodeDiscoveryError};
use crate::discovery::{Discovery, ProofKeyPair};

/// Checks every node of every pool (all at once, each bounded by the discovery fetch
/// timeout), then each pool's proof keys; verdicts in settings order.
pub async fn check(prepared: &Prepared) -> Vec<Verdict> {
    let config = &prepared.config;
    let forwarding = announced::forwarding_headers(&config.public_url);
    let fetches = config.pools.iter().map(|pool| {
        join_all(pool.nodes.iter().map(|node| {
            service::fetch_discovery(&prepared.client, node, &forwarding, &config.discovery)
        }))
    });
    let answers = join_all(fetches).await;
    let mut verdicts = Vec::new();
    for (pool, answers) in config.pools.iter().zip(answers) {
        let mut keys = Vec::new();
        for (node, answer) in pool.nodes.iter().zip(answers) {
            if let Some(discovery) = node_verdicts(pool, node, answer, prepared, &mut verdicts) {
                keys.push((node, discovery.proof_key));
            }
        }
        verdicts.extend(pool_keys(pool, &keys));
    }
    verdicts
}

/// The verdicts of one node; its parsed discovery when it gave one.
fn node_verdicts(
    pool: &PoolConfig,
    node: &Url,
    answer: Result<NodeDiscovery, NodeDiscoveryError>,
    prepared: &Prepared,
    out: &mut Vec<Verdict>,
) -> Option<Discovery> {
    let scope = format!("pool {} node {node}", pool.name);
    let onlyoffice = pool.kind == SuiteKind::OnlyOffice;
    let answer = match answer {
        Ok(answer) => answer,
        Err(NodeDiscoveryError::Fetch(e @ (FetchError::Request(_) | FetchError::Timeout(_)))) => {
            out.push(Verdict::with_fix(
                Level::Fail,
                &scope,
                "reachable",
                format!("cannot fetch /hosting/discovery: {e}"),
                unreachable_fix(pool.kind),
            ));
            return None;
        }
        Err(e) => {
            out.push(Verdict::new(
                Level::Ok,
                &scope,
                "reachable",
                "answers HTTP".into(),
            ));
            out.push(unusable(pool.kind, &scope, &e));
            return None;
        }
    };
    let discovery = answer.discovery;
    let actions: usize = discovery.apps.iter().map(|a| a.actions.len()).sum();
    out.push(Verdict::new(
        Level::Ok,
        &scope,
        "reachable",
        format!("answers /hosting/discovery ({} bytes)", answer.raw.len()),
    ));
    out.push(Verdict::new(
        Level::Ok,
        &scope,
        "discovery",
        format!("discovery parsed ({actions} actions)"),
    ));
    if onlyoffice {
        out.push(Verdict::new(
            Level::Ok,
            &scope,
            "wopi",
            "WOPI enabled (discovery lists actions)".into(),
        ));
    }
    let public = &prepared.config.public_url;
    out.push(
        match announced::announced_origin(pool.kind, &discovery, public) {
            Ok(()) => Verdict::new(
                Level::Ok,
                &scope,
                "origin",
                format!(
                    "announces officeswitch's public origin {}",
                    public.origin().ascii_serialization()
                ),
            ),
            Err(Misconfig {
                announced,
                expected,
                fix,
                ..
            }) => Verdict::with_fix(
                Level::Fail,
                &scope,
                "origin",
                format!(
                    "discovery announces {} instead of {expected}: browsers would be sent to the node, not through officeswitch",
                    announced.join(", ")
                ),
                fix,
            ),
        },
    );
    out.push(node_key(pool, &scope, discovery.proof_key.as_ref()));
    Some(discovery)
}

/// The fix for a node officeswitch cannot reach.
fn unreachable_fix(kind: SuiteKind) -> String {
    let filter = match kind {
        SuiteKind::Collabora => "",
        SuiteKind::OnlyOffice => "; ONLYOFFICE's IP filter must let officeswitch in",
    };
    format!(
        "check the node URL in the settings, that the node runs, and that officeswitch's \
         address may reach it (firewall, [upstream] ca_file for a private CA){filter}"
    )
}

/// The verdict on a node that answered HTTP but gave no usable discovery.
fn unusable(kind: SuiteKind, scope: &str, e: &NodeDiscoveryError) -> Verdict {
    let wopi_off = matches!(
        e,
        NodeDiscoveryError::Fetch(FetchError::Status(StatusCode::NOT_FOUND))
            | NodeDiscoveryError::Invalid(ParseError::Empty | ParseError::NoActions)
    );
    if kind == SuiteKind::OnlyOffice && wopi_off {
        return Verdict::with_fix(
            Level::Fail,
            scope,
            "wopi",
            format!("WOPI is off: {e}"),
            "set wopi.enable to true in local.json (Docker: WOPI_ENABLED=true) and restart DocService".into(),
        );
    }
    let fix = match kind {
        SuiteKind::Collabora => {
            "check that the node URL is coolwsd's (with its path prefix when net.service_root is set) and coolwsd's log"
        }
        SuiteKind::OnlyOffice => {
            "check that the node URL is DocService's (its nginx) and DocService's log"
        }
    };
    Verdict::with_fix(
        Level::Fail,
        scope,
        "discovery",
        format!("no usable discovery: {e}"),
        fix.into(),
    )
}

/// Whether the node publishes a proof key. Without one its WOPI calls are unsigned:
/// accepted under `proof = "auto"`/`"optional"` (a warning), refused under `"required"`.
fn node_key(pool: &PoolConfig, scope: &str, key: Option<&ProofKeyPair>) -> Verdict {
    match key {
        Some(key) => Verdict::new(
            Level::Ok,
            scope,
            "proof_key",
            format!("publishes a proof key ({})", fingerprint(key)),
        ),
        None => {
            let level = if pool.proof == ProofPolicy::Required {
                Level::Fail
            } else {
                Level::Warn
            };
            Verdict::with_fix(
                level,
                scope,
                "proof_key",
                format!(
                    "publishes no proof key: its WOPI calls are unsigned, so officeswitch cannot tell they come from it (pool proof = \"{}\")",
                    pool.proof.as_str()
                ),
                key_fix(pool.kind),
            )
        }
    }
}

/// Where a suite's proof key is set, the same on every node.
fn key_fix(kind: SuiteKind) -> String {
    match kind {
        SuiteKind::Collabora => "give every node of the pool the same key file /etc/coolwsd/proof_key \
             (ssh-keygen -t rsa -N \"\" -m PEM -f /etc/coolwsd/proof_key, then copy it) and restart coolwsd"
            .into(),
        SuiteKind::OnlyOffice => "give every node of the pool the same wopi.privateKey, wopi.publicKey, \
             wopi.modulus, wopi.exponent and their *Old twins in local.json (the Docker image makes \
             a new set per data volume: share one) and restart DocService"
            .into(),
    }
}

/// The start of a key's modulus: enough to tell keys apart, and public anyway.
fn fingerprint(key: &ProofKeyPair) -> String {
    let modulus = key.current.modulus_b64();
    let head: String = modulus.chars().take(12).collect();
    if key.old == key.current {
        format!("modulus {head}...")
    } else {
        let old: String = key.old.modulus_b64().chars().take(12).collect();
        format!("modulus {head}..., old key {old}...")
    }
}

/// Whether the nodes of a pool that answered publish one proof key. officeswitch accepts a
/// node's proofs only while it holds that node's discovery: a node restarted with another
/// key has its saves refused until the next refresh, and one down at a refresh until it
/// answers again, so nodes must share the key.
fn pool_keys(pool: &PoolConfig, keys: &[(&Url, Option<ProofKeyPair>)]) -> Option<Verdict> {
    let scope = format!("pool {}", pool.name);
    let (_, first) = keys.first()?;
    if keys.len() < 2 {
        return None;
    }
    if keys.iter().all(|(_, k)| k == first) {
        return Some(Verdict::new(
            Level::Ok,
            &scope,
            "proof_keys",
            format!(
                "all {} nodes that answered publish the same proof key",
                keys.len()
            ),
        ));
    }
    let each: Vec<String> = keys
        .iter()
        .map(|(node, key)| {
            let key = key.as_ref().map_or("no key".to_string(), fingerprint);
            format!("{node} {key}")
        })
        .collect();
    Some(Verdict::with_fix(
        Level::Fail,
        &scope,
        "proof_keys",
        format!(
            "nodes publish different proof keys ({}): a node's WOPI saves are refused whenever officeswitch holds another node's key for it",
            each.join("; ")
        ),
        key_fix(pool.kind),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wopi::proof_key::ProofKey;

    fn pool(kind: SuiteKind) -> PoolConfig {
        PoolConfig {
            name: "p".into(),
            kind,
            nodes: vec![],
            proof: ProofPolicy::Auto,
        }
    }

    #[test]
    fn onlyoffice_404_says_enable_wopi() {
        let e = NodeDiscoveryError::Fetch(FetchError::Status(StatusCode::NOT_FOUND));
        let v = unusable(SuiteKind::OnlyOffice, "pool p node http://n/", &e);
        assert_eq!(v.level, Level::Fail);
        assert!(v.fix.unwrap().contains("wopi.enable"));
        let v = unusable(SuiteKind::Collabora, "pool p node http://n/", &e);
        assert!(!v.fix.unwrap().contains("wopi.enable"));
    }

    #[test]
    fn keys_that_differ_fail_and_name_each_node() {
        let a = ProofKey::generate().unwrap().public().clone();
        let b = ProofKey::generate().unwrap().public().clone();
        let pair = |k: &crate::wopi::proof_key::PublicProofKey| ProofKeyPair {
            current: k.clone(),
            old: k.clone(),
        };
        let (n1, n2) = (
            Url::parse("http://n1/").unwrap(),
            Url::parse("http://n2/").unwrap(),
        );
        let same = pool_keys(
            &pool(SuiteKind::OnlyOffice),
            &[(&n1, Some(pair(&a))), (&n2, Some(pair(&a)))],
        )
        .unwrap();
        assert_eq!(same.level, Level::Ok);
        let differ = pool_keys(
            &pool(SuiteKind::OnlyOffice),
            &[(&n1, Some(pair(&a))), (&n2, None)],
        )
        .unwrap();
        assert_eq!(differ.level, Level::Fail);
        assert!(differ.message.contains("http://n2/ no key"), "{differ}");
        assert!(differ.fix.unwrap().contains("wopi.privateKey"));
        assert!(pool_keys(&pool(SuiteKind::Collabora), &[(&n1, Some(pair(&b)))]).is_none());
    }
}
