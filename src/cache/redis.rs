//! The Redis back-end: keys under `sori:`, every call bounded by [`OP_TIMEOUT`], and on an
//! outage "no cache" until a background probe sees Redis answer again.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, ServerErrorKind};
use tracing::{debug, info, warn};

use super::{OP_TIMEOUT, lock};

/// Every Redis key this module writes starts with this, followed by `:{namespace}:{key}`.
const KEY_PREFIX: &str = "sori:";

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

/// Command-level Redis errors (OOM, WRONGTYPE, NOPERM…) are logged at most this often.
const COMMAND_WARN_INTERVAL: Duration = Duration::from_secs(60);

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

pub(super) struct RedisShared {
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
    /// A client for `url`, connected if Redis answers within [`OP_TIMEOUT`], else degraded
    /// with a probe running (see [`Cache::redis`](super::Cache::redis)).
    pub(super) async fn connect(url: &str) -> Arc<RedisShared> {
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
        shared
    }

    /// The URL with any password masked.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

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

    pub(super) fn is_connected(&self) -> bool {
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

    pub(super) async fn get(self: &Arc<Self>, namespace: &str, key: &str) -> Option<String> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(redis_key(namespace, key));
        self.run::<Option<String>>("GET", &cmd).await.flatten()
    }

    pub(super) async fn set(
        self: &Arc<Self>,
        namespace: &str,
        key: &str,
        value: &str,
        ttl: Duration,
    ) {
        // SET … PX rather than EX: millisecond TTLs, same single atomic write.
        let mut cmd = redis::cmd("SET");
        cmd.arg(redis_key(namespace, key))
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis() as u64);
        self.run::<()>("SET", &cmd).await;
    }

    pub(super) async fn clear_namespace(self: &Arc<Self>, namespace: &str) {
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
    pub(super) async fn count_keys(self: &Arc<Self>) -> usize {
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
    use std::time::{Duration, Instant};

    use super::*;
    use crate::cache::Cache;

    const HOUR: Duration = Duration::from_secs(3600);

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
