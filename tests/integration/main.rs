//! officeswitch's integration tests: one binary, one module per capability.
//!
//! Every test runs real servers on loopback: officeswitch itself
//! ([`support::officeswitch`]), stand-in editors that serve the real discovery and
//! capabilities documents of `../shared/fixtures` ([`support::editor`]), and real
//! HTTP/TLS clients.

mod support;

/// The stand-in editors speak what real editors speak.
mod standin;

/// Merged discovery and capabilities (issue 2).
mod discovery;

/// Last-known-good discovery and bad editor answers (issue 2).
mod last_good;

/// Health, readiness, TLS listener and the command line (issue 2).
mod server;

/// Opening documents, per-organisation rules, routing of editor traffic (issue 3).
mod routing;

/// Rules hot reload by file watch and SIGHUP (issue 3).
mod reload;

/// Streaming: 1 GiB each way in bounded memory, WebSocket order and close, slow clients (issue 3).
mod streaming;

/// WOPI token translation, proof verification and re-signing (issue 4).
mod wopi;
