//! Live finals revised in windows (`revision` events) with the real Whisper model, on JFK and
//! five LibriVox clips in white noise, where a final decoded alone and the same utterance
//! decoded beside the others differ: the revised live transcript is the file transcript of the
//! same audio.

use std::net::SocketAddr;
use std::sync::OnceLock;

use crate::support::*;
use serde_json::Value;
use sori::audio::noise::{mix_at_snr, white_noise};

/// The joined speech with white noise at 5 dB SNR (a fixed seed), 16 kHz, and its reference.
fn noisy_speech() -> (Vec<f32>, String) {
    let (wav, reference) = joined_speech();
    let speech = sori::audio::decode::load_16k_mono(&wav).unwrap();
    let noise = white_noise(speech.len(), 19);
    let mixed = mix_at_snr(&speech, &noise, 5.0).expect("the clip has speech");
    (mixed, reference)
}

/// A server of this module's own: on the server the other modules share, their requests would
/// cancel the revision at the end of the stream (a final or partial that finds no free decoder
/// does), as they should.
fn own_server() -> SocketAddr {
    static SERVER: OnceLock<SocketAddr> = OnceLock::new();
    *SERVER.get_or_init(|| start_server(test_config()))
}

/// Streams `samples` as fast as possible and returns every message up to `closed`.
async fn stream(addr: SocketAddr, query: &str, samples: &[f32]) -> Vec<Value> {
    let (mut ws, _) = connect_ready(addr, query).await;
    send_pcm(&mut ws, &to_s16le(samples), 32_000, 100, false).await;
    stop_and_collect(&mut ws).await
}

/// The segments' texts as a client shows them: each final, replaced by its revision.
fn revised_text(messages: &[Value]) -> String {
    let mut texts = std::collections::BTreeMap::new();
    for m in messages {
        if m["type"] == "final" || m["type"] == "revision" {
            texts.insert(
                m["segment_id"].as_u64().unwrap(),
                m["text"].as_str().unwrap(),
            );
        }
    }
    texts
        .into_values()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn of_type<'a>(messages: &'a [Value], kind: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| m["type"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_finals_in_noise_are_revised_into_the_file_transcript() {
    let (audio, reference) = noisy_speech();
    let messages = stream(own_server(), "?language=en", &audio).await;
    assert!(errors(&messages).is_empty(), "{:?}", errors(&messages));
    let revisions = of_type(&messages, "revision");
    let first_pass = final_text(&messages);
    let revised = revised_text(&messages);
    eprintln!("first pass: {first_pass}\nrevised:    {revised}");
    assert!(
        !revisions.is_empty(),
        "no final changed when decoded with its neighbours: {first_pass}"
    );
    // Each revision comes after its segment's final and names a segment the session had.
    for r in &revisions {
        let id = r["segment_id"].as_u64().unwrap();
        let at = messages.iter().position(|m| std::ptr::eq(m, *r)).unwrap();
        assert!(
            messages[..at]
                .iter()
                .any(|m| m["type"] == "final" && m["segment_id"] == id),
            "revision of segment {id} before its final: {messages:?}"
        );
        assert!(r["words"].is_array() && r["language"] == "en", "{r}");
    }
    let closed = messages.last().unwrap();
    assert_eq!(closed["type"], "closed");
    assert_eq!(
        closed["summary"]["revisions"].as_u64(),
        Some(revisions.len() as u64)
    );

    // The same audio as a file: its window holds the same utterances, so the same text.
    let wav = scratch_dir().join("joined-white-5db.wav");
    sori::audio::wav::write_wav_16k(&wav, &audio).unwrap();
    sori::keywords::install_tls_provider();
    let body: Value = reqwest::Client::new()
        .post(format!(
            "http://{}/api/transcribe?language=en",
            own_server()
        ))
        .body(std::fs::read(&wav).unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let file_text = body["text"].as_str().unwrap();
    let norm = |t: &str| sori::keywords::normalize(t);
    assert_eq!(
        norm(&revised),
        norm(file_text),
        "revised live text and file text differ"
    );
    let (live_wer, revised_wer) = (
        sori::eval::wer(&reference, &first_pass),
        sori::eval::wer(&reference, &revised),
    );
    eprintln!(
        "WER first pass {:.1} %, revised {:.1} %",
        live_wer * 100.0,
        revised_wer * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_asks_for_no_revisions_gets_finals_only() {
    let messages = stream(server(), "?language=en&revisions=false", &noisy_speech().0).await;
    assert!(of_type(&messages, "revision").is_empty(), "{messages:?}");
    assert!(!finals(&messages).is_empty());
    let closed = messages.last().unwrap();
    assert_eq!(closed["summary"]["revisions"].as_u64(), Some(0));
}
