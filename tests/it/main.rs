//! sori's integration tests, one binary: the real Whisper model, real audio, real servers
//! (llama.cpp, Redis, Qdrant, the embedding server), real clients (Chromium, the OpenAI SDK).
//! One binary instead of one per file: each links the whole server (~0.5 GB with its
//! dependencies), and linking them one by one cost CI more than running them.
//! Run one file's tests with `cargo test --release --test it ws_stream::`.

mod support;

mod admission;
mod alignment;
mod bad_input;
mod cache;
mod compat;
mod conditioning;
mod deploy;
mod eval;
mod faults;
mod file_keywords;
mod files;
mod hostile_access;
mod hostile_files;
mod hostile_http;
mod hostile_outputs;
mod hostile_ws;
mod keywords;
mod language;
mod llm_infra;
mod metrics;
mod model_fetch;
mod openai_api;
mod page;
mod rag;
mod rag_onnx;
mod replicas;
mod revisions;
mod stream_cli;
mod tls;
mod vad;
mod voice;
mod ws_bad_input;
mod ws_stream;
