//! `sori stream FILE`, the README's WebSocket client, run as a user runs it: the built binary
//! against a real server with the real Whisper model, and against servers that refuse it.

use std::net::SocketAddr;
use std::process::{Command, Output};

use crate::support::*;
use serde_json::Value;

const MAX_WER: f64 = 0.10;

/// Runs `sori stream` with `args` and returns its output.
fn sori_stream(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sori"))
        .arg("stream")
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("the sori binary runs")
}

fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

/// Every stdout line parsed as JSON (panics on one that is not).
fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .expect("stdout is UTF-8")
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn streams_the_jfk_clip_and_prints_every_message_as_json_lines() {
    let url = ws_url(server());
    let jfk = data_file("jfk.wav");
    let out = sori_stream(&[jfk.to_str().unwrap(), "--url", &url, "--language", "en"]);
    assert!(out.status.success(), "sori stream failed: {}", stderr(&out));

    let messages = json_lines(&out);
    let kinds: Vec<&str> = messages
        .iter()
        .map(|m| m["type"].as_str().expect("every message has a type"))
        .collect();
    assert_eq!(kinds.first(), Some(&"ready"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"closed"), "{kinds:?}");
    assert_eq!(messages[0]["options"]["language"], "en");
    assert_eq!(messages[0]["options"]["sample_rate"], 16000);
    assert!(errors(&messages).is_empty(), "{:?}", errors(&messages));

    let text = final_text(&messages);
    let wer = sori::eval::wer(JFK_REFERENCE, &text);
    eprintln!("sori stream: WER {:.1} % — {text}", wer * 100.0);
    assert!(wer <= MAX_WER, "WER {:.1} % > 10 %: {text:?}", wer * 100.0);
    let summary = &messages.last().unwrap()["summary"];
    assert_eq!(summary["finals"], finals(&messages).len());
    assert!(
        summary["audio_seconds"].as_f64().unwrap() > 10.5,
        "{summary}"
    );
}

#[test]
fn a_closed_port_fails_with_a_clear_message() {
    // A port that was free a moment ago: nothing listens on it now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = ws_url(addr);
    let jfk = data_file("jfk.wav");
    let out = sori_stream(&[jfk.to_str().unwrap(), "--url", &url, "--token", "s3cret"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "must fail: {err}");
    assert!(!err.contains("s3cret"), "the token is not printed: {err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains(&format!("cannot connect to {url}")) && err.contains("sori serve"),
        "the message names the URL and what to start: {err}"
    );
}

#[test]
fn a_refusal_by_the_server_fails_with_its_code_after_printing_it_and_a_token_passes() {
    let mut config = test_config();
    config.server.api_tokens = vec!["s3cret-token".to_owned()];
    let url = ws_url(start_server(config));
    let jfk = data_file("jfk.wav");

    let out = sori_stream(&[jfk.to_str().unwrap(), "--url", &url]);
    let err = stderr(&out);
    assert!(!out.status.success(), "must fail: {err}");
    assert!(err.contains("token_required"), "{err}");
    let messages = json_lines(&out);
    assert!(
        messages
            .iter()
            .any(|m| m["type"] == "error" && m["code"] == "token_required" && m["fatal"] == true),
        "{messages:?}"
    );

    // With the token the same server streams, and an MP3 works as a WAV does.
    let mp3 = data_file("jfk.mp3");
    let out = sori_stream(&[
        mp3.to_str().unwrap(),
        "--url",
        &url,
        "--language",
        "en",
        "--token",
        "s3cret-token",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let messages = json_lines(&out);
    assert_eq!(messages.last().unwrap()["type"], "closed");
    let wer = sori::eval::wer(JFK_REFERENCE, &final_text(&messages));
    assert!(wer <= MAX_WER, "WER {:.1} % > 10 %", wer * 100.0);
}

#[test]
fn an_unreadable_file_fails_before_connecting() {
    let out = sori_stream(&["no-such-file.wav", "--url", "ws://127.0.0.1:9/ws"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("cannot stream no-such-file.wav"), "{err}");
}
