//! `/ws`: one live session per connection. The transport loop only moves bytes and events;
//! everything else happens in `session::Stream`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tracing::Instrument;

use super::AppState;
use crate::keywords::SessionKeywords;
use crate::outputs::TranscriptWriter;
use crate::protocol::{
    ClientMessage, ServerMessage, StreamOptions, close_code, decode_base64_audio, parse_client_text,
};
use crate::rag::live::SessionRag;
use crate::session::{Stream, default_options, resolve_options};

/// Frames this much larger than `max_frame_bytes` are cut off by the transport (close 1009);
/// frames in between get an `error` event and the session goes on.
const TRANSPORT_LIMIT_FACTOR: usize = 4;

/// Refusals are sent after the upgrade, as an `error` event and a close code, because a
/// browser's WebSocket never shows an HTTP error's body.
pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(super::access::ClientAddr(peer)): ConnectInfo<super::access::ClientAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let server = &state.transcriber.config.server;
    let transport_limit = server
        .max_frame_bytes
        .saturating_mul(TRANSPORT_LIMIT_FACTOR);
    let access = state
        .access
        .check_origin(&headers)
        .and_then(|()| state.access.check_token(&headers, query.as_deref()));
    let ws = ws
        .max_message_size(transport_limit)
        .max_frame_size(transport_limit);
    if let Err(denied) = access {
        tracing::info!(peer = %peer.ip(), reason = denied.code(), "session refused");
        let message = denied.to_string();
        return ws
            .on_upgrade(move |socket| refuse(socket, denied.code(), message, close_code::POLICY));
    }
    let Some(slot) = state
        .clients
        .admit(peer.ip(), server.max_connections_per_client)
    else {
        let message = format!(
            "too many connections from {}: {} are open; close one or try again later",
            peer.ip(),
            server.max_connections_per_client
        );
        return ws.on_upgrade(move |socket| {
            refuse(
                socket,
                "too_many_connections",
                message,
                close_code::TRY_LATER,
            )
        });
    };
    ws.on_upgrade(move |socket| async move {
        handle(socket, state, query).await;
        drop(slot);
    })
}

async fn handle(socket: WebSocket, state: AppState, query: Option<String>) {
    let max_sessions = state.transcriber.config.server.max_sessions;
    let admitted = state
        .sessions
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max_sessions).then_some(n + 1)
        })
        .is_ok();
    if !admitted {
        let message = format!("server full: {max_sessions} sessions are open; try again later");
        refuse(socket, "server_full", message, close_code::TRY_LATER).await;
        return;
    }
    crate::metrics::global().session_opened();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let span = tracing::info_span!("session", id = %id[..8]);
    run(socket, &state, id.clone(), query)
        .instrument(span)
        .await;
    state.lags.remove(&id);
    state.sessions.fetch_sub(1, Ordering::SeqCst);
}

/// An `error` event saying why, then the close frame with `code`.
async fn refuse(mut socket: WebSocket, code: &str, message: String, close: u16) {
    crate::metrics::global().session_refused(code);
    let _ = socket
        .send(Message::Text(
            ServerMessage::error(code, &message, true).to_json().into(),
        ))
        .await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: close,
            reason: Utf8Bytes::from(close_reason(&message)),
        })))
        .await;
}

/// Close reasons are limited to 123 bytes by the protocol; cut on a character boundary.
fn close_reason(message: &str) -> String {
    let mut end = message.len().min(123);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_owned()
}

/// What woke the session loop.
enum Step {
    Client(Option<Result<Message, axum::Error>>),
    Events(Vec<ServerMessage>),
    Keywords(Vec<ServerMessage>),
    Rag(Vec<ServerMessage>),
    Tick,
    /// Nothing from the client for `idle_timeout_s`.
    Idle,
    /// The session reached `max_session_s`.
    TooLong,
    /// The server is shutting down.
    Stopping,
}

/// How the session ends.
enum Ending {
    /// `stop`, a close frame, a limit or shutdown: finish, send the last finals and `closed`,
    /// then close with this code and reason.
    Graceful { code: u16, reason: &'static str },
    /// The connection broke: finish and write the transcript, send nothing.
    Gone,
}

impl Ending {
    fn stopped() -> Self {
        Ending::Graceful {
            code: close_code::NORMAL,
            reason: "stopped",
        }
    }
}

async fn run(socket: WebSocket, state: &AppState, id: String, query: Option<String>) {
    let transcriber = &state.transcriber;
    let config = &transcriber.config;
    let (mut tx, mut rx) = socket.split();
    let mut early_errors = Vec::new();
    let base = default_options(&config.stt, config.llm.enabled);
    let requested: StreamOptions = match query.as_deref().map(serde_urlencoded::from_str) {
        None => StreamOptions::default(),
        Some(Ok(options)) => options,
        Some(Err(e)) => {
            early_errors.push(ServerMessage::error(
                "invalid_options",
                format!("query string not understood ({e}); using defaults"),
                false,
            ));
            StreamOptions::default()
        }
    };
    let max_prompt_chars = config.stt.max_prompt_chars;
    let options = resolve_options(&base, &requested, max_prompt_chars).unwrap_or_else(|e| {
        early_errors.push(ServerMessage::error(
            e.code,
            format!("{e}; using the default {}", describe_default(&base)),
            false,
        ));
        base.clone()
    });
    let mut stream = match transcriber.stream(id.clone(), options) {
        Ok(stream) => stream,
        Err(e) => {
            tracing::error!(error = %e, "cannot start session");
            let _ = tx
                .send(text(&ServerMessage::error(e.code(), e.to_string(), true)))
                .await;
            return;
        }
    };
    let mut writer = match TranscriptWriter::create(&config.server.outputs_dir, &id) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %e, dir = %config.server.outputs_dir.display(), "cannot write transcripts");
            None
        }
    };
    tracing::info!(options = ?stream.session.options(), "session opened");

    let ready = stream.session.ready_message(&transcriber.model_name);
    if tx.send(text(&ready)).await.is_err() {
        return;
    }
    for e in early_errors {
        stream.session.summary_mut().errors += 1;
        let _ = tx.send(text(&e)).await;
    }

    let mut keywords = state.keywords.clone().map(SessionKeywords::new);
    let mut rag = SessionRag::new(state.rag.clone());
    let max_frame = config.server.max_frame_bytes;
    let max_backlog_s = config.server.max_backlog_s;
    let mut status = tokio::time::interval(Duration::from_millis(
        config.server.status_interval_ms.max(100),
    ));
    status.tick().await;
    let limit = |seconds: u64| (seconds > 0).then(|| Duration::from_secs(seconds));
    let idle_after = limit(config.server.idle_timeout_s);
    let session_end = limit(config.server.max_session_s).map(|d| tokio::time::Instant::now() + d);
    let mut last_heard = tokio::time::Instant::now();
    let mut stopping = state.stopping.subscribe();

    let ending = loop {
        let idle_at = idle_after.map(|d| last_heard + d);
        let step = tokio::select! {
            message = rx.next() => Step::Client(message),
            events = stream.progress() => Step::Events(events),
            events = next_keywords(&mut keywords) => Step::Keywords(events),
            events = rag.next() => Step::Rag(events),
            _ = status.tick() => Step::Tick,
            _ = sleep_until(idle_at) => Step::Idle,
            _ = sleep_until(session_end) => Step::TooLong,
            _ = stopping.wait_for(|stop| *stop) => Step::Stopping,
        };
        match step {
            Step::Idle => {
                let seconds = config.server.idle_timeout_s;
                let notice = ServerMessage::error(
                    "idle_timeout",
                    format!(
                        "nothing received for {seconds} s; send audio or {{\"type\":\"keepalive\"}} to keep a session open"
                    ),
                    true,
                );
                let _ = tx.send(text(&notice)).await;
                break Ending::Graceful {
                    code: close_code::NORMAL,
                    reason: "idle",
                };
            }
            Step::TooLong => {
                let seconds = config.server.max_session_s;
                let notice = ServerMessage::error(
                    "session_too_long",
                    format!(
                        "sessions last at most {seconds} s on this server; open a new one to go on"
                    ),
                    true,
                );
                let _ = tx.send(text(&notice)).await;
                break Ending::Graceful {
                    code: close_code::NORMAL,
                    reason: "session length limit",
                };
            }
            Step::Stopping => {
                break Ending::Graceful {
                    code: close_code::GOING_AWAY,
                    reason: "server shutting down",
                };
            }
            Step::Events(events) => {
                request_keywords(&mut keywords, &stream, &events);
                if stream.session.options().rag {
                    rag.request(&events);
                }
                if send_events(&mut tx, &mut writer, &events).await.is_err() {
                    break Ending::Gone;
                }
            }
            Step::Keywords(events) | Step::Rag(events) => {
                if send_events(&mut tx, &mut writer, &events).await.is_err() {
                    break Ending::Gone;
                }
            }
            Step::Tick => {
                let lag_ms = stream.session.lag_ms();
                state.lags.set(&id, lag_ms);
                let message = ServerMessage::Status {
                    lag_ms,
                    queue_depth: stream.pool().snapshot().queue_depth,
                    audio_seconds: stream.session.audio_seconds(),
                    language: stream.session.language().map(str::to_owned),
                };
                if tx.send(text(&message)).await.is_err() {
                    break Ending::Gone;
                }
            }
            Step::Client(None) | Step::Client(Some(Err(_))) => break Ending::Gone,
            Step::Client(Some(Ok(message))) => {
                last_heard = tokio::time::Instant::now();
                let limits = Limits {
                    max_frame,
                    max_backlog_s,
                    max_prompt_chars,
                };
                match handle_client_message(&mut stream, message, limits, &transcriber.model_name) {
                    Reply::None => {}
                    Reply::Send(reply) => {
                        if reply
                            .iter()
                            .any(|m| matches!(m, ServerMessage::Error { .. }))
                        {
                            stream.session.summary_mut().errors += 1;
                        }
                        if send_events(&mut tx, &mut writer, &reply).await.is_err() {
                            break Ending::Gone;
                        }
                    }
                    Reply::Finish => break Ending::stopped(),
                }
            }
        }
    };

    let last = stream.finish().await;
    let mut outputs = record_all(&mut writer, &last);
    let mut gone = matches!(ending, Ending::Gone);
    if !gone {
        gone = send_all(&mut tx, &last).await.is_err();
    }
    // The last finals' keywords come before `closed`, within the LLM timeout.
    if !gone {
        request_keywords(&mut keywords, &stream, &last);
        if let Some(k) = keywords.as_mut() {
            let limit = Duration::from_millis(config.llm.timeout_ms + 1000);
            let late = k.drain(limit).await;
            outputs = outputs.and(record_all(&mut writer, &late));
            gone = send_all(&mut tx, &late).await.is_err();
        }
    }
    // And their related documents.
    if !gone && stream.session.options().rag {
        rag.request(&last);
        let limit = Duration::from_millis(config.rag.timeout_ms + 1000);
        let late = rag.drain(limit).await;
        gone = send_all(&mut tx, &late).await.is_err();
    }
    let files = writer
        .map(|w| w.close())
        .transpose()
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot write subtitle files");
            None
        })
        .unwrap_or_default();
    let summary = {
        let s = stream.session.summary_mut();
        s.outputs = files.iter().map(|p| p.display().to_string()).collect();
        s.audio_seconds = (s.audio_seconds * 1000.0).round() / 1000.0;
        s.clone()
    };
    tracing::info!(
        audio_s = summary.audio_seconds,
        finals = summary.finals,
        filtered = summary.filtered,
        graceful = matches!(ending, Ending::Graceful { .. }),
        "session closed"
    );
    if outputs.is_err() {
        tracing::error!("some finals could not be written to the transcript file");
    }
    if let (false, Ending::Graceful { code, reason }) = (gone, ending) {
        let closed = ServerMessage::Closed {
            session_id: id,
            summary,
        };
        let _ = tx.send(text(&closed)).await;
        let _ = tx
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            })))
            .await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Per-frame limits.
#[derive(Clone, Copy)]
struct Limits {
    max_frame: usize,
    /// Audio waiting for a decoder, in seconds, beyond which frames are refused.
    max_backlog_s: f64,
    /// Longest `prompt` a `start` message may set.
    max_prompt_chars: usize,
}

enum Reply {
    None,
    Send(Vec<ServerMessage>),
    Finish,
}

fn handle_client_message(
    stream: &mut Stream,
    message: Message,
    limits: Limits,
    model: &str,
) -> Reply {
    let max_frame = limits.max_frame;
    match message {
        Message::Binary(bytes) => push_audio(stream, &bytes, limits),
        Message::Text(body) => match parse_client_text(body.as_str()) {
            Err(e) => Reply::Send(vec![ServerMessage::error(e.code(), e.to_string(), false)]),
            Ok(ClientMessage::Audio { audio }) => {
                if audio.len() / 4 * 3 > max_frame {
                    return too_big(audio.len() / 4 * 3, max_frame);
                }
                match decode_base64_audio(&audio) {
                    Ok(bytes) => push_audio(stream, &bytes, limits),
                    Err(e) => {
                        Reply::Send(vec![ServerMessage::error(e.code(), e.to_string(), false)])
                    }
                }
            }
            Ok(ClientMessage::Start(requested)) => {
                let current = stream.session.options().clone();
                let result = resolve_options(&current, &requested, limits.max_prompt_chars)
                    .map_err(|e| ServerMessage::error(e.code, e.to_string(), false))
                    .and_then(|options| {
                        stream
                            .session
                            .reconfigure(options)
                            .map_err(|e| ServerMessage::error(e.code(), e.to_string(), false))
                    });
                match result {
                    Ok(()) => Reply::Send(vec![stream.session.ready_message(model)]),
                    Err(error) => Reply::Send(vec![error]),
                }
            }
            Ok(ClientMessage::Flush) => {
                stream.session.flush();
                Reply::None
            }
            Ok(ClientMessage::Keepalive) => Reply::None,
            Ok(ClientMessage::Stop) => Reply::Finish,
        },
        Message::Close(_) => Reply::Finish,
        Message::Ping(_) | Message::Pong(_) => Reply::None,
    }
}

fn push_audio(stream: &mut Stream, bytes: &[u8], limits: Limits) -> Reply {
    if bytes.len() > limits.max_frame {
        return too_big(bytes.len(), limits.max_frame);
    }
    // Memory stays bounded when a client sends faster than the server decodes: audio is
    // refused (with a reason) rather than queued without end. Finals already queued are kept.
    let backlog = stream.session.backlog_seconds();
    if backlog > limits.max_backlog_s {
        return Reply::Send(vec![ServerMessage::error(
            "backlog_full",
            format!(
                "{backlog:.0} s of audio are waiting to be decoded (limit {:.0} s); this frame was dropped: send audio in real time, not faster",
                limits.max_backlog_s
            ),
            false,
        )]);
    }
    if bytes.is_empty() {
        return Reply::Send(vec![ServerMessage::error(
            "empty_frame",
            "audio frame has no bytes; send raw PCM in the session's encoding",
            false,
        )]);
    }
    match stream.session.push_pcm(bytes) {
        Ok(()) => Reply::None,
        Err(e) => Reply::Send(vec![ServerMessage::error(e.code(), e.to_string(), false)]),
    }
}

fn too_big(len: usize, max_frame: usize) -> Reply {
    Reply::Send(vec![ServerMessage::error(
        "frame_too_large",
        format!(
            "audio frame of {len} bytes is larger than the limit of {max_frame} bytes; send smaller frames (20–100 ms each)"
        ),
        false,
    )])
}

fn describe_default(options: &crate::protocol::EffectiveOptions) -> String {
    format!(
        "{} at {} Hz, {} channel(s), language {}",
        options.encoding.as_str(),
        options.sample_rate,
        options.channels,
        options.language
    )
}

fn text(message: &ServerMessage) -> Message {
    Message::Text(message.to_json().into())
}

async fn next_keywords(keywords: &mut Option<SessionKeywords>) -> Vec<ServerMessage> {
    match keywords {
        Some(k) => k.next().await,
        None => std::future::pending().await,
    }
}

/// Starts keyword extraction for the finals among `events` when the session wants keywords.
fn request_keywords(
    keywords: &mut Option<SessionKeywords>,
    stream: &Stream,
    events: &[ServerMessage],
) {
    if let Some(k) = keywords
        && stream.session.options().keywords
    {
        k.request(events);
    }
}

async fn send_all<S>(tx: &mut S, events: &[ServerMessage]) -> Result<(), axum::Error>
where
    S: SinkExt<Message, Error = axum::Error> + Unpin,
{
    for event in events {
        tx.send(text(event)).await?;
    }
    Ok(())
}

/// Records finals in the transcript file, then sends every event.
async fn send_events<S>(
    tx: &mut S,
    writer: &mut Option<TranscriptWriter>,
    events: &[ServerMessage],
) -> Result<(), axum::Error>
where
    S: SinkExt<Message, Error = axum::Error> + Unpin,
{
    if record_all(writer, events).is_err() {
        tracing::error!("a final could not be written to the transcript file");
    }
    for event in events {
        tx.send(text(event)).await?;
    }
    Ok(())
}

fn record_all(
    writer: &mut Option<TranscriptWriter>,
    events: &[ServerMessage],
) -> std::io::Result<()> {
    if let Some(w) = writer.as_mut() {
        for event in events {
            w.record(event)?;
        }
    }
    Ok(())
}
