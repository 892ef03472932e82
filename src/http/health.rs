//! `GET /ready` (can this server take sessions, and which optional parts are up) and
//! `GET /metrics` (Prometheus). `GET /health` (the process answers) is in `api.rs`.

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::access::ClientAddr;
use super::probes::Probed;
use crate::cache::CacheStatus;
use crate::config::redact_url_password;
use crate::keywords::LlmStatus;
use crate::metrics::{CONTENT_TYPE, ServerGauges};

/// `GET /metrics`: every metric in the Prometheus text format (see docs/operations.md).
pub async fn metrics(State(state): State<AppState>) -> Response {
    let pool = state.transcriber.pool.snapshot();
    let gauges = ServerGauges {
        model: state.transcriber.model_name.clone(),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        sessions_active: state.sessions.load(std::sync::atomic::Ordering::Relaxed),
        sessions_max: state.transcriber.config.server.max_sessions,
        lag_max_seconds: state.lags.max() as f64 / 1000.0,
        workers: pool.workers,
        workers_busy: pool.busy,
        queue_depth: pool.queue_depth,
        decode_utilisation: pool.utilisation,
    };
    let body = crate::metrics::global().render(&gauges);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// The state of one part of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartState {
    Ready,
    /// Configured, but down, unreachable, or not answering within the probe timeout.
    Unavailable,
    /// Not configured (switched off, or not needed: no Redis URL means the in-memory cache).
    Disabled,
}

/// One part in `/ready`'s body.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    pub state: PartState,
    /// Whether the server is not ready without this part (only the Whisper core is).
    pub required: bool,
    /// What the probe found: model, endpoint, error…
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

impl Part {
    fn new(state: PartState, required: bool, detail: Value) -> Self {
        let detail = match detail {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Self {
            state,
            required,
            detail,
        }
    }
}

/// `/ready`'s body.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// `"ready"` when every required part is, `"not_ready"` otherwise.
    pub status: &'static str,
    /// `true` once graceful shutdown began: finishing sessions, taking no new ones.
    pub stopping: bool,
    pub parts: Map<String, Value>,
}

impl Readiness {
    /// Ready when not stopping and every required part is ready; optional parts only report.
    pub fn from_parts(parts: Vec<(&'static str, Part)>, stopping: bool) -> Self {
        let ready = !stopping
            && parts
                .iter()
                .all(|(_, p)| !p.required || p.state == PartState::Ready);
        Self {
            status: if ready { "ready" } else { "not_ready" },
            stopping,
            parts: parts
                .into_iter()
                .map(|(name, part)| (name.to_owned(), json!(part)))
                .collect(),
        }
    }

    /// The same verdict with each part reduced to its state and whether it is required: what
    /// a client that may not see details gets (no models, URLs or error texts).
    pub fn without_details(mut self) -> Self {
        for part in self.parts.values_mut() {
            if let Value::Object(map) = part {
                map.retain(|key, _| key == "state" || key == "required");
            }
        }
        self
    }

    pub fn status_code(&self) -> StatusCode {
        if self.status == "ready" {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// `GET /ready`: 200 when the Whisper model is loaded and its workers run, 503 otherwise (or
/// while shutting down); the body names the state of each part (whisper, llm, redis, rag),
/// read from the background probes. Details (models, endpoints, errors) only for a request
/// with a valid token, or, when no tokens are configured, from a loopback address: anyone
/// else learns ready / not ready and each part's state, never a URL or an error text.
pub async fn ready(State(state): State<AppState>, request: Request) -> Response {
    let probes = &state.probes;
    let (llm, redis, rag) = tokio::join!(probes.llm(), probes.cache(), probes.rag());
    let parts = vec![
        ("whisper", whisper_part(&state)),
        ("llm", llm_part(llm)),
        ("redis", redis_part(&state, redis)),
        ("rag", rag_part(&state, rag)),
    ];
    let readiness = Readiness::from_parts(parts, *state.stopping.borrow());
    let readiness = if may_see_details(&state, &request) {
        readiness
    } else {
        readiness.without_details()
    };
    (readiness.status_code(), Json(readiness)).into_response()
}

/// A valid bearer token when tokens are configured; a loopback client when none are.
fn may_see_details(state: &AppState, request: &Request) -> bool {
    if state.access.requires_token() {
        return state.access.presents_valid_token(request.headers());
    }
    request
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .is_some_and(|ConnectInfo(ClientAddr(addr))| addr.ip().is_loopback())
}

/// The core: the model was loaded when the state was built; the workers must still run.
fn whisper_part(state: &AppState) -> Part {
    let t = &state.transcriber;
    let pool = t.pool.snapshot();
    let mut detail = json!({
        "model": t.model_name,
        "workers": pool.workers,
        "busy": pool.busy,
        "queue_depth": pool.queue_depth,
    });
    let running = t.pool.is_running() && pool.workers > 0;
    if !running {
        detail["error"] = json!("the decoder workers have stopped");
    }
    let state = if running {
        PartState::Ready
    } else {
        PartState::Unavailable
    };
    Part::new(state, true, detail)
}

/// The keyword LLM endpoint, as last probed (`None`: keywords are off).
fn llm_part(probed: Option<Probed<LlmStatus>>) -> Part {
    let Some(probed) = probed else {
        return Part::new(
            PartState::Disabled,
            false,
            json!({ "detail": "llm.enabled is off: no keywords" }),
        );
    };
    let Probed::Answered(status) = probed else {
        return Part::new(
            PartState::Unavailable,
            false,
            json!({ "error": probed.missing() }),
        );
    };
    let state = if status.reachable {
        PartState::Ready
    } else {
        PartState::Unavailable
    };
    let mut detail = json!({
        "base_url": redact_url_password(&status.base_url),
        "model": status.model,
        "circuit": status.circuit,
    });
    if !status.reachable {
        let error = format!(
            "GET {}/models gave no model list",
            redact_url_password(&status.base_url)
        );
        detail["error"] = json!(error);
    }
    Part::new(state, false, detail)
}

/// Redis, when `cache.redis_url` is set; without it the in-memory cache needs nothing.
fn redis_part(state: &AppState, probed: Probed<CacheStatus>) -> Part {
    if state.transcriber.config.cache.redis_url.is_none() {
        return Part::new(
            PartState::Disabled,
            false,
            json!({ "detail": "cache.redis_url is unset: the in-memory cache is used" }),
        );
    }
    match probed {
        Probed::Answered(status) if status.connected => Part::new(
            PartState::Ready,
            false,
            json!({ "entries": status.current_size }),
        ),
        Probed::Answered(_) => Part::new(
            PartState::Unavailable,
            false,
            json!({ "error": "Redis does not answer; lookups miss until it is back" }),
        ),
        missing => Part::new(
            PartState::Unavailable,
            false,
            json!({ "error": missing.missing() }),
        ),
    }
}

/// Retrieval (embedder and vector store), as last probed.
fn rag_part(state: &AppState, probed: Probed<Value>) -> Part {
    if !state.rag.enabled() {
        return Part::new(
            PartState::Disabled,
            false,
            json!({ "detail": "rag.enabled is off" }),
        );
    }
    let Probed::Answered(mut status) = probed else {
        return Part::new(
            PartState::Unavailable,
            false,
            json!({ "error": probed.missing() }),
        );
    };
    let connected = status["connected"].as_bool().unwrap_or(false);
    if let Some(map) = status.as_object_mut() {
        map.remove("enabled");
        map.remove("connected");
        if let Some(Value::String(url)) = map.get_mut("embedder") {
            *url = redact_url_password(url);
        }
        if !connected && map.get("error").is_none_or(Value::is_null) {
            map.insert("error".to_owned(), json!("not connected yet"));
        }
    }
    let state = if connected {
        PartState::Ready
    } else {
        PartState::Unavailable
    };
    Part::new(state, false, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(state: PartState, required: bool) -> Part {
        Part::new(state, required, json!({}))
    }

    #[test]
    fn only_required_parts_decide_readiness() {
        let optional_down = Readiness::from_parts(
            vec![
                ("whisper", part(PartState::Ready, true)),
                ("llm", part(PartState::Unavailable, false)),
                ("redis", part(PartState::Disabled, false)),
            ],
            false,
        );
        assert_eq!(optional_down.status_code(), StatusCode::OK);
        assert_eq!(optional_down.parts["llm"]["state"], "unavailable");
        assert_eq!(optional_down.parts["redis"]["required"], false);

        let core_down = Readiness::from_parts(
            vec![
                ("whisper", part(PartState::Unavailable, true)),
                ("llm", part(PartState::Ready, false)),
            ],
            false,
        );
        assert_eq!(core_down.status, "not_ready");
        assert_eq!(core_down.status_code(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_stopping_server_is_not_ready() {
        let stopping = Readiness::from_parts(vec![("whisper", part(PartState::Ready, true))], true);
        assert_eq!(stopping.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(stopping.stopping);
    }

    #[test]
    fn without_details_only_states_remain() {
        let r = Readiness::from_parts(
            vec![(
                "llm",
                Part::new(
                    PartState::Unavailable,
                    false,
                    json!({ "base_url": "http://10.0.0.5:8000/v1", "error": "refused" }),
                ),
            )],
            false,
        )
        .without_details();
        assert_eq!(
            json!(r.parts),
            json!({ "llm": { "state": "unavailable", "required": false } })
        );
    }

    #[test]
    fn details_sit_beside_the_state() {
        let p = Part::new(PartState::Disabled, false, json!({ "detail": "off" }));
        assert_eq!(
            json!(p),
            json!({ "state": "disabled", "required": false, "detail": "off" })
        );
    }
}
