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
//!
//! This module is the handle, key hashing and statistics; `memory` and `redis` are the back-ends.

mod memory;
mod redis;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use memory::MemStore;
use redis::RedisShared;

/// Longest a single Redis round trip may take before the call gives up and the cache is
/// treated as down. Loopback and LAN replies take well under a millisecond, so anything near
/// this means Redis is gone, stopped or overloaded.
pub const OP_TIMEOUT: Duration = Duration::from_millis(250);

/// Longest TTL honoured; longer ones are clamped (Redis rejects expiry times that overflow).
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

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
        let shared = RedisShared::connect(url).await;
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
                .field("url", &shared.url())
                .field("connected", &shared.is_connected()),
        };
        d.field("max_entries", &self.inner.max_entries).finish()
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
}
