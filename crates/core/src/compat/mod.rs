//! The messages of other vendors' live protocols that sori speaks (docs/compatibility.md),
//! parsed here, engine-free, so the fuzz targets reach them: Deepgram's `/v1/listen` query
//! string and control messages, OpenAI Realtime's client events and session settings. The
//! adapters that run them over the session driver are the server's (`src/http/deepgram`,
//! `src/http/realtime`).

pub mod deepgram_control;
pub mod deepgram_params;
pub mod realtime_config;
pub mod realtime_events;
