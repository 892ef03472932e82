//! One capacity client: a real `/ws` session that streams the speech in real time, then
//! silence and `stop`, and notes when each event arrived.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use sori::harness::ws_client::{self, Incoming, Ws};
use sori_core::audio::TARGET_SAMPLE_RATE;
use sori_core::protocol::ServerMessage;

use super::figures::ClientFigures;

/// Audio per WebSocket frame, as a live microphone client sends it.
pub const FRAME: Duration = Duration::from_millis(100);
/// The longest the server may stay silent before the client gives up (a hung session).
const SILENCE_LIMIT: Duration = Duration::from_secs(120);

/// What every client of a level streams, and where.
pub struct Speech {
    pub addr: SocketAddr,
    /// `?…&language=en&partials=true…`
    pub query: String,
    /// 16 kHz `pcm_s16le`: the files, and the trailing silence.
    pub pcm: Vec<u8>,
    pub reference: String,
}

/// One final as the client received it.
#[derive(Debug, Clone)]
pub struct FinalSeen {
    pub text: String,
    pub start: f64,
    pub end: f64,
    /// Stream seconds at which its last word ends (`None`: a final without words).
    pub last_word_end: Option<f64>,
    pub arrival: Instant,
}

/// Everything one session received, up to the close frame.
#[derive(Debug, Default)]
pub struct Seen {
    pub model: Option<String>,
    pub finals: Vec<FinalSeen>,
    pub partials: usize,
    /// `error` events, transport failures and timeouts, as text.
    pub errors: Vec<String>,
    pub closed: bool,
    pub close_code: Option<u16>,
    /// When the first audio frame went out (frame `i` at `start + i·FRAME`).
    pub start: Option<Instant>,
}

/// Waits until `at`, runs one session and sums it up; never fails (a failure is one of the
/// client's errors, and its figures show what it cost).
pub async fn run(speech: Arc<Speech>, at: Instant) -> ClientFigures {
    tokio::time::sleep_until(at.into()).await;
    let seen = match session(&speech).await {
        Ok(seen) => seen,
        Err(e) => Seen {
            errors: vec![format!("{e:#}")],
            ..Seen::default()
        },
    };
    ClientFigures::from_seen(&seen, &speech.reference, FRAME.as_secs_f64())
}

/// Connects, waits for `ready`, streams the audio paced by the wall clock while a task of its
/// own reads (stamping each message's arrival), sends `stop` and reads to the close frame.
async fn session(speech: &Speech) -> anyhow::Result<Seen> {
    let (mut sink, mut source) = ws_client::connect(speech.addr, &speech.query)
        .await?
        .split();
    let model = match ws_client::recv(&mut source, SILENCE_LIMIT).await? {
        Incoming::Message(ServerMessage::Ready { model, .. }) => model,
        Incoming::Message(ServerMessage::Error { code, message, .. }) => {
            bail!("refused: {code} ({message})")
        }
        other => bail!("expected `ready` first, got {other:?}"),
    };
    let reader = tokio::spawn(read_session(source));
    let frame_bytes = TARGET_SAMPLE_RATE as usize * FRAME.as_millis() as usize / 1000 * 2;
    let before = Instant::now();
    let sent = ws_client::send_pcm(&mut sink, &speech.pcm, frame_bytes, Some(FRAME)).await;
    let stopped = ws_client::send_stop(&mut sink).await;
    let mut seen = reader.await?;
    let _ = sink.close().await;
    seen.model = Some(model);
    match (sent, stopped) {
        (Ok(start), Ok(())) => seen.start = Some(start),
        (Ok(_), Err(e)) | (Err(e), _) => {
            seen.start = Some(before);
            seen.errors.push(format!("sending failed: {e}"));
        }
    }
    if !seen.closed {
        seen.errors.push("no `closed` event".to_owned());
    }
    Ok(seen)
}

/// Reads until the close frame; a transport error or a long silence ends it as an error.
async fn read_session(mut source: SplitStream<Ws>) -> Seen {
    let mut seen = Seen::default();
    loop {
        match ws_client::recv(&mut source, SILENCE_LIMIT).await {
            Ok(Incoming::Closed(code)) => {
                seen.close_code = code;
                return seen;
            }
            Ok(Incoming::Message(message)) => seen.take(Instant::now(), message),
            Err(e) => {
                seen.errors.push(e.to_string());
                return seen;
            }
        }
    }
}

impl Seen {
    fn take(&mut self, arrival: Instant, message: ServerMessage) {
        match message {
            ServerMessage::Partial { .. } => self.partials += 1,
            ServerMessage::Final {
                text,
                start,
                end,
                words,
                ..
            } => self.finals.push(FinalSeen {
                text,
                start,
                end,
                last_word_end: words.last().map(|w| w.end),
                arrival,
            }),
            ServerMessage::Error { code, message, .. } => {
                self.errors.push(format!("error event {code}: {message}"))
            }
            ServerMessage::Closed { .. } => self.closed = true,
            _ => {}
        }
    }
}

/// Seconds from the moment the audio of a final's last word was sent to the final's arrival.
///
/// `spoken_until` is the end of the last word in stream seconds (word times are absolute,
/// docs/protocol.md), `arrived_after` the final's arrival in seconds after the first frame was
/// sent. Frame `k` carries the audio `[k·frame, (k+1)·frame)` and goes out at `k·frame`, so the
/// audio of `t` is on the wire once frame `⌈t / frame⌉ − 1` has been sent.
pub fn final_latency(spoken_until: f64, arrived_after: f64, frame: f64) -> f64 {
    // A hair below the boundary: a word ending exactly at 0.3 s is in the third frame, not the
    // fourth (and 0.3 / 0.1 is 2.9999999999999996 or 3.0000000000000004 by rounding).
    let frames = (spoken_until / frame - 1e-6).ceil().max(1.0);
    arrived_after - (frames - 1.0) * frame
}

impl FinalSeen {
    /// Where the latency counts from: the last word's end, or the final's end without words.
    pub fn spoken_until(&self) -> f64 {
        self.last_word_end.unwrap_or(self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn latency_counts_from_the_frame_that_carried_the_last_word() {
        // A word ending at 4.25 s is in frame 42 (4.2–4.3 s), sent 4.2 s after the first.
        assert!(close(final_latency(4.25, 5.2, 0.1), 1.0));
        // Exactly on a frame boundary: 4.3 s is still the end of frame 42.
        assert!(close(final_latency(4.3, 5.2, 0.1), 1.0));
        assert!(close(final_latency(0.3, 1.0, 0.1), 0.8));
        // Audio at the very start went out with the first frame.
        assert!(close(final_latency(0.0, 0.7, 0.1), 0.7));
        assert!(close(final_latency(0.05, 0.7, 0.1), 0.7));
    }

    #[test]
    fn a_final_without_words_counts_from_its_end() {
        let arrival = Instant::now();
        let mut f = FinalSeen {
            text: "Hello.".into(),
            start: 1.0,
            end: 2.5,
            last_word_end: None,
            arrival,
        };
        assert_eq!(f.spoken_until(), 2.5);
        f.last_word_end = Some(2.1);
        assert_eq!(f.spoken_until(), 2.1);
    }

    #[test]
    fn events_are_tallied_with_word_times() {
        let mut seen = Seen::default();
        let at = Instant::now();
        let final_json = r#"{"type":"final","segment_id":0,"text":"Ask not.","start":4.3,
            "end":6.2,"language":"en","words":[{"word":"Ask","start":4.4,"end":4.6,
            "probability":0.9},{"word":"not.","start":4.7,"end":5.02,"probability":0.9}],
            "avg_logprob":-0.2,"no_speech_prob":0.01,"speech_final":true}"#;
        for json in [
            r#"{"type":"partial","segment_id":0,"text":"Ask","start":4.3,"end":5.0}"#,
            r#"{"type":"partial","segment_id":0,"text":"Ask not","start":4.3,"end":6.0}"#,
            final_json,
        ] {
            seen.take(at, serde_json::from_str(json).unwrap());
        }
        assert_eq!(seen.partials, 2);
        assert_eq!(seen.finals.len(), 1);
        assert_eq!(seen.finals[0].spoken_until(), 5.02);
        assert!(seen.errors.is_empty());
    }
}
