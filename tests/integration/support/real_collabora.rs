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
//! This file also holds what both real editors share: [`Skip`], the process-wide
//! [`real_editor_lock`], the build runner and the `/proc` helpers that make sure nothing is
//! left running.
//!
//! Environment:
//! - `OFFICESWITCH_REAL_COLLABORA_URL`: comma-separated URLs of Collabora servers a user
//!   already runs; used as the nodes (never started or stopped, `server_name` is theirs).
//! - `OFFICESWITCH_NO_REAL_EDITORS=1`: start no real editor; tests skip visibly.
//! - `REAL_COLLABORA_DIR`: the build directory (default `/var/tmp/real-collabora`), read by
//!   the scripts.
//! - `CI=true`: a missing real editor fails the test instead of skipping it (CI builds the
//!   editors first, `.ci/run`), unless `OFFICESWITCH_NO_REAL_EDITORS=1`.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::{Mutex, OnceCell, OwnedMutexGuard};

/// Names existing Collabora servers to use instead of starting any (comma-separated URLs).
pub const COLLABORA_URL_ENV: &str = "OFFICESWITCH_REAL_COLLABORA_URL";

/// Set to `1` to start no real editor: their tests print `skipped: ...` and pass.
pub const NO_REAL_EDITORS_ENV: &str = "OFFICESWITCH_NO_REAL_EDITORS";

/// How long one `run.sh` may take before the start counts as failed (it waits 60 s itself).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How long coolwsd and its forkit/kit processes get to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Shared by both real editors
// ---------------------------------------------------------------------------------------

/// Why a real editor is not available to this test run. Creating one prints
/// `skipped: no real <editor> (<why>)` on stderr (past the harness's capture, so every log
/// shows it); a test that gets one returns early and passes. Under `CI=true` (and without
/// `OFFICESWITCH_NO_REAL_EDITORS=1`) it panics instead: CI builds the editors before the
/// tests, so a missing one there is a failure, not a skip.
#[derive(Debug)]
pub struct Skip {
    editor: &'static str,
    why: String,
}

impl Skip {
    /// Reports the skip (or fails under CI, see the type's doc).
    pub fn new(editor: &'static str, why: impl Into<String>) -> Skip {
        let skip = Skip {
            editor,
            why: why.into(),
        };
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        if ci && disabled().is_none() {
            panic!(
                "{skip}; under CI=true a real-editor test may not skip (.ci/run builds the \
                 editors; {NO_REAL_EDITORS_ENV}=1 skips them on purpose)"
            );
        }
        let _ = writeln!(std::io::stderr(), "{skip}");
        skip
    }

    /// The reason, without the `skipped:` prefix.
    pub fn why(&self) -> &str {
        &self.why
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipped: no real {} ({})", self.editor, self.why)
    }
}

/// Held by the one test that uses real editors right now; see [`real_editor_lock`].
pub struct RealEditorLock {
    _guard: OwnedMutexGuard<()>,
}

/// Waits for this test binary's one real-editor slot. Real editors are heavy (ONLYOFFICE
/// about 0.5 GB and 10-20 s per stack, coolwsd a LibreOffice per document) and the test
/// machines have 2 cores, so at most one test at a time may run them.
///
/// Every test that starts [`RealCollabora`] or `RealOnlyOffice` takes the lock **first**
/// and keeps it to the end of the test:
///
/// ```ignore
/// let _turn = real_editor_lock().await;   // declared first, so dropped last:
/// let Ok(cool) = RealCollabora::start(1, "127.0.0.1:8080", &[]).await else { return };
/// // ... the editors are stopped (drop) before the next test gets the lock
/// ```
///
/// It is an async lock (no worker thread is blocked while waiting) and is never poisoned:
/// a test that panics releases it after its editors are stopped.
pub async fn real_editor_lock() -> RealEditorLock {
    static LOCK: OnceLock<Arc<Mutex<()>>> = OnceLock::new();
    let lock = LOCK.get_or_init(|| Arc::new(Mutex::new(()))).clone();
    RealEditorLock {
        _guard: lock.lock_owned().await,
    }
}

/// `Some(reason)` when `OFFICESWITCH_NO_REAL_EDITORS` turns the real editors off.
pub fn disabled() -> Option<String> {
    match std::env::var(NO_REAL_EDITORS_ENV) {
        Ok(v) if !v.is_empty() && v != "0" => Some(format!("{NO_REAL_EDITORS_ENV}={v}")),
        _ => None,
    }
}

/// `../shared/<name>` (relative to the crate root), where the real editors' scripts are.
pub fn shared_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(name)
}

/// URLs named by `env` (comma-separated), each ending in `/`; empty when unset.
pub fn urls_from_env(env: &str) -> Vec<String> {
    std::env::var(env)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| format!("{}/", u.trim_end_matches('/')))
        .collect()
}

/// Runs `build.sh` of one real editor once per test process (the script returns in 0.1 s
/// when its build is up to date, and rebuilds when its inputs changed). `SKIP_APT=1` is
/// passed when every Debian package in `packages` is installed, so a developer machine
/// without them still gets them (the script needs root for that). Returns the build
/// directory the script prints last, or why the build failed (with its output's tail).
pub async fn run_build(
    editor: &str,
    script: PathBuf,
    packages: &[&str],
) -> Result<PathBuf, String> {
    if !script.is_file() {
        return Err(format!("{} not found", script.display()));
    }
    let log = tempfile::NamedTempFile::new().map_err(|e| format!("temp log: {e}"))?;
    let out = log.reopen().map_err(|e| format!("temp log: {e}"))?;
    let err = log.reopen().map_err(|e| format!("temp log: {e}"))?;
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    if packages_installed(packages).await {
        cmd.env("SKIP_APT", "1");
    }
    let started = Instant::now();
    let status = cmd
        .status()
        .await
        .map_err(|e| format!("cannot run bash {}: {e}", script.display()))?;
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    let took = started.elapsed();
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "{} failed after {:.0} s ({status}): {}",
            script.display(),
            took.as_secs_f64(),
            tail.join(" | ")
        ));
    }
    if took > Duration::from_secs(5) {
        let _ = writeln!(
            std::io::stderr(),
            "real {editor}: built in {:.0} s",
            took.as_secs_f64()
        );
    }
    text.lines()
        .rev()
        .find(|l| l.starts_with('/'))
        .map(PathBuf::from)
        .ok_or_else(|| format!("{} printed no build directory", script.display()))
}

/// Whether every Debian package of `names` is installed (`dpkg -s`).
async fn packages_installed(names: &[&str]) -> bool {
    if names.is_empty() {
        return true;
    }
    Command::new("dpkg")
        .arg("-s")
        .args(names)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// A loopback port nothing listens on right now (bound, then released for the editor).
pub async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// A temporary directory other users can enter (ONLYOFFICE's PostgreSQL runs as
/// `postgres` and needs to reach its data directory inside it).
pub fn open_temp_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// What `/proc/<pid>/stat` says of one process.
struct ProcStat {
    state: char,
    ppid: u32,
    session: u32,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let _pgrp = fields.next()?;
    let session = fields.next()?.parse().ok()?;
    Some(ProcStat {
        state,
        ppid,
        session,
    })
}

/// Whether `pid` runs (a zombie, whose parent has not reaped it yet, has ended).
pub fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// `pid`, every live descendant of it, and every live member of its session when it leads
/// one (the real editors' scripts start their servers with `setsid`, and children that
/// outlive a parent are re-parented away from it but stay in its session).
pub fn family(pid: u32) -> Vec<u32> {
    let all: Vec<(u32, ProcStat)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, proc_stat(p)?)))
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for (p, s) in &all {
            if (s.ppid == parent || s.session == pid) && !found.contains(p) {
                found.push(*p);
            }
        }
        i += 1;
    }
    found.retain(|p| alive(*p));
    found
}

/// Sends `signal` (a name: `TERM`, `KILL`) to `pids` with `kill`; errors (gone already)
/// are ignored.
pub fn signal(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits up to `limit` until none of `pids` runs; returns those still running.
pub fn wait_gone(pids: &[u32], limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `n` lines of a file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// Collabora
// ---------------------------------------------------------------------------------------

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
/// README tells them, for `server_name` = officeswitch's public `host:port`:
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
        if !left.is_empty() {
            let _ = writeln!(
                std::io::stderr(),
                "real Collabora: node {} did not stop within {TERM_GRACE:?}; killing {left:?}",
                self.port
            );
            signal(&left, "KILL");
            left = wait_gone(&left, Duration::from_secs(5));
        }
        if !left.is_empty() {
            let _ = writeln!(
                std::io::stderr(),
                "real Collabora: node {}: processes {left:?} survived SIGKILL",
                self.port
            );
        }
        let _ = writeln!(
            std::io::stderr(),
            "real Collabora: node {} stopped in {:.1} s",
            self.port,
            started.elapsed().as_secs_f64()
        );
    }
}

/// Real coolwsd nodes on loopback (or the ones `OFFICESWITCH_REAL_COLLABORA_URL` names),
/// stopped on drop. Take [`real_editor_lock`] before starting them.
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
