//! Startup and lifecycle: load and check everything, bind, serve, shut down.
//!
//! [`prepare`] does every check that needs no network (settings, rules, keys, TLS files,
//! CA bundle); `check-config` runs exactly it, so the server refuses to start on
//! exactly the errors `check-config` reports. [`App::run`] takes listeners bound by the
//! caller (tests bind port 0) and serves until [`App::drain`] is asked to stop.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::admin;
use crate::config::{Config, ConfigError};
use crate::discovery::{DiscoveryService, ProofKeyPair};
use crate::metrics::Scrape;
use crate::proxy::{Proxy, WopiKeys};
use crate::rules::RuleSet;
use crate::rules::watch::RulesStore;
use crate::server;
use crate::server::drain::Drain;
use crate::sticky::health::Health;
use crate::sticky::persist;
use crate::sticky::pins::Stickiness;
use crate::sticky::store::{self, PinStore, StoreError};
use crate::topology::TopologyStore;
use crate::topology::dns::{DnsMembership, DnsSetupError};
use crate::upstream::{self, UpstreamClient, UpstreamError};
use crate::wopi::proof::Signer;
use crate::wopi::proof_key::{self, KeyError, ProofKey};
use crate::wopi::token::{self, TokenKeyError, TokenKeys, TokenSecret};

/// Why officeswitch cannot start; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Settings or rules.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Proof keys.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// Token secrets.
    #[error("{0}")]
    TokenKey(#[from] TokenKeyError),
    /// TLS certificate or key.
    #[error("{0}")]
    Tls(#[from] server::tls::TlsError),
    /// Upstream CA bundle.
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    /// The pin store settings.
    #[error("pins.store: {0}")]
    Store(#[from] StoreError),
    /// The admin token file.
    #[error("{0}")]
    Admin(#[from] admin::AdminError),
    /// The system's DNS settings, for pools that name their nodes by DNS.
    #[error("dns: {0}")]
    Dns(#[from] DnsSetupError),
}

/// What to do when the configured proof key or token secret file does not exist.
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
    /// officeswitch's private proof keys, to sign the WOPI calls it relays to hosts.
    pub signing: SigningKeys,
    /// Mints and checks editor tokens, derives file ids.
    pub tokens: Arc<TokenKeys>,
    /// Where document pins live (memory, or Redis shared by the instances).
    pub pin_store: Arc<dyn PinStore>,
    /// The admin API's bearer token, when `[admin]` is configured.
    pub admin_token: Option<Arc<str>>,
    /// TLS acceptor when a `[tls]` listener is configured.
    pub tls: Option<TlsAcceptor>,
    /// Client to editor nodes.
    pub client: UpstreamClient,
    /// Resolver of pools that name their nodes by DNS; `None` when none does.
    pub dns: Option<DnsMembership>,
}

/// Reloads the pools' node lists whenever the settings file at `path` changes, until
/// `shutdown` (`watch_settings`; `SIGHUP` does the same on demand).
async fn watch_settings(path: PathBuf, sticky: Arc<Stickiness>, shutdown: CancellationToken) {
    let Some(name) = path.file_name().map(ToOwned::to_owned) else {
        return;
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let is_settings = move |changed: &std::path::Path| changed.file_name() == Some(&*name);
    crate::watch::on_changes(&dir, "settings file", is_settings, shutdown, None, || {
        let sticky = Arc::clone(&sticky);
        async move {
            // A failed reload keeps the running nodes and logs why.
            let _ = tokio::task::spawn_blocking(move || sticky.reload_topology()).await;
        }
    })
    .await;
}

/// officeswitch's private proof keys: it re-signs every call it relays to a host, because
/// the editor's own proof covers officeswitch's URL and token, not the host's.
#[derive(Clone)]
pub struct SigningKeys {
    /// Key that signs `X-WOPI-Proof`.
    pub current: Arc<ProofKey>,
    /// Previous key during rotation, for `X-WOPI-ProofOld`.
    pub old: Option<Arc<ProofKey>>,
}

/// Loads and checks rules, keys, certificates and the CA bundle for `config`.
///
/// # Errors
/// The first [`StartupError`] found.
pub fn prepare(config: Config, missing_key: MissingKey) -> Result<Prepared, StartupError> {
    let rules = RuleSet::load(&config.rules_dir, &config.pools)?;
    let signing = SigningKeys {
        current: Arc::new(load_current_key(&config, missing_key)?),
        old: match &config.keys.old_proof_key {
            Some(path) => Some(Arc::new(ProofKey::load(path)?)),
            None => None,
        },
    };
    let current = signing.current.public().clone();
    let old = signing
        .old
        .as_ref()
        .map_or_else(|| current.clone(), |k| k.public().clone());
    let tokens = Arc::new(load_token_keys(&config, missing_key)?);
    let tls = config
        .tls
        .as_ref()
        .map(|t| server::tls::acceptor(&t.cert, &t.key))
        .transpose()?;
    let client = upstream::client(&config.upstream)?;
    let pin_store = store::open(&config.pins)?;
    let admin_token = config
        .admin
        .as_ref()
        .map(|a| admin::load_token(&a.token_file).map(Arc::from))
        .transpose()?;
    let dns = if config.dns.pools.is_empty() {
        None
    } else {
        Some(DnsMembership::new(&config.dns)?)
    };
    Ok(Prepared {
        dns,
        config,
        rules,
        keys: ProofKeyPair { current, old },
        signing,
        tokens,
        pin_store,
        admin_token,
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

    /// A discovery service for these settings over `topology` (empty catalog, not yet
    /// running).
    pub fn discovery_service(
        &self,
        topology: Arc<TopologyStore>,
        rules: Arc<RulesStore>,
    ) -> Arc<DiscoveryService> {
        DiscoveryService::new(
            &self.config,
            topology,
            rules,
            self.keys.clone(),
            self.client.clone(),
        )
    }
}

fn load_current_key(config: &Config, missing_key: MissingKey) -> Result<ProofKey, StartupError> {
    let path = &config.keys.proof_key;
    if !path.exists() && config.keys.generate_missing {
        if missing_key == MissingKey::Report {
            // check-config: the server would create it; a fresh key is always valid.
            return Ok(ProofKey::generate()?);
        }
        let key = proof_key::write_new_key(path, false)?;
        warn!(path = %path.display(),
            "generated a new proof key; every officeswitch instance behind one load balancer must share the same key file");
        return Ok(key);
    }
    Ok(ProofKey::load(path)?)
}

/// The token keys of the configured secrets, generating a missing current secret like
/// [`load_current_key`] does the proof key.
fn load_token_keys(config: &Config, missing_key: MissingKey) -> Result<TokenKeys, StartupError> {
    let path = &config.keys.token_secret;
    let current = if !path.exists() && config.keys.generate_missing {
        if missing_key == MissingKey::Report {
            // check-config: the server would create it; a fresh secret is always valid.
            TokenSecret::generate()?
        } else {
            let secret = token::write_new_secret(path, false)?;
            warn!(path = %path.display(),
                "generated a new token secret; every officeswitch instance behind one load balancer must share the same secret file");
            secret
        }
    } else {
        TokenSecret::load(path)?
    };
    let old = config
        .keys
        .old_token_secret
        .as_deref()
        .map(TokenSecret::load)
        .transpose()?;
    Ok(TokenKeys::new(current, old))
}

/// The listening sockets, bound by the caller.
pub struct Listeners {
    /// Plain HTTP.
    pub plain: Option<TcpListener>,
    /// TLS (uses [`Prepared::tls`]).
    pub tls: Option<TcpListener>,
    /// The operators' API (`[admin]`), on its own address.
    pub admin: Option<TcpListener>,
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
        let admin = match &config.admin {
            Some(a) => Some(bind(a.listen).await?),
            None => None,
        };
        Ok(Listeners { plain, tls, admin })
    }
}

/// A prepared officeswitch with its live discovery.
pub struct App {
    prepared: Prepared,
    rules: Arc<RulesStore>,
    discovery: Arc<DiscoveryService>,
    sticky: Arc<Stickiness>,
    drain: Arc<Drain>,
}

impl App {
    /// Creates the rules store and the discovery service, seeded from the state dir.
    pub async fn new(prepared: Prepared) -> App {
        let rules = prepared.rules_store();
        let topology = TopologyStore::new(&prepared.config);
        let discovery = prepared.discovery_service(Arc::clone(&topology), rules.clone());
        discovery.load_last_good().await;
        let config = &prepared.config;
        persist::load(&*prepared.pin_store, &persist::file(&config.state_dir));
        let health = Health::new(&config.pools, &config.health);
        let sticky = Stickiness::new(
            Arc::clone(&prepared.pin_store),
            health,
            topology,
            &config.pins,
        );
        let drain = Arc::new(Drain::new(config.drain.clone()));
        App {
            prepared,
            rules,
            discovery,
            sticky,
            drain,
        }
    }

    /// The stop handle: [`Drain::request_stop`] starts a graceful stop (SIGTERM), a second
    /// call ends it at once.
    pub fn drain(&self) -> &Arc<Drain> {
        &self.drain
    }

    /// Document pins and node health (for the admin side and tests).
    pub fn sticky(&self) -> &Arc<Stickiness> {
        &self.sticky
    }

    /// The discovery service (to refresh it on SIGHUP).
    pub fn discovery(&self) -> &Arc<DiscoveryService> {
        &self.discovery
    }

    /// The rules store (to reload it on SIGHUP).
    pub fn rules(&self) -> &Arc<RulesStore> {
        &self.rules
    }

    /// Serves until [`App::drain`] is asked to stop, follows the drain timeline and
    /// returns when the process may exit.
    pub async fn run(mut self, listeners: Listeners) {
        // Background work (health checks, discovery, rules, pins, admin) runs to the very
        // end of the drain: a draining instance still routes and answers operators.
        let shutdown = CancellationToken::new();
        let config = &self.prepared.config;
        let proxy = Arc::new(Proxy::new(
            config,
            self.discovery.clone(),
            self.rules.clone(),
            self.prepared.client.clone(),
            WopiKeys {
                tokens: Arc::clone(&self.prepared.tokens),
                signer: Signer::new(
                    Arc::clone(&self.prepared.signing.current),
                    self.prepared.signing.old.clone(),
                ),
            },
            Arc::clone(&self.sticky),
            Arc::clone(&self.drain),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        let stop = shutdown.clone();
        tasks.spawn(
            self.sticky
                .health()
                .clone()
                .run(self.prepared.client.clone(), async move {
                    stop.cancelled().await
                }),
        );
        let stop = shutdown.clone();
        tasks.spawn(
            self.sticky
                .clone()
                .run(async move { stop.cancelled().await }),
        );
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
        if config.watch_settings {
            tasks.spawn(watch_settings(
                config.path.clone(),
                Arc::clone(&self.sticky),
                shutdown.clone(),
            ));
        }
        if let Some(dns) = self.prepared.dns.take() {
            let stop = shutdown.clone();
            tasks.spawn(dns.run(
                Arc::clone(&self.sticky),
                async move { stop.cancelled().await },
            ));
        }
        if let (Some(listener), Some(token)) = (listeners.admin, &self.prepared.admin_token) {
            let scrape = Arc::new(Scrape {
                sticky: Arc::clone(&self.sticky),
                discovery: Arc::clone(&self.discovery),
                rules: Arc::clone(&self.rules),
                cache: Arc::clone(proxy.cache()),
            });
            tasks.spawn(admin::serve(
                listener,
                Arc::clone(&self.sticky),
                Some(Arc::clone(proxy.readiness())),
                Some(scrape),
                Arc::clone(token),
                config.admin.as_ref().is_none_or(|a| a.metrics_need_token),
                shutdown.clone(),
            ));
        }
        let mut servers = Vec::new();
        if let Some(listener) = listeners.plain {
            servers.push((listener, None));
        }
        if let (Some(listener), Some(acceptor)) = (listeners.tls, self.prepared.tls.clone()) {
            servers.push((listener, Some(acceptor)));
        }
        let mut accept_loops = tokio::task::JoinSet::new();
        let admission = server::admission::Admission::new(
            config.server.max_connections,
            config.server.max_connections_per_client,
        );
        for (listener, tls) in servers {
            accept_loops.spawn(server::serve(
                listener,
                tls,
                proxy.clone(),
                config.server.clone(),
                Arc::clone(&admission),
                Arc::clone(&self.drain),
            ));
        }
        let pins_file = persist::file(&config.state_dir);
        let store = Arc::clone(&self.prepared.pin_store);
        let stop = shutdown.clone();
        let saving = pins_file.clone();
        tasks.spawn(async move {
            let mut every = tokio::time::interval(persist::SAVE_EVERY);
            every.tick().await;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = every.tick() => save_pins(Arc::clone(&store), saving.clone()).await,
                }
            }
        });
        self.drain
            .run(async {
                while let Some(result) = accept_loops.join_next().await {
                    if let Err(e) = result {
                        warn!(error = %e, "an accept loop failed");
                    }
                }
            })
            .await;
        shutdown.cancel();
        while let Some(result) = tasks.join_next().await {
            if let Err(e) = result {
                warn!(error = %e, "a background task failed");
            }
        }
        save_pins(Arc::clone(&self.prepared.pin_store), pins_file).await;
        info!("stopped");
    }
}

/// Saves the memory store's pins for the next start, on a blocking thread (thousands of
/// pins are a few milliseconds of file I/O an async worker should not wait on).
async fn save_pins(store: Arc<dyn PinStore>, path: std::path::PathBuf) {
    let saved = tokio::task::spawn_blocking(move || {
        let result = persist::save(&*store, &path);
        (result, path)
    })
    .await;
    match saved {
        Ok((Ok(0), _)) => {}
        Ok((Ok(n), path)) => debug!(path = %path.display(), pins = n, "saved pins"),
        Ok((Err(e), path)) => warn!(path = %path.display(), error = %e, "cannot save pins"),
        Err(e) => warn!(error = %e, "saving pins failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::Path;

    /// A settings file with an empty rule set in `dir`, plus `keys` lines.
    fn config(dir: &Path, keys: &str) -> Config {
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        std::fs::write(dir.join("rules/default.toml"), "").unwrap();
        let settings = format!(
            "public_url = \"https://office.example.org\"\nlisten = \"127.0.0.1:0\"\n\
             [keys]\nproof_key = \"keys/proof.pem\"\n{keys}\n\
             [[pool]]\nname = \"collabora\"\nkind = \"collabora\"\nnodes = [\"http://127.0.0.1:9980\"]\n"
        );
        let path = dir.join("officeswitch.toml");
        std::fs::write(&path, &settings).unwrap();
        Config::from_file(&path).unwrap()
    }

    #[test]
    fn check_config_never_writes_missing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let prepared = prepare(
            config(dir.path(), "generate_missing = true"),
            MissingKey::Report,
        )
        .unwrap();
        assert!(!dir.path().join("keys").exists());
        assert_eq!(prepared.signing.current.public(), &prepared.keys.current);
        assert!(token::is_file_id(&prepared.tokens.file_id("o", "u")));
    }

    #[test]
    fn server_start_generates_missing_keys_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = prepare(
            config(dir.path(), "generate_missing = true"),
            MissingKey::GenerateIfAllowed,
        )
        .unwrap();
        assert!(dir.path().join("keys/proof.pem").is_file());
        assert!(dir.path().join("keys/token.secret").is_file());
        let again = prepare(
            config(dir.path(), "generate_missing = true"),
            MissingKey::GenerateIfAllowed,
        )
        .unwrap();
        assert_eq!(again.keys.current, first.keys.current);
        assert_eq!(
            again.tokens.file_id("o", "u"),
            first.tokens.file_id("o", "u")
        );
        // Without a previous key, `old` repeats the current public key and nothing signs old.
        assert_eq!(again.keys.old, again.keys.current);
        assert!(again.signing.old.is_none());
    }

    #[test]
    fn rotation_files_are_loaded_and_missing_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        proof_key::write_new_key(&keys.join("proof.pem"), false).unwrap();
        let old_proof = proof_key::write_new_key(&keys.join("proof.old.pem"), false).unwrap();
        let before = TokenKeys::new(
            token::write_new_secret(&keys.join("token.old"), false).unwrap(),
            None,
        );
        token::write_new_secret(&keys.join("token.secret"), false).unwrap();
        let prepared = prepare(
            config(
                dir.path(),
                "old_proof_key = \"keys/proof.old.pem\"\nold_token_secret = \"keys/token.old\"",
            ),
            MissingKey::Report,
        )
        .unwrap();
        assert_eq!(&prepared.keys.old, old_proof.public());
        assert_eq!(
            prepared.signing.old.as_ref().map(|k| k.public()),
            Some(old_proof.public())
        );
        let id = before.file_id("o", "u");
        let grant = token::Grant {
            kind: token::GrantKind::File,
            file_id: id.clone(),
            org: "o".into(),
            pool: "collabora".into(),
            url: "u".into(),
            host_token: "t".into(),
            expires_at: u64::MAX,
            read_only: false,
        };
        let minted = before.mint(&grant).unwrap();
        assert_eq!(prepared.tokens.check(&minted, &id, 0).unwrap(), grant);

        std::fs::remove_file(keys.join("token.old")).unwrap();
        let err = prepare(
            config(dir.path(), "old_token_secret = \"keys/token.old\""),
            MissingKey::Report,
        )
        .err()
        .unwrap();
        assert!(matches!(err, StartupError::TokenKey(_)), "{err:?}");
        assert!(err.to_string().contains("token.old"), "{err}");

        // Without generate_missing, a missing current secret is an error naming it.
        std::fs::remove_file(keys.join("token.secret")).unwrap();
        let err = prepare(config(dir.path(), ""), MissingKey::GenerateIfAllowed)
            .err()
            .unwrap();
        assert!(err.to_string().contains("token.secret"), "{err}");
        assert!(!keys.join("token.secret").exists());
    }
}
