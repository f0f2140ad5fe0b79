//! A real Collabora Online server (coolwsd 22.05 built by `../shared/real-collabora`) on
//! loopback, one process per node, for tests that must see what the real editor does
//! rather than what a stand-in imitates.
//!
//! ```ignore
//! let _turn = real_editor_lock().await;            // first: at most one real-editor test at a time
//! let Ok(cool) = RealCollabora::start(2, &public_host_port, &[]).await else { return };
//! // cool.urls() == ["http://127.0.0.1:<port>/", ...]; give them to officeswitch's pool
//! ```
//!
//! Why a process per node: a pool is several independent coolwsd that share one proof key
//! (the build's `src/proof_key`), as hosters run it. [`RealCollabora::start`] builds with
//! `build.sh` when needed (cached by the script: 0.1 s when up to date), starts every node
//! with `run.sh` on a free port with its own run directory, and on drop stops every process
//! it started (SIGTERM to coolwsd, then SIGKILL to whatever of its session is left), also
//! when the test panics.
//!
//! What both real editors share (skips, the one-at-a-time lock, the build runner, process
//! clean-up) is in [`super::real_editor`].
//!
//! Environment:
//! - `OFFICESWITCH_REAL_COLLABORA_URL`: comma-separated URLs of Collabora servers a user
//!   already runs; used as the nodes (never started or stopped, `server_name` is theirs).
//! - `OFFICESWITCH_NO_REAL_EDITORS=1`: start no real editor; tests skip visibly.
//! - `REAL_COLLABORA_DIR`: the build directory (default `/var/tmp/real-collabora`), read by
//!   the scripts.
//! - `CI=true`: a missing real editor fails the test instead of skipping it (CI builds the
//!   editors first, `.ci/run`), unless `OFFICESWITCH_NO_REAL_EDITORS=1`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::OnceCell;

use super::real_editor::{
    Skip, disabled, family, free_port, kill_survivors, open_temp_dir, report_stopped, run_build,
    shared_dir, signal, tail, urls_from_env, wait_gone,
};

/// Names existing Collabora servers to use instead of starting any (comma-separated URLs).
pub const COLLABORA_URL_ENV: &str = "OFFICESWITCH_REAL_COLLABORA_URL";

/// How long one `run.sh` may take before the start counts as failed (it waits 60 s itself).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How long coolwsd and its forkit/kit processes get to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// Debian packages `build.sh` installs; when all are present it runs with `SKIP_APT=1`.
const COLLABORA_PACKAGES: &[&str] = &[
    "libreofficekit-dev",
    "libreoffice-core",
    "libreoffice-writer",
    "libreoffice-calc",
    "libreoffice-impress",
    "libpoco-dev",
    "libcap-dev",
    "libpam0g-dev",
    "libcppunit-dev",
    "libzstd-dev",
    "libpng-dev",
    "libssl-dev",
    "python3-polib",
    "python3-lxml",
    "autoconf",
    "automake",
    "libtool",
    "m4",
    "libcap2-bin",
    "cpio",
    "fontconfig",
    "openssh-client",
    "make",
    "g++",
    "pkg-config",
    "xz-utils",
    "npm",
];

/// The coolwsd options a hoster sets for a pool behind officeswitch, as officeswitch's
/// docs/operations.md tells them, for `server_name` = officeswitch's public `host:port`:
///
/// - `server_name=<host:port>`: coolwsd builds every URL of its pages from it (else from
///   the request's `Host`, which officeswitch rewrites to the node), never from
///   `X-Forwarded-*` (run.sh sets it from `SERVER_NAME`);
/// - the WOPI host allow-list naming officeswitch, because every `WOPISrc` a node sees is
///   `{public_url}/wopi/files/<id>`: `storage.wopi.alias_groups[@mode]=groups` with
///   `group[0].host=http://<host:port>` and `group[0].host[@allow]=true` (the attribute
///   defaults to false). The shipped `coolwsd.xml` has an `<alias_groups>` element, and
///   then 22.05 ignores `storage.wopi.host[N]` entries (wsd/Storage.cpp:97-101); in its
///   default `mode="first"` the first WOPI host a node sees wins and later others are
///   refused (wsd/HostUtil.cpp `setFirstHost`).
///
/// A WOPI host that resolves to one of the machine's own addresses (127.0.0.1 at any port
/// included) is allowed whatever the list says (wsd/Storage.cpp `isLocalhost`), so on
/// loopback the list documents the configuration rather than gates it. Only the host
/// part is matched, not the port.
pub fn hoster_options(server_name: &str) -> Vec<String> {
    vec![
        "--o:storage.wopi.alias_groups[@mode]=groups".into(),
        format!("--o:storage.wopi.alias_groups.group[0].host=http://{server_name}"),
        "--o:storage.wopi.alias_groups.group[0].host[@allow]=true".into(),
    ]
}

/// One coolwsd started by [`RealCollabora::start`].
struct CoolNode {
    port: u16,
    /// `RUN_DIR`: `coolwsd.log` and `coolwsd.pid` (written as soon as it starts).
    run_dir: PathBuf,
}

impl CoolNode {
    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.run_dir.join("coolwsd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGTERM to coolwsd, a grace period for it, its forkit and kits, then SIGKILL for
    /// whatever of them is left. Blocking; never panics (it runs in `Drop`).
    fn stop(&self) {
        let Some(pid) = self.pid() else { return };
        let started = Instant::now();
        let mut procs = family(pid);
        signal(&[pid], "TERM");
        let mut left = wait_gone(&procs, TERM_GRACE);
        // Kits forked during shutdown join the session too.
        for p in family(pid) {
            if !procs.contains(&p) {
                procs.push(p);
                left.push(p);
            }
        }
        let what = format!("real Collabora: node {}", self.port);
        kill_survivors(&what, left);
        report_stopped(&what, started);
    }
}

/// Real coolwsd nodes on loopback (or the ones `OFFICESWITCH_REAL_COLLABORA_URL` names),
/// stopped on drop. Take [`super::real_editor::real_editor_lock`] before starting them.
pub struct RealCollabora {
    urls: Vec<String>,
    server_name: Option<String>,
    /// Empty when the nodes are external.
    nodes: Vec<CoolNode>,
    /// The nodes' run directories; removed after they stop.
    dir: Option<tempfile::TempDir>,
}

impl RealCollabora {
    /// Starts `nodes` coolwsd on free loopback ports, with `server_name` (the public
    /// `host:port` of the proxy in front, as hosters set it), the options of
    /// [`hoster_options`], then `extra` (`--o:key=value`; a later one wins, so `extra` may
    /// override the defaults), and waits until each answers `/hosting/discovery`.
    ///
    /// Uses `OFFICESWITCH_REAL_COLLABORA_URL` instead when set (then `server_name` and
    /// `extra` are the server's own business), and builds first when needed. Returns
    /// [`Skip`] when no real Collabora can be had; panics when a build is there but a node
    /// does not start (with its log), after stopping the nodes already started.
    pub async fn start(
        nodes: usize,
        server_name: &str,
        extra: &[&str],
    ) -> Result<RealCollabora, Skip> {
        let external = urls_from_env(COLLABORA_URL_ENV);
        if !external.is_empty() {
            if external.len() < nodes {
                return Err(Skip::new(
                    "Collabora",
                    format!(
                        "{COLLABORA_URL_ENV} names {} server(s), the test needs {nodes}",
                        external.len()
                    ),
                ));
            }
            return Ok(RealCollabora {
                urls: external.into_iter().take(nodes).collect(),
                server_name: None,
                nodes: Vec::new(),
                dir: None,
            });
        }
        if let Some(why) = disabled() {
            return Err(Skip::new("Collabora", why));
        }
        build_collabora().await?;

        let dir = open_temp_dir("real-collabora-")
            .unwrap_or_else(|e| panic!("temp dir for coolwsd: {e}"));
        let mut cool = RealCollabora {
            urls: Vec::new(),
            server_name: Some(server_name.to_string()),
            nodes: Vec::new(),
            dir: None,
        };
        let mut options = hoster_options(server_name);
        options.extend(extra.iter().map(|o| o.to_string()));
        let started = Instant::now();
        let mut runs = Vec::new();
        for i in 0..nodes {
            let port = free_port().await;
            let run_dir = dir.path().join(format!("node-{i}-{port}"));
            // Registered before it starts, so a drop mid-start still stops it by its PID file.
            cool.nodes.push(CoolNode {
                port,
                run_dir: run_dir.clone(),
            });
            runs.push(run_node(port, server_name, run_dir, &options));
        }
        cool.dir = Some(dir);
        // The nodes start side by side: each is one process that answers in 2-3 s.
        for (result, node) in futures_util::future::join_all(runs)
            .await
            .into_iter()
            .zip(&cool.nodes)
        {
            if let Err(e) = result {
                let log = tail(&node.run_dir.join("coolwsd.log"), 30);
                panic!("real Collabora node on port {}: {e}\n{log}", node.port);
            }
        }
        cool.urls = cool
            .nodes
            .iter()
            .map(|n| format!("http://127.0.0.1:{}/", n.port))
            .collect();
        let _ = writeln!(
            std::io::stderr(),
            "real Collabora: {nodes} node(s) up in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(cool)
    }

    /// The nodes' base URLs, `http://127.0.0.1:<port>/`.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The `server_name` the nodes were started with; `None` for external nodes.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// Whether the nodes come from `OFFICESWITCH_REAL_COLLABORA_URL` (not ours to stop or
    /// configure).
    pub fn is_external(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The tail of node `i`'s log, for assertion messages (empty for external nodes).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        self.nodes
            .get(i)
            .map(|n| tail(&n.run_dir.join("coolwsd.log"), lines))
            .unwrap_or_default()
    }

    /// Every live process of the nodes (coolwsd, forkit, kits), to check none outlives
    /// [`RealCollabora::stop`].
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(CoolNode::pid)
            .flat_map(family)
            .collect()
    }

    /// Kills node `i` at once, as a crash does: SIGKILL to coolwsd, its forkit and kits, so
    /// nothing is saved and no client is told. [`RealCollabora::stop`] is still safe after.
    pub async fn crash(&self, i: usize) {
        if let Some(pid) = self.nodes.get(i).and_then(CoolNode::pid) {
            super::real_editor::crash(family(pid)).await;
        }
    }

    /// Stops every node without blocking the runtime's thread (dropping does the same,
    /// blocking).
    pub async fn stop(self) {
        tokio::task::spawn_blocking(move || drop(self))
            .await
            .expect("stopping coolwsd");
    }
}

impl Drop for RealCollabora {
    fn drop(&mut self) {
        let nodes = std::mem::take(&mut self.nodes);
        // Side by side: each node takes its grace period at most once.
        std::thread::scope(|s| {
            for node in &nodes {
                s.spawn(|| node.stop());
            }
        });
    }
}

/// `build.sh`, once per test process.
async fn build_collabora() -> Result<PathBuf, Skip> {
    static BUILT: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();
    BUILT
        .get_or_init(|| {
            run_build(
                "Collabora",
                shared_dir("real-collabora/build.sh"),
                COLLABORA_PACKAGES,
            )
        })
        .await
        .clone()
        .map_err(|why| Skip::new("Collabora", why))
}

/// One `run.sh`: returns once the node answers discovery (run.sh prints its PID then).
async fn run_node(
    port: u16,
    server_name: &str,
    run_dir: PathBuf,
    options: &[String],
) -> Result<(), String> {
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let run = Command::new("bash")
        .arg(shared_dir("real-collabora/run.sh"))
        .args(options)
        .env("PORT", port.to_string())
        .env("SERVER_NAME", server_name)
        .env("RUN_DIR", &run_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(START_TIMEOUT, run)
        .await
        .map_err(|_| format!("run.sh did not finish within {START_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot run run.sh: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "run.sh failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
