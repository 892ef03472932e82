//! Issue 15, point 7: transcripts are never silently lost. A transcript that cannot be
//! written is reported once and the session goes on; a session with no speech leaves no
//! files; old transcripts are pruned; a re-index that fails keeps the old version of the
//! document; `/query` conversations are the server's ids. Real servers and sockets; the
//! scripted decoders (no transcription is tested here) and, for `/query` answers, the
//! fault-injection LLM answering normally (the answers' quality is not what is tested).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use sori::config::Config;
use sori_core::testing::{silence, tone};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::support::faulty_llm::{Fault, FaultyLlm};
use crate::support::servers::embed_server;
use crate::support::*;

/// A fresh, empty folder under the scratch dir.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Three utterances of tone (speech to the scripted server's energy detector), as 16-bit PCM.
fn three_utterances() -> Vec<u8> {
    let audio: Vec<f32> = [
        tone(1.5),
        silence(1.2),
        tone(1.0),
        silence(1.2),
        tone(2.0),
        silence(1.2),
    ]
    .concat();
    to_s16le(&audio)
}

/// Streams `pcm` (16 kHz s16le) as fast as the socket takes it, then `stop`; every message up
/// to `closed`.
async fn session(addr: SocketAddr, pcm: &[u8]) -> (String, Vec<Value>) {
    let (mut ws, ready) = connect_ready(addr, "?language=en&partials=false").await;
    let id = ready["session_id"].as_str().unwrap().to_owned();
    send_pcm(&mut ws, pcm, 32_000, 100, false).await;
    let messages = stop_and_collect(&mut ws).await;
    assert_eq!(messages.last().unwrap()["type"], "closed", "{messages:?}");
    (id, messages)
}

fn files_named(dir: &Path, id: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(id))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_transcript_is_reported_once_and_the_finals_still_arrive() {
    // The outputs folder lies under a regular file: every write fails, for root as well.
    let blocker = fresh_dir("unsaved-transcripts").join("a-file");
    std::fs::write(&blocker, "a file, not a folder").unwrap();
    let mut config = test_config();
    config.server.outputs_dir = blocker.join("outputs");
    let addr = start_server_without_whisper(config);

    let (_, messages) = session(addr, &three_utterances()).await;
    let finals = finals(&messages);
    let unsaved: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "error" && m["code"] == "transcript_not_saved")
        .collect();
    eprintln!(
        "finals received: {}; transcript_not_saved errors: {}; message: {}",
        finals.len(),
        unsaved.len(),
        unsaved.first().map_or(&Value::Null, |e| &e["message"])
    );
    assert_eq!(finals.len(), 3, "every final still arrives: {messages:?}");
    assert_eq!(unsaved.len(), 1, "one error per session: {messages:?}");
    assert_eq!(unsaved[0]["fatal"], false);
    let text = unsaved[0]["message"].as_str().unwrap();
    assert!(
        !text.contains(blocker.to_str().unwrap()),
        "no server path: {text}"
    );
    let summary = &messages.last().unwrap()["summary"];
    assert_eq!(summary["outputs"], json!([]), "{summary}");
    assert_eq!(summary["errors"], 1, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_speech_leaves_no_files_and_one_with_speech_leaves_three() {
    let outputs = fresh_dir("no-speech-outputs");
    let mut config = test_config();
    config.server.outputs_dir = outputs.clone();
    let addr = start_server_without_whisper(config);

    let (silent, messages) = session(addr, &to_s16le(&silence(4.0))).await;
    assert!(finals(&messages).is_empty(), "{messages:?}");
    let summary = &messages.last().unwrap()["summary"];
    assert_eq!(summary["outputs"], json!([]), "{summary}");
    let left = files_named(&outputs, &silent);
    eprintln!("files left by a session without speech: {left:?}");
    assert!(left.is_empty(), "{left:?}");

    let (spoken, messages) = session(addr, &three_utterances()).await;
    assert_eq!(finals(&messages).len(), 3, "{messages:?}");
    let written = files_named(&outputs, &spoken);
    eprintln!("files left by a session with 3 finals: {written:?}");
    assert_eq!(
        written,
        ["jsonl", "srt", "vtt"].map(|ext| format!("{spoken}.{ext}"))
    );
    let jsonl = std::fs::read_to_string(outputs.join(format!("{spoken}.jsonl"))).unwrap();
    let revisions = messages.iter().filter(|m| m["type"] == "revision").count();
    for line in jsonl.lines() {
        let v: Value = serde_json::from_str(line).expect("every line is whole JSON");
        assert!(v["type"] == "final" || v["type"] == "revision", "{v}");
    }
    assert_eq!(jsonl.lines().count(), 3 + revisions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcripts_older_than_the_limit_are_pruned_at_start_and_others_kept() {
    let outputs = fresh_dir("pruned-outputs");
    let aged = |name: &str, days: u64| {
        let path = outputs.join(name);
        let file = std::fs::File::create(&path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
            .unwrap();
        path
    };
    let old_id = uuid::Uuid::new_v4().simple().to_string();
    let young_id = uuid::Uuid::new_v4().simple().to_string();
    let old: Vec<PathBuf> = ["jsonl", "srt", "vtt"]
        .iter()
        .map(|ext| aged(&format!("{old_id}.{ext}"), 8))
        .collect();
    let young = aged(&format!("{young_id}.jsonl"), 6);
    let foreign = aged("operator-notes.txt", 400);

    let mut config = test_config();
    config.server.outputs_dir = outputs.clone();
    config.server.outputs_max_age_days = 7;
    let started = std::time::Instant::now();
    let addr = start_server_without_whisper(config);
    assert_eq!(
        reqwest::get(format!("http://{addr}/health"))
            .await
            .unwrap()
            .status(),
        200
    );
    let deadline = started + Duration::from_secs(30);
    while old.iter().any(|p| p.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "old transcripts still there 30 s after start: {old:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "3 transcripts 8 days old pruned {:.1} s after start (limit 7 days)",
        started.elapsed().as_secs_f64()
    );
    assert!(young.is_file(), "a 6-day-old transcript is kept");
    assert!(foreign.is_file(), "files sori did not write are kept");
}

/// A test double for an outage: forwards TCP connections to `upstream` while up; while down,
/// drops every new connection and cuts the open ones.
struct SwitchableProxy {
    addr: SocketAddr,
    down: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SwitchableProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (down, watch) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if *watch.borrow() {
                    continue; // dropped: the connection closes at once
                }
                let mut cut = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        Self { addr, down, task }
    }

    fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }
}

impl Drop for SwitchableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `127.0.0.1:PORT` of an `http://127.0.0.1:PORT/v1` URL.
fn socket_of(base_url: &str) -> SocketAddr {
    let rest = base_url.trim_start_matches("http://");
    rest.split('/').next().unwrap().parse().unwrap()
}

fn rag_config(embed_url: String, llm_url: Option<String>, store: &Path) -> Config {
    let mut config = test_config();
    config.rag.enabled = true;
    config.rag.embed_url = embed_url;
    config.rag.store_dir = store.to_owned();
    config.rag.chunk_chars = 200;
    config.rag.timeout_ms = 2000;
    if let Some(url) = llm_url {
        config.llm.base_url = url;
    }
    config
}

async fn post(addr: SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn sources(addr: SocketAddr) -> Value {
    reqwest::get(format!("http://{addr}/index"))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["sources"]
        .clone()
}

/// The text with its whitespace runs as single spaces (how chunks store it).
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reindex_that_fails_keeps_the_old_version_searchable() {
    let embedder = SwitchableProxy::start(socket_of(&embed_server().base_url)).await;
    let config = rag_config(
        format!("http://{}/v1", embedder.addr),
        None,
        &fresh_dir("reindex-failure-store"),
    );
    let addr = start_server_without_whisper(config);
    let data = repo_root().join("tests/data/rag");
    let old_text = std::fs::read_to_string(data.join("tunnel-fire.md")).unwrap();
    let new_text = std::fs::read_to_string(data.join("bridge-inspection.txt")).unwrap();
    let index = |text: &str| json!({"text": text, "metadata": {"source": "manual-7"}});

    let (status, first) = post(addr, "/index", index(&old_text)).await;
    assert_eq!(status, 200, "{first}");
    let old_chunks = first["report"]["chunks"].as_u64().unwrap();
    // The question's vector is cached now, so it can be searched with the embedder down.
    let question = json!({"query": "비상구 간격"});
    let (status, before) = post(addr, "/search", question.clone()).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["hits"][0]["metadata"]["source"], "manual-7");

    embedder.set_down(true);
    let (status, failed) = post(addr, "/index", index(&new_text)).await;
    eprintln!("re-index with the embedder down: {status} {failed}");
    assert_eq!(status, 503, "{failed}");
    assert_eq!(
        sources(addr).await,
        json!([{"source": "manual-7", "chunks": old_chunks}]),
        "the old version is whole"
    );
    let (status, during) = post(addr, "/search", question.clone()).await;
    assert_eq!(status, 200, "{during}");
    let hit = during["hits"][0]["text"].as_str().unwrap();
    assert!(
        words(&old_text).contains(&words(hit)),
        "an old chunk is still found: {during}"
    );

    // Back up: the re-index replaces the old version, nothing of it is left.
    embedder.set_down(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let replaced = loop {
        let (status, body) = post(addr, "/index", index(&new_text)).await;
        if status == 200 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "re-index after recovery: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let new_chunks = replaced["report"]["chunks"].as_u64().unwrap();
    eprintln!(
        "old version: {old_chunks} chunks, kept through the failure; new version: {new_chunks} chunks, replaced {}",
        replaced["report"]["replaced"]
    );
    assert_eq!(replaced["report"]["replaced"], old_chunks, "{replaced}");
    assert_eq!(
        sources(addr).await,
        json!([{"source": "manual-7", "chunks": new_chunks}])
    );
    let (_, after) = post(
        addr,
        "/search",
        json!({"query": "Main Street bridge load limit"}),
    )
    .await;
    let hits = after["hits"].as_array().unwrap();
    assert!(!hits.is_empty(), "{after}");
    for hit in hits {
        assert!(
            words(&new_text).contains(&words(hit["text"].as_str().unwrap())),
            "only the new version is left: {after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_conversations_are_server_issued_ids() {
    let llm = FaultyLlm::start(Fault::Http500).await;
    llm.set_fault(None); // answers normally: what is tested is the ids, not the answers
    let config = rag_config(
        embed_server().base_url.clone(),
        Some(llm.base_url()),
        &fresh_dir("query-ids-store"),
    );
    let addr = start_server_without_whisper(config);
    let text =
        std::fs::read_to_string(repo_root().join("tests/data/rag/refund-policy.txt")).unwrap();
    let (status, body) = post(
        addr,
        "/index",
        json!({"text": text, "metadata": {"source": "refunds"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A conversation the client names itself does not exist.
    let (status, chosen) = post(
        addr,
        "/query",
        json!({"query": "How long does a refund take?", "session_id": "op-7"}),
    )
    .await;
    eprintln!("/query with a client-chosen session_id: {status} {chosen}");
    assert_eq!(status, 404, "{chosen}");
    assert_eq!(chosen["error"]["code"], "unknown_session");

    // Without one, the server starts one and says its id: a random UUID.
    let (status, first) = post(
        addr,
        "/query",
        json!({"query": "How long does a refund take?"}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let id = first["session_id"].as_str().expect("an issued session_id");
    let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
    assert_eq!(parsed.get_version_num(), 4, "{id}");
    let (status, again) = post(
        addr,
        "/query",
        json!({"query": "How long does a refund take?"}),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(
        again["session_id"], first["session_id"],
        "each new question, a new id"
    );

    // The issued id carries the conversation on.
    let (status, follow_up) = post(
        addr,
        "/query",
        json!({"query": "Who approves it after ninety days?", "session_id": id}),
    )
    .await;
    assert_eq!(status, 200, "{follow_up}");
    assert_eq!(follow_up["session_id"], id);
    eprintln!("issued session_id {id}; a follow-up with it: {status}");
}
