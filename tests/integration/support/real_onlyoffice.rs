//! A real ONLYOFFICE Docs 9.2.1 (built by `../shared/real-onlyoffice`) on loopback: per
//! stack a private PostgreSQL, RabbitMQ, DocService, FileConverter and nginx, for tests that
//! must see what the real editor does.
//!
//! ```ignore
//! let _turn = real_editor_lock().await;            // first: at most one real-editor test at a time
//! let Ok(oo) = RealOnlyOffice::start(2).await else { return };
//! // oo.urls() == ["http://127.0.0.1:<port>/", ...]: nginx of each stack
//! oo.stop().await;                                  // ~13 s; dropping does it too, blocking
//! ```
//!
//! Each stack is about 0.5 GB and takes 10-20 s to start and ~13 s to stop, so take
//! [`real_editor_lock`] first and start only the stacks a test needs. Stacks from one
//! build share its WOPI proof key (in `ds/server/Common/config/local.json`), as a real
//! pool does. Behind a proxy, DocService builds its URLs from `X-Forwarded-Host`/`-Proto`.
//!
//! Environment: `OFFICESWITCH_REAL_ONLYOFFICE_URL` (comma-separated URLs of ONLYOFFICE
//! servers a user already runs, used as the stacks, never started or stopped),
//! `OFFICESWITCH_NO_REAL_EDITORS=1`, `REAL_ONLYOFFICE_DIR` and `CI`, as for
//! [`super::real_collabora`].
//!
//! [`real_editor_lock`]: super::real_editor::real_editor_lock

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::OnceCell;

use super::real_editor::{
    Skip, alive, disabled, family, free_port, kill_survivors, open_temp_dir, report_stopped,
    run_build, shared_dir, tail, urls_from_env,
};

/// Names existing ONLYOFFICE servers to use instead of starting any (comma-separated URLs).
pub const ONLYOFFICE_URL_ENV: &str = "OFFICESWITCH_REAL_ONLYOFFICE_URL";

/// How long one `run.sh` may take (its own steps wait up to 60 s each; 9-20 s is usual).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// Debian packages `build.sh` installs when missing; when all are present it runs with
/// `SKIP_APT=1`.
const ONLYOFFICE_PACKAGES: &[&str] = &[
    "rabbitmq-server",
    "postgresql",
    "nginx",
    "nodejs",
    "npm",
    "openssl",
    "python3",
    "python3-pip",
    "xz-utils",
    "curl",
];

/// One stack started by [`RealOnlyOffice::start`].
struct Stack {
    port: u16,
    /// `RUN_DIR`: `pids` (`name pid` lines, written as each process starts), `logs/`.
    run_dir: PathBuf,
}

impl Stack {
    /// The PIDs `run.sh` recorded (also after `stop.sh` renamed the file).
    fn recorded_pids(&self) -> Vec<u32> {
        let text = std::fs::read_to_string(self.run_dir.join("pids"))
            .or_else(|_| std::fs::read_to_string(self.run_dir.join("pids.stopped")))
            .unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect()
    }

    /// Every live process of the stack: the recorded ones and their children.
    fn pids(&self) -> Vec<u32> {
        let mut all = Vec::new();
        for pid in self.recorded_pids() {
            for p in family(pid) {
                if !all.contains(&p) {
                    all.push(p);
                }
            }
        }
        all
    }

    /// `stop.sh` (by the recorded PIDs, in reverse start order), then SIGKILL for anything
    /// it left. Blocking; never panics (it runs in `Drop`).
    fn stop(&self) {
        let procs = self.pids();
        if procs.is_empty() {
            return;
        }
        let started = Instant::now();
        let status = std::process::Command::new("bash")
            .arg(shared_dir("real-onlyoffice/stop.sh"))
            .env("PORT", self.port.to_string())
            .env("RUN_DIR", &self.run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let left: Vec<u32> = procs.iter().copied().filter(|p| alive(*p)).collect();
        if !left.is_empty() {
            let _ = writeln!(
                std::io::stderr(),
                "real ONLYOFFICE: stop.sh on port {} ended {status:?}",
                self.port
            );
        }
        let what = format!("real ONLYOFFICE: stack {}", self.port);
        kill_survivors(&what, left);
        report_stopped(&what, started);
    }
}

/// Real ONLYOFFICE Docs stacks on loopback (or the ones `OFFICESWITCH_REAL_ONLYOFFICE_URL`
/// names), stopped on drop or by [`RealOnlyOffice::stop`]. Take
/// [`super::real_editor::real_editor_lock`] before starting them.
pub struct RealOnlyOffice {
    urls: Vec<String>,
    /// Empty when the stacks are external.
    stacks: Vec<Stack>,
    /// The stacks' run directories; removed after they stop.
    dir: Option<tempfile::TempDir>,
}

impl RealOnlyOffice {
    /// ONLYOFFICE's own blank document of `ext` (`docx`, `xlsx`, `pptx`), from the build's
    /// `document-templates` (`REAL_ONLYOFFICE_DIR`, default `/var/tmp/real-onlyoffice`).
    pub fn template(&self, ext: &str) -> std::path::PathBuf {
        let root = std::env::var_os("REAL_ONLYOFFICE_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from("/var/tmp/real-onlyoffice"));
        root.join(format!("ds/document-templates/new/en-US/new.{ext}"))
    }

    /// Starts `nodes` stacks, one after the other (each loads 2 cores for 10-20 s), each with
    /// `run.sh` on a free `PORT` and its own `RUN_DIR`, and waits until each one's
    /// discovery lists its actions. Builds first when needed.
    ///
    /// Uses `OFFICESWITCH_REAL_ONLYOFFICE_URL` instead when set. Returns [`Skip`] when no
    /// real ONLYOFFICE can be had; panics when a build is there but a stack does not start
    /// (with its logs), after stopping what was started.
    pub async fn start(nodes: usize) -> Result<RealOnlyOffice, Skip> {
        let external = urls_from_env(ONLYOFFICE_URL_ENV);
        if !external.is_empty() {
            if external.len() < nodes {
                return Err(Skip::new(
                    "ONLYOFFICE",
                    format!(
                        "{ONLYOFFICE_URL_ENV} names {} server(s), the test needs {nodes}",
                        external.len()
                    ),
                ));
            }
            return Ok(RealOnlyOffice {
                urls: external.into_iter().take(nodes).collect(),
                stacks: Vec::new(),
                dir: None,
            });
        }
        if let Some(why) = disabled() {
            return Err(Skip::new("ONLYOFFICE", why));
        }
        build_onlyoffice().await?;

        // Open to other users: PostgreSQL runs as `postgres` inside it.
        let dir = open_temp_dir("real-onlyoffice-")
            .unwrap_or_else(|e| panic!("temp dir for ONLYOFFICE: {e}"));
        let root = dir.path().to_path_buf();
        let mut oo = RealOnlyOffice {
            urls: Vec::new(),
            stacks: Vec::new(),
            dir: Some(dir),
        };
        for i in 0..nodes {
            let started = Instant::now();
            let port = free_port().await;
            let run_dir = root.join(format!("stack-{i}-{port}"));
            // Registered before it starts, so a drop mid-start still stops it by its `pids`.
            oo.stacks.push(Stack {
                port,
                run_dir: run_dir.clone(),
            });
            if let Err(e) = run_stack(port, &run_dir).await {
                let logs = ["docservice.log", "fileconverter.log", "nginx-error.log"]
                    .iter()
                    .map(|f| format!("== {f}\n{}", tail(&run_dir.join("logs").join(f), 15)))
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("real ONLYOFFICE stack on port {port}: {e}\n{logs}");
            }
            oo.urls.push(format!("http://127.0.0.1:{port}/"));
            let _ = writeln!(
                std::io::stderr(),
                "real ONLYOFFICE: stack {port} up in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        Ok(oo)
    }

    /// The stacks' base URLs (nginx), `http://127.0.0.1:<port>/`.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Whether the stacks come from `OFFICESWITCH_REAL_ONLYOFFICE_URL` (not ours to stop).
    pub fn is_external(&self) -> bool {
        self.stacks.is_empty()
    }

    /// The tail of one of stack `i`'s logs (`docservice.log`, `fileconverter.log`,
    /// `nginx-access.log`, ...), for assertion messages (empty for external stacks).
    pub fn log_tail(&self, i: usize, log: &str, lines: usize) -> String {
        self.stacks
            .get(i)
            .map(|s| tail(&s.run_dir.join("logs").join(log), lines))
            .unwrap_or_default()
    }

    /// Every live process of the stacks, to check none outlives [`RealOnlyOffice::stop`].
    pub fn pids(&self) -> Vec<u32> {
        self.stacks.iter().flat_map(Stack::pids).collect()
    }

    /// Kills stack `i` at once, as a crashed node: SIGKILL to every process of it
    /// (nginx, DocService, FileConverter and their database and queue), so nothing is
    /// saved and no client is told. [`RealOnlyOffice::stop`] is still safe after.
    pub async fn crash(&self, i: usize) {
        if let Some(stack) = self.stacks.get(i) {
            super::real_editor::crash(stack.pids()).await;
        }
    }

    /// Stops every stack (side by side, ~13 s) on a blocking thread, so the test's runtime
    /// goes on meanwhile. Dropping does the same, blocking the dropping thread.
    pub async fn stop(self) {
        tokio::task::spawn_blocking(move || drop(self))
            .await
            .expect("stopping ONLYOFFICE");
    }
}

impl Drop for RealOnlyOffice {
    fn drop(&mut self) {
        let stacks = std::mem::take(&mut self.stacks);
        std::thread::scope(|s| {
            for stack in &stacks {
                s.spawn(|| stack.stop());
            }
        });
        // The run directories (PostgreSQL's data among them) go only once nothing uses them.
        drop(self.dir.take());
    }
}

/// `build.sh`, once per test process.
async fn build_onlyoffice() -> Result<PathBuf, Skip> {
    static BUILT: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();
    BUILT
        .get_or_init(|| {
            run_build(
                "ONLYOFFICE",
                shared_dir("real-onlyoffice/build.sh"),
                ONLYOFFICE_PACKAGES,
            )
        })
        .await
        .clone()
        .map_err(|why| Skip::new("ONLYOFFICE", why))
}

/// One `run.sh`: returns once nginx serves discovery with its actions.
async fn run_stack(port: u16, run_dir: &PathBuf) -> Result<(), String> {
    std::fs::create_dir_all(run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let run = Command::new("bash")
        .arg(shared_dir("real-onlyoffice/run.sh"))
        .env("PORT", port.to_string())
        .env("RUN_DIR", run_dir)
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
