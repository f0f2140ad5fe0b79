//! officeswitch: one WOPI editor URL for Nextcloud, two office suites behind it.
//!
//! Nextcloud Office (richdocuments) talks to exactly one editor. officeswitch is that
//! editor as far as Nextcloud can tell: it serves one merged discovery built from the
//! live discoveries of a Collabora Online pool and an OnlyOffice Docs pool, and (in the
//! following issues) routes each opened file to the suite and node that should edit it.
//!
//! # Layout
//! - [`cli`]: command line; [`app`]: startup, listeners and shutdown;
//! - [`config`]: `officeswitch.toml`, read as written then validated;
//! - [`rules`]: which pool owns which format;
//! - [`discovery`]: fetch, keep, merge and publish the pools' discoveries and capabilities;
//! - [`wopi`]: WOPI pieces (officeswitch's own proof keys);
//! - [`upstream`]: the pooled HTTP(S) client to editor nodes;
//! - [`proxy`]: the life of a request, one phase per file;
//! - [`server`]: accept loops, TLS, graceful shutdown;
//! - [`telemetry`]: log output.
//!
//! # Life of a request
//! 1. [`server`] accepts the connection (TLS if configured) and hands each request to
//!    [`proxy::Proxy::handle`];
//! 2. [`proxy::classify`] names what the request is for, from method and path alone;
//! 3. the class is answered: discovery and capabilities from the current
//!    [`discovery::Catalog`], health and readiness from the pools' state;
//!    every reply officeswitch makes itself is an [`proxy::answer::Answer`];
//! 4. one access log line is written.

pub mod app;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod proxy;
pub mod rules;
pub mod server;
pub mod sticky;
pub mod telemetry;
pub mod upstream;
pub mod wopi;
