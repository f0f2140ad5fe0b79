//! A real officeswitch on loopback, configured by a small builder.
//!
//! ```ignore
//! let os = OfficeSwitch::builder().pool("collabora", "collabora", &[&cool]).start().await;
//! let (status, body) = os.get("/hosting/discovery").await;
//! ```
//! The settings file, rules, keys and state dir live in a temp dir that survives a
//! [`OfficeSwitch::restart`], so restarts see the same state and keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use officeswitch::app::{self, App, Listeners, MissingKey, Prepared};
use officeswitch::config::Config;
use officeswitch::server::drain::Drain;
use officeswitch::wopi::proof_key::{self, ProofKey};
use officeswitch::wopi::token;

use super::certs::TestCerts;
use super::client;

/// The admin token of an instance built without `.admin(token)`.
pub const KIT_ADMIN_TOKEN: &str = "kit-admin-token-not-for-production";

/// How to configure the officeswitch under test.
pub struct Builder {
    pools: Vec<(String, String, Vec<String>)>,
    refresh_secs: u64,
    fetch_timeout_secs: u64,
    max_body_bytes: Option<u64>,
    tls: Option<Arc<TestCerts>>,
    old_key: bool,
    /// Extra top-level settings lines.
    top: Vec<String>,
    /// Extra `[upstream]`/`[server]` sections, verbatim.
    sections: Vec<String>,
    /// Organisation rule files: (file stem, contents).
    orgs: Vec<(String, String)>,
    /// Extra lines per pool: (pool name, TOML line).
    pool_lines: Vec<(String, String)>,
    /// Bearer token of the `[admin]` listener (every instance has one, as a hoster's
    /// does: `/readyz` details live there); [`KIT_ADMIN_TOKEN`] unless `.admin(token)`.
    admin_token: Option<String>,
    /// Leave `[admin]` out (for tests of a settings file without it).
    no_admin: bool,
    /// Take the proof key and token secret from this instance's directory, as instances
    /// behind one load balancer share them.
    keys_from: Option<Arc<tempfile::TempDir>>,
    /// `public_url` to configure instead of the instance's own address (instances behind
    /// one load balancer share the balancer's).
    public_url: Option<String>,
    /// `[drain]` delay and deadline in seconds (tests stop at once unless they test it).
    drain: (u64, u64),
    /// The port to listen on, when a test must know it before starting (real editors are
    /// told officeswitch's public address first).
    port: Option<u16>,
}

/// A running officeswitch and the files behind it.
pub struct OfficeSwitch {
    /// Plain HTTP address.
    pub addr: SocketAddr,
    /// TLS address, when built `with_tls`.
    pub tls_addr: Option<SocketAddr>,
    /// `public_url` as configured (`http://127.0.0.1:PORT`).
    pub public_url: String,
    /// Temp dir with `officeswitch.toml`, `rules/`, `keys/` and `state/`.
    pub dir: Arc<tempfile::TempDir>,
    drain: Arc<Drain>,
    task: JoinHandle<()>,
}

impl OfficeSwitch {
    /// Starts configuring an officeswitch.
    pub fn builder() -> Builder {
        Builder {
            pools: Vec::new(),
            refresh_secs: 300,
            fetch_timeout_secs: 2,
            max_body_bytes: None,
            tls: None,
            old_key: false,
            top: Vec::new(),
            sections: Vec::new(),
            orgs: Vec::new(),
            pool_lines: Vec::new(),
            admin_token: None,
            no_admin: false,
            keys_from: None,
            public_url: None,
            drain: (0, 10),
            port: None,
        }
    }

    /// The rules directory (tests rewrite files there to test reloads).
    pub fn rules_dir(&self) -> PathBuf {
        self.dir.path().join("rules")
    }

    /// Path of the settings file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("officeswitch.toml")
    }

    /// officeswitch's current proof key, read from its key file.
    pub fn proof_key(&self) -> ProofKey {
        ProofKey::load(&self.dir.path().join("keys/proof_key.pem")).expect("officeswitch key file")
    }

    /// officeswitch's previous proof key, when built `with_old_key`.
    pub fn old_proof_key(&self) -> ProofKey {
        ProofKey::load(&self.dir.path().join("keys/old_proof_key.pem")).expect("old key file")
    }

    /// The `[admin] listen` address.
    pub fn admin_addr(&self) -> SocketAddr {
        admin_addr(self.dir.path())
    }

    /// Readiness in detail, from the admin listener's `/admin/ready` (the public
    /// `/readyz` only says ready or not): whether ready, and every detail line.
    pub async fn readiness(&self) -> (bool, String) {
        readiness(self.admin_addr(), self.dir.path()).await
    }

    /// Polls readiness (10 s at most) until its detail contains `needle`; returns the
    /// detail, panics with the last one otherwise.
    pub async fn readiness_saying(&self, needle: &str) -> String {
        let mut detail = String::new();
        for _ in 0..100 {
            detail = self.readiness().await.1;
            if detail.contains(needle) {
                return detail;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("readiness never said {needle:?}; last:\n{detail}");
    }

    /// GET `path` over plain HTTP; returns status and body.
    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        client::get(&format!("http://{}{path}", self.addr)).await
    }

    /// The stop handle (what SIGTERM drives in the binary).
    pub fn drain(&self) -> &Arc<Drain> {
        &self.drain
    }

    /// Whether the server task has ended.
    pub fn has_stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops it (graceful drain) and waits until it has stopped.
    pub async fn stop(self) -> Arc<tempfile::TempDir> {
        self.drain.request_stop();
        tokio::time::timeout(Duration::from_secs(40), self.task)
            .await
            .expect("officeswitch stops within its drain deadline")
            .expect("officeswitch task panicked");
        self.dir
    }

    /// Stops it and starts a new process-equivalent on the same files (new ports).
    pub async fn restart(self) -> OfficeSwitch {
        let dir = self.stop().await;
        launch(dir).await
    }
}

/// officeswitch running as its own process; killed on drop.
pub struct OfficeSwitchProcess {
    /// Plain HTTP address.
    pub addr: SocketAddr,
    /// `public_url` as configured.
    pub public_url: String,
    /// Temp dir with the settings, rules, keys and state.
    pub dir: Arc<tempfile::TempDir>,
    /// The `[admin] listen` address (kept: a test may break the settings file).
    admin: SocketAddr,
    child: std::process::Child,
}

impl OfficeSwitchProcess {
    /// The process id (for signals and `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The rules directory.
    pub fn rules_dir(&self) -> PathBuf {
        self.dir.path().join("rules")
    }

    /// Everything it has logged so far (its standard output and error).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("officeswitch.log")).unwrap_or_default()
    }

    /// Readiness in detail, from the admin listener (see [`OfficeSwitch::readiness`]).
    pub async fn readiness(&self) -> (bool, String) {
        readiness(self.admin, self.dir.path()).await
    }

    /// Waits (10 s at most) until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            let (status, _) = client::get(&format!("http://{}/readyz", self.addr)).await;
            if status == StatusCode::OK {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("officeswitch not ready within 10 s; log:\n{}", self.log());
    }

    /// Waits (up to `limit`) for the process to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            if let Some(status) = self.child.try_wait().expect("process status") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Restarts the process as a deploy does: SIGTERM (officeswitch drains: WebSockets get
    /// close frames), then the same binary on the same settings, keys and port; its log
    /// goes on in the same file. Panics when it does not stop within 30 s.
    pub async fn restart(&mut self) {
        self.signal("TERM");
        assert!(
            self.wait_exit(Duration::from_secs(30)).await.is_some(),
            "officeswitch did not stop on SIGTERM; log:\n{}",
            self.log()
        );
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("officeswitch.log"))
            .expect("log file");
        self.child = run_binary(&self.dir.path().join("officeswitch.toml"), log);
        wait_listening(self.addr).await;
    }

    /// Rewrites the node list of pool `pool` in its settings file (then [`Self::signal`]
    /// `HUP` makes it take effect, or the file watch).
    pub fn set_pool_nodes(&self, pool: &str, nodes: &[String]) {
        set_pool_nodes(&self.dir.path().join("officeswitch.toml"), pool, nodes);
    }

    /// Sends `signal` (e.g. "HUP") to the process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }
}

/// The `[admin] listen` address of the instance whose files are in `dir`.
fn admin_addr(dir: &Path) -> SocketAddr {
    let config = Config::from_file(&dir.join("officeswitch.toml")).expect("valid settings");
    config
        .admin
        .expect("the kit configures an admin listener")
        .listen
}

/// `GET /admin/ready` on `admin`, with the token of the instance whose files are in `dir`.
async fn readiness(admin: SocketAddr, dir: &Path) -> (bool, String) {
    let token = std::fs::read_to_string(dir.join("keys/admin.token")).expect("admin token");
    let url = format!("http://{admin}/admin/ready");
    let bearer = format!("Bearer {}", token.trim());
    let reply = client::send(http::Method::GET, &url, &[("authorization", &bearer)], b"").await;
    assert_eq!(reply.status, StatusCode::OK, "/admin/ready: {}", reply.body);
    let report: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON readiness");
    let detail = report["detail"]
        .as_array()
        .expect("detail lines")
        .iter()
        .map(|line| line.as_str().expect("a line"))
        .collect::<Vec<_>>()
        .join("\n");
    (report["ready"].as_bool().expect("ready flag"), detail)
}

/// `count` instances of one fleet, each configured by `builder`: as behind one load
/// balancer, they share the first one's proof key, token secret and public URL.
pub async fn fleet(count: usize, builder: impl Fn() -> Builder) -> Vec<OfficeSwitch> {
    let first = builder().start().await;
    let mut fleet = Vec::with_capacity(count);
    for _ in 1..count {
        let next = builder()
            .share_keys_with(&first)
            .public_url(&first.public_url)
            .start()
            .await;
        fleet.push(next);
    }
    fleet.insert(0, first);
    fleet
}

/// Rewrites the node list of pool `pool` in the settings file at `path`.
pub fn set_pool_nodes(path: &Path, pool: &str, nodes: &[String]) {
    let settings = std::fs::read_to_string(path).expect("settings");
    let mut out = String::new();
    let mut in_pool = false;
    for line in settings.lines() {
        if line.starts_with("name = ") {
            in_pool = line == format!("name = \"{pool}\"");
        }
        if in_pool && line.starts_with("nodes = ") {
            let list: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
            out.push_str(&format!("nodes = [{}]\n", list.join(", ")));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    // Written whole and renamed into place, as editors and config tools do: a watcher never
    // reads half a file.
    let temporary = path.with_extension("toml.tmp");
    std::fs::write(&temporary, out).expect("write settings");
    std::fs::rename(&temporary, path).expect("replace settings");
}

/// Runs the `officeswitch` binary on `config`, its output into `log`.
fn run_binary(config: &std::path::Path, log: std::fs::File) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_officeswitch"))
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stderr(log.try_clone().expect("log file"))
        .stdout(log)
        .spawn()
        .expect("run officeswitch")
}

/// Waits (5 s at most) until something accepts connections on `addr`.
async fn wait_listening(addr: SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for OfficeSwitchProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Builder {
    /// Adds a `[[pool]]` named `name` of `kind` whose nodes are `nodes` (base URLs).
    pub fn pool(mut self, name: &str, kind: &str, nodes: &[String]) -> Self {
        self.pools.push((name.into(), kind.into(), nodes.to_vec()));
        self
    }

    /// Sets the drain delay and deadline (seconds); the default is 0 and 10.
    pub fn drain(mut self, delay_secs: u64, deadline_secs: u64) -> Self {
        self.drain = (delay_secs, deadline_secs);
        self
    }

    /// Shares `other`'s proof key and token secret (instances of one fleet must).
    pub fn share_keys_with(self, other: &OfficeSwitch) -> Self {
        self.share_keys_in(&other.dir)
    }

    /// Shares the proof key and token secret of the instance whose files are in `dir`.
    pub fn share_keys_in(mut self, dir: &Arc<tempfile::TempDir>) -> Self {
        self.keys_from = Some(Arc::clone(dir));
        self
    }

    /// Listens on `port` (a free one the test picked, so real editors can be told
    /// officeswitch's address before it starts).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Configures `url` as `public_url` (the load balancer's, shared by a fleet) instead
    /// of this instance's own address.
    pub fn public_url(mut self, url: &str) -> Self {
        self.public_url = Some(url.to_string());
        self
    }

    /// Adds a settings line to pool `name` (`proof = "required"`).
    pub fn pool_setting(mut self, name: &str, line: &str) -> Self {
        self.pool_lines.push((name.into(), line.into()));
        self
    }

    /// Seconds between background refreshes (default 300: tests refresh on demand).
    pub fn refresh_secs(mut self, secs: u64) -> Self {
        self.refresh_secs = secs;
        self
    }

    /// Largest accepted discovery body.
    pub fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = Some(bytes);
        self
    }

    /// Seconds a node gets to answer (default 2).
    pub fn fetch_timeout_secs(mut self, secs: u64) -> Self {
        self.fetch_timeout_secs = secs;
        self
    }

    /// Also configures a previous proof key (`keys.old_proof_key`), as during a rotation.
    pub fn with_old_key(mut self) -> Self {
        self.old_key = true;
        self
    }

    /// Adds an `[admin]` listener on a free loopback port whose bearer token is `token`
    /// (written to `keys/admin.token`).
    pub fn admin(mut self, token: &str) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// Leaves the `[admin]` section out of the settings.
    pub fn without_admin(mut self) -> Self {
        self.no_admin = true;
        self
    }

    /// Adds a TLS listener with the test certificate.
    pub fn with_tls(mut self, certs: Arc<TestCerts>) -> Self {
        self.tls = Some(certs);
        self
    }

    /// Adds an organisation `rules/{name}.toml` owning `origins`, with `extra` TOML after.
    pub fn org(mut self, name: &str, origins: &[String], extra: &str) -> Self {
        let list: Vec<String> = origins.iter().map(|o| format!("\"{o}\"")).collect();
        self.orgs.push((
            name.into(),
            format!("origins = [{}]\n{extra}", list.join(", ")),
        ));
        self
    }

    /// Adds a top-level settings line (`watch_rules = false`).
    pub fn setting(mut self, line: &str) -> Self {
        self.top.push(line.into());
        self
    }

    /// Adds a settings section verbatim (`[upstream]\nfirst_byte_timeout_secs = 1`).
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push(text.into());
        self
    }

    /// Writes the settings, rules and key, then runs the `officeswitch` binary on them
    /// (for signals and per-process measurements).
    pub async fn spawn(self) -> OfficeSwitchProcess {
        let dir = self.write().await;
        let config =
            Config::from_file(&dir.path().join("officeswitch.toml")).expect("valid settings");
        let addr = config.listen.expect("listen");
        let log = std::fs::File::create(dir.path().join("officeswitch.log")).expect("log file");
        let child = run_binary(&dir.path().join("officeswitch.toml"), log);
        wait_listening(addr).await;
        OfficeSwitchProcess {
            addr,
            public_url: config.public_url.as_str().trim_end_matches('/').to_string(),
            admin: config
                .admin
                .expect("the kit configures an admin listener")
                .listen,
            dir,
            child,
        }
    }

    /// Writes the settings, rules and key, then starts officeswitch.
    pub async fn start(self) -> OfficeSwitch {
        launch(self.write().await).await
    }

    /// Writes the settings, rules and key, and loads them without starting a server
    /// (for tests that drive one component, such as the discovery service, directly).
    pub async fn prepare(self) -> (Arc<tempfile::TempDir>, Prepared) {
        let dir = self.write().await;
        let config =
            Config::from_file(&dir.path().join("officeswitch.toml")).expect("valid settings");
        (
            dir,
            app::prepare(config, MissingKey::Report).expect("prepare"),
        )
    }

    async fn write(self) -> Arc<tempfile::TempDir> {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let port = match self.port {
            Some(port) => port,
            None => free_port().await,
        };
        let public_url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
        let mut settings = format!(
            "public_url = \"{public_url}\"\nlisten = \"127.0.0.1:{port}\"\n\
             rules_dir = \"rules\"\nstate_dir = \"state\"\n"
        );
        for line in &self.top {
            settings.push_str(line);
            settings.push('\n');
        }
        if let Some(certs) = &self.tls {
            let tls_port = free_port().await;
            settings.push_str(&format!(
                "[tls]\nlisten = \"127.0.0.1:{tls_port}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                certs.cert_path.display(),
                certs.key_path.display()
            ));
        }
        settings.push_str(
            "[keys]\nproof_key = \"keys/proof_key.pem\"\ntoken_secret = \"keys/token.secret\"\n",
        );
        if self.old_key {
            settings.push_str("old_proof_key = \"keys/old_proof_key.pem\"\n");
            proof_key::write_new_key(&dir.path().join("keys/old_proof_key.pem"), false)
                .expect("write old key");
        }
        settings.push_str(&format!(
            "[discovery]\nrefresh_secs = {}\nfetch_timeout_secs = {}\n",
            self.refresh_secs, self.fetch_timeout_secs
        ));
        if let Some(max) = self.max_body_bytes {
            settings.push_str(&format!("max_body_bytes = {max}\n"));
        }
        settings.push_str(&format!(
            "[drain]\ndelay_secs = {}\ndeadline_secs = {}\n",
            self.drain.0, self.drain.1
        ));
        settings.push_str("[log]\nlevel = \"debug\"\n");
        if !self.no_admin {
            let token = self.admin_token.as_deref().unwrap_or(KIT_ADMIN_TOKEN);
            let admin_port = free_port().await;
            settings.push_str(&format!(
                "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken_file = \"keys/admin.token\"\n"
            ));
            std::fs::create_dir_all(dir.path().join("keys")).expect("keys dir");
            std::fs::write(dir.path().join("keys/admin.token"), format!("{token}\n"))
                .expect("write admin token");
        }
        for section in &self.sections {
            settings.push_str(section);
            settings.push('\n');
        }
        for (name, kind, nodes) in &self.pools {
            let nodes: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
            settings.push_str(&format!(
                "[[pool]]\nname = \"{name}\"\nkind = \"{kind}\"\nnodes = [{}]\n",
                nodes.join(", ")
            ));
            for (_, line) in self.pool_lines.iter().filter(|(pool, _)| pool == name) {
                settings.push_str(line);
                settings.push('\n');
            }
        }
        std::fs::write(dir.path().join("officeswitch.toml"), settings).expect("write settings");
        write_default_rules(dir.path(), &self.pools);
        for (name, text) in &self.orgs {
            std::fs::write(dir.path().join(format!("rules/{name}.toml")), text)
                .expect("write org rules");
        }
        if let Some(other) = &self.keys_from {
            std::fs::create_dir_all(dir.path().join("keys")).expect("keys dir");
            for file in ["keys/proof_key.pem", "keys/token.secret"] {
                std::fs::copy(other.path().join(file), dir.path().join(file)).expect("copy key");
            }
        } else {
            proof_key::write_new_key(&dir.path().join("keys/proof_key.pem"), false)
                .expect("write key");
            // Written like the proof key, so that a restart keeps accepting minted tokens.
            token::write_new_secret(&dir.path().join("keys/token.secret"), false)
                .expect("write token secret");
        }
        dir
    }
}

/// The shipped `rules/default.toml`, restricted to the pools this test configures.
fn write_default_rules(dir: &Path, pools: &[(String, String, Vec<String>)]) {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/default.toml"))
            .expect("shipped rules");
    let names: Vec<&str> = pools.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut out = String::new();
    for line in shipped.lines() {
        if let Some((_, value)) = line.split_once(" = \"") {
            let pool = value.trim_end_matches('"');
            if !names.contains(&pool) {
                continue;
            }
        }
        if line.starts_with("prefer") {
            let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
            out.push_str(&format!("prefer = [{}]\n", list.join(", ")));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    std::fs::create_dir_all(dir.join("rules")).expect("rules dir");
    std::fs::write(dir.join("rules/default.toml"), out).expect("write rules");
}

/// Starts officeswitch on the settings in `dir`, with fresh ports when the old ones are taken.
async fn launch(dir: Arc<tempfile::TempDir>) -> OfficeSwitch {
    let config = Config::from_file(&dir.path().join("officeswitch.toml")).expect("valid settings");
    let public_url = config.public_url.as_str().trim_end_matches('/').to_string();
    let prepared = app::prepare(config, MissingKey::Report).expect("prepare");
    let plain = bind(prepared.config.listen.expect("listen")).await;
    let tls = match &prepared.config.tls {
        Some(t) => Some(bind(t.listen).await),
        None => None,
    };
    let admin = match &prepared.config.admin {
        Some(a) => Some(bind(a.listen).await),
        None => None,
    };
    let addr = plain.local_addr().expect("addr");
    let tls_addr = tls.as_ref().map(|l| l.local_addr().expect("tls addr"));
    let app = App::new(prepared).await;
    let drain = app.drain().clone();
    let task = tokio::spawn(app.run(Listeners {
        plain: Some(plain),
        tls,
        admin,
    }));
    OfficeSwitch {
        addr,
        tls_addr,
        public_url,
        dir,
        drain,
        task,
    }
}

/// Binds `addr`, retrying briefly (a restart may race the old socket's close).
async fn bind(addr: SocketAddr) -> TcpListener {
    for _ in 0..50 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot bind {addr}");
}

/// A loopback port free right now. Tests that must tell a Collabora node officeswitch's
/// public address before officeswitch starts (its `server_name`, as docs/operations.md's
/// "Setting up the editors" asks) pick the port with this and pass it to [`Builder::port`].
pub async fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Below Linux's ephemeral range (32768-60999): a port handed out for `bind(0)` may be
    // taken again by any outgoing connection (a health check, a refused connect) before
    // the test binds it, which a busy machine with thousands of sockets in TIME_WAIT does.
    // Here only another test's choice could take it, and the counter spreads those.
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (start.wrapping_add(offset.wrapping_mul(7)) % SPAN);
        if TcpListener::bind(("127.0.0.1", port)).await.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {}", FIRST + SPAN);
}
