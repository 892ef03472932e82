//! The decoder flags several commands share (`sori serve`, `sori transcribe`, `sori bench`,
//! `sori eval`): applied over the loaded configuration, so a flag beats `SORI_*` and the file.

use std::path::PathBuf;

use super::Config;
use crate::protocol::Language;

#[derive(clap::Args, Debug, Default)]
pub struct EngineFlags {
    /// whisper.cpp ggml model file (env SORI_MODEL).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// ko, en or auto (env SORI_LANGUAGE).
    #[arg(long)]
    pub language: Option<Language>,
    /// Decoder worker threads (env SORI_WORKERS).
    #[arg(long)]
    pub workers: Option<usize>,
    /// CPU threads per decode (env SORI_THREADS).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl EngineFlags {
    pub fn apply(self, config: &mut Config) {
        if let Some(model) = self.model {
            config.stt.model = model;
        }
        if let Some(language) = self.language {
            config.stt.language = language;
        }
        if let Some(workers) = self.workers {
            config.stt.workers = workers;
        }
        if let Some(threads) = self.threads {
            config.stt.threads = threads;
        }
    }
}
