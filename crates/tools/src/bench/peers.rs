//! `sori bench --peers`: sori side by side with faster-whisper (docs/benchmarks.md).
//!
//! Every system runs as its own child process over the same files and the same Whisper
//! weights (faster-whisper reads the CTranslate2 model sori converts its ggml file from), once
//! per run, in an order that rotates from run to run so machine noise hits them alike. Each
//! child prints one JSON line per file (wall and CPU seconds of that file's transcription, the
//! text, and for streaming the end-of-speech → final latencies); the parent adds what it
//! measures of the whole child with `wait4`: wall time, CPU time and peak resident memory.
//!
//! The sori systems are this binary (`sori-tools`) started again with the hidden `--runner`
//! flag, so each is measured the same way as the Python peer: model load, work and exit in a
//! process of its own.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::{median, percentile};
use sori::config::Config;
use sori::harness::LocalServer;
use sori_core::audio::TARGET_SAMPLE_RATE;
use sori_core::audio::decode::{DecodedAudio, load_16k_mono};
use sori_core::protocol::Language;

/// A system the benchmark can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// faster-whisper, CTranslate2 int8 weights (quantized at load), offline.
    FwInt8,
    /// faster-whisper, CTranslate2 float32, offline.
    FwF32,
    /// `sori transcribe`'s code path (VAD → pool → filter) with the configured ggml model.
    Sori,
    /// The same with the q8_0 ggml model (`--q8-model`).
    SoriQ8,
    /// Each file streamed in real time over a real `/ws` connection to an in-process server.
    SoriStream,
    /// whisper.cpp called directly on the utterances sori's VAD cuts, same decode options.
    WhisperCpp,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::FwInt8 => "faster-whisper int8",
            System::FwF32 => "faster-whisper float32",
            System::Sori => "sori offline",
            System::SoriQ8 => "sori offline q8_0",
            System::SoriStream => "sori streaming",
            System::WhisperCpp => "raw whisper.cpp",
        }
    }

    fn is_stream(self) -> bool {
        self == System::SoriStream
    }

    const ALL: [System; 6] = [
        System::FwInt8,
        System::FwF32,
        System::Sori,
        System::SoriQ8,
        System::SoriStream,
        System::WhisperCpp,
    ];
}

/// `sori bench --peers` options (flattened into `sori bench`).
#[derive(Debug, Clone, clap::Args)]
pub struct PeersArgs {
    /// Side by side with faster-whisper instead: every system in its own process over the
    /// same files (default: data/bench/peers/*.wav, made by `scripts/peers.sh fetch`).
    #[arg(long)]
    pub peers: bool,
    /// Systems to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',', requires = "side_by_side")]
    pub systems: Vec<System>,
    /// The CTranslate2 model faster-whisper reads: the one sori's ggml file was converted from.
    #[arg(
        long,
        default_value = "models/ct2/whisper-base",
        requires = "side_by_side"
    )]
    pub ct2_model: PathBuf,
    /// The q8_0 ggml model for `sori-q8`.
    #[arg(
        long,
        default_value = "models/ggml-base-q8_0.bin",
        requires = "side_by_side"
    )]
    pub q8_model: PathBuf,
    /// Beam size for every system, sori's file windows and live finals alike (1 = greedy).
    /// Without it `--peers` runs every system greedy, and `--noise` each at its own defaults
    /// (sori's `stt.window_beam_size` and `stt.beam_size`; faster-whisper's beam of 5).
    #[arg(long, requires = "side_by_side")]
    pub beam_size: Option<usize>,
    /// faster-whisper conditions each window on the text before it, as its own default does
    /// (off by default here to match sori's `stt.condition_on_previous_text`; --noise turns it on).
    #[arg(long, requires = "side_by_side")]
    pub fw_condition_on_previous_text: bool,
    /// Internal: run one sori system over the files and print JSON lines (what --peers starts).
    #[arg(long, hide = true, value_enum)]
    pub runner: Option<System>,
}

/// What a runner prints per file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRun {
    pub file: String,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub text: String,
    /// Streaming only: per final, end of speech → arrival, seconds.
    #[serde(default)]
    pub latencies_s: Vec<f64>,
}

/// What the parent measured of one child process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct ProcessRun {
    wall_s: f64,
    cpu_s: f64,
    peak_rss_mb: f64,
}

/// Figures of one system over all files (medians over runs).
#[derive(Debug, Clone, Serialize)]
pub struct SystemFigures {
    pub system: System,
    pub name: String,
    /// Per file: median transcription wall seconds, median CPU seconds, error rate.
    pub files: Vec<SystemFile>,
    /// Sum over files of the median transcription wall time (model load excluded).
    pub wall_s: f64,
    pub cpu_s: f64,
    /// `wall_s` ÷ audio seconds (streaming: not meaningful, audio arrives in real time).
    pub rtf: f64,
    /// Whole process, model load and exit included (medians over runs).
    pub process_wall_s: f64,
    pub process_cpu_s: f64,
    pub peak_rss_mb: f64,
    /// Word errors ÷ reference words over every file with an English reference.
    pub wer: Option<f64>,
    /// Character errors ÷ reference characters over every file with a Korean reference.
    pub cer: Option<f64>,
    pub latency_p50_s: Option<f64>,
    pub latency_p95_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemFile {
    pub file: String,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub error_rate: Option<f64>,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeersReport {
    pub runs: usize,
    pub threads: usize,
    /// Every system's beam; `None`: each at its own default.
    pub beam_size: Option<usize>,
    pub audio_s: f64,
    pub files: Vec<(String, f64)>,
    pub systems: Vec<SystemFigures>,
}

/// One benchmark file: its audio length and reference.
struct Clip {
    path: PathBuf,
    audio_s: f64,
    reference: Option<String>,
}

/// Runs every selected system `runs` times over `files`; progress on stderr.
pub fn run(
    config: &Config,
    args: &PeersArgs,
    files: &[PathBuf],
    runs: usize,
    language: Language,
) -> anyhow::Result<PeersReport> {
    let systems: Vec<System> = if args.systems.is_empty() {
        System::ALL.to_vec()
    } else {
        args.systems.clone()
    };
    let clips = files
        .iter()
        .map(|path| {
            let audio = load_16k_mono(path)
                .with_context(|| format!("cannot read benchmark file {}", path.display()))?;
            Ok(Clip {
                path: path.clone(),
                audio_s: audio.len() as f64 / f64::from(TARGET_SAMPLE_RATE),
                reference: std::fs::read_to_string(path.with_extension("txt")).ok(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    check_inputs(config, args, &systems)?;

    let mut results: BTreeMap<System, Vec<(ProcessRun, Vec<FileRun>)>> = BTreeMap::new();
    for run in 0..runs {
        // Rotate the order so no system always runs first (cold caches) or last.
        let mut order = systems.clone();
        order.rotate_left(run % systems.len());
        for &system in &order {
            let command = child_command(config, args, system, &clips, language)?;
            let (process, per_file) = measure(command, system)?;
            eprintln!(
                "[peers] run {}/{runs} {:<24} {:>6.2} s wall, {:>6.2} s CPU, {:>5.0} MB peak",
                run + 1,
                system.name(),
                per_file.iter().map(|f| f.wall_s).sum::<f64>(),
                process.cpu_s,
                process.peak_rss_mb
            );
            results.entry(system).or_default().push((process, per_file));
        }
    }

    let audio_s: f64 = clips.iter().map(|c| c.audio_s).sum();
    let figures = systems
        .iter()
        .map(|s| summarise(*s, &results[s], &clips, audio_s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(PeersReport {
        runs,
        threads: config.stt.threads,
        beam_size: args.beam_size,
        audio_s,
        files: clips
            .iter()
            .map(|c| (display_name(&c.path), c.audio_s))
            .collect(),
        systems: figures,
    })
}

/// Fails early, naming the fetch step, when a system's model or interpreter is missing.
fn check_inputs(config: &Config, args: &PeersArgs, systems: &[System]) -> anyhow::Result<()> {
    for &system in systems {
        match system {
            System::FwInt8 | System::FwF32 => {
                if !args.ct2_model.join("model.bin").is_file() {
                    bail!(
                        "{} has no model.bin; run `sori model fetch` (it keeps the CT2 weights it converts)",
                        args.ct2_model.display()
                    );
                }
                if !peers_python().is_file() {
                    bail!(
                        "faster-whisper is not installed ({} is missing); run ./scripts/peers.sh fetch",
                        peers_python().display()
                    );
                }
            }
            System::SoriQ8 if !args.q8_model.is_file() => bail!(
                "{} is missing; run `sori model fetch` (it writes the q8_0 model by default)",
                args.q8_model.display()
            ),
            _ if !config.stt.model.is_file() => bail!(
                "{} is missing; run `sori model fetch`",
                config.stt.model.display()
            ),
            _ => {}
        }
    }
    Ok(())
}

/// The venv `scripts/peers.sh fetch` builds.
fn peers_python() -> PathBuf {
    PathBuf::from(".tools/peers/venv/bin/python")
}

fn child_command(
    config: &Config,
    args: &PeersArgs,
    system: System,
    clips: &[Clip],
    language: Language,
) -> anyhow::Result<Command> {
    let threads = config.stt.threads.to_string();
    let mut command = match system {
        System::FwInt8 | System::FwF32 => {
            let mut c = Command::new(peers_python());
            c.arg("scripts/faster_whisper_runner.py")
                .arg("--model")
                .arg(&args.ct2_model)
                .args([
                    "--compute-type",
                    if system == System::FwInt8 {
                        "int8"
                    } else {
                        "float32"
                    },
                ])
                .args(["--threads", &threads])
                .args([
                    "--beam-size",
                    &args.beam_size.unwrap_or(FW_DEFAULT_BEAM).to_string(),
                ])
                .args(["--language", language.as_str()]);
            if args.fw_condition_on_previous_text {
                c.arg("--condition-on-previous-text");
            }
            // CTranslate2 sizes its pools from these when set; keep them at the thread count.
            c.env("OMP_NUM_THREADS", &threads);
            c
        }
        _ => {
            let model = if system == System::SoriQ8 {
                &args.q8_model
            } else {
                &config.stt.model
            };
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("bench")
                .args(["--runner", runner_name(system)])
                .arg("--model")
                .arg(model)
                .args(["--threads", &threads])
                .args(["--workers", &config.stt.workers.to_string()])
                .args(["--language", language.as_str()]);
            if let Some(beam) = args.beam_size {
                c.env("SORI_BEAM_SIZE", beam.to_string());
                c.env("SORI_WINDOW_BEAM_SIZE", beam.to_string());
            }
            c
        }
    };
    command.args(clips.iter().map(|c| &c.path));
    Ok(command)
}

/// faster-whisper's own beam width (`WhisperModel.transcribe(beam_size=5)`).
const FW_DEFAULT_BEAM: usize = 5;

/// The beam the systems ran with, as the reports print it.
pub fn beam_label(beam_size: Option<usize>) -> String {
    match beam_size {
        Some(beam) => format!("beam {beam} for every system"),
        None => format!(
            "each system's default beam (sori's configuration; faster-whisper {FW_DEFAULT_BEAM})"
        ),
    }
}

fn runner_name(system: System) -> &'static str {
    match system {
        System::FwInt8 => "fw-int8",
        System::FwF32 => "fw-f32",
        System::Sori => "sori",
        System::SoriQ8 => "sori-q8",
        System::SoriStream => "sori-stream",
        System::WhisperCpp => "whisper-cpp",
    }
}

/// Runs the child to its end: its per-file lines, and its wall, CPU and peak memory.
fn measure(mut command: Command, system: System) -> anyhow::Result<(ProcessRun, Vec<FileRun>)> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", system.name()))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut stderr = child.stderr.take().context("child stderr")?;
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut files = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Ok(file) = serde_json::from_str::<FileRun>(&line) {
            files.push(file);
        }
    }
    let (status, usage) = wait_with_usage(child.id())?;
    let wall_s = started.elapsed().as_secs_f64();
    let stderr = errors.join().unwrap_or_default();
    if !status_ok(status) {
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        bail!(
            "{} failed (wait status {status}):\n{}",
            system.name(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        ProcessRun {
            wall_s,
            cpu_s: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            // Linux reports ru_maxrss in KiB.
            peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        },
        files,
    ))
}

/// Reaps the child with `wait4`, which returns that one process's resource usage (std's
/// `Child::wait` does not, and `RUSAGE_CHILDREN` mixes every child's peak memory).
fn wait_with_usage(pid: u32) -> anyhow::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value and wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: the pid is our own unreaped child; both pointers are valid for the call.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == pid as libc::pid_t {
            return Ok((status, usage));
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error).context("wait4");
        }
    }
}

fn status_ok(status: i32) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

fn summarise(
    system: System,
    runs: &[(ProcessRun, Vec<FileRun>)],
    clips: &[Clip],
    audio_s: f64,
) -> anyhow::Result<SystemFigures> {
    let mut files = Vec::new();
    let (mut word_edits, mut words, mut char_edits, mut chars) = (0.0, 0usize, 0.0, 0usize);
    let mut latencies = Vec::new();
    for clip in clips {
        let path = clip.path.display().to_string();
        let of_clip: Vec<&FileRun> = runs
            .iter()
            .filter_map(|(_, f)| f.iter().find(|r| r.file == path))
            .collect();
        if of_clip.len() != runs.len() {
            bail!("{} printed no result for {path}", system.name());
        }
        let walls: Vec<f64> = of_clip.iter().map(|r| r.wall_s).collect();
        let cpus: Vec<f64> = of_clip.iter().map(|r| r.cpu_s).collect();
        // Decoding is greedy and deterministic; the last run's text stands for all.
        let text = of_clip.last().map(|r| r.text.clone()).unwrap_or_default();
        latencies.extend(of_clip.iter().flat_map(|r| r.latencies_s.iter().copied()));
        let error_rate = clip.reference.as_deref().map(|reference| {
            if is_korean(reference) {
                let n = sori_score::normalize(reference).concat().chars().count();
                let rate = sori_score::cer(reference, &text);
                char_edits += rate * n as f64;
                chars += n;
                rate
            } else {
                let n = sori_score::normalize(reference).len();
                let rate = sori_score::wer(reference, &text);
                word_edits += rate * n as f64;
                words += n;
                rate
            }
        });
        files.push(SystemFile {
            file: display_name(&clip.path),
            wall_s: median(&walls),
            cpu_s: median(&cpus),
            error_rate,
            text,
        });
    }
    latencies.sort_by(f64::total_cmp);
    let wall_s: f64 = files.iter().map(|f| f.wall_s).sum();
    let process =
        |f: fn(&ProcessRun) -> f64| median(&runs.iter().map(|(p, _)| f(p)).collect::<Vec<_>>());
    Ok(SystemFigures {
        system,
        name: system.name().to_owned(),
        wall_s,
        cpu_s: files.iter().map(|f| f.cpu_s).sum(),
        rtf: wall_s / audio_s,
        process_wall_s: process(|p| p.wall_s),
        process_cpu_s: process(|p| p.cpu_s),
        peak_rss_mb: process(|p| p.peak_rss_mb),
        wer: (words > 0).then(|| word_edits / words as f64),
        cer: (chars > 0).then(|| char_edits / chars as f64),
        latency_p50_s: (!latencies.is_empty()).then(|| percentile(&latencies, 0.5)),
        latency_p95_s: (!latencies.is_empty()).then(|| percentile(&latencies, 0.95)),
        files,
    })
}

/// A reference with Hangul in it is scored by characters (CER), otherwise by words (WER).
fn is_korean(text: &str) -> bool {
    text.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c))
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

impl PeersReport {
    /// The figures as Markdown: one table of totals with ratios to faster-whisper int8, then
    /// seconds per file.
    pub fn to_markdown(&self) -> String {
        let base = self.systems.iter().find(|s| s.system == System::FwInt8);
        let ratio = |v: f64, b: Option<f64>| match b {
            Some(b) if b > 0.0 => format!("{:.2}×", v / b),
            _ => "–".into(),
        };
        let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.1} %", v * 100.0));
        let secs = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
        let mut out = format!(
            "{} file(s), {:.1} s of audio; {} thread(s), {}; medians of {} run(s)\n\n",
            self.files.len(),
            self.audio_s,
            self.threads,
            beam_label(self.beam_size),
            self.runs
        );
        out.push_str("| system | transcribe s | RTF | CPU s | process s (with load) | peak MB | WER | CER | final latency p50 / p95 s | time ÷ fw-int8 | CPU ÷ fw-int8 | memory ÷ fw-int8 |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for s in &self.systems {
            let stream = s.system.is_stream();
            out.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.0} | {} | {} | {} / {} | {} | {} | {} |\n",
                s.name,
                if stream {
                    "real time".into()
                } else {
                    format!("{:.2}", s.wall_s)
                },
                if stream {
                    "–".into()
                } else {
                    format!("{:.3}", s.rtf)
                },
                s.cpu_s,
                s.process_wall_s,
                s.peak_rss_mb,
                pct(s.wer),
                pct(s.cer),
                secs(s.latency_p50_s),
                secs(s.latency_p95_s),
                if stream {
                    "–".into()
                } else {
                    ratio(s.wall_s, base.map(|b| b.wall_s))
                },
                ratio(s.cpu_s, base.map(|b| b.cpu_s)),
                ratio(s.peak_rss_mb, base.map(|b| b.peak_rss_mb)),
            ));
        }
        out.push_str("\nTranscription seconds per file (streaming: CPU seconds) and error rate:\n\n| file | audio s |");
        for s in &self.systems {
            out.push_str(&format!(" {} |", s.name));
        }
        out.push_str("\n|---|---|");
        out.push_str(&"---|".repeat(self.systems.len()));
        out.push('\n');
        for (i, (file, audio_s)) in self.files.iter().enumerate() {
            out.push_str(&format!("| {file} | {audio_s:.1} |"));
            for s in &self.systems {
                let f = &s.files[i];
                let t = if s.system.is_stream() {
                    f.cpu_s
                } else {
                    f.wall_s
                };
                out.push_str(&format!(" {t:.2} ({}) |", pct(f.error_rate)));
            }
            out.push('\n');
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// The sori runners: what a child started with `--runner` does.
// ---------------------------------------------------------------------------------------

/// Runs one sori system over `files`, printing a [`FileRun`] JSON line per file.
pub fn run_child(
    system: System,
    config: Config,
    files: &[PathBuf],
    language: Language,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match system {
        System::Sori | System::SoriQ8 => {
            let transcriber = sori::transcribe::Transcriber::start(Arc::clone(&config))?;
            for path in files {
                let audio = load_16k_mono(path)?;
                let clock = Clock::start();
                let duration_s = audio.len() as f64 / f64::from(TARGET_SAMPLE_RATE);
                let transcript = runtime.block_on(transcriber.transcribe(
                    DecodedAudio {
                        samples: audio,
                        sample_rate: TARGET_SAMPLE_RATE,
                        duration_s,
                    },
                    language,
                    None,
                ))?;
                emit(path, clock, transcript.text, Vec::new())?;
            }
        }
        System::WhisperCpp => {
            use sori::stt::Decoder as _;
            let model = sori::stt::whisper::WhisperModel::load(
                &config.stt.model,
                config.stt.use_gpu,
                config.stt.dtw_timestamps,
            )?;
            let mut decoder = model.new_decoder()?;
            for path in files {
                let audio = load_16k_mono(path)?;
                let clock = Clock::start();
                let mut texts = Vec::new();
                for u in super::vad_utterances(&config, &audio) {
                    let opts =
                        super::decode_options(&config, language, u.samples.len(), true, true);
                    texts.push(decoder.decode(&u.samples, &opts)?.text);
                }
                emit(path, clock, texts.join(" "), Vec::new())?;
            }
        }
        System::SoriStream => runtime.block_on(stream_files(config, files, language))?,
        System::FwInt8 | System::FwF32 => bail!("{} is not a sori runner", system.name()),
    }
    Ok(())
}

/// Streams each file in real time to an in-process server over a real `/ws` connection.
async fn stream_files(
    config: Arc<Config>,
    files: &[PathBuf],
    language: Language,
) -> anyhow::Result<()> {
    let mut config = (*config).clone();
    config.llm.enabled = false;
    config.rag.enabled = false;
    let tail_s = config.vad.tail_ms as f64 / 1000.0;
    let server = LocalServer::start_scratch(config).await?;
    let query = format!(
        "?sample_rate=16000&encoding=pcm_s16le&language={}",
        language.as_str()
    );
    for path in files {
        let audio = load_16k_mono(path)?;
        let mut pcm = super::load::to_s16le(&audio);
        pcm.extend(std::iter::repeat_n(
            0u8,
            2 * 2 * TARGET_SAMPLE_RATE as usize,
        ));
        let clock = Clock::start();
        let result = super::load::stream_once(server.addr, &query, &pcm, tail_s).await?;
        emit(path, clock, result.text, result.latencies)?;
    }
    server.shutdown().await?;
    Ok(())
}

/// Wall clock and this process's CPU time (all threads) since `start`.
#[derive(Clone, Copy)]
struct Clock {
    wall: Instant,
    cpu_s: f64,
}

impl Clock {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu_s: process_cpu_s(),
        }
    }
}

fn process_cpu_s() -> f64 {
    // SAFETY: rusage is plain data; getrusage fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF and a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn emit(path: &Path, clock: Clock, text: String, latencies_s: Vec<f64>) -> anyhow::Result<()> {
    let line = FileRun {
        file: path.display().to_string(),
        wall_s: clock.wall.elapsed().as_secs_f64(),
        cpu_s: process_cpu_s() - clock.cpu_s,
        text,
        latencies_s,
    };
    println!("{}", serde_json::to_string(&line)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangul_picks_character_error_rate() {
        assert!(is_korean("서울 요금소"));
        assert!(!is_korean("ask not what your country"));
    }

    #[test]
    fn runner_names_parse_back() {
        use clap::ValueEnum as _;
        for s in System::ALL {
            assert_eq!(System::from_str(runner_name(s), false), Ok(s));
        }
    }
}
