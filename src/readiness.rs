//! Whether this instance can serve Nextcloud, said twice: briefly on the public
//! `/readyz`, in detail on the admin listener's `/admin/ready`.
//!
//! A load balancer or kubelet only needs the status, and the public listener faces the
//! internet: its body names no node address, error text or rules file (a stranger could
//! map the editor fleet from them). Operators get every line, the same ones `officeswitch
//! doctor` and the logs tell, behind the admin token.
//!
//! Ready means: every pool has a discovery to serve (live or last good) and the instance
//! is not stopping. Nodes that are down, a failing rules reload or an unreachable pin
//! store are listed but do not make the instance unready: another instance would not do
//! better, and taking every instance out of the balancer would turn a degraded service
//! into none.

use std::sync::Arc;

use serde::Serialize;

use crate::discovery::DiscoveryService;
use crate::rules::watch::RulesStore;
use crate::server::drain::Drain;
use crate::sticky::pins::Stickiness;

/// What readiness reads; cheap to share between the proxy and the admin listener.
pub struct Readiness {
    discovery: Arc<DiscoveryService>,
    rules: Arc<RulesStore>,
    sticky: Arc<Stickiness>,
    drain: Arc<Drain>,
}

/// One look at readiness.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether a load balancer should send clients here.
    pub ready: bool,
    /// The public body's line: `ready`, or `not ready:` and why in words that name no
    /// address (`draining`, `pool onlyoffice has no discovery`).
    pub summary: String,
    /// Every detail line (pools and their nodes, rules, node health, pins), for operators.
    pub detail: Vec<String>,
}

impl Readiness {
    /// Reads readiness from the state the proxy already keeps.
    pub fn new(
        discovery: Arc<DiscoveryService>,
        rules: Arc<RulesStore>,
        sticky: Arc<Stickiness>,
        drain: Arc<Drain>,
    ) -> Readiness {
        Readiness {
            discovery,
            rules,
            sticky,
            drain,
        }
    }

    /// Readiness as of now.
    pub fn report(&self) -> Report {
        let catalog = self.discovery.catalog();
        let draining = self.drain.is_draining();
        let mut reasons = Vec::new();
        let mut detail = Vec::new();
        if draining {
            reasons.push("draining".to_string());
            detail.push("draining: this instance is stopping; send new clients elsewhere".into());
        }
        reasons.extend(
            catalog
                .pools
                .iter()
                .filter(|p| p.source.is_none())
                .map(|p| format!("pool {} has no discovery", p.name)),
        );
        detail.extend(catalog.report());
        detail.push(rules_line(&self.rules));
        detail.push(self.sticky.topology().report());
        detail.extend(self.sticky.health().report());
        detail.push(self.sticky.report());
        let ready = reasons.is_empty();
        let summary = if ready {
            "ready".to_string()
        } else {
            format!("not ready: {}", reasons.join("; "))
        };
        Report {
            ready,
            summary,
            detail,
        }
    }
}

/// The detail line about rules: what is loaded and whether reloads fail.
fn rules_line(rules: &RulesStore) -> String {
    let loaded = format!("rules: {} organisations", rules.current().organisations());
    match rules.last_error() {
        Some(e) => format!(
            "{loaded}; the last reload failed ({} failures so far), previous rules in force: {e}",
            rules.failures()
        ),
        None => loaded,
    }
}
