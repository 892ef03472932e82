//! The Redis cache against a real `redis-server` (Debian package `redis-server`), started by
//! each test on its own free loopback port: round trips, TTLs, namespaces, counters, and above
//! all the outage behaviour — Redis killed mid-use, Redis down from the start — where the cache
//! must degrade quickly and recover by itself.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::servers::{RedisServer, free_port};
use sori::cache::{Cache, key_hash};

const HOUR: Duration = Duration::from_secs(3600);

/// A plain synchronous client to look at what the cache wrote.
fn raw(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

async fn wait_until_connected(cache: &Cache, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if cache.status().await.connected {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cache did not reconnect within {within:?}");
}

/// Log lines captured from `tracing`, to check that an outage warns once, not once per call.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Installs the capture for the current thread (the tests run on a current-thread
    /// runtime, so the cache's background probe logs here too).
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn count(&self, level: &str, text: &str) -> usize {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|line| line.contains(level) && line.contains(text))
            .count()
    }
}

#[tokio::test]
async fn round_trip_ttl_namespaces_size_and_counters() {
    let server = RedisServer::start();
    let cache = Cache::redis(&server.url(), 1000).await;
    let status = cache.status().await;
    assert_eq!(status.kind, "redis");
    assert!(status.connected);
    assert_eq!((status.max_size, status.current_size), (1000, 0));

    let key = key_hash(&["qwen", "v1", "도로 정체 구간 안내"]);
    assert_eq!(cache.get("keywords", &key).await, None);
    cache
        .set("keywords", &key, r#"{"keywords":["정체"]}"#, HOUR)
        .await;
    assert_eq!(
        cache.get("keywords", &key).await.as_deref(),
        Some(r#"{"keywords":["정체"]}"#)
    );

    // Stored as `sori:{namespace}:{key}` with the TTL set by the same SET.
    let mut raw = raw(&server);
    let redis_key = format!("sori:keywords:{key}");
    let ttl_ms: i64 = redis::cmd("PTTL").arg(&redis_key).query(&mut raw).unwrap();
    assert!(ttl_ms > 3_590_000 && ttl_ms <= 3_600_000, "PTTL {ttl_ms}");

    // Short TTLs are honoured.
    cache
        .set("keywords", "brief", "x", Duration::from_millis(300))
        .await;
    assert_eq!(cache.get("keywords", "brief").await.as_deref(), Some("x"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cache.get("keywords", "brief").await, None);

    // Namespaces: the same key is independent in each, and clearing one spares the others,
    // including a namespace whose name starts with the cleared one's, and foreign keys.
    cache.set("rag", &key, "rag result", HOUR).await;
    cache.set("rag", "q2", "rag result 2", HOUR).await;
    cache.set("rag:v2", "q3", "other namespace", HOUR).await;
    let _: () = redis::cmd("SET")
        .arg("not-sori:rag:x")
        .arg("foreign")
        .query(&mut raw)
        .unwrap();
    assert_eq!(cache.get("rag", &key).await.as_deref(), Some("rag result"));
    assert_eq!(cache.status().await.current_size, 4);

    cache.clear_namespace("rag").await;
    assert_eq!(cache.get("rag", &key).await, None);
    assert_eq!(cache.get("rag", "q2").await, None);
    assert_eq!(
        cache.get("rag:v2", "q3").await.as_deref(),
        Some("other namespace")
    );
    assert!(cache.get("keywords", &key).await.is_some());
    let foreign: Option<String> = redis::cmd("GET")
        .arg("not-sori:rag:x")
        .query(&mut raw)
        .unwrap();
    assert_eq!(foreign.as_deref(), Some("foreign"));
    assert_eq!(cache.status().await.current_size, 2);

    // Many keys: SCAN + UNLINK go through several rounds.
    for i in 0..2500 {
        cache
            .set("embeddings", &i.to_string(), "[0.1,0.2]", HOUR)
            .await;
    }
    assert_eq!(cache.status().await.current_size, 2502);
    cache.clear_namespace("embeddings").await;
    assert_eq!(cache.status().await.current_size, 2);

    let status = cache.status().await;
    let kw = &status.namespaces["keywords"];
    assert_eq!((kw.hits, kw.misses), (3, 2));
    let rag = &status.namespaces["rag"];
    assert_eq!((rag.hits, rag.misses), (1, 2));
    assert_eq!((status.hits, status.misses), (5, 4));
    assert!((status.hit_rate - 5.0 / 9.0).abs() < 1e-12);
    assert!(status.connected);
}

#[tokio::test]
async fn redis_killed_mid_use_degrades_fast_and_recovers_by_itself() {
    let (logs, _guard) = Logs::capture();
    let mut server = RedisServer::start();
    let port = server.port();
    let cache = Cache::redis(&server.url(), 1000).await;
    cache.set("keywords", "a", "1", HOUR).await;
    assert_eq!(cache.get("keywords", "a").await.as_deref(), Some("1"));

    server.kill();

    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        assert_eq!(cache.get("keywords", "a").await, None, "get #{i}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "get #{i} took {took:?}");
        slowest = slowest.max(took);

        let started = Instant::now();
        cache.set("keywords", "b", "2", HOUR).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "set #{i} took {took:?}");
        slowest = slowest.max(took);
    }
    let started = Instant::now();
    let status = cache.status().await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!status.connected);
    assert_eq!(status.current_size, 0);

    // Once the outage is known, calls don't touch the network at all.
    let n = 1000;
    let started = Instant::now();
    for _ in 0..n {
        assert_eq!(cache.get("keywords", "a").await, None);
    }
    let degraded = started.elapsed() / n;
    println!(
        "slowest call while Redis went down: {slowest:?}; degraded get (mean of {n}): {degraded:?}"
    );
    assert!(
        degraded < Duration::from_millis(1),
        "degraded get {degraded:?}"
    );

    // An index change while Redis is down is remembered.
    cache.clear_namespace("rag").await;

    // Stay down long enough for several failed probes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!cache.status().await.connected);

    // Back on the same port: the cache reconnects without being told.
    let server = RedisServer::on_port(port);
    let mut raw = raw(&server);
    let _: () = redis::cmd("SET")
        .arg("sori:rag:stale")
        .arg("old")
        .query(&mut raw)
        .unwrap();
    let took = wait_until_connected(&cache, Duration::from_secs(10)).await;
    println!("reconnected {took:?} after the restart");
    // The deferred clear ran before the cache said it was connected.
    assert_eq!(cache.get("rag", "stale").await, None);
    cache.set("keywords", "c", "3", HOUR).await;
    assert_eq!(cache.get("keywords", "c").await.as_deref(), Some("3"));
    assert_eq!(cache.status().await.current_size, 1);

    assert_eq!(
        logs.count("WARN", "redis cache unavailable"),
        1,
        "one warning per outage"
    );
    assert_eq!(logs.count("INFO", "redis cache reconnected"), 1);

    // A second outage warns again, once.
    drop(server);
    for _ in 0..5 {
        cache.get("keywords", "c").await;
    }
    assert!(!cache.status().await.connected);
    assert_eq!(logs.count("WARN", "redis cache unavailable"), 2);
}

#[tokio::test]
async fn hung_redis_costs_one_timeout_then_nothing_and_recovers() {
    let server = RedisServer::start();
    let cache = Cache::redis(&server.url(), 1000).await;
    cache.set("keywords", "a", "1", HOUR).await;

    server.signal("-STOP");
    let mut took = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(cache.get("keywords", "a").await, None);
        took.push(started.elapsed());
    }
    println!("gets against a hung Redis took {took:?}");
    assert!(took.iter().all(|t| *t < Duration::from_secs(1)), "{took:?}");
    assert!(
        took[1..].iter().all(|t| *t < Duration::from_millis(50)),
        "{took:?}"
    );
    let started = Instant::now();
    assert!(!cache.status().await.connected);
    assert!(started.elapsed() < Duration::from_millis(50));

    server.signal("-CONT");
    wait_until_connected(&cache, Duration::from_secs(10)).await;
    assert_eq!(cache.get("keywords", "a").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn redis_down_from_the_start_degrades_then_recovers() {
    let (logs, _guard) = Logs::capture();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");

    let started = Instant::now();
    let cache = Cache::redis(&url, 500).await;
    let took = started.elapsed();
    println!("Cache::redis with Redis down returned in {took:?}");
    assert!(took < Duration::from_secs(1), "start took {took:?}");
    let status = cache.status().await;
    assert!(!status.connected);
    assert_eq!((status.kind, status.max_size), ("redis", 500));

    for _ in 0..10 {
        let started = Instant::now();
        cache.set("keywords", "a", "1", HOUR).await;
        assert_eq!(cache.get("keywords", "a").await, None);
        assert!(started.elapsed() < Duration::from_millis(100));
    }
    assert_eq!(cache.status().await.misses, 10);
    assert_eq!(logs.count("WARN", "unavailable at start"), 1);

    // Long enough for the probe to back off to its longest pause and to replace the
    // connection manager once.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!cache.status().await.connected);
    assert_eq!(
        logs.count("WARN", "unavailable"),
        1,
        "one warning per outage"
    );

    let _server = RedisServer::on_port(port);
    let took = wait_until_connected(&cache, Duration::from_secs(10)).await;
    println!("connected {took:?} after Redis came up");
    cache.set("keywords", "a", "1", HOUR).await;
    assert_eq!(cache.get("keywords", "a").await.as_deref(), Some("1"));
    assert_eq!(logs.count("INFO", "redis cache reconnected"), 1);
}
