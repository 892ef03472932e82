//! `/ws`: sori's own protocol, one live session per connection. This adapter only admits the
//! connection and moves frames: binary frames and text commands go to the session driver,
//! and what the driver yields goes out as JSON text frames (docs/protocol.md).
//!
//! The socket is read for the session's whole life, its closing drain included (pings are
//! answered, audio after `stop` is discarded). What goes out waits in a bounded outbox for a
//! writer task whose every send has a deadline (`server.send_timeout_s`): a client that does
//! not read is cut off, never holds its session. The server closes with its close frame and
//! then waits briefly for the client's, so the last finals and `closed` are never reset away.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::AppState;
use crate::driver::{Driver, DriverConfig, Ending, Opening, Reply, Step};
use crate::protocol::{
    EffectiveOptions, ServerMessage, StreamOptions, close_code, parse_client_text,
};
use crate::session::{default_options, resolve_options};

/// Frames this much larger than `max_frame_bytes` are cut off by the transport (close 1009);
/// frames in between get an `error` event and the session goes on.
const TRANSPORT_LIMIT_FACTOR: usize = 4;

/// Messages waiting for a client beyond which its frames are not read until it catches up
/// (each could add a reply to the pile).
const OUTBOX_READ_LIMIT: usize = 64;

/// Messages waiting for a client beyond which it is cut off as not reading, however slowly
/// each send still finishes (status ticks and finals keep coming while it lags).
const OUTBOX_MAX: usize = 1024;

/// Messages handed to the writer task ahead of the one it is sending.
const WRITER_QUEUE: usize = 8;

/// After its close frame, the server reads (and discards) what the client still sends for up
/// to this long, until the client's close frame: closing a socket with unread data makes the
/// kernel reset the connection, which discards what the client had not read yet.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A client cut off for not reading gets this long to take the close frame saying so.
const STALLED_CLOSE_WAIT: Duration = Duration::from_secs(1);

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
        let deadline = send_timeout(&state);
        return ws.on_upgrade(move |socket| {
            refuse(socket, denied.code(), message, close_code::POLICY, deadline)
        });
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
        let deadline = send_timeout(&state);
        return ws.on_upgrade(move |socket| {
            refuse(
                socket,
                "too_many_connections",
                message,
                close_code::TRY_LATER,
                deadline,
            )
        });
    };
    ws.on_upgrade(move |socket| async move {
        // Given back when this future ends or is dropped (a panic included).
        let _slot = slot;
        handle(socket, state, query).await;
    })
}

async fn handle(socket: WebSocket, state: AppState, query: Option<String>) {
    let max_sessions = state.transcriber.config.server.max_sessions;
    let Some(_session) = SessionSlot::claim(&state.sessions, max_sessions) else {
        let message = format!("server full: {max_sessions} sessions are open; try again later");
        let deadline = send_timeout(&state);
        refuse(
            socket,
            "server_full",
            message,
            close_code::TRY_LATER,
            deadline,
        )
        .await;
        return;
    };
    crate::metrics::global().session_opened();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let span = tracing::info_span!("session", id = %id[..8]);
    run(socket, &state, id, query).instrument(span).await;
}

/// One of the server's `max_sessions` places, given back when dropped: on every way out of
/// a session, a panic included.
struct SessionSlot(Arc<AtomicUsize>);

impl SessionSlot {
    fn claim(sessions: &Arc<AtomicUsize>, max_sessions: usize) -> Option<Self> {
        sessions
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max_sessions).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(sessions)))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An `error` event saying why, then the close frame with `code`, each within `deadline`;
/// then the client's close frame is awaited briefly, so the refusal is not reset away.
async fn refuse(
    mut socket: WebSocket,
    code: &str,
    message: String,
    close: u16,
    deadline: Duration,
) {
    crate::metrics::global().session_refused(code);
    let farewell = async {
        socket
            .send(text(&ServerMessage::error(code, &message, true)))
            .await?;
        socket.send(close_frame(close, &message)).await
    };
    if let Ok(Ok(())) = tokio::time::timeout(deadline, farewell).await {
        linger(&mut socket).await;
    }
}

/// Close reasons are limited to 123 bytes by the protocol; cut on a character boundary.
fn close_reason(message: &str) -> String {
    let mut end = message.len().min(123);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_owned()
}

/// The live limits of `/ws` sessions, from the server's configuration.
fn driver_config(state: &AppState) -> DriverConfig {
    let config = &state.transcriber.config;
    let server = &config.server;
    let limit = |seconds: u64| (seconds > 0).then(|| Duration::from_secs(seconds));
    DriverConfig {
        max_frame_bytes: server.max_frame_bytes,
        max_backlog_s: server.max_backlog_s,
        max_prompt_chars: config.stt.max_prompt_chars,
        idle_timeout: limit(server.idle_timeout_s),
        max_session: limit(server.max_session_s),
        status_interval: Some(Duration::from_millis(server.status_interval_ms.max(100))),
        outputs_dir: Some(server.outputs_dir.clone()),
    }
}

/// The session's options from the query string; what cannot be used is reported after
/// `ready` and the defaults are kept.
fn opening(state: &AppState, id: String, query: Option<&str>) -> Opening {
    let config = &state.transcriber.config;
    let base = default_options(&config.stt, config.llm.enabled);
    let mut early_errors = Vec::new();
    let requested: StreamOptions = match query.map(serde_urlencoded::from_str) {
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
    let options =
        resolve_options(&base, &requested, config.stt.max_prompt_chars).unwrap_or_else(|e| {
            early_errors.push(ServerMessage::error(
                e.code,
                format!("{e}; using the default {}", describe_default(&base)),
                false,
            ));
            base.clone()
        });
    Opening {
        id,
        options,
        early_errors,
    }
}

type Sender = SplitSink<WebSocket, Message>;
type Receiver = SplitStream<WebSocket>;

/// Runs one admitted session: the driver between the socket's reader (polled for the whole
/// session, so pings are answered) and its [`Outbox`] (every send with a deadline).
async fn run(socket: WebSocket, state: &AppState, id: String, query: Option<String>) {
    let (sink, mut rx) = socket.split();
    let send_timeout = send_timeout(state);
    let mut out = Outbox::new(sink, send_timeout);
    let opening = opening(state, id, query.as_deref());
    let started = Driver::start(
        state.transcriber.engine(),
        driver_config(state),
        opening,
        &state.enrichers,
    );
    let (driver, greeting) = match started {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = %e, "cannot start session");
            out.push(&ServerMessage::error(e.code(), e.to_string(), true));
            out.push_close(close_code::INTERNAL, "the session could not start");
            say_goodbye(&mut out, &mut rx, send_timeout).await;
            return;
        }
    };
    let mut driver = driver
        .stop_on(state.stopping.subscribe())
        .drain_within(super::listen::session_drain(Duration::from_secs(
            state.transcriber.config.server.shutdown_grace_s,
        )))
        .report_lag_to(state.lags.clone())
        .measure_latency();
    out.push_all(&greeting);
    match converse(&mut driver, &mut out, &mut rx).await {
        Exit::Farewell => {
            say_goodbye(&mut out, &mut rx, send_timeout).await;
            return;
        }
        Exit::ClientClosed => {
            // tungstenite has queued its reply to the client's close frame; reading flushes it.
            drop(out);
            linger(&mut rx).await;
        }
        Exit::Lost(lost) => match &lost {
            Lost::Stalled(_) | Lost::Behind(_) => {
                tracing::warn!(reason = %lost, "client cut off; its transcript is still written");
            }
            _ => tracing::info!(reason = %lost, "client gone; its transcript is still written"),
        },
    }
    drop(rx);
    // The socket is gone; the driver still writes the last finals to the transcript.
    driver.close(Ending::Gone);
    while !matches!(driver.next().await, Step::Closed(_)) {}
}

/// How a session's conversation with its client ended.
enum Exit {
    /// The driver closed the session: `closed` and the close frame are in the outbox.
    Farewell,
    /// The client sent its close frame first: nothing more can be sent.
    ClientClosed,
    /// The client cannot be reached any more.
    Lost(Lost),
}

/// Why a client could no longer be written to.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("client is not reading: a send did not finish within {} s", .0.as_secs())]
    Stalled(Duration),
    #[error("client is not reading: {0} messages are waiting for it")]
    Behind(usize),
    #[error("the connection failed: {0}")]
    Broken(axum::Error),
    #[error("the connection ended without a close frame")]
    Vanished,
    #[error("the session's writer failed: {0}")]
    Writer(#[from] tokio::task::JoinError),
}

/// The live session: client frames to the driver, the driver's events to the outbox, until
/// the driver closes or the client is gone. Nothing here waits on a send, so the driver's
/// idle, length and shutdown limits fire whatever the client does.
async fn converse(driver: &mut Driver, out: &mut Outbox, rx: &mut Receiver) -> Exit {
    loop {
        // A client far behind on reading is not read either: its replies would pile up.
        let reading = out.waiting() < OUTBOX_READ_LIMIT;
        // Not `biased`: a client flooding frames must not starve the driver (its limits).
        tokio::select! {
            lost = out.deliver() => return Exit::Lost(lost),
            message = rx.next(), if reading => match message {
                None => return Exit::Lost(Lost::Vanished),
                Some(Err(e)) => return Exit::Lost(Lost::Broken(e)),
                Some(Ok(Message::Close(_))) => return Exit::ClientClosed,
                Some(Ok(message)) => out.push_all(&on_client_message(driver, message)),
            },
            step = driver.next() => match step {
                Step::Send(events) => out.push_all(&events),
                Step::Ending(notice) => out.push_all(notice.as_slice()),
                Step::Closed(closed) => {
                    if let Some((message, code, reason)) = closed.farewell {
                        out.push(&message);
                        out.push_close(code, reason);
                    }
                    return Exit::Farewell;
                }
            },
        }
        if out.waiting() > OUTBOX_MAX {
            return Exit::Lost(Lost::Behind(out.waiting()));
        }
    }
}

/// Sends what is left (the last events and the close frame) within one `deadline`, reading
/// and discarding the client's frames meanwhile (audio after `stop`, pings), then waits
/// briefly for the client's close frame: a socket closed with unread data is reset by the
/// kernel, and the reset discards what the client had not read yet.
async fn say_goodbye(out: &mut Outbox, rx: &mut Receiver, deadline: Duration) {
    let finishing = tokio::time::timeout(deadline, out.finish());
    tokio::pin!(finishing);
    let mut open = true;
    let sent = loop {
        tokio::select! {
            result = &mut finishing => break result,
            message = rx.next(), if open => {
                open = matches!(message, Some(Ok(ref m)) if !matches!(m, Message::Close(_)));
            }
        }
    };
    match sent {
        Ok(Ok(())) if open => linger(rx).await,
        Ok(Ok(())) => {}
        Ok(Err(lost)) => tracing::info!(reason = %lost, "the last events did not reach the client"),
        Err(_) => tracing::warn!(
            "client is not reading: the last events were not sent within {} s",
            deadline.as_secs()
        ),
    }
}

/// Reads and discards what the client still sends until its close frame ends the stream,
/// for at most [`CLOSE_WAIT`].
async fn linger<S>(rx: &mut S)
where
    S: futures_util::Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let drained = async { while let Some(Ok(_)) = rx.next().await {} };
    let _ = tokio::time::timeout(CLOSE_WAIT, drained).await;
}

/// A session's way out: messages wait here (bounded by [`OUTBOX_MAX`]) for a writer task
/// that sends them one by one, each within the send deadline. The session loop never waits
/// on a send.
struct Outbox {
    /// Each message with the moment it was queued: its send deadline counts from then.
    waiting: VecDeque<(Message, Instant)>,
    /// To the writer; `None` once everything was handed over ([`Outbox::finish`]).
    queue: Option<mpsc::Sender<(Message, Instant)>>,
    writer: JoinHandle<Result<(), Lost>>,
}

impl Outbox {
    fn new(sink: Sender, deadline: Duration) -> Self {
        let (queue, rx) = mpsc::channel(WRITER_QUEUE);
        Self {
            waiting: VecDeque::new(),
            queue: Some(queue),
            writer: tokio::spawn(write(sink, rx, deadline).in_current_span()),
        }
    }

    fn push(&mut self, event: &ServerMessage) {
        self.waiting.push_back((text(event), Instant::now()));
    }

    fn push_all(&mut self, events: &[ServerMessage]) {
        for event in events {
            self.push(event);
        }
    }

    fn push_close(&mut self, code: u16, reason: &str) {
        self.waiting
            .push_back((close_frame(code, reason), Instant::now()));
    }

    fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Hands waiting messages to the writer as it takes them; returns only when the writer
    /// stopped (the client is not reading, or gone). Cancel-safe.
    async fn deliver(&mut self) -> Lost {
        while let Some(queue) = self.queue.as_ref().filter(|_| !self.waiting.is_empty()) {
            let permit = tokio::select! {
                permit = queue.reserve() => permit,
                ended = &mut self.writer => return writer_failure(ended),
            };
            let Ok(permit) = permit else {
                break; // the writer stopped; its result says why
            };
            if let Some(message) = self.waiting.pop_front() {
                permit.send(message);
            }
        }
        self.writer_ended().await
    }

    async fn writer_ended(&mut self) -> Lost {
        writer_failure((&mut self.writer).await)
    }

    /// Hands over everything waiting, then waits until the writer sent it all.
    async fn finish(&mut self) -> Result<(), Lost> {
        if let Some(queue) = self.queue.take() {
            while let Some(message) = self.waiting.pop_front() {
                if queue.send(message).await.is_err() {
                    break; // the writer stopped; its result says why
                }
            }
        }
        (&mut self.writer).await?
    }
}

impl Drop for Outbox {
    /// A writer still sending when its session ends (a client gone or cut off) stops now.
    fn drop(&mut self) {
        self.writer.abort();
    }
}

fn writer_failure(ended: Result<Result<(), Lost>, tokio::task::JoinError>) -> Lost {
    match ended {
        Ok(Ok(())) => Lost::Vanished,
        Ok(Err(lost)) => lost,
        Err(e) => Lost::Writer(e),
    }
}

/// The writer task: messages must keep leaving: from the moment one is queued until nothing
/// waits any more, at most `deadline` may pass, or the client is not reading: it gets a close
/// frame 1008 saying so if its buffers still take one, and the writer stops.
///
/// A deadline per send alone is not enough: a client that never reads still takes a few
/// bytes now and then (the kernel compacts its full receive buffer and reopens the window),
/// so each send finishes in time while the backlog never clears, and the frames it keeps
/// sending keep its session alive (`sori bench --hostile`'s stalled client, measured).
async fn write(
    mut sink: Sender,
    mut queue: mpsc::Receiver<(Message, Instant)>,
    deadline: Duration,
) -> Result<(), Lost> {
    // When the current run of waiting messages began; `None` when nothing waits.
    let mut backlog_since: Option<Instant> = None;
    while let Some((message, queued)) = queue.recv().await {
        let since = *backlog_since.get_or_insert(queued);
        let due = tokio::time::Instant::from_std(since + deadline);
        match tokio::time::timeout_at(due, sink.send(message)).await {
            Ok(Ok(())) => {
                if queue.is_empty() {
                    backlog_since = None;
                }
            }
            Ok(Err(e)) => return Err(Lost::Broken(e)),
            Err(_) => {
                let lost = Lost::Stalled(deadline);
                let close = close_frame(close_code::POLICY, &lost.to_string());
                let _ = tokio::time::timeout(STALLED_CLOSE_WAIT, sink.send(close)).await;
                return Err(lost);
            }
        }
    }
    Ok(())
}

/// Applies one client message and returns the replies. Once the session is closing, what
/// the client still sends (audio after `stop`, commands) is read and discarded.
fn on_client_message(driver: &mut Driver, message: Message) -> Vec<ServerMessage> {
    driver.heard();
    if !driver.is_live() {
        return Vec::new();
    }
    let reply = match message {
        Message::Binary(bytes) => return driver.push_audio(&bytes),
        Message::Text(body) => match parse_client_text(body.as_str()) {
            Ok(command) => driver.apply(command),
            Err(e) => return driver.refuse(ServerMessage::error(e.code(), e.to_string(), false)),
        },
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => Reply::Send(Vec::new()),
    };
    match reply {
        Reply::Send(events) => events,
        Reply::Stop => Vec::new(),
    }
}

fn describe_default(options: &EffectiveOptions) -> String {
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

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(close_reason(reason)),
    }))
}

fn send_timeout(state: &AppState) -> Duration {
    Duration::from_secs(state.transcriber.config.server.send_timeout_s.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server runs each session as a task; one that panics still gives its place back.
    #[tokio::test]
    async fn a_session_that_panics_gives_its_place_back() {
        let sessions = Arc::new(AtomicUsize::new(0));
        let slot = SessionSlot::claim(&sessions, 1).expect("a free place");
        assert!(SessionSlot::claim(&sessions, 1).is_none(), "one place only");
        let session = tokio::spawn(async move {
            let _slot = slot;
            panic!("a session fails");
        });
        assert!(session.await.unwrap_err().is_panic());
        assert_eq!(sessions.load(Ordering::SeqCst), 0);
        assert!(SessionSlot::claim(&sessions, 1).is_some());
    }

    #[test]
    fn close_reasons_fit_the_protocol_limit_on_a_character_boundary() {
        let reason = close_reason(&"가".repeat(100));
        assert!(reason.len() <= 123 && reason.chars().all(|c| c == '가'));
    }
}
