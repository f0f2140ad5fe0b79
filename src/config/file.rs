//! The settings file exactly as written: serde types that mirror `officeswitch.toml`.
//!
//! Nothing here is checked beyond TOML types; [`super::Config::from_file`] validates and
//! is the only thing the rest of officeswitch sees. Values that need a precise error
//! location are kept [`Spanned`].

use serde::Deserialize;
use toml::Spanned;

/// The whole settings file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Origin that browsers, Nextcloud and editors use to reach officeswitch.
    pub public_url: Spanned<String>,
    /// Plain-HTTP listen address.
    pub listen: Option<Spanned<String>>,
    /// Directory of routing rules (`default.toml` and one file per organisation).
    pub rules_dir: Option<Spanned<String>>,
    /// Reload rules when a file in `rules_dir` changes (SIGHUP always reloads).
    pub watch_rules: Option<bool>,
    /// Reload the pools' node lists when this file changes (SIGHUP always reloads).
    pub watch_settings: Option<bool>,
    /// Directory for state that must survive a restart (last good discoveries, keys).
    pub state_dir: Option<Spanned<String>>,
    /// Optional TLS listener.
    pub tls: Option<FileTls>,
    /// officeswitch's own WOPI proof keys.
    pub keys: FileKeys,
    /// How editor discoveries are fetched.
    #[serde(default)]
    pub discovery: FileDiscovery,
    /// How officeswitch talks to editor nodes.
    #[serde(default)]
    pub upstream: FileUpstream,
    /// Limits on client requests.
    #[serde(default)]
    pub server: FileServer,
    /// Log format and level.
    #[serde(default)]
    pub log: FileLog,
    /// Token lifetime and limits on what hosts send back.
    #[serde(default)]
    pub wopi: FileWopi,
    /// Active health checks of editor nodes.
    #[serde(default)]
    pub health: FileHealth,
    /// Where document pins live and how long they last.
    #[serde(default)]
    pub pins: FilePins,
    /// How a stopping instance drains.
    #[serde(default)]
    pub drain: FileDrain,
    /// The admin listener (node list, draining).
    pub admin: Option<FileAdmin>,
    /// How pools with `dns` find their nodes.
    #[serde(default)]
    pub dns: FileDns,
    /// The memory cache of versioned static assets.
    #[serde(default)]
    pub cache: FileCache,
    /// One entry per editor suite.
    #[serde(default)]
    pub pool: Vec<FilePool>,
}

/// `[tls]`: the TLS listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// TLS listen address.
    pub listen: Spanned<String>,
    /// PEM certificate chain, leaf first.
    pub cert: Spanned<String>,
    /// PEM private key of the leaf certificate.
    pub key: Spanned<String>,
}

/// `[keys]`: the RSA key pair officeswitch signs WOPI calls with and publishes in discovery,
/// and the secret its access tokens and file ids are made with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKeys {
    /// PKCS#8 PEM of the current proof key.
    pub proof_key: Spanned<String>,
    /// PKCS#8 PEM of the previous proof key, published as `old*` during rotation.
    pub old_proof_key: Option<Spanned<String>>,
    /// Base64 file of the current token secret (default `keys/token.secret`).
    pub token_secret: Option<Spanned<String>>,
    /// Base64 file of the previous token secret; its tokens stay valid during rotation.
    pub old_token_secret: Option<Spanned<String>>,
    /// Create `proof_key` and `token_secret` at start when they do not exist.
    #[serde(default)]
    pub generate_missing: bool,
}

/// `[discovery]`: fetch timing and limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDiscovery {
    /// Seconds between two refreshes of every pool's discovery.
    pub refresh_secs: Option<Spanned<u64>>,
    /// Seconds one node may take to answer a discovery or capabilities fetch.
    pub fetch_timeout_secs: Option<Spanned<u64>>,
    /// Largest discovery or capabilities body accepted from a node, in bytes.
    pub max_body_bytes: Option<Spanned<u64>>,
}

/// `[upstream]`: connections to editor nodes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    /// Extra PEM CA bundle trusted for `https://` nodes, besides the system roots.
    pub ca_file: Option<Spanned<String>>,
    /// Seconds allowed to open a TCP (and TLS) connection to a node.
    pub connect_timeout_secs: Option<Spanned<u64>>,
    /// Seconds a node may take to start answering (status line and headers).
    pub first_byte_timeout_secs: Option<Spanned<u64>>,
    /// Seconds a WebSocket tunnel may stay silent both ways before it is closed.
    pub websocket_idle_timeout_secs: Option<Spanned<u64>>,
}

/// `[server]`: limits on what clients may send.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    /// Seconds a client gets to send a complete request head (slowloris guard).
    pub header_timeout_secs: Option<Spanned<u64>>,
    /// Largest request head accepted, in bytes (larger gets 431).
    pub max_header_bytes: Option<Spanned<u64>>,
    /// Seconds a request body officeswitch reads itself (an open form) may take.
    pub body_timeout_secs: Option<Spanned<u64>>,
    /// Seconds a client connection may sit with no request in flight and no bytes moving.
    pub idle_timeout_secs: Option<Spanned<u64>>,
    /// Client connections open at once, all clients together.
    pub max_connections: Option<Spanned<u64>>,
    /// Client connections open at once from one address (0: no per-address limit).
    pub max_connections_per_client: Option<Spanned<u64>>,
}

/// `[log]`: how officeswitch writes its log lines.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    /// `text` (readable) or `json` (one object per line, for Loki/ELK).
    pub format: Option<Spanned<String>>,
    /// Default level filter (`info`); `RUST_LOG` overrides it.
    pub level: Option<Spanned<String>>,
}

/// `[wopi]`: the tokens officeswitch mints for editors and the host calls it relays.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWopi {
    /// Longest lifetime of a minted token, in seconds (Nextcloud's own default is 36000).
    pub max_token_ttl_secs: Option<Spanned<u64>>,
    /// Largest CheckFileInfo or PutRelativeFile JSON body officeswitch rewrites, in bytes.
    pub max_json_bytes: Option<Spanned<u64>>,
    /// Seconds the host may take to start answering a relayed WOPI call.
    pub host_timeout_secs: Option<Spanned<u64>>,
}

/// `[health]`: active checks of every editor node.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealth {
    /// Seconds between two checks of one node.
    pub interval_secs: Option<Spanned<u64>>,
    /// Seconds one check may take.
    pub timeout_secs: Option<Spanned<u64>>,
    /// Consecutive failures (checks or proxied requests) that mark a node down.
    pub fall: Option<Spanned<u64>>,
    /// Consecutive successful checks that bring a node back.
    pub rise: Option<Spanned<u64>>,
}

/// `[drain]`: what SIGTERM does before the process exits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDrain {
    /// Seconds between SIGTERM and closing the listeners, while `/readyz` answers 503.
    pub delay_secs: Option<Spanned<u64>>,
    /// Seconds after SIGTERM when WebSockets still open are closed and the process exits.
    pub deadline_secs: Option<Spanned<u64>>,
}

/// `[admin]`: a separate listener for operators.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    /// Address of the admin listener (keep it private: loopback or an internal network).
    pub listen: Spanned<String>,
    /// File holding the bearer token admin requests must carry.
    pub token_file: Spanned<String>,
    /// Whether `GET /metrics` needs the bearer token too (default true).
    pub metrics_need_token: Option<bool>,
}

/// `[pins]`: document -> node pins.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePins {
    /// `memory` (one instance) or a `redis://`, `rediss://` or `redis+sentinel://` URL.
    pub store: Option<Spanned<String>>,
    /// Seconds a pin lives without a request of its document.
    pub ttl_secs: Option<Spanned<u64>>,
    /// Milliseconds one store operation may take before officeswitch routes without it.
    pub timeout_ms: Option<Spanned<u64>>,
    /// Seconds between reads of the node state instances share (drain marks).
    pub refresh_secs: Option<Spanned<u64>>,
}

/// `[dns]`: resolving the nodes of pools that name them by DNS.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDns {
    /// Name servers (`ip:port`) to ask instead of the system's (`/etc/resolv.conf`).
    pub servers: Option<Vec<Spanned<String>>>,
    /// Seconds between resolutions.
    pub interval_secs: Option<Spanned<u64>>,
}

/// `[cache]`: versioned static assets kept in memory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCache {
    /// Bytes the cache may hold in all; 0 turns it off.
    pub max_bytes: Option<Spanned<u64>>,
    /// Largest answer kept, in bytes.
    pub max_entry_bytes: Option<Spanned<u64>>,
}

/// `[[pool]]`: one editor suite and its nodes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePool {
    /// Name that rules use to pick this pool.
    pub name: Spanned<String>,
    /// `collabora` or `onlyoffice`.
    pub kind: Spanned<String>,
    /// Base URLs of the pool's nodes.
    pub nodes: Option<Spanned<Vec<Spanned<String>>>>,
    /// A node URL whose host is a DNS name: each address it resolves to is a node.
    pub dns: Option<Spanned<String>>,
    /// `auto`, `required` or `optional`: whether the pool's WOPI calls must carry a proof.
    pub proof: Option<Spanned<String>>,
}
