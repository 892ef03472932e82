//! The shared speech engine over the loaded Whisper model, and whole-file transcription: a
//! file runs through the same session driver as a live stream (VAD, scheduler, filter, the
//! keyword and RAG fan-out), fed as fast as the decoders take it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::ser::SerializeStruct;

use crate::audio::TARGET_SAMPLE_RATE;
use crate::audio::decode::DecodedAudio;
use crate::audio::resample::resample_all;
use crate::audio::{AudioError, pcm::Encoding};
use crate::config::Config;
use crate::driver::enrich::Enricher;
use crate::driver::{Driver, DriverConfig, Ending, Opening, Step};
use crate::engine::Engine;
use crate::protocol::{Keyword, Language, RagHit, ServerMessage};
use crate::session::default_options;
use crate::stt::SttError;
use crate::stt::engine::SttPool;
use crate::stt::filter::FilterError;
use crate::stt::scripted::{Script, ScriptedDecoder};
use crate::stt::whisper::WhisperModel;
use crate::vad::energy_detector;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Stt(#[from] SttError),
    #[error("hallucination filter: {0}")]
    Filter(#[from] FilterError),
}

/// The server's configuration and the engine every session shares (model, decoder pool,
/// filter). Derefs to the [`Engine`].
pub struct Transcriber {
    pub config: Arc<Config>,
    engine: Engine,
}

impl std::ops::Deref for Transcriber {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl Transcriber {
    /// Loads the model and starts `stt.workers` decoder threads.
    pub fn start(config: Arc<Config>) -> Result<Self, EngineError> {
        let model = WhisperModel::load(&config.stt.model, config.stt.use_gpu)?;
        Self::with_model(config, model)
    }

    /// Starts the decoder pool over an already loaded model (benchmarks share it with raw decoders).
    pub fn with_model(config: Arc<Config>, model: Arc<WhisperModel>) -> Result<Self, EngineError> {
        tracing::info!(model = %model.path(), kind = %model.kind(), multilingual = model.is_multilingual(), "model loaded");
        let decoder_model = Arc::clone(&model);
        let pool = SttPool::start(config.stt.workers, config.stt.queue_capacity, move || {
            decoder_model.new_decoder()
        })?;
        warn_if_oversubscribed(config.stt.workers, config.stt.threads);
        let engine = Engine::new(
            config.stt.clone(),
            config.vad.clone(),
            &config.filter,
            pool,
            model_file_name(&config.stt.model),
        )?;
        tracing::info!(
            workers = config.stt.workers,
            threads = config.stt.threads,
            patterns = engine.filter.pattern_count(),
            "decoder pool ready"
        );
        Ok(Self { config, engine })
    }

    /// A test double of the engine: scripted decoders (answers from a script, no model) and
    /// the energy voice detector. For tests of what does not need Whisper (REST, RAG, caches);
    /// never used by the server itself.
    pub fn scripted(config: Arc<Config>) -> Result<Self, EngineError> {
        let script = Script::new().shared();
        let pool = SttPool::start(config.stt.workers, config.stt.queue_capacity, move || {
            Ok(ScriptedDecoder::new(Arc::clone(&script)))
        })?;
        let engine = Engine::new(
            config.stt.clone(),
            config.vad.clone(),
            &config.filter,
            pool,
            "scripted test decoder".to_owned(),
        )?
        .with_voice_detector(energy_detector);
        Ok(Self { config, engine })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Transcribes a whole decoded file through a session (no partials), returning its finals.
    pub async fn transcribe(
        &self,
        audio: DecodedAudio,
        language: Language,
        prompt: Option<&str>,
    ) -> Result<FileTranscript, AudioError> {
        let request = FileRequest {
            language,
            prompt: prompt.map(str::to_owned),
            keywords: false,
            rag: false,
        };
        self.transcribe_with(audio, &request, &[]).await
    }

    /// Transcribes a whole decoded file through the session driver; with `keywords` / `rag`
    /// each final also gets its keywords / related documents from `enrichers`.
    pub async fn transcribe_with(
        &self,
        audio: DecodedAudio,
        request: &FileRequest,
        enrichers: &[Arc<dyn Enricher>],
    ) -> Result<FileTranscript, AudioError> {
        let started = Instant::now();
        let duration_s = audio.duration_s;
        let samples = if audio.sample_rate == TARGET_SAMPLE_RATE {
            audio.samples
        } else {
            resample_all(&audio.samples, audio.sample_rate)?
        };
        let opening = Opening {
            id: format!("file-{}", uuid::Uuid::new_v4().simple()),
            options: self.file_options(request),
            early_errors: Vec::new(),
        };
        let config = DriverConfig::for_files(self.config.stt.max_prompt_chars);
        let (mut driver, _ready) = Driver::start(&self.engine, config, opening, enrichers)?;

        let mut events = Vec::new();
        // Half-second chunks, so decoding starts while the rest is still being segmented; no
        // more audio while a final waits for a decoder.
        for chunk in samples.chunks(TARGET_SAMPLE_RATE as usize / 2) {
            driver.push_samples(chunk);
            while driver.final_waiting() {
                if let Step::Send(sent) = driver.next().await {
                    events.extend(sent);
                }
            }
        }
        driver.close(Ending::stopped());
        let summary = loop {
            match driver.next().await {
                Step::Send(sent) => events.extend(sent),
                Step::Ending(notice) => events.extend(notice),
                Step::Closed(closed) => break closed.summary,
            }
        };
        let mut transcript = FileTranscript::from_events(events, request.language);
        transcript.duration_s = duration_s;
        transcript.filtered = summary.filtered;
        transcript.processing_s = started.elapsed().as_secs_f64();
        Ok(transcript)
    }

    fn file_options(&self, request: &FileRequest) -> crate::protocol::EffectiveOptions {
        let mut options = default_options(&self.config.stt, false);
        options.language = request.language;
        options.sample_rate = TARGET_SAMPLE_RATE;
        options.encoding = Encoding::PcmF32le;
        options.partials = false;
        options.keywords = request.keywords;
        options.rag = request.rag;
        // Without a prompt of its own the file gets the server's `stt.initial_prompt`.
        if request.prompt.is_some() {
            options.prompt = request.prompt.clone();
        }
        options
    }
}

/// What to do with a file.
#[derive(Debug, Clone)]
pub struct FileRequest {
    pub language: Language,
    /// Domain words for Whisper (checked against `stt.max_prompt_chars` by the caller).
    pub prompt: Option<String>,
    /// Keywords for each final (needs the LLM).
    pub keywords: bool,
    /// Related documents for each final (needs RAG).
    pub rag: bool,
}

/// A transcribed file.
#[derive(Debug, Clone)]
pub struct FileTranscript {
    pub text: String,
    pub language: String,
    pub duration_s: f64,
    /// `final` (and any `error`) events, in order.
    pub segments: Vec<ServerMessage>,
    /// Each final's keywords, by segment id (asked for with `keywords`).
    pub keywords: BTreeMap<u64, Vec<Keyword>>,
    /// Each final's related documents, by segment id (asked for with `rag`).
    pub rag: BTreeMap<u64, Vec<RagHit>>,
    /// Keywords or RAG that could not be had (`llm_unavailable`, `rag_unavailable`).
    pub warnings: Vec<ServerMessage>,
    /// Segments the hallucination filter dropped.
    pub filtered: u64,
    pub processing_s: f64,
}

impl FileTranscript {
    /// Sorts a file session's events: finals and decode errors are segments; keywords and
    /// related documents attach to their segment; enrichment outages are warnings.
    fn from_events(events: Vec<ServerMessage>, requested: Language) -> Self {
        let mut out = Self {
            text: String::new(),
            language: requested.as_str().to_owned(),
            duration_s: 0.0,
            segments: Vec::new(),
            keywords: BTreeMap::new(),
            rag: BTreeMap::new(),
            warnings: Vec::new(),
            filtered: 0,
            processing_s: 0.0,
        };
        let mut texts = Vec::new();
        let mut language = None;
        for event in events {
            match event {
                ServerMessage::Final {
                    ref text,
                    language: ref l,
                    ..
                } => {
                    texts.push(text.clone());
                    language.get_or_insert_with(|| l.clone());
                    out.segments.push(event);
                }
                ServerMessage::Error { ref code, .. } if code == "decode_failed" => {
                    out.segments.push(event);
                }
                ServerMessage::Error { .. } => out.warnings.push(event),
                ServerMessage::Keywords {
                    segment_id,
                    keywords,
                    ..
                } => {
                    out.keywords.insert(segment_id, keywords);
                }
                ServerMessage::Rag {
                    segment_id, hits, ..
                } => {
                    out.rag.insert(segment_id, hits);
                }
                _ => {}
            }
        }
        out.text = texts.join(" ");
        if let Some(language) = language {
            out.language = language;
        }
        out
    }
}

/// The JSON body of `/api/transcribe`: each segment carries its `keywords` and `rag` when
/// they were asked for.
impl Serialize for FileTranscript {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Segment<'a> {
            #[serde(flatten)]
            event: &'a ServerMessage,
            #[serde(skip_serializing_if = "Option::is_none")]
            keywords: Option<&'a [Keyword]>,
            #[serde(skip_serializing_if = "Option::is_none")]
            rag: Option<&'a [RagHit]>,
        }
        let segments: Vec<Segment> = self
            .segments
            .iter()
            .map(|event| {
                let id = match event {
                    ServerMessage::Final { segment_id, .. } => Some(*segment_id),
                    _ => None,
                };
                Segment {
                    event,
                    keywords: id.and_then(|id| self.keywords.get(&id)).map(Vec::as_slice),
                    rag: id.and_then(|id| self.rag.get(&id)).map(Vec::as_slice),
                }
            })
            .collect();
        let fields = if self.warnings.is_empty() { 6 } else { 7 };
        let mut s = serializer.serialize_struct("FileTranscript", fields)?;
        s.serialize_field("text", &self.text)?;
        s.serialize_field("language", &self.language)?;
        s.serialize_field("duration_s", &self.duration_s)?;
        s.serialize_field("segments", &segments)?;
        s.serialize_field("filtered", &self.filtered)?;
        s.serialize_field("processing_s", &self.processing_s)?;
        if !self.warnings.is_empty() {
            s.serialize_field("warnings", &self.warnings)?;
        }
        s.end()
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
