//! Deepgram's live streaming API at `GET /v1/listen` (WebSocket), over sori's session driver:
//! a client written for Deepgram (its SDKs, LiveKit's and Pipecat's Deepgram plugins) points
//! its base URL at sori and works unchanged (docs/compatibility.md).
//!
//! Binary frames are linear16 audio; `KeepAlive`, `Finalize` (flush now: the results come
//! with `from_finalize: true`) and `CloseStream` are the text messages. sori's partials become
//! interim `Results`, its finals final ones (`speech_final` where the speaker paused), its
//! voice detector `SpeechStarted` and `UtteranceEnd`; `Metadata` comes last. Refusals before
//! the upgrade are HTTP statuses with Deepgram's error body.

mod messages;

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use axum::Json;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppState;
use super::access::{ClientAddr, authorization, subprotocols};
use super::live::{self, Outbox, Protocol};
use crate::compat::deepgram_control::{ControlMessage, parse_control};
use crate::compat::deepgram_params::{self as params, Endpointing, ListenParams};
use crate::driver::{Closed, Driver, Opening};
use crate::protocol::{ClientMessage, ServerMessage, close_code};
use crate::session::{default_options, resolve_options};
use messages::{
    HttpError, Metadata, ModelInfo, Results, ResultsMetadata, SpeechStarted, StreamError,
    UtteranceEnd,
};

pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    // Browsers cannot set headers: Deepgram's browser client offers ["token", KEY].
    let offered = subprotocols(&headers);
    let subprotocol_key = match offered.as_slice() {
        [scheme, key, ..]
            if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") =>
        {
            Some((scheme.to_ascii_lowercase(), key.clone()))
        }
        _ => None,
    };
    let key = authorization(&headers, &["token", "bearer"])
        .or_else(|| subprotocol_key.as_ref().map(|(_, key)| key.clone()));
    let params = match params::parse(query.as_deref()) {
        Ok(params) => params,
        Err(e) => return http_error(StatusCode::BAD_REQUEST, "Bad Request", e.0, request_id),
    };
    let opening = match opening(&state, &request_id, &params) {
        Ok(opening) => opening,
        Err(message) => {
            return http_error(StatusCode::BAD_REQUEST, "Bad Request", message, request_id);
        }
    };
    let admitted = match live::admit(&state, Deepgram::NAME, peer.ip(), &headers, key.as_deref()) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let code = match refusal.status() {
                StatusCode::UNAUTHORIZED => "INVALID_AUTH",
                StatusCode::FORBIDDEN => "FORBIDDEN",
                _ => "TOO_MANY_REQUESTS",
            };
            return http_error(refusal.status(), code, refusal.to_string(), request_id);
        }
    };
    if !params.ignored.is_empty() {
        tracing::info!(ignored = ?params.ignored, "deepgram: parameters accepted and not acted on");
    }
    let limit = live::transport_limit(&state);
    let ws = ws.max_message_size(limit).max_frame_size(limit);
    let ws = match subprotocol_key {
        Some((scheme, _)) => ws.protocols([scheme]),
        None => ws,
    };
    ws.on_upgrade(move |socket| async move {
        // Given back when this future ends or is dropped (a panic included).
        let _admitted = admitted;
        let protocol = Deepgram::new(&state, params, request_id);
        live::run(socket, &state, opening, protocol).await;
    })
}

fn http_error(status: StatusCode, code: &'static str, message: String, id: String) -> Response {
    let body = HttpError {
        err_code: code,
        err_msg: message,
        request_id: id,
    };
    (status, Json(body)).into_response()
}

/// The session's options; an error (HTTP 400) when the format or prompt cannot be used.
fn opening(state: &AppState, id: &str, params: &ListenParams) -> Result<Opening, String> {
    let config = &state.transcriber.config;
    let mut base = default_options(&config.stt, config.llm.enabled);
    // Its protocol has no message for a revised final.
    base.revisions = false;
    let mut requested = params.options.clone();
    requested.rag = Some(params.sori_extras && config.rag.enabled);
    let options = resolve_options(&base, &requested, config.stt.max_prompt_chars)
        .map_err(|e| e.to_string())?;
    Ok(Opening {
        id: id.replace('-', ""),
        options,
        early_errors: Vec::new(),
    })
}

/// One Deepgram stream's state beyond the driver's.
struct Deepgram {
    params: ListenParams,
    metadata: ResultsMetadata,
    created: SystemTime,
    /// Audio received: bytes (for the clock and `Metadata`) and their hash.
    audio_bytes: u64,
    hasher: Sha256,
    /// After a `Finalize`: segments below this id are its results (from the driver's
    /// `flushed`), until the last of them is out.
    finalize_below: Option<u64>,
    /// The end of the last final's last word, until its `UtteranceEnd` is sent or cancelled.
    utterance_end_due: Option<f64>,
    /// Where the voice detector last heard speech begin, and whether it is still speaking.
    last_speech_start: f64,
    speaking: bool,
    /// Segments begun whose final (or discard) has not come yet.
    unfinished: BTreeSet<u64>,
    /// A `Finalize` whose flush has not come back from the driver yet.
    finalizing: bool,
}

impl Deepgram {
    fn new(state: &AppState, params: ListenParams, request_id: String) -> Self {
        let model = &state.transcriber.model_name;
        let model_uuid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, model.as_bytes());
        Deepgram {
            params,
            metadata: ResultsMetadata {
                request_id,
                model_info: ModelInfo {
                    name: model.clone(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    arch: "whisper".to_owned(),
                },
                model_uuid: model_uuid.to_string(),
            },
            created: SystemTime::now(),
            audio_bytes: 0,
            hasher: Sha256::new(),
            finalize_below: None,
            utterance_end_due: None,
            last_speech_start: 0.0,
            speaking: false,
            unfinished: BTreeSet::new(),
            finalizing: false,
        }
    }

    /// Seconds of audio received, by the session's format.
    fn audio_seconds(&self, driver: &Driver) -> f64 {
        let o = driver.options();
        let bytes_per_second =
            f64::from(o.sample_rate) * f64::from(o.channels) * o.encoding.bytes_per_sample() as f64;
        self.audio_bytes as f64 / bytes_per_second.max(1.0)
    }

    fn on_event(&mut self, driver: &Driver, event: ServerMessage, out: &mut Outbox) {
        match event {
            ServerMessage::Partial {
                text, start, end, ..
            } if self.params.interim_results => {
                let results = Results::new(&text, (start, end), &[], 0.0, self.metadata.clone());
                out.push_json(&results);
            }
            ServerMessage::Final {
                segment_id,
                text,
                start,
                end,
                words,
                avg_logprob,
                speech_final,
                ..
            } => {
                let mut results = Results::new(
                    &text,
                    (start, end),
                    &words,
                    f64::from(avg_logprob).exp(),
                    self.metadata.clone(),
                );
                results.is_final = true;
                results.speech_final = speech_final && self.params.endpointing != Endpointing::Off;
                self.unfinished.remove(&segment_id);
                if let Some(below) = self.finalize_below {
                    results.from_finalize = segment_id < below;
                    if self.unfinished.range(..below).next().is_none() {
                        self.finalize_below = None;
                    }
                }
                out.push_json(&results);
                let last_word_end = words.last().map_or(end, |w| w.end);
                self.utterance_end_due = Some(last_word_end);
                self.send_utterance_end(driver, out);
            }
            ServerMessage::SpeechStarted { segment_id, start } => {
                self.unfinished.insert(segment_id);
                self.speaking = true;
                self.last_speech_start = start;
                if self.params.vad_events {
                    out.push_json(&SpeechStarted::at(start));
                }
            }
            ServerMessage::SpeechStopped {
                segment_id, kept, ..
            } => {
                self.speaking = false;
                if !kept {
                    self.unfinished.remove(&segment_id);
                }
            }
            ServerMessage::Flushed { next_segment_id } => {
                // Only a Finalize is answered; the flush of CloseStream is not.
                if !std::mem::take(&mut self.finalizing) {
                    return;
                }
                if self.unfinished.range(..next_segment_id).next().is_some() {
                    self.finalize_below = Some(next_segment_id);
                } else {
                    // Nothing was left to transcribe: Deepgram still confirms the Finalize.
                    let at = self.audio_seconds(driver);
                    let mut results = Results::new("", (at, at), &[], 0.0, self.metadata.clone());
                    results.is_final = true;
                    results.from_finalize = true;
                    out.push_json(&results);
                }
            }
            ServerMessage::Keyword { .. }
            | ServerMessage::Keywords { .. }
            | ServerMessage::Rag { .. }
                if self.params.sori_extras =>
            {
                out.push(&event);
            }
            ServerMessage::Error { code, message, .. } => {
                out.push_json(&StreamError::new(&code, &message));
            }
            _ => {}
        }
    }

    /// `UtteranceEnd` once `utterance_end_ms` of audio without speech followed the last final's
    /// last word; cancelled when speech resumed sooner.
    fn send_utterance_end(&mut self, driver: &Driver, out: &mut Outbox) {
        let (Some(gap_ms), Some(last_word_end)) =
            (self.params.utterance_end_ms, self.utterance_end_due)
        else {
            return;
        };
        let due = last_word_end + gap_ms as f64 / 1000.0;
        let resumed = self.last_speech_start > last_word_end && self.last_speech_start < due;
        if resumed {
            self.utterance_end_due = None;
        } else if !self.speaking && self.audio_seconds(driver) >= due {
            out.push_json(&UtteranceEnd::after(last_word_end));
            self.utterance_end_due = None;
        }
    }

    fn on_control(&mut self, driver: &mut Driver, text: &str, out: &mut Outbox) {
        match parse_control(text) {
            Ok(ControlMessage::KeepAlive) => {}
            Ok(ControlMessage::Finalize) => {
                self.finalizing = true;
                driver.flush();
            }
            Ok(ControlMessage::CloseStream) => {
                driver.apply(ClientMessage::Stop);
            }
            Err(message) => {
                for event in driver.refuse(ServerMessage::error("invalid_message", message, false))
                {
                    self.on_event(driver, event, out);
                }
            }
        }
    }
}

impl Protocol for Deepgram {
    const NAME: &'static str = "deepgram";

    fn on_events(&mut self, driver: &mut Driver, events: Vec<ServerMessage>, out: &mut Outbox) {
        for event in events {
            self.on_event(driver, event, out);
        }
    }

    fn on_client(&mut self, driver: &mut Driver, message: Message, out: &mut Outbox) {
        match message {
            Message::Binary(bytes) => {
                let refused = driver.push_audio(&bytes);
                if refused.is_empty() {
                    self.audio_bytes += bytes.len() as u64;
                    self.hasher.update(&bytes);
                }
                for event in refused {
                    self.on_event(driver, event, out);
                }
                self.send_utterance_end(driver, out);
            }
            Message::Text(text) => self.on_control(driver, text.as_str(), out),
            _ => {}
        }
    }

    fn on_closed(&mut self, driver: &Driver, closed: Closed, out: &mut Outbox) {
        let Some((_closed, code, reason)) = closed.farewell else {
            return;
        };
        let model = self.metadata.model_uuid.clone();
        let metadata = Metadata {
            kind: "Metadata",
            transaction_key: "deprecated",
            request_id: self.metadata.request_id.clone(),
            sha256: format!("{:x}", self.hasher.clone().finalize()),
            created: messages::rfc3339(self.created),
            duration: (self.audio_seconds(driver) * 1000.0).round() / 1000.0,
            channels: driver.options().channels,
            models: vec![model.clone()],
            model_info: BTreeMap::from([(model, self.metadata.model_info.clone())]),
        };
        out.push_json(&metadata);
        out.push_close(code, reason);
    }

    fn on_start_failed(&mut self, code: &str, message: &str, out: &mut Outbox) {
        out.push_json(&StreamError::new(code, message));
        out.push_close(close_code::INTERNAL, "the session could not start");
    }
}
