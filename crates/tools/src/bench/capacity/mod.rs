//! `sori bench --capacity`: how many live streams one machine carries (issue 16;
//! docs/benchmarks.md, "Capacity: live streams per machine").
//!
//! Starts the real `sori serve` as a child process with the bench's engine flags and
//! `--server-env` settings, and no session limit in the way. For each level N of `--clients`,
//! N clients at once open real `/ws` sessions (partials on), stream the speech in real time in
//! 100 ms frames paced by the wall clock, then 2 s of silence and `stop`, and read to the close
//! frame; client i starts i/N s into the level, so utterance ends do not line up. Per level:
//! final latency from the last word's audio, WER, partials per second of speech, decoder
//! utilisation (from `/metrics`), the server's peak RSS and anything abnormal; when the
//! server's decoder is on a GPU (`/api/config`), the GPU memory and utilisation its monitor
//! reports (`/api/status`). The capacity is the highest N that holds the targets;
//! `--stop-at-first-miss` ends the sweep at the first level that does not.

mod client;
mod figures;
mod gpu;
mod probe;
mod report;
mod setup;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sori::config::flags::EngineFlags;
use sori_core::audio::TARGET_SAMPLE_RATE;
use sori_core::protocol::Language;
use sori_core::testing::{pcm_s16le, silence};

use crate::bench::child::ChildServer;
use client::Speech;
use figures::{LevelFigures, Thresholds};
use gpu::{Decoder, GpuWatch};
use probe::{DecodeCounters, RssPeak};
pub use report::CapacityReport;
use setup::{key_value, levels, load_speech, server_settings, shown_settings};

/// The levels when `--clients` is not given.
const DEFAULT_LEVELS: [usize; 6] = [1, 2, 4, 6, 8, 12];
/// The speech when no FILES are given: JFK and five LibriVox clips, ~48 s.
const DEFAULT_FILE: &str = "data/bench/peers/joined.wav";
/// Between two FILES in one stream, as between the clips of the default file.
const PAUSE_S: f64 = 1.5;
/// After the speech, so the last utterance is ended by the VAD as in live speech.
const TRAILING_SILENCE_S: f64 = 2.0;
/// Audio of the warm-up transcription, so the first level does not pay for a cold start.
const WARM_UP_S: f64 = 10.0;

/// `sori bench --capacity` options (flattened into `sori bench`; `--clients` is shared with
/// `--load`).
#[derive(Debug, Clone, clap::Args)]
pub struct CapacityArgs {
    /// Capacity instead: a `sori serve` child and, per --clients level, that many real-time
    /// /ws streams at once (see docs/benchmarks.md). Takes --model, --workers, --threads.
    #[arg(long)]
    pub capacity: bool,
    /// A setting for the --capacity server, KEY=VALUE in its environment (repeatable), e.g.
    /// SORI_PARTIAL_INTERVAL_MS=1500.
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value, requires = "capacity")]
    pub server_env: Vec<(String, String)>,
    /// Highest final-latency p95 (seconds after the last word) a --capacity level may have.
    #[arg(long, default_value_t = 1.5, requires = "capacity")]
    pub max_p95_s: f64,
    /// Highest rise of a level's worst-client WER over the fewest-clients level's (0.01 = 1
    /// point) for --capacity.
    #[arg(long, default_value_t = 0.01, requires = "capacity")]
    pub max_wer_rise: f64,
    /// Fewest partials per second of speech every --capacity client must get.
    #[arg(long, default_value_t = 0.5, requires = "capacity")]
    pub min_partial_rate: f64,
    /// End the --capacity sweep after the first level that misses the targets (the larger
    /// levels are not run), e.g. for a GPU: --clients 8,32,64,128,256 --stop-at-first-miss.
    #[arg(long, requires = "capacity")]
    pub stop_at_first_miss: bool,
}

/// What the command line gives `run` besides the flags above.
pub struct Setup {
    /// `--clients`: empty for the default levels.
    pub levels: Vec<usize>,
    pub files: Vec<PathBuf>,
    pub engine: EngineFlags,
    pub config: Option<PathBuf>,
}

/// Runs every level; progress on stderr.
pub async fn run(args: &CapacityArgs, setup: Setup) -> anyhow::Result<CapacityReport> {
    // reqwest has no TLS backend of its own here; plain http needs one installed all the same.
    sori::llm::install_tls_provider();
    let levels = levels(&setup.levels)?;
    let language = setup.engine.language.unwrap_or(Language::En);
    let files = if setup.files.is_empty() {
        vec![PathBuf::from(DEFAULT_FILE)]
    } else {
        setup.files.clone()
    };
    let (samples, reference) = load_speech(&files)?;
    let (server_args, server_env) = server_settings(args, &setup, &levels);
    let shown = shown_settings(&server_args, &server_env);
    eprintln!("[capacity] starting sori serve {}", shown.join(" "));
    let scratch = std::env::temp_dir().join(format!("sori-capacity-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let server = ChildServer::start(&scratch, &server_args, &server_env).await?;
    let thresholds = Thresholds {
        max_p95_s: args.max_p95_s,
        max_wer_rise: args.max_wer_rise,
        min_partial_rate: args.min_partial_rate,
    };
    let sweep = Sweep {
        levels: &levels,
        thresholds: &thresholds,
        stop_at_first_miss: args.stop_at_first_miss,
    };
    let measured = measure(&server, &sweep, &samples, reference, language).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&scratch);
    let m = measured?;

    let not_run = levels[m.levels.len()..].to_vec();
    Ok(CapacityReport {
        model: m.model,
        workers: m.workers,
        server: shown,
        files: files.iter().map(|f| f.display().to_string()).collect(),
        stream_s: samples.len() as f64 / f64::from(TARGET_SAMPLE_RATE) + TRAILING_SILENCE_S,
        language: language.to_string(),
        gpu_memory_idle_mb: m.gpu_idle_mb,
        gpu_memory_per_worker_mb: m
            .gpu_idle_mb
            .map(|mb| mb / m.workers.max(1.0))
            .filter(|_| m.decoder.as_ref().is_some_and(Decoder::on_gpu)),
        decoder: m.decoder,
        capacity: figures::capacity(&m.levels, &thresholds),
        thresholds,
        levels: m.levels,
        not_run,
    })
}

/// The levels to run and when to stop.
struct Sweep<'a> {
    levels: &'a [usize],
    thresholds: &'a Thresholds,
    stop_at_first_miss: bool,
}

/// What [`measure`] found.
struct Measured {
    model: String,
    workers: f64,
    decoder: Option<Decoder>,
    /// GPU memory in use after the warm-up, before the first level (GPU decoder only).
    gpu_idle_mb: Option<f64>,
    levels: Vec<LevelFigures>,
}

/// Where the decoder runs, the warm-up (and the GPU memory after it), then each level in turn
/// (up to the first miss with `stop_at_first_miss`).
async fn measure(
    server: &ChildServer,
    sweep: &Sweep<'_>,
    samples: &[f32],
    reference: String,
    language: Language,
) -> anyhow::Result<Measured> {
    let http = reqwest::Client::new();
    let decoder = Decoder::read(&http, server)
        .await
        .context("cannot read the server's /api/config")?;
    let on_gpu = decoder.as_ref().is_some_and(Decoder::on_gpu);
    if let Some(decoder) = &decoder {
        eprintln!("[capacity] {}", decoder.line());
    }
    let mut pcm = pcm_s16le(samples);
    pcm.extend(pcm_s16le(&silence(TRAILING_SILENCE_S)));
    let speech = Arc::new(Speech {
        addr: server.addr,
        query: format!(
            "?sample_rate={TARGET_SAMPLE_RATE}&encoding=pcm_s16le&channels=1&language={language}\
             &partials=true&keywords=false&rag=false"
        ),
        pcm,
        reference,
    });
    warm_up(&speech).await?;
    let gpu_idle_mb = if on_gpu {
        tokio::time::sleep(Duration::from_secs(1)).await;
        gpu::read_sample(&http, &server.url("/api/status"))
            .await
            .map(|s| s.memory_used_mb)
    } else {
        None
    };
    let mut done: Vec<LevelFigures> = Vec::new();
    let mut workers = 0.0;
    for &n in sweep.levels {
        eprintln!("[capacity] {n} client(s)…");
        let (level, w) = run_level(&http, server, &speech, n, on_gpu)
            .await
            .with_context(|| format!("the level of {n} clients failed: {}", server.log_tail()))?;
        eprintln!("[capacity] {n} client(s): {}", progress(&level));
        workers = w;
        done.push(level);
        if sweep.stop_at_first_miss && figures::last_missed(&done, sweep.thresholds) {
            eprintln!(
                "[capacity] {n} client(s) missed the targets: stopping (--stop-at-first-miss)"
            );
            break;
        }
    }
    let model = done
        .iter()
        .flat_map(|l| &l.per_client)
        .find_map(|c| c.model.clone())
        .unwrap_or_default();
    Ok(Measured {
        model,
        workers,
        decoder,
        gpu_idle_mb,
        levels: done,
    })
}

/// A level's figures on one line, for the progress on stderr.
fn progress(level: &LevelFigures) -> String {
    let mut line = format!(
        "final p50 {:.2} s, p95 {:.2} s, max {:.2} s; WER worst {:.1} %; partials/s min {:.2}; \
         decoder busy {:.0} %; peak RSS {:.0} MB",
        level.latency_p50_s,
        level.latency_p95_s,
        level.latency_max_s,
        level.wer_worst * 100.0,
        level.partial_rate_min,
        level.decoder_utilisation * 100.0,
        level.peak_rss_mb,
    );
    if let Some(gpu) = &level.gpu {
        line.push_str(&format!(
            "; GPU memory peak {:.0} MB, GPU busy {:.0} %",
            gpu.peak_memory_mb, gpu.utilisation_mean_pct
        ));
    }
    line.push_str(&format!("; {} error(s)", level.errors.len()));
    line
}

/// N clients at once, client i starting i/N s in; the decoder counters and the server's RSS
/// around them. Returns the level and the server's decoder workers.
async fn run_level(
    http: &reqwest::Client,
    server: &ChildServer,
    speech: &Arc<Speech>,
    n: usize,
    on_gpu: bool,
) -> anyhow::Result<(LevelFigures, f64)> {
    wait_idle(http, server).await?;
    let before = DecodeCounters::read(http, server).await?;
    let rss = RssPeak::start(server.pid());
    let gpu = on_gpu.then(|| GpuWatch::start(http, server));
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let at = started + Duration::from_secs_f64(i as f64 / n as f64);
            tokio::spawn(client::run(Arc::clone(speech), at))
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    for task in tasks {
        clients.push(task.await?);
    }
    let wall_s = started.elapsed().as_secs_f64();
    let after = DecodeCounters::read(http, server).await?;
    let peak_rss_mb = rss.stop().await;
    let utilisation = after.utilisation_since(&before, wall_s);
    let mut level = LevelFigures::new(clients, wall_s, utilisation, peak_rss_mb);
    if let Some(gpu) = gpu {
        level.gpu = gpu.stop().await;
    }
    Ok((level, after.workers))
}

/// Until the server counts no open session (the previous level's are closed), at most 30 s.
async fn wait_idle(http: &reqwest::Client, server: &ChildServer) -> anyhow::Result<()> {
    let started = Instant::now();
    while server.sessions(http).await? > 0 {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("sessions of the previous level are still open after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// One live stream of the first seconds of the speech: the model's pages, the workers'
/// buffers and the first-decode costs are paid before any level is timed. A stream, not a
/// file transcription: a file's windows decode in a whisper context of their own (DTW word
/// times), which live streams never load.
async fn warm_up(speech: &Speech) -> anyhow::Result<()> {
    // 16-bit samples: two bytes each.
    let n = speech
        .pcm
        .len()
        .min(2 * (WARM_UP_S * f64::from(TARGET_SAMPLE_RATE)) as usize);
    let mut pcm = speech.pcm[..n].to_vec();
    pcm.extend(pcm_s16le(&silence(TRAILING_SILENCE_S)));
    let warm = Arc::new(Speech {
        addr: speech.addr,
        query: speech.query.clone(),
        pcm,
        reference: String::new(),
    });
    let figures = client::run(warm, Instant::now()).await;
    if let Some(error) = figures.errors.first() {
        bail!("the warm-up stream failed: {error}");
    }
    Ok(())
}
