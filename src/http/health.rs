//! `GET /ready` (can this server take sessions, and which optional parts are up) and
//! `GET /metrics` (Prometheus). `GET /health` (the process answers) is in `api.rs`.

use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::AppState;
use crate::metrics::{CONTENT_TYPE, ServerGauges};

/// How long `/ready` waits for each optional part's probe. Below the 1 s default timeout of
/// Kubernetes probes, so a hanging LLM endpoint cannot make the whole probe time out.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

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

    pub fn status_code(&self) -> StatusCode {
        if self.status == "ready" {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// `GET /ready`: 200 when the Whisper model is loaded and its workers run, 503 otherwise (or
/// while shutting down); the body names the state of each part (whisper, llm, redis, rag).
pub async fn ready(State(state): State<AppState>) -> Response {
    let (llm, redis, rag) = tokio::join!(llm_part(&state), redis_part(&state), rag_part(&state));
    let parts = vec![
        ("whisper", whisper_part(&state)),
        ("llm", llm),
        ("redis", redis),
        ("rag", rag),
    ];
    let readiness = Readiness::from_parts(parts, *state.stopping.borrow());
    (readiness.status_code(), Json(readiness)).into_response()
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

/// The keyword LLM endpoint, from the probe `/api/status` uses.
async fn llm_part(state: &AppState) -> Part {
    let Some(keywords) = &state.keywords else {
        return Part::new(
            PartState::Disabled,
            false,
            json!({ "detail": "llm.enabled is off: no keywords" }),
        );
    };
    match probe(keywords.status()).await {
        Err(timeout) => Part::new(PartState::Unavailable, false, json!({ "error": timeout })),
        Ok(status) => {
            let state = if status.reachable {
                PartState::Ready
            } else {
                PartState::Unavailable
            };
            let mut detail = json!({
                "base_url": status.base_url,
                "model": status.model,
                "circuit": status.circuit,
            });
            if !status.reachable {
                let error = format!("GET {}/models gave no model list", status.base_url);
                detail["error"] = json!(error);
            }
            Part::new(state, false, detail)
        }
    }
}

/// Redis, when `cache.redis_url` is set; without it the in-memory cache needs nothing.
async fn redis_part(state: &AppState) -> Part {
    if state.transcriber.config.cache.redis_url.is_none() {
        return Part::new(
            PartState::Disabled,
            false,
            json!({ "detail": "cache.redis_url is unset: the in-memory cache is used" }),
        );
    }
    match probe(state.cache.status()).await {
        Err(timeout) => Part::new(PartState::Unavailable, false, json!({ "error": timeout })),
        Ok(status) if status.connected => Part::new(
            PartState::Ready,
            false,
            json!({ "entries": status.current_size }),
        ),
        Ok(_) => Part::new(
            PartState::Unavailable,
            false,
            json!({ "error": "Redis does not answer; lookups miss until it is back" }),
        ),
    }
}

/// Retrieval (embedder and vector store), from the status `/api/status` reports.
async fn rag_part(state: &AppState) -> Part {
    if !state.rag.enabled() {
        return Part::new(
            PartState::Disabled,
            false,
            json!({ "detail": "rag.enabled is off" }),
        );
    }
    match probe(state.rag.status()).await {
        Err(timeout) => Part::new(PartState::Unavailable, false, json!({ "error": timeout })),
        Ok(mut status) => {
            let connected = status["connected"].as_bool().unwrap_or(false);
            if let Some(map) = status.as_object_mut() {
                map.remove("enabled");
                map.remove("connected");
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
    }
}

/// Runs a status probe under [`PROBE_TIMEOUT`]; the error says it did not answer in time.
async fn probe<T>(status: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(PROBE_TIMEOUT, status)
        .await
        .map_err(|_| format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()))
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
    fn details_sit_beside_the_state() {
        let p = Part::new(PartState::Disabled, false, json!({ "detail": "off" }));
        assert_eq!(
            json!(p),
            json!({ "state": "disabled", "required": false, "detail": "off" })
        );
    }
}
