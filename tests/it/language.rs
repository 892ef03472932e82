//! Korean language handling on the real model: `auto` restricted to a language set, the
//! session's language locked once detected with confidence, unknown language codes refused
//! with an `error`, and a per-session initial prompt that changes what Whisper writes.
//!
//! The Korean audio is espeak-ng's Korean voice: synthetic, strongly accented speech that
//! Whisper's unrestricted detection readily hears as Japanese, Chinese or Thai — the same
//! failure real short or noisy Korean shows. The tests assert what sori does with it (the
//! language set, the lock), never what Whisper gets wrong on its own.

use std::process::Command;
use std::sync::{Arc, OnceLock};

use crate::support::*;
use serde_json::{Value, json};

use sori::protocol::Language;
use sori::stt::language::LanguageSet;
use sori::stt::whisper::WhisperModel;
use sori::stt::{DecodeOptions, Decoder};

/// espeak-ng speech at a given voice and speed, as 16 kHz mono samples (cached on disk).
fn speak(name: &str, voice: &str, speed: u32, text: &str) -> Vec<f32> {
    require_tool("espeak-ng", "apt-get install -y espeak-ng");
    let raw = scratch_dir().join(format!("lang-{name}.raw.wav"));
    if !raw.is_file() {
        let status = Command::new("espeak-ng")
            .args(["-v", voice, "-s", &speed.to_string(), "-w"])
            .arg(&raw)
            .arg(text)
            .status()
            .expect("espeak-ng runs");
        assert!(status.success(), "espeak-ng failed for {name}");
    }
    let wav = sox(
        &raw,
        &format!("lang-{name}.wav"),
        &["-r", "16000", "-c", "1", "-b", "16"],
    );
    sori::audio::decode::load_16k_mono(&wav).expect("the clip decodes")
}

/// "세종대로 사거리" in espeak-ng's female Korean variant: Whisper alone hears Chinese or
/// Japanese.
fn sejong_crossing() -> Vec<f32> {
    speak("sejong-crossing", "ko+f2", 130, "세종대로 사거리")
}

/// A longer Korean sentence (traffic report), the confident utterance that locks a session.
fn traffic_report() -> Vec<f32> {
    speak(
        "traffic-report",
        "ko+f2",
        130,
        "지금부터 교통 상황을 말씀드리겠습니다. 올림픽대로는 정체가 심합니다.",
    )
}

/// "예" (yes): under a second, too short to lock a session.
fn ye() -> Vec<f32> {
    speak("ye", "ko", 150, "예")
}

/// A clear English sentence (about 3 s).
fn english_report() -> Vec<f32> {
    speak(
        "english-report",
        "en-us",
        150,
        "Traffic is heavy on the ring road near the tunnel.",
    )
}

/// The test server: one decoder with one thread (the test machine has 2 cores), `auto` by
/// default. The lock threshold is lowered to 0.75 because espeak-ng's Korean is so accented
/// that Whisper is rarely more than 80–90 % sure of it even within ko/en; real Korean speech
/// clears the default 0.9 easily.
fn server() -> std::net::SocketAddr {
    static SERVER: OnceLock<std::net::SocketAddr> = OnceLock::new();
    *SERVER.get_or_init(|| {
        let mut config = test_config();
        config.stt.threads = 1;
        config.stt.language = Language::Auto;
        config.stt.language_lock_probability = 0.75;
        config.stt.language_lock_min_s = 1.5;
        config.stt.max_prompt_chars = 40;
        start_server(config)
    })
}

fn silence(seconds: f32) -> Vec<f32> {
    vec![0.0; (seconds * 16_000.0) as usize]
}

/// Streams the clips (with 1.5 s of silence after each, so each is its own utterance) on a
/// session opened with `query`, and returns every message up to `closed`.
async fn stream(query: &str, clips: &[&[f32]]) -> (Value, Vec<Value>) {
    let (mut ws, ready) = connect_ready(server(), query).await;
    for clip in clips {
        let mut audio = clip.to_vec();
        audio.extend(silence(1.5));
        send_pcm(&mut ws, &to_s16le(&audio), 32_000, 100, false).await;
    }
    let messages = stop_and_collect(&mut ws).await;
    (ready, messages)
}

fn has_hangul(text: &str) -> bool {
    text.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c))
}

fn decode_opts(language: Language, languages: Option<LanguageSet>) -> DecodeOptions {
    DecodeOptions {
        language,
        languages,
        threads: 1,
        audio_ctx: Some(300),
        ..DecodeOptions::default()
    }
}

fn model() -> Arc<WhisperModel> {
    static MODEL: OnceLock<Arc<WhisperModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| WhisperModel::load(&model_path(), false, true).expect("the model loads"))
        .clone()
}

/// On the decoder: `auto` within ko/en picks between the two (the Korean clip is Korean and
/// written in Hangul, the English one English), its probability is taken within the set, and
/// a set of one is forced without detection.
#[test]
fn auto_within_ko_en_picks_from_the_set_and_a_set_of_one_is_forced() {
    let mut decoder = model().new_decoder().unwrap();
    let ko_en = LanguageSet::parse("ko,en").unwrap();
    let clip = sejong_crossing();

    let korean = decoder
        .decode(&clip, &decode_opts(Language::Auto, Some(ko_en.clone())))
        .unwrap();
    let detection = korean.detection.expect("auto reports its detection");
    eprintln!(
        "ko,en: {} p={:.2} (raw {:.2}): {:?}",
        korean.language, detection.probability, detection.raw_probability, korean.text
    );
    assert_eq!(korean.language, "ko", "{korean:?}");
    assert_eq!(detection.language, "ko");
    assert!(detection.probability > 0.5 && detection.probability <= 1.0);
    // Within a subset of Whisper's languages the probability is renormalised: never below
    // Whisper's own over all of them.
    assert!(
        detection.probability >= detection.raw_probability,
        "{detection:?}"
    );
    assert!(has_hangul(&korean.text), "{korean:?}");

    let english = decoder
        .decode(&english_report(), &decode_opts(Language::Auto, Some(ko_en)))
        .unwrap();
    eprintln!("ko,en: {} {:?}", english.language, english.text);
    assert_eq!(
        english.language, "en",
        "the set does not force Korean: {english:?}"
    );
    assert!(!has_hangul(&english.text), "{english:?}");

    // A set of one is forced: nothing is detected.
    let forced = decoder
        .decode(
            &clip,
            &decode_opts(Language::Auto, Some(LanguageSet::single("ko"))),
        )
        .unwrap();
    assert_eq!(forced.language, "ko");
    assert!(forced.detection.is_none());
    assert!(has_hangul(&forced.text), "{forced:?}");
}

/// Over `/ws` without the lock, each utterance is detected within ko/en on its own: the
/// Korean clip is Korean, the English sentence after it English.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_with_ko_en_detects_each_utterance_within_the_set_over_ws() {
    let (ready, messages) = stream(
        "?language=auto&languages=ko,en&language_lock=false",
        &[&sejong_crossing(), &english_report()],
    )
    .await;
    assert_eq!(ready["options"]["language"], "auto");
    assert_eq!(ready["options"]["languages"], json!(["ko", "en"]));
    assert_eq!(ready["options"]["language_lock"], false);
    assert!(errors(&messages).is_empty(), "{messages:?}");
    assert!(
        !messages.iter().any(|m| m["type"] == "language"),
        "no lock without language_lock: {messages:?}"
    );
    let finals = finals(&messages);
    assert!(finals.len() >= 2, "{messages:?}");
    assert_eq!(finals[0]["language"], "ko", "{}", finals[0]);
    let text = finals[0]["text"].as_str().unwrap();
    assert!(has_hangul(text), "{text:?}");
    let last = finals.last().unwrap();
    assert_eq!(last["language"], "en", "{last}");
}

/// After a confident Korean sentence the session is locked to Korean: every later utterance —
/// the short "예" and even the English sentence that the test above hears as English — is
/// decoded in Korean, and the lock is announced once, just before the final that decided it.
/// (English forced into Korean may come out as a low-confidence transcript that the
/// hallucination filter drops, so `filtered=true` accounts for every utterance: what matters is
/// that none of them comes out English.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_session_decodes_every_later_utterance_in_the_locked_language() {
    let (ready, messages) = stream(
        "?language=auto&languages=ko,en&filtered=true",
        &[&traffic_report(), &ye(), &english_report()],
    )
    .await;
    assert_eq!(ready["options"]["language_lock"], true);
    assert!(errors(&messages).is_empty(), "{messages:?}");
    let lock_at = messages
        .iter()
        .position(|m| m["type"] == "language")
        .unwrap_or_else(|| panic!("a language event: {messages:?}"));
    let lock = &messages[lock_at];
    assert_eq!(lock["language"], "ko", "{lock}");
    assert_eq!(lock["locked"], true);
    let p = lock["probability"].as_f64().unwrap();
    assert!((0.75..=1.0).contains(&p), "{lock}");
    // Sent just before the final that decided it.
    let next = &messages[lock_at + 1];
    assert_eq!(next["type"], "final", "{messages:?}");
    assert_eq!(next["segment_id"], lock["segment_id"]);
    assert_eq!(
        messages.iter().filter(|m| m["type"] == "language").count(),
        1
    );
    for f in finals(&messages) {
        assert_eq!(f["language"], "ko", "{f}");
    }
    // Both utterances after the one that locked were decoded: each is a final or a filtered
    // segment, and the first, "예", is a final in Hangul.
    let locked_at = lock["segment_id"].as_u64().unwrap();
    let after_lock: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "final" || m["type"] == "filtered")
        .filter(|m| m["segment_id"].as_u64().unwrap() > locked_at)
        .collect();
    assert!(after_lock.len() >= 2, "{messages:?}");
    let ye_final = after_lock[0];
    assert_eq!(ye_final["type"], "final", "{ye_final}");
    assert!(
        has_hangul(ye_final["text"].as_str().unwrap()),
        "the short utterance decoded as Korean: {ye_final}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_locked_language_shows_in_status() {
    let (mut ws, _) = connect_ready(server(), "?language=auto&languages=ko,en").await;
    let mut audio = traffic_report();
    audio.extend(silence(1.5));
    send_pcm(&mut ws, &to_s16le(&audio), 32_000, 100, false).await;

    // Status (every 500 ms here) says null until the lock, then "ko". Every message the
    // session sends, `status` included, in order; fails when none comes within `limit`.
    async fn next_message(ws: &mut Ws, limit: std::time::Duration) -> Value {
        use futures_util::StreamExt;
        loop {
            let message = tokio::time::timeout(limit, ws.next())
                .await
                .unwrap_or_else(|_| panic!("no message within {limit:?}"))
                .expect("the socket stays open")
                .expect("a WebSocket message");
            if let tokio_tungstenite::tungstenite::Message::Text(t) = message {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }

    // Before the lock: statuses with no language, then the language event.
    let mut statuses_before = 0;
    let lock = loop {
        let v = next_message(&mut ws, std::time::Duration::from_secs(120)).await;
        match v["type"].as_str() {
            Some("status") => {
                assert!(v["language"].is_null(), "status before the lock: {v}");
                statuses_before += 1;
            }
            Some("language") => break v,
            Some("error") => panic!("{v}"),
            _ => {}
        }
    };
    assert_eq!(lock["language"], "ko", "{lock}");
    assert!(statuses_before >= 1, "a status before the lock");

    // After it: the next status (due within one interval) says "ko".
    let status = loop {
        let v = next_message(&mut ws, std::time::Duration::from_secs(5)).await;
        if v["type"] == "status" {
            break v;
        }
    };
    assert_eq!(status["language"], "ko", "{status}");
    let _ = stop_and_collect(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_language_codes_get_an_error_and_the_session_goes_on() {
    let (mut ws, ready) = connect_ready(server(), "?language=auto&languages=ko,xx").await;
    // The bad set is refused whole: the server's default set is used.
    assert_eq!(ready["options"]["languages"], json!(["ko", "en"]));
    let error = next_json(&mut ws).await.unwrap();
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "unsupported_language");
    assert_eq!(error["fatal"], false);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("\"xx\"") && message.contains("ko, en"),
        "{message}"
    );

    send_json(
        &mut ws,
        json!({"type": "start", "languages": ["ja", "klingon"]}),
    )
    .await;
    let error = next_json(&mut ws).await.unwrap();
    assert_eq!(error["code"], "unsupported_language", "{error}");
    assert!(error["message"].as_str().unwrap().contains("klingon"));

    // Any Whisper language is accepted, by code or name, as a list or a string.
    send_json(
        &mut ws,
        json!({"type": "start", "languages": ["ja", "Korean"]}),
    )
    .await;
    let ready = next_json(&mut ws).await.unwrap();
    assert_eq!(ready["type"], "ready", "{ready}");
    assert_eq!(ready["options"]["languages"], json!(["ja", "ko"]));
    send_json(&mut ws, json!({"type": "start", "languages": "all"})).await;
    let ready = next_json(&mut ws).await.unwrap();
    assert_eq!(ready["options"]["languages"], json!(["all"]));

    // The session goes on: Korean is still decoded.
    send_json(&mut ws, json!({"type": "start", "language": "ko"})).await;
    let ready = next_json(&mut ws).await.unwrap();
    assert_eq!(ready["options"]["language"], "ko");
    let mut audio = sejong_crossing();
    audio.extend(silence(1.5));
    send_pcm(&mut ws, &to_s16le(&audio), 32_000, 100, false).await;
    let messages = stop_and_collect(&mut ws).await;
    let finals = finals(&messages);
    assert_eq!(finals.len(), 1, "{messages:?}");
    assert_eq!(finals[0]["language"], "ko");
    let closed = messages.last().unwrap();
    assert_eq!(closed["type"], "closed");
    assert_eq!(closed["summary"]["errors"], 2, "{closed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_long_prompt_gets_an_error_saying_the_limit() {
    let long = "가".repeat(41);
    let (mut ws, ready) = connect_ready(
        server(),
        &format!("?language=ko&prompt={}", urlencode(&long)),
    )
    .await;
    assert_eq!(ready["options"]["prompt"], Value::Null);
    let error = next_json(&mut ws).await.unwrap();
    assert_eq!(error["code"], "prompt_too_long", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("41") && message.contains("40"),
        "{message}"
    );

    send_json(&mut ws, json!({"type": "start", "prompt": long})).await;
    let error = next_json(&mut ws).await.unwrap();
    assert_eq!(error["code"], "prompt_too_long", "{error}");
    send_json(&mut ws, json!({"type": "start", "prompt": "양재 나들목"})).await;
    let ready = next_json(&mut ws).await.unwrap();
    assert_eq!(ready["options"]["prompt"], "양재 나들목", "{ready}");
    let messages = stop_and_collect(&mut ws).await;
    assert_eq!(messages.last().unwrap()["type"], "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_long_prompt_is_refused_by_the_file_api() {
    let clip = data_file("jfk.wav");
    let body = std::fs::read(clip).unwrap();
    let url = format!(
        "http://{}/api/transcribe?language=en&prompt={}",
        server(),
        urlencode(&"x".repeat(41))
    );
    let response = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "prompt_too_long", "{body}");
}

/// "양재 나들목" (Yangjae interchange): without a prompt Whisper writes something else; with
/// the prompt it writes the name, and the final is kept although it repeats the prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_prompt_spells_a_place_name() {
    let clip = speak("yangjae", "ko", 130, "양재 나들목");
    let (_, plain) = stream("?language=ko", &[&clip]).await;
    let plain_text = final_text(&plain);
    eprintln!("without prompt: {plain_text:?}");
    assert!(!plain_text.contains("나들목"), "{plain_text:?}");

    let query = format!("?language=ko&prompt={}", urlencode("양재 나들목"));
    let (ready, prompted) = stream(&query, &[&clip]).await;
    assert_eq!(ready["options"]["prompt"], "양재 나들목");
    let text = final_text(&prompted);
    eprintln!("with prompt: {text:?}");
    assert!(text.contains("양재 나들목"), "{prompted:?}");
    assert!(errors(&prompted).is_empty());
}

/// The same through a `start` message, in English: an invented road name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_set_by_start_reaches_whisper() {
    let clip = speak(
        "quelbrook",
        "en-us",
        150,
        "Traffic is heavy on Quelbrook Avenue near the Zandermere tunnel.",
    );
    let (mut ws, _) = connect_ready(server(), "?language=en").await;
    send_json(
        &mut ws,
        json!({"type": "start", "prompt": "Quelbrook Avenue, Zandermere tunnel"}),
    )
    .await;
    let ready = next_json(&mut ws).await.unwrap();
    assert_eq!(
        ready["options"]["prompt"],
        "Quelbrook Avenue, Zandermere tunnel"
    );
    let mut audio = clip.clone();
    audio.extend(silence(1.5));
    send_pcm(&mut ws, &to_s16le(&audio), 32_000, 100, false).await;
    let messages = stop_and_collect(&mut ws).await;
    let text = final_text(&messages);
    eprintln!("with prompt: {text:?}");
    assert!(text.contains("Quelbrook"), "{messages:?}");

    let (_, plain) = stream("?language=en", &[&clip]).await;
    let plain_text = final_text(&plain);
    eprintln!("without prompt: {plain_text:?}");
    assert!(!plain_text.contains("Quelbrook"), "{plain_text:?}");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
