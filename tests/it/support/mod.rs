//! Shared test support: a real sori server on port 0 with the real Whisper model, a
//! WebSocket client, and real audio (the JFK clip; espeak-ng speech; silence; noise).
//! The server and the client are `sori::harness`'s, the ones `sori eval` and `sori bench` use;
//! these helpers keep the tests' names and panic with a message instead of returning errors.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tokio_tungstenite::WebSocketStream;

use sori::config::Config;
use sori::harness::ws_client::{self, Incoming, WsClientError};
use sori::harness::{Decoders, LocalServer};

pub const JFK_REFERENCE: &str = sori::eval::JFK_REFERENCE;

pub type Ws = sori::harness::Ws;

/// How long a test waits for the server's next message.
const ANSWER_WITHIN: Duration = Duration::from_secs(120);

/// Any byte stream a WebSocket runs over (plain TCP, or TLS in tests/tls.rs).
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Io for T {}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The model under test: `SORI_TEST_MODEL`, or the base model `sori model fetch` writes.
pub fn model_path() -> PathBuf {
    let path = std::env::var_os("SORI_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/ggml-base.bin"));
    assert!(
        path.is_file(),
        "Whisper model {} is missing. Run the README's test command (./test.sh), or \
         `cargo run --release -- model fetch`, which downloads and converts it.",
        path.display()
    );
    path
}

/// A file under `data/` that `sori model fetch` provides.
pub fn data_file(name: &str) -> PathBuf {
    let path = repo_root().join("data").join(name);
    assert!(
        path.is_file(),
        "test audio {} is missing. Run `cargo run --release -- model fetch` (it fetches the JFK clip).",
        path.display()
    );
    path
}

pub fn jfk_16k() -> Vec<f32> {
    sori::audio::decode::load_16k_mono(&data_file("jfk.wav")).expect("jfk.wav decodes")
}

/// Runs a program the tests need, failing loudly with how to install it.
pub fn require_tool(program: &str, install: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is required by this test; install it with `{install}` (./test.sh does)"
    );
}

/// Generated audio files live here (git-ignored).
pub fn scratch_dir() -> PathBuf {
    let dir = repo_root().join("target/test-audio");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Converts with sox (`sox IN [opts] OUT`), once.
pub fn sox(input: &Path, output_name: &str, args: &[&str]) -> PathBuf {
    require_tool("sox", "apt-get install -y sox libsox-fmt-mp3");
    let out = scratch_dir().join(output_name);
    if !out.is_file() {
        let status = Command::new("sox")
            .arg(input)
            .args(args)
            .arg(&out)
            .status()
            .expect("sox runs");
        assert!(status.success(), "sox failed to make {}", out.display());
    }
    out
}

/// English speech from espeak-ng, as a 16 kHz mono wav.
pub fn espeak(name: &str, voice: &str, text: &str) -> PathBuf {
    require_tool("espeak-ng", "apt-get install -y espeak-ng");
    let raw = scratch_dir().join(format!("{name}.raw.wav"));
    if !raw.is_file() {
        let status = Command::new("espeak-ng")
            .args(["-v", voice, "-s", "150", "-w"])
            .arg(&raw)
            .arg(text)
            .status()
            .expect("espeak-ng runs");
        assert!(status.success());
    }
    sox(
        &raw,
        &format!("{name}.wav"),
        &["-r", "16000", "-c", "1", "-b", "16"],
    )
}

pub fn to_s16le(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect()
}

pub fn to_f32le(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// JFK and five LibriVox clips joined with pauses (~48 s; `scripts/peers.sh audio`) and its
/// reference: the speech the SDK and revision tests stream.
pub fn joined_speech() -> (PathBuf, String) {
    let wav = repo_root().join("data/bench/peers/joined.wav");
    assert!(
        wav.is_file(),
        "{} is missing; fetch it with `./scripts/peers.sh audio` (./test.sh does)",
        wav.display()
    );
    let reference = std::fs::read_to_string(wav.with_extension("txt")).unwrap();
    (wav, reference)
}

/// Deterministic white noise at the given RMS.
pub fn white_noise(samples: usize, rms: f32) -> Vec<f32> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..samples)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let uniform = (state >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0;
            uniform * rms * 3f32.sqrt()
        })
        .collect()
}

/// One server per test binary, on its own runtime thread, shared by the tests in it.
pub fn server() -> SocketAddr {
    static SERVER: OnceLock<SocketAddr> = OnceLock::new();
    *SERVER.get_or_init(|| {
        let mut config = test_config();
        config.stt.threads = 2;
        start_server(config)
    })
}

/// The configuration of a test server. It decodes on one thread: the test binary runs two
/// tests at once beside the shared server (two threads), and ggml's spinning barriers make two
/// servers of two threads each on 2 cores stall each other's decodes 40× over
/// (docs/benchmarks.md, "Sharing the cores"). A revision test's own server once held a message
/// past the two minutes a test waits that way.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.stt.model = model_path();
    config.stt.workers = 1;
    config.stt.threads = 1;
    config.server.outputs_dir = scratch_dir().join("outputs");
    config.server.status_interval_ms = 500;
    // Tests of many modules share this server and post files at once; one file job per worker
    // (the default) would refuse them with 503. tests/it/hostile_files.rs tests that limit.
    config.server.max_file_jobs = 32;
    // Many modules' sessions at once, more than the automatic limit of a 2-core machine.
    config.server.max_sessions = 32;
    // Keyword tests start their own server with a real LLM (tests/keywords.rs).
    config.llm.enabled = false;
    config
}

/// Starts a server with `config` on 127.0.0.1:0 and returns its address; it serves until
/// the test binary exits.
pub fn start_server(config: Config) -> SocketAddr {
    start_server_with(config, Decoders::Whisper)
}

/// A server that loads no model: its decoders are the scripted test double. For tests of
/// what does not transcribe (REST, RAG, caches); nothing it decodes is the product's.
pub fn start_server_without_whisper(config: Config) -> SocketAddr {
    start_server_with(config, Decoders::Scripted)
}

fn start_server_with(config: Config, decoders: Decoders) -> SocketAddr {
    // RUST_LOG=sori=debug shows the server's log while debugging a test.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    LocalServer::spawn_detached_with(config, decoders).expect("the server starts")
}

pub async fn connect(addr: SocketAddr, query: &str) -> Ws {
    ws_client::connect(addr, query).await.expect("ws connects")
}

/// Connects and returns the socket with its `ready` message.
pub async fn connect_ready(addr: SocketAddr, query: &str) -> (Ws, Value) {
    let mut ws = connect(addr, query).await;
    let ready = next_json(&mut ws).await.expect("a first message");
    assert_eq!(
        ready["type"], "ready",
        "first message must be ready: {ready}"
    );
    (ws, ready)
}

/// Next JSON text message, skipping `status`; `None` when the socket closed.
pub async fn next_json<S: Io>(ws: &mut WebSocketStream<S>) -> Option<Value> {
    loop {
        match ws_client::recv_as::<Value, _>(ws, ANSWER_WITHIN).await {
            Ok(Incoming::Message(v)) if v["type"] == "status" => {}
            Ok(Incoming::Message(v)) => return Some(v),
            Ok(Incoming::Closed(_)) => return None,
            Err(WsClientError::Timeout(_)) => panic!("server answers within 2 minutes"),
            Err(WsClientError::BadMessage { text, source }) => {
                panic!("server sends JSON: {source}: {text}")
            }
            Err(_) => return None,
        }
    }
}

/// Streams PCM in `chunk_ms` frames, optionally paced in real time.
pub async fn send_pcm<S: Io>(
    ws: &mut WebSocketStream<S>,
    bytes: &[u8],
    bytes_per_second: usize,
    chunk_ms: usize,
    paced: bool,
) {
    let chunk = (bytes_per_second * chunk_ms / 1000).max(1);
    let pace = paced.then(|| Duration::from_millis(chunk_ms as u64));
    let started = ws_client::send_pcm(ws, bytes, chunk, pace).await.unwrap();
    if let Some(pace) = pace {
        // Until the last frame's audio has "happened", as a live microphone would.
        let frames = bytes.len().div_ceil(chunk) as u32;
        tokio::time::sleep_until((started + pace * frames).into()).await;
    }
}

pub async fn send_json<S: Io>(ws: &mut WebSocketStream<S>, value: Value) {
    ws_client::send_json(ws, &value).await.unwrap();
}

/// Sends `stop` and collects every message up to and including `closed`; asserts the socket
/// then closes normally.
pub async fn stop_and_collect<S: Io>(ws: &mut WebSocketStream<S>) -> Vec<Value> {
    ws_client::send_stop(ws).await.unwrap();
    collect_until_closed(ws).await
}

pub async fn collect_until_closed<S: Io>(ws: &mut WebSocketStream<S>) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(v) = next_json(ws).await {
        let done = v["type"] == "closed";
        out.push(v);
        if done {
            break;
        }
    }
    out
}

pub fn finals(messages: &[Value]) -> Vec<&Value> {
    messages.iter().filter(|m| m["type"] == "final").collect()
}

pub fn final_text(messages: &[Value]) -> String {
    finals(messages)
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn errors(messages: &[Value]) -> Vec<&Value> {
    messages.iter().filter(|m| m["type"] == "error").collect()
}
pub mod faulty_llm;
pub mod servers;
pub mod tls;
pub mod webdriver;

/// Every JSON message up to the close frame, and the close frame's code and reason.
pub async fn until_close(ws: &mut Ws) -> (Vec<Value>, Option<(u16, String)>) {
    let mut messages = Vec::new();
    loop {
        let next =
            tokio::time::timeout(Duration::from_secs(120), futures_util::StreamExt::next(ws))
                .await
                .expect("the server answers within 2 minutes");
        match next {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] != "status" {
                    messages.push(v);
                }
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                return (
                    messages,
                    frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                );
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (messages, None),
        }
    }
}
