//! `sori bench`: speed figures measured side by side in one run (docs/benchmarks.md).
//!
//! Per file it measures, as medians over `runs` (the phases alternate within each run, so
//! machine noise hits them alike):
//! - **offline**: `Transcriber::transcribe` (VAD → pool → filter, the session code) wall time,
//!   real-time factor, and its ratio to **raw** whisper.cpp decoding of exactly the utterances
//!   the VAD cut, with the same decode options, called directly on one decoder;
//! - **streaming**: the file fed to a `Stream` paced in real time (20 ms chunks, then 2 s of
//!   silence), and for each final the latency from the end of speech to the final;
//! - **audio_ctx**: short utterances (VAD with a short silence) decoded with the full 30 s
//!   encoder window and with the trimmed window: cost ratio and WER of each.

pub mod capacity;
pub mod child;
pub mod hostile;
pub mod load;
pub mod noise;
pub mod peers;
pub mod rag;
pub mod vad;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sori::config::Config;
use sori::stt::whisper::{WhisperDecoder, WhisperModel};
use sori::stt::{DecodeOptions, Decoder, trimmed_audio_ctx};
use sori::transcribe::Transcriber;
use sori_core::audio::TARGET_SAMPLE_RATE;
use sori_core::audio::decode::load_16k_mono;
use sori_core::driver::{Driver, DriverConfig, Ending, Opening, Step};
use sori_core::protocol::{Language, ServerMessage};
use sori_core::session::default_options;
use sori_core::vad::{Segmenter, Utterance};

/// One audio file with its reference transcript (if a `.txt` sits beside it).
pub struct BenchFile {
    pub path: PathBuf,
    pub reference: Option<String>,
    pub language: Language,
}

impl BenchFile {
    pub fn new(path: &Path, language: Language) -> Self {
        let reference = std::fs::read_to_string(path.with_extension("txt")).ok();
        Self {
            path: path.to_owned(),
            reference,
            language,
        }
    }
}

/// Figures for one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileFigures {
    pub file: String,
    pub audio_s: f64,
    pub utterances: usize,
    pub offline_wall_s: f64,
    pub offline_rtf: f64,
    pub raw_decode_s: f64,
    /// sori offline wall time ÷ raw whisper.cpp time for the same utterances.
    pub overhead_ratio: f64,
    pub offline_wer: Option<f64>,
    pub stream_wer: Option<f64>,
    pub latency_p50_s: f64,
    pub latency_p95_s: f64,
    pub latency_max_s: f64,
    pub longest_utterance_s: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CtxFigures {
    pub utterances: usize,
    pub mean_utterance_s: f64,
    pub full_window_s: f64,
    pub trimmed_s: f64,
    /// full ÷ trimmed decode time (higher = trimming saves more).
    pub speedup: f64,
    pub full_wer: Option<f64>,
    pub trimmed_wer: Option<f64>,
}

pub struct BenchReport {
    pub model: String,
    pub threads: usize,
    pub runs: usize,
    pub files: Vec<FileFigures>,
    pub ctx: Option<CtxFigures>,
    pub peak_rss_mb: f64,
}

/// Runs every measurement; prints progress on stderr.
pub fn run(config: Config, files: &[BenchFile], runs: usize) -> anyhow::Result<BenchReport> {
    let mut bench = Bench::load(config)?;
    let mut figures = Vec::new();
    let mut ctx_source = None;
    for file in files {
        let audio = load_16k_mono(&file.path)?;
        figures.push(bench.file_figures(file, &audio, runs)?);
        if ctx_source.is_none() {
            ctx_source = Some((audio, file.reference.clone(), file.language));
        }
    }

    let ctx = match ctx_source {
        Some((audio, reference, language)) => Some(audio_ctx_figures(
            &bench.config,
            &mut bench.raw,
            &audio,
            reference.as_deref(),
            language,
            runs,
        )?),
        None => None,
    };
    Ok(BenchReport {
        model: bench.config.stt.model.display().to_string(),
        threads: bench.config.stt.threads,
        runs,
        files: figures,
        ctx,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// What the measurements share: the model loaded once, behind sori's transcriber and a raw
/// decoder, and the runtime the async phases run on.
struct Bench {
    runtime: tokio::runtime::Runtime,
    raw: WhisperDecoder,
    transcriber: Transcriber,
    config: Arc<Config>,
}

/// What the runs over one file measured: wall times per run, every final's latency, and the
/// last run's transcripts.
#[derive(Default)]
struct FileRuns {
    offline: Vec<f64>,
    raw: Vec<f64>,
    latencies: Vec<f64>,
    offline_text: String,
    stream_text: String,
}

impl Bench {
    fn load(config: Config) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let model = WhisperModel::load(
            &config.stt.model,
            config.stt.use_gpu,
            config.stt.dtw_timestamps,
        )?;
        let transcriber = Transcriber::with_model(Arc::clone(&config), Arc::clone(&model))?;
        let raw = model.new_decoder()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        Ok(Bench {
            runtime,
            raw,
            transcriber,
            config,
        })
    }

    /// Every phase over one file, `runs` times.
    fn file_figures(
        &mut self,
        file: &BenchFile,
        audio: &[f32],
        runs: usize,
    ) -> anyhow::Result<FileFigures> {
        let utterances = vad_utterances(&self.config, audio);
        eprintln!(
            "[bench] {}: {:.1} s, {} utterances",
            file.path.display(),
            audio.len() as f64 / TARGET_SAMPLE_RATE as f64,
            utterances.len()
        );
        let mut measured = FileRuns::default();
        for run in 0..runs {
            self.measure_run(file, audio, &utterances, &mut measured)?;
            eprintln!(
                "[bench]   run {}: offline {:.2} s, raw {:.2} s",
                run + 1,
                measured.offline[run],
                measured.raw[run]
            );
        }
        Ok(measured.figures(file, audio, &utterances))
    }

    /// One run: the offline transcription, raw decoding of the same utterances, then the
    /// paced stream.
    fn measure_run(
        &mut self,
        file: &BenchFile,
        audio: &[f32],
        utterances: &[Utterance],
        measured: &mut FileRuns,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let transcript = self.runtime.block_on(self.transcriber.transcribe(
            sori_core::audio::decode::DecodedAudio {
                samples: audio.to_vec(),
                sample_rate: TARGET_SAMPLE_RATE,
                duration_s: audio.len() as f64 / TARGET_SAMPLE_RATE as f64,
            },
            file.language,
            None,
        ))?;
        measured.offline.push(started.elapsed().as_secs_f64());
        measured.offline_text = transcript.text;

        let started = Instant::now();
        for u in utterances {
            let opts = decode_options(&self.config, file.language, u.samples.len(), true, true);
            self.raw.decode(&u.samples, &opts)?;
        }
        measured.raw.push(started.elapsed().as_secs_f64());

        let (lat, text) =
            self.runtime
                .block_on(stream_paced(&self.transcriber, audio, file.language))?;
        measured.latencies.extend(lat);
        measured.stream_text = text;
        Ok(())
    }
}

impl FileRuns {
    /// Medians, percentiles and WERs of what was measured.
    fn figures(mut self, file: &BenchFile, audio: &[f32], utterances: &[Utterance]) -> FileFigures {
        let audio_s = audio.len() as f64 / TARGET_SAMPLE_RATE as f64;
        let offline_wall = median(&self.offline);
        let raw_s = median(&self.raw);
        self.latencies.sort_by(f64::total_cmp);
        let latencies = &self.latencies;
        FileFigures {
            file: file.path.display().to_string(),
            audio_s,
            utterances: utterances.len(),
            offline_wall_s: offline_wall,
            offline_rtf: offline_wall / audio_s,
            raw_decode_s: raw_s,
            overhead_ratio: offline_wall / raw_s,
            offline_wer: file
                .reference
                .as_deref()
                .map(|r| sori_score::wer(r, &self.offline_text)),
            stream_wer: file
                .reference
                .as_deref()
                .map(|r| sori_score::wer(r, &self.stream_text)),
            latency_p50_s: percentile(latencies, 0.50),
            latency_p95_s: percentile(latencies, 0.95),
            latency_max_s: latencies.last().copied().unwrap_or(0.0),
            longest_utterance_s: utterances
                .iter()
                .map(|u| u.samples.len() as f64 / TARGET_SAMPLE_RATE as f64)
                .fold(0.0, f64::max),
        }
    }
}

/// The utterances the session's VAD cuts from `audio` (the same code and settings).
fn vad_utterances(config: &Config, audio: &[f32]) -> Vec<Utterance> {
    Segmenter::new(&config.vad).utterances(audio)
}

fn decode_options(
    config: &Config,
    language: Language,
    samples: usize,
    trim: bool,
    words: bool,
) -> DecodeOptions {
    let seconds = samples as f32 / TARGET_SAMPLE_RATE as f32;
    DecodeOptions {
        language,
        languages: None,
        beam_size: config.stt.beam_size,
        threads: config.stt.threads,
        audio_ctx: trim.then(|| {
            trimmed_audio_ctx(
                f64::from(seconds),
                config.stt.audio_ctx_margin_s,
                config.stt.audio_ctx_min_s,
            )
        }),
        initial_prompt: None,
        word_timestamps: words,
        aligned_words: false,
        draft: false,
        cancel: None,
    }
}

/// Streams `audio` in real time (20 ms chunks, then 2 s of silence) and returns, per final,
/// the seconds from the end of its speech to its arrival, and the transcript.
async fn stream_paced(
    transcriber: &Transcriber,
    audio: &[f32],
    language: Language,
) -> anyhow::Result<(Vec<f64>, String)> {
    let mut options = default_options(&transcriber.config.stt, false);
    options.language = language;
    options.encoding = sori_core::audio::pcm::Encoding::PcmF32le;
    // The session driver as a live transport runs it, without keywords or transcript files.
    let opening = Opening {
        id: "bench".to_owned(),
        options,
        early_errors: Vec::new(),
    };
    let config = DriverConfig::for_files(transcriber.config.stt.max_prompt_chars);
    let (mut driver, _ready) = Driver::start(transcriber.engine(), config, opening, &[])?;
    let chunk = TARGET_SAMPLE_RATE as usize / 50;
    let mut padded = audio.to_vec();
    padded.extend(std::iter::repeat_n(0.0, 2 * TARGET_SAMPLE_RATE as usize));
    let tail_s = transcriber.config.vad.tail_ms as f64 / 1000.0;
    let started = Instant::now();
    let mut finals: Vec<(f64, Instant)> = Vec::new();
    let mut text = Vec::new();
    let mut collect = |step: Step, finals: &mut Vec<(f64, Instant)>| {
        let Step::Send(events) = step else { return };
        for e in events {
            if let ServerMessage::Final { end, text: t, .. } = e {
                finals.push((end, Instant::now()));
                text.push(t);
            }
        }
    };
    for (i, frame) in padded.chunks(chunk).enumerate() {
        driver.push_samples(frame);
        let due = started + Duration::from_millis(20 * (i as u64 + 1));
        loop {
            tokio::select! {
                step = driver.next() => collect(step, &mut finals),
                _ = tokio::time::sleep_until(due.into()) => break,
            }
        }
    }
    driver.close(Ending::stopped());
    loop {
        let step = driver.next().await;
        if matches!(step, Step::Closed(_)) {
            break;
        }
        collect(step, &mut finals);
    }
    // Speech ended `tail_s` before a final's end; that audio was delivered at `started + t`.
    let latencies = finals
        .iter()
        .map(|(end, at)| {
            let end_of_speech = started + Duration::from_secs_f64((end - tail_s).max(0.0));
            let latency = at.saturating_duration_since(end_of_speech).as_secs_f64();
            tracing::debug!(end, latency, "final");
            latency
        })
        .collect();
    Ok((latencies, text.join(" ")))
}

fn audio_ctx_figures(
    config: &Config,
    raw: &mut impl Decoder,
    audio: &[f32],
    reference: Option<&str>,
    language: Language,
    runs: usize,
) -> anyhow::Result<CtxFigures> {
    // Phrases rather than sentences: a short silence cuts the file into short utterances.
    let mut short = config.clone();
    short.vad.silence_ms = 400;
    short.vad.tail_ms = 150;
    let utterances = vad_utterances(&short, audio);
    let (mut full, mut trimmed) = (Vec::new(), Vec::new());
    let (mut full_text, mut trimmed_text) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        full_text.clear();
        trimmed_text.clear();
        let (mut f, mut t) = (0.0, 0.0);
        for u in &utterances {
            let started = Instant::now();
            let r = raw.decode(
                &u.samples,
                &decode_options(config, language, u.samples.len(), false, false),
            )?;
            f += started.elapsed().as_secs_f64();
            full_text.push(r.text);
            let started = Instant::now();
            let r = raw.decode(
                &u.samples,
                &decode_options(config, language, u.samples.len(), true, false),
            )?;
            t += started.elapsed().as_secs_f64();
            trimmed_text.push(r.text);
        }
        full.push(f);
        trimmed.push(t);
    }
    let (full_s, trimmed_s) = (median(&full), median(&trimmed));
    let total: usize = utterances.iter().map(|u| u.samples.len()).sum();
    Ok(CtxFigures {
        utterances: utterances.len(),
        mean_utterance_s: total as f64 / TARGET_SAMPLE_RATE as f64 / utterances.len().max(1) as f64,
        full_window_s: full_s,
        trimmed_s,
        speedup: full_s / trimmed_s,
        full_wer: reference.map(|r| sori_score::wer(r, &full_text.join(" "))),
        trimmed_wer: reference.map(|r| sori_score::wer(r, &trimmed_text.join(" "))),
    })
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Peak resident memory of this process (VmHWM), in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

impl BenchReport {
    /// The report as Markdown tables.
    pub fn to_markdown(&self) -> String {
        let pct = |v: Option<f64>| {
            v.map(|w| format!("{:.1} %", w * 100.0))
                .unwrap_or_else(|| "–".into())
        };
        let mut out = format!(
            "model `{}`, {} thread(s) per decode, medians of {} run(s), peak RSS {:.0} MB\n\n",
            self.model, self.threads, self.runs, self.peak_rss_mb
        );
        out.push_str("| file | audio s | utterances | offline s | RTF | raw whisper.cpp s | sori ÷ raw | WER offline | WER stream | final latency p50 / p95 / max s |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for f in &self.files {
            out.push_str(&format!(
                "| {} | {:.1} | {} | {:.2} | {:.3} | {:.2} | {:.3} | {} | {} | {:.2} / {:.2} / {:.2} |\n",
                Path::new(&f.file).file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                f.audio_s,
                f.utterances,
                f.offline_wall_s,
                f.offline_rtf,
                f.raw_decode_s,
                f.overhead_ratio,
                pct(f.offline_wer),
                pct(f.stream_wer),
                f.latency_p50_s,
                f.latency_p95_s,
                f.latency_max_s
            ));
        }
        if let Some(c) = &self.ctx {
            out.push_str(&format!(
                "\naudio_ctx trimming on {} short utterances (mean {:.1} s): full 30 s window {:.2} s, trimmed {:.2} s, **{:.2}× cheaper**; WER full {}, trimmed {}\n",
                c.utterances,
                c.mean_utterance_s,
                c.full_window_s,
                c.trimmed_s,
                c.speedup,
                pct(c.full_wer),
                pct(c.trimmed_wer)
            ));
        }
        out
    }
}

/// Keyword latency figures: every sentence once against the LLM (misses), then again (hits).
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeywordFigures {
    pub model: String,
    pub sentences: usize,
    /// From the request to the first keyword of a streamed answer (segments with keywords).
    pub first_p50_ms: f64,
    pub first_p95_ms: f64,
    pub llm_p50_ms: f64,
    pub llm_p95_ms: f64,
    pub hit_p50_ms: f64,
    pub hit_p95_ms: f64,
    pub failures: usize,
}

/// Sentences in the users' domains, Korean first.
pub const KEYWORD_SENTENCES: &[&str] = &[
    "오늘 오후 3시 경부고속도로 서울요금소 부근에서 화물차 추돌 사고가 발생했습니다",
    "내일 오전 10시 본사 대회의실에서 2분기 예산 회의를 진행하겠습니다",
    "고객님 주문하신 냉장고는 다음 주 화요일에 배송될 예정입니다",
    "강남역 사거리 신호등이 고장 나서 경찰이 교통을 통제하고 있습니다",
    "김철수 팀장이 인천공항 제2터미널 보안 점검 결과를 보고했습니다",
    "영동고속도로 여주 분기점에서 폭우로 차량 정체가 이어지고 있습니다",
    "The fire department sent two trucks to the Main Street bridge at noon.",
    "Our quarterly revenue grew by twelve percent in the Seoul office.",
];

/// Measures keyword extraction against the configured endpoint with an in-memory cache.
pub async fn keyword_latency(config: &Config, runs: usize) -> anyhow::Result<KeywordFigures> {
    let cache = sori::cache::Cache::memory(1000);
    let extractor = sori::keywords::KeywordExtractor::new(
        &config.llm,
        cache,
        Duration::from_secs(config.cache.keyword_ttl_s),
    );
    let (mut misses, mut hits, mut firsts, mut failures) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let mut model = String::new();
    for run in 0..runs.max(1) {
        for sentence in KEYWORD_SENTENCES {
            // A run marker keeps each run's first pass a real LLM call.
            let text = format!("{sentence} ({})", run + 1);
            for pass in 0..2 {
                let started = Instant::now();
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let first = async move {
                    rx.recv()
                        .await
                        .map(|_| started.elapsed().as_secs_f64() * 1000.0)
                };
                let (extractor, text) = (&extractor, &text);
                let extraction = async move {
                    let result = extractor.extract_streaming(text, Some(&tx)).await;
                    drop(tx);
                    result
                };
                let (result, first) = tokio::join!(extraction, first);
                match result {
                    Ok(e) => {
                        firsts.extend(first);
                        let ms = started.elapsed().as_secs_f64() * 1000.0;
                        model = e.model;
                        if pass == 0 {
                            misses.push(ms)
                        } else {
                            hits.push(ms)
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        eprintln!("[bench] keywords failed: {e}");
                    }
                }
            }
        }
    }
    misses.sort_by(f64::total_cmp);
    hits.sort_by(f64::total_cmp);
    firsts.sort_by(f64::total_cmp);
    Ok(KeywordFigures {
        model,
        sentences: misses.len(),
        first_p50_ms: percentile(&firsts, 0.5),
        first_p95_ms: percentile(&firsts, 0.95),
        llm_p50_ms: percentile(&misses, 0.5),
        llm_p95_ms: percentile(&misses, 0.95),
        hit_p50_ms: percentile(&hits, 0.5),
        hit_p95_ms: percentile(&hits, 0.95),
        failures,
    })
}

impl KeywordFigures {
    pub fn to_markdown(&self) -> String {
        format!(
            "keywords from `{}` over {} segments: first keyword p50 {:.0} ms, p95 {:.0} ms; whole answer p50 {:.0} ms, p95 {:.0} ms; cache hit p50 {:.3} ms, p95 {:.3} ms; {} failed\n",
            self.model,
            self.sentences,
            self.first_p50_ms,
            self.first_p95_ms,
            self.llm_p50_ms,
            self.llm_p95_ms,
            self.hit_p50_ms,
            self.hit_p95_ms,
            self.failures
        )
    }
}
