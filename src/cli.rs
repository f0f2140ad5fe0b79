//! Command line: run the server, check a configuration, generate keys.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// One WOPI editor URL for Nextcloud, two office suites behind it.
#[derive(Debug, Parser)]
#[command(name = "officeswitch", version, about)]
pub struct Cli {
    /// Settings file.
    #[arg(long, short, global = true, default_value = "officeswitch.toml")]
    pub config: PathBuf,
    /// What to do; without a command officeswitch runs the server.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Run,
    /// Validate settings, rules, keys and certificates, then exit (non-zero on any error).
    CheckConfig,
    /// Manage officeswitch's WOPI proof keys.
    Keys {
        /// What to do with keys.
        #[command(subcommand)]
        action: KeysCommand,
    },
}

/// `officeswitch keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new RSA 2048 proof key (PKCS#8 PEM).
    Generate {
        /// Where to write it; defaults to `keys.proof_key` of the settings file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
}
