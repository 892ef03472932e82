//! Caches for derived results — LLM keywords (1 h), embeddings (24 h), RAG query results (1 h) —
//! behind one [`Cache`] type with two back-ends: an in-process TTL + LRU map, and Redis.
//!
//! A cache is an optimisation, never a dependency: the Redis back-end swallows every Redis error,
//! degrades to "no cache" (`get` → `None`, `set` → no-op) while Redis is unreachable, and comes
//! back by itself. Callers sit on the live transcript path, so no call waits on Redis for longer
//! than [`OP_TIMEOUT`], and while an outage is known calls do not touch the network at all.
//!
//! Entries live in namespaces (`"keywords"`, `"embeddings"`, `"rag"`, …) so a whole kind of result
//! can be invalidated at once ([`Cache::clear_namespace`]), and hits and misses are counted per
//! namespace for [`Cache::status`], whose JSON shape matches the sibling back-end's
//! `GET /cache/status`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, ServerErrorKind};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

/// Every Redis key this module writes starts with this, followed by `:{namespace}:{key}`.
const KEY_PREFIX: &str = "sori:";

/// Longest a single Redis round trip may take before the call gives up and the cache is
/// treated as down. Loopback and LAN replies take well under a millisecond, so anything near
/// this means Redis is gone, stopped or overloaded.
pub const OP_TIMEOUT: Duration = Duration::from_millis(250);

/// First and largest pause between health probes while Redis is down (doubling in between).
const PROBE_MIN_DELAY: Duration = Duration::from_millis(250);
const PROBE_MAX_DELAY: Duration = Duration::from_secs(1);

/// After this many failed probes in a row the connection manager is replaced by a fresh one.
/// The manager only reconnects by itself after I/O errors; a connection attempt that failed
/// otherwise (e.g. `LOADING` while a restarted Redis reads its dump, or a blackholed host
/// whose requests only time out) would leave it stuck on a dead connection.
const REBUILD_AFTER_FAILED_PROBES: u32 = 5;

/// `SCAN … COUNT` hint: keys examined per round trip.
const SCAN_COUNT: usize = 1000;

/// Bounds on the work [`Cache::status`] does to count keys under the prefix in Redis; past
/// either the count is a lower bound.
const SIZE_SCAN_MAX_ROUNDS: usize = 100;
const SIZE_SCAN_BUDGET: Duration = Duration::from_millis(500);

/// Longest TTL honoured; longer ones are clamped (Redis rejects expiry times that overflow).
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Command-level Redis errors (OOM, WRONGTYPE, NOPERM…) are logged at most this often.
const COMMAND_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// A cache of strings by `(namespace, key)` with per-entry TTL. Cheap to clone (an `Arc`);
/// clones share entries and statistics.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    max_entries: usize,
    stats: Mutex<BTreeMap<String, Counts>>,
}

enum Backend {
    Memory(Mutex<MemStore>),
    Redis(Arc<RedisShared>),
}

#[derive(Clone, Copy, Default)]
struct Counts {
    hits: u64,
    misses: u64,
}

/// What [`Cache::status`] reports; serialises to the sibling back-end's `/cache/status` shape.
#[derive(serde::Serialize, Clone, Debug)]
pub struct CacheStatus {
    /// `"redis"` or `"memory"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Whether Redis answers right now; always `true` for the memory cache.
    pub connected: bool,
    /// The configured bound. The memory cache enforces it; for Redis it is advisory (the
    /// server's `maxmemory` policy evicts).
    pub max_size: usize,
    /// Live entries: in memory, or under `sori:` in Redis (counted by a bounded `SCAN`, so a
    /// lower bound on very large databases; 0 while disconnected).
    pub current_size: usize,
    /// Lookups answered from the cache since start, all namespaces.
    pub hits: u64,
    /// Lookups that found nothing (including every lookup made while Redis was down).
    pub misses: u64,
    /// `hits / (hits + misses)`, 0.0 before the first lookup.
    pub hit_rate: f64,
    /// The same counters per namespace.
    pub namespaces: BTreeMap<String, NamespaceStats>,
}

/// Lookup counters of one namespace.
#[derive(serde::Serialize, Clone, Debug, PartialEq)]
pub struct NamespaceStats {
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
}

fn hit_rate(hits: u64, misses: u64) -> f64 {
    let total = hits + misses;
    if total == 0 {
        0.0
    } else {
        hits as f64 / total as f64
    }
}

/// Locks ignoring poison: every critical section here leaves its data consistent before any
/// point that could panic, and a cache must not take the server down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hex SHA-256 of `parts`, each prefixed with its length, so that `["ab", "c"]` and
/// `["a", "bc"]` (or parts containing any separator one might pick) never collide.
/// Use it to turn long or structured inputs (model, prompt version, text) into cache keys.
pub fn key_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in hasher.finalize() {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

impl Cache {
    /// In-process TTL cache bounded to `max_entries`. When full, an insert evicts an expired
    /// entry if there is one, else the least recently used. `max_entries == 0` stores nothing.
    pub fn memory(max_entries: usize) -> Cache {
        Cache::with_backend(
            Backend::Memory(Mutex::new(MemStore::new(max_entries))),
            max_entries,
        )
    }

    /// Redis at `url` (`redis://[user:password@]host:port/db`), keys under `sori:`.
    ///
    /// Never fails. If Redis does not answer within [`OP_TIMEOUT`] (or the URL is invalid),
    /// the cache starts degraded — `get` → `None`, `set` → no-op, `status().connected == false` —
    /// and a background probe reconnects as soon as Redis answers. The same happens on any
    /// outage later. One warning is logged per outage, and one info line on recovery.
    /// `max_entries` is reported as `max_size`; Redis' own `maxmemory` policy does the evicting.
    pub async fn redis(url: &str, max_entries: usize) -> Cache {
        let shared = Arc::new(RedisShared::new(url));
        if shared.client.is_some() {
            match shared.query::<String>(&redis::cmd("PING")).await {
                Ok(_) => {
                    shared.connected.store(true, Ordering::Release);
                    info!(url = %shared.url, "redis cache connected");
                }
                Err(failure) => shared.start_degraded(&failure.to_string()),
            }
        }
        Cache::with_backend(Backend::Redis(shared), max_entries)
    }

    fn with_backend(backend: Backend, max_entries: usize) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                backend,
                max_entries,
                stats: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The value stored under `(namespace, key)`, if present and not expired. Counts a hit or
    /// a miss for `namespace`.
    pub async fn get(&self, namespace: &str, key: &str) -> Option<String> {
        let value = match &self.inner.backend {
            Backend::Memory(store) => lock(store).get(namespace, key, Instant::now()),
            Backend::Redis(shared) => shared.get(namespace, key).await,
        };
        self.record(namespace, value.is_some());
        value
    }

    /// Stores `value` under `(namespace, key)` for `ttl` (clamped to at least 1 ms and at most
    /// 10 years), replacing any previous value.
    pub async fn set(&self, namespace: &str, key: &str, value: &str, ttl: Duration) {
        let ttl = ttl.clamp(Duration::from_millis(1), MAX_TTL);
        match &self.inner.backend {
            Backend::Memory(store) => lock(store).set(namespace, key, value, ttl, Instant::now()),
            Backend::Redis(shared) => shared.set(namespace, key, value, ttl).await,
        }
    }

    /// Removes every entry of `namespace` (e.g. RAG query results after the index changed).
    ///
    /// With Redis down, the clear is remembered and carried out on reconnection, before the
    /// cache reports itself connected again, so invalidated results are never served.
    pub async fn clear_namespace(&self, namespace: &str) {
        match &self.inner.backend {
            Backend::Memory(store) => lock(store).clear_namespace(namespace),
            Backend::Redis(shared) => shared.clear_namespace(namespace).await,
        }
    }

    /// Kind, connection state, size and hit/miss counters (total and per namespace).
    pub async fn status(&self) -> CacheStatus {
        let (kind, connected, current_size) = match &self.inner.backend {
            Backend::Memory(store) => ("memory", true, lock(store).live_len(Instant::now())),
            Backend::Redis(shared) => {
                let size = shared.count_keys().await;
                ("redis", shared.is_connected(), size)
            }
        };
        let counts = lock(&self.inner.stats).clone();
        let (hits, misses) = counts
            .values()
            .fold((0, 0), |(h, m), c| (h + c.hits, m + c.misses));
        CacheStatus {
            kind,
            connected,
            max_size: self.inner.max_entries,
            current_size,
            hits,
            misses,
            hit_rate: hit_rate(hits, misses),
            namespaces: counts
                .into_iter()
                .map(|(ns, c)| {
                    let stats = NamespaceStats {
                        hits: c.hits,
                        misses: c.misses,
                        hit_rate: hit_rate(c.hits, c.misses),
                    };
                    (ns, stats)
                })
                .collect(),
        }
    }

    fn record(&self, namespace: &str, hit: bool) {
        crate::metrics::global().cache_lookup(namespace, hit);
        let mut stats = lock(&self.inner.stats);
        let counts = match stats.get_mut(namespace) {
            Some(counts) => counts,
            None => stats.entry(namespace.to_owned()).or_default(),
        };
        if hit {
            counts.hits += 1;
        } else {
            counts.misses += 1;
        }
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Cache");
        match &self.inner.backend {
            Backend::Memory(_) => d.field("kind", &"memory"),
            Backend::Redis(shared) => d
                .field("kind", &"redis")
                .field("url", &shared.url)
                .field("connected", &shared.is_connected()),
        };
        d.field("max_entries", &self.inner.max_entries).finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Memory back-end

struct MemEntry {
    value: String,
    expires_at: Instant,
    /// Logical time of the last write or hit; unique, so it also identifies the entry in the
    /// two indexes below.
    used: u64,
}

/// TTL + LRU map with O(log n) eviction: `lru` orders entries by last use and `expiry` by
/// deadline, so "evict an expired entry, else the least recently used" never scans the map.
struct MemStore {
    max_entries: usize,
    namespaces: HashMap<String, HashMap<String, MemEntry>>,
    len: usize,
    lru: BTreeMap<u64, (String, String)>,
    expiry: BTreeSet<(Instant, u64)>,
    clock: u64,
}

impl MemStore {
    fn new(max_entries: usize) -> MemStore {
        MemStore {
            max_entries,
            namespaces: HashMap::new(),
            len: 0,
            lru: BTreeMap::new(),
            expiry: BTreeSet::new(),
            clock: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn get(&mut self, namespace: &str, key: &str, now: Instant) -> Option<String> {
        let tick = self.tick();
        let entry = self.namespaces.get_mut(namespace)?.get_mut(key)?;
        if entry.expires_at <= now {
            let used = entry.used;
            self.remove(used);
            return None;
        }
        let old = std::mem::replace(&mut entry.used, tick);
        let expires_at = entry.expires_at;
        let value = entry.value.clone();
        if let Some(names) = self.lru.remove(&old) {
            self.lru.insert(tick, names);
        }
        self.expiry.remove(&(expires_at, old));
        self.expiry.insert((expires_at, tick));
        Some(value)
    }

    fn set(&mut self, namespace: &str, key: &str, value: &str, ttl: Duration, now: Instant) {
        if self.max_entries == 0 {
            return;
        }
        let tick = self.tick();
        let expires_at = now + ttl;
        if let Some(entry) = self
            .namespaces
            .get_mut(namespace)
            .and_then(|entries| entries.get_mut(key))
        {
            let (old_used, old_expiry) = (entry.used, entry.expires_at);
            *entry = MemEntry {
                value: value.to_owned(),
                expires_at,
                used: tick,
            };
            if let Some(names) = self.lru.remove(&old_used) {
                self.lru.insert(tick, names);
            }
            self.expiry.remove(&(old_expiry, old_used));
            self.expiry.insert((expires_at, tick));
            return;
        }
        while self.len >= self.max_entries {
            if !self.evict_one(now) {
                break;
            }
        }
        self.namespaces
            .entry(namespace.to_owned())
            .or_default()
            .insert(
                key.to_owned(),
                MemEntry {
                    value: value.to_owned(),
                    expires_at,
                    used: tick,
                },
            );
        self.lru
            .insert(tick, (namespace.to_owned(), key.to_owned()));
        self.expiry.insert((expires_at, tick));
        self.len += 1;
    }

    /// Evicts the entry that expired first if any has, else the least recently used one.
    fn evict_one(&mut self, now: Instant) -> bool {
        let victim = match self.expiry.first() {
            Some(&(expires_at, used)) if expires_at <= now => Some(used),
            _ => self.lru.keys().next().copied(),
        };
        match victim {
            Some(used) => self.remove(used),
            None => false,
        }
    }

    /// Removes the entry last used at `used` from the map and both indexes.
    fn remove(&mut self, used: u64) -> bool {
        let Some((namespace, key)) = self.lru.remove(&used) else {
            return false;
        };
        let Some(entries) = self.namespaces.get_mut(&namespace) else {
            return false;
        };
        if let Some(entry) = entries.remove(&key) {
            self.expiry.remove(&(entry.expires_at, entry.used));
            self.len -= 1;
        }
        if entries.is_empty() {
            self.namespaces.remove(&namespace);
        }
        true
    }

    fn clear_namespace(&mut self, namespace: &str) {
        if let Some(entries) = self.namespaces.remove(namespace) {
            for entry in entries.values() {
                self.lru.remove(&entry.used);
                self.expiry.remove(&(entry.expires_at, entry.used));
            }
            self.len -= entries.len();
        }
    }

    /// Number of entries still alive at `now` (dropping the expired ones on the way).
    fn live_len(&mut self, now: Instant) -> usize {
        while let Some(&(expires_at, used)) = self.expiry.first() {
            if expires_at > now {
                break;
            }
            if !self.remove(used) {
                // Index out of step with the map: drop the stray index entry, don't spin.
                self.expiry.pop_first();
            }
        }
        self.len
    }
}

// ---------------------------------------------------------------------------------------------
// Redis back-end

/// Why a Redis call failed, sorted by what to do about it.
enum Failure {
    /// Redis as a whole is unusable (connection refused or dropped, timeout, loading, auth…):
    /// degrade and probe.
    Outage(String),
    /// This command failed but Redis works (OOM on a write, a foreign key of the wrong type…).
    Command(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Outage(reason) | Failure::Command(reason) => f.write_str(reason),
        }
    }
}

impl From<RedisError> for Failure {
    fn from(error: RedisError) -> Failure {
        let outage = match error.kind() {
            ErrorKind::Server(kind) => matches!(
                kind,
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::TryAgain
            ),
            ErrorKind::UnexpectedReturnType | ErrorKind::Extension => {
                matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
            }
            _ => true,
        };
        if outage {
            Failure::Outage(error.to_string())
        } else {
            Failure::Command(error.to_string())
        }
    }
}

struct RedisShared {
    /// The URL with any password masked, for logs.
    url: String,
    /// `None` when the URL is unusable: then the cache stays degraded for good.
    client: Option<redis::Client>,
    /// Replaced wholesale when it gets stuck (see [`REBUILD_AFTER_FAILED_PROBES`]).
    manager: RwLock<Option<ConnectionManager>>,
    /// The hot-path check: while `false`, calls return at once without touching the network.
    connected: AtomicBool,
    outage: Mutex<Outage>,
    /// Namespaces whose clear could not reach Redis; cleared before reconnecting.
    pending_clears: Mutex<BTreeSet<String>>,
    last_command_warning: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    prober_running: bool,
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(OP_TIMEOUT))
        .set_response_timeout(Some(OP_TIMEOUT))
        // One quick retry per reconnect attempt: the probe loop paces the attempts after that.
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
}

/// Masks the password of `redis://user:password@host…` for logs.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The Redis key of `(namespace, key)`: `sori:{namespace}:{key}`. `%` and `:` in the namespace
/// are percent-encoded so that clearing namespace `a` can never touch namespace `a:b`.
fn redis_key(namespace: &str, key: &str) -> String {
    format!("{}{key}", namespace_prefix(namespace))
}

fn namespace_prefix(namespace: &str) -> String {
    let mut prefix = String::with_capacity(KEY_PREFIX.len() + namespace.len() + 1);
    prefix.push_str(KEY_PREFIX);
    for c in namespace.chars() {
        match c {
            '%' => prefix.push_str("%25"),
            ':' => prefix.push_str("%3A"),
            c => prefix.push(c),
        }
    }
    prefix.push(':');
    prefix
}

/// `SCAN MATCH` pattern matching every key that starts with `prefix` literally.
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

fn scan_cmd(cursor: u64, pattern: &str) -> Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(SCAN_COUNT);
    cmd
}

impl RedisShared {
    fn new(url: &str) -> RedisShared {
        let redacted = redact_url(url);
        let client = match redis::Client::open(url) {
            Ok(client) => Some(client),
            Err(error) => {
                warn!(url = %redacted, %error, "invalid redis url; running without a cache");
                None
            }
        };
        let manager = client.as_ref().and_then(|client| {
            ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
                .map_err(|error| {
                    warn!(url = %redacted, %error, "redis client setup failed; running without a cache");
                })
                .ok()
        });
        RedisShared {
            url: redacted,
            client: if manager.is_some() { client } else { None },
            manager: RwLock::new(manager),
            connected: AtomicBool::new(false),
            outage: Mutex::new(Outage::default()),
            pending_clears: Mutex::new(BTreeSet::new()),
            last_command_warning: Mutex::new(None),
        }
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// One command with the [`OP_TIMEOUT`] bound, whatever the connection state.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Failure> {
        let manager = self
            .manager
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(mut manager) = manager else {
            return Err(Failure::Outage("no usable redis url".into()));
        };
        match tokio::time::timeout(OP_TIMEOUT, cmd.query_async::<T>(&mut manager)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(Failure::Outage(format!("no reply within {OP_TIMEOUT:?}"))),
        }
    }

    /// Like [`Self::query`], but `None` at once while disconnected, and failures are handled
    /// (degrade on outage, rate-limited warning otherwise) rather than returned.
    async fn run<T: FromRedisValue>(self: &Arc<Self>, what: &str, cmd: &Cmd) -> Option<T> {
        if !self.is_connected() {
            return None;
        }
        match self.query(cmd).await {
            Ok(value) => Some(value),
            Err(failure) => {
                self.handle(what, failure);
                None
            }
        }
    }

    fn handle(self: &Arc<Self>, what: &str, failure: Failure) {
        match failure {
            Failure::Outage(reason) => self.mark_down(&reason),
            Failure::Command(reason) => self.warn_command(what, &reason),
        }
    }

    async fn get(self: &Arc<Self>, namespace: &str, key: &str) -> Option<String> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(redis_key(namespace, key));
        self.run::<Option<String>>("GET", &cmd).await.flatten()
    }

    async fn set(self: &Arc<Self>, namespace: &str, key: &str, value: &str, ttl: Duration) {
        // SET … PX rather than EX: millisecond TTLs, same single atomic write.
        let mut cmd = redis::cmd("SET");
        cmd.arg(redis_key(namespace, key))
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis() as u64);
        self.run::<()>("SET", &cmd).await;
    }

    async fn clear_namespace(self: &Arc<Self>, namespace: &str) {
        // A second round only when Redis failed mid-clear and recovered before the clear
        // could be deferred; a third would mean it is flapping, and the clear stays deferred.
        for _ in 0..3 {
            if self.defer_clear_if_down(namespace) {
                return;
            }
            match self.clear_now(namespace).await {
                Ok(removed) => {
                    debug!(namespace, removed, "redis cache namespace cleared");
                    return;
                }
                Err(Failure::Command(reason)) => {
                    self.warn_command("clear_namespace", &reason);
                    return;
                }
                Err(Failure::Outage(reason)) => self.mark_down(&reason),
            }
        }
    }

    /// While disconnected, records the clear for the recovery and returns `true`. Decided
    /// under the outage lock, which the recovery also holds while it checks that no clear is
    /// pending, so a clear is either deferred and done before reconnecting, or done now.
    fn defer_clear_if_down(&self, namespace: &str) -> bool {
        if self.client.is_none() {
            return true; // never connects: nothing to clear
        }
        let _outage = lock(&self.outage);
        if self.is_connected() {
            return false;
        }
        lock(&self.pending_clears).insert(namespace.to_owned());
        true
    }

    /// `SCAN` the namespace's keys and `UNLINK` them batch by batch (never `KEYS`, which
    /// blocks the server on large databases).
    async fn clear_now(&self, namespace: &str) -> Result<usize, Failure> {
        let pattern = prefix_pattern(&namespace_prefix(namespace));
        let mut cursor = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = self.query(&scan_cmd(cursor, &pattern)).await?;
            if !keys.is_empty() {
                removed += self.unlink(&keys).await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    async fn unlink(&self, keys: &[Vec<u8>]) -> Result<usize, Failure> {
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(keys);
        match self.query(&cmd).await {
            // Redis before 4.0 has no UNLINK.
            Err(Failure::Command(_)) => {
                let mut cmd = redis::cmd("DEL");
                cmd.arg(keys);
                self.query(&cmd).await
            }
            result => result,
        }
    }

    /// Keys under `sori:`, by a `SCAN` bounded in rounds and time.
    async fn count_keys(self: &Arc<Self>) -> usize {
        if !self.is_connected() {
            return 0;
        }
        let pattern = prefix_pattern(KEY_PREFIX);
        let deadline = Instant::now() + SIZE_SCAN_BUDGET;
        let (mut cursor, mut count) = (0, 0);
        for _ in 0..SIZE_SCAN_MAX_ROUNDS {
            match self
                .query::<(u64, Vec<Vec<u8>>)>(&scan_cmd(cursor, &pattern))
                .await
            {
                Ok((next, keys)) => {
                    count += keys.len();
                    if next == 0 {
                        return count;
                    }
                    cursor = next;
                }
                Err(failure) => {
                    self.handle("SCAN", failure);
                    return count;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        debug!(
            count,
            "redis cache size scan stopped early; reporting a lower bound"
        );
        count
    }

    fn warn_command(&self, what: &str, reason: &str) {
        let mut last = lock(&self.last_command_warning);
        if last.is_none_or(|at| at.elapsed() >= COMMAND_WARN_INTERVAL) {
            *last = Some(Instant::now());
            warn!(url = %self.url, command = what, error = reason, "redis cache command failed");
        } else {
            debug!(command = what, error = reason, "redis cache command failed");
        }
    }

    fn start_degraded(self: &Arc<Self>, reason: &str) {
        let mut outage = lock(&self.outage);
        outage.since = Some(Instant::now());
        warn!(url = %self.url, error = reason,
            "redis cache unavailable at start; running without a cache until it answers");
        self.spawn_prober(&mut outage);
    }

    /// Switches to "no cache" — warning only on the transition, so once per outage — and
    /// makes sure a probe is running to notice the recovery.
    fn mark_down(self: &Arc<Self>, reason: &str) {
        let mut outage = lock(&self.outage);
        if self.connected.swap(false, Ordering::AcqRel) {
            outage.since = Some(Instant::now());
            warn!(url = %self.url, error = reason,
                "redis cache unavailable; running without a cache until it answers again");
        }
        self.spawn_prober(&mut outage);
    }

    fn spawn_prober(self: &Arc<Self>, outage: &mut Outage) {
        if outage.prober_running || self.client.is_none() {
            return;
        }
        outage.prober_running = true;
        tokio::spawn(probe_until_recovered(Arc::downgrade(self)));
    }

    /// Back up only when `PING` answers and every deferred clear went through.
    async fn try_recover(&self) -> Result<(), Failure> {
        let ping = redis::cmd("PING");
        if self.query::<String>(&ping).await.is_err() {
            // The manager answers a failed connection from its previous attempt and only then
            // starts a new one: ask again, so a Redis that is back is seen in this probe.
            self.query::<String>(&ping).await?;
        }
        let pending: Vec<String> = lock(&self.pending_clears).iter().cloned().collect();
        for namespace in pending {
            match self.clear_now(&namespace).await {
                Ok(removed) => info!(namespace, removed, "redis cache: deferred clear done"),
                // Redis works but refuses the clear (ACL…): it would refuse it when connected
                // too, so report it rather than staying down for it.
                Err(Failure::Command(reason)) => self.warn_command("clear_namespace", &reason),
                Err(outage) => return Err(outage),
            }
            lock(&self.pending_clears).remove(&namespace);
        }
        Ok(())
    }

    fn rebuild_manager(&self) {
        let Some(client) = &self.client else { return };
        match ConnectionManager::new_lazy_with_config(client.clone(), manager_config()) {
            Ok(manager) => {
                *self.manager.write().unwrap_or_else(PoisonError::into_inner) = Some(manager);
            }
            Err(error) => debug!(%error, "redis cache: could not rebuild the connection manager"),
        }
    }
}

/// Background loop started on an outage: probes with growing pauses until Redis answers, then
/// flips the cache back to connected. Ends early when the cache is dropped.
async fn probe_until_recovered(shared: Weak<RedisShared>) {
    let mut delay = PROBE_MIN_DELAY;
    let mut failures: u32 = 0;
    loop {
        tokio::time::sleep(delay).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match shared.try_recover().await {
            Ok(()) => {
                // Under the outage lock, so that a failure racing with the recovery either
                // sees `connected == true` (and warns, and starts a new probe) or happens first,
                // and a clear deferred meanwhile is not skipped.
                let mut outage = lock(&shared.outage);
                if !lock(&shared.pending_clears).is_empty() {
                    delay = Duration::ZERO;
                    continue;
                }
                outage.prober_running = false;
                let down_for = outage.since.take().unwrap_or(Instant::now()).elapsed();
                shared.connected.store(true, Ordering::Release);
                info!(url = %shared.url, ?down_for, "redis cache reconnected");
                return;
            }
            Err(failure) => {
                failures += 1;
                debug!(url = %shared.url, error = %failure, failures, "redis cache probe failed");
                if failures.is_multiple_of(REBUILD_AFTER_FAILED_PROBES) {
                    shared.rebuild_manager();
                }
                delay = (delay * 2).clamp(PROBE_MIN_DELAY, PROBE_MAX_DELAY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// Compile-time check: the cache and its futures can cross threads (axum, `tokio::spawn`).
    #[allow(dead_code)]
    fn assert_send_sync(cache: &Cache) {
        fn shareable<T: Send + Sync + Clone + 'static>(_: &T) {}
        fn send<T: Send>(_: T) {}
        shareable(cache);
        send(cache.get("ns", "k"));
        send(cache.set("ns", "k", "v", HOUR));
        send(cache.clear_namespace("ns"));
        send(cache.status());
    }

    #[tokio::test]
    async fn memory_get_set_and_overwrite() {
        let cache = Cache::memory(10);
        assert_eq!(cache.get("kw", "a").await, None);
        cache.set("kw", "a", "one", HOUR).await;
        assert_eq!(cache.get("kw", "a").await.as_deref(), Some("one"));
        cache.set("kw", "a", "two", HOUR).await;
        assert_eq!(cache.get("kw", "a").await.as_deref(), Some("two"));
        assert_eq!(cache.status().await.current_size, 1);
    }

    #[tokio::test]
    async fn memory_entries_expire() {
        let cache = Cache::memory(10);
        cache
            .set("kw", "short", "x", Duration::from_millis(40))
            .await;
        cache.set("kw", "long", "y", HOUR).await;
        assert_eq!(cache.get("kw", "short").await.as_deref(), Some("x"));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(cache.get("kw", "short").await, None);
        assert_eq!(cache.get("kw", "long").await.as_deref(), Some("y"));
        assert_eq!(cache.status().await.current_size, 1);
    }

    #[tokio::test]
    async fn memory_status_does_not_count_expired_entries() {
        let cache = Cache::memory(10);
        for i in 0..5 {
            let key = i.to_string();
            cache.set("e", &key, "v", Duration::from_millis(30)).await;
        }
        cache.set("e", "keep", "v", HOUR).await;
        assert_eq!(cache.status().await.current_size, 6);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(cache.status().await.current_size, 1);
    }

    #[tokio::test]
    async fn memory_evicts_least_recently_used_at_capacity() {
        let cache = Cache::memory(3);
        cache.set("kw", "a", "1", HOUR).await;
        cache.set("kw", "b", "2", HOUR).await;
        cache.set("kw", "c", "3", HOUR).await;
        // Touch `a`, so `b` is now the least recently used.
        assert!(cache.get("kw", "a").await.is_some());
        cache.set("kw", "d", "4", HOUR).await;
        assert_eq!(cache.status().await.current_size, 3);
        assert_eq!(cache.get("kw", "b").await, None);
        for key in ["a", "c", "d"] {
            assert!(cache.get("kw", key).await.is_some(), "{key} evicted");
        }
        // Overwriting an existing key at capacity evicts nothing.
        cache.set("kw", "c", "33", HOUR).await;
        assert_eq!(cache.status().await.current_size, 3);
        assert_eq!(cache.get("kw", "a").await.as_deref(), Some("1"));
    }

    #[tokio::test]
    async fn memory_evicts_expired_before_least_recently_used() {
        let cache = Cache::memory(2);
        cache.set("kw", "old", "1", HOUR).await; // least recently used, but alive
        cache
            .set("kw", "brief", "2", Duration::from_millis(20))
            .await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        cache.set("kw", "new", "3", HOUR).await;
        assert_eq!(cache.get("kw", "old").await.as_deref(), Some("1"));
        assert_eq!(cache.get("kw", "new").await.as_deref(), Some("3"));
        assert_eq!(cache.status().await.current_size, 2);
    }

    #[tokio::test]
    async fn memory_with_zero_capacity_stores_nothing() {
        let cache = Cache::memory(0);
        cache.set("kw", "a", "1", HOUR).await;
        assert_eq!(cache.get("kw", "a").await, None);
        assert_eq!(cache.status().await.current_size, 0);
    }

    #[tokio::test]
    async fn memory_namespaces_are_separate_and_clearable() {
        let cache = Cache::memory(10);
        cache.set("keywords", "k", "kw", HOUR).await;
        cache.set("rag", "k", "rag", HOUR).await;
        cache.set("rag", "k2", "rag2", HOUR).await;
        assert_eq!(cache.get("keywords", "k").await.as_deref(), Some("kw"));
        assert_eq!(cache.get("rag", "k").await.as_deref(), Some("rag"));

        cache.clear_namespace("rag").await;
        assert_eq!(cache.get("rag", "k").await, None);
        assert_eq!(cache.get("rag", "k2").await, None);
        assert_eq!(cache.get("keywords", "k").await.as_deref(), Some("kw"));
        assert_eq!(cache.status().await.current_size, 1);
        cache.clear_namespace("absent").await;

        // The cleared namespace is usable again, and eviction still works after a clear.
        cache.set("rag", "k", "again", HOUR).await;
        assert_eq!(cache.get("rag", "k").await.as_deref(), Some("again"));
        assert_eq!(cache.status().await.current_size, 2);
    }

    #[tokio::test]
    async fn memory_eviction_stays_consistent_after_clear() {
        let cache = Cache::memory(2);
        cache.set("a", "1", "x", HOUR).await;
        cache.set("b", "1", "x", HOUR).await;
        cache.clear_namespace("a").await;
        cache.set("c", "1", "x", HOUR).await;
        cache.set("d", "1", "x", HOUR).await; // evicts b:1, the least recently used
        assert_eq!(cache.get("b", "1").await, None);
        assert!(cache.get("c", "1").await.is_some());
        assert!(cache.get("d", "1").await.is_some());
        assert_eq!(cache.status().await.current_size, 2);
    }

    #[tokio::test]
    async fn stats_count_hits_and_misses_per_namespace() {
        let cache = Cache::memory(10);
        let status = cache.status().await;
        assert_eq!((status.hits, status.misses, status.hit_rate), (0, 0, 0.0));
        assert!(status.namespaces.is_empty());

        cache.set("keywords", "a", "1", HOUR).await;
        cache.get("keywords", "a").await; // hit
        cache.get("keywords", "a").await; // hit
        cache.get("keywords", "b").await; // miss
        cache.get("rag", "q").await; // miss

        let status = cache.status().await;
        assert_eq!(status.kind, "memory");
        assert!(status.connected);
        assert_eq!(status.max_size, 10);
        assert_eq!((status.hits, status.misses), (2, 2));
        assert_eq!(status.hit_rate, 0.5);
        let kw = &status.namespaces["keywords"];
        assert_eq!((kw.hits, kw.misses), (2, 1));
        assert!((kw.hit_rate - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            status.namespaces["rag"],
            NamespaceStats {
                hits: 0,
                misses: 1,
                hit_rate: 0.0
            }
        );

        // Clones share entries and counters.
        let clone = cache.clone();
        assert!(clone.get("keywords", "a").await.is_some());
        assert_eq!(cache.status().await.hits, 3);
    }

    #[tokio::test]
    async fn status_serialises_to_the_cache_status_shape() {
        let cache = Cache::memory(5);
        cache.get("kw", "x").await;
        let json = serde_json::to_value(cache.status().await).unwrap();
        assert_eq!(json["type"], "memory");
        assert_eq!(json["connected"], true);
        assert_eq!(json["max_size"], 5);
        assert_eq!(json["current_size"], 0);
        assert_eq!(json["hits"], 0);
        assert_eq!(json["misses"], 1);
        assert_eq!(json["hit_rate"], 0.0);
        assert_eq!(json["namespaces"]["kw"]["misses"], 1);
    }

    #[test]
    fn key_hash_is_stable_and_unambiguous() {
        // Fixed vectors: SHA-256 of u64-LE length prefixes + bytes (checked with Python hashlib).
        assert_eq!(
            key_hash(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            key_hash(&["ab", "c"]),
            "43ee655579de01ca739b3f95c1c2d3f46d353b2c0df818064ea594506cdb2617"
        );
        assert_eq!(key_hash(&["ab", "c"]), key_hash(&["ab", "c"]));
        assert_ne!(key_hash(&["ab", "c"]), key_hash(&["a", "bc"]));
        assert_ne!(key_hash(&["abc"]), key_hash(&["ab", "c"]));
        assert_ne!(key_hash(&["a", ""]), key_hash(&["a"]));
        assert_ne!(key_hash(&["", "a"]), key_hash(&["a", ""]));
        let hash = key_hash(&["qwen", "v1", "회의 내용"]);
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn redis_keys_are_prefixed_and_namespaces_cannot_overlap() {
        assert_eq!(redis_key("keywords", "abc"), "sori:keywords:abc");
        assert_eq!(redis_key("a:b", "c"), "sori:a%3Ab:c");
        assert_eq!(redis_key("50%", "c"), "sori:50%25:c");
        assert_eq!(prefix_pattern(&namespace_prefix("rag")), "sori:rag:*");
        assert_eq!(
            prefix_pattern("sori:a*[b]?\\:"),
            "sori:a\\*\\[b\\]\\?\\\\:*"
        );
    }

    #[test]
    fn urls_are_redacted_for_logs() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://user:secret@host:6379/1"),
            "redis://***@host:6379/1"
        );
        assert_eq!(redact_url("redis://:secret@host"), "redis://***@host");
    }

    #[tokio::test]
    async fn redis_with_an_invalid_url_degrades_instead_of_failing() {
        let cache = Cache::redis("not a url", 100).await;
        let started = Instant::now();
        cache.set("kw", "a", "1", HOUR).await;
        assert_eq!(cache.get("kw", "a").await, None);
        cache.clear_namespace("kw").await;
        assert!(started.elapsed() < Duration::from_millis(50));
        let status = cache.status().await;
        assert_eq!(status.kind, "redis");
        assert!(!status.connected);
        assert_eq!((status.current_size, status.misses), (0, 1));
    }
}
