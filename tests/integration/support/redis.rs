//! A real `redis-server` on loopback, for the pin store and for several officeswitch
//! instances sharing it.
//!
//! ```ignore
//! let redis = RedisServer::start().await;
//! let store = RedisStore::open(&redis.url(), Duration::from_millis(250))?;
//! redis.stop().await;     // killed: connections reset, new ones refused
//! redis.restart().await;  // same port, empty (no persistence)
//! ```
//! Why the real server: what the store must survive (a refused connection, a connection
//! reset in the middle of a command, a server that comes back empty) only happens with a
//! real one. Each server is its own process with its own port and working directory,
//! persistence off (`--save '' --appendonly no`), killed when dropped. `.ci/run` installs
//! `redis-server` (Debian's package).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// The binary, found on `PATH`.
const BINARY: &str = "redis-server";

/// How long a server may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or stopped) `redis-server`.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    /// The process while it runs; behind a lock so a shared `&RedisServer` can stop and
    /// restart it.
    child: Mutex<Option<Child>>,
    /// Extra command-line arguments, kept for restarts.
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a server on 127.0.0.1 and a free port, and waits until it answers PING.
    /// Panics, naming how to install it, when `redis-server` is not installed.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Same, with extra `redis-server` arguments (`--replicaof`, ...).
    pub async fn start_with(args: &[&str]) -> Self {
        let port = free_port().await;
        let server = Self {
            port,
            dir: tempfile::tempdir().expect("temp dir for redis-server"),
            child: Mutex::new(None),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.spawn().await;
        server
    }

    /// Starts `redis-server --sentinel` on a free port, monitoring `master` as `service`
    /// with a quorum of 1 and short failure timings, and waits until it answers PING.
    pub async fn start_sentinel(service: &str, master: &RedisServer) -> Self {
        let port = free_port().await;
        let dir = tempfile::tempdir().expect("temp dir for redis-sentinel");
        // Sentinel rewrites its configuration file, so it gets one of its own.
        let conf = dir.path().join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor {service} 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds {service} 1000\n\
             sentinel failover-timeout {service} 5000\n\
             sentinel parallel-syncs {service} 1\n",
            dir.path().display(),
            master.port
        );
        std::fs::write(&conf, text).expect("write sentinel.conf");
        let server = Self {
            port,
            dir,
            child: Mutex::new(None),
            args: vec![conf.display().to_string(), "--sentinel".into()],
        };
        server.spawn().await;
        server
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server (SIGKILL: no goodbye to clients, as a crash) and waits for it to exit.
    pub async fn stop(&self) {
        let child = self.child().take();
        if let Some(mut child) = child {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port (empty: nothing is persisted), and waits
    /// until it answers PING.
    pub async fn restart(&self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Sends the server process a signal by name (`STOP` hangs it with its connections open,
    /// `CONT` resumes it).
    pub fn signal(&self, name: &str) {
        let pid = self
            .child()
            .as_ref()
            .and_then(Child::id)
            .expect("redis-server is running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid}: {status}");
    }

    /// Sends one command (inline protocol) and returns the raw reply, for test assertions
    /// (`INFO replication`, `SENTINEL ...`).
    pub async fn command(&self, line: &str) -> String {
        command(self.addr(), line)
            .await
            .unwrap_or_else(|e| panic!("redis {}: {line}: {e}", self.port))
    }

    async fn spawn(&self) {
        let port = self.port.to_string();
        let mut cmd = Command::new(BINARY);
        if self.args.iter().any(|a| a == "--sentinel") {
            cmd.args(&self.args);
        } else {
            cmd.args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{BINARY}` ({e}): the Redis tests need the real server; \
                     install it with `apt-get install redis-server` (`.ci/run` does)"
                )
            });
        *self.child() = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(reply) = command(self.addr(), "PING").await
                && reply.starts_with("+PONG")
            {
                return;
            }
            let exited = self.child().as_mut().map(Child::try_wait);
            if let Some(Ok(Some(status))) = exited {
                panic!("{BINARY} on port {port} exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{BINARY} on port {port} did not answer PING within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The server's working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// One inline command on a fresh connection; the reply as read within a short wait.
async fn command(addr: SocketAddr, line: &str) -> std::io::Result<String> {
    let work = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(format!("{line}\r\n").as_bytes()).await?;
        let mut buf = vec![0; 64 * 1024];
        let n = stream.read(&mut buf).await?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// A port nothing listens on right now (bound then released; redis-server binds it next).
async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    l.local_addr().expect("local addr").port()
}
