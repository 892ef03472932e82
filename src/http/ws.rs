//! `/ws`: sori's own protocol, one live session per connection (docs/protocol.md). This
//! adapter admits the connection and translates frames: binary frames and text commands go to
//! the session driver, and what the driver yields goes out as JSON text frames. The session
//! loop, its outbox and the closing handshake are every live protocol's ([`super::live`]).

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use std::time::Duration;

use super::AppState;
use super::live::{self, Outbox, Protocol, SessionSlot, close_frame, send_timeout};
use crate::driver::{Closed, Driver, Opening, Reply};
use crate::protocol::{
    EffectiveOptions, ServerMessage, StreamOptions, close_code, parse_client_text,
};
use crate::session::{default_options, resolve_options};

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
    let transport_limit = live::transport_limit(&state);
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
    let id = uuid::Uuid::new_v4().simple().to_string();
    let opening = opening(&state, id, query.as_deref());
    live::run(socket, &state, opening, SoriProtocol).await;
}

/// An `error` event saying why, then the close frame with `code`, each within `deadline`;
/// then the client's close frame is awaited briefly, so the refusal is not reset away.
async fn refuse(socket: WebSocket, code: &str, message: String, close: u16, deadline: Duration) {
    crate::metrics::global().session_refused(SoriProtocol::NAME, code);
    let error = Message::Text(ServerMessage::error(code, &message, true).to_json().into());
    live::refuse_after_upgrade(socket, vec![error, close_frame(close, &message)], deadline).await;
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

/// sori's own protocol: its events are the driver's, as JSON.
struct SoriProtocol;

impl Protocol for SoriProtocol {
    const NAME: &'static str = "sori";
    const REVISIONS: bool = true;

    fn on_events(&mut self, _driver: &mut Driver, events: Vec<ServerMessage>, out: &mut Outbox) {
        out.push_all(&events);
    }

    fn on_client(&mut self, driver: &mut Driver, message: Message, out: &mut Outbox) {
        out.push_all(&on_client_message(driver, message));
    }

    fn on_closed(&mut self, _driver: &Driver, closed: Closed, out: &mut Outbox) {
        if let Some((message, code, reason)) = closed.farewell {
            out.push(&message);
            out.push_close(code, reason);
        }
    }

    fn on_start_failed(&mut self, code: &str, message: &str, out: &mut Outbox) {
        out.push(&ServerMessage::error(code, message, true));
        out.push_close(close_code::INTERNAL, "the session could not start");
    }
}

/// Applies one client message (the session is live) and returns the replies.
fn on_client_message(driver: &mut Driver, message: Message) -> Vec<ServerMessage> {
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
