//! Nodes found by DNS: a pool's `dns` names a DNS name (a Kubernetes headless Service has
//! one A/AAAA record per ready pod) and every address it resolves to is a node, re-resolved
//! every `[dns] interval_secs`. Pods that appear join, pods that disappear leave (they
//! finish their documents, see [`super`]).
//!
//! A failed resolution (timeout, `SERVFAIL`, `NXDOMAIN`) changes nothing: the last answer
//! stays in force, so a DNS hiccup does not drain a pool; the failure is logged once per
//! change of state. An answer without records (every pod gone) is an answer: the nodes
//! leave.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use tracing::{info, warn};
use url::Url;

use crate::config::{DnsConfig, DnsPool};
use crate::sticky::pins::Stickiness;

/// Why a resolver cannot be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the system's DNS settings (/etc/resolv.conf): {0}")]
pub struct DnsSetupError(String);

/// Resolves the pools' DNS names and lists what they resolve to.
pub struct DnsMembership {
    resolver: TokioResolver,
    config: DnsConfig,
}

/// What a pool's name resolved to: the nodes, or why not.
type Resolution = Result<Vec<Url>, String>;

impl DnsMembership {
    /// A resolver for `config`: its `servers`, else the system's.
    ///
    /// # Errors
    /// The system's DNS settings cannot be read (only when `servers` is empty).
    pub fn new(config: &DnsConfig) -> Result<DnsMembership, DnsSetupError> {
        let mut options = ResolverOpts::default();
        // Each round asks again: a pod that went away must leave within one interval,
        // whatever TTL the records carry.
        options.cache_size = 0;
        let builder = if config.servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DnsSetupError(e.to_string()))?
        } else {
            let mut group = NameServerConfigGroup::new();
            for server in &config.servers {
                group.merge(NameServerConfigGroup::from_ips_clear(
                    &[server.ip()],
                    server.port(),
                    true,
                ));
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), group),
                TokioConnectionProvider::default(),
            )
        };
        Ok(DnsMembership {
            resolver: builder.with_options(options).build(),
            config: config.clone(),
        })
    }

    /// Resolves every DNS pool now, then every interval, until `shutdown` resolves; each
    /// change of a pool's addresses is listed in `sticky`'s topology.
    pub async fn run(self, sticky: Arc<Stickiness>, shutdown: impl Future<Output = ()> + Send) {
        if self.config.pools.is_empty() {
            return;
        }
        tokio::pin!(shutdown);
        let mut last: HashMap<String, Resolution> = HashMap::new();
        let mut interval = tokio::time::interval(self.config.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = interval.tick() => {}
            }
            for pool in &self.config.pools {
                let now = self.resolve(pool).await;
                let before = last.get(&pool.pool);
                if before == Some(&now) {
                    continue;
                }
                match &now {
                    Ok(nodes) => {
                        info!(pool = %pool.pool, name = %host(&pool.template), nodes = nodes.len(),
                            "DNS answer changed: listing its addresses as the pool's nodes");
                        if let Err(e) = sticky.set_resolved_nodes(&pool.pool, nodes.clone()) {
                            warn!(pool = %pool.pool, error = %e, "DNS nodes not listed");
                        }
                    }
                    Err(e) => warn!(pool = %pool.pool, name = %host(&pool.template), error = %e,
                        "DNS resolution failed: the nodes of the last answer stay"),
                }
                last.insert(pool.pool.clone(), now);
            }
        }
    }

    /// The nodes `pool`'s name resolves to now, sorted; an answer without records is an
    /// empty list, a failure an error.
    async fn resolve(&self, pool: &DnsPool) -> Resolution {
        let name = host(&pool.template);
        // Fully qualified: no search domains, the name is what the settings say.
        let fqdn = if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        };
        let mut addresses: Vec<IpAddr> = match self.resolver.lookup_ip(fqdn).await {
            Ok(lookup) => lookup.iter().collect(),
            Err(e) => match answer_code(&e) {
                Some(ResponseCode::NoError) => Vec::new(),
                Some(code) => return Err(format!("the name server answered {code}")),
                None => return Err(e.to_string()),
            },
        };
        addresses.sort();
        addresses.dedup();
        Ok(addresses
            .into_iter()
            .filter_map(|ip| node_at(&pool.template, ip))
            .collect())
    }
}

/// The response code of a resolver error that is an answer without records (`NOERROR`:
/// nothing there; `NXDOMAIN`, `SERVFAIL`...: a failure); `None` for other errors.
fn answer_code(error: &hickory_resolver::ResolveError) -> Option<ResponseCode> {
    match error.proto().map(|e| e.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => Some(*response_code),
        _ => None,
    }
}

/// The template's host name.
fn host(template: &Url) -> &str {
    template.host_str().unwrap_or_default()
}

/// The node `template` names at address `ip` (same scheme, port and path).
fn node_at(template: &Url, ip: IpAddr) -> Option<Url> {
    let mut node = template.clone();
    node.set_ip_host(ip).ok()?;
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_is_a_node_with_the_templates_scheme_port_and_path() {
        let template = Url::parse("https://cool.editors.svc.cluster.local:9980/cool/").unwrap();
        assert_eq!(
            node_at(&template, "10.1.2.3".parse().unwrap())
                .unwrap()
                .as_str(),
            "https://10.1.2.3:9980/cool/"
        );
        assert_eq!(
            node_at(&template, "fd00::7".parse().unwrap())
                .unwrap()
                .as_str(),
            "https://[fd00::7]:9980/cool/"
        );
    }
}
