//! Hostile and careless `/ws` clients (issue 15, points 2 and 8): a client that never reads
//! is cut off within the send deadline and gives its slot back; clients that ping every
//! second, stream faster than real time and close while the decoder is busy get every final
//! and `closed`; a client that goes on sending audio after `stop` loses nothing either.
//! Each test prints what it observed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// `sessions` in `/api/status`.
async fn open_sessions(http: &reqwest::Client, addr: SocketAddr) -> u64 {
    let status: Value = http
        .get(format!("http://{addr}/api/status"))
        .send()
        .await
        .expect("/api/status answers")
        .json()
        .await
        .expect("/api/status is JSON");
    status["sessions"].as_u64().expect("a session count")
}

/// Polls `/api/status` until `sessions` is `want`; the instant it was seen, or `None` after
/// `within`.
async fn sessions_become(addr: SocketAddr, want: u64, within: Duration) -> Option<Instant> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if open_sessions(&http, addr).await == want {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The issue's attack as it was made: 20,000 small frames that each earn a small `error`, and
/// never a read. The replies trickle into the client's receive buffer (the kernel compacts it),
/// so no send ever times out; before, every frame read also kept the session from idling and
/// it was held for good. Now the 101st invalid message ends it (1008).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_small_invalid_frames_from_a_client_that_never_reads_is_ended() {
    let mut config = test_config();
    config.server.max_sessions = 1;
    config.server.max_connections_per_client = 1;
    let addr = start_server_without_whisper(config);

    let ws = connect(addr, "").await;
    let (mut sink, unread) = ws.split();
    let flood_started = Instant::now();
    let mut sent = 0;
    for _ in 0..20_000 {
        let frame = Message::Text(r#"{"type":"no such command"}"#.into());
        match tokio::time::timeout(Duration::from_secs(2), sink.send(frame)).await {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
    }
    let left = sessions_become(addr, 0, Duration::from_secs(60))
        .await
        .expect("the session left /api/status within 60 s")
        .duration_since(flood_started);
    eprintln!(
        "small-frame flood: {sent} frames sent; the session left /api/status {:.1} s after the flood began",
        left.as_secs_f64()
    );
    assert!(left < Duration::from_secs(20), "held {left:?}");
    // The place is free again.
    let (mut next, _) = connect_ready(addr, "").await;
    let closing = stop_and_collect(&mut next).await;
    assert_eq!(closing.last().unwrap()["type"], "closed");
    drop((sink, unread));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_cut_off_and_gives_its_slot_back() {
    const SEND_TIMEOUT_S: u64 = 2;
    let mut config = test_config();
    config.server.send_timeout_s = SEND_TIMEOUT_S;
    // One session, one per address: a slot not given back would refuse the next client.
    config.server.max_sessions = 1;
    config.server.max_connections_per_client = 1;
    let outputs = scratch_dir().join("outputs-hostile-ws");
    config.server.outputs_dir = outputs.clone();
    let addr = start_server_without_whisper(config);

    let mut ws = connect(addr, "?language=en").await;
    let ready = next_json(&mut ws).await.expect("ready");
    let id = ready["session_id"].as_str().unwrap().to_owned();
    // Speech first, so the session has finals to keep; then it never reads again.
    let (mut sink, unread) = ws.split();
    let speech = to_s16le(&[jfk_16k(), vec![0.0; 32_000]].concat());
    for frame in speech.chunks(3200) {
        sink.send(Message::Binary(frame.to_vec().into()))
            .await
            .unwrap();
    }
    // Each of these gets an `error` reply of 64 KB (its type echoed): a few hundred fill the
    // kernel's buffers between server and client, and the server's sends stop finishing.
    let junk = json!({"type": "x".repeat(64_000)}).to_string();
    let sent = Arc::new(AtomicUsize::new(0));
    let flood_started = Instant::now();
    let flood = tokio::spawn({
        let sent = Arc::clone(&sent);
        async move {
            for _ in 0..20_000 {
                let send = sink.send(Message::Text(junk.clone().into()));
                match tokio::time::timeout(Duration::from_secs(30), send).await {
                    Ok(Ok(())) => sent.fetch_add(1, Ordering::Relaxed),
                    Ok(Err(e)) => {
                        let after = flood_started.elapsed().as_secs_f64();
                        return format!("a send failed {after:.1} s after the first: {e}");
                    }
                    Err(_) => return "a send blocked for 30 s".to_owned(),
                };
            }
            "all sent".to_owned()
        }
    });

    let limit = Duration::from_secs(SEND_TIMEOUT_S + 10);
    let left = sessions_become(addr, 0, Duration::from_secs(60)).await;
    let left = left
        .expect("the session left /api/status within 60 s")
        .duration_since(flood_started);
    let flood_end = flood.await.unwrap();
    eprintln!(
        "stalled client: session left /api/status {:.1} s after its flood began (send_timeout_s = {SEND_TIMEOUT_S}); {} frames were taken from it; its flood ended: {flood_end}",
        left.as_secs_f64(),
        sent.load(Ordering::Relaxed)
    );
    assert!(
        left <= limit,
        "the stalled session was held {left:?}, more than send_timeout + 10 s"
    );

    // The slot is free: the next client gets a session (max_sessions = 1).
    let (mut next, _) = connect_ready(addr, "").await;
    let closing = stop_and_collect(&mut next).await;
    assert_eq!(closing.last().unwrap()["type"], "closed");

    // Its finals were kept, though it never read them.
    let jsonl = std::fs::read_to_string(outputs.join(format!("{id}.jsonl")))
        .expect("the cut-off session's transcript");
    let kept = jsonl.lines().count();
    eprintln!("stalled client: {kept} final(s) in its transcript");
    assert!(kept >= 1, "{jsonl}");
    drop(unread);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_first_is_answered_and_its_finals_are_kept() {
    let mut config = test_config();
    let outputs = scratch_dir().join("outputs-hostile-ws-close");
    config.server.outputs_dir = outputs.clone();
    let addr = start_server_without_whisper(config);
    let (mut ws, ready) = connect_ready(addr, "?language=en").await;
    let id = ready["session_id"].as_str().unwrap().to_owned();
    // Speech still being decoded when the client closes.
    let speech = to_s16le(&[jfk_16k(), vec![0.0; 32_000]].concat());
    send_pcm(&mut ws, &speech, 32_000, 100, false).await;
    ws.close(None).await.unwrap();
    let mut after_close = Vec::new();
    let answer = loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        match next.expect("the server answers the close frame") {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(Message::Text(t))) => after_close.push(t.to_string()),
            Some(Ok(_)) => {}
            other => panic!("the connection ended without the server's close frame: {other:?}"),
        }
    };
    eprintln!(
        "client closing first: the server answered with close {answer:?} after {} message(s) already in flight",
        after_close.len()
    );
    assert!(
        sessions_become(addr, 0, Duration::from_secs(30))
            .await
            .is_some()
    );
    let jsonl = std::fs::read_to_string(outputs.join(format!("{id}.jsonl")))
        .expect("the transcript of a session closed by its client");
    assert!(jsonl.lines().count() >= 1, "{jsonl}");
}

/// What one pinging client saw.
struct PingRun {
    messages: Vec<Value>,
    close: Option<u16>,
    pings: usize,
    max_rtt: Duration,
    /// Pings with no pong within [`PONG_WITHIN`] (sent at least that long before the end).
    unanswered: usize,
    /// Audio frames sent after `stop`.
    frames_after_stop: usize,
}

const PONG_WITHIN: Duration = Duration::from_secs(3);

type Sink = futures_util::stream::SplitSink<Ws, Message>;

/// Why a client's send did not go through.
#[derive(Debug)]
enum SendFailure {
    /// Not taken within 30 s: the server stopped reading the socket.
    Blocked,
    /// The connection refused it (closed, reset).
    Failed,
}

async fn send_within(sink: &mut Sink, message: Message) -> Result<(), SendFailure> {
    match tokio::time::timeout(Duration::from_secs(30), sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SendFailure::Failed),
        Err(_) => Err(SendFailure::Blocked),
    }
}

/// Keepalive pings, one a second, each numbered, with the instant it went out.
struct Pinger {
    sent: Arc<Mutex<HashMap<u64, Instant>>>,
    next_at: Instant,
    count: u64,
}

impl Pinger {
    /// Sends a ping if one is due.
    async fn ping_if_due(&mut self, sink: &mut Sink) -> Result<(), SendFailure> {
        if Instant::now() < self.next_at {
            return Ok(());
        }
        self.count += 1;
        self.next_at += Duration::from_secs(1);
        self.sent.lock().unwrap().insert(self.count, Instant::now());
        let payload = self.count.to_be_bytes().to_vec();
        send_within(sink, Message::Ping(payload.into())).await
    }
}

/// Reads everything to the end of the connection: JSON messages (not `status`), pongs (their
/// round trips), the close frame's code; returns when the connection ended.
async fn read_to_end(
    mut stream: futures_util::stream::SplitStream<Ws>,
    pings: Arc<Mutex<HashMap<u64, Instant>>>,
    rtts: Arc<Mutex<Vec<Duration>>>,
    closed: tokio::sync::watch::Sender<bool>,
) -> (Vec<Value>, Option<u16>, Instant) {
    let mut messages = Vec::new();
    let mut close = None;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(180), stream.next()).await;
        match next.expect("the server answers within 3 minutes") {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] != "status" {
                    messages.push(v);
                }
            }
            Some(Ok(Message::Pong(payload))) => {
                let n = u64::from_be_bytes(payload[..8].try_into().unwrap());
                if let Some(sent) = pings.lock().unwrap().remove(&n) {
                    rtts.lock().unwrap().push(sent.elapsed());
                }
            }
            // Reading on sends tungstenite's reply; the server then ends the connection.
            Some(Ok(Message::Close(frame))) => {
                close = Some(frame.map_or(1005, |f| u16::from(f.code)));
                let _ = closed.send(true);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                eprintln!("pinging client: the connection failed: {e}");
                break;
            }
            None => break,
        }
    }
    let _ = closed.send(true);
    (messages, close, Instant::now())
}

/// A client with keepalive pings every second (one without its pong within 3 s counts as
/// failed, as Python's `websockets` does with its 20 s): streams `pcm` (16 kHz s16le) at
/// `speed` × real time, sends `stop`, and reads to the end of the connection. With
/// `after_stop` it goes on sending audio until the server's close frame.
async fn pinging_client(pcm: Arc<Vec<u8>>, speed: f64, after_stop: bool) -> PingRun {
    let ws = connect(server(), "?language=en").await;
    let (mut sink, stream) = ws.split();
    let mut pinger = Pinger {
        sent: Arc::default(),
        next_at: Instant::now(),
        count: 0,
    };
    let rtts: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let (closed_tx, closed) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(read_to_end(
        stream,
        Arc::clone(&pinger.sent),
        Arc::clone(&rtts),
        closed_tx,
    ));

    let pace = Duration::from_secs_f64(0.1 / speed);
    let frames = pcm.chunks(3200); // 100 ms each
    for frame in frames {
        pinger.ping_if_due(&mut sink).await.unwrap();
        let audio = Message::Binary(frame.to_vec().into());
        send_within(&mut sink, audio).await.unwrap();
        tokio::time::sleep(pace).await;
    }
    let stop = Message::Text(json!({"type": "stop"}).to_string().into());
    send_within(&mut sink, stop).await.unwrap();
    let mut frames_after_stop = 0;
    for frame in pcm.chunks(3200).cycle() {
        if *closed.borrow() {
            break;
        }
        let sent = match pinger.ping_if_due(&mut sink).await {
            Ok(()) if after_stop => {
                send_within(&mut sink, Message::Binary(frame.to_vec().into())).await
            }
            other => other,
        };
        match sent {
            Ok(()) => frames_after_stop += usize::from(after_stop),
            Err(SendFailure::Blocked) => panic!("the server stopped reading the socket after stop"),
            Err(SendFailure::Failed) => break, // closed by the server
        }
        tokio::time::sleep(if after_stop {
            pace
        } else {
            Duration::from_millis(50)
        })
        .await;
    }
    let (messages, close, ended) = reader.await.unwrap();
    let rtts = rtts.lock().unwrap();
    let unanswered = pinger
        .sent
        .lock()
        .unwrap()
        .values()
        .filter(|sent| **sent + PONG_WITHIN < ended)
        .count();
    PingRun {
        messages,
        close,
        pings: pinger.count as usize,
        max_rtt: rtts.iter().max().copied().unwrap_or_default(),
        unanswered,
        frames_after_stop,
    }
}

/// Every final the server recorded in the session's `.jsonl` (named in `closed`).
fn recorded_finals(closed: &Value) -> Vec<Value> {
    let outputs = closed["summary"]["outputs"]
        .as_array()
        .expect("outputs listed");
    let jsonl = outputs
        .iter()
        .filter_map(Value::as_str)
        .find(|p| p.ends_with(".jsonl"))
        .expect("a .jsonl transcript");
    std::fs::read_to_string(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "final")
        .collect()
}

/// The checks every pinging run must pass: pongs in time, no error, every recorded final
/// received in order, `closed`, then close 1000.
fn check_run(label: &str, run: &PingRun) {
    let closed = run.messages.last().expect("messages");
    eprintln!(
        "{label}: {} finals, {} pings, slowest pong {:.0} ms, {} unanswered, {} audio frames after stop, close {:?}; {}",
        finals(&run.messages).len(),
        run.pings,
        run.max_rtt.as_secs_f64() * 1000.0,
        run.unanswered,
        run.frames_after_stop,
        run.close,
        final_text(&run.messages)
    );
    assert_eq!(closed["type"], "closed", "{label}: last message {closed}");
    assert_eq!(run.close, Some(1000), "{label}: the close frame");
    assert!(
        errors(&run.messages).is_empty(),
        "{label}: {:?}",
        errors(&run.messages)
    );
    assert_eq!(
        run.unanswered, 0,
        "{label}: pings without a pong within 3 s"
    );
    assert!(
        run.max_rtt < PONG_WITHIN,
        "{label}: slowest pong {:?}",
        run.max_rtt
    );
    let received: Vec<Value> = finals(&run.messages).into_iter().cloned().collect();
    assert!(!received.is_empty(), "{label}: no final");
    assert_eq!(
        received,
        recorded_finals(closed),
        "{label}: finals received vs recorded"
    );
    assert!(
        final_text(&run.messages).to_lowercase().contains("country"),
        "{label}: {}",
        final_text(&run.messages)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinging_clients_that_stream_fast_to_a_busy_decoder_get_every_final() {
    let jfk = jfk_16k();
    let clip: Vec<f32> = [jfk.clone(), vec![0.0; 16_000], jfk].concat();
    let pcm = Arc::new(to_s16le(&clip));
    let started = Instant::now();
    let runs = futures_util::future::join_all(
        (0..3).map(|_| pinging_client(Arc::clone(&pcm), 4.0, false)),
    )
    .await;
    eprintln!(
        "3 pinging clients, {:.0} s of audio each at 4x real time: all closed after {:.1} s",
        clip.len() as f64 / 16_000.0,
        started.elapsed().as_secs_f64()
    );
    for (i, run) in runs.iter().enumerate() {
        check_run(&format!("pinging client {i}"), run);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_sent_after_stop_is_discarded_and_the_last_finals_arrive() {
    let pcm = Arc::new(to_s16le(&jfk_16k()));
    let run = pinging_client(pcm, 4.0, true).await;
    check_run("client sending after stop", &run);
    assert!(
        run.frames_after_stop > 0,
        "the client sent audio after stop"
    );
}
