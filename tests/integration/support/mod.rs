//! Shared helpers for the integration tests: stand-in editors, test certificates,
//! fixture paths and log capture.
//!
//! Each test module uses a different subset of these helpers, hence the `dead_code`
//! allowance (otherwise every helper one module skips would warn).
#![allow(dead_code)]

pub mod browser;
pub mod certs;
pub mod client;
pub mod collabora_settings;
pub mod dns;
pub mod editor;
pub mod logs;
pub mod nextcloud;
pub mod nextcloud_page;
pub mod officeswitch;
pub mod placement;
pub mod real_collabora;
pub mod real_editor;
pub mod real_onlyoffice;
pub mod redis;
pub mod richdocuments;
pub mod serve;

use std::path::PathBuf;

/// The path of a file in `../shared/fixtures` (relative to the crate root), checked to
/// exist so a typo fails here with the path rather than later with a vague I/O error.
pub fn fixture(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(name);
    assert!(
        path.is_file(),
        "fixture {name} not found at {}",
        path.display()
    );
    path
}

/// Sends `tracing` output to the test harness's captured output (shown for failing
/// tests). Filter with `RUST_LOG`; default `info`. Safe to call from every test: only the
/// first call installs the subscriber.
pub fn trace_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Err only means a subscriber is already installed, which is the idempotent case.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
