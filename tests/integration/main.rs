//! officeswitch's integration tests: one binary, one module per capability.
//!
//! Every test runs real servers on loopback: officeswitch itself
//! ([`support::officeswitch`]), stand-in editors that serve the real discovery and
//! capabilities documents of `../shared/fixtures` ([`support::editor`]), and real
//! HTTP/TLS clients.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

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

/// Pins across node changes, several instances and a Redis outage; one suite per document (issue 5).
mod sticky;

/// Documents stay on one node while nodes join and leave twenty times (issue 14).
mod churn;

/// Nodes from a DNS name that join and leave without a signal (issue 14).
mod dns;

/// Several pools of one suite, chosen by rules (issue 14).
mod pools;

/// The pin store's contract against memory and a real Redis, Redis outages and Sentinel (issue 5).
mod store;

/// The admin listener (bearer token, node list, draining) and `officeswitch nodes` (issue 5).
mod admin;

/// Prometheus metrics on the admin listener (issue 6).
mod metrics;

/// Docker, Kubernetes, systemd, Grafana and Prometheus files agree with the binary (issue 6).
mod packaging;

// Graceful stop: readiness, listeners, saves in flight, WebSocket close frames, SIGTERM.
mod drain;

/// Versioned static assets served from memory, and nothing private ever (issue 15).
mod cache;

/// Faults mid-editing: a node killed under a live WebSocket, Nextcloud restarting mid-save (issue 6).
mod faults;

/// The real-browser kit (headless Chromium, stand-in Nextcloud frontend) checked without officeswitch.
mod browser_kit;
/// ONLYOFFICE behind Nextcloud Office: renames, old versions and out-of-date saves lose
/// nothing; Collabora's exchange is untouched (issue 12).
mod dialect;
/// `officeswitch doctor`: every node checked as officeswitch sees it, verdicts and exit codes (issue 11).
mod doctor;
/// Hostile clients cannot hurt the fleet: each attack of the review, reproduced (issue 13).
mod hostile;
/// Users open, edit, save and co-edit through officeswitch in a real browser, with the real
/// editors (issues 11, 19, 20).
mod real_browser;
/// Real Collabora Online and ONLYOFFICE Docs servers in the test kit start, answer and stop.
mod real_editors;
/// Collabora's settings iframe and presets reach Nextcloud through officeswitch (issue 11).
mod settings;
/// Users open documents through officeswitch in a real browser with the stand-in editors,
/// which build their URLs, CSP and scripts as the real ones do (issue 11).
mod standin_browser;
