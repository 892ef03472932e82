//! sori (소리, "sound"): a real-time speech-and-keyword streaming server.
//!
//! The engine-free core (protocol, audio, VAD, filter, decoder interface, session and its
//! driver) is the `sori-core` crate, re-exported here under its own module names. This crate
//! adds what a server needs around it, in the order data flows: whisper.cpp behind the decoder
//! interface (`stt`), the shared engine (`transcribe`), keywords and RAG for finals (over a
//! shared LLM client and cache), and the transports on top (`http`).

pub use sori_core::{audio, compat, driver, engine, metrics, outputs, protocol, session, vad};

pub mod config;

pub mod stt;

pub mod transcribe;

/// Which voice detector the sessions' segmenters ask (earshot or Silero VAD).
pub mod voice;

pub mod enrich;

pub mod cache;
pub mod keywords;
pub mod llm;
pub mod rag;

/// ONNX Runtime, shared by the embedder and Silero VAD.
pub mod onnx_runtime;

/// Transcript scoring (WER / CER, Korean-aware normalisation): the `sori-score` crate, used
/// by `sori model fetch`'s check and the tests; `sori eval` and `sori bench` live in `sori-tools`.
pub use sori_score as eval;

pub mod gpu;
pub mod http;

pub use gpu::gpu_available;

pub mod harness;

pub mod process;
