//! Command line: run the server, check a configuration, check the editors after set-up,
//! generate keys, check or make proofs, list and drain editor nodes.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

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
    /// Check or make WOPI proofs (X-WOPI-Proof headers), to reproduce a proof failure from a
    /// log line. Needs no settings file.
    Proof {
        /// What to do with a proof.
        #[command(subcommand)]
        action: ProofCommand,
    },
    /// List the editor nodes (health, draining, pinned documents), or drain one, through the
    /// admin listener of a running officeswitch.
    ///
    /// Exits 0 on success, 1 when the admin API refuses (status and body printed), 2 when the
    /// admin listener is not configured or cannot be reached.
    Nodes(NodesArgs),
    /// Check every node of every pool as officeswitch sees it (reachable, discovery, the
    /// origin it announces, proof keys) and print the allow-lists to set, one line per
    /// check with its fix.
    ///
    /// Exits 1 when a check fails (editing would break), 2 when the settings cannot be
    /// loaded, else 0 (warnings and todo lines included).
    Doctor(DoctorArgs),
}

/// `officeswitch doctor`; implemented by [`crate::doctor::run`].
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Print one JSON object (every verdict, and counts per level) instead of lines.
    #[arg(long)]
    pub json: bool,
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

/// `officeswitch proof ...`; implemented by [`crate::wopi::proof::command`].
#[derive(Debug, Subcommand)]
pub enum ProofCommand {
    /// Check a request's X-WOPI-Proof/X-WOPI-ProofOld against an editor's public keys.
    ///
    /// Prints `valid (...)` and exits 0, or `invalid: <reason> (...)` and exits 1; exits 2 when
    /// the keys or files given are unusable.
    Verify(Box<ProofVerifyArgs>),
    /// Sign a request as officeswitch does and print the three headers it would send.
    Sign(ProofSignArgs),
}

/// `officeswitch proof verify`: one request's proof headers and the keys to check them with.
#[derive(Debug, Clone, Args)]
#[command(group(
    ArgGroup::new("keys")
        .required(true)
        .args(["discovery", "modulus", "value"])
))]
pub struct ProofVerifyArgs {
    /// The full URL the editor called (scheme, host, port, path and whole query).
    #[arg(long)]
    pub url: String,
    /// The access token as sent (the access_token query value, not decoded).
    #[arg(long, allow_hyphen_values = true)]
    pub token: String,
    /// The X-WOPI-TimeStamp value (.NET ticks).
    #[arg(long, value_name = "TICKS", allow_hyphen_values = true)]
    pub timestamp: String,
    /// The X-WOPI-Proof value (base64).
    #[arg(long, value_name = "BASE64")]
    pub proof: String,
    /// The X-WOPI-ProofOld value (base64), if the request had one.
    #[arg(long, value_name = "BASE64")]
    pub proof_old: Option<String>,
    /// The editor's discovery XML, saved to a file (e.g. `curl -o d.xml
    /// https://EDITOR/hosting/discovery`); repeat for a pool whose nodes have distinct keys.
    #[arg(long, value_name = "FILE")]
    pub discovery: Vec<PathBuf>,
    /// The discovery proof-key `modulus` (base64).
    #[arg(long, value_name = "BASE64", requires = "exponent")]
    pub modulus: Option<String>,
    /// The discovery proof-key `exponent` (base64, usually AQAB).
    #[arg(long, value_name = "BASE64", requires = "modulus")]
    pub exponent: Option<String>,
    /// The discovery proof-key `oldmodulus` (base64); without it the old key is the current one.
    #[arg(long, value_name = "BASE64", requires_all = ["modulus", "old_exponent"])]
    pub old_modulus: Option<String>,
    /// The discovery proof-key `oldexponent` (base64).
    #[arg(long, value_name = "BASE64", requires = "old_modulus")]
    pub old_exponent: Option<String>,
    /// The discovery proof-key `value` (base64 CryptoAPI PUBLICKEYBLOB).
    #[arg(long, value_name = "BASE64")]
    pub value: Option<String>,
    /// The discovery proof-key `oldvalue` (base64); without it the old key is the current one.
    #[arg(long, value_name = "BASE64", requires = "value")]
    pub old_value: Option<String>,
    /// Check the timestamp window against this time (.NET ticks) instead of the clock, e.g. the
    /// time of the log line.
    #[arg(long, value_name = "TICKS", conflicts_with = "ignore_time")]
    pub now: Option<u64>,
    /// Check only the signatures, not the timestamp's age.
    #[arg(long)]
    pub ignore_time: bool,
}

/// `officeswitch proof sign`: what to sign and with which keys.
#[derive(Debug, Clone, Args)]
pub struct ProofSignArgs {
    /// The full URL the host will see (scheme, host, port, path and whole query).
    #[arg(long)]
    pub url: String,
    /// The host's access token, as in the URL's access_token value.
    #[arg(long, allow_hyphen_values = true)]
    pub token: String,
    /// The X-WOPI-TimeStamp to sign (.NET ticks); defaults to now.
    #[arg(long, value_name = "TICKS")]
    pub timestamp: Option<u64>,
    /// The current private key (PKCS#8 PEM, as `officeswitch keys generate` writes).
    #[arg(long, value_name = "PEM_PATH")]
    pub key: PathBuf,
    /// The previous private key, during a rotation; without it X-WOPI-ProofOld repeats the proof.
    #[arg(long, value_name = "PEM_PATH")]
    pub old_key: Option<PathBuf>,
}

/// `officeswitch nodes`: where the admin listener is and how to show its answer; implemented
/// by [`crate::admin::command`].
#[derive(Debug, Clone, Args)]
pub struct NodesArgs {
    /// Drain or undrain a node; without one, list the nodes.
    #[command(subcommand)]
    pub action: Option<NodesCommand>,
    /// The admin listener (`http://127.0.0.1:9091` or `127.0.0.1:9091`); defaults to
    /// `[admin] listen` of the settings file.
    #[arg(long, global = true, value_name = "URL")]
    pub admin: Option<String>,
    /// The bearer token file; defaults to `[admin] token_file` of the settings file.
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Print the admin API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `officeswitch nodes drain|undrain`.
#[derive(Debug, Clone, Subcommand)]
pub enum NodesCommand {
    /// Keep new documents off a node; its open documents stay. Only on the instance asked:
    /// with several instances, drain the node on each.
    Drain {
        /// The node's base URL, as in the settings (`http://10.0.0.2:9980/`).
        node: String,
    },
    /// Let a drained node take new documents again (on the instance asked).
    Undrain {
        /// The node's base URL, as in the settings.
        node: String,
    },
}
