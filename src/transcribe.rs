//! The shared speech engine (model, decoder pool, filter) and whole-file transcription, which
//! runs the same `Session` code as a live stream.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::audio::TARGET_SAMPLE_RATE;
use crate::audio::decode::DecodedAudio;
use crate::audio::resample::resample_all;
use crate::audio::{AudioError, pcm::Encoding};
use crate::config::Config;
use crate::protocol::{EffectiveOptions, Language, ServerMessage};
use crate::session::{Session, Stream, default_options};
use crate::stt::SttError;
use crate::stt::engine::SttPool;
use crate::stt::filter::{FilterConfig, FilterError, HallucinationFilter};
use crate::stt::whisper::WhisperModel;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Stt(#[from] SttError),
    #[error("hallucination filter: {0}")]
    Filter(#[from] FilterError),
}

/// Everything sessions share: configuration, the decoder pool over one loaded model, the filter.
pub struct Transcriber {
    pub config: Arc<Config>,
    pub pool: SttPool,
    pub filter: Arc<HallucinationFilter>,
    /// Shown to clients in `ready` (file name of the model).
    pub model_name: String,
}

impl Transcriber {
    /// Loads the model and starts `stt.workers` decoder threads.
    pub fn start(config: Arc<Config>) -> Result<Self, EngineError> {
        let model = WhisperModel::load(&config.stt.model, config.stt.use_gpu)?;
        Self::with_model(config, model)
    }

    /// Starts the decoder pool over an already loaded model (benchmarks share it with raw decoders).
    pub fn with_model(config: Arc<Config>, model: Arc<WhisperModel>) -> Result<Self, EngineError> {
        let model_name = model_file_name(&config.stt.model);
        tracing::info!(model = %model.path(), kind = %model.kind(), multilingual = model.is_multilingual(), "model loaded");
        let decoder_model = Arc::clone(&model);
        let pool = SttPool::start(config.stt.workers, config.stt.queue_capacity, move || {
            decoder_model.new_decoder()
        })?;
        warn_if_oversubscribed(config.stt.workers, config.stt.threads);
        let filter = Arc::new(HallucinationFilter::new(&filter_config(&config))?);
        tracing::info!(
            workers = config.stt.workers,
            threads = config.stt.threads,
            patterns = filter.pattern_count(),
            "decoder pool ready"
        );
        Ok(Self {
            config,
            pool,
            filter,
            model_name,
        })
    }

    /// A new streaming session with the given options.
    pub fn stream(&self, id: String, options: EffectiveOptions) -> Result<Stream, AudioError> {
        let session = Session::new(
            id,
            options,
            &self.config.stt,
            &self.config.vad,
            Arc::clone(&self.filter),
            self.config.stt.workers,
        )?;
        Ok(Stream::new(session, self.pool.clone()))
    }

    /// Transcribes a whole decoded file through a session (no partials), returning its finals.
    pub async fn transcribe(
        &self,
        audio: DecodedAudio,
        language: Language,
        prompt: Option<&str>,
    ) -> Result<FileTranscript, AudioError> {
        let started = Instant::now();
        let samples = if audio.sample_rate == TARGET_SAMPLE_RATE {
            audio.samples
        } else {
            resample_all(&audio.samples, audio.sample_rate)?
        };
        let mut options = default_options(&self.config.stt, self.config.llm.enabled);
        options.language = language;
        options.sample_rate = TARGET_SAMPLE_RATE;
        options.encoding = Encoding::PcmF32le;
        options.partials = false;
        let mut stream = self.stream(format!("file-{}", uuid::Uuid::new_v4().simple()), options)?;
        // Without a prompt of its own the file gets the server's `stt.initial_prompt`.
        if prompt.is_some() {
            stream.session.set_prompt(prompt);
        }

        let mut events = Vec::new();
        // Feed in half-second chunks so decoding starts while the rest is still being segmented.
        for chunk in samples.chunks(TARGET_SAMPLE_RATE as usize / 2) {
            stream.session.push_samples(chunk);
            while stream.session.has_job(false) {
                events.extend(stream.progress().await);
            }
        }
        events.extend(stream.finish().await);
        let segments: Vec<ServerMessage> = events
            .into_iter()
            .filter(|e| matches!(e, ServerMessage::Final { .. } | ServerMessage::Error { .. }))
            .collect();
        let language = segments
            .iter()
            .find_map(|e| match e {
                ServerMessage::Final { language, .. } => Some(language.clone()),
                _ => None,
            })
            .unwrap_or_else(|| language.as_str().to_owned());
        Ok(FileTranscript {
            text: segments
                .iter()
                .filter_map(|e| match e {
                    ServerMessage::Final { text, .. } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(" "),
            language,
            duration_s: audio.duration_s,
            filtered: stream.session.summary().filtered,
            processing_s: started.elapsed().as_secs_f64(),
            segments,
        })
    }
}

/// A transcribed file.
#[derive(Debug, Clone, Serialize)]
pub struct FileTranscript {
    pub text: String,
    pub language: String,
    pub duration_s: f64,
    /// `final` (and any `error`) events, in order.
    pub segments: Vec<ServerMessage>,
    /// Segments the hallucination filter dropped.
    pub filtered: u64,
    pub processing_s: f64,
}

pub fn filter_config(config: &Config) -> FilterConfig {
    FilterConfig {
        no_speech_threshold: config.filter.no_speech_threshold as f32,
        logprob_threshold: config.filter.logprob_threshold as f32,
        compression_ratio_threshold: config.filter.compression_ratio_threshold as f32,
        max_repeats: config.filter.max_repeats,
        min_rms: config.filter.min_rms as f32,
        extra_patterns_file: config.filter.patterns_file.clone(),
    }
}

fn model_file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Decoders running at once with more threads in all than the machine has cores slow down
/// by an order of magnitude, not by the ratio: ggml's thread barriers spin instead of
/// sleeping, so a descheduled thread stalls its partners for whole time slices.
fn warn_if_oversubscribed(workers: usize, threads: usize) {
    let Ok(cores) = std::thread::available_parallelism() else {
        return;
    };
    let wanted = workers.max(1) * threads.max(1);
    if wanted > cores.get() {
        tracing::warn!(
            workers,
            threads,
            cores = cores.get(),
            "stt.workers × stt.threads exceeds the CPU cores: concurrent decodes will stall each \
             other; lower stt.threads (and leave cores for a local LLM server)"
        );
    }
}
