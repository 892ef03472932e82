//! Streaming over a real WebSocket with the real Whisper model: the JFK clip at 16 and 48 kHz,
//! in 20 ms and 100 ms chunks, paced and as fast as possible; silence and noise; concurrency;
//! stop and flush; transcript files.

use crate::support::*;
use serde_json::{Value, json};

const MAX_WER: f64 = 0.10;

/// Streams `samples` (mono, at `rate`) and returns every message up to `closed`.
async fn stream_clip(
    query: &str,
    samples: &[f32],
    rate: usize,
    f32le: bool,
    chunk_ms: usize,
    paced: bool,
) -> (Value, Vec<Value>) {
    let (mut ws, ready) = connect_ready(server(), query).await;
    let (bytes, bps) = if f32le {
        (to_f32le(samples), rate * 4)
    } else {
        (to_s16le(samples), rate * 2)
    };
    send_pcm(&mut ws, &bytes, bps, chunk_ms, paced).await;
    let messages = stop_and_collect(&mut ws).await;
    (ready, messages)
}

/// The checks every JFK run must pass: accuracy, ordering, ids, timestamps, words, closing.
fn check_jfk_run(label: &str, messages: &[Value]) {
    let text = final_text(messages);
    let wer = sori::eval::wer(JFK_REFERENCE, &text);
    eprintln!("{label}: WER {:.1} % — {text}", wer * 100.0);
    assert!(
        wer <= MAX_WER,
        "{label}: WER {:.1} % > 10 %: {text:?}",
        wer * 100.0
    );
    assert!(
        errors(messages).is_empty(),
        "{label}: {:?}",
        errors(messages)
    );

    let finals = finals(messages);
    let mut last_id = None;
    let mut last_end = 0.0;
    for f in &finals {
        let id = f["segment_id"].as_u64().unwrap();
        assert!(
            last_id.is_none_or(|l| id > l),
            "{label}: segment ids must increase"
        );
        last_id = Some(id);
        let (start, end) = (f["start"].as_f64().unwrap(), f["end"].as_f64().unwrap());
        assert!(
            start >= 0.0 && start < end && end <= 11.5,
            "{label}: bad span {start}..{end}"
        );
        assert!(start >= last_end - 1e-6, "{label}: finals overlap");
        last_end = end;
        assert_eq!(f["language"], "en");
        let words = f["words"].as_array().unwrap();
        assert!(!words.is_empty(), "{label}: final without words: {f}");
        for w in words {
            let (ws, we) = (w["start"].as_f64().unwrap(), w["end"].as_f64().unwrap());
            assert!(
                ws >= start - 1e-6 && we <= end + 1e-6 && ws <= we,
                "{label}: word {w} outside {start}..{end}"
            );
        }
    }
    // No partial for a segment after its final.
    let mut finalised = std::collections::HashSet::new();
    for m in messages {
        let id = m["segment_id"].as_u64();
        match m["type"].as_str() {
            Some("final") => {
                finalised.insert(id.unwrap());
            }
            Some("partial") => assert!(
                !finalised.contains(&id.unwrap()),
                "{label}: partial after final for segment {id:?}"
            ),
            _ => {}
        }
    }
    let closed = messages.last().expect("messages");
    assert_eq!(
        closed["type"], "closed",
        "{label}: last message must be closed"
    );
    assert_eq!(
        closed["summary"]["finals"].as_u64().unwrap() as usize,
        finals.len()
    );
    let audio_s = closed["summary"]["audio_seconds"].as_f64().unwrap();
    assert!(
        (audio_s - 11.0).abs() < 0.1,
        "{label}: audio_seconds {audio_s}"
    );
}

fn jfk_48k() -> Vec<f32> {
    let path = sox(&data_file("jfk.wav"), "jfk_48k.wav", &["-r", "48000"]);
    let decoded = sori::audio::decode::decode_file(&path).unwrap();
    assert_eq!(decoded.sample_rate, 48000);
    decoded.samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jfk_16k_in_20ms_chunks_paced_in_real_time() {
    let (ready, messages) = stream_clip(
        "?sample_rate=16000&encoding=pcm_s16le&language=en",
        &jfk_16k(),
        16000,
        false,
        20,
        true,
    )
    .await;
    assert_eq!(ready["options"]["sample_rate"], 16000);
    assert_eq!(ready["options"]["language"], "en");
    check_jfk_run("16k/20ms/paced", &messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partials_arrive_while_speaking_and_never_after_their_final() {
    // A server of its own, so its decoder is free when the cadence asks for a partial
    // (partials are optional work and yield to every final on a shared decoder).
    // Partials are skipped when decoding falls behind (by design), and CI machines are
    // loaded: the fast tiny.en model keeps spare decoder time so the cadence can be checked.
    let mut config = test_config();
    config.stt.model = repo_root().join("models/ggml-tiny.en.bin");
    assert!(
        config.stt.model.is_file(),
        "run `sori model fetch` (it writes ggml-tiny.en.bin)"
    );
    config.stt.partial_interval_ms = 500;
    // One thread: beside the shared server's two, a second two-thread decoder oversubscribes
    // the two cores, and ggml's spinning barriers then make each decoder step take seconds.
    config.stt.threads = 1;
    let addr = start_server(config);
    let (mut ws, _) = connect_ready(addr, "?language=en").await;
    let jfk = to_s16le(&jfk_16k());
    send_pcm(&mut ws, &jfk, 32000, 20, true).await;
    let messages = stop_and_collect(&mut ws).await;
    check_jfk_run("partials", &messages);
    let partials: Vec<_> = messages.iter().filter(|m| m["type"] == "partial").collect();
    assert!(
        !partials.is_empty(),
        "no partial results while speaking: {messages:?}"
    );
    for p in &partials {
        assert!(!p["text"].as_str().unwrap().is_empty());
        let id = &p["segment_id"];
        assert!(
            finals(&messages).iter().any(|f| &f["segment_id"] == id),
            "partial of a segment that never got a final: {p}"
        );
    }
    // Partials converge on the final: a segment's last partial is the start of its final
    // (the words said until then), whatever shortcuts partials take (drafts, the queue).
    let mut compared = 0;
    for fin in finals(&messages) {
        let Some(last) = partials
            .iter()
            .rfind(|p| p["segment_id"] == fin["segment_id"])
        else {
            continue;
        };
        let partial = last["text"].as_str().unwrap();
        let final_text = fin["text"].as_str().unwrap();
        let kept = in_order_share(partial, final_text);
        eprintln!("last partial {partial:?} / final {final_text:?}: {kept:.2} of its words kept");
        assert!(
            kept >= 0.7,
            "the last partial {partial:?} does not lead to the final {final_text:?}"
        );
        compared += 1;
    }
    assert!(compared > 0, "no segment had both partials and a final");
}

/// The share of `partial`'s words that appear, in the same order, in `final_text` (longest
/// common subsequence of lowercased words without punctuation).
fn in_order_share(partial: &str, final_text: &str) -> f64 {
    let words = |text: &str| -> Vec<String> {
        text.split_whitespace()
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric())
                    .collect::<String>()
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    let (p, f) = (words(partial), words(final_text));
    if p.is_empty() {
        return 0.0;
    }
    let mut row = vec![0usize; f.len() + 1];
    for pw in &p {
        let mut diagonal = 0;
        for (j, fw) in f.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if pw == fw {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[f.len()] as f64 / p.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jfk_48k_in_20ms_chunks_paced_in_real_time() {
    let (_, messages) = stream_clip(
        "?sample_rate=48000&language=en",
        &jfk_48k(),
        48000,
        false,
        20,
        true,
    )
    .await;
    check_jfk_run("48k/20ms/paced", &messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jfk_16k_in_100ms_chunks_as_fast_as_possible() {
    let (_, messages) = stream_clip("?language=en", &jfk_16k(), 16000, false, 100, false).await;
    check_jfk_run("16k/100ms/fast", &messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jfk_48k_f32_in_100ms_chunks_as_fast_as_possible() {
    let (ready, messages) = stream_clip(
        "?sample_rate=48000&encoding=pcm_f32le&language=en",
        &jfk_48k(),
        48000,
        true,
        100,
        false,
    )
    .await;
    assert_eq!(ready["options"]["encoding"], "pcm_f32le");
    check_jfk_run("48k/f32/100ms/fast", &messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jfk_as_base64_text_frames_in_the_original_form() {
    use base64::Engine as _;
    let (mut ws, _) = connect_ready(server(), "?language=en").await;
    let bytes = to_s16le(&jfk_16k());
    for chunk in bytes.chunks(3200) {
        let audio = base64::engine::general_purpose::STANDARD.encode(chunk);
        send_json(&mut ws, json!({"type": "audio", "audio": audio})).await;
    }
    let messages = stop_and_collect(&mut ws).await;
    check_jfk_run("base64", &messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stereo_44k1_is_downmixed_and_resampled() {
    let path = sox(
        &data_file("jfk.wav"),
        "jfk_44k1_stereo.wav",
        &["-r", "44100", "-c", "2"],
    );
    let raw = std::fs::read(&path).unwrap();
    // Canonical 44-byte header written by sox; the rest is interleaved s16le.
    let pcm = &raw[44..];
    let (mut ws, ready) =
        connect_ready(server(), "?sample_rate=44100&channels=2&language=en").await;
    assert_eq!(ready["options"]["channels"], 2);
    send_pcm(&mut ws, pcm, 44100 * 4, 100, false).await;
    let messages = stop_and_collect(&mut ws).await;
    check_jfk_run("44.1k/stereo", &messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_seconds_of_silence_give_no_final() {
    let (_, messages) = stream_clip(
        "?language=ko&filtered=true",
        &vec![0.0; 16000 * 30],
        16000,
        false,
        100,
        false,
    )
    .await;
    assert!(
        finals(&messages).is_empty(),
        "silence produced text: {messages:?}"
    );
    assert_eq!(messages.last().unwrap()["type"], "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_seconds_of_white_noise_give_no_final() {
    for language in ["ko", "en"] {
        let noise = white_noise(16000 * 30, 0.1);
        let (_, messages) = stream_clip(
            &format!("?language={language}&filtered=true"),
            &noise,
            16000,
            false,
            100,
            false,
        )
        .await;
        assert!(
            finals(&messages).is_empty(),
            "noise produced text ({language}): {messages:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_sessions_each_get_only_their_own_transcript() {
    let fox = espeak(
        "fox",
        "en-us",
        "The quick brown fox jumps over the lazy dog near the river bank.",
    );
    let fox = sori::audio::decode::load_16k_mono(&fox).unwrap();
    let jfk = jfk_16k();
    let a = stream_clip("?language=en", &jfk, 16000, false, 20, true);
    let b = stream_clip("?language=en", &fox, 16000, false, 20, true);
    let ((_, a), (_, b)) = tokio::join!(a, b);
    let (a, b) = (final_text(&a).to_lowercase(), final_text(&b).to_lowercase());
    assert!(
        a.contains("country") && !a.contains("fox"),
        "session A: {a}"
    );
    assert!(
        b.contains("fox") && !b.contains("country"),
        "session B: {b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_right_after_speech_flushes_the_last_utterance() {
    // No trailing silence: only `stop` can end the utterance.
    let (_, messages) = stream_clip("?language=en", &jfk_16k(), 16000, false, 100, false).await;
    let finals = finals(&messages);
    let last = *finals.last().expect("a final");
    assert!(
        last["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("country"),
        "{last}"
    );
    assert_eq!(last["speech_final"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_ends_the_open_utterance_before_stop() {
    let (mut ws, _) = connect_ready(server(), "?language=en&partials=false").await;
    send_pcm(&mut ws, &to_s16le(&jfk_16k()), 32000, 100, false).await;
    send_json(&mut ws, json!({"type": "flush"})).await;
    // Finals arrive without stop; wait for one ending near the end of the clip.
    let mut got = Vec::new();
    loop {
        let m = next_json(&mut ws).await.expect("open");
        let done = m["type"] == "final" && m["end"].as_f64().unwrap() > 10.0;
        got.push(m);
        if done {
            break;
        }
    }
    assert!(sori::eval::wer(JFK_REFERENCE, &final_text(&got)) <= MAX_WER);
    let rest = stop_and_collect(&mut ws).await;
    assert!(
        finals(&rest).is_empty(),
        "stop after flush must not repeat a final: {rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_writes_its_transcript_files() {
    let (ready, messages) = stream_clip("?language=en", &jfk_16k(), 16000, false, 100, false).await;
    let id = ready["session_id"].as_str().unwrap();
    let dir = scratch_dir().join("outputs");
    let jsonl = std::fs::read_to_string(dir.join(format!("{id}.jsonl"))).unwrap();
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Every final and revision, as sent and in the same order.
    let sent: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "final" || m["type"] == "revision")
        .collect();
    assert_eq!(lines.len(), sent.len());
    for (line, sent) in lines.iter().zip(sent) {
        assert_eq!(line, sent);
    }
    let srt = std::fs::read_to_string(dir.join(format!("{id}.srt"))).unwrap();
    assert!(
        srt.starts_with("1\n00:00:0") && srt.contains("country"),
        "{srt}"
    );
    let vtt = std::fs::read_to_string(dir.join(format!("{id}.vtt"))).unwrap();
    assert!(vtt.starts_with("WEBVTT") && vtt.contains("country"));
    let closed = messages.last().unwrap();
    assert_eq!(closed["summary"]["outputs"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_hallucination_is_dropped_and_reported_only_when_asked() {
    let clip = espeak("thanks", "en-us", "Thank you for watching.");
    let speech = sori::audio::decode::load_16k_mono(&clip).unwrap();
    let padded = [&vec![0.0f32; 8000][..], &speech, &vec![0.0f32; 8000]].concat();
    let (_, with) = stream_clip(
        "?language=en&filtered=true",
        &padded,
        16000,
        false,
        100,
        false,
    )
    .await;
    assert!(
        finals(&with).is_empty(),
        "the phrase must not come through as a final: {with:?}"
    );
    let filtered: Vec<_> = with.iter().filter(|m| m["type"] == "filtered").collect();
    assert_eq!(filtered.len(), 1, "{with:?}");
    assert_eq!(filtered[0]["reason"], "pattern");
    assert!(
        filtered[0]["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("watching")
    );
    assert_eq!(with.last().unwrap()["summary"]["filtered"], 1);

    let (_, without) = stream_clip("?language=en", &padded, 16000, false, 100, false).await;
    assert!(finals(&without).is_empty());
    assert!(
        !without.iter().any(|m| m["type"] == "filtered"),
        "not asked for: {without:?}"
    );
    assert_eq!(
        without.last().unwrap()["summary"]["filtered"],
        1,
        "still counted"
    );
}
