//! sori (소리, "sound"): a real-time speech-and-keyword streaming server.
//!
//! Data flows one way through the modules, in the order they are listed:
//! protocol → audio → vad → stt → session → outputs, with `http` on top.

pub mod config;
pub mod metrics;
pub mod protocol;

pub mod audio;
pub mod vad;

pub mod stt;

pub mod session;
pub mod transcribe;

pub mod outputs;

pub mod cache;
pub mod keywords;
pub mod rag;

pub mod eval;

pub mod gpu;
pub mod http;

pub use gpu::gpu_available;

pub mod bench;
