//! Speech to text in the server: whisper.cpp behind the core's decoder interface, and model
//! provisioning. The interface, the decoder pool, the filter and the language sets are the
//! core's (`sori_core::stt`), re-exported here so the server reads `crate::stt::…`.

pub mod alignment;
pub(crate) mod beam;
pub mod placement;
mod segments;
pub mod whisper;

/// Offline model tooling lives in its own crate; re-exported so the CLI reads `sori::stt::…`.
pub use sori_models::{convert, provision as model};

pub use sori_core::stt::{
    DecodeOptions, Decoder, SegmentSpan, SttError, Transcript, engine, filter, language, scripted,
    trimmed_audio_ctx,
};
