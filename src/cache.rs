//! Versioned static assets served from memory.
//!
//! An editor load is dozens of small files below a path that names the editor's build:
//! Collabora's `/browser/<hash>/...`, ONLYOFFICE's `/<ver>-<hash>/web-apps|sdkjs|fonts/...`.
//! Such a path names immutable content, so officeswitch keeps what a node answered and
//! serves repeats itself, bounded in bytes. A node's new version is a new path, so old
//! entries are never served for it; they age out under the byte bound.
//!
//! What is kept is deliberately narrow ([`AssetCache::lookup`], [`AssetCache::fill`]): a
//! `GET` of a static asset below a version segment, keyed by pool, path and query, and
//! `Accept-Encoding`; never a request that names a document (`WOPISrc`, `shardkey`) or
//! carries a token, never one with `Range`; stored only from a request without cookies
//! or credentials and from a `200` without `Set-Cookie`, without `private`, `no-store`
//! or `no-cache`, varying on nothing but `Accept-Encoding`, and no larger than
//! `max_entry_bytes`. A body is kept while it streams to the first client (never
//! buffered before it is sent), and stored only once it ended whole.

use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Equivalent, Lifecycle, OptionsBuilder, Weighter};

use crate::config::CacheConfig;
use crate::proxy::answer::{BoxError, ProxyBody};
use crate::proxy::classify::{EditorRequest, Traffic, query_param};

/// Longest `Accept-Encoding` that names a variant; a longer one is not cached (browsers
/// send a few short fixed values, so this bounds the key without losing real hits).
const MAX_ENCODING_BYTES: usize = 128;

/// Shards of the cache: few, as the machines officeswitch runs on have few cores, so an
/// entry may use a large share of one shard.
const SHARDS: usize = 4;

/// Bytes an entry weighs besides its body and headers (key, bookkeeping).
const ENTRY_OVERHEAD: u64 = 256;

/// Response headers a stored answer keeps: what describes the content. Connection
/// headers, `Date` and anything a node sets per response are left out.
const KEPT_HEADERS: [header::HeaderName; 10] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
    header::EXPIRES,
    header::VARY,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::X_CONTENT_TYPE_OPTIONS,
];

/// The cache of versioned static assets (off when `[cache] max_bytes = 0`).
pub struct AssetCache {
    store: Option<Store>,
    max_entry_bytes: usize,
    counters: Arc<Counters>,
}

/// Why an answer was not stored (a metric label each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request carried cookies or credentials.
    RequestCredentials,
    /// Not a whole `200`.
    Status,
    /// The answer sets a cookie.
    SetCookie,
    /// The answer varies on more than `Accept-Encoding`.
    Vary,
    /// Larger than `max_entry_bytes`.
    TooLarge,
    /// `Cache-Control: no-store`.
    NoStore,
    /// `Cache-Control: private`.
    Private,
    /// `Cache-Control: no-cache` or a zero age: only with revalidation, which the cache
    /// does not do.
    NoCache,
    /// A `Cache-Control` the cache cannot read.
    CacheControl,
    /// Trailers, a broken body or a client that went away before the end.
    Incomplete,
}

impl Refusal {
    /// Every reason, in metric order.
    pub const ALL: [Refusal; 10] = [
        Refusal::RequestCredentials,
        Refusal::Status,
        Refusal::SetCookie,
        Refusal::Vary,
        Refusal::TooLarge,
        Refusal::NoStore,
        Refusal::Private,
        Refusal::NoCache,
        Refusal::CacheControl,
        Refusal::Incomplete,
    ];

    /// Its metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::RequestCredentials => "request_credentials",
            Refusal::Status => "status",
            Refusal::SetCookie => "set_cookie",
            Refusal::Vary => "vary",
            Refusal::TooLarge => "too_large",
            Refusal::NoStore => "no_store",
            Refusal::Private => "private",
            Refusal::NoCache => "no_cache",
            Refusal::CacheControl => "cache_control",
            Refusal::Incomplete => "incomplete",
        }
    }
}

/// What the cache did, counted for `/metrics` (this instance's own figures).
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stored: AtomicU64,
    evictions: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn refused(&self, why: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why) {
            Counters::add(&self.refused[i]);
        }
    }
}

/// The cache's figures at one moment, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStats {
    /// Requests answered from memory.
    pub hits: u64,
    /// Cacheable requests that were not stored (or no longer fresh).
    pub misses: u64,
    /// Answers stored.
    pub stored: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Answers not stored, by reason.
    pub refused: Vec<(Refusal, u64)>,
    /// Bytes held now (bodies, headers, keys).
    pub bytes: u64,
    /// Entries held now.
    pub entries: u64,
    /// `max_bytes`.
    pub capacity: u64,
}

/// The concurrent store under the cache.
type Store = Cache<Key, Arc<Asset>, ByBytes, DefaultHashBuilder, CountEvictions>;

/// What a stored asset is found by.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    pool: usize,
    /// Path and query as the client sent them: the version is in the path.
    target: Box<str>,
    /// The request's `Accept-Encoding`, verbatim (empty when absent).
    encoding: Box<str>,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Probe::hash_parts(self.pool, &self.target, &self.encoding, state);
    }
}

/// A lookup key borrowing the request's strings: a hit allocates no key.
#[derive(Debug, Clone, Copy)]
struct Probe<'a> {
    pool: usize,
    target: &'a str,
    encoding: &'a str,
}

impl Probe<'_> {
    /// The one hash of a key, shared by [`Key`] and [`Probe`] so that both find the same entry.
    fn hash_parts<H: Hasher>(pool: usize, target: &str, encoding: &str, state: &mut H) {
        pool.hash(state);
        target.hash(state);
        encoding.hash(state);
    }

    fn owned(self) -> Key {
        Key {
            pool: self.pool,
            target: self.target.into(),
            encoding: self.encoding.into(),
        }
    }
}

impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Probe::hash_parts(self.pool, self.target, self.encoding, state);
    }
}

impl Equivalent<Key> for Probe<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.pool == key.pool && *self.target == *key.target && *self.encoding == *key.encoding
    }
}

/// A stored answer: the node's `200` as it was sent on.
#[derive(Debug)]
struct Asset {
    headers: HeaderMap,
    body: Bytes,
    stored: Instant,
    /// End of freshness from the node's `max-age`/`s-maxage`; none: kept until evicted
    /// (a versioned path does not change).
    fresh_until: Option<Instant>,
}

impl Asset {
    fn fresh(&self, now: Instant) -> bool {
        self.fresh_until.is_none_or(|until| now < until)
    }

    fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        self.body.len() as u64 + headers as u64 + ENTRY_OVERHEAD
    }
}

/// Weighs entries by their bytes, so `max_bytes` bounds memory, not entries.
#[derive(Debug, Clone)]
struct ByBytes;

impl Weighter<Key, Arc<Asset>> for ByBytes {
    fn weight(&self, key: &Key, asset: &Arc<Asset>) -> u64 {
        asset.weight() + key.target.len() as u64 + key.encoding.len() as u64
    }
}

/// Counts evictions.
#[derive(Clone)]
struct CountEvictions(Arc<Counters>);

impl Lifecycle<Key, Arc<Asset>> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: Key, _asset: Arc<Asset>) {
        Counters::add(&self.0.evictions);
    }
}

/// A request the cache may answer, as [`cacheable`] found it.
#[derive(Debug)]
struct Cacheable<'a> {
    probe: Probe<'a>,
    /// Whether what the node answers this request may be stored (no cookies, no
    /// credentials: a node could personalise its answer to those).
    storable: bool,
}

/// A missed request, to fill with the node's answer: its key, owned (the request moves on).
#[derive(Debug)]
pub struct Miss {
    key: Key,
    storable: bool,
}

/// What the cache did with a request.
pub enum Lookup {
    /// Not an asset the cache keeps: forward it as it is.
    Bypass,
    /// Served from memory.
    Hit(Response<ProxyBody>),
    /// Not stored (or no longer fresh): forward it, then [`AssetCache::fill`].
    Miss(Miss),
}

impl AssetCache {
    /// A cache as `[cache]` sizes it.
    pub fn new(config: &CacheConfig) -> AssetCache {
        let counters = Arc::new(Counters::default());
        let store = (config.max_bytes > 0).then(|| {
            // Assets average some tens of KiB; the estimate only sizes the first table.
            let estimated = usize::try_from(config.max_bytes / (32 * 1024)).unwrap_or(1024);
            let options = OptionsBuilder::new()
                .estimated_items_capacity(estimated.clamp(64, 1 << 20))
                .weight_capacity(config.max_bytes)
                .shards(SHARDS)
                .build();
            options.map(|options| {
                Cache::with_options(
                    options,
                    ByBytes,
                    DefaultHashBuilder::default(),
                    CountEvictions(Arc::clone(&counters)),
                )
            })
        });
        AssetCache {
            store: store.and_then(Result::ok),
            max_entry_bytes: config.max_entry_bytes,
            counters,
        }
    }

    /// The figures as of now.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CacheStats {
            hits: read(&c.hits),
            misses: read(&c.misses),
            stored: read(&c.stored),
            evictions: read(&c.evictions),
            refused: Refusal::ALL
                .iter()
                .zip(&c.refused)
                .map(|(why, n)| (*why, read(n)))
                .collect(),
            bytes: self.store.as_ref().map_or(0, Store::weight),
            entries: self.store.as_ref().map_or(0, |s| s.len() as u64),
            capacity: self.store.as_ref().map_or(0, Store::capacity),
        }
    }

    /// Looks `request` (editor traffic routed to `pool`) up: an asset the cache does not
    /// keep is a bypass; a stored one a hit (`304` when the client's validator matches).
    pub fn lookup<B>(
        &self,
        editor: &EditorRequest<'_>,
        request: &Request<B>,
        pool: usize,
    ) -> Lookup {
        let Some(store) = &self.store else {
            return Lookup::Bypass;
        };
        let Some(cacheable) = cacheable(editor, request, pool) else {
            return Lookup::Bypass;
        };
        let now = Instant::now();
        match store.get(&cacheable.probe) {
            Some(asset) if asset.fresh(now) => {
                Counters::add(&self.counters.hits);
                Lookup::Hit(answer(&asset, request.headers(), now))
            }
            stale => {
                if stale.is_some() {
                    store.remove(&cacheable.probe);
                }
                Counters::add(&self.counters.misses);
                Lookup::Miss(Miss {
                    key: cacheable.probe.owned(),
                    storable: cacheable.storable,
                })
            }
        }
    }

    /// The node's answer to a missed request, sent on as it streams and stored once it
    /// ended whole, when it may be ([`storable`]).
    pub fn fill(
        self: &Arc<Self>,
        miss: Miss,
        response: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        if !miss.storable {
            self.counters.refused(Refusal::RequestCredentials);
            return response;
        }
        let now = Instant::now();
        let fresh_for = match storable(&response, self.max_entry_bytes) {
            Ok(fresh_for) => fresh_for,
            Err(reason) => {
                self.counters.refused(reason);
                return response;
            }
        };
        let (parts, body) = response.into_parts();
        let headers = kept_headers(&parts.headers);
        let filling = Filling {
            inner: body,
            kept: BytesMut::new(),
            pending: Some(Pending {
                cache: Arc::clone(self),
                key: miss.key,
                headers,
                fresh_until: fresh_for.map(|age| now + age),
            }),
        };
        Response::from_parts(parts, filling.boxed())
    }

    fn store(&self, pending: Pending, body: Bytes) {
        let Some(store) = &self.store else {
            return;
        };
        let asset = Asset {
            headers: pending.headers,
            body,
            stored: Instant::now(),
            fresh_until: pending.fresh_until,
        };
        store.insert(pending.key, Arc::new(asset));
        Counters::add(&self.counters.stored);
    }
}

/// The request's key when the cache may answer it: a `GET` of a static asset below a
/// version segment that names no document, carries no token and asks for no range.
fn cacheable<'a, B>(
    editor: &EditorRequest<'_>,
    request: &'a Request<B>,
    pool: usize,
) -> Option<Cacheable<'a>> {
    if request.method() != Method::GET
        || editor.kind != Traffic::Asset
        || editor.version.is_none()
        || editor.key.is_some()
    {
        return None;
    }
    let uri = request.uri();
    let query = uri.query().unwrap_or("");
    if ["access_token", "WOPISrc", "wopisrc", "shardkey"]
        .iter()
        .any(|name| query_param(query, name).is_some())
    {
        return None;
    }
    let headers = request.headers();
    if headers.contains_key(header::RANGE) || headers.contains_key(header::IF_RANGE) {
        return None;
    }
    let encoding = match headers.get(header::ACCEPT_ENCODING) {
        None => "",
        Some(value) => match value.to_str() {
            Ok(text) if text.len() <= MAX_ENCODING_BYTES => text,
            _ => return None,
        },
    };
    let target = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let storable = !headers.contains_key(header::COOKIE)
        && !headers.contains_key(header::AUTHORIZATION)
        && !headers.contains_key(header::PROXY_AUTHORIZATION);
    Some(Cacheable {
        probe: Probe {
            pool,
            target,
            encoding,
        },
        storable,
    })
}

/// How long the node lets a shared cache keep `response`, or why it may not be kept.
fn storable(
    response: &Response<ProxyBody>,
    max_entry_bytes: usize,
) -> Result<Option<Duration>, Refusal> {
    if response.status() != StatusCode::OK {
        return Err(Refusal::Status);
    }
    let headers = response.headers();
    if headers.contains_key(header::SET_COOKIE) {
        return Err(Refusal::SetCookie);
    }
    if headers.contains_key(header::CONTENT_RANGE) {
        return Err(Refusal::Status);
    }
    let vary_ok = headers.get_all(header::VARY).iter().all(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .all(|name| name.is_empty() || name.eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !vary_ok {
        return Err(Refusal::Vary);
    }
    let length = response.body().size_hint().exact();
    if length.is_some_and(|n| n > max_entry_bytes as u64) {
        return Err(Refusal::TooLarge);
    }
    freshness(headers)
}

/// The node's `Cache-Control` for a shared cache: refused when `private`, `no-store` or
/// `no-cache` (officeswitch does not revalidate), else `s-maxage` or `max-age` if given.
fn freshness(headers: &HeaderMap) -> Result<Option<Duration>, Refusal> {
    let mut max_age = None;
    let mut shared_max_age = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            return Err(Refusal::CacheControl);
        };
        for directive in value.split(',').map(str::trim) {
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") {
                return Err(Refusal::NoStore);
            }
            if name.eq_ignore_ascii_case("private") {
                return Err(Refusal::Private);
            }
            if name.eq_ignore_ascii_case("no-cache") {
                return Err(Refusal::NoCache);
            }
            let seconds = || argument.and_then(|a| a.parse::<u64>().ok());
            if name.eq_ignore_ascii_case("max-age") {
                max_age = Some(seconds().ok_or(Refusal::CacheControl)?);
            } else if name.eq_ignore_ascii_case("s-maxage") {
                shared_max_age = Some(seconds().ok_or(Refusal::CacheControl)?);
            }
        }
    }
    match shared_max_age.or(max_age) {
        Some(0) => Err(Refusal::NoCache),
        Some(seconds) => Ok(Some(Duration::from_secs(seconds))),
        None => Ok(None),
    }
}

/// The headers a stored answer keeps ([`KEPT_HEADERS`]).
fn kept_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::with_capacity(KEPT_HEADERS.len());
    for name in &KEPT_HEADERS {
        for value in headers.get_all(name) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// A stored asset as an answer to a request with `headers`: `304` when its validator
/// matches the client's, else the whole `200`; `Age` says how long it has been kept.
fn answer(asset: &Asset, headers: &HeaderMap, now: Instant) -> Response<ProxyBody> {
    let age = HeaderValue::from(now.duration_since(asset.stored).as_secs());
    let not_modified = validator_matches(asset, headers);
    let body = if not_modified {
        Bytes::new()
    } else {
        asset.body.clone()
    };
    let mut response = Response::new(
        http_body_util::Full::new(body)
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.headers_mut() = asset.headers.clone();
    response.headers_mut().insert(header::AGE, age);
    if not_modified {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response.headers_mut().remove(header::CONTENT_TYPE);
    }
    response
}

/// Whether the client already has the stored version: its `If-None-Match` names the
/// stored `ETag` (weakly) or, without one, its `If-Modified-Since` is the stored
/// `Last-Modified`.
fn validator_matches(asset: &Asset, headers: &HeaderMap) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    if let Some(wanted) = headers.get(header::IF_NONE_MATCH) {
        let (Ok(wanted), Some(etag)) = (
            wanted.to_str(),
            asset
                .headers
                .get(header::ETAG)
                .and_then(|e| e.to_str().ok()),
        ) else {
            return false;
        };
        let etag = opaque(etag);
        return wanted
            .split(',')
            .any(|tag| tag.trim() == "*" || opaque(tag) == etag);
    }
    match (
        headers.get(header::IF_MODIFIED_SINCE),
        asset.headers.get(header::LAST_MODIFIED),
    ) {
        (Some(since), Some(modified)) => since == modified,
        _ => false,
    }
}

/// What a filling body stores once it ends whole.
struct Pending {
    cache: Arc<AssetCache>,
    key: Key,
    headers: HeaderMap,
    fresh_until: Option<Instant>,
}

/// A node's body on its way to the first client, kept as it passes (up to
/// `max_entry_bytes`; past that, or on an error or trailers, it is let go).
struct Filling {
    inner: ProxyBody,
    kept: BytesMut,
    /// `None` once stored or given up.
    pending: Option<Pending>,
}

impl Filling {
    fn give_up(&mut self, why: Refusal) {
        if let Some(pending) = self.pending.take() {
            pending.cache.counters.refused(why);
        }
        self.kept = BytesMut::new();
    }

    fn finish(&mut self) {
        if let Some(pending) = self.pending.take() {
            let body = std::mem::take(&mut self.kept).freeze();
            pending.cache.clone().store(pending, body);
        }
    }
}

impl Body for Filling {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                Some(data) if self.pending.is_some() => {
                    let max = self.pending.as_ref().map_or(0, |p| p.cache.max_entry_bytes);
                    if self.kept.len() + data.len() > max {
                        self.give_up(Refusal::TooLarge);
                    } else {
                        self.kept.extend_from_slice(data);
                        if self.inner.is_end_stream() {
                            self.finish();
                        }
                    }
                }
                Some(_) => {}
                None => self.give_up(Refusal::Incomplete),
            },
            Poll::Ready(Some(Err(_))) => self.give_up(Refusal::Incomplete),
            Poll::Ready(None) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Filling {
    fn drop(&mut self) {
        // An empty body is never polled: it ended whole all the same.
        if self.inner.is_end_stream() {
            self.finish();
        } else {
            self.give_up(Refusal::Incomplete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn freshness_follows_the_shared_cache_directives() {
        let fresh = |pairs| freshness(&headers(pairs));
        assert_eq!(fresh(&[]), Ok(None));
        assert_eq!(
            fresh(&[("cache-control", "max-age=11059200")]),
            Ok(Some(Duration::from_secs(11_059_200)))
        );
        assert_eq!(
            fresh(&[("cache-control", "public, max-age=60, s-maxage=10")]),
            Ok(Some(Duration::from_secs(10)))
        );
        assert_eq!(
            fresh(&[("cache-control", "Private")]),
            Err(Refusal::Private)
        );
        assert_eq!(
            fresh(&[("cache-control", "public"), ("cache-control", "no-store")]),
            Err(Refusal::NoStore)
        );
        assert_eq!(
            fresh(&[("cache-control", "no-cache")]),
            Err(Refusal::NoCache)
        );
        assert_eq!(
            fresh(&[("cache-control", "max-age=0")]),
            Err(Refusal::NoCache)
        );
        assert_eq!(
            fresh(&[("cache-control", "max-age=soon")]),
            Err(Refusal::CacheControl)
        );
    }

    #[test]
    fn a_validator_matches_the_stored_etag_or_date() {
        let asset = Asset {
            headers: headers(&[
                ("etag", "\"61cf2b4\""),
                ("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
            ]),
            body: Bytes::from_static(b"x"),
            stored: Instant::now(),
            fresh_until: None,
        };
        let matches = |pairs| validator_matches(&asset, &headers(pairs));
        assert!(matches(&[("if-none-match", "\"61cf2b4\"")]));
        assert!(matches(&[("if-none-match", "W/\"61cf2b4\", \"other\"")]));
        assert!(matches(&[("if-none-match", "*")]));
        assert!(!matches(&[("if-none-match", "\"0aa1bb2\"")]));
        // If-None-Match wins over the date, as RFC 9110 has it.
        assert!(!matches(&[
            ("if-none-match", "\"0aa1bb2\""),
            ("if-modified-since", "Tue, 01 Dec 2026 10:00:00 GMT"),
        ]));
        assert!(matches(&[(
            "if-modified-since",
            "Tue, 01 Dec 2026 10:00:00 GMT"
        )]));
        assert!(!matches(&[]));
    }

    #[test]
    fn a_probe_finds_the_key_it_was_made_from() {
        let cache = AssetCache::new(&CacheConfig {
            max_bytes: 1 << 20,
            max_entry_bytes: 1 << 17,
        });
        let store = cache.store.as_ref().expect("on");
        let probe = Probe {
            pool: 1,
            target: "/browser/61cf2b4/a.js",
            encoding: "gzip",
        };
        let asset = Arc::new(Asset {
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"a"),
            stored: Instant::now(),
            fresh_until: None,
        });
        store.insert(probe.owned(), asset);
        assert!(store.get(&probe).is_some());
        assert!(store.get(&Probe { pool: 0, ..probe }).is_none());
        assert!(
            store
                .get(&Probe {
                    encoding: "",
                    ..probe
                })
                .is_none()
        );
        let off = AssetCache::new(&CacheConfig {
            max_bytes: 0,
            max_entry_bytes: 1,
        });
        assert!(off.store.is_none());
        assert_eq!(off.stats().capacity, 0);
    }
}
