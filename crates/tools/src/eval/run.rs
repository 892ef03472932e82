//! `sori eval DIR`: every file with a reference, through the offline path (the session code
//! `sori transcribe` runs) and through the real `/ws` path of a server started in this
//! process on 127.0.0.1:0, streamed as fast as the socket takes it; then scored.

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sori::config::Config;
use sori::harness::ws_client::{self, Incoming};
use sori::harness::{LocalServer, LocalServerError};
use sori_core::audio::TARGET_SAMPLE_RATE;
use sori_core::audio::decode::DecodedAudio;
use sori_core::audio::noise::NoiseMix;
use sori_core::protocol::{Language, SegmentTexts, ServerMessage};
use sori_score::metrics::{Metric, score};
use sori_score::normalize::{Profile, has_hangul, words};

use super::corpus::{self, CorpusError, Entry};
use super::report::{EvalReport, Failed, FileReport, PathReport, Skipped, Totals};

/// Audio per WebSocket frame (100 ms of 16 kHz f32).
const FRAME_SAMPLES: usize = TARGET_SAMPLE_RATE as usize / 10;
/// Longest wait for the next message from the server before the stream counts as hung.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(300);

/// Why `sori eval` could not run at all (one file's failure is reported, not an error).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error(transparent)]
    Server(#[from] LocalServerError),
    #[error("--offline-only and --stream-only leave nothing to run; pick at most one")]
    NothingToRun,
}

/// The language each file is transcribed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalLanguage {
    /// The same for every file.
    Fixed(Language),
    /// Per file from its reference: Hangul → ko, other text → en, empty → `stt.language`.
    FromReference,
}

impl FromStr for EvalLanguage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ref" | "reference" => Ok(EvalLanguage::FromReference),
            other => Language::from_str(other)
                .map(EvalLanguage::Fixed)
                .map_err(|_| {
                    format!("language {other:?} is not supported; use ko, en, auto or ref (per file from the reference's script)")
                }),
        }
    }
}

impl std::fmt::Display for EvalLanguage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalLanguage::Fixed(l) => write!(f, "{l}"),
            EvalLanguage::FromReference => f.write_str("ref"),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub language: EvalLanguage,
    pub offline: bool,
    pub stream: bool,
    /// Noise added to every file before either path hears it (`--noise`, `--snr`).
    pub noise: Option<Labelled<NoiseMix>>,
}

/// A value and how the report names it (`white noise at 5 dB SNR`).
#[derive(Debug, Clone)]
pub struct Labelled<T> {
    pub value: T,
    pub label: String,
}

/// Runs the evaluation. `progress` is advanced once per file (pass a hidden bar when no one
/// is watching). The model is loaded only once the directory has been checked.
pub async fn run(
    config: Config,
    dir: &Path,
    options: &EvalOptions,
    progress: &indicatif::ProgressBar,
) -> Result<EvalReport, EvalError> {
    if !options.offline && !options.stream {
        return Err(EvalError::NothingToRun);
    }
    let entries = corpus::collect(dir)?;
    let (with_reference, without): (Vec<Entry>, Vec<Entry>) =
        entries.into_iter().partition(|e| e.reference.is_some());
    let skipped = without
        .into_iter()
        .map(|e| Skipped {
            reason: format!(
                "no reference transcript ({} does not exist)",
                e.audio.with_extension("txt").display()
            ),
            file: e.name,
        })
        .collect();

    let server = LocalServer::start_scratch(eval_config(config)).await?;
    progress.set_length(with_reference.len() as u64);
    let mut files = Vec::new();
    let mut failed = Vec::new();
    for entry in &with_reference {
        progress.set_message(entry.name.clone());
        match evaluate_file(&server, entry, options).await {
            Ok(report) => files.push(report),
            Err(error) => failed.push(Failed {
                file: entry.name.clone(),
                error,
            }),
        }
        progress.inc(1);
    }
    let report = EvalReport {
        dir: dir.display().to_string(),
        model: server.transcriber().config.stt.model.display().to_string(),
        language: options.language.to_string(),
        noise: options.noise.as_ref().map(|n| n.label.clone()),
        threads: server.transcriber().config.stt.threads,
        total: Totals::of(&files),
        files,
        skipped,
        failed,
    };
    if let Err(e) = server.shutdown().await {
        tracing::warn!(error = %e, "the eval server did not stop cleanly");
    }
    Ok(report)
}

/// One file through the requested paths; the error is the reason shown for the file.
async fn evaluate_file(
    server: &LocalServer,
    entry: &Entry,
    options: &EvalOptions,
) -> Result<FileReport, String> {
    let reference_path = entry.reference.as_deref().unwrap_or(Path::new(""));
    let reference = corpus::read_reference(reference_path).map_err(|e| e.to_string())?;
    let audio_path = entry.audio.clone();
    let noise = options.noise.as_ref().map(|n| n.value.clone());
    let samples = tokio::task::spawn_blocking(move || {
        let clean = corpus::load_audio(&audio_path).map_err(|e| e.to_string())?;
        match noise {
            Some(noise) => noise
                .apply(&clean)
                .map_err(|e| format!("cannot add the noise: {e}")),
            None => Ok(clean),
        }
    })
    .await
    .map_err(|e| e.to_string())??;
    let audio_s = samples.len() as f64 / f64::from(TARGET_SAMPLE_RATE);
    let profile = Profile::of(&reference);
    let language = match options.language {
        EvalLanguage::Fixed(language) => language,
        EvalLanguage::FromReference if reference.trim().is_empty() => {
            server.transcriber().config.stt.language
        }
        EvalLanguage::FromReference if has_hangul(&reference) => Language::Ko,
        EvalLanguage::FromReference => Language::En,
    };
    let reference_words = words(&reference, profile);
    let path_report = |finals: Vec<String>, wall_s: f64| {
        let scored = score(&reference_words, &finals, profile);
        PathReport {
            hypothesis: finals.join(" "),
            hypothesis_normalized: scored.words.join(" "),
            error_rate: match Metric::for_profile(profile) {
                Metric::Wer => scored.wer.rate(),
                Metric::Cer => scored.cer.rate(),
            },
            finals,
            wer: scored.wer,
            cer: scored.cer,
            wall_s,
            rtf: if audio_s > 0.0 { wall_s / audio_s } else { 0.0 },
            hallucinated_segments: scored.hallucinated_segments,
        }
    };

    let offline = if options.offline {
        let started = Instant::now();
        let transcript = server
            .transcriber()
            .transcribe(
                DecodedAudio {
                    samples: samples.clone(),
                    sample_rate: TARGET_SAMPLE_RATE,
                    duration_s: audio_s,
                },
                language,
                None,
            )
            .await
            .map_err(|e| format!("offline: {e}"))?;
        let wall_s = started.elapsed().as_secs_f64();
        let mut finals = Vec::new();
        for segment in transcript.segments {
            match segment {
                ServerMessage::Final { text, .. } => finals.push(text),
                ServerMessage::Error { message, .. } => return Err(format!("offline: {message}")),
                _ => {}
            }
        }
        Some(path_report(finals, wall_s))
    } else {
        None
    };
    let stream = if options.stream {
        let started = Instant::now();
        let finals = stream_file(server.addr, &samples, language)
            .await
            .map_err(|e| format!("streamed over /ws: {e}"))?;
        Some(path_report(finals, started.elapsed().as_secs_f64()))
    } else {
        None
    };
    Ok(FileReport {
        file: entry.name.clone(),
        reference_normalized: reference_words.join(" "),
        reference,
        profile,
        metric: Metric::for_profile(profile),
        language: language.to_string(),
        audio_s,
        offline,
        stream,
        delta: None,
    }
    .with_delta())
}

/// Streams `samples` to `/ws` as `pcm_f32le` (the very samples the offline path gets) in
/// 100 ms binary frames without pacing, sends `stop`, and returns the finals' texts as revised
/// (`revision` events; `SORI_LIVE_REVISION_S=0` measures the finals as first sent), read
/// until `closed`. Any `error` event fails the file: its figures would not be the session's.
async fn stream_file(
    addr: SocketAddr,
    samples: &[f32],
    language: Language,
) -> Result<Vec<String>, String> {
    let query = format!(
        "?language={language}&sample_rate={TARGET_SAMPLE_RATE}&encoding=pcm_f32le&channels=1&partials=false&keywords=false&rag=false"
    );
    let socket = ws_client::connect(addr, &query)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sink, mut source) = socket.split();
    // Read on a task of its own, so the server's messages never back up while we send.
    let reader = tokio::spawn(async move {
        let mut finals = SegmentTexts::default();
        let mut ready = false;
        loop {
            match ws_client::recv(&mut source, MESSAGE_TIMEOUT).await {
                Err(e) => return Err(e.to_string()),
                Ok(Incoming::Closed(code)) => {
                    return Err(format!(
                        "the server closed the session before `closed` (close code {code:?})"
                    ));
                }
                Ok(Incoming::Message(message)) => match message {
                    ServerMessage::Ready { .. } => ready = true,
                    ServerMessage::Error { code, message, .. } => {
                        return Err(format!("error event {code}: {message}"));
                    }
                    ServerMessage::Closed { .. } if ready => return Ok(finals.texts()),
                    other => finals.take(&other),
                },
            }
        }
    });
    let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let sent = async {
        ws_client::send_pcm(&mut sink, &pcm, FRAME_SAMPLES * 4, None).await?;
        ws_client::send_stop(&mut sink).await
    }
    .await;
    // The reader's account comes first: when sending failed, it says why the server ended.
    let finals = reader.await.map_err(|e| e.to_string())??;
    sent.map_err(|e| format!("sending audio failed: {e}"))?;
    let _ = futures_util::SinkExt::close(&mut sink).await;
    Ok(finals)
}

/// The configuration of the server `sori eval` streams to. Limits meant for remote clients
/// are lifted (tokens, origins, idle and length limits, the decode backlog cap: the file is
/// sent faster than real time on purpose), and keywords and RAG are off.
fn eval_config(mut config: Config) -> Config {
    config.server.api_tokens.clear();
    config.server.allowed_origins.clear();
    config.server.max_connections_per_client = 0;
    config.server.max_session_s = 0;
    config.server.idle_timeout_s = 0;
    config.server.max_backlog_s = f64::MAX;
    config.llm.enabled = false;
    config.rag.enabled = false;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_option_parses() {
        assert_eq!("ref".parse(), Ok(EvalLanguage::FromReference));
        assert_eq!("ko".parse(), Ok(EvalLanguage::Fixed(Language::Ko)));
        assert_eq!("AUTO".parse(), Ok(EvalLanguage::Fixed(Language::Auto)));
        let bad = "fr".parse::<EvalLanguage>().unwrap_err();
        assert!(bad.contains("ko, en, auto or ref"), "{bad}");
    }
}
