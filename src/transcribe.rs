//! The shared speech engine over the loaded Whisper model, and whole-file transcription: a
//! file runs through the same session driver as a live stream (VAD, scheduler, filter, the
//! keyword and RAG fan-out), fed as fast as the decoders take it.
//!
//! A file on disk is decoded and resampled on a blocking thread, half a second at a time,
//! into a channel of a few chunks that the session drains: memory stays bounded whatever the
//! file's length, and audio past `server.max_file_s` is refused without being decoded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use serde::Serialize;
use serde::ser::SerializeStruct;

use crate::audio::TARGET_SAMPLE_RATE;
use crate::audio::decode::{DecodedAudio, FileDecoder};
use crate::audio::file_stream::FileStream16k;
use crate::audio::resample::resample_all;
use crate::audio::{AudioError, pcm::Encoding};
use crate::config::Config;
use crate::config::auto::{Hardware, available_cores};
use crate::driver::enrich::Enricher;
use crate::driver::{Driver, DriverConfig, Ending, Opening, Step};
use crate::engine::Engine;
use crate::protocol::{Keyword, Language, RagHit, ServerMessage};
use crate::session::{WindowJoin, default_options};
use crate::stt::SttError;
use crate::stt::engine::SttPool;
use crate::stt::filter::FilterError;
use crate::stt::placement::Placement;
use crate::stt::scripted::{Script, ScriptedDecoder};
use crate::stt::whisper::WhisperModel;
use crate::vad::energy_detector;
use crate::voice::{VoiceError, detector_factory};

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Stt(#[from] SttError),
    #[error("hallucination filter: {0}")]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Voice(#[from] VoiceError),
}

/// The server's configuration and the engine every session shares (model, decoder pool,
/// filter). Derefs to the [`Engine`].
pub struct Transcriber {
    pub config: Arc<Config>,
    engine: Engine,
    /// Places for file transcriptions running at once (`server.max_file_jobs`, 0 = one per
    /// decoder worker): a file keeps a decoder busy, so more would only queue.
    file_jobs: Arc<Semaphore>,
    /// Where the model decodes (GPU or CPU, and why).
    pub placement: Placement,
    /// How a file window joins its utterances: the pauses' own audio with DTW word times,
    /// a shorter silence with the heuristic ones (`session::merge`).
    window_join: WindowJoin,
}

impl std::ops::Deref for Transcriber {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

/// The longest file window whose words whisper.cpp's heuristic timestamps still put in the
/// right segment (docs/accuracy.md); longer windows need DTW word times.
const HEURISTIC_WINDOW_S: f64 = 10.0;

impl Transcriber {
    /// Loads the model and starts `stt.workers` decoder threads.
    pub fn start(config: Arc<Config>) -> Result<Self, EngineError> {
        let model = WhisperModel::load(
            &config.stt.model,
            config.stt.use_gpu,
            config.stt.dtw_timestamps,
        )?;
        Self::with_model(config, model)
    }

    /// Starts the decoder pool over an already loaded model (benchmarks share it with raw decoders).
    pub fn with_model(config: Arc<Config>, model: Arc<WhisperModel>) -> Result<Self, EngineError> {
        model.set_whisper_cpp_beam(config.stt.whisper_cpp_beam);
        tracing::info!(model = %model.path(), kind = %model.kind(), multilingual = model.is_multilingual(), dtw_timestamps = model.dtw_timestamps(), "model loaded");
        // Settings left at 0 are chosen from the cores and the model (config::auto).
        let placement = model.placement().clone();
        let hardware = if placement.on_gpu() {
            Hardware::Gpu {
                cores: available_cores(),
                gpus: placement.gpus.len(),
            }
        } else {
            Hardware::Cpu {
                cores: available_cores(),
            }
        };
        let mut sized = Config::clone(&config).sized_for(hardware, &model.kind());
        if !model.dtw_timestamps() && sized.stt.file_merge_s > HEURISTIC_WINDOW_S {
            tracing::info!(
                file_merge_s = sized.stt.file_merge_s,
                "words are timed by whisper.cpp's heuristic (stt.dtw_timestamps off, or no preset \
                 for this model), which misplaces words in longer windows: file windows of \
                 {HEURISTIC_WINDOW_S} s"
            );
            sized.stt.file_merge_s = HEURISTIC_WINDOW_S;
        }
        if !model.dtw_timestamps() && sized.stt.live_revision_s > 0.0 {
            tracing::info!(
                "live finals are not revised: revision windows need DTW word times \
                 (stt.dtw_timestamps off, or no preset for this model)"
            );
            sized.stt.live_revision_s = 0.0;
        }
        let config = Arc::new(sized);
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
        )?
        .with_voice_detector(detector_factory(&config.vad, &config.rag.onnxruntime_lib)?);
        tracing::info!(
            workers = config.stt.workers,
            voice_detector = %config.vad.detector,
            threads = config.stt.threads,
            patterns = engine.filter.pattern_count(),
            "decoder pool ready"
        );
        let window_join = if model.dtw_timestamps() {
            WindowJoin::ALIGNED
        } else {
            WindowJoin::HEURISTIC
        };
        Ok(Self::assemble(config, engine, placement, window_join))
    }

    fn assemble(
        config: Arc<Config>,
        engine: Engine,
        placement: Placement,
        window_join: WindowJoin,
    ) -> Self {
        let file_jobs = Arc::new(Semaphore::new(file_jobs_limit(&config)));
        Self {
            config,
            engine,
            file_jobs,
            placement,
            window_join,
        }
    }

    /// A test double of the engine: scripted decoders (answers from a script, no model) and
    /// the energy voice detector. For tests of what does not need Whisper (REST, RAG, caches);
    /// never used by the server itself.
    pub fn scripted(config: Arc<Config>) -> Result<Self, EngineError> {
        let cores = available_cores();
        let config = Arc::new(Config::clone(&config).sized_for(Hardware::Cpu { cores }, "base"));
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
        .with_voice_detector(energy_detector());
        let placement = Placement::cpu("the scripted test decoder runs no model");
        Ok(Self::assemble(
            config,
            engine,
            placement,
            WindowJoin::ALIGNED,
        ))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// How live sessions' revision windows join their utterances (as file windows do).
    pub fn window_join(&self) -> WindowJoin {
        self.window_join
    }

    /// A place for one file transcription, released when the [`FileJob`] drops; `None` when
    /// all `server.max_file_jobs` places are taken (the caller refuses, it does not queue).
    pub fn try_file_job(&self) -> Option<FileJob> {
        Arc::clone(&self.file_jobs)
            .try_acquire_owned()
            .ok()
            .map(|place| FileJob { _place: place })
    }

    /// File transcriptions running now.
    pub fn file_jobs_running(&self) -> usize {
        self.file_jobs_limit() - self.file_jobs.available_permits()
    }

    /// How many file transcriptions may run at once.
    pub fn file_jobs_limit(&self) -> usize {
        file_jobs_limit(&self.config)
    }

    /// Transcribes an audio file on disk, decoding and resampling it piece by piece on a
    /// blocking thread (memory stays bounded whatever its length). Audio longer than
    /// `server.max_file_s` is refused ([`AudioError::TooLong`]) as soon as that shows, from
    /// the header or while decoding. `extension_hint` speeds up probing (the path's own
    /// extension when `None`); the content decides.
    pub async fn transcribe_file(
        &self,
        path: &Path,
        extension_hint: Option<&str>,
        request: &FileRequest,
        enrichers: &[Arc<dyn Enricher>],
    ) -> Result<FileTranscript, AudioError> {
        let feed = Feed::Reader(read_file(
            path.to_path_buf(),
            extension_hint.map(str::to_owned),
            self.config.server.max_file_s,
        ));
        self.transcribe_feed(feed, request, enrichers).await
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

    /// Transcribes a whole decoded file (in memory: for tools and tests; the server and the
    /// CLI use [`transcribe_file`](Self::transcribe_file)) through the session driver; with
    /// `keywords` / `rag` each final also gets its keywords / related documents from
    /// `enrichers`.
    pub async fn transcribe_with(
        &self,
        audio: DecodedAudio,
        request: &FileRequest,
        enrichers: &[Arc<dyn Enricher>],
    ) -> Result<FileTranscript, AudioError> {
        let duration_s = audio.duration_s;
        let samples = if audio.sample_rate == TARGET_SAMPLE_RATE {
            audio.samples
        } else {
            resample_all(&audio.samples, audio.sample_rate)?
        };
        let feed = Feed::Memory {
            samples,
            at: 0,
            duration_s,
        };
        self.transcribe_feed(feed, request, enrichers).await
    }

    /// Runs a file's audio through a session: half-second chunks, so decoding starts while
    /// the rest is still being segmented; no more audio while a final waits for a decoder.
    async fn transcribe_feed(
        &self,
        mut feed: Feed,
        request: &FileRequest,
        enrichers: &[Arc<dyn Enricher>],
    ) -> Result<FileTranscript, AudioError> {
        let started = Instant::now();
        // The first chunk before the session starts: a file that cannot be read (or declares
        // too much) is refused before any work.
        let mut piece = feed.next().await?;
        let opening = Opening {
            id: format!("file-{}", uuid::Uuid::new_v4().simple()),
            options: self.file_options(request),
            early_errors: Vec::new(),
        };
        let config = DriverConfig::for_files(self.config.stt.max_prompt_chars);
        let (driver, _ready) = Driver::start(&self.engine, config, opening, enrichers)?;
        let mut driver = driver.merge_file_windows(self.config.stt.file_merge_s, self.window_join);

        let mut events = Vec::new();
        // An error mid-file (damaged, too long) drops the session with whatever it holds.
        let duration_s = loop {
            match piece {
                Piece::Audio(chunk) => {
                    driver.push_samples(&chunk);
                    driver.submit_ready();
                    while driver.final_held_back() {
                        if let Step::Send(sent) = driver.next().await {
                            events.extend(sent);
                        }
                    }
                }
                Piece::End { duration_s } => break duration_s,
            }
            piece = feed.next().await?;
        };
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
        // A file's windows already hear the speech around each utterance.
        options.revisions = false;
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

/// A place for one file transcription (see [`Transcriber::try_file_job`]); the place is
/// freed when this drops, on every exit path.
#[derive(Debug)]
pub struct FileJob {
    _place: OwnedSemaphorePermit,
}

/// Half a second at 16 kHz: the chunk a file is fed to its session in.
const CHUNK_SAMPLES: usize = TARGET_SAMPLE_RATE as usize / 2;

/// Chunks decoded ahead of the session, at most (2 s of audio, 128 KiB).
const CHUNKS_AHEAD: usize = 4;

/// One step of a file's audio.
enum Piece {
    /// The next chunk at 16 kHz.
    Audio(Vec<f32>),
    /// The file ended; its length at its own rate.
    End { duration_s: f64 },
}

/// Where a file's audio comes from.
enum Feed {
    /// A reader thread ([`read_file`]).
    Reader(mpsc::Receiver<Result<Piece, AudioError>>),
    /// Samples already in memory at 16 kHz.
    Memory {
        samples: Vec<f32>,
        at: usize,
        duration_s: f64,
    },
}

impl Feed {
    async fn next(&mut self) -> Result<Piece, AudioError> {
        match self {
            Feed::Reader(chunks) => chunks.recv().await.unwrap_or_else(|| {
                Err(AudioError::Internal {
                    reason: "the file's reader thread stopped".into(),
                })
            }),
            Feed::Memory {
                samples,
                at,
                duration_s,
            } => {
                if *at >= samples.len() {
                    return Ok(Piece::End {
                        duration_s: *duration_s,
                    });
                }
                let end = (*at + CHUNK_SAMPLES).min(samples.len());
                let chunk = samples[*at..end].to_vec();
                *at = end;
                Ok(Piece::Audio(chunk))
            }
        }
    }
}

/// Decodes `path` to 16 kHz on a blocking thread, sending half-second chunks, then the end
/// (or the first error), through a channel of [`CHUNKS_AHEAD`]. The thread stops as soon as
/// the receiver is dropped (the request was cancelled).
fn read_file(
    path: PathBuf,
    extension_hint: Option<String>,
    limit_s: u64,
) -> mpsc::Receiver<Result<Piece, AudioError>> {
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    tokio::task::spawn_blocking(move || {
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let decoder = FileDecoder::open(&path, extension_hint.as_deref())?;
            let mut stream = FileStream16k::new(decoder, Some(limit_s))?;
            while let Some(chunk) = stream.next_chunk(CHUNK_SAMPLES)? {
                if tx.blocking_send(Ok(Piece::Audio(chunk))).is_err() {
                    return Ok(None);
                }
            }
            Ok(Some(stream.duration_s()))
        }));
        let last = match read {
            Ok(Ok(Some(duration_s))) => Ok(Piece::End { duration_s }),
            Ok(Ok(None)) => return,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AudioError::Internal {
                reason: "the decoder panicked".into(),
            }),
        };
        let _ = tx.blocking_send(last);
    });
    rx
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

/// `server.max_file_jobs`, where 0 means one per decoder worker.
fn file_jobs_limit(config: &Config) -> usize {
    match config.server.max_file_jobs {
        0 => config.stt.workers.max(1),
        n => n,
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
