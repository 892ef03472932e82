//! A deliberately broken OpenAI-compatible endpoint, FOR FAULT INJECTION ONLY: it lets tests
//! show how sori behaves when the LLM hangs, fails, answers garbage or drops the connection,
//! and (with `set_fault(None)`) that it recovers. It is not a model and never a stand-in for
//! the real server in tests of keyword quality: those use `servers::llama_server()`.
//!
//! `GET /v1/models` always answers normally (model id "faulty"); `POST /v1/chat/completions`
//! answers according to the current `Fault`, as server-sent events when the request asks for a
//! stream (`"stream": true`, what sori's sessions send) and as one JSON body otherwise. Every response carries `Connection: close`, so
//! each request arrives on a fresh connection, which is what lets `CloseConnection` drop a
//! chat request before any HTTP parsing while other requests are served by axum.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The model id the fault-injection endpoint lists and answers with.
pub const FAULTY_MODEL: &str = "faulty";

/// How `POST /v1/chat/completions` misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Accepts the request and never answers (the client's timeout must fire).
    Hang,
    /// HTTP 500 with an OpenAI-style JSON error body.
    Http500,
    /// HTTP 200 whose body is not JSON.
    InvalidJson,
    /// HTTP 200, a well-formed chat completion whose message content is JSON that violates
    /// the keywords schema (`{"words": 3}`).
    SchemaViolation,
    /// Accepts the TCP connection and closes it without reading or answering.
    CloseConnection,
}

struct Shared {
    /// `None`: answer correctly.
    fault: Mutex<Option<Fault>>,
    /// Chat requests received, whatever the answer.
    requests: AtomicUsize,
}

impl Shared {
    fn fault(&self) -> Option<Fault> {
        *self.fault.lock().unwrap()
    }
}

/// The fault-injection endpoint, serving on 127.0.0.1 until dropped.
pub struct FaultyLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl FaultyLlm {
    /// Binds 127.0.0.1:0 on the current tokio runtime and serves with `fault`.
    pub async fn start(fault: Fault) -> FaultyLlm {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            fault: Mutex::new(Some(fault)),
            requests: AtomicUsize::new(0),
        });

        // Connections that survive the CloseConnection check go to axum through this channel.
        let (tx, rx) = mpsc::unbounded_channel();
        let gate = tokio::spawn(gate_connections(listener, shared.clone(), tx));
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat))
            .layer(axum::middleware::map_response(close_after)) // see the module docs
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(ChannelListener { rx, addr }, app).await;
        });
        FaultyLlm {
            addr,
            shared,
            tasks: vec![gate, server],
        }
    }

    /// `http://127.0.0.1:PORT/v1`, what sori's `llm.base_url` takes.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Chat requests received so far (every fault counts, including dropped connections).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Switches the fault; `None` answers correctly from now on.
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.shared.fault.lock().unwrap() = fault;
    }
}

impl Drop for FaultyLlm {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Accepts connections; drops chat requests at once under `CloseConnection`, passes the rest on.
async fn gate_connections(
    listener: TcpListener,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<(TcpStream, SocketAddr)>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            if shared.fault() == Some(Fault::CloseConnection)
                && is_chat_request(&stream).await
                && shared.fault() == Some(Fault::CloseConnection)
            {
                shared.requests.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            } else {
                let _ = tx.send((stream, peer));
            }
        });
    }
}

/// Peeks (without consuming) at the request line: is it `POST /v1/chat/completions`?
async fn is_chat_request(stream: &TcpStream) -> bool {
    const CHAT: &[u8] = b"POST /v1/chat/completions ";
    let mut buf = [0u8; 64];
    for _ in 0..2000 {
        match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if n >= CHAT.len() || buf[..n].contains(&b'\n') => {
                return buf[..n].starts_with(CHAT);
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    false
}

struct ChannelListener {
    rx: mpsc::UnboundedReceiver<(TcpStream, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for ChannelListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

async fn close_after(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

async fn models() -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": FAULTY_MODEL, "object": "model", "created": 0, "owned_by": "fault-injection"}]
    }))
}

async fn chat(State(shared): State<Arc<Shared>>, body: String) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let streamed = serde_json::from_str::<Value>(&body).is_ok_and(|r| r["stream"] == true);
    let answer = |content: &str| {
        if streamed {
            event_stream(content)
        } else {
            Json(completion(content)).into_response()
        }
    };
    match shared.fault() {
        Some(Fault::Hang) => std::future::pending().await,
        Some(Fault::Http500) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": {
                "code": 500,
                "message": "fault injection: internal server error",
                "type": "server_error"
            }})),
        )
            .into_response(),
        Some(Fault::InvalidJson) if streamed => (
            [(header::CONTENT_TYPE, "text/event-stream")],
            "data: fault injection: this event is not JSON {\n\n",
        )
            .into_response(),
        Some(Fault::InvalidJson) => (
            [(header::CONTENT_TYPE, "application/json")],
            "fault injection: this body is not JSON {",
        )
            .into_response(),
        Some(Fault::SchemaViolation) => answer(r#"{"words": 3}"#),
        // Only reached when the fault changed while the request was on its way in: the
        // connection was already handed to axum, so fail it the nearest way, with no answer.
        Some(Fault::CloseConnection) => std::future::pending().await,
        None => {
            let word = first_word_of_last_user_message(&body);
            let content = json!({"keywords": [{"text": word, "category": "topic"}]});
            answer(&content.to_string())
        }
    }
}

/// The first whitespace-separated word of the last `user` message ("" when there is none).
fn first_word_of_last_user_message(body: &str) -> String {
    let request: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let Some(messages) = request["messages"].as_array() else {
        return String::new();
    };
    let Some(user) = messages.iter().rev().find(|m| m["role"] == "user") else {
        return String::new();
    };
    let text = match &user["content"] {
        Value::String(text) => text.clone(),
        // The array form: [{"type": "text", "text": "…"}, …]
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A streamed chat completion: `content` in chunks of a few characters, as server-sent
/// events in OpenAI's chunk shape, then `[DONE]`.
fn event_stream(content: &str) -> Response {
    let chars: Vec<char> = content.chars().collect();
    let mut body = String::new();
    for piece in chars.chunks(4) {
        let piece: String = piece.iter().collect();
        let chunk = json!({
            "id": "chatcmpl-faulty",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": FAULTY_MODEL,
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]
        });
        body.push_str(&format!("data: {chunk}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

/// A non-streaming chat completion in the shape OpenAI (and async-openai's strict parser) uses.
fn completion(content: &str) -> Value {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "id": "chatcmpl-faulty",
        "object": "chat.completion",
        "created": created,
        "model": FAULTY_MODEL,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })
}
