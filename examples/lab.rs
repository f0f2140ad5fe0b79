//! A lab on loopback: stand-in Collabora and OnlyOffice editors plus officeswitch.
//!
//! ```text
//! cargo run --example lab                      # uses officeswitch.toml
//! cargo run --example lab -- --config my.toml
//! curl -s http://127.0.0.1:8080/hosting/discovery | head
//! ```
//! Every loopback `http://` node of every pool in the settings gets a stand-in editor of
//! the pool's kind on its address (the same stand-ins the integration tests use: real
//! HTTP servers serving the real discovery and capabilities documents of
//! `../shared/fixtures`). Collabora stand-ins are configured as docs/operations.md's "Setting
//! up the editors" asks: `server_name` = `public_url`'s host and port, and the node URL's path
//! as their service root. Then officeswitch runs on those settings until Ctrl-C.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

#[path = "../tests/integration/support/editor.rs"]
#[allow(dead_code)]
mod editor;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

use editor::{StandInEditor, StandInOptions, Suite};
use officeswitch::app::{self, App, Listeners, MissingKey};
use officeswitch::config::{Config, SuiteKind};

/// Stand-in editors plus officeswitch, on loopback.
#[derive(Parser)]
struct Args {
    /// Settings file whose pools get stand-in editors.
    #[arg(long, default_value = "officeswitch.toml")]
    config: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::from_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    officeswitch::telemetry::init(&config.log);
    let mut editors = Vec::new();
    let server_name = officeswitch::discovery::announced::host_port(&config.public_url);
    for pool in &config.pools {
        let suite = match pool.kind {
            SuiteKind::Collabora => Suite::Collabora,
            SuiteKind::OnlyOffice => Suite::OnlyOffice,
        };
        for node in &pool.nodes {
            let options = match suite {
                Suite::Collabora => StandInOptions::default()
                    .server_name(server_name.clone())
                    .service_root(node.path()),
                Suite::OnlyOffice => StandInOptions::default(),
            };
            let addr = node
                .socket_addrs(|| None)
                .ok()
                .and_then(|a| a.into_iter().find(|a: &SocketAddr| a.ip().is_loopback()));
            match (node.scheme(), addr) {
                ("http", Some(addr)) => {
                    match StandInEditor::start_on_with(suite, addr, options).await {
                        Ok(e) => {
                            println!(
                                "stand-in {suite:?} editor for pool {} on {}",
                                pool.name,
                                e.url()
                            );
                            editors.push(e);
                        }
                        Err(e) => eprintln!("cannot start a stand-in on {addr}: {e}"),
                    }
                }
                _ => eprintln!("{node} is not a loopback http:// node: no stand-in for it"),
            }
        }
    }
    let prepared = match app::prepare(config, MissingKey::GenerateIfAllowed) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let listeners = match Listeners::bind(&prepared.config).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let public = prepared
        .config
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_string();
    println!("\nofficeswitch on {public}; try:");
    println!("  curl -s {public}/readyz");
    println!("  curl -s {public}/hosting/discovery | head -20");
    println!("  curl -s {public}/hosting/capabilities");
    println!("Ctrl-C stops the lab.\n");
    let app = App::new(prepared).await;
    let drain = app.drain().clone();
    tokio::spawn(async move {
        // The first Ctrl-C drains, a second one ends at once.
        while tokio::signal::ctrl_c().await.is_ok() {
            drain.request_stop();
        }
    });
    app.run(listeners).await;
    for e in editors {
        e.stop().await;
    }
    ExitCode::SUCCESS
}
