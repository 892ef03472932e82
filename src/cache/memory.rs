//! The in-process back-end: a TTL + LRU map.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

struct MemEntry {
    value: String,
    expires_at: Instant,
    /// Logical time of the last write or hit; unique, so it also identifies the entry in the
    /// two indexes below.
    used: u64,
}

/// TTL + LRU map with O(log n) eviction: `lru` orders entries by last use and `expiry` by
/// deadline, so "evict an expired entry, else the least recently used" never scans the map.
pub(super) struct MemStore {
    max_entries: usize,
    namespaces: HashMap<String, HashMap<String, MemEntry>>,
    len: usize,
    lru: BTreeMap<u64, (String, String)>,
    expiry: BTreeSet<(Instant, u64)>,
    clock: u64,
}

impl MemStore {
    pub(super) fn new(max_entries: usize) -> MemStore {
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

    pub(super) fn get(&mut self, namespace: &str, key: &str, now: Instant) -> Option<String> {
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

    pub(super) fn set(
        &mut self,
        namespace: &str,
        key: &str,
        value: &str,
        ttl: Duration,
        now: Instant,
    ) {
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

    pub(super) fn clear_namespace(&mut self, namespace: &str) {
        if let Some(entries) = self.namespaces.remove(namespace) {
            for entry in entries.values() {
                self.lru.remove(&entry.used);
                self.expiry.remove(&(entry.expires_at, entry.used));
            }
            self.len -= entries.len();
        }
    }

    /// Number of entries still alive at `now` (dropping the expired ones on the way).
    pub(super) fn live_len(&mut self, now: Instant) -> usize {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cache::Cache;

    const HOUR: Duration = Duration::from_secs(3600);

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
}
