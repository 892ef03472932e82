//! Drop-in compatibility (docs/compatibility.md): Deepgram's live API at `/v1/listen` and
//! OpenAI's Realtime transcription at `/v1/realtime`, each driven by the official client
//! (deepgram-sdk, @deepgram/sdk, openai in Python and in Node over wss, LiveKit Agents'
//! Deepgram plugin, Pipecat's Deepgram and OpenAI Realtime STT services; installed by
//! `scripts/stt-sdks.sh fetch`) pointed at sori by its documented base-URL option, streaming
//! real speech in real time. The finals' WER is compared with sori's own `/ws` on the same
//! audio, streamed at the same time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::tls::{make_certificate, start_tls_server};
use crate::support::*;
use sori::harness::ws_client;

const JFK_TEXT: &str = "And so my fellow Americans, ask not what your country can do for you, \
                        ask what you can do for your country.";

fn client_script(name: &str) -> PathBuf {
    repo_root().join("tests/it/clients").join(name)
}

/// Runs `scripts/stt-sdks.sh python|node SCRIPT ARGS` and parses the JSON it prints; fails
/// loudly (naming the fetch) when the SDKs are missing.
fn run_client(runtime: &str, script: &str, args: &[&str]) -> Value {
    run_client_with_env(runtime, script, args, &[])
}

/// [`run_client`] with environment variables set for the client process.
fn run_client_with_env(runtime: &str, script: &str, args: &[&str], env: &[(&str, &Path)]) -> Value {
    let sdks = repo_root().join("scripts/stt-sdks.sh");
    let status = Command::new(&sdks).arg("status").output().unwrap();
    assert!(
        status.status.success() && (runtime != "node" || status_has_node(&status.stdout)),
        "the STT client SDKs are missing ({}); install them with `./scripts/stt-sdks.sh fetch` \
         (./test.sh does)",
        String::from_utf8_lossy(&status.stdout)
    );
    let output = Command::new(&sdks)
        .arg(runtime)
        .arg(client_script(script))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
}

fn status_has_node(stdout: &[u8]) -> bool {
    String::from_utf8_lossy(stdout)
        .lines()
        .any(|l| l.starts_with("node") && !l.contains("not installed") && !l.contains("skipped"))
}

/// The joined speech at 24 kHz (sox's resampler), the rate OpenAI's Realtime API takes: the
/// SDK and sori's own `/ws` are then sent the very same samples.
fn joined_speech_24k() -> (PathBuf, String) {
    let (wav, reference) = joined_speech();
    (
        sox(
            &wav,
            "joined-24k.wav",
            &["-r", "24000", "-c", "1", "-b", "16"],
        ),
        reference,
    )
}

/// The sample rate and the s16le samples of a mono 16-bit WAV (its `data` chunk).
fn wav_pcm(wav: &Path) -> (u32, Vec<u8>) {
    let bytes = std::fs::read(wav).unwrap();
    assert_eq!(&bytes[..4], b"RIFF", "{} is not a WAV", wav.display());
    let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if &bytes[at..at + 4] == b"data" {
            let end = (at + 8 + size).min(bytes.len());
            return (rate, bytes[at + 8..end].to_vec());
        }
        at += 8 + size + size % 2;
    }
    panic!("{} has no data chunk", wav.display());
}

/// sori's own `/ws` finals for `wav`, its samples streamed unchanged in real time (the same
/// bytes at the same rate as the SDK under test sends), then a second of silence; read while
/// sending, so each final's latency after its utterance's end (s) is measured as the SDKs'
/// are.
async fn ws_transcript(addr: std::net::SocketAddr, wav: &Path) -> (String, Vec<f64>) {
    let (rate, mut pcm) = wav_pcm(wav);
    let query = format!("?language=en&partials=true&sample_rate={rate}");
    let (ws, _) = connect_ready(addr, &query).await;
    let (mut sink, mut source) = futures_util::StreamExt::split(ws);
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut finals = Vec::new();
        while let Ok(ws_client::Incoming::Message(message)) =
            ws_client::recv_as::<Value, _>(&mut source, Duration::from_secs(120)).await
        {
            if message["type"] == "final" {
                let latency = started.elapsed().as_secs_f64() - message["end"].as_f64().unwrap();
                finals.push((message["text"].as_str().unwrap().to_owned(), latency));
            }
            if message["type"] == "closed" {
                break;
            }
        }
        finals
    });
    let bytes_per_second = rate as usize * 2;
    pcm.extend(vec![0u8; bytes_per_second]);
    let frame = Duration::from_millis(100);
    ws_client::send_pcm(&mut sink, &pcm, bytes_per_second / 10, Some(frame))
        .await
        .unwrap();
    // Until the last frame's audio has "happened", as a live microphone would.
    tokio::time::sleep(frame).await;
    ws_client::send_stop(&mut sink).await.unwrap();
    let finals = reader.await.unwrap();
    let text: Vec<&str> = finals.iter().map(|(text, _)| text.as_str()).collect();
    (text.join(" "), finals.iter().map(|(_, l)| *l).collect())
}

/// The median of `values` (seconds), for the latency lines the tests print.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn wer(reference: &str, hypothesis: &str) -> f64 {
    sori_score::wer(reference, hypothesis)
}

fn of_type<'a>(messages: &'a [Value], kind: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| m["type"] == kind).collect()
}

/// One official client streaming at a time: each is a Python or Node process beside its
/// real-time streams, and several at once on two cores starve the decoders (seen: interim
/// results and a last final that did not come within a minute). The other modules' tests
/// still run beside them.
static SDK_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deepgram_python_sdk_gets_interim_and_final_results_as_from_deepgram() {
    let _turn = SDK_TURN.lock().await;
    // A server of its own, with the layout sori picks for two cores (two one-thread workers):
    // partials are decoded only when a decoder is idle, which the shared server's one worker
    // seldom is while the other modules stream to it.
    let mut config = test_config();
    config.stt.workers = 2;
    config.stt.threads = 1;
    let addr = start_server(config);
    let (wav, reference) = joined_speech();
    let host = addr.to_string();
    let wav_arg = wav.display().to_string();
    let sdk = tokio::task::spawn_blocking(move || {
        run_client("python", "deepgram_live.py", &[&host, &wav_arg, "any-key"])
    });
    let (ws_text, ws_latencies) = ws_transcript(addr, &wav).await;
    let out = sdk.await.unwrap();
    let messages = out["messages"].as_array().unwrap();
    assert!(
        messages.iter().all(|m| !m["type"].is_null()),
        "every message parses as a Deepgram type: {out}"
    );
    let results = of_type(messages, "Results");
    let finals: Vec<&&Value> = results.iter().filter(|r| r["is_final"] == true).collect();
    let interims = results.iter().filter(|r| r["is_final"] == false).count();
    // Interim results depend on decoder time left over by the other tests' streams; finals
    // never do. At least one shows that partials become `is_final: false` results.
    assert!(interims >= 1, "interim results while speaking: {interims}");
    let text: Vec<&str> = finals
        .iter()
        .map(|r| {
            r["channel"]["alternatives"][0]["transcript"]
                .as_str()
                .unwrap()
        })
        .collect();
    let sdk_wer = wer(&reference, &text.join(" "));
    let ws_wer = wer(&reference, &ws_text);
    println!(
        "deepgram sdk WER {:.1} % vs /ws {:.1} %",
        sdk_wer * 100.0,
        ws_wer * 100.0
    );
    assert!(
        sdk_wer <= ws_wer + 0.01,
        "{sdk_wer} vs /ws {ws_wer}: {text:?}"
    );
    // A pause between clips ends a turn: speech_final on most finals (six clips).
    let speech_finals = finals.iter().filter(|r| r["speech_final"] == true).count();
    assert!(
        speech_finals >= 5,
        "speech_final at the pauses: {speech_finals}"
    );
    for r in &finals {
        let words = r["channel"]["alternatives"][0]["words"].as_array().unwrap();
        if r["channel"]["alternatives"][0]["transcript"] == "" {
            // Deepgram confirms a Finalize that found nothing left with an empty final.
            assert_eq!(
                r["from_finalize"], true,
                "only a Finalize's answer is empty: {r}"
            );
            continue;
        }
        assert!(!words.is_empty(), "{r}");
        assert!(
            words
                .iter()
                .all(|w| w["punctuated_word"].is_string()
                    && w["end"].as_f64() >= w["start"].as_f64())
        );
        assert!(r["metadata"]["request_id"].is_string(), "{r}");
    }
    // vad_events and utterance_end_ms: speech starts and utterance ends are reported.
    assert!(of_type(messages, "SpeechStarted").len() >= 5, "{out}");
    assert!(!of_type(messages, "UtteranceEnd").is_empty(), "{out}");
    // CloseStream: Metadata last, with the audio's length.
    let metadata = of_type(messages, "Metadata");
    assert_eq!(metadata.len(), 1, "{out}");
    let sent = out["sent_s"].as_f64().unwrap();
    assert!(
        (metadata[0]["duration"].as_f64().unwrap() - sent).abs() < 0.2,
        "{}",
        metadata[0]
    );
    assert_eq!(metadata[0]["sha256"].as_str().unwrap().len(), 64);
    // End-of-speech → final latency, beside /ws's (printed for docs/compatibility.md).
    let latencies: Vec<f64> = finals
        .iter()
        .filter(|r| r["channel"]["alternatives"][0]["transcript"] != "")
        .map(|r| {
            let end = r["start"].as_f64().unwrap() + r["duration"].as_f64().unwrap();
            r["received_s"].as_f64().unwrap() - end
        })
        .collect();
    println!(
        "final latency after the utterance's end, median: deepgram sdk {:.2} s {latencies:.2?}, /ws {:.2} s {ws_latencies:.2?}",
        median(&latencies),
        median(&ws_latencies)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deepgram_finalize_flushes_with_from_finalize_and_close_stream_ends_with_1000() {
    // The JS SDK (Node): it reconnects on any close but 1000, so the code matters.
    let _turn = SDK_TURN.lock().await;
    let addr = server();
    let wav = data_file("jfk.wav").display().to_string();
    let host = addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_client("node", "deepgram_live.js", &[&host, &wav, "k"])
    })
    .await
    .unwrap();
    assert_eq!(out["close"], 1000, "{out}");
    let messages = out["messages"].as_array().unwrap();
    let finals: Vec<&Value> = of_type(messages, "Results")
        .into_iter()
        .filter(|r| r["is_final"] == true)
        .collect();
    let text: Vec<&str> = finals
        .iter()
        .map(|r| {
            r["channel"]["alternatives"][0]["transcript"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(wer(JFK_TEXT, &text.join(" ")) <= 0.05, "{text:?}");
    // The clip ends on speech: Finalize flushed the last utterance.
    assert!(
        finals.iter().any(|r| r["from_finalize"] == true),
        "a final from Finalize: {out}"
    );
    assert_eq!(of_type(messages, "Metadata").len(), 1, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_deepgram_plugin_produces_final_transcripts_from_sori() {
    let _turn = SDK_TURN.lock().await;
    let addr = server();
    let wav = data_file("jfk.wav").display().to_string();
    let host = addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_client("python", "livekit_stt.py", &[&host, &wav, "k"])
    })
    .await
    .unwrap();
    let events = out["events"].as_array().unwrap();
    let finals: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "FINAL_TRANSCRIPT")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(wer(JFK_TEXT, &finals.join(" ")) <= 0.05, "{out}");
    for kind in ["START_OF_SPEECH", "END_OF_SPEECH"] {
        assert!(events.iter().any(|e| e["type"] == kind), "{kind}: {out}");
    }
    assert!(!events.iter().any(|e| e["type"] == "TIMEOUT"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipecat_deepgram_and_openai_services_produce_final_transcripts_from_sori() {
    let _turn = SDK_TURN.lock().await;
    let addr = server();
    for service in ["deepgram", "openai"] {
        let wav = data_file("jfk.wav").display().to_string();
        let host = addr.to_string();
        let out = tokio::task::spawn_blocking(move || {
            run_client("python", "pipecat_stt.py", &[&host, &wav, "k", service])
        })
        .await
        .unwrap();
        let frames = out["frames"].as_array().unwrap();
        assert!(!frames.iter().any(|f| f["type"] == "error"), "{out}");
        let finals: Vec<&Value> = frames.iter().filter(|f| f["type"] == "final").collect();
        let text: Vec<&str> = finals.iter().map(|f| f["text"].as_str().unwrap()).collect();
        assert!(
            wer(JFK_TEXT, &text.join(" ")) <= 0.05,
            "{service}: {text:?}"
        );
        if service == "deepgram" {
            // The clip ends 0.2 s after the last word: the VAD frame's Finalize brought the
            // last final, confirmed by `from_finalize`.
            assert_eq!(finals.last().unwrap()["finalized"], true, "{out}");
        } else {
            // No server VAD: the local VAD's turn end committed the whole clip as one turn.
            assert_eq!(finals.len(), 1, "{out}");
        }
    }
}

/// Per item: the deltas joined, and the completed transcript.
fn realtime_items(events: &[Value]) -> Vec<(String, String)> {
    let mut items: Vec<(String, String, String)> = Vec::new();
    for e in events {
        let id = e["item_id"].as_str().unwrap_or_default().to_owned();
        match e["type"].as_str().unwrap_or_default() {
            "conversation.item.input_audio_transcription.delta" => {
                match items.iter_mut().find(|(i, _, _)| *i == id) {
                    Some(item) => item.1.push_str(e["delta"].as_str().unwrap()),
                    None => {
                        items.push((id, e["delta"].as_str().unwrap().to_owned(), String::new()))
                    }
                }
            }
            "conversation.item.input_audio_transcription.completed" => {
                let transcript = e["transcript"].as_str().unwrap().to_owned();
                match items.iter_mut().find(|(i, _, _)| *i == id) {
                    Some(item) => item.2 = transcript,
                    None => items.push((id, String::new(), transcript)),
                }
            }
            _ => {}
        }
    }
    items.into_iter().map(|(_, d, c)| (d, c)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_realtime_sdk_gets_deltas_that_add_up_to_each_completed_transcript() {
    let _turn = SDK_TURN.lock().await;
    let addr = server();
    let (wav, reference) = joined_speech_24k();
    let host = addr.to_string();
    let wav_arg = wav.display().to_string();
    let sdk = tokio::task::spawn_blocking(move || {
        run_client(
            "python",
            "openai_realtime.py",
            &[&host, &wav_arg, "k", "vad", "ga"],
        )
    });
    let (ws_text, ws_latencies) = ws_transcript(addr, &wav).await;
    let out = sdk.await.unwrap();
    check_realtime_run(
        "openai realtime sdk",
        &out,
        &reference,
        &(ws_text, ws_latencies),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_node_sdk_transcribes_over_wss_with_the_certificate_trusted() {
    // The npm `openai` Realtime client opens only wss://: sori serves the same state on a TLS
    // port beside the plain one, and Node trusts the certificate by NODE_EXTRA_CA_CERTS.
    let _turn = SDK_TURN.lock().await;
    let (cert, key) = make_certificate(&scratch_dir().join("compat-tls"));
    let mut config = test_config();
    config.stt.workers = 2;
    config.stt.threads = 1;
    let server = start_tls_server(config, &cert, &key);
    let (wav, reference) = joined_speech_24k();
    let host = format!("localhost:{}", server.tls.port());
    let wav_arg = wav.display().to_string();
    let sdk = tokio::task::spawn_blocking(move || {
        run_client_with_env(
            "node",
            "openai_realtime.js",
            &[&host, &wav_arg, "k"],
            &[("NODE_EXTRA_CA_CERTS", &cert)],
        )
    });
    let ws = ws_transcript(server.plain, &wav).await;
    let out = sdk.await.unwrap();
    assert!(
        !out["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "client_error"),
        "{out}"
    );
    check_realtime_run("openai node sdk (wss)", &out, &reference, &ws);
}

/// What a Realtime client streaming the joined speech with server VAD must have seen: session
/// events, one item per utterance whose deltas add up to its transcript, WER within a point of
/// sori's own `/ws` (`ws`: its text and latencies, same audio, same time), a speech event
/// trail per item; prints the WER and the end-of-speech → completed latencies beside `/ws`'s.
fn check_realtime_run(client: &str, out: &Value, reference: &str, ws: &(String, Vec<f64>)) {
    let (ws_text, ws_latencies) = ws;
    let events = out["events"].as_array().unwrap();
    assert_eq!(events[0]["type"], "session.created", "{}", events[0]);
    assert!(events.iter().any(|e| e["type"] == "session.updated"));
    assert!(!events.iter().any(|e| e["type"] == "error"), "{out}");
    let items = realtime_items(events);
    assert!(items.len() >= 5, "one item per utterance: {items:?}");
    for (deltas, completed) in &items {
        assert_eq!(
            deltas, completed,
            "deltas are increments of the completed text"
        );
    }
    let text: Vec<&str> = items.iter().map(|(_, c)| c.as_str()).collect();
    let sdk_wer = wer(reference, &text.join(" "));
    let ws_wer = wer(reference, ws_text);
    println!(
        "{client} WER {:.1} % vs /ws {:.1} %",
        sdk_wer * 100.0,
        ws_wer * 100.0
    );
    assert!(
        sdk_wer <= ws_wer + 0.01,
        "{sdk_wer} vs /ws {ws_wer}: {text:?}"
    );
    for kind in [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
    ] {
        assert!(
            events.iter().filter(|e| e["type"] == kind).count() >= items.len(),
            "{kind}: {out}"
        );
    }
    let completed: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "conversation.item.input_audio_transcription.completed")
        .collect();
    assert!(
        completed
            .iter()
            .all(|c| c["usage"]["seconds"].as_f64() > Some(0.0))
    );
    // End-of-speech → completed latency: `speech_stopped`'s `audio_end_ms` is counted from
    // the first audio the client sent.
    let audio_started = out["audio_started_s"].as_f64().unwrap();
    let latencies: Vec<f64> = completed
        .iter()
        .filter_map(|c| {
            let stopped = events.iter().find(|e| {
                e["type"] == "input_audio_buffer.speech_stopped" && e["item_id"] == c["item_id"]
            })?;
            let end_s = stopped["audio_end_ms"].as_f64()? / 1000.0;
            Some(c["received_s"].as_f64()? - audio_started - end_s)
        })
        .collect();
    assert_eq!(
        latencies.len(),
        completed.len(),
        "speech_stopped for each item"
    );
    println!(
        "final latency after the utterance's end, median: {client} {:.2} s {latencies:.2?}, /ws {:.2} s {ws_latencies:.2?}",
        median(&latencies),
        median(ws_latencies)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_realtime_beta_client_commits_turns_itself() {
    let _turn = SDK_TURN.lock().await;
    let addr = server();
    let wav = data_file("jfk.wav").display().to_string();
    let host = addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_client(
            "python",
            "openai_realtime.py",
            &[&host, &wav, "k", "manual", "beta"],
        )
    })
    .await
    .unwrap();
    let events = out["events"].as_array().unwrap();
    assert_eq!(
        events[0]["type"], "transcription_session.created",
        "{}",
        events[0]
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "transcription_session.updated")
    );
    // No server VAD: no speech events, one committed item for the whole clip.
    assert!(
        !events
            .iter()
            .any(|e| e["type"] == "input_audio_buffer.speech_started"),
        "{out}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "input_audio_buffer.committed")
            .count(),
        1,
        "{out}"
    );
    let items = realtime_items(events);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].0, items[0].1);
    assert!(wer(JFK_TEXT, &items[0].1) <= 0.05, "{items:?}");
}

/// A WebSocket upgrade request to `path` with `headers`, over a plain socket: the HTTP status
/// and the JSON body of a refusal (`Value::Null` for a 101).
async fn handshake(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap_or(0);
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response);
            let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                head.starts_with("HTTP/1.1 101")
                    || head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .is_some_and(|len| body.len() >= len)
            });
            if n == 0 || complete {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_in_each_protocols_shape() {
    let mut config = test_config();
    config.server.api_tokens = vec!["right-key".to_owned()];
    config.server.max_sessions = 1;
    let addr = start_server_without_whisper(config);
    // Deepgram: keys as `Token` (its SDKs) or `Bearer`; a wrong one is 401 with err_code.
    let (status, body) = handshake(addr, "/v1/listen", &[("authorization", "Token wrong")]).await;
    assert_eq!(
        (status, body["err_code"].as_str()),
        (401, Some("INVALID_AUTH")),
        "{body}"
    );
    let (status, body) = handshake(
        addr,
        "/v1/listen?encoding=opus",
        &[("authorization", "Token right-key")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["err_msg"].as_str().unwrap().contains("linear16"),
        "{body}"
    );
    // OpenAI: Bearer; a wrong one is 401 with OpenAI's error object.
    let (status, body) =
        handshake(addr, "/v1/realtime", &[("authorization", "Bearer wrong")]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
    // A full server: 429 in each shape.
    let (mut held, _) = tokio_tungstenite::connect_async(
        format!("ws://{addr}/v1/listen").into_client_request_with_auth("Token right-key"),
    )
    .await
    .unwrap();
    let (status, body) =
        handshake(addr, "/v1/listen", &[("authorization", "bearer right-key")]).await;
    assert_eq!(
        (status, body["err_code"].as_str()),
        (429, Some("TOO_MANY_REQUESTS")),
        "{body}"
    );
    let (status, body) = handshake(
        addr,
        "/v1/realtime",
        &[("authorization", "Bearer right-key")],
    )
    .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (429, Some("rate_limit_error")),
        "{body}"
    );
    let _ = futures_util::SinkExt::close(&mut held).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Adds an `Authorization` header to a WebSocket request.
trait WithAuth {
    fn into_client_request_with_auth(
        self,
        value: &str,
    ) -> tokio_tungstenite::tungstenite::handshake::client::Request;
}

impl WithAuth for String {
    fn into_client_request_with_auth(
        self,
        value: &str,
    ) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = self.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", value.parse().unwrap());
        request
    }
}

/// The next JSON text frame, within 10 s.
async fn next_text(ws: &mut Ws) -> Value {
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(10), futures_util::StreamExt::next(ws))
                .await
                .expect("an answer within 10 s")
                .expect("the socket stays open")
                .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = message {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn send_text(ws: &mut Ws, text: &str) {
    futures_util::SinkExt::send(ws, tokio_tungstenite::tungstenite::Message::text(text))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_each_protocols_own_error_and_the_session_goes_on() {
    let addr = start_server_without_whisper(test_config());
    // OpenAI Realtime: unknown events, bad base64, a format sori cannot take, binary frames.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/realtime"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await["type"], "session.created");
    for (event, code, param) in [
        (
            r#"{"type":"response.create","event_id":"c1"}"#,
            "invalid_value",
            "type",
        ),
        (
            r#"{"type":"input_audio_buffer.append","audio":"%%%"}"#,
            "invalid_value",
            "audio",
        ),
        (
            r#"{"type":"session.update","session":{"type":"transcription","audio":{"input":{"format":{"type":"audio/pcm","rate":96000}}}}}"#,
            "invalid_value",
            "session.audio.input.format.rate",
        ),
        (
            r#"{"type":"input_audio_buffer.commit"}"#,
            "input_audio_buffer_commit_empty",
            "",
        ),
        ("not json", "invalid_json", ""),
    ] {
        send_text(&mut ws, event).await;
        let error = next_text(&mut ws).await;
        assert_eq!(error["type"], "error", "{event}: {error}");
        assert_eq!(error["error"]["code"], code, "{event}: {error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        if !param.is_empty() {
            assert_eq!(error["error"]["param"], param, "{event}: {error}");
        }
        assert!(error["event_id"].is_string());
    }
    futures_util::SinkExt::send(
        &mut ws,
        tokio_tungstenite::tungstenite::Message::binary(vec![0u8; 64]),
    )
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws).await["error"]["code"], "invalid_event");
    // Still alive: a valid update is answered.
    send_text(
        &mut ws,
        r#"{"type":"session.update","session":{"type":"transcription"}}"#,
    )
    .await;
    assert_eq!(next_text(&mut ws).await["type"], "session.updated");

    // Deepgram: an unknown text message gets an Error; a frame of odd length too.
    let (mut dg, _) = tokio_tungstenite::connect_async(format!(
        "ws://{addr}/v1/listen?encoding=linear16&sample_rate=16000"
    ))
    .await
    .unwrap();
    send_text(&mut dg, r#"{"type":"Close"}"#).await;
    let error = next_text(&mut dg).await;
    assert_eq!(
        (error["type"].as_str(), error["variant"].as_str()),
        (Some("Error"), Some("invalid_message")),
        "{error}"
    );
    assert!(
        error["description"]
            .as_str()
            .unwrap()
            .contains("CloseStream"),
        "{error}"
    );
    futures_util::SinkExt::send(
        &mut dg,
        tokio_tungstenite::tungstenite::Message::binary(vec![0u8; 3]),
    )
    .await
    .unwrap();
    let error = next_text(&mut dg).await;
    assert_eq!(error["type"], "Error", "{error}");
    send_text(&mut dg, r#"{"type":"CloseStream"}"#).await;
    let metadata = next_text(&mut dg).await;
    assert_eq!(metadata["type"], "Metadata", "{metadata}");
}
