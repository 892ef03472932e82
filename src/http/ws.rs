//! `/ws`: sori's own protocol, one live session per connection. This adapter only admits the
//! connection and moves frames: binary frames and text commands go to the session driver,
//! and what the driver yields goes out as JSON text frames (docs/protocol.md).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
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
    run(socket, &state, id, query).instrument(span).await;
    state.sessions.fetch_sub(1, Ordering::SeqCst);
}

/// An `error` event saying why, then the close frame with `code`.
async fn refuse(mut socket: WebSocket, code: &str, message: String, close: u16) {
    crate::metrics::global().session_refused(code);
    let _ = socket
        .send(text(&ServerMessage::error(code, &message, true)))
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

async fn run(socket: WebSocket, state: &AppState, id: String, query: Option<String>) {
    let (mut tx, mut rx) = socket.split();
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
            let _ = tx
                .send(text(&ServerMessage::error(e.code(), e.to_string(), true)))
                .await;
            return;
        }
    };
    let mut driver = driver
        .stop_on(state.stopping.subscribe())
        .report_lag_to(state.lags.clone());
    let mut gone = send_all(&mut tx, &greeting).await.is_err();
    if gone {
        driver.close(Ending::Gone);
    }
    loop {
        // Once closing, the socket is no longer read (as before the driver): a close frame
        // read now would make every later send fail, losing the last finals.
        let reading = !gone && driver.is_live();
        tokio::select! {
            message = rx.next(), if reading => {
                let message = message.and_then(Result::ok);
                let replies = on_client_message(&mut driver, message);
                if !gone && send_all(&mut tx, &replies).await.is_err() {
                    gone = true;
                    driver.close(Ending::Gone);
                }
            }
            step = driver.next() => match step {
                Step::Send(events) => {
                    if !gone && send_all(&mut tx, &events).await.is_err() {
                        gone = true;
                        driver.close(Ending::Gone);
                    }
                }
                Step::Ending(notice) => {
                    if let Some(notice) = notice
                        && !gone
                    {
                        let _ = tx.send(text(&notice)).await;
                    }
                }
                Step::Closed(closed) => {
                    if let (false, Some((message, code, reason))) = (gone, closed.farewell) {
                        let _ = tx.send(text(&message)).await;
                        let close = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
                        let _ = tx.send(Message::Close(Some(close))).await;
                    }
                    return;
                }
            }
        }
    }
}

/// Applies one client message (`None`: the connection broke) and returns the replies.
fn on_client_message(driver: &mut Driver, message: Option<Message>) -> Vec<ServerMessage> {
    let Some(message) = message else {
        driver.close(Ending::Gone);
        return Vec::new();
    };
    driver.heard();
    let reply = match message {
        Message::Binary(bytes) => return driver.push_audio(&bytes),
        Message::Text(body) => match parse_client_text(body.as_str()) {
            Ok(command) => driver.apply(command),
            Err(e) => return driver.refuse(ServerMessage::error(e.code(), e.to_string(), false)),
        },
        Message::Close(_) => {
            driver.close(Ending::stopped());
            Reply::Stop
        }
        Message::Ping(_) | Message::Pong(_) => Reply::Send(Vec::new()),
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

async fn send_all(tx: &mut Sender, events: &[ServerMessage]) -> Result<(), axum::Error> {
    for event in events {
        tx.send(text(event)).await?;
    }
    Ok(())
}
