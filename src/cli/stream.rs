//! `sori stream FILE`: a recording streamed to a running server's `/ws` as a microphone
//! would send it, every server message printed as one JSON line on stdout.
//!
//! The command is the WebSocket client of the README's examples: it needs nothing beyond the
//! `sori` binary (no websocat, no sox), decodes any file `sori transcribe` takes, and speaks
//! the protocol of docs/protocol.md through the same client as the tests and `sori eval`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{Sink, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

use sori::audio::AudioError;
use sori::audio::decode::load_16k_mono;
use sori::harness::ws_client::{self, Incoming, WsClientError};
use sori::protocol::{Language, ServerMessage};

use super::runtime;

/// Audio per binary frame.
const FRAME: Duration = Duration::from_millis(100);

/// Bytes of one frame: 100 ms of 16 kHz 16-bit mono.
const FRAME_BYTES: usize = 16_000 * 2 / 10;

/// Without `--realtime`, frames go out this many times faster than real time: a file is done
/// sooner, while the server's backlog (`server.max_backlog_s`, 120 s by default) stays far away.
const SPEEDUP: u32 = 4;

/// Above this decoding lag (the server's `status.lag_ms`) the fast pace drops to real time …
const SLOW_DOWN_LAG_MS: u64 = 8_000;

/// … and above this one no audio is sent until the decoders catch up, so a slow server never
/// refuses frames with `backlog_full` (a file, unlike a microphone, can wait).
const HOLD_LAG_MS: u64 = 30_000;

/// How often a `keepalive` goes out while holding, well inside the server's idle timeout.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// How often the lag is looked at again while holding (`status` comes every second).
const HOLD_POLL: Duration = Duration::from_millis(100);

/// How long to wait for the server's next message (it sends `status` every second).
const ANSWER_WITHIN: Duration = Duration::from_secs(120);

// No `///` here: the variant's doc in `Command` is the command's help.
#[derive(clap::Args)]
pub struct StreamArgs {
    /// Audio file: wav, mp3, flac or ogg/vorbis, any sample rate and channel count.
    file: PathBuf,
    /// The server's WebSocket endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:5000/ws")]
    url: String,
    /// The session's language: ko, en or auto (default: the server's stt.language).
    #[arg(long)]
    language: Option<Language>,
    /// With --language auto: the languages detection chooses from, comma-separated (ko,en).
    #[arg(long, value_name = "CODES")]
    languages: Option<String>,
    /// Domain words for Whisper (place and facility names).
    #[arg(long)]
    prompt: Option<String>,
    /// Ask for keyword events after each final (default: on when the server's LLM is).
    #[arg(long, value_name = "true|false")]
    keywords: Option<bool>,
    /// Ask for related documents after each final (needs RAG on the server).
    #[arg(long, value_name = "true|false")]
    rag: Option<bool>,
    /// Send the audio in real time, as a live microphone would (default: up to 4× faster).
    #[arg(long)]
    realtime: bool,
    /// API token, for a server with SORI_API_TOKENS (sent as ?token=).
    #[arg(long)]
    token: Option<String>,
}

/// Why `sori stream` could not finish.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    // No `source` fields: each message already says its cause, and `sori` prints the chain.
    #[error("cannot stream {}: {reason}", path.display())]
    Audio { path: PathBuf, reason: AudioError },
    /// `url` is `--url`, without the session's query (which may hold the token).
    #[error(
        "cannot connect to {url}: {reason} (is `sori serve` running there? `./start_system.sh` starts it on 127.0.0.1:5000)"
    )]
    Connect {
        url: String,
        reason: tungstenite::Error,
    },
    #[error("the server ended the session with `{code}`: {message}")]
    Fatal { code: String, message: String },
    #[error("the server closed the connection ({}) before the session's `closed` message", close_code(*.0))]
    ClosedEarly(Option<u16>),
    #[error("lost the connection to the server: {0}")]
    Connection(WsClientError),
    #[error("cannot write to stdout: {0}")]
    Output(std::io::Error),
}

impl From<WsClientError> for StreamError {
    fn from(e: WsClientError) -> Self {
        StreamError::Connection(e)
    }
}

impl From<std::io::Error> for StreamError {
    fn from(e: std::io::Error) -> Self {
        StreamError::Output(e)
    }
}

fn close_code(code: Option<u16>) -> String {
    code.map_or_else(|| "no close code".to_owned(), |c| format!("close code {c}"))
}

pub fn run(args: StreamArgs) -> anyhow::Result<()> {
    runtime()?.block_on(stream_file(args))?;
    Ok(())
}

async fn stream_file(args: StreamArgs) -> Result<(), StreamError> {
    let url = session_url(&args);
    let path = args.file.clone();
    let samples = tokio::task::spawn_blocking(move || load_16k_mono(&path))
        .await
        .expect("the decoding thread does not panic")
        .map_err(|reason| StreamError::Audio {
            path: args.file.clone(),
            reason,
        })?;
    let pcm = to_s16le(&samples);

    let ws = ws_client::connect_url(&url).await.map_err(|e| match e {
        WsClientError::Connect { source, .. } => StreamError::Connect {
            url: args.url.clone(),
            reason: source,
        },
        other => StreamError::Connection(other),
    })?;
    let (mut sink, source) = ws.split();
    let lag_ms = Arc::new(AtomicU64::new(0));
    let mut reader = tokio::spawn(print_messages(source, Arc::clone(&lag_ms)));

    let pacing = if args.realtime {
        Pacing::RealTime
    } else {
        Pacing::Adaptive(lag_ms)
    };
    let send = async {
        send_audio(&mut sink, &pcm, &pacing).await?;
        ws_client::send_stop(&mut sink).await
    };
    let (sent, read) = tokio::select! {
        // The server ended the session before all the audio was out (a fatal error).
        read = &mut reader => (Ok(()), read),
        sent = send => (sent, reader.await),
    };
    // What the server said explains a failed send better than the send's own error.
    read.expect("the reader task does not panic")?;
    sent?;
    Ok(())
}

/// `--url` with the session's options added to its query string.
fn session_url(args: &StreamArgs) -> String {
    let mut query: Vec<(&str, String)> = vec![
        ("sample_rate", "16000".to_owned()),
        ("encoding", "pcm_s16le".to_owned()),
    ];
    if let Some(language) = args.language {
        query.push(("language", language.as_str().to_owned()));
    }
    let options = [
        ("languages", args.languages.clone()),
        ("prompt", args.prompt.clone()),
        ("keywords", args.keywords.map(|b| b.to_string())),
        ("rag", args.rag.map(|b| b.to_string())),
        ("token", args.token.clone()),
    ];
    query.extend(options.into_iter().filter_map(|(k, v)| Some((k, v?))));
    let query = serde_urlencoded::to_string(&query).expect("strings always encode");
    let separator = if args.url.contains('?') { '&' } else { '?' };
    format!("{}{separator}{query}", args.url)
}

/// 16 kHz mono samples as 16-bit little-endian PCM.
fn to_s16le(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect()
}

/// How fast frames go out.
enum Pacing {
    /// One frame per 100 ms, as from a live microphone.
    RealTime,
    /// [`SPEEDUP`]× real time, slowed and held by the decoding lag the server reports.
    Adaptive(Arc<AtomicU64>),
}

impl Pacing {
    /// The wait before the next frame, or `None` to hold until the server catches up.
    fn interval(&self) -> Option<Duration> {
        match self {
            Pacing::RealTime => Some(FRAME),
            Pacing::Adaptive(lag_ms) => interval_for_lag(lag_ms.load(Ordering::Relaxed)),
        }
    }
}

fn interval_for_lag(lag_ms: u64) -> Option<Duration> {
    match lag_ms {
        ..SLOW_DOWN_LAG_MS => Some(FRAME / SPEEDUP),
        SLOW_DOWN_LAG_MS..HOLD_LAG_MS => Some(FRAME),
        _ => None,
    }
}

/// Sends `pcm` in 100 ms binary frames at the pace `pacing` gives; with real time, returns
/// when the last frame's audio has "happened", as a microphone's would have.
async fn send_audio<W>(sink: &mut W, pcm: &[u8], pacing: &Pacing) -> Result<(), WsClientError>
where
    W: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let mut due = Instant::now();
    for frame in pcm.chunks(FRAME_BYTES) {
        tokio::time::sleep_until(due).await;
        ws_client::send_pcm(sink, frame, frame.len(), None).await?;
        let mut last_sent = Instant::now();
        let interval = loop {
            if let Some(interval) = pacing.interval() {
                break interval;
            }
            if last_sent.elapsed() >= KEEPALIVE {
                ws_client::send_json(sink, &serde_json::json!({"type": "keepalive"})).await?;
                last_sent = Instant::now();
            }
            tokio::time::sleep(HOLD_POLL).await;
            due = Instant::now();
        };
        due += interval;
    }
    if matches!(pacing, Pacing::RealTime) {
        tokio::time::sleep_until(due).await;
    }
    Ok(())
}

/// Prints every message as one JSON line until the close frame; keeps `lag_ms` up to date
/// from `status`. Succeeds when the session ended with `closed` and no fatal error.
async fn print_messages<R>(mut source: R, lag_ms: Arc<AtomicU64>) -> Result<(), StreamError>
where
    R: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let mut closed = false;
    let mut fatal = None;
    let end = loop {
        let line = match ws_client::recv(&mut source, ANSWER_WITHIN).await {
            Ok(Incoming::Message(message)) => {
                match &message {
                    ServerMessage::Status { lag_ms: lag, .. } => {
                        lag_ms.store(*lag, Ordering::Relaxed)
                    }
                    ServerMessage::Error {
                        code,
                        message,
                        fatal: true,
                    } => fatal = Some((code.clone(), message.clone())),
                    ServerMessage::Closed { .. } => closed = true,
                    _ => {}
                }
                message.to_json()
            }
            // A message this client does not know (a newer server): shown as it came.
            Err(WsClientError::BadMessage { text, .. }) => text,
            Ok(Incoming::Closed(code)) => break Ok(code),
            // Some servers drop the TCP connection right after `closed`.
            Err(WsClientError::Ended) if closed => break Ok(None),
            Err(e) => break Err(e),
        };
        print_line(&line)?;
    };
    if let Some((code, message)) = fatal {
        return Err(StreamError::Fatal { code, message });
    }
    match end {
        Ok(_) if closed => Ok(()),
        Ok(code) => Err(StreamError::ClosedEarly(code)),
        Err(e) => Err(StreamError::Connection(e)),
    }
}

/// One line on stdout, flushed at once so that a pipe sees each message as it comes.
fn print_line(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: StreamArgs,
    }

    fn url_for(argv: &[&str]) -> String {
        let cli = Cli::try_parse_from([&["stream", "a.wav"], argv].concat()).unwrap();
        session_url(&cli.args)
    }

    #[test]
    fn options_go_into_the_query_string_encoded() {
        assert_eq!(
            url_for(&[]),
            "ws://127.0.0.1:5000/ws?sample_rate=16000&encoding=pcm_s16le"
        );
        assert_eq!(
            url_for(&[
                "--url",
                "ws://h:1/ws",
                "--language",
                "auto",
                "--languages",
                "ko,en",
                "--prompt",
                "양재 나들목&x",
                "--keywords",
                "false",
                "--token",
                "t",
            ]),
            "ws://h:1/ws?sample_rate=16000&encoding=pcm_s16le&language=auto&languages=ko%2Cen\
             &prompt=%EC%96%91%EC%9E%AC+%EB%82%98%EB%93%A4%EB%AA%A9%26x&keywords=false&token=t"
        );
        assert!(url_for(&["--url", "ws://h/ws?token=x"]).starts_with("ws://h/ws?token=x&sample"));
        assert!(Cli::try_parse_from(["stream", "a.wav", "--keywords", "maybe"]).is_err());
    }

    #[test]
    fn pace_follows_the_servers_lag() {
        assert_eq!(interval_for_lag(0), Some(Duration::from_millis(25)));
        assert_eq!(interval_for_lag(SLOW_DOWN_LAG_MS), Some(FRAME));
        assert_eq!(interval_for_lag(HOLD_LAG_MS), None);
    }

    /// Frames stop while the lag is above [`HOLD_LAG_MS`] and resume when it drops.
    #[tokio::test]
    async fn holds_while_the_server_lags() {
        let frames = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink =
            futures_util::sink::unfold(Arc::clone(&frames), |frames, m: Message| async move {
                frames.lock().unwrap().push(m.len());
                Ok::<_, tungstenite::Error>(frames)
            });
        let mut sink = std::pin::pin!(sink);
        let lag = Arc::new(AtomicU64::new(HOLD_LAG_MS));
        let catch_up = {
            let lag = Arc::clone(&lag);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(400)).await;
                lag.store(0, Ordering::Relaxed);
            })
        };
        let started = Instant::now();
        let pcm = vec![0u8; FRAME_BYTES * 3];
        send_audio(&mut sink, &pcm, &Pacing::Adaptive(lag))
            .await
            .unwrap();
        catch_up.await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert_eq!(*frames.lock().unwrap(), [FRAME_BYTES; 3]);
    }

    #[test]
    fn samples_become_little_endian_s16() {
        assert_eq!(to_s16le(&[0.0, 1.0, -2.0]), [0, 0, 0xff, 0x7f, 0x01, 0x80]);
    }
}
