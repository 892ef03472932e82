//! `POST /v1/audio/transcriptions` (OpenAI-compatible), driven by the official `openai` Python
//! SDK as the client (installed by `scripts/openai-sdk.sh fetch`), and its error shapes checked
//! with plain HTTP.

use std::path::PathBuf;
use std::process::Command;

use crate::support::*;
use serde_json::Value;

/// Calls the server through the SDK in every response format and prints one JSON object of
/// results; errors the SDK raises are caught and reported with their class.
const SDK_CLIENT: &str = r#"
import json, sys
import openai
from openai import OpenAI

addr, audio, garbage = sys.argv[1:4]
client = OpenAI(base_url=f"http://{addr}/v1", api_key="unused", max_retries=0, timeout=600)

def create(path=audio, **kw):
    with open(path, "rb") as f:
        return client.audio.transcriptions.create(model="whisper-1", file=f, language="en", **kw)

def error(**kw):
    try:
        create(**kw)
        return {"class": None}
    except openai.APIStatusError as e:
        return {"class": type(e).__name__, "status": e.status_code, "message": e.message, "body": e.body}

with open(audio, "rb") as f:
    raw = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=f, language="en")
out = {
    "version": openai.__version__,
    "model_header": raw.headers.get("openai-model"),
    "json": raw.parse().model_dump(),
    "text": create(response_format="text"),
    "srt": create(response_format="srt"),
    "vtt": create(response_format="vtt"),
    "verbose_json": create(
        response_format="verbose_json", timestamp_granularities=["word", "segment"]
    ).model_dump(),
    "bad_format": error(response_format="docx"),
    "corrupt_file": error(path=garbage),
}
print(json.dumps(out))
"#;

/// The SDK's venv python; fails loudly, naming the fetch command, when it is missing.
fn sdk_python() -> PathBuf {
    let python = repo_root().join(".tools/openai-sdk/venv/bin/python");
    assert!(
        python.is_file(),
        "the official openai Python SDK is missing ({} not found); install it with \
         `./scripts/openai-sdk.sh fetch` (./test.sh does)",
        python.display()
    );
    python
}

/// Lower case, letters, digits and spaces only, for comparing transcripts.
fn normalize(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn assert_jfk(what: &str, text: &str) {
    assert!(
        normalize(text).contains("ask not what your country can do for you"),
        "{what}: {text}"
    );
}

/// The spoken lines of an SRT or WebVTT file (no header, cue numbers or timings).
fn subtitle_text(subtitles: &str) -> String {
    subtitles
        .lines()
        .filter(|l| !l.contains("-->") && *l != "WEBVTT" && !l.chars().all(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn official_openai_sdk_transcribes_in_every_format() {
    let python = sdk_python();
    let addr = server();
    let garbage = scratch_dir().join("openai-garbage.wav");
    std::fs::write(&garbage, b"RIFF\x24\0\0\0WAVE but not really audio").unwrap();
    let out = Command::new(python)
        .arg("-c")
        .arg(SDK_CLIENT)
        .arg(addr.to_string())
        .arg(data_file("jfk.wav"))
        .arg(&garbage)
        .output()
        .expect("the SDK's python runs");
    assert!(
        out.status.success(),
        "SDK client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    eprintln!("openai SDK {}", r["version"]);

    assert_eq!(
        r["model_header"],
        model_path().file_name().unwrap().to_string_lossy().as_ref(),
        "the server's model answers whatever model was asked for"
    );
    assert_jfk("json", r["json"]["text"].as_str().unwrap());
    let text = r["text"].as_str().unwrap();
    assert_jfk("text", text);
    assert!(text.ends_with('\n') && !text.starts_with('{'), "{text:?}");

    let srt = r["srt"].as_str().unwrap();
    assert!(srt.starts_with("1\n00:00:00,"), "{srt}");
    assert!(srt.contains(" --> "), "{srt}");
    assert_jfk("srt", &subtitle_text(srt));
    let vtt = r["vtt"].as_str().unwrap();
    assert!(vtt.starts_with("WEBVTT\n\n00:00:"), "{vtt}");
    assert!(vtt.contains(" --> "), "{vtt}");
    assert_jfk("vtt", &subtitle_text(vtt));

    let v = &r["verbose_json"];
    assert_eq!(v["task"], "transcribe", "{v}");
    assert_eq!(v["language"], "english", "{v}");
    assert!((v["duration"].as_f64().unwrap() - 11.0).abs() < 0.1, "{v}");
    assert_jfk("verbose_json", v["text"].as_str().unwrap());
    let segments = v["segments"].as_array().expect("segments were asked for");
    assert!(!segments.is_empty(), "{v}");
    for (i, s) in segments.iter().enumerate() {
        assert_eq!(s["id"], i as u64, "{s}");
        let (start, end) = (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap());
        assert!(start < end && end <= 11.1, "{s}");
        assert!(!s["text"].as_str().unwrap().trim().is_empty(), "{s}");
        assert!(s["avg_logprob"].as_f64().unwrap() < 0.0, "{s}");
        assert!(s["compression_ratio"].as_f64().unwrap() > 0.0, "{s}");
        assert!(
            (0.0..=1.0).contains(&s["no_speech_prob"].as_f64().unwrap()),
            "{s}"
        );
    }
    let words = v["words"].as_array().expect("words were asked for");
    assert!(words.len() >= 20, "{v}");
    let mut last_start = 0.0;
    for w in words {
        let (start, end) = (w["start"].as_f64().unwrap(), w["end"].as_f64().unwrap());
        assert!(start <= end && start >= last_start && end <= 11.1, "{w}");
        let word = w["word"].as_str().unwrap();
        assert!(
            !word.is_empty() && word.chars().all(|c| c.is_alphanumeric() || c == '\''),
            "words carry no spaces or punctuation: {w}"
        );
        last_start = start;
    }
    let spoken: Vec<&str> = words.iter().map(|w| w["word"].as_str().unwrap()).collect();
    assert_jfk("words", &spoken.join(" "));

    for (case, field) in [("bad_format", "response_format"), ("corrupt_file", "file")] {
        let e = &r[case];
        assert_eq!(e["class"], "BadRequestError", "{case}: {e}");
        assert_eq!(e["status"], 400, "{case}: {e}");
        assert_eq!(e["body"]["param"], field, "{case}: {e}");
        assert_eq!(e["body"]["type"], "invalid_request_error", "{case}: {e}");
    }
    let message = r["bad_format"]["message"].as_str().unwrap();
    assert!(
        message.contains("docx") && message.contains("verbose_json"),
        "{message}"
    );
    let message = r["corrupt_file"]["message"].as_str().unwrap();
    assert!(
        message.contains("MP3") && message.contains("FLAC"),
        "names the accepted formats: {message}"
    );
}

/// Posts a multipart form of `(name, value)` text fields and an optional `file`.
async fn post_form(
    addr: std::net::SocketAddr,
    fields: &[(&str, &str)],
    file: Option<(&str, Vec<u8>)>,
) -> (u16, Value) {
    sori::keywords::install_tls_provider();
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    if let Some((name, bytes)) = file {
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
    }
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/audio/transcriptions"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// OpenAI's error shape: a 4xx, `type` invalid_request_error, the field at fault as `param`,
/// our code, and a message that says what is accepted.
fn assert_error(got: (u16, Value), status: u16, param: Option<&str>, code: &str, says: &str) {
    let (got_status, body) = got;
    assert_eq!(got_status, status, "{body}");
    let error = &body["error"];
    assert_eq!(error["type"], "invalid_request_error", "{body}");
    assert_eq!(error["param"].as_str(), param, "{body}");
    assert_eq!(error["code"], code, "{body}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(says),
        "{message:?} should mention {says:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_in_openai_shape() {
    let addr = server();
    let wav = std::fs::read(data_file("jfk.wav")).unwrap();
    let model = ("model", "whisper-1");
    let file = || Some(("jfk.wav", wav.clone()));

    assert_error(
        post_form(addr, &[model], None).await,
        400,
        Some("file"),
        "missing_file",
        "\"file\"",
    );
    assert_error(
        post_form(addr, &[model], Some(("empty.wav", vec![]))).await,
        400,
        Some("file"),
        "empty_file",
        "empty",
    );
    assert_error(
        post_form(
            addr,
            &[model],
            Some(("x.mp3", b"not audio at all".to_vec())),
        )
        .await,
        400,
        Some("file"),
        "undecodable_audio",
        "FLAC",
    );
    assert_error(
        post_form(
            addr,
            &[model],
            Some(("cut.wav", wav[..wav.len() / 100].to_vec())),
        )
        .await,
        400,
        Some("file"),
        "undecodable_audio",
        "FLAC",
    );
    assert_error(
        post_form(addr, &[model, ("response_format", "docx")], file()).await,
        400,
        Some("response_format"),
        "unsupported_response_format",
        "json, text, srt, vtt or verbose_json",
    );
    assert_error(
        post_form(addr, &[model, ("language", "fr")], file()).await,
        400,
        Some("language"),
        "unsupported_language",
        "ko, en or auto",
    );
    assert_error(
        post_form(
            addr,
            &[
                model,
                ("response_format", "verbose_json"),
                ("timestamp_granularities[]", "sentence"),
            ],
            file(),
        )
        .await,
        400,
        Some("timestamp_granularities"),
        "unsupported_timestamp_granularity",
        "segment, word",
    );
    assert_error(
        post_form(addr, &[model, ("temperature", "7")], file()).await,
        400,
        Some("temperature"),
        "invalid_temperature",
        "0 to 1",
    );

    // Not a multipart form at all (a JSON body, as some clients send by mistake).
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/audio/transcriptions"))
        .json(&serde_json::json!({ "model": "whisper-1", "file": "jfk.wav" }))
        .send()
        .await
        .unwrap();
    let got = (resp.status().as_u16(), resp.json().await.unwrap());
    assert_error(got, 400, None, "invalid_multipart", "multipart/form-data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_limit_get_413_in_openai_shape() {
    let wav = std::fs::read(data_file("jfk.wav")).unwrap();
    let mut config = test_config();
    // Just under the clip, so the server has read nearly all of it when it refuses.
    config.server.max_upload_bytes = wav.len() - 4096;
    let addr = start_server(config);
    assert_error(
        post_form(addr, &[("model", "whisper-1")], Some(("jfk.wav", wav))).await,
        413,
        None,
        "upload_too_large",
        "server.max_upload_bytes",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_json_without_word_granularity_has_segments_only() {
    let wav = std::fs::read(data_file("jfk.wav")).unwrap();
    let (status, body) = post_form(
        server(),
        &[
            ("model", "anything-at-all"),
            ("language", "en"),
            ("response_format", "verbose_json"),
            ("temperature", "0"),
        ],
        Some(("jfk.wav", wav)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("words").is_none(), "words only when asked: {body}");
    let segments = body["segments"].as_array().unwrap();
    assert!(!segments.is_empty(), "{body}");
    assert_eq!(segments[0]["tokens"], serde_json::json!([]), "{body}");
    assert_eq!(body["usage"]["type"], "duration", "{body}");
    assert_jfk("verbose_json", body["text"].as_str().unwrap());
}
