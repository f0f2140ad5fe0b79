//! The `officeswitch` binary: parse the command line, then hand over to [`officeswitch::app`].

use std::process::ExitCode;

use clap::Parser;
use tracing::{error, info};

use officeswitch::app::{self, App, Listeners, MissingKey};
use officeswitch::cli::{Cli, Command, KeysCommand};
use officeswitch::config::Config;
use officeswitch::{admin, doctor, telemetry, wopi};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.config),
        Command::CheckConfig => check_config(&cli.config),
        Command::Keys {
            action: KeysCommand::Generate { out, force },
        } => generate_key(&cli.config, out, force),
        Command::Proof { action } => wopi::proof::command::run(&action),
        Command::Nodes(args) => admin::command::run(&cli.config, &args),
        Command::Doctor(args) => doctor::run(&cli.config, args.json),
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let prepared = Config::from_file(path)
        .map_err(app::StartupError::from)
        .and_then(|c| app::prepare(c, MissingKey::Report));
    match prepared {
        Ok(p) => {
            let pools: Vec<String> = p
                .config
                .pools
                .iter()
                .map(|pool| {
                    format!(
                        "{} ({}, {} nodes)",
                        pool.name,
                        pool.kind.as_str(),
                        pool.nodes.len()
                    )
                })
                .collect();
            println!("{}: ok; pools: {}", path.display(), pools.join(", "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn generate_key(
    config: &std::path::Path,
    out: Option<std::path::PathBuf>,
    force: bool,
) -> ExitCode {
    let out = match out {
        Some(out) => out,
        None => match Config::from_file(config) {
            Ok(c) => c.keys.proof_key,
            Err(e) => {
                eprintln!("{e}\n(give --out to write a key without a settings file)");
                return ExitCode::FAILURE;
            }
        },
    };
    match wopi::proof_key::write_new_key(&out, force) {
        Ok(_) => {
            println!("wrote a new RSA 2048 proof key to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let config = match Config::from_file(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let prepared = match app::prepare(config, MissingKey::GenerateIfAllowed) {
            Ok(p) => p,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let listeners = match Listeners::bind(&prepared.config).await {
            Ok(l) => l,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let app = App::new(prepared).await;
        tokio::spawn(signals(
            app.drain().clone(),
            app.rules().clone(),
            app.discovery().clone(),
            app.sticky().clone(),
        ));
        app.run(listeners).await;
        ExitCode::SUCCESS
    })
}

/// SIGTERM/SIGINT start a graceful drain and a second one ends it at once; SIGHUP reloads
/// rules and the pools' node lists, and refreshes discovery.
async fn signals(
    drain: std::sync::Arc<officeswitch::server::drain::Drain>,
    rules: std::sync::Arc<officeswitch::rules::watch::RulesStore>,
    discovery: std::sync::Arc<officeswitch::discovery::DiscoveryService>,
    sticky: std::sync::Arc<officeswitch::sticky::pins::Stickiness>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        error!("cannot install signal handlers; stop officeswitch with SIGKILL");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => drain.request_stop(),
            _ = tokio::signal::ctrl_c() => drain.request_stop(),
            _ = hup.recv() => {
                info!("SIGHUP: reloading rules and node lists, refreshing discovery");
                // Reading files blocks: off the async workers. A failed reload keeps what
                // runs and logs why.
                let store = rules.clone();
                let _ = tokio::task::spawn_blocking(move || store.reload()).await;
                let sticky = sticky.clone();
                let _ = tokio::task::spawn_blocking(move || sticky.reload_topology()).await;
                discovery.request_refresh();
            }
        }
    }
}
