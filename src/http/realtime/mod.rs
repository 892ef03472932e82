//! OpenAI's Realtime API in transcription mode at `GET /v1/realtime` (WebSocket), over sori's
//! session driver: the `openai` SDKs' realtime clients and voice-agent plugins that speak it
//! point their base URL at sori (docs/compatibility.md).
//!
//! The client configures the session (`session.update` in the GA form,
//! `transcription_session.update` in the beta one), streams base64 audio with
//! `input_audio_buffer.append`, and with `turn_detection: null` commits turns itself. Each
//! utterance is a conversation item: `speech_started` / `speech_stopped` / `committed` as the
//! voice detector (or the client) ends it, then transcription deltas that are true increments
//! and `completed` with the whole text.

mod deltas;

use std::collections::{BTreeSet, HashMap, VecDeque};

use axum::Json;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::access::{ClientAddr, authorization, subprotocols};
use super::live::{self, Outbox, Protocol};
use crate::compat::realtime_config::{Dialect, SessionConfig};
use crate::compat::realtime_events::{ClientEvent, parse_client_event};
use crate::driver::{Closed, Driver, Opening};
use crate::protocol::{ClientMessage, ServerMessage, close_code, decode_base64_audio};
use crate::session::{default_options, resolve_options};
use deltas::Deltas;

/// The key a browser offers as a subprotocol (it cannot set headers on a WebSocket).
const KEY_SUBPROTOCOL: &str = "openai-insecure-api-key.";

pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let offered = subprotocols(&headers);
    let subprotocol_key = offered
        .iter()
        .find_map(|p| p.strip_prefix(KEY_SUBPROTOCOL).map(str::to_owned));
    let key = authorization(&headers, &["bearer"]).or(subprotocol_key);
    // The beta protocol is asked for with `OpenAI-Beta: realtime=v1` (or its subprotocol).
    let beta = headers
        .get("openai-beta")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("realtime"))
        || offered
            .iter()
            .any(|p| p.starts_with("openai-beta.realtime"));
    let dialect = if beta { Dialect::Beta } else { Dialect::Ga };
    let id = format!("sess_{}", uuid::Uuid::new_v4().simple());
    let opening = match opening(&state, &id) {
        Ok(opening) => opening,
        Err(message) => {
            return http_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message);
        }
    };
    let admitted = match live::admit(&state, Realtime::NAME, peer.ip(), &headers, key.as_deref()) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let code = match refusal.status() {
                StatusCode::UNAUTHORIZED => "invalid_api_key",
                StatusCode::FORBIDDEN => "origin_not_allowed",
                _ => "rate_limit_exceeded",
            };
            return http_error(refusal.status(), code, refusal.to_string());
        }
    };
    if let Some(query) = query.as_deref() {
        tracing::debug!(
            query,
            "realtime: query (model and intent are informational)"
        );
    }
    let limit = live::transport_limit(&state);
    let ws = ws.max_message_size(limit).max_frame_size(limit);
    let ws = if offered.iter().any(|p| p == "realtime") {
        ws.protocols(["realtime"])
    } else {
        ws
    };
    ws.on_upgrade(move |socket| async move {
        // Given back when this future ends or is dropped (a panic included).
        let _admitted = admitted;
        live::run(socket, &state, opening, Realtime::new(id, dialect)).await;
    })
}

/// A refusal before the upgrade, in OpenAI's error body.
fn http_error(status: StatusCode, code: &str, message: String) -> Response {
    let kind = if status == StatusCode::TOO_MANY_REQUESTS {
        "rate_limit_error"
    } else {
        "invalid_request_error"
    };
    let body = json!({"error": {"message": message, "type": kind, "code": code, "param": null}});
    (status, Json(body)).into_response()
}

fn opening(state: &AppState, id: &str) -> Result<Opening, String> {
    let config = &state.transcriber.config;
    let mut base = default_options(&config.stt, false);
    // Its protocol has no message for a revised final.
    base.revisions = false;
    let requested = SessionConfig::default().stream_options();
    let options = resolve_options(&base, &requested, config.stt.max_prompt_chars)
        .map_err(|e| e.to_string())?;
    Ok(Opening {
        id: id.trim_start_matches("sess_").to_owned(),
        options,
        early_errors: Vec::new(),
    })
}

/// One conversation item: the utterance (or, with manual turns, the utterances between two
/// commits) being transcribed.
#[derive(Debug)]
struct Item {
    id: String,
    /// Segments whose final (or discard) has not come yet.
    pending: BTreeSet<u64>,
    /// The text of each final so far, in order (manual turns may hold several).
    finals: Vec<String>,
    /// Seconds of speech transcribed (the `usage` of `completed`).
    seconds: f64,
    deltas: Deltas,
}

impl Item {
    fn new(id: String, pending: BTreeSet<u64>) -> Self {
        Item {
            id,
            pending,
            finals: Vec::new(),
            seconds: 0.0,
            deltas: Deltas::default(),
        }
    }
}

struct Realtime {
    config: SessionConfig,
    dialect: Dialect,
    session_id: String,
    next_event: u64,
    next_item: u64,
    /// The item each open or pending segment belongs to.
    segment_item: HashMap<u64, String>,
    items: HashMap<String, Item>,
    previous_item: Option<String>,
    /// Manual turns: segments begun since the last commit's flush, not yet in an item.
    unassigned: Vec<u64>,
    /// Manual turns: items committed whose flush has not come back from the driver yet.
    committing: VecDeque<String>,
    /// Audio appended since the last commit or clear.
    appended: bool,
}

impl Realtime {
    fn new(session_id: String, dialect: Dialect) -> Self {
        Realtime {
            config: SessionConfig::default(),
            dialect,
            session_id,
            next_event: 0,
            next_item: 0,
            segment_item: HashMap::new(),
            items: HashMap::new(),
            previous_item: None,
            unassigned: Vec::new(),
            committing: VecDeque::new(),
            appended: false,
        }
    }

    fn manual(&self) -> bool {
        self.config.turn_detection.is_none()
    }

    /// Sends a server event with a fresh `event_id`.
    fn send(&mut self, out: &mut Outbox, kind: &str, mut fields: Value) {
        self.next_event += 1;
        fields["type"] = json!(kind);
        fields["event_id"] = json!(format!("event_{}_{}", self.session_id, self.next_event));
        out.push_json(&fields);
    }

    fn error(
        &mut self,
        out: &mut Outbox,
        code: &str,
        message: &str,
        param: Option<&str>,
        client_event: Option<String>,
    ) {
        let error = json!({
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event,
        });
        self.send(out, "error", json!({ "error": error }));
    }

    fn session_event(&mut self, out: &mut Outbox, suffix: &str) {
        let kind = match self.dialect {
            Dialect::Ga => format!("session.{suffix}"),
            Dialect::Beta => format!("transcription_session.{suffix}"),
        };
        let session = self.config.describe(&self.session_id, self.dialect);
        self.send(out, &kind, json!({ "session": session }));
    }

    fn new_item(&mut self) -> String {
        self.next_item += 1;
        format!(
            "item_{}_{}",
            &self.session_id[5..13.min(self.session_id.len())],
            self.next_item
        )
    }

    fn commit(&mut self, out: &mut Outbox, item_id: &str) {
        let previous = self.previous_item.replace(item_id.to_owned());
        self.send(
            out,
            "input_audio_buffer.committed",
            json!({"previous_item_id": previous, "item_id": item_id}),
        );
        if self.dialect == Dialect::Ga {
            let item = json!({
                "id": item_id, "object": "realtime.item", "type": "message",
                "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": null}],
            });
            self.send(
                out,
                "conversation.item.added",
                json!({"previous_item_id": previous, "item": item}),
            );
        } else {
            let item = json!({
                "id": item_id, "object": "realtime.item", "type": "message",
                "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": null}],
            });
            self.send(
                out,
                "conversation.item.created",
                json!({"previous_item_id": previous, "item": item}),
            );
        }
    }

    /// Sends the item's last delta and `completed` once none of its segments is pending.
    fn complete_if_done(&mut self, out: &mut Outbox, item_id: &str) {
        let Some(item) = self.items.get_mut(item_id) else {
            return;
        };
        if !item.pending.is_empty() {
            return;
        }
        let text = item.finals.join(" ");
        let (delta, transcript) = item.deltas.finish(&text);
        let seconds = (item.seconds * 1000.0).round() / 1000.0;
        self.items.remove(item_id);
        if !delta.is_empty() {
            self.send(
                out,
                "conversation.item.input_audio_transcription.delta",
                json!({"item_id": item_id, "content_index": 0, "delta": delta}),
            );
        }
        self.send(
            out,
            "conversation.item.input_audio_transcription.completed",
            json!({
                "item_id": item_id, "content_index": 0, "transcript": transcript,
                "usage": {"type": "duration", "seconds": seconds},
            }),
        );
    }

    fn on_event(&mut self, event: ServerMessage, out: &mut Outbox) {
        match event {
            ServerMessage::SpeechStarted { segment_id, start } => {
                if self.manual() {
                    self.unassigned.push(segment_id);
                    return;
                }
                let item_id = self.new_item();
                self.segment_item.insert(segment_id, item_id.clone());
                let item = Item::new(item_id.clone(), BTreeSet::from([segment_id]));
                self.items.insert(item_id.clone(), item);
                let ms = (start * 1000.0).round() as u64;
                self.send(
                    out,
                    "input_audio_buffer.speech_started",
                    json!({"audio_start_ms": ms, "item_id": item_id}),
                );
            }
            ServerMessage::SpeechStopped {
                segment_id,
                end,
                kept,
            } => {
                if self.manual() {
                    if !kept {
                        self.unassigned.retain(|s| *s != segment_id);
                        self.segment_done(segment_id, None, out);
                    }
                    return;
                }
                let Some(item_id) = self.segment_item.get(&segment_id).cloned() else {
                    return;
                };
                let ms = (end * 1000.0).round() as u64;
                self.send(
                    out,
                    "input_audio_buffer.speech_stopped",
                    json!({"audio_end_ms": ms, "item_id": item_id}),
                );
                self.commit(out, &item_id);
                if !kept {
                    self.segment_done(segment_id, None, out);
                }
            }
            ServerMessage::Flushed { next_segment_id } if self.manual() => {
                let Some(item_id) = self.committing.pop_front() else {
                    return;
                };
                let segments: BTreeSet<u64> = self
                    .unassigned
                    .iter()
                    .copied()
                    .filter(|s| *s < next_segment_id)
                    .collect();
                self.unassigned.retain(|s| *s >= next_segment_id);
                for segment in &segments {
                    self.segment_item.insert(*segment, item_id.clone());
                }
                self.items
                    .insert(item_id.clone(), Item::new(item_id.clone(), segments));
                self.complete_if_done(out, &item_id);
            }
            ServerMessage::Partial {
                segment_id, text, ..
            } => {
                let Some(item) = self
                    .segment_item
                    .get(&segment_id)
                    .and_then(|id| self.items.get_mut(id))
                else {
                    return;
                };
                // Deltas from partials only while the item is one utterance.
                if item.finals.is_empty()
                    && item.pending.len() == 1
                    && let Some(delta) = item.deltas.partial(&text)
                {
                    let item_id = item.id.clone();
                    self.send(
                        out,
                        "conversation.item.input_audio_transcription.delta",
                        json!({"item_id": item_id, "content_index": 0, "delta": delta}),
                    );
                }
            }
            ServerMessage::Final {
                segment_id,
                text,
                start,
                end,
                ..
            } => {
                if let Some(item) = self
                    .segment_item
                    .get(&segment_id)
                    .and_then(|id| self.items.get_mut(id))
                {
                    item.seconds += (end - start).max(0.0);
                }
                self.segment_done(segment_id, Some(text), out);
            }
            ServerMessage::Error { code, message, .. } => {
                self.error(out, &code, &message, None, None);
            }
            _ => {}
        }
    }

    /// A segment's final came (or it was discarded: `None`).
    fn segment_done(&mut self, segment_id: u64, text: Option<String>, out: &mut Outbox) {
        let Some(item_id) = self.segment_item.remove(&segment_id) else {
            return;
        };
        if let Some(item) = self.items.get_mut(&item_id) {
            item.pending.remove(&segment_id);
            if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
                item.finals.push(text.trim().to_owned());
            }
        }
        self.complete_if_done(out, &item_id);
    }

    fn on_client_event(&mut self, driver: &mut Driver, text: &str, out: &mut Outbox) {
        let (event, client_event_id) = match parse_client_event(text) {
            Ok(parsed) => parsed,
            Err(e) => {
                // Counted like sori's own bad messages: past the limit the session ends.
                let counted =
                    driver.refuse(ServerMessage::error("invalid_event", &e.message, false));
                self.error(out, e.code, &e.message, e.param.as_deref(), e.event_id);
                for fatal in counted
                    .into_iter()
                    .filter(|m| matches!(m, ServerMessage::Error { fatal: true, .. }))
                {
                    self.on_event(fatal, out);
                }
                return;
            }
        };
        match event {
            ClientEvent::SessionUpdate { session, dialect } => {
                if dialect == Dialect::Beta {
                    self.dialect = Dialect::Beta;
                }
                let mut next = self.config.clone();
                if let Err(e) = next.update(dialect, &session) {
                    self.error(
                        out,
                        "invalid_value",
                        &e.message,
                        Some(&e.param),
                        client_event_id,
                    );
                    return;
                }
                let events = driver.apply(ClientMessage::Start(next.stream_options()));
                if let crate::driver::Reply::Send(events) = events
                    && let Some(ServerMessage::Error { code, message, .. }) = events
                        .into_iter()
                        .find(|e| matches!(e, ServerMessage::Error { .. }))
                {
                    self.error(out, &code, &message, Some("session"), client_event_id);
                    return;
                }
                self.config = next;
                self.session_event(out, "updated");
            }
            ClientEvent::Append { audio } => match decode_base64_audio(&audio) {
                Ok(bytes) if bytes.is_empty() => {}
                Ok(bytes) => {
                    let refused = driver.push_audio(&bytes);
                    self.appended |= refused.is_empty();
                    for event in refused {
                        self.on_event(event, out);
                    }
                }
                Err(e) => self.error(
                    out,
                    "invalid_value",
                    &e.to_string(),
                    Some("audio"),
                    client_event_id,
                ),
            },
            ClientEvent::Commit => {
                if !self.appended {
                    let message = "Error committing input audio buffer: the buffer is empty \
                                   (append audio with input_audio_buffer.append first)";
                    self.error(
                        out,
                        "input_audio_buffer_commit_empty",
                        message,
                        None,
                        client_event_id,
                    );
                    return;
                }
                self.appended = false;
                if self.manual() {
                    let item_id = self.new_item();
                    self.commit(out, &item_id);
                    self.committing.push_back(item_id);
                }
                driver.flush();
            }
            ClientEvent::Clear => {
                driver.clear();
                self.appended = false;
                self.unassigned.clear();
                self.send(out, "input_audio_buffer.cleared", json!({}));
            }
        }
    }
}

impl Protocol for Realtime {
    const NAME: &'static str = "openai_realtime";

    fn on_events(&mut self, _driver: &mut Driver, events: Vec<ServerMessage>, out: &mut Outbox) {
        for event in events {
            if matches!(event, ServerMessage::Ready { .. }) && self.next_event == 0 {
                self.session_event(out, "created");
                continue;
            }
            self.on_event(event, out);
        }
    }

    fn on_client(&mut self, driver: &mut Driver, message: Message, out: &mut Outbox) {
        match message {
            Message::Text(text) => self.on_client_event(driver, text.as_str(), out),
            Message::Binary(_) => self.error(
                out,
                "invalid_event",
                "binary frames are not part of the Realtime API; send audio as base64 in \
                 input_audio_buffer.append events",
                None,
                None,
            ),
            _ => {}
        }
    }

    fn on_closed(&mut self, _driver: &Driver, closed: Closed, out: &mut Outbox) {
        if let Some((_closed, code, reason)) = closed.farewell {
            out.push_close(code, reason);
        }
    }

    fn on_start_failed(&mut self, code: &str, message: &str, out: &mut Outbox) {
        self.error(out, code, message, None, None);
        out.push_close(close_code::INTERNAL, "the session could not start");
    }
}
