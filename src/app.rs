//! Startup and lifecycle: load and check everything, bind, serve, shut down.
//!
//! [`prepare`] does every check that needs no network (settings, rules, keys, TLS files,
//! CA bundle); `check-config` runs exactly it, so the server refuses to start on
//! exactly the errors `check-config` reports. [`App::run`] takes listeners bound by the
//! caller (tests bind port 0) and a shutdown token.

use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, ConfigError};
use crate::discovery::{DiscoveryService, ProofKeyPair};
use crate::proxy::Proxy;
use crate::rules::RuleSet;
use crate::rules::watch::RulesStore;
use crate::server;
use crate::upstream::{self, UpstreamClient, UpstreamError};
use crate::wopi::proof_key::{self, KeyError, ProofKey};

/// Why officeswitch cannot start; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Settings or rules.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Proof keys.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// TLS certificate or key.
    #[error("{0}")]
    Tls(#[from] server::tls::TlsError),
    /// Upstream CA bundle.
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
}

/// What to do when the configured proof key file does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingKey {
    /// Create it if `keys.generate_missing` allows (server start).
    GenerateIfAllowed,
    /// Only report (check-config must not write files).
    Report,
}

/// Everything loaded from disk and checked, ready to serve.
pub struct Prepared {
    /// Validated settings.
    pub config: Config,
    /// Compiled rules.
    pub rules: RuleSet,
    /// officeswitch's public proof keys, as discovery publishes them.
    pub keys: ProofKeyPair,
    /// TLS acceptor when a `[tls]` listener is configured.
    pub tls: Option<TlsAcceptor>,
    /// Client to editor nodes.
    pub client: UpstreamClient,
}

/// Loads and checks rules, keys, certificates and the CA bundle for `config`.
///
/// # Errors
/// The first [`StartupError`] found.
pub fn prepare(config: Config, missing_key: MissingKey) -> Result<Prepared, StartupError> {
    let rules = RuleSet::load(&config.rules_dir, &config.pools)?;
    let current = load_current_key(&config, missing_key)?;
    let old = match &config.keys.old_proof_key {
        Some(path) => ProofKey::load(path)?.public().clone(),
        None => current.clone(),
    };
    let tls = config
        .tls
        .as_ref()
        .map(|t| server::tls::acceptor(&t.cert, &t.key))
        .transpose()?;
    let client = upstream::client(&config.upstream)?;
    Ok(Prepared {
        config,
        rules,
        keys: ProofKeyPair { current, old },
        tls,
        client,
    })
}

impl Prepared {
    /// The live rules store, starting from the rules loaded here.
    pub fn rules_store(&self) -> Arc<RulesStore> {
        RulesStore::new(
            self.config.rules_dir.clone(),
            self.config.pools.clone(),
            self.rules.clone(),
        )
    }

    /// A discovery service for these settings (empty catalog, not yet running).
    pub fn discovery_service(&self, rules: Arc<RulesStore>) -> Arc<DiscoveryService> {
        DiscoveryService::new(&self.config, rules, self.keys.clone(), self.client.clone())
    }
}

fn load_current_key(
    config: &Config,
    missing_key: MissingKey,
) -> Result<proof_key::PublicProofKey, StartupError> {
    let path = &config.keys.proof_key;
    if !path.exists() && config.keys.generate_missing {
        if missing_key == MissingKey::Report {
            // check-config: the server would create it; a fresh key is always valid.
            return Ok(ProofKey::generate()?.public().clone());
        }
        let key = proof_key::write_new_key(path, false)?;
        warn!(path = %path.display(),
            "generated a new proof key; every officeswitch instance behind one load balancer must share the same key file");
        return Ok(key.public().clone());
    }
    Ok(ProofKey::load(path)?.public().clone())
}

/// The listening sockets, bound by the caller.
pub struct Listeners {
    /// Plain HTTP.
    pub plain: Option<TcpListener>,
    /// TLS (uses [`Prepared::tls`]).
    pub tls: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses configured in `config`.
    ///
    /// # Errors
    /// The address that could not be bound, and why.
    pub async fn bind(config: &Config) -> io::Result<Listeners> {
        let bind = |addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
        };
        let plain = match config.listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let tls = match &config.tls {
            Some(t) => Some(bind(t.listen).await?),
            None => None,
        };
        Ok(Listeners { plain, tls })
    }
}

/// A prepared officeswitch with its live discovery.
pub struct App {
    prepared: Prepared,
    rules: Arc<RulesStore>,
    discovery: Arc<DiscoveryService>,
}

impl App {
    /// Creates the rules store and the discovery service, seeded from the state dir.
    pub async fn new(prepared: Prepared) -> App {
        let rules = prepared.rules_store();
        let discovery = prepared.discovery_service(rules.clone());
        discovery.load_last_good().await;
        App {
            prepared,
            rules,
            discovery,
        }
    }

    /// The discovery service (to refresh it on SIGHUP).
    pub fn discovery(&self) -> &Arc<DiscoveryService> {
        &self.discovery
    }

    /// The rules store (to reload it on SIGHUP).
    pub fn rules(&self) -> &Arc<RulesStore> {
        &self.rules
    }

    /// Serves until `shutdown` is cancelled, then drains and returns.
    pub async fn run(self, listeners: Listeners, shutdown: CancellationToken) {
        let config = &self.prepared.config;
        let proxy = Arc::new(Proxy::new(
            config,
            self.discovery.clone(),
            self.rules.clone(),
            self.prepared.client.clone(),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        let stop = shutdown.clone();
        tasks.spawn(
            self.discovery
                .clone()
                .run(async move { stop.cancelled().await }),
        );
        let stop = shutdown.clone();
        tasks.spawn(
            self.discovery
                .clone()
                .follow_rules(async move { stop.cancelled().await }),
        );
        if config.watch_rules {
            tasks.spawn(self.rules.clone().watch(shutdown.clone()));
        }
        let mut servers = Vec::new();
        if let Some(listener) = listeners.plain {
            servers.push((listener, None));
        }
        if let (Some(listener), Some(acceptor)) = (listeners.tls, self.prepared.tls.clone()) {
            servers.push((listener, Some(acceptor)));
        }
        for (listener, tls) in servers {
            tasks.spawn(server::serve(
                listener,
                tls,
                proxy.clone(),
                config.server.clone(),
                shutdown.clone(),
            ));
        }
        while let Some(result) = tasks.join_next().await {
            if let Err(e) = result {
                warn!(error = %e, "a server task failed");
            }
        }
        info!("stopped");
    }
}
