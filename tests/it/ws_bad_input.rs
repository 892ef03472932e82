//! Bad input over `/ws`: each case gets a clear `error` event, the session goes on and still
//! transcribes, and a healthy session running at the same time never notices.

use crate::support::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Sends one bad frame and returns the error it caused.
async fn expect_error(ws: &mut Ws, frame: Message, code: &str) -> Value {
    ws.send(frame).await.unwrap();
    let reply = next_json(ws).await.expect("socket stays open");
    assert_eq!(
        reply["type"], "error",
        "expected an error for {code}, got {reply}"
    );
    assert_eq!(reply["code"], code, "{reply}");
    assert_eq!(reply["fatal"], false, "{reply}");
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.len() > 20,
        "error message should explain itself: {message}"
    );
    reply
}

fn text(s: &str) -> Message {
    Message::Text(s.to_owned().into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_an_error_and_the_session_still_transcribes() {
    let addr = server();
    // A healthy session streams JFK in real time while the other one misbehaves.
    let healthy = tokio::spawn(async move {
        let (mut ws, _) = connect_ready(addr, "?language=en").await;
        send_pcm(&mut ws, &to_s16le(&jfk_16k()), 32000, 20, true).await;
        stop_and_collect(&mut ws).await
    });

    let (mut ws, _) = connect_ready(addr, "?language=en").await;
    let e = expect_error(&mut ws, text("this is not json"), "invalid_json").await;
    assert!(e["message"].as_str().unwrap().contains("JSON"));
    let e = expect_error(&mut ws, text(r#"{"type":"dance"}"#), "unknown_type").await;
    assert!(
        e["message"].as_str().unwrap().contains("stop"),
        "names accepted types: {e}"
    );
    expect_error(&mut ws, text(r#"{"audio":"AAAA"}"#), "unknown_type").await;
    expect_error(&mut ws, text(r#"{"type":"audio"}"#), "invalid_message").await;
    expect_error(
        &mut ws,
        text(r#"{"type":"audio","audio":"%%%not base64%%%"}"#),
        "invalid_base64",
    )
    .await;
    let e = expect_error(
        &mut ws,
        Message::Binary(vec![1u8, 2, 3].into()),
        "bad_frame_length",
    )
    .await;
    assert!(
        e["message"].as_str().unwrap().contains('3'),
        "says how many bytes: {e}"
    );
    expect_error(
        &mut ws,
        text(r#"{"type":"start","encoding":"opus"}"#),
        "unsupported_encoding",
    )
    .await;
    let e = expect_error(
        &mut ws,
        text(r#"{"type":"start","sample_rate":7000}"#),
        "unsupported_sample_rate",
    )
    .await;
    assert!(
        e["message"].as_str().unwrap().contains("8000"),
        "says what is accepted: {e}"
    );
    expect_error(
        &mut ws,
        text(r#"{"type":"start","sample_rate":96000}"#),
        "unsupported_sample_rate",
    )
    .await;
    expect_error(
        &mut ws,
        text(r#"{"type":"start","channels":6}"#),
        "unsupported_channels",
    )
    .await;
    expect_error(
        &mut ws,
        text(r#"{"type":"start","language":"klingon"}"#),
        "unsupported_language",
    )
    .await;
    expect_error(
        &mut ws,
        text(r#"{"type":"start","sample_rate":"fast"}"#),
        "invalid_message",
    )
    .await;
    // Larger than max_frame_bytes (1 MiB) but under the transport's hard limit.
    let big = vec![0u8; (1 << 20) + 2];
    expect_error(&mut ws, Message::Binary(big.into()), "frame_too_large").await;
    expect_error(&mut ws, Message::Binary(Vec::new().into()), "empty_frame").await;

    // NaN in float PCM is refused whole.
    send_json(&mut ws, json!({"type": "start", "encoding": "pcm_f32le"})).await;
    let ready = next_json(&mut ws).await.unwrap();
    assert_eq!(ready["type"], "ready");
    assert_eq!(ready["options"]["encoding"], "pcm_f32le");
    let mut nan = to_f32le(&[0.1, 0.2]);
    nan.extend(f32::NAN.to_le_bytes());
    expect_error(&mut ws, Message::Binary(nan.into()), "invalid_samples").await;
    let inf = to_f32le(&[f32::INFINITY]);
    expect_error(&mut ws, Message::Binary(inf.into()), "invalid_samples").await;

    // Back to s16 and the session transcribes as if nothing happened.
    send_json(
        &mut ws,
        json!({"type": "start", "encoding": "pcm_s16le", "sample_rate": 16000}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "ready");
    send_pcm(&mut ws, &to_s16le(&jfk_16k()), 32000, 100, false).await;
    let messages = stop_and_collect(&mut ws).await;
    let wer = sori::eval::wer(JFK_REFERENCE, &final_text(&messages));
    assert!(
        wer <= 0.10,
        "after bad input, WER {wer}: {}",
        final_text(&messages)
    );
    let closed = messages.last().unwrap();
    assert_eq!(closed["type"], "closed");
    assert!(
        closed["summary"]["errors"].as_u64().unwrap() == 16,
        "{closed}"
    );

    let healthy = healthy.await.unwrap();
    assert!(errors(&healthy).is_empty(), "{:?}", errors(&healthy));
    let wer = sori::eval::wer(JFK_REFERENCE, &final_text(&healthy));
    assert!(
        wer <= 0.10,
        "healthy session disturbed: {}",
        final_text(&healthy)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_options_are_reported_and_defaults_used() {
    let (mut ws, ready) = connect_ready(server(), "?sample_rate=7000&language=en").await;
    assert_eq!(
        ready["options"]["sample_rate"], 16000,
        "defaults in effect: {ready}"
    );
    let e = next_json(&mut ws).await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["code"], "unsupported_sample_rate");
    let (mut ws2, _) = connect_ready(server(), "?sample_rate=lots").await;
    let e = next_json(&mut ws2).await.unwrap();
    assert_eq!(e["code"], "invalid_options");
    for ws in [&mut ws, &mut ws2] {
        let closed = stop_and_collect(ws).await;
        assert_eq!(closed.last().unwrap()["type"], "closed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_beyond_the_transport_limit_closes_only_that_connection() {
    let addr = server();
    let (mut bad, _) = connect_ready(addr, "").await;
    let huge = vec![0u8; 5 << 20];
    let _ = bad.send(Message::Binary(huge.into())).await;
    // The offending connection ends …
    while next_json(&mut bad).await.is_some() {}
    // … and the server still serves.
    let (mut ws, _) = connect_ready(addr, "?language=en").await;
    send_pcm(&mut ws, &to_s16le(&jfk_16k()), 32000, 100, false).await;
    let messages = stop_and_collect(&mut ws).await;
    assert!(final_text(&messages).to_lowercase().contains("country"));
}
