//! The shared pin store: one Redis (or a Sentinel-managed Redis) for every officeswitch
//! instance, so instances behind a load balancer send a document's requests to one node.
//!
//! # Data
//! One string key per pinned document, `officeswitch:pin:{file id}`, holding `pool\nnode`,
//! with a TTL in milliseconds:
//! - [`get`](PinStore::get) is `GETEX key PX ttl`: reading a pin extends its life;
//! - [`create`](PinStore::create) is `SET key value NX PX ttl`, and `GET` when that did not
//!   set, in one Lua script: first writer wins, and every writer learns the winner in one
//!   round trip (`SET ... NX GET` would do it without a script, but only on Redis 7);
//! - [`replace`](PinStore::replace) is a compare-and-set Lua script: `SET` only while the
//!   value is still the old pin (or gone); otherwise the pin in force is returned;
//! - [`release_node`](PinStore::release_node) and [`counts`](PinStore::counts) `SCAN` the
//!   prefix in batches of [`SCAN_BATCH`] (they are not on the request path); release deletes
//!   a batch's keys with a compare-and-delete script, so a pin that was re-pinned elsewhere
//!   between the scan and the delete stays.
//!
//! Drain marks are one set, [`DRAINING_KEY`], of `pool\nnode` members without a TTL:
//! `SADD`/`SREM` to set and clear, `SMEMBERS` to read (a handful of members at most).
//!
//! # Failure
//! Redis being down must cost a request at most `pins.timeout_ms`: every round trip runs
//! under `tokio::time::timeout`, and errors come back as [`StoreError`] for the caller to
//! route without the store. Nothing connects at [`RedisStore::open`]; the first operation
//! does. The connection reconnects by itself after I/O errors ([`ConnectionManager`]), so a
//! Redis that comes back is used again without a restart; while Redis refuses connections,
//! operations fail at once instead of waiting out the timeout. What the manager does not
//! recover from by itself (a connection that stays silent because the Redis host vanished
//! without closing its sockets; a connection set-up that failed with a Redis error, such as
//! `LOADING` while a restarted Redis reads its data) is dropped after
//! [`FAILURES_BEFORE_RECONNECT`] consecutive failed operations, and a new one is made.
//!
//! # URLs
//! - `redis://[user[:password]@]host[:port][/db]`, and `rediss://` for TLS (rustls, the
//!   system's root certificates), as redis-rs reads them;
//! - `redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/service[/db]`: the
//!   sentinels (port 26379 by default) are asked for the current master of `service`; the
//!   user, password and db are the master's (the sentinels are reached without
//!   authentication or TLS). After a failover the old master's connection fails or answers
//!   `READONLY`; the connection is then dropped and the sentinels asked again.
//!
//! Redis Cluster is not supported (the scripts and `SCAN` assume one keyspace).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisError,
    RedisFuture, RedisResult, Script, ServerErrorKind, Value,
};
use arc_swap::ArcSwapOption;

use super::{Pin, PinStore, StoreError, StoreFuture, sorted_counts, sorted_nodes};

/// Prefix of every pin key.
pub const KEY_PREFIX: &str = "officeswitch:pin:";

/// The set of nodes marked draining (outside [`KEY_PREFIX`], so pin scans never meet it).
pub const DRAINING_KEY: &str = "officeswitch:draining";

/// Keys asked for per `SCAN` round trip (and deleted per script call) by `counts` and
/// `release_node`.
pub const SCAN_BATCH: usize = 1000;

/// Consecutive failed operations (timed out or errors) after which the connection is
/// replaced by a new one.
pub const FAILURES_BEFORE_RECONNECT: u32 = 3;

/// Creates the pin unless one exists; returns the pin in force. KEYS[1] key; ARGV[1] value,
/// ARGV[2] ttl in ms.
const CREATE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return ARGV[1]
end
return redis.call('GET', KEYS[1])
";

/// Sets the new pin while the key holds the old one or nothing; returns the pin in force.
/// KEYS[1] key; ARGV[1] old value, ARGV[2] new value, ARGV[3] ttl in ms.
const REPLACE: &str = r"
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return ARGV[2]
end
return current
";

/// Deletes each key that still holds ARGV[1]; returns how many.
const RELEASE: &str = r"
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
";

/// The Redis pin store (`store = "redis://..."`, `rediss://`, `redis+sentinel://`).
pub struct RedisStore {
    /// The URL without credentials, for error messages.
    target: String,
    timeout: Duration,
    backend: Backend,
    /// Consecutive failed operations.
    failures: AtomicU32,
    create: Script,
    replace: Script,
    release: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on `url` whose operations each take at most `timeout`. Connects nothing yet:
    /// fails only on a URL that cannot be used.
    pub fn open(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let (target, backend) = if url.starts_with("redis+sentinel://") {
            let spec = SentinelSpec::parse(url)?;
            let target = spec.target();
            let backend = SentinelBackend::new(spec, timeout)?;
            (target, Backend::Sentinel(Box::new(backend)))
        } else {
            let target = redacted(url);
            let client = Client::open(url)
                .map_err(|e| StoreError::Unavailable(format!("{target}: unusable URL: {e}")))?;
            (
                target,
                Backend::Direct(Box::new(DirectBackend::new(client, timeout))),
            )
        };
        Ok(Self {
            target,
            timeout,
            backend,
            failures: AtomicU32::new(0),
            create: Script::new(CREATE),
            replace: Script::new(REPLACE),
            release: Script::new(RELEASE),
        })
    }

    /// Runs one round trip under the timeout, and keeps the connection state: a broken or
    /// silent connection is replaced for the next call.
    async fn bounded<T>(
        &self,
        work: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => {
                self.failures.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(e)) => {
                self.backend.failed(&e);
                self.failed();
                if e.is_timeout() {
                    return Err(StoreError::Timeout);
                }
                Err(self.error(&e))
            }
            Err(_elapsed) => {
                self.failed();
                Err(StoreError::Timeout)
            }
        }
    }

    /// Counts a failed operation; replaces the connection after a run of them.
    fn failed(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= FAILURES_BEFORE_RECONNECT {
            self.failures.store(0, Ordering::Relaxed);
            self.backend.reset();
        }
    }

    fn error(&self, e: &RedisError) -> StoreError {
        match e.kind() {
            // The message of a type error may quote the reply; name the kind only.
            ErrorKind::UnexpectedReturnType | ErrorKind::Parse => {
                StoreError::Corrupt(format!("{}: reply of an unexpected type", self.target))
            }
            _ => StoreError::Unavailable(format!("{}: {e}", self.target)),
        }
    }

    async fn connection(&self) -> RedisResult<Handle> {
        self.backend.connection().await
    }

    async fn get_pin(&self, key: String, ttl: Duration) -> Result<Option<Pin>, StoreError> {
        let value: Option<Vec<u8>> = self
            .bounded(async {
                let mut c = self.connection().await?;
                ::redis::cmd("GETEX")
                    .arg(&key)
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Some(value) = value else { return Ok(None) };
        match decode(&value) {
            Ok(pin) => Ok(Some(pin)),
            Err(e) => {
                // A value that is not a pin would be kept alive by every read and block
                // every create; drop it (only if unchanged), so the next request re-pins.
                let _ = self
                    .bounded(async {
                        let mut c = self.connection().await?;
                        self.release
                            .key(&key)
                            .arg(&value)
                            .invoke_async::<u64>(&mut c)
                            .await
                    })
                    .await;
                Err(e)
            }
        }
    }

    async fn create_pin(&self, key: String, pin: &Pin, ttl: Duration) -> Result<Pin, StoreError> {
        let value = pin.encode();
        let in_force: Vec<u8> = self
            .bounded(async {
                let mut c = self.connection().await?;
                self.create
                    .key(&key)
                    .arg(&value)
                    .arg(millis(ttl))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        decode(&in_force)
    }

    async fn replace_pin(
        &self,
        key: String,
        old: &Pin,
        new: &Pin,
        ttl: Duration,
    ) -> Result<Pin, StoreError> {
        let (old, new) = (old.encode(), new.encode());
        let in_force: Vec<u8> = self
            .bounded(async {
                let mut c = self.connection().await?;
                self.replace
                    .key(&key)
                    .arg(&old)
                    .arg(&new)
                    .arg(millis(ttl))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        decode(&in_force)
    }

    /// One `SCAN` step over the pin keys: the next cursor (0: done) and a batch of keys.
    async fn scan(&self, cursor: u64) -> Result<(u64, Vec<String>), StoreError> {
        self.bounded(async {
            let mut c = self.connection().await?;
            ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{KEY_PREFIX}*"))
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query_async(&mut c)
                .await
        })
        .await
    }

    async fn release_pins(&self, pin: Pin) -> Result<u64, StoreError> {
        let value = pin.encode();
        let mut released = 0;
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan(cursor).await?;
            if !keys.is_empty() {
                released += self
                    .bounded(async {
                        let mut c = self.connection().await?;
                        self.release
                            .key(&keys)
                            .arg(&value)
                            .invoke_async::<u64>(&mut c)
                            .await
                    })
                    .await?;
            }
            if next == 0 {
                return Ok(released);
            }
            cursor = next;
        }
    }

    async fn mark_draining(&self, node: Pin, draining: bool) -> Result<(), StoreError> {
        let command = if draining { "SADD" } else { "SREM" };
        self.bounded(async {
            let mut c = self.connection().await?;
            ::redis::cmd(command)
                .arg(DRAINING_KEY)
                .arg(node.encode())
                .query_async::<u64>(&mut c)
                .await
        })
        .await
        .map(drop)
    }

    async fn draining_nodes(&self) -> Result<Vec<Pin>, StoreError> {
        let members: Vec<Vec<u8>> = self
            .bounded(async {
                let mut c = self.connection().await?;
                ::redis::cmd("SMEMBERS")
                    .arg(DRAINING_KEY)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        // A member that is no node (written by hand) is skipped, not fatal.
        Ok(sorted_nodes(members.iter().filter_map(|m| decode(m).ok())))
    }

    async fn count_pins(&self) -> Result<Vec<(Pin, u64)>, StoreError> {
        let mut counts = HashMap::<Pin, u64>::new();
        // SCAN may return a key twice; count each once.
        let mut seen = HashSet::<String>::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan(cursor).await?;
            let keys: Vec<String> = keys
                .into_iter()
                .filter(|k| seen.insert(k.clone()))
                .collect();
            if !keys.is_empty() {
                let values: Vec<Option<Vec<u8>>> = self
                    .bounded(async {
                        let mut c = self.connection().await?;
                        ::redis::cmd("MGET").arg(&keys).query_async(&mut c).await
                    })
                    .await?;
                // Keys gone since the scan are None; values that are not pins are skipped
                // here (a read of that key reports and removes them).
                for pin in values.iter().flatten().filter_map(|v| decode(v).ok()) {
                    *counts.entry(pin).or_default() += 1;
                }
            }
            if next == 0 {
                return Ok(sorted_counts(counts));
            }
            cursor = next;
        }
    }
}

impl PinStore for RedisStore {
    fn get(&self, key: &str, ttl: Duration) -> StoreFuture<'_, Option<Pin>> {
        Box::pin(self.get_pin(redis_key(key), ttl))
    }

    fn create(&self, key: &str, pin: &Pin, ttl: Duration) -> StoreFuture<'_, Pin> {
        let (key, pin) = (redis_key(key), pin.clone());
        Box::pin(async move { self.create_pin(key, &pin, ttl).await })
    }

    fn replace(&self, key: &str, old: &Pin, new: &Pin, ttl: Duration) -> StoreFuture<'_, Pin> {
        let (key, old, new) = (redis_key(key), old.clone(), new.clone());
        Box::pin(async move { self.replace_pin(key, &old, &new, ttl).await })
    }

    fn release_node(&self, pool: &str, node: &str) -> StoreFuture<'_, u64> {
        Box::pin(self.release_pins(Pin::new(pool, node)))
    }

    fn counts(&self) -> StoreFuture<'_, Vec<(Pin, u64)>> {
        Box::pin(self.count_pins())
    }

    fn set_draining(&self, node: &Pin, draining: bool) -> StoreFuture<'_, ()> {
        Box::pin(self.mark_draining(node.clone(), draining))
    }

    fn draining(&self) -> StoreFuture<'_, Vec<Pin>> {
        Box::pin(self.draining_nodes())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

fn redis_key(key: &str) -> String {
    format!("{KEY_PREFIX}{key}")
}

/// A TTL in whole milliseconds, at least 1 (`PX 0` is an error).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn decode(value: &[u8]) -> Result<Pin, StoreError> {
    match std::str::from_utf8(value) {
        Ok(s) => Pin::decode(s),
        Err(_) => Err(StoreError::Corrupt(format!(
            "a stored pin of {} bytes is not UTF-8",
            value.len()
        ))),
    }
}

/// `url` without its user and password (for messages), or a placeholder when it does not
/// parse.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "redis (unparsable URL)".to_owned(),
    }
}

/// Time one connection attempt may take (both backends): at least a second, so a TLS
/// handshake over a slow link can finish in the background even when operations give up
/// sooner; the next operation then finds the connection made.
fn connection_timeout(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(1))
}

/// How the store reaches Redis.
enum Backend {
    Direct(Box<DirectBackend>),
    Sentinel(Box<SentinelBackend>),
}

impl Backend {
    async fn connection(&self) -> RedisResult<Handle> {
        match self {
            Self::Direct(d) => d.manager().map(Handle::Manager),
            Self::Sentinel(s) => s.connection().await.map(Handle::Plain),
        }
    }

    /// A round trip failed with `e`: drop a connection that cannot recover by itself.
    fn failed(&self, e: &RedisError) {
        match self {
            // The connection manager reconnects on its own after I/O errors.
            Self::Direct(_) => {}
            Self::Sentinel(s) => {
                let read_only = matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly))
                    || e.to_string().contains("READONLY");
                if read_only || e.is_io_error() || e.is_unrecoverable_error() {
                    s.reset();
                }
            }
        }
    }

    /// Drop the connection; the next operation makes a new one.
    fn reset(&self) {
        match self {
            Self::Direct(d) => d.manager.store(None),
            Self::Sentinel(s) => s.reset(),
        }
    }
}

/// One Redis server, through a reconnecting [`ConnectionManager`] made on first use (making
/// it spawns a task, which needs the runtime that [`RedisStore::open`] must not require).
struct DirectBackend {
    client: Client,
    timeout: Duration,
    manager: ArcSwapOption<ConnectionManager>,
}

impl DirectBackend {
    fn new(client: Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            manager: ArcSwapOption::empty(),
        }
    }

    fn manager(&self) -> RedisResult<ConnectionManager> {
        if let Some(m) = self.manager.load_full() {
            return Ok((*m).clone());
        }
        // No retries inside one connection attempt: while Redis refuses connections an
        // operation fails at once (rather than waiting out the timeout behind a backoff),
        // and the next operation makes the next attempt. Operations that arrive while an
        // attempt is under way share it, so there is at most one attempt at a time.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connection_timeout(self.timeout)))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(0);
        let fresh = Arc::new(ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            config,
        )?);
        // Two callers may race here; the first one's manager is kept.
        let prev = self
            .manager
            .compare_and_swap(&None::<Arc<ConnectionManager>>, Some(fresh.clone()));
        Ok(match &*prev {
            Some(m) => (**m).clone(),
            None => (*fresh).clone(),
        })
    }
}

/// Where the sentinels are and what to ask them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SentinelSpec {
    sentinels: Vec<(String, u16)>,
    service: String,
    username: Option<String>,
    password: Option<String>,
    db: Option<i64>,
}

impl SentinelSpec {
    /// Reads `redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/service[/db]`.
    fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |why: &str| {
            StoreError::Unavailable(format!(
                "{}: unusable Sentinel URL: {why} (redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/service[/db])",
                redact_sentinel(url)
            ))
        };
        let rest = url
            .strip_prefix("redis+sentinel://")
            .ok_or_else(|| bad("not redis+sentinel://"))?;
        if rest.contains(['?', '#']) {
            return Err(bad("query options are not supported"));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| bad("credentials are not UTF-8"))
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((user, pass)) => (user, Some(pass)),
                    None => (u, None),
                };
                let user = (!user.is_empty()).then(|| decode(user)).transpose()?;
                let pass = pass.map(decode).transpose()?;
                (user, pass)
            }
        };
        let mut sentinels = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = if let Some(v6) = host.strip_prefix('[') {
                let (name, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
                (name, after.strip_prefix(':'))
            } else {
                match host.split_once(':') {
                    Some((name, port)) => (name, Some(port)),
                    None => (host, None),
                }
            };
            if name.is_empty() {
                return Err(bad("a sentinel host is empty"));
            }
            let port = match port {
                None => 26379,
                Some(p) => p
                    .parse()
                    .map_err(|_| bad("a sentinel port is not a number"))?,
            };
            sentinels.push((name.to_owned(), port));
        }
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let service = parts
            .next()
            .ok_or_else(|| bad("the service (master) name is missing"))?
            .to_owned();
        let db = parts
            .next()
            .map(|d| d.parse::<i64>().map_err(|_| bad("the db is not a number")))
            .transpose()?;
        if parts.next().is_some() {
            return Err(bad("the path has more than service and db"));
        }
        Ok(Self {
            sentinels,
            service,
            username,
            password,
            db,
        })
    }

    /// The URL without credentials.
    fn target(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(h, p)| {
                if h.contains(':') {
                    format!("[{h}]:{p}")
                } else {
                    format!("{h}:{p}")
                }
            })
            .collect();
        let db = self.db.map(|d| format!("/{d}")).unwrap_or_default();
        format!("redis+sentinel://{}/{}{db}", hosts.join(","), self.service)
    }
}

/// A Sentinel URL with anything before `@` hidden.
fn redact_sentinel(url: &str) -> String {
    let rest = url.strip_prefix("redis+sentinel://").unwrap_or(url);
    match rest
        .split_once('/')
        .unwrap_or((rest, ""))
        .0
        .rsplit_once('@')
    {
        Some((_, hosts)) => format!("redis+sentinel://***@{hosts}/..."),
        None => url.to_owned(),
    }
}

/// A Sentinel-managed master: the sentinels are asked for the master on first use and after
/// the connection broke or the server said it is no longer the master.
struct SentinelBackend {
    client: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<MultiplexedConnection>>,
    config: AsyncConnectionConfig,
}

impl SentinelBackend {
    fn new(spec: SentinelSpec, timeout: Duration) -> Result<Self, StoreError> {
        let target = spec.target();
        let unusable = |e: RedisError| StoreError::Unavailable(format!("{target}: {e}"));
        let addrs = spec
            .sentinels
            .iter()
            .map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p));
        let mut builder =
            SentinelClientBuilder::new(addrs, &spec.service, SentinelServerType::Master)
                .map_err(unusable)?;
        if let Some(user) = &spec.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(pass) = &spec.password {
            builder = builder.set_client_to_redis_password(pass);
        }
        if let Some(db) = spec.db {
            builder = builder.set_client_to_redis_db(db);
        }
        let client = builder.build().map_err(unusable)?;
        Ok(Self {
            client: tokio::sync::Mutex::new(client),
            current: Mutex::new(None),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connection_timeout(timeout)))
                .set_response_timeout(Some(timeout)),
        })
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn reset(&self) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        // One caller asks the sentinels; the others wait for its connection.
        let mut client = self.client.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let c = client
            .get_async_connection_with_config(&self.config)
            .await?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(c.clone());
        Ok(c)
    }
}

/// A connection of either backend, for redis-rs commands and scripts.
enum Handle {
    Manager(ConnectionManager),
    Plain(MultiplexedConnection),
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Manager(c) => c.req_packed_command(cmd),
            Self::Plain(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Plain(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Manager(c) => c.get_db(),
            Self::Plain(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let spec = SentinelSpec::parse("redis+sentinel://user:p%40ss@s1:26380,[::1],s3/mymaster/2")
            .unwrap();
        assert_eq!(
            spec,
            SentinelSpec {
                sentinels: vec![
                    ("s1".into(), 26380),
                    ("::1".into(), 26379),
                    ("s3".into(), 26379)
                ],
                service: "mymaster".into(),
                username: Some("user".into()),
                password: Some("p@ss".into()),
                db: Some(2),
            }
        );
        assert_eq!(
            spec.target(),
            "redis+sentinel://s1:26380,[::1]:26379,s3:26379/mymaster/2"
        );
        let spec = SentinelSpec::parse("redis+sentinel://:secret@s1/mymaster").unwrap();
        assert_eq!(
            (spec.username, spec.password),
            (None, Some("secret".into()))
        );
        for bad in [
            "redis+sentinel://s1/",
            "redis+sentinel://s1:x/m",
            "redis+sentinel://,s1/m",
            "redis+sentinel://s1/m/x",
            "redis+sentinel://s1/m/0/extra",
            "redis+sentinel://s1/m?password=x",
        ] {
            assert!(SentinelSpec::parse(bad).is_err(), "{bad}");
        }
        let err = SentinelSpec::parse("redis+sentinel://u:secret@s1:x/m").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn direct_urls_are_named_without_credentials() {
        let store = RedisStore::open(
            "redis://user:secret@127.0.0.1:1/3",
            Duration::from_millis(50),
        )
        .unwrap();
        assert!(!format!("{store:?}").contains("secret"));
        assert_eq!(store.target, "redis://127.0.0.1:1/3");
        assert!(
            RedisStore::open("redis://127.0.0.1:notaport/", Duration::from_millis(50)).is_err()
        );
    }

    #[tokio::test]
    async fn no_server_is_an_error_within_the_timeout() {
        // Port 1 on loopback: nothing listens, the connection is refused.
        let store = RedisStore::open("redis://127.0.0.1:1/", Duration::from_millis(200)).unwrap();
        let started = std::time::Instant::now();
        for _ in 0..3 {
            let err = store.get("k", Duration::from_secs(1)).await.unwrap_err();
            assert!(
                matches!(err, StoreError::Unavailable(_) | StoreError::Timeout),
                "{err}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
