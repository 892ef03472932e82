//! Clients that misbehave on `/ws`: one that never reads, and keepalive clients that ping
//! every second while streaming faster than real time and then stop.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use sori::harness::ws_client::{self, send_stop};
use sori_core::protocol::ServerMessage;
use tokio_tungstenite::tungstenite::Message;

use crate::bench::child::ChildServer;

/// What the server did with a client that never reads.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StalledFigures {
    pub frames_sent: usize,
    /// From the last frame sent until `/api/status` no longer counts the session (`None`:
    /// still counted after the limit).
    pub released_after_s: Option<f64>,
}

/// Sends `frames` text frames that each earn an `error` event, never reads, and waits for
/// the server to give up on it.
pub async fn stalled_client(
    server: &ChildServer,
    frames: usize,
    limit: Duration,
) -> anyhow::Result<StalledFigures> {
    let ws = ws_client::connect(server.addr, "").await?;
    let (mut sink, stream) = ws.split();
    let mut sent = 0;
    for _ in 0..frames {
        let frame = Message::Text(r#"{"type":"no such command"}"#.into());
        // Once both directions' buffers are full the send blocks: the server stopped reading.
        match tokio::time::timeout(Duration::from_secs(2), sink.send(frame)).await {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
    }
    let last = Instant::now();
    let http = reqwest::Client::new();
    let mut released = None;
    while last.elapsed() < limit {
        if server.sessions(&http).await? == 0 {
            released = Some(last.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Held until here: dropping the halves earlier would close the connection ourselves.
    drop((sink, stream));
    Ok(StalledFigures {
        frames_sent: sent,
        released_after_s: released,
    })
}

/// One keepalive client's session, as it saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PingingFigures {
    pub finals: usize,
    /// Lines in the server's transcript of the session: every final the server made.
    pub finals_saved: usize,
    pub closed: bool,
    pub close_code: Option<u16>,
    /// The longest a ping waited for its pong (the `websockets` default gives up at 20 s).
    pub worst_pong_s: f64,
    pub unanswered_pings: usize,
}

/// Streams `pcm` (16 kHz s16le) as fast as the socket takes it, pinging every `ping_every`,
/// sends `stop` and reads until the close frame.
pub async fn pinging_client(
    server: &ChildServer,
    pcm: Vec<u8>,
    ping_every: Duration,
) -> anyhow::Result<PingingFigures> {
    let ws = ws_client::connect(server.addr, "?language=en").await?;
    let (mut sink, mut stream) = ws.split();
    let reader = tokio::spawn(async move {
        let mut seen = Seen::default();
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(180), stream.next()).await
        {
            if seen.take(message) {
                break;
            }
        }
        seen
    });
    let mut pinged = Vec::new();
    let mut next_ping = Instant::now();
    for frame in pcm.chunks(3200) {
        if Instant::now() >= next_ping {
            sink.send(Message::Ping(pinged.len().to_be_bytes().to_vec().into()))
                .await?;
            pinged.push(Instant::now());
            next_ping += ping_every;
        }
        sink.send(Message::Binary(frame.to_vec().into())).await?;
    }
    send_stop(&mut sink).await?;
    // Keep pinging through the drain, as a keepalive client does.
    while !reader.is_finished() {
        sink.send(Message::Ping(pinged.len().to_be_bytes().to_vec().into()))
            .await
            .ok();
        pinged.push(Instant::now());
        tokio::time::sleep(ping_every).await;
    }
    let seen = reader.await.context("the reader task failed")?;
    let (worst, unanswered) = seen.pong_delays(&pinged);
    let finals_saved = saved_finals(server, seen.session.as_deref());
    Ok(PingingFigures {
        finals: seen.finals,
        finals_saved,
        closed: seen.closed,
        close_code: seen.close_code,
        worst_pong_s: worst,
        unanswered_pings: unanswered,
    })
}

#[derive(Default)]
struct Seen {
    session: Option<String>,
    finals: usize,
    closed: bool,
    close_code: Option<u16>,
    /// Ping number → when its pong came.
    pongs: Vec<(usize, Instant)>,
}

impl Seen {
    /// Notes one message; true at the close frame.
    fn take(&mut self, message: Message) -> bool {
        match message {
            Message::Text(text) => match serde_json::from_str(text.as_str()) {
                Ok(ServerMessage::Ready { session_id, .. }) => self.session = Some(session_id),
                Ok(ServerMessage::Final { .. }) => self.finals += 1,
                Ok(ServerMessage::Closed { .. }) => self.closed = true,
                _ => {}
            },
            Message::Pong(payload) => {
                if let Ok(bytes) = <[u8; 8]>::try_from(payload.as_ref()) {
                    self.pongs
                        .push((usize::from_be_bytes(bytes), Instant::now()));
                }
            }
            Message::Close(frame) => {
                self.close_code = frame.map(|f| f.code.into());
                return true;
            }
            _ => {}
        }
        false
    }

    /// The longest ping → pong wait, and how many pings got no pong (pings sent after the
    /// close frame arrived are not counted).
    fn pong_delays(&self, pinged: &[Instant]) -> (f64, usize) {
        let last_pong = self.pongs.iter().map(|(_, at)| *at).max();
        let mut worst = 0.0f64;
        let mut unanswered = 0;
        for (number, sent) in pinged.iter().enumerate() {
            match self.pongs.iter().find(|(n, _)| *n == number) {
                Some((_, at)) => worst = worst.max(at.duration_since(*sent).as_secs_f64()),
                None if last_pong.is_some_and(|last| *sent < last) => unanswered += 1,
                None => {}
            }
        }
        (worst, unanswered)
    }
}

/// Lines in the session's `.jsonl` transcript under the server's outputs folder.
fn saved_finals(server: &ChildServer, session: Option<&str>) -> usize {
    let Some(session) = session else { return 0 };
    let Ok(entries) = std::fs::read_dir(&server.outputs) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "jsonl")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(session))
        })
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum()
}
