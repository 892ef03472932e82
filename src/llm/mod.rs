//! What every caller of an OpenAI-compatible endpoint shares — keywords, RAG answers,
//! embeddings and rerank: HTTP clients with timeouts over rustls, model discovery at
//! `GET /models`, the classification of failed calls, and a circuit breaker.

mod breaker;
mod client;
mod discovery;
mod error;
mod tls;

pub use breaker::Breaker;
pub use client::{ChatClient, connect_timeout, http_client};
pub use discovery::{DiscoveryError, first_model};
pub use error::{CallError, error_kind, truncate};
pub use tls::install_tls_provider;
