//! officeswitch: one WOPI editor URL for Nextcloud, two office suites behind it.
//!
//! Nextcloud Office (richdocuments) talks to exactly one editor. officeswitch is that
//! editor as far as Nextcloud can tell: it serves one merged discovery built from the
//! live discoveries of a Collabora Online pool and an OnlyOffice Docs pool, routes each
//! opened file to the suite its organisation's rules choose and to one node of it, and
//! tunnels all of that document's editor traffic to the same node.
//!
//! # Layout
//! - [`cli`]: command line; [`app`]: startup, listeners and shutdown;
//! - [`admin`]: the operators' listener (node list, draining) and `officeswitch nodes`;
//! - [`doctor`]: `officeswitch doctor`, the after-set-up check of every editor node;
//! - [`config`]: `officeswitch.toml`, read as written then validated;
//! - [`rules`]: organisations and which pool owns which format, hot-reloaded;
//! - [`watch`]: debounced watching of the rules directory and the settings file;
//! - [`discovery`]: fetch, keep, merge and publish the pools' discoveries and capabilities;
//! - [`proxy`]: the life of a request, one phase per file; [`cache`]: versioned static
//!   assets served from memory;
//! - [`sticky`]: which node serves a document: rendezvous hashing, node health, pins
//!   shared through a store (memory or Redis);
//! - [`wopi`]: WOPI pieces (proof keys and proofs, minted tokens, document identity);
//! - [`upstream`]: the pooled HTTP(S) client to editor nodes; [`civil`]: UTC dates for a
//!   log field and conflict copies' names;
//! - [`server`]: accept loops, TLS, limits, graceful shutdown;
//! - [`readiness`]: `/readyz` in brief, its detail for the admin listener;
//! - [`topology`]: pools, nodes and membership, swapped whole when node lists change;
//! - [`telemetry`]: log output; [`metrics`]: Prometheus metrics on the admin listener.
//!
//! # Life of a request
//! 1. [`server`] accepts the connection (TLS if configured) and hands each request to
//!    [`proxy::Proxy::handle`];
//! 2. [`proxy::classify`] names what the request is for (method, path, query, upgrade);
//! 3. officeswitch's own requests are answered from the current [`discovery::Catalog`];
//!    opens and editor traffic go through [`proxy::route`] (then the document's pin,
//!    [`sticky::pins`]), [`proxy::rewrite`] and [`proxy::forward`] (WebSockets:
//!    [`proxy::tunnel`]); WOPI calls from editors go through [`proxy::callback`];
//!    every reply officeswitch makes itself is an [`proxy::answer::Answer`];
//! 4. one access log line is written when the response ends ([`proxy::access_log`]).

pub mod admin;
pub mod app;
pub mod cache;
pub mod civil;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod doctor;
pub mod metrics;
pub mod proxy;
pub mod readiness;
pub mod rules;
pub mod server;
pub mod sticky;
pub mod telemetry;
pub mod topology;
pub mod upstream;
pub mod watch;
pub mod wopi;
