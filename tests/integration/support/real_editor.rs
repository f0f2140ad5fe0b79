//! What the real-editor kits ([`super::real_collabora`], [`super::real_onlyoffice`])
//! share: [`Skip`], the process-wide [`real_editor_lock`], the build runner, and the
//! `/proc` helpers that make sure nothing a test started is left running.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Set to `1` to start no real editor: their tests print `skipped: ...` and pass.
pub const NO_REAL_EDITORS_ENV: &str = "OFFICESWITCH_NO_REAL_EDITORS";

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
    /// The machine-wide lock (released when the file closes).
    _file: std::fs::File,
}

/// The file whose lock is the machine-wide real-editor slot.
const MACHINE_LOCK: &str = "officeswitch-real-editors.lock";

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
/// Within the binary it is an async lock (no worker thread is blocked while waiting); then
/// it takes an exclusive lock on a file in the temporary directory, waited for off the
/// runtime, so test runs of several checkouts on one machine take turns too. Neither is
/// ever poisoned: a test that panics releases both after its editors are stopped.
pub async fn real_editor_lock() -> RealEditorLock {
    static LOCK: OnceLock<Arc<Mutex<()>>> = OnceLock::new();
    let lock = LOCK.get_or_init(|| Arc::new(Mutex::new(()))).clone();
    let guard = lock.lock_owned().await;
    let path = std::env::temp_dir().join(MACHINE_LOCK);
    let file = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        file.lock()
            .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
        file
    })
    .await
    .expect("the real-editor lock task");
    RealEditorLock {
        _guard: guard,
        _file: file,
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

/// Kills `procs` at once, as a crash does (SIGKILL: nothing saved, no client told), and
/// waits until they are gone (5 s at most) on a blocking thread, off the test's runtime.
pub async fn crash(procs: Vec<u32>) {
    tokio::task::spawn_blocking(move || {
        signal(&procs, "KILL");
        wait_gone(&procs, Duration::from_secs(5));
    })
    .await
    .expect("killing the node's processes");
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

/// SIGKILL for `left` (what a graceful stop left running), then a bounded wait; says on
/// stderr what was killed and what survived. `what` names the node for the messages.
pub fn kill_survivors(what: &str, mut left: Vec<u32>) {
    if left.is_empty() {
        return;
    }
    let _ = writeln!(
        std::io::stderr(),
        "{what}: killing {left:?}, left after the stop"
    );
    signal(&left, "KILL");
    left = wait_gone(&left, Duration::from_secs(5));
    if !left.is_empty() {
        let _ = writeln!(
            std::io::stderr(),
            "{what}: processes {left:?} survived SIGKILL"
        );
    }
}

/// Says on stderr how long stopping `what` took.
pub fn report_stopped(what: &str, started: Instant) {
    let _ = writeln!(
        std::io::stderr(),
        "{what} stopped in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
