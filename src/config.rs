//! Settings: `officeswitch.toml` read as written ([`mod@file`]), then validated into [`Config`].
//!
//! Every error names the file, the key and the line ([`ConfigError`]). Relative paths are
//! resolved against the directory of the settings file, so `officeswitch --config
//! /etc/officeswitch/officeswitch.toml` works from any working directory.

mod error;
pub mod file;

pub use error::ConfigError;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use url::Url;

use file::{FileConfig, FilePool};

/// The validated settings; the only configuration type the rest of officeswitch sees.
#[derive(Debug, Clone)]
pub struct Config {
    /// The settings file this came from (for messages).
    pub path: PathBuf,
    /// Origin (scheme, host, port; no path) that browsers, Nextcloud and editors use to
    /// reach officeswitch. Every `urlsrc` in the merged discovery starts with it.
    pub public_url: Url,
    /// Plain-HTTP listener, if any.
    pub listen: Option<SocketAddr>,
    /// TLS listener, if any.
    pub tls: Option<TlsConfig>,
    /// Directory of routing rules.
    pub rules_dir: PathBuf,
    /// Reload rules on file changes in `rules_dir` (besides SIGHUP).
    pub watch_rules: bool,
    /// Reload the pools' node lists when the settings file changes (besides SIGHUP).
    pub watch_settings: bool,
    /// Directory for state that survives restarts.
    pub state_dir: PathBuf,
    /// Where officeswitch's proof keys live.
    pub keys: KeysConfig,
    /// Discovery fetch timing and limits.
    pub discovery: DiscoveryConfig,
    /// Connections to editor nodes.
    pub upstream: UpstreamConfig,
    /// Limits on client requests.
    pub server: ServerConfig,
    /// Token lifetime and limits on host calls.
    pub wopi: WopiConfig,
    /// Active health checks of editor nodes.
    pub health: HealthConfig,
    /// Where document pins live.
    pub pins: PinsConfig,
    /// What SIGTERM does before the process exits.
    pub drain: DrainConfig,
    /// The admin listener, if any.
    pub admin: Option<AdminConfig>,
    /// Log output.
    pub log: LogConfig,
    /// The editor pools, in file order (file order breaks ownership ties).
    pub pools: Vec<PoolConfig>,
    /// Pools whose nodes come from DNS, and how to resolve them.
    pub dns: DnsConfig,
    /// The memory cache of versioned static assets.
    pub cache: CacheConfig,
}

/// The memory cache of versioned static assets (`[cache]`).
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Bytes it may hold (bodies, headers, keys); 0: no cache.
    pub max_bytes: u64,
    /// Largest answer kept; at most an eighth of `max_bytes`, so one entry never crowds
    /// out the rest.
    pub max_entry_bytes: usize,
}

/// Nodes found by DNS (`[[pool]] dns` and `[dns]`).
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Name servers to ask; empty: the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// Time between resolutions (`interval_secs`, default 10 s).
    pub interval: Duration,
    /// The pools that name their nodes by DNS.
    pub pools: Vec<DnsPool>,
}

/// A pool whose nodes are the addresses of a DNS name (a Kubernetes headless Service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPool {
    /// The pool's name.
    pub pool: String,
    /// A node URL whose host is the DNS name: each address it resolves to becomes a node
    /// with this scheme, port and path.
    pub template: Url,
}

/// Default seconds between DNS resolutions of pools' nodes.
const DEFAULT_DNS_INTERVAL_SECS: u64 = 10;

/// The TLS listener's address and certificate.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Address to accept TLS on.
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Paths of officeswitch's WOPI proof keys and token secrets.
#[derive(Debug, Clone)]
pub struct KeysConfig {
    /// Current key (PKCS#8 PEM).
    pub proof_key: PathBuf,
    /// Previous key during rotation.
    pub old_proof_key: Option<PathBuf>,
    /// Current token secret (base64, one line); default `keys/token.secret`. Mints every
    /// token and derives every file id, so instances behind one load balancer share it.
    pub token_secret: PathBuf,
    /// Previous token secret during rotation: tokens minted with it are still accepted.
    pub old_token_secret: Option<PathBuf>,
    /// Generate `proof_key` and `token_secret` when missing (handy for a first run; instances
    /// sharing a load balancer must share both, so production configs leave this off).
    pub generate_missing: bool,
}

/// Timing and limits of discovery fetches.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Period of the background refresh.
    pub refresh: Duration,
    /// Time one node gets to answer.
    pub fetch_timeout: Duration,
    /// Largest accepted body.
    pub max_body_bytes: usize,
}

/// How officeswitch connects to editor nodes.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Extra CA bundle for `https://` nodes.
    pub ca_file: Option<PathBuf>,
    /// TCP+TLS connect timeout.
    pub connect_timeout: Duration,
    /// Time a node gets to send its response head.
    pub first_byte_timeout: Duration,
    /// Silence (both directions) after which a WebSocket tunnel is closed.
    pub websocket_idle_timeout: Duration,
}

/// Limits on what clients may send.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Time a client gets to send a complete request head.
    pub header_timeout: Duration,
    /// Largest request head accepted.
    pub max_header_bytes: usize,
    /// Time a request body officeswitch reads itself (an open form) may take.
    pub body_timeout: Duration,
    /// Time a client connection may sit with no request in flight and no bytes moving
    /// (HTTP/1.1 keep-alive and HTTP/2 alike) before officeswitch closes it.
    pub idle_timeout: Duration,
    /// Client connections open at once, all clients together.
    pub max_connections: usize,
    /// Client connections open at once from one address; `None`: no such limit (behind a
    /// load balancer every connection comes from its few addresses).
    pub max_connections_per_client: Option<usize>,
}

/// The tokens officeswitch mints for editors and the WOPI calls it relays to hosts.
#[derive(Debug, Clone)]
pub struct WopiConfig {
    /// Longest lifetime of a minted token (`max_token_ttl_secs`, default 36000 s = 10 h, as
    /// Nextcloud's own tokens); a host token that lives shorter shortens it.
    pub max_token_ttl: Duration,
    /// Largest CheckFileInfo or PutRelativeFile JSON officeswitch buffers to rewrite (default
    /// 1 MiB, at least 4096); a larger host answer is refused, not passed on unrewritten.
    pub max_json_bytes: usize,
    /// Time the host gets to send its response head to a relayed call (`host_timeout_secs`,
    /// default 60 s), including the time the call is held while the host refuses connections
    /// (`proxy::hold`): long enough for a Nextcloud restart, well below ONLYOFFICE's own
    /// 10 minutes (`callbackRequestTimeout`).
    pub host_timeout: Duration,
}

/// Active health checks of editor nodes (`[health]`).
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Time between two checks of one node (`interval_secs`, default 5 s).
    pub interval: Duration,
    /// Time one check may take (`timeout_secs`, default 2 s).
    pub timeout: Duration,
    /// Consecutive failures, of checks or of proxied requests, that mark a node down
    /// (`fall`, default 3).
    pub fall: u32,
    /// Consecutive successful checks that bring a down node back (`rise`, default 2).
    pub rise: u32,
}

/// Graceful stop (`[drain]`). SIGTERM turns `/readyz` to 503 at once so load balancers
/// stop sending new clients; the listeners close after `delay`; requests in flight finish;
/// WebSockets run on until `deadline` (counted from SIGTERM) and are then closed with a
/// close frame (1001, going away) that makes editors reconnect through another instance.
#[derive(Debug, Clone)]
pub struct DrainConfig {
    /// Time between SIGTERM and closing the listeners (`delay_secs`, default 5 s; 0 closes
    /// them at once): long enough for a load balancer to see `/readyz` fail.
    pub delay: Duration,
    /// Time from SIGTERM to closing what is still open and exiting (`deadline_secs`,
    /// default 25 s, at least `delay_secs`): under Kubernetes' default 30 s grace period.
    pub deadline: Duration,
}

/// The operators' listener (`[admin]`): node list and draining, behind a bearer token.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// File holding the bearer token (read at start; surrounding whitespace ignored).
    pub token_file: PathBuf,
    /// Whether `GET /metrics` needs the bearer token (`metrics_need_token`, default true).
    /// False lets Prometheus scrape without credentials, as it often does in Kubernetes;
    /// the other admin endpoints always need the token.
    pub metrics_need_token: bool,
}

/// Where pins live: one instance's memory, or Redis shared by every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinStoreConfig {
    /// In this process (`memory`, the default): enough for one instance.
    Memory,
    /// A Redis server (`redis://`, `rediss://`) or Sentinel group (`redis+sentinel://`).
    Redis(String),
}

/// Document -> node pins (`[pins]`).
#[derive(Debug, Clone)]
pub struct PinsConfig {
    /// The store (`store`, default `memory`).
    pub store: PinStoreConfig,
    /// Life of a pin without a request of its document (`ttl_secs`, default 3600 s).
    pub ttl: Duration,
    /// Time one store operation may take before routing goes on without it
    /// (`timeout_ms`, default 250 ms).
    pub timeout: Duration,
    /// How often each instance reads the drain marks other instances set in the store
    /// (`refresh_secs`, default 2 s): a drain set through one instance holds on every
    /// instance within this time.
    pub refresh: Duration,
}

/// Log format and default level.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// JSON lines instead of readable text.
    pub json: bool,
    /// Default filter directive, overridden by `RUST_LOG`.
    pub level: String,
}

/// Which editor product a pool runs; decides URL spaces and protocol quirks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SuiteKind {
    /// Collabora Online (coolwsd).
    Collabora,
    /// ONLYOFFICE Docs with `wopi.enable`.
    OnlyOffice,
}

impl SuiteKind {
    /// The name used in settings and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SuiteKind::Collabora => "collabora",
            SuiteKind::OnlyOffice => "onlyoffice",
        }
    }
}

/// Whether a pool's WOPI calls must carry a valid proof (`X-WOPI-Proof`), the editor's
/// signature that tells officeswitch a call really comes from that pool's nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProofPolicy {
    /// A call without a proof is refused iff the pool's discovery publishes a proof key, as
    /// Nextcloud decides; suits editors whose proof support depends on their version.
    #[default]
    Auto,
    /// Every call must carry a valid proof, even when discovery publishes no key (then all
    /// calls are refused): for deployments that must never relay an unsigned call.
    Required,
    /// A call without a proof is let through (a proof that is present is still checked): for
    /// editors known to sign some calls only.
    Optional,
}

impl ProofPolicy {
    /// The name used in settings.
    pub fn as_str(self) -> &'static str {
        match self {
            ProofPolicy::Auto => "auto",
            ProofPolicy::Required => "required",
            ProofPolicy::Optional => "optional",
        }
    }
}

/// One editor suite's pool of interchangeable nodes.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Name rules refer to.
    pub name: String,
    /// Product of every node in the pool.
    pub kind: SuiteKind,
    /// Base URLs (scheme, host, port, optional path prefix) of the nodes.
    pub nodes: Vec<Url>,
    /// When the pool's WOPI calls need a proof (`proof`, default `auto`).
    pub proof: ProofPolicy,
}

/// Default seconds between reads of the shared drain marks.
const DEFAULT_PINS_REFRESH_SECS: u64 = 2;
/// Default seconds between discovery refreshes.
const DEFAULT_REFRESH_SECS: u64 = 300;
/// Default seconds one node gets to answer a discovery fetch.
const DEFAULT_FETCH_TIMEOUT_SECS: u64 = 10;
/// Default body cap: real discoveries are 30-300 KiB.
const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// Default connect timeout to nodes.
const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 5;
/// Default time to a node's response head: conversions of large files take a while.
const DEFAULT_FIRST_BYTE_TIMEOUT_SECS: u64 = 120;
/// Default WebSocket idle limit; editors ping far more often than this.
const DEFAULT_WEBSOCKET_IDLE_TIMEOUT_SECS: u64 = 3600;
/// Default time for a client to send its request head.
const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;

/// Default time for a body officeswitch reads itself (an open form is ~2 KiB).
const DEFAULT_BODY_TIMEOUT_SECS: u64 = 10;

/// Default idle time of a client connection (nginx's `keepalive_timeout` is 75 s).
const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 75;

/// Default limit of client connections (each may hold an upstream one too: keep twice this
/// below the process's file-descriptor limit).
const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;

/// Default limit per client address: a busy office behind one NAT address (a browser keeps
/// about 6 connections plus one WebSocket per open document) stays far below it.
const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: u64 = 512;
/// Default cap on a request head; WOPI URLs with long tokens stay far below it.
const DEFAULT_MAX_HEADER_BYTES: u64 = 64 * 1024;
/// Default token secret file, relative to the settings file.
const DEFAULT_TOKEN_SECRET: &str = "keys/token.secret";
/// Default longest token lifetime: Nextcloud's own `token_ttl`.
const DEFAULT_MAX_TOKEN_TTL_SECS: u64 = 36_000;
/// Default cap on a rewritten host JSON body; CheckFileInfo is a few KiB.
const DEFAULT_MAX_JSON_BYTES: u64 = 1024 * 1024;

/// Default `cache.max_bytes`: 128 MiB, room for the files editor loads fetch of a few
/// builds of both suites at once (a rolling upgrade serves two).
const DEFAULT_CACHE_MAX_BYTES: u64 = 128 * 1024 * 1024;

/// Default `cache.max_entry_bytes`: 8 MiB, ONLYOFFICE's largest scripts and fonts.
const DEFAULT_CACHE_MAX_ENTRY_BYTES: u64 = 8 * 1024 * 1024;
/// Smallest `wopi.max_json_bytes`: below it, ordinary CheckFileInfo answers would be refused.
const MIN_MAX_JSON_BYTES: u64 = 4096;
/// Default time to the host's response head; Nextcloud answers PutFile after storing it.
const DEFAULT_HOST_TIMEOUT_SECS: u64 = 60;

impl Config {
    /// Reads and validates the settings file at `path`.
    ///
    /// # Errors
    /// The first problem found, located by file, key and line.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::file(path, format!("cannot read settings file: {e}")))?;
        Config::from_str(path, &source)
    }

    /// Validates settings given as text; `path` names them in errors and anchors relative paths.
    ///
    /// # Errors
    /// The first problem found, located by file, key and line.
    pub fn from_str(path: &Path, source: &str) -> Result<Config, ConfigError> {
        let raw: FileConfig =
            toml::from_str(source).map_err(|e| ConfigError::from_toml(path, source, &e))?;
        Validator { path, source }.config(raw)
    }
}

/// Turns a [`FileConfig`] into a [`Config`], remembering where the text came from.
struct Validator<'a> {
    path: &'a Path,
    source: &'a str,
}

impl Validator<'_> {
    fn err<T>(&self, key: &str, value: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, self.source, key, Some(value.span()), message)
    }

    fn config(&self, raw: FileConfig) -> Result<Config, ConfigError> {
        let public_url = self.public_url(&raw.public_url)?;
        let listen = raw
            .listen
            .as_ref()
            .map(|l| self.socket_addr("listen", l))
            .transpose()?;
        let tls = raw
            .tls
            .as_ref()
            .map(|t| {
                Ok::<_, ConfigError>(TlsConfig {
                    listen: self.socket_addr("tls.listen", &t.listen)?,
                    cert: self.path_value("tls.cert", &t.cert)?,
                    key: self.path_value("tls.key", &t.key)?,
                })
            })
            .transpose()?;
        if listen.is_none() && tls.is_none() {
            return Err(ConfigError::at(
                self.path,
                self.source,
                "listen",
                Some(raw.public_url.span()),
                "no listener: set `listen` and/or a `[tls]` section",
            ));
        }
        if let (Some(plain), Some(tls)) = (listen, &tls)
            && plain == tls.listen
        {
            let span = raw.tls.as_ref().map(|t| t.listen.span());
            return Err(ConfigError::at(
                self.path,
                self.source,
                "tls.listen",
                span,
                format!("{plain} is already the plain `listen` address"),
            ));
        }
        let keys = KeysConfig {
            proof_key: self.path_value("keys.proof_key", &raw.keys.proof_key)?,
            old_proof_key: raw
                .keys
                .old_proof_key
                .as_ref()
                .map(|k| self.path_value("keys.old_proof_key", k))
                .transpose()?,
            token_secret: self.optional_path(
                "keys.token_secret",
                raw.keys.token_secret.as_ref(),
                DEFAULT_TOKEN_SECRET,
            )?,
            old_token_secret: raw
                .keys
                .old_token_secret
                .as_ref()
                .map(|k| self.path_value("keys.old_token_secret", k))
                .transpose()?,
            generate_missing: raw.keys.generate_missing,
        };
        if let Some(old) = &keys.old_token_secret
            && *old == keys.token_secret
        {
            let span = raw.keys.old_token_secret.as_ref().map(|k| k.span());
            return Err(ConfigError::at(
                self.path,
                self.source,
                "keys.old_token_secret",
                span,
                "is the same file as keys.token_secret: during a rotation it names the previous secret",
            ));
        }
        let discovery = DiscoveryConfig {
            refresh: Duration::from_secs(self.positive(
                "discovery.refresh_secs",
                raw.discovery.refresh_secs.as_ref(),
                DEFAULT_REFRESH_SECS,
            )?),
            fetch_timeout: Duration::from_secs(self.positive(
                "discovery.fetch_timeout_secs",
                raw.discovery.fetch_timeout_secs.as_ref(),
                DEFAULT_FETCH_TIMEOUT_SECS,
            )?),
            max_body_bytes: usize::try_from(self.positive(
                "discovery.max_body_bytes",
                raw.discovery.max_body_bytes.as_ref(),
                DEFAULT_MAX_BODY_BYTES,
            )?)
            .unwrap_or(usize::MAX),
        };
        let upstream = UpstreamConfig {
            ca_file: raw
                .upstream
                .ca_file
                .as_ref()
                .map(|c| self.path_value("upstream.ca_file", c))
                .transpose()?,
            connect_timeout: Duration::from_secs(self.positive(
                "upstream.connect_timeout_secs",
                raw.upstream.connect_timeout_secs.as_ref(),
                DEFAULT_CONNECT_TIMEOUT_SECS,
            )?),
            first_byte_timeout: Duration::from_secs(self.positive(
                "upstream.first_byte_timeout_secs",
                raw.upstream.first_byte_timeout_secs.as_ref(),
                DEFAULT_FIRST_BYTE_TIMEOUT_SECS,
            )?),
            websocket_idle_timeout: Duration::from_secs(self.positive(
                "upstream.websocket_idle_timeout_secs",
                raw.upstream.websocket_idle_timeout_secs.as_ref(),
                DEFAULT_WEBSOCKET_IDLE_TIMEOUT_SECS,
            )?),
        };
        let server = ServerConfig {
            header_timeout: Duration::from_secs(self.positive(
                "server.header_timeout_secs",
                raw.server.header_timeout_secs.as_ref(),
                DEFAULT_HEADER_TIMEOUT_SECS,
            )?),
            max_header_bytes: match &raw.server.max_header_bytes {
                Some(v) if *v.get_ref() < 8192 => {
                    return Err(self.err("server.max_header_bytes", v, "must be at least 8192"));
                }
                Some(v) => usize::try_from(*v.get_ref()).unwrap_or(usize::MAX),
                None => DEFAULT_MAX_HEADER_BYTES as usize,
            },
            body_timeout: Duration::from_secs(self.positive(
                "server.body_timeout_secs",
                raw.server.body_timeout_secs.as_ref(),
                DEFAULT_BODY_TIMEOUT_SECS,
            )?),
            idle_timeout: Duration::from_secs(self.positive(
                "server.idle_timeout_secs",
                raw.server.idle_timeout_secs.as_ref(),
                DEFAULT_IDLE_TIMEOUT_SECS,
            )?),
            max_connections: usize::try_from(self.positive(
                "server.max_connections",
                raw.server.max_connections.as_ref(),
                DEFAULT_MAX_CONNECTIONS,
            )?)
            .unwrap_or(usize::MAX),
            max_connections_per_client: match &raw.server.max_connections_per_client {
                Some(v) if *v.get_ref() == 0 => None,
                Some(v) => Some(usize::try_from(*v.get_ref()).unwrap_or(usize::MAX)),
                None => Some(DEFAULT_MAX_CONNECTIONS_PER_CLIENT as usize),
            },
        };
        let wopi = self.wopi(&raw.wopi)?;
        let health = self.health(&raw.health)?;
        let pins = self.pins(&raw.pins)?;
        let drain = self.drain(&raw.drain)?;
        let admin = raw
            .admin
            .as_ref()
            .map(|a| {
                Ok::<_, ConfigError>(AdminConfig {
                    listen: a.listen.get_ref().parse().map_err(|e| {
                        self.err("admin.listen", &a.listen, format!("not an address: {e}"))
                    })?,
                    token_file: self.path_value("admin.token_file", &a.token_file)?,
                    metrics_need_token: a.metrics_need_token.unwrap_or(true),
                })
            })
            .transpose()?;
        let log = self.log(&raw.log)?;
        let pools = self.pools(&raw.pool)?;
        let dns = self.dns(&raw.dns, &raw.pool)?;
        let cache = self.cache(&raw.cache)?;
        Ok(Config {
            path: self.path.to_path_buf(),
            public_url,
            listen,
            tls,
            rules_dir: self.optional_path("rules_dir", raw.rules_dir.as_ref(), "rules")?,
            watch_rules: raw.watch_rules.unwrap_or(true),
            watch_settings: raw.watch_settings.unwrap_or(true),
            state_dir: self.optional_path("state_dir", raw.state_dir.as_ref(), "state")?,
            keys,
            discovery,
            upstream,
            server,
            wopi,
            health,
            pins,
            drain,
            admin,
            log,
            pools,
            dns,
            cache,
        })
    }

    fn cache(&self, raw: &file::FileCache) -> Result<CacheConfig, ConfigError> {
        let max_bytes = raw
            .max_bytes
            .as_ref()
            .map_or(DEFAULT_CACHE_MAX_BYTES, |v| *v.get_ref());
        let max_entry_bytes = self.positive(
            "cache.max_entry_bytes",
            raw.max_entry_bytes.as_ref(),
            DEFAULT_CACHE_MAX_ENTRY_BYTES,
        )?;
        if let Some(v) = &raw.max_entry_bytes
            && max_bytes > 0
            && max_entry_bytes > max_bytes / 8
        {
            return Err(self.err(
                "cache.max_entry_bytes",
                v,
                format!(
                    "must be at most an eighth of cache.max_bytes ({})",
                    max_bytes / 8
                ),
            ));
        }
        Ok(CacheConfig {
            max_bytes,
            // A smaller `max_bytes` with the default entry size keeps entries at an eighth.
            max_entry_bytes: usize::try_from(if max_bytes > 0 {
                max_entry_bytes.min(max_bytes / 8)
            } else {
                max_entry_bytes
            })
            .unwrap_or(usize::MAX),
        })
    }

    fn dns(&self, raw: &file::FileDns, pools: &[FilePool]) -> Result<DnsConfig, ConfigError> {
        let mut servers = Vec::new();
        for (i, server) in raw.servers.iter().flatten().enumerate() {
            let address = server.get_ref().parse().map_err(|e| {
                self.err(
                    &format!("dns.servers[{i}]"),
                    server,
                    format!("not an ip:port address: {e}"),
                )
            })?;
            servers.push(address);
        }
        let mut dns_pools = Vec::new();
        for (i, pool) in pools.iter().enumerate() {
            let Some(dns) = &pool.dns else { continue };
            let key = format!("pool[{i}].dns");
            let template = self.node_url(&key, dns)?;
            if !matches!(template.host(), Some(url::Host::Domain(_))) {
                return Err(self.err(
                    &key,
                    dns,
                    "name the nodes by a DNS name (an address is a node: put it in `nodes`)",
                ));
            }
            dns_pools.push(DnsPool {
                pool: pool.name.get_ref().clone(),
                template,
            });
        }
        Ok(DnsConfig {
            servers,
            interval: Duration::from_secs(self.positive(
                "dns.interval_secs",
                raw.interval_secs.as_ref(),
                DEFAULT_DNS_INTERVAL_SECS,
            )?),
            pools: dns_pools,
        })
    }

    fn drain(&self, raw: &file::FileDrain) -> Result<DrainConfig, ConfigError> {
        let delay = raw.delay_secs.as_ref().map_or(5, |v| *v.get_ref());
        let deadline = match &raw.deadline_secs {
            None => delay.max(25),
            Some(v) if *v.get_ref() < delay => {
                return Err(self.err(
                    "drain.deadline_secs",
                    v,
                    format!("must be at least drain.delay_secs ({delay})"),
                ));
            }
            Some(v) => *v.get_ref(),
        };
        Ok(DrainConfig {
            delay: Duration::from_secs(delay),
            deadline: Duration::from_secs(deadline),
        })
    }

    fn health(&self, raw: &file::FileHealth) -> Result<HealthConfig, ConfigError> {
        let count = |key: &str, value: Option<&Spanned<u64>>, default: u64| {
            self.positive(key, value, default)
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
        };
        Ok(HealthConfig {
            interval: Duration::from_secs(self.positive(
                "health.interval_secs",
                raw.interval_secs.as_ref(),
                5,
            )?),
            timeout: Duration::from_secs(self.positive(
                "health.timeout_secs",
                raw.timeout_secs.as_ref(),
                2,
            )?),
            fall: count("health.fall", raw.fall.as_ref(), 3)?,
            rise: count("health.rise", raw.rise.as_ref(), 2)?,
        })
    }

    fn pins(&self, raw: &file::FilePins) -> Result<PinsConfig, ConfigError> {
        let store = match &raw.store {
            None => PinStoreConfig::Memory,
            Some(v) => match v.get_ref().as_str() {
                "memory" => PinStoreConfig::Memory,
                url if ["redis://", "rediss://", "redis+sentinel://"]
                    .iter()
                    .any(|scheme| url.starts_with(scheme)) =>
                {
                    // A Sentinel URL may list several hosts, which `Url` refuses; the
                    // store checks every form when it is opened (also by check-config).
                    if !url.starts_with("redis+sentinel://") {
                        Url::parse(url)
                            .map_err(|e| self.err("pins.store", v, format!("not a URL: {e}")))?;
                    }
                    PinStoreConfig::Redis(url.to_string())
                }
                _ => {
                    return Err(self.err(
                        "pins.store",
                        v,
                        "use \"memory\" or a redis://, rediss:// or redis+sentinel:// URL",
                    ));
                }
            },
        };
        Ok(PinsConfig {
            store,
            ttl: Duration::from_secs(self.positive(
                "pins.ttl_secs",
                raw.ttl_secs.as_ref(),
                3600,
            )?),
            timeout: Duration::from_millis(self.positive(
                "pins.timeout_ms",
                raw.timeout_ms.as_ref(),
                250,
            )?),
            refresh: Duration::from_secs(self.positive(
                "pins.refresh_secs",
                raw.refresh_secs.as_ref(),
                DEFAULT_PINS_REFRESH_SECS,
            )?),
        })
    }

    fn wopi(&self, raw: &file::FileWopi) -> Result<WopiConfig, ConfigError> {
        Ok(WopiConfig {
            max_token_ttl: Duration::from_secs(self.positive(
                "wopi.max_token_ttl_secs",
                raw.max_token_ttl_secs.as_ref(),
                DEFAULT_MAX_TOKEN_TTL_SECS,
            )?),
            max_json_bytes: match &raw.max_json_bytes {
                Some(v) if *v.get_ref() < MIN_MAX_JSON_BYTES => {
                    return Err(self.err(
                        "wopi.max_json_bytes",
                        v,
                        format!("must be at least {MIN_MAX_JSON_BYTES}"),
                    ));
                }
                Some(v) => usize::try_from(*v.get_ref()).unwrap_or(usize::MAX),
                None => DEFAULT_MAX_JSON_BYTES as usize,
            },
            host_timeout: Duration::from_secs(self.positive(
                "wopi.host_timeout_secs",
                raw.host_timeout_secs.as_ref(),
                DEFAULT_HOST_TIMEOUT_SECS,
            )?),
        })
    }

    fn public_url(&self, value: &Spanned<String>) -> Result<Url, ConfigError> {
        let url = Url::parse(value.get_ref())
            .map_err(|e| self.err("public_url", value, format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(self.err("public_url", value, "must be an http:// or https:// origin"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(self.err(
                "public_url",
                value,
                "must be an origin only (scheme, host, port): officeswitch owns the whole URL space",
            ));
        }
        Ok(url)
    }

    fn socket_addr(&self, key: &str, value: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
        value.get_ref().parse().map_err(|_| {
            self.err(
                key,
                value,
                format!(
                    "`{}` is not an address like 0.0.0.0:8080 or [::]:8080",
                    value.get_ref()
                ),
            )
        })
    }

    fn path_value(&self, key: &str, value: &Spanned<String>) -> Result<PathBuf, ConfigError> {
        if value.get_ref().trim().is_empty() {
            return Err(self.err(key, value, "must not be empty"));
        }
        Ok(self.resolve(value.get_ref()))
    }

    fn optional_path(
        &self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: &str,
    ) -> Result<PathBuf, ConfigError> {
        match value {
            Some(v) => self.path_value(key, v),
            None => Ok(self.resolve(default)),
        }
    }

    /// Resolves `p` against the settings file's directory.
    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    fn positive(
        &self,
        key: &str,
        value: Option<&Spanned<u64>>,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) if *v.get_ref() == 0 => Err(self.err(key, v, "must be greater than 0")),
            Some(v) => Ok(*v.get_ref()),
        }
    }

    fn log(&self, raw: &file::FileLog) -> Result<LogConfig, ConfigError> {
        let json = match &raw.format {
            None => false,
            Some(f) => match f.get_ref().as_str() {
                "text" => false,
                "json" => true,
                other => {
                    return Err(self.err(
                        "log.format",
                        f,
                        format!("`{other}` is not a log format: use \"text\" or \"json\""),
                    ));
                }
            },
        };
        let level = match &raw.level {
            None => "info".to_string(),
            Some(l) => {
                tracing_subscriber::EnvFilter::try_new(l.get_ref())
                    .map_err(|e| self.err("log.level", l, format!("not a level filter: {e}")))?;
                l.get_ref().clone()
            }
        };
        Ok(LogConfig { json, level })
    }

    fn pools(&self, raw: &[FilePool]) -> Result<Vec<PoolConfig>, ConfigError> {
        let mut pools: Vec<PoolConfig> = Vec::with_capacity(raw.len());
        for (i, p) in raw.iter().enumerate() {
            let key = |k: &str| format!("pool[{i}].{k}");
            let name = p.name.get_ref();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return Err(self.err(
                    &key("name"),
                    &p.name,
                    "use lower-case letters, digits, `-` and `_` only",
                ));
            }
            if pools.iter().any(|q| &q.name == name) {
                return Err(self.err(
                    &key("name"),
                    &p.name,
                    format!("pool `{name}` is defined twice"),
                ));
            }
            let kind = match p.kind.get_ref().as_str() {
                "collabora" => SuiteKind::Collabora,
                "onlyoffice" => SuiteKind::OnlyOffice,
                other => {
                    return Err(self.err(
                        &key("kind"),
                        &p.kind,
                        format!("unknown suite `{other}`: use \"collabora\" or \"onlyoffice\""),
                    ));
                }
            };
            let listed: &[Spanned<String>] = p.nodes.as_ref().map_or(&[], |n| n.get_ref());
            if listed.is_empty() && p.dns.is_none() {
                let message = "a pool needs at least one node, or `dns` to find them";
                return Err(match &p.nodes {
                    Some(nodes) => self.err(&key("nodes"), nodes, message),
                    None => self.err(&key("name"), &p.name, message),
                });
            }
            let mut nodes: Vec<Url> = Vec::with_capacity(listed.len());
            for (j, n) in listed.iter().enumerate() {
                let node = self.node_url(&format!("pool[{i}].nodes[{j}]"), n)?;
                if nodes.contains(&node) {
                    return Err(self.err(
                        &format!("pool[{i}].nodes[{j}]"),
                        n,
                        "this node is listed twice",
                    ));
                }
                // Pins, health and drain name a node by pool: one node in two pools would
                // hold documents of both with neither knowing.
                if let Some(other) = pools.iter().find(|q| q.nodes.contains(&node)) {
                    return Err(self.err(
                        &format!("pool[{i}].nodes[{j}]"),
                        n,
                        format!(
                            "this node is already in pool `{}`: a node belongs to one pool",
                            other.name
                        ),
                    ));
                }
                nodes.push(node);
            }
            let proof = match &p.proof {
                None => ProofPolicy::default(),
                Some(v) => match v.get_ref().as_str() {
                    "auto" => ProofPolicy::Auto,
                    "required" => ProofPolicy::Required,
                    "optional" => ProofPolicy::Optional,
                    other => {
                        return Err(self.err(
                            &key("proof"),
                            v,
                            format!(
                                "unknown proof policy `{other}`: use \"auto\", \"required\" or \"optional\""
                            ),
                        ));
                    }
                },
            };
            pools.push(PoolConfig {
                name: name.clone(),
                kind,
                nodes,
                proof,
            });
        }
        Ok(pools)
    }

    fn node_url(&self, key: &str, value: &Spanned<String>) -> Result<Url, ConfigError> {
        let mut url = Url::parse(value.get_ref())
            .map_err(|e| self.err(key, value, format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(self.err(key, value, "a node must be an http:// or https:// URL"));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(self.err(
                key,
                value,
                "a node URL takes no query, fragment or credentials",
            ));
        }
        // A base path prefix (`https://host/collabora`) is allowed; normalise it to end in `/`
        // so joining `hosting/discovery` keeps it.
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
public_url = "https://office.example.org"
listen = "127.0.0.1:0"
[keys]
proof_key = "keys/proof.pem"
[[pool]]
name = "collabora"
kind = "collabora"
nodes = ["http://127.0.0.1:9980"]
"#;

    fn parse(src: &str) -> Result<Config, ConfigError> {
        Config::from_str(Path::new("/etc/os/officeswitch.toml"), src)
    }

    #[test]
    fn the_asset_cache_is_on_by_default_and_bounded_per_entry() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.cache.max_bytes, 128 * 1024 * 1024);
        assert_eq!(c.cache.max_entry_bytes, 8 * 1024 * 1024);
        let off = parse(&format!("{MINIMAL}[cache]\nmax_bytes = 0\n")).unwrap();
        assert_eq!(off.cache.max_bytes, 0);
        // A small cache with the default entry size keeps entries at an eighth of it.
        let small = parse(&format!("{MINIMAL}[cache]\nmax_bytes = 8000000\n")).unwrap();
        assert_eq!(small.cache.max_entry_bytes, 1_000_000);
        let err = parse(&format!(
            "{MINIMAL}[cache]\nmax_bytes = 8000000\nmax_entry_bytes = 1000001\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("cache.max_entry_bytes"), "{err}");
        assert!(err.to_string().contains("1000000"), "{err}");
        let err = parse(&format!("{MINIMAL}[cache]\nmax_entry_bytes = 0\n")).unwrap_err();
        assert!(err.to_string().contains("greater than 0"), "{err}");
    }

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.public_url.as_str(), "https://office.example.org/");
        assert_eq!(c.rules_dir, Path::new("/etc/os/rules"));
        assert_eq!(c.keys.proof_key, Path::new("/etc/os/keys/proof.pem"));
        assert_eq!(
            c.discovery.refresh,
            Duration::from_secs(DEFAULT_REFRESH_SECS)
        );
        assert_eq!(c.pools[0].nodes[0].as_str(), "http://127.0.0.1:9980/");
        assert!(!c.log.json);
    }

    #[test]
    fn unknown_suite_is_located() {
        let src = MINIMAL.replace("kind = \"collabora\"", "kind = \"libreoffice\"");
        let err = parse(&src).unwrap_err();
        assert_eq!(err.key, "pool[0].kind");
        assert_eq!(err.line, Some(8), "{err}");
        assert!(err.message.contains("libreoffice"), "{err}");
    }

    #[test]
    fn public_url_with_path_is_refused() {
        let src = MINIMAL.replace("office.example.org\"", "office.example.org/sub\"");
        let err = parse(&src).unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.line),
            ("public_url", Some(2)),
            "{err}"
        );
    }

    #[test]
    fn bad_node_url_and_duplicate_pool_are_refused() {
        let src = MINIMAL.replace("http://127.0.0.1:9980", "ftp://x");
        assert_eq!(parse(&src).unwrap_err().key, "pool[0].nodes[0]");
        let dup = format!(
            "{MINIMAL}\n[[pool]]\nname = \"collabora\"\nkind = \"onlyoffice\"\nnodes = [\"http://a\"]\n"
        );
        let err = parse(&dup).unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.line),
            ("pool[1].name", Some(12)),
            "{err}"
        );
        // Two pools of one suite are fine (a dedicated pool, a canary), one node in both is
        // not.
        let second = format!(
            "{MINIMAL}\n[[pool]]\nname = \"cool2\"\nkind = \"collabora\"\nnodes = [\"http://a\"]\n"
        );
        assert_eq!(parse(&second).unwrap().pools.len(), 2);
        let shared = second.replace("http://a", "http://127.0.0.1:9980/");
        let err = parse(&shared).unwrap_err();
        assert_eq!(err.key, "pool[1].nodes[0]", "{err}");
        assert!(err.message.contains("already in pool `collabora`"), "{err}");
    }

    #[test]
    fn a_pool_may_name_its_nodes_by_dns_but_needs_some_source() {
        let src = MINIMAL.replace(
            "nodes = [\"http://127.0.0.1:9980\"]",
            "nodes = []\ndns = \"http://cool.editors.svc.cluster.local:9980\"\n\
             [dns]\nservers = [\"127.0.0.1:5353\"]\ninterval_secs = 5",
        );
        let c = parse(&src).unwrap();
        assert!(c.pools[0].nodes.is_empty());
        assert_eq!(c.dns.interval, Duration::from_secs(5));
        assert_eq!(c.dns.servers, ["127.0.0.1:5353".parse().unwrap()]);
        assert_eq!(
            c.dns.pools,
            [DnsPool {
                pool: "collabora".into(),
                template: Url::parse("http://cool.editors.svc.cluster.local:9980/").unwrap(),
            }]
        );

        let none = MINIMAL.replace("nodes = [\"http://127.0.0.1:9980\"]", "nodes = []");
        let err = parse(&none).unwrap_err();
        assert_eq!((err.key.as_str(), err.line), ("pool[0].nodes", Some(9)));
        assert!(err.message.contains("or `dns`"), "{err}");

        let address = MINIMAL.replace(
            "nodes = [\"http://127.0.0.1:9980\"]",
            "dns = \"http://10.0.0.1:9980\"",
        );
        let err = parse(&address).unwrap_err();
        assert_eq!(err.key, "pool[0].dns", "{err}");
        assert!(err.message.contains("by a DNS name"), "{err}");

        let server = format!("{MINIMAL}[dns]\nservers = [\"localhost\"]\n");
        assert_eq!(parse(&server).unwrap_err().key, "dns.servers[0]");
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_line() {
        let err = parse(&MINIMAL.replace("listen =", "listen_addr =")).unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        let err = parse(&format!("{MINIMAL}[discovery]\nrefresh_secs = \"5m\"\n")).unwrap_err();
        assert_eq!(err.line, Some(11), "{err}");
        let err = parse(&format!("{MINIMAL}[discovery]\nrefresh_secs = 0\n")).unwrap_err();
        assert_eq!(err.key, "discovery.refresh_secs");
    }

    /// Every key, each set to its default: the reference settings file.
    const EXAMPLE: &str = r#"
public_url = "https://office.example.org"
listen = "127.0.0.1:0"
rules_dir = "rules"
watch_rules = true
state_dir = "state"
[keys]
proof_key = "keys/proof.pem"
# old_proof_key = "keys/proof.old.pem"
token_secret = "keys/token.secret"
# old_token_secret = "keys/token.old.secret"
generate_missing = false
[discovery]
refresh_secs = 300
fetch_timeout_secs = 10
max_body_bytes = 4194304
[upstream]
connect_timeout_secs = 5
first_byte_timeout_secs = 120
websocket_idle_timeout_secs = 3600
[server]
header_timeout_secs = 10
max_header_bytes = 65536
[wopi]
max_token_ttl_secs = 36000
max_json_bytes = 1048576
host_timeout_secs = 60
[drain]
delay_secs = 5
deadline_secs = 25
[log]
format = "text"
level = "info"
[[pool]]
name = "collabora"
kind = "collabora"
nodes = ["http://127.0.0.1:9980"]
proof = "auto"
"#;

    #[test]
    fn example_spells_out_the_defaults() {
        let example = parse(EXAMPLE).unwrap();
        let minimal = parse(MINIMAL).unwrap();
        assert_eq!(format!("{example:?}"), format!("{minimal:?}"));
    }

    #[test]
    fn token_secrets_default_and_resolve() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.keys.token_secret, Path::new("/etc/os/keys/token.secret"));
        assert_eq!(c.keys.old_token_secret, None);
        let src = MINIMAL.replace(
            "proof_key = \"keys/proof.pem\"",
            "proof_key = \"keys/proof.pem\"\ntoken_secret = \"/srv/t.secret\"\nold_token_secret = \"t.old\"",
        );
        let c = parse(&src).unwrap();
        assert_eq!(c.keys.token_secret, Path::new("/srv/t.secret"));
        assert_eq!(
            c.keys.old_token_secret.as_deref(),
            Some(Path::new("/etc/os/t.old"))
        );
    }

    #[test]
    fn bad_token_secrets_are_located() {
        let with = |lines: &str| {
            MINIMAL.replace(
                "proof_key = \"keys/proof.pem\"",
                &format!("proof_key = \"keys/proof.pem\"\n{lines}"),
            )
        };
        let err = parse(&with("token_secret = \"\"")).unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.line),
            ("keys.token_secret", Some(6)),
            "{err}"
        );
        let err = parse(&with("old_token_secret = \" \"")).unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.line),
            ("keys.old_token_secret", Some(6)),
            "{err}"
        );
        let err = parse(&with("old_token_secret = \"keys/token.secret\"")).unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.line),
            ("keys.old_token_secret", Some(6)),
            "{err}"
        );
        assert!(err.message.contains("same file"), "{err}");
        let err = parse(&with("token_secret = 5")).unwrap_err();
        assert_eq!(err.line, Some(6), "{err}");
    }

    #[test]
    fn health_and_pins_sections() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.health.interval, Duration::from_secs(5));
        assert_eq!((c.health.fall, c.health.rise), (3, 2));
        assert_eq!(c.pins.store, PinStoreConfig::Memory);
        assert_eq!(c.pins.ttl, Duration::from_secs(3600));
        let c = parse(&format!(
            "{MINIMAL}[health]\ninterval_secs = 1\nfall = 1\n[pins]\nstore = \"redis://127.0.0.1:6379/0\"\nttl_secs = 60\n"
        ))
        .unwrap();
        assert_eq!(c.health.interval, Duration::from_secs(1));
        assert_eq!(c.health.fall, 1);
        assert_eq!(
            c.pins.store,
            PinStoreConfig::Redis("redis://127.0.0.1:6379/0".into())
        );
        for (text, key) in [
            ("[pins]\nstore = \"postgres://x\"", "pins.store"),
            ("[pins]\nttl_secs = 0", "pins.ttl_secs"),
            ("[health]\nrise = 0", "health.rise"),
            (
                "[drain]\ndelay_secs = 10\ndeadline_secs = 3",
                "drain.deadline_secs",
            ),
        ] {
            let err = parse(&format!("{MINIMAL}{text}\n")).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn drain_defaults_fit_kubernetes_grace_period() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.drain.delay, Duration::from_secs(5));
        assert_eq!(c.drain.deadline, Duration::from_secs(25));
        let c = parse(&format!(
            "{MINIMAL}[drain]\ndelay_secs = 0\ndeadline_secs = 2\n"
        ))
        .unwrap();
        assert_eq!(
            (c.drain.delay, c.drain.deadline),
            (Duration::ZERO, Duration::from_secs(2))
        );
        // A long delay without a deadline moves the deadline along.
        let c = parse(&format!("{MINIMAL}[drain]\ndelay_secs = 40\n")).unwrap();
        assert_eq!(c.drain.deadline, Duration::from_secs(40));
    }

    #[test]
    fn wopi_section_defaults_values_and_limits() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.wopi.max_token_ttl, Duration::from_secs(36_000));
        assert_eq!(c.wopi.max_json_bytes, 1024 * 1024);
        assert_eq!(c.wopi.host_timeout, Duration::from_secs(60));

        let c = parse(&format!(
            "{MINIMAL}[wopi]\nmax_token_ttl_secs = 600\nmax_json_bytes = 4096\nhost_timeout_secs = 5\n"
        ))
        .unwrap();
        assert_eq!(c.wopi.max_token_ttl, Duration::from_secs(600));
        assert_eq!(c.wopi.max_json_bytes, 4096);
        assert_eq!(c.wopi.host_timeout, Duration::from_secs(5));

        for (line, key) in [
            ("max_token_ttl_secs = 0", "wopi.max_token_ttl_secs"),
            ("max_json_bytes = 4095", "wopi.max_json_bytes"),
            ("host_timeout_secs = 0", "wopi.host_timeout_secs"),
        ] {
            let err = parse(&format!("{MINIMAL}[wopi]\n{line}\n")).unwrap_err();
            assert_eq!((err.key.as_str(), err.line), (key, Some(11)), "{err}");
        }
        let err = parse(&format!("{MINIMAL}[wopi]\nmax_json_bytes = 100\n")).unwrap_err();
        assert!(err.message.contains("at least 4096"), "{err}");
        let err = parse(&format!("{MINIMAL}[wopi]\ntoken_ttl = 5\n")).unwrap_err();
        assert_eq!(err.line, Some(11), "{err}");
    }

    #[test]
    fn pool_proof_policy_defaults_parses_and_is_located() {
        assert_eq!(parse(MINIMAL).unwrap().pools[0].proof, ProofPolicy::Auto);
        for policy in [
            ProofPolicy::Auto,
            ProofPolicy::Required,
            ProofPolicy::Optional,
        ] {
            let c = parse(&format!("{MINIMAL}proof = \"{}\"\n", policy.as_str())).unwrap();
            assert_eq!(c.pools[0].proof, policy);
        }
        let err = parse(&format!("{MINIMAL}proof = \"sometimes\"\n")).unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.line),
            ("pool[0].proof", Some(10)),
            "{err}"
        );
        for word in ["sometimes", "\"auto\"", "\"required\"", "\"optional\""] {
            assert!(err.message.contains(word), "{err}");
        }
    }

    #[test]
    fn bad_log_format_is_refused() {
        let err = parse(&format!("{MINIMAL}[log]\nformat = \"xml\"\n")).unwrap_err();
        assert_eq!(err.key, "log.format");
    }
}
