//! Two sori instances sharing one real Redis, as replicas behind a load balancer would: both
//! serve sessions, a keyword answer computed by one is a cache hit on the other, and so are
//! embeddings. (Each keeps its own embedded vector store: sharing one needs a Qdrant server,
//! which cannot be installed here; see docs/deployment.md.)

use crate::support::servers::{LLM_TEST_TIMEOUT_MS, RedisServer, embed_server, llama_server};
use crate::support::*;
use serde_json::{Value, json};
use sori::config::Config;

fn replica(redis_url: &str, name: &str) -> std::net::SocketAddr {
    let mut config: Config = test_config();
    config.cache.redis_url = Some(redis_url.to_owned());
    config.llm.base_url = llama_server().base_url.clone();
    config.llm.enabled = true;
    config.llm.timeout_ms = LLM_TEST_TIMEOUT_MS;
    config.rag.enabled = true;
    config.rag.embed_url = embed_server().base_url.clone();
    let store = scratch_dir().join(format!("replica-store-{name}"));
    let _ = std::fs::remove_dir_all(&store);
    config.rag.store_dir = store;
    // Two Whisper replicas beside the LLM and embedding servers on two cores.
    config.stt.threads = 1;
    start_server(config)
}

async fn stream_jfk(addr: std::net::SocketAddr) -> Vec<Value> {
    // Finals only: a revision's keywords would be a second answer for the same segment.
    let (mut ws, _) = connect_ready(addr, "?language=en&revisions=false").await;
    send_pcm(&mut ws, &to_s16le(&jfk_16k()), 32000, 100, false).await;
    stop_and_collect(&mut ws).await
}

async fn cache_status(addr: std::net::SocketAddr) -> Value {
    reqwest::get(format!("http://{addr}/cache/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_both_serve_and_share_their_caches() {
    let redis = RedisServer::start();
    let (a, b) = (replica(&redis.url(), "a"), replica(&redis.url(), "b"));

    // Both serve sessions; the keyword answer A computed is served to B from Redis.
    let on_a = stream_jfk(a).await;
    let on_b = stream_jfk(b).await;
    for (name, messages) in [("a", &on_a), ("b", &on_b)] {
        assert!(
            final_text(messages).to_lowercase().contains("country"),
            "replica {name}: {messages:?}"
        );
    }
    let keywords = |messages: &[Value]| -> Vec<Value> {
        messages
            .iter()
            .filter(|m| m["type"] == "keywords")
            .cloned()
            .collect()
    };
    let (from_a, from_b) = (keywords(&on_a), keywords(&on_b));
    assert!(!from_a.is_empty(), "{on_a:?}");
    assert!(from_a.iter().all(|k| k["cached"] == false), "{from_a:?}");
    assert!(
        from_b.iter().any(|k| k["cached"] == true),
        "B computed again: {from_b:?}"
    );
    for hit in from_b.iter().filter(|k| k["cached"] == true) {
        let original = from_a
            .iter()
            .find(|k| k["segment_id"] == hit["segment_id"])
            .expect("A extracted the same segment");
        assert_eq!(hit["keywords"], original["keywords"]);
    }

    // An embedding computed through A is a hit through B.
    let text = json!({"text": "두 번째 서버도 같은 캐시를 씁니다", "kind": "query"});
    let embed = |addr| {
        let text = text.clone();
        async move {
            reqwest::Client::new()
                .post(format!("http://{addr}/embed"))
                .json(&text)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let first = embed(a).await;
    let hits_before = cache_status(b).await["hits"].as_u64().unwrap_or(0);
    let second = embed(b).await;
    assert_eq!(first["embedding"], second["embedding"]);
    let status = cache_status(b).await;
    assert_eq!(status["type"], "redis", "{status}");
    assert!(
        status["hits"].as_u64().unwrap_or(0) > hits_before,
        "B's embedding came from the shared cache: {status}"
    );
}
