//! The packaging is checked against the binary it packages (issue 6).
//!
//! - The Grafana dashboard and the Prometheus alerts query only series and labels that a
//!   live officeswitch exports on `/metrics`; every expression goes through a real PromQL
//!   parser, and the labels each sub-expression carries are followed through aggregations,
//!   joins and functions, so `sum by (node)` over a metric without `node`, or a ratio whose
//!   two sides cannot match, fails here rather than as an empty panel.
//! - The Kubernetes example and the systemd unit are read with officeswitch's own settings
//!   loader: ports, probes, mounted key files, rules and the drain time must agree.
//! - The Dockerfile builds a small image that runs as a non-root user.
//!
//! External validators run where installed (`kubernetes-validate`, `kubectl kustomize`,
//! `promtool`, `systemd-analyze`, a Docker engine). Where one is missing, its test writes
//! `packaging: <check>: skipped: <why>` to stderr (past the harness's capture, so CI logs
//! show it) and passes; where it is present, a wrong file fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use promql_parser::label::MatchOp;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self as promql, Expr, LabelModifier, VectorMatchCardinality};
use serde::Deserialize as _;
use serde_json::Value as Json;
use yaml_serde::Value as Yaml;

use officeswitch::config::{Config, PinStoreConfig};
use officeswitch::proxy::classify::{Class, Traffic, WopiEndpoint};
use officeswitch::rules::RuleSet;

use crate::support::client;
use crate::support::editor::{StandInEditor, Suite};
use crate::support::officeswitch::OfficeSwitch;
use crate::support::trace_init;

const TOKEN: &str = "packaging-test-token-0123456789";

mod docker;
mod kubernetes;
mod monitoring;
mod systemd;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A path in the repository.
fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml_file(path: &str) -> Yaml {
    yaml_serde::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_file(path: &str) -> Json {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Says on the process's stderr (past the test harness's capture, so CI logs show it)
/// that a check did not run and why.
fn skipped(check: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "packaging: {check}: skipped: {why}");
}

/// A finished external command.
struct ToolOutput {
    success: bool,
    stdout: String,
    stderr: String,
    /// Exit status, standard output and error, for messages.
    text: String,
}

/// Runs `program args` in `dir`, killed after `timeout`; `None` when `program` is not
/// installed.
fn run_tool(program: &str, args: &[&str], dir: &Path, timeout: Duration) -> Option<ToolOutput> {
    // Output goes to files, not pipes: a chatty tool cannot fill a pipe and stall.
    let mut stdout = tempfile::tempfile().expect("temp file");
    let mut stderr = tempfile::tempfile().expect("temp file");
    let spawned = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("temp file"))
        .stderr(stderr.try_clone().expect("temp file"))
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("{program}: {e}"),
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} {args:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read_back = |file: &mut File| {
        let mut text = String::new();
        file.rewind().expect("rewind");
        file.read_to_string(&mut text).expect("tool output");
        text
    };
    let out = read_back(&mut stdout);
    let err = read_back(&mut stderr);
    Some(ToolOutput {
        success: status.success(),
        text: format!("{status}\n{out}{err}"),
        stdout: out,
        stderr: err,
    })
}
