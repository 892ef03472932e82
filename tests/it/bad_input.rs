//! The bad-input suite: over two hundred malformed requests over `/ws` and the REST endpoints
//! (broken and mistyped JSON, absurd options, odd and empty frames, NaN and infinite floats,
//! truncated and corrupt wav / mp3 / flac / ogg files, binary garbage, a client that dribbles
//! its request). Every case must get its own clear error — an `error` event with a known code
//! and an explaining message, or a 4xx JSON body — while a healthy session streaming at the
//! same time transcribes exactly as it would alone, and the server stays up.

use std::time::Duration;

use crate::support::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

/// What one case must produce.
struct Expect {
    /// Acceptable error codes (event `code` or JSON `error.code`).
    codes: &'static [&'static str],
}

const JSON_CODES: &[&str] = &["invalid_json", "unknown_type", "invalid_message"];
const RATE: &[&str] = &[
    "unsupported_sample_rate",
    "invalid_message",
    "invalid_options",
];
const CHANNELS: &[&str] = &["unsupported_channels", "invalid_message", "invalid_options"];
const ENCODING: &[&str] = &["unsupported_encoding", "invalid_message", "invalid_options"];
const LANGUAGE: &[&str] = &["unsupported_language", "invalid_message", "invalid_options"];
const OPTIONS: &[&str] = &["invalid_options", "invalid_message"];

fn text_cases() -> Vec<(String, Expect)> {
    let mut cases: Vec<(String, Expect)> = Vec::new();
    let mut add = |body: String, codes: &'static [&'static str]| {
        cases.push((body, Expect { codes }));
    };
    // Not JSON, or JSON of the wrong shape.
    for body in [
        "",
        " ",
        "{",
        "}",
        "[",
        "]",
        "{{}}",
        "nul",
        "tru",
        "{\"type\":}",
        "{'type':'stop'}",
        "{\"type\":\"stop\"",
        "{\"type\" \"stop\"}",
        "\u{0}",
        "\u{feff}{",
        "<xml/>",
        "type=stop",
        "{\"type\":\"stop\",}",
        "{\"a\":1 \"b\":2}",
        "\"\\ud800\"x",
    ] {
        add(body.to_owned(), JSON_CODES);
    }
    for body in [
        "null",
        "true",
        "1",
        "-1.5e300",
        "\"stop\"",
        "[]",
        "[1,2,3]",
        "{}",
        "{\"type\":null}",
        "{\"type\":1}",
        "{\"type\":[\"stop\"]}",
        "{\"type\":{}}",
        "{\"type\":\"STOP\"}",
        "{\"type\":\"dance\"}",
        "{\"type\":\"\"}",
        "{\"kind\":\"stop\"}",
        "{\"audio\":\"AAAA\"}",
        "{\"type\":\"audio\"}",
        "{\"type\":\"audio\",\"audio\":1}",
        "{\"type\":\"audio\",\"audio\":null}",
        "{\"type\":\"audio\",\"audio\":[]}",
        "{\"type\":\"audio\",\"audio\":{}}",
        "{\"type\":\"audio\",\"audio\":true}",
    ] {
        add(body.to_owned(), JSON_CODES);
    }
    // Base64 that is not, or decodes to a broken frame.
    for audio in [
        "!!!!",
        "%%%not base64%%%",
        "AAA",
        "A",
        "AB==CD",
        "====",
        "ÿÿÿÿ",
    ] {
        add(
            json!({"type": "audio", "audio": audio}).to_string(),
            &["invalid_base64", "bad_frame_length", "empty_frame"],
        );
    }
    for odd in [1usize, 3, 5, 7, 101] {
        let audio = base64_of(&vec![0u8; odd]);
        add(
            json!({"type": "audio", "audio": audio}).to_string(),
            &["bad_frame_length"],
        );
    }
    add(
        json!({"type": "audio", "audio": ""}).to_string(),
        &["empty_frame", "invalid_base64"],
    );
    // `start` with values out of range or of the wrong type.
    for rate in [
        json!(0),
        json!(1),
        json!(7999),
        json!(48001),
        json!(96000),
        json!(4_294_967_295u64),
    ] {
        add(
            json!({"type": "start", "sample_rate": rate}).to_string(),
            RATE,
        );
    }
    for rate in [
        json!(-1),
        json!(1.5),
        json!(1e20),
        json!("16000"),
        json!(true),
        json!([16000]),
        json!({}),
    ] {
        add(
            json!({"type": "start", "sample_rate": rate}).to_string(),
            RATE,
        );
    }
    for channels in [
        json!(0),
        json!(3),
        json!(6),
        json!(255),
        json!(65536),
        json!(-1),
        json!("2"),
    ] {
        add(
            json!({"type": "start", "channels": channels}).to_string(),
            CHANNELS,
        );
    }
    for encoding in [
        json!("opus"),
        json!("mp3"),
        json!("pcm_s24le"),
        json!("pcm_s16be"),
        json!(""),
        json!(5),
        json!(["pcm_s16le"]),
    ] {
        add(
            json!({"type": "start", "encoding": encoding}).to_string(),
            ENCODING,
        );
    }
    for language in [
        json!("klingon"),
        json!("fr-ko"),
        json!("zz"),
        json!(7),
        json!(["ko"]),
    ] {
        add(
            json!({"type": "start", "language": language}).to_string(),
            LANGUAGE,
        );
    }
    for (field, value) in [
        ("partials", json!("yes")),
        ("partials", json!(1)),
        ("filtered", json!("no")),
        ("keywords", json!(2)),
        ("rag", json!("maybe")),
        ("prompt", json!(5)),
        ("prompt", json!({"words": []})),
        ("token", json!(12)),
        ("unknown_option", json!(1)),
        ("sampleRate", json!(16000)),
    ] {
        add(json!({"type": "start", field: value}).to_string(), OPTIONS);
    }
    cases
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Binary frames for an s16 mono session, and those for f32 after switching to it.
type FrameCases = Vec<(Vec<u8>, Expect)>;

fn binary_cases() -> (FrameCases, FrameCases) {
    let mut s16 = Vec::new();
    for odd in [1usize, 3, 5, 9, 33, 333, 3201, 32001] {
        s16.push((
            vec![7u8; odd],
            Expect {
                codes: &["bad_frame_length"],
            },
        ));
    }
    s16.push((
        Vec::new(),
        Expect {
            codes: &["empty_frame"],
        },
    ));
    s16.push((
        vec![0u8; (1 << 20) + 2],
        Expect {
            codes: &["frame_too_large"],
        },
    ));
    s16.push((
        vec![0u8; 3 << 20],
        Expect {
            codes: &["frame_too_large"],
        },
    ));
    let mut f32s = Vec::new();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN] {
        for at in [0usize, 5, 99] {
            let mut samples = vec![0.01f32; 100];
            samples[at] = bad;
            f32s.push((
                to_f32le(&samples),
                Expect {
                    codes: &["invalid_samples"],
                },
            ));
        }
    }
    for odd in [1usize, 2, 3, 5, 6, 7, 4001] {
        f32s.push((
            vec![0u8; odd],
            Expect {
                codes: &["bad_frame_length"],
            },
        ));
    }
    (s16, f32s)
}

/// Query strings that start a session with defaults and an error saying what was wrong.
fn query_cases() -> Vec<(&'static str, Expect)> {
    let cases: Vec<(&str, &'static [&'static str])> = vec![
        ("sample_rate=0", RATE),
        ("sample_rate=1", RATE),
        ("sample_rate=7999", RATE),
        ("sample_rate=48001", RATE),
        ("sample_rate=192000", RATE),
        ("sample_rate=99999999999", RATE),
        ("sample_rate=-16000", RATE),
        ("sample_rate=abc", RATE),
        ("sample_rate=16000.5", RATE),
        ("sample_rate=", RATE),
        ("encoding=opus", ENCODING),
        ("encoding=PCM", ENCODING),
        ("encoding=pcm_s16be", ENCODING),
        ("encoding=", ENCODING),
        ("channels=0", CHANNELS),
        ("channels=3", CHANNELS),
        ("channels=99", CHANNELS),
        ("channels=-1", CHANNELS),
        ("channels=two", CHANNELS),
        ("language=klingon", LANGUAGE),
        ("language=zz", LANGUAGE),
        ("language=123", LANGUAGE),
        ("partials=maybe", OPTIONS),
        ("filtered=2", OPTIONS),
        ("keywords=sure", OPTIONS),
        ("rag=perhaps", OPTIONS),
        ("unknown=1", OPTIONS),
        ("sampleRate=16000", OPTIONS),
        ("%zz=1", OPTIONS),
        ("sample_rate=16000&sample_rate=8000", OPTIONS),
        ("channels=1&channels=2", OPTIONS),
        ("language=ko&language=en", OPTIONS),
    ];
    cases
        .into_iter()
        .map(|(q, codes)| (q, Expect { codes }))
        .collect()
}

/// (method, path, content type, body, acceptable statuses, acceptable codes)
type HttpCase = (&'static str, String, &'static str, Vec<u8>, Statuses, Codes);
type Statuses = &'static [u16];
type Codes = &'static [&'static str];

fn audio_files() -> Vec<(&'static str, Vec<u8>)> {
    let wav = std::fs::read(data_file("jfk.wav")).unwrap();
    let mp3 = std::fs::read(data_file("jfk.mp3")).unwrap();
    let flac = std::fs::read(sox(&data_file("jfk.wav"), "jfk-bad-input.flac", &[])).unwrap();
    let ogg = std::fs::read(sox(&data_file("jfk.wav"), "jfk-bad-input.ogg", &[])).unwrap();
    vec![("wav", wav), ("mp3", mp3), ("flac", flac), ("ogg", ogg)]
}

/// Damaged versions of a real file that no decoder can get audio from.
fn damaged(format: &str, file: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        (format!("first 4 bytes of a {format}"), file[..4].to_vec()),
        (format!("first 12 bytes of a {format}"), file[..12].to_vec()),
        (
            format!("{format} header, no audio"),
            file[..44.min(file.len())].to_vec(),
        ),
    ];
    // An mp3 decoder rightly resyncs on the next frame after a damaged header, so that
    // case is not an error for mp3.
    if format != "mp3" {
        let mut scrambled = file.to_vec();
        for b in scrambled.iter_mut().take(64) {
            *b ^= 0xA5;
        }
        out.push((format!("{format} with a scrambled header"), scrambled));
    }
    let mut pseudo = vec![0u8; 4096];
    let mut x: u32 = 0x1234_5678 ^ file.len() as u32;
    for b in pseudo.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    out.push((format!("random bytes named .{format}"), pseudo));
    out
}

const UPLOAD_STATUS: &[u16] = &[400, 415, 422];
const UPLOAD_CODES: &[&str] = &[
    "empty_upload",
    "unsupported_format",
    "undecodable_audio",
    "no_audio",
    "invalid_audio",
    "unsupported_audio",
    "decode_error",
    "audio_decode_failed",
    "unsupported_language",
    "invalid_multipart",
    "missing_file",
];

fn multipart(file_name: &str, bytes: &[u8]) -> (Vec<u8>, &'static str) {
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--XBOUNDARYX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(b"\r\n--XBOUNDARYX--\r\n");
    (body, "multipart/form-data; boundary=XBOUNDARYX")
}

fn http_cases() -> Vec<HttpCase> {
    let mut cases: Vec<HttpCase> = Vec::new();
    // Uploads: raw bodies and multipart, damaged files of every format.
    for (format, file) in audio_files() {
        for (_, bytes) in damaged(format, &file) {
            cases.push((
                "POST",
                "/api/transcribe".to_owned(),
                "application/octet-stream",
                bytes.clone(),
                UPLOAD_STATUS,
                UPLOAD_CODES,
            ));
            let (body, content_type) = multipart(&format!("bad.{format}"), &bytes);
            cases.push((
                "POST",
                "/api/transcribe".to_owned(),
                content_type,
                body,
                UPLOAD_STATUS,
                UPLOAD_CODES,
            ));
        }
    }
    cases.push((
        "POST",
        "/api/transcribe".to_owned(),
        "application/octet-stream",
        Vec::new(),
        UPLOAD_STATUS,
        UPLOAD_CODES,
    ));
    let wav = std::fs::read(data_file("jfk.wav")).unwrap();
    for query in [
        "?language=klingon",
        "?format=docx",
        "?format=",
        "?language=zz&format=srt",
    ] {
        cases.push((
            "POST",
            format!("/api/transcribe{query}"),
            "application/octet-stream",
            wav.clone(),
            &[400],
            &["unsupported_language", "unsupported_format"],
        ));
    }
    let (empty_form, content_type) = multipart("empty.wav", b"");
    cases.push((
        "POST",
        "/api/transcribe".to_owned(),
        content_type,
        empty_form,
        UPLOAD_STATUS,
        UPLOAD_CODES,
    ));
    cases.push((
        "POST",
        "/api/transcribe".to_owned(),
        "multipart/form-data; boundary=XBOUNDARYX",
        b"--XBOUNDARYX\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\ntruncated".to_vec(),
        UPLOAD_STATUS,
        UPLOAD_CODES,
    ));
    // JSON endpoints: broken bodies and wrong types are refused before anything runs.
    let json_bodies: &[&str] = &[
        "",
        "{",
        "[]",
        "null",
        "42",
        "\"text\"",
        "{\"unexpected\":true}",
        "{\"query\":1}",
        "{\"query\":null}",
        "{\"query\":[\"a\"]}",
        "{\"top_k\":\"x\"}",
        "{\"text\":5}",
        "{\"texts\":\"a\"}",
        "{\"text\":\"a\",\"metadata\":5}",
        "\u{0}\u{1}\u{2}",
        "{\"query\":\"a\",\"top_k\":-1}",
    ];
    for path in ["/search", "/query", "/index", "/embed", "/embed/batch"] {
        for body in json_bodies {
            cases.push((
                "POST",
                path.to_owned(),
                "application/json",
                body.as_bytes().to_vec(),
                &[400, 422],
                &[
                    "invalid_json",
                    "invalid_request",
                    "invalid_top_k",
                    "invalid_batch",
                    "invalid_kind",
                ],
            ));
        }
    }
    for body in [
        r#"{"query":"a","top_k":0}"#,
        r#"{"query":"a","top_k":51}"#,
        r#"{"query":"a","top_k":100000}"#,
    ] {
        cases.push((
            "POST",
            "/search".to_owned(),
            "application/json",
            body.as_bytes().to_vec(),
            &[400],
            &["invalid_top_k", "invalid_json"],
        ));
    }
    for body in [r#"{"texts":[]}"#, r#"{"text":"a","kind":"both"}"#] {
        let path = if body.contains("texts") {
            "/embed/batch"
        } else {
            "/embed"
        };
        cases.push((
            "POST",
            path.to_owned(),
            "application/json",
            body.as_bytes().to_vec(),
            &[400],
            &["invalid_batch", "invalid_kind"],
        ));
    }
    for path in [
        "/nothing-here",
        "/api/nothing",
        "/ws/extra",
        "/static/../Cargo.toml",
    ] {
        cases.push((
            "GET",
            path.to_owned(),
            "",
            Vec::new(),
            &[404],
            &["not_found"],
        ));
    }
    cases.push((
        "DELETE",
        "/index".to_owned(),
        "",
        Vec::new(),
        &[400],
        &["missing_source", "invalid_request"],
    ));
    cases
}

async fn expect_ws_error(ws: &mut Ws, frame: Message, expect: &Expect, what: &str) {
    ws.send(frame).await.unwrap();
    let reply = next_json(ws)
        .await
        .unwrap_or_else(|| panic!("{what}: socket closed"));
    check_error_event(&reply, expect, what);
}

fn check_error_event(reply: &Value, expect: &Expect, what: &str) {
    assert_eq!(
        reply["type"], "error",
        "{what}: expected an error, got {reply}"
    );
    let code = reply["code"].as_str().unwrap_or_default();
    assert!(
        expect.codes.contains(&code),
        "{what}: code {code} not in {:?}: {reply}",
        expect.codes
    );
    assert_eq!(reply["fatal"], false, "{what}: {reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(
        message.len() > 20,
        "{what}: the message must explain: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_two_hundred_bad_inputs_each_get_a_clear_error_and_hurt_no_one() {
    let mut config = test_config();
    config.server.max_connections_per_client = 0;
    config.server.max_sessions = 64;
    let addr = start_server(config);

    // The healthy session streams JFK twice, in real time, through all of it.
    let healthy = tokio::spawn(async move {
        let (mut ws, _) = connect_ready(addr, "?language=en").await;
        let pcm = to_s16le(&jfk_16k());
        for _ in 0..2 {
            send_pcm(&mut ws, &pcm, 32000, 100, true).await;
        }
        stop_and_collect(&mut ws).await
    });
    let mut count = 0;

    // A client that dribbles its HTTP request, a byte every 100 ms, the whole time.
    let slow = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let (mut ws, _) = connect_ready(addr, "?language=en").await;
    for (body, expect) in text_cases() {
        let what = format!("text frame {body:?}");
        expect_ws_error(&mut ws, Message::Text(body.into()), &expect, &what).await;
        count += 1;
    }
    let (s16, f32s) = binary_cases();
    for (bytes, expect) in s16 {
        let what = format!("s16 frame of {} bytes", bytes.len());
        expect_ws_error(&mut ws, Message::Binary(bytes.into()), &expect, &what).await;
        count += 1;
    }
    send_json(&mut ws, json!({"type": "start", "encoding": "pcm_f32le"})).await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "ready");
    for (bytes, expect) in f32s {
        let what = format!("f32 frame of {} bytes", bytes.len());
        expect_ws_error(&mut ws, Message::Binary(bytes.into()), &expect, &what).await;
        count += 1;
    }
    // A text frame over the frame limit (base64 of 1.5 MiB).
    let big = json!({"type": "audio", "audio": base64_of(&vec![0u8; 3 << 19])}).to_string();
    expect_ws_error(
        &mut ws,
        Message::Text(big.into()),
        &Expect {
            codes: &["frame_too_large"],
        },
        "huge audio message",
    )
    .await;
    count += 1;
    let closing = stop_and_collect(&mut ws).await;
    assert_eq!(
        closing.last().unwrap()["type"],
        "closed",
        "the abused session ends normally"
    );

    for (query, expect) in query_cases() {
        let (mut ws, ready) = connect_ready(addr, &format!("?{query}")).await;
        assert_eq!(
            ready["options"]["sample_rate"], 16000,
            "{query}: defaults in effect"
        );
        let reply = next_json(&mut ws).await.expect("an error after ready");
        check_error_event(&reply, &expect, &format!("query {query}"));
        let _ = ws.close(None).await;
        count += 1;
    }

    let http = reqwest::Client::new();
    for (method, path, content_type, body, statuses, codes) in http_cases() {
        let mut request = http.request(method.parse().unwrap(), format!("http://{addr}{path}"));
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let what = format!("{method} {path} ({} bytes)", body.len());
        let response = request
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = response.status().as_u16();
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            statuses.contains(&status),
            "{what}: status {status}: {reply}"
        );
        let code = reply["error"]["code"].as_str().unwrap_or_default();
        assert!(
            codes.contains(&code),
            "{what}: code {code:?} not in {codes:?}: {reply}"
        );
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.len() > 15,
            "{what}: the message must explain: {reply}"
        );
        count += 1;
    }
    eprintln!("{count} bad inputs, each with its error");
    assert!(count >= 200, "only {count} cases");

    // Still up, and the healthy session never noticed.
    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let healthy = healthy.await.unwrap();
    assert!(errors(&healthy).is_empty(), "{:?}", errors(&healthy));
    let text = final_text(&healthy);
    let wer = sori::eval::wer(&format!("{JFK_REFERENCE} {JFK_REFERENCE}"), &text);
    assert!(
        wer <= 0.10,
        "the healthy session was disturbed (WER {wer}): {text}"
    );
    slow.abort();
}
