//! sori's core: everything a stream needs between PCM in and events out, with no model and no
//! transport. It builds and tests without whisper.cpp; the server crate adds the engine
//! (whisper.cpp behind [`stt::Decoder`]) and the transports (one thin adapter per protocol over
//! [`driver::Driver`]).
//!
//! Data flows one way through the modules, in the order they are listed:
//! protocol → audio → vad → stt → session → driver → outputs.

pub mod config;
pub mod metrics;
pub mod protocol;

pub mod compat;

pub mod audio;
pub mod vad;

pub mod stt;

pub mod session;

pub mod engine;

pub mod driver;

pub mod testing;

pub mod outputs;
