//! `sori bench`: speed and latency of the decoder, keywords, RAG, a load soak, peers side by
//! side, hostile clients, or the live streams one machine carries (see docs/benchmarks.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use sori::config::Config;
use sori::config::auto::available_cores;
use sori_core::audio::decode::load_16k_mono;
use sori_core::protocol::Language;
use sori_score::JFK_REFERENCE;

use super::{EngineFlags, runtime};

// No `///` here: the variant's doc in `Command` is the command's help.
#[derive(clap::Args)]
// `--clients` (in the load flags) is for the two benches that run streaming clients.
#[command(group(clap::ArgGroup::new("streaming_clients").args(["load", "capacity"]).multiple(true)))]
// The --peers options also shape --noise, which runs the same systems.
#[command(group(clap::ArgGroup::new("side_by_side").args(["peers", "noise"]).multiple(true)))]
pub struct BenchArgs {
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
    soak: crate::bench::load::LoadArgs,
    #[command(flatten)]
    peers: crate::bench::peers::PeersArgs,
    #[command(flatten)]
    noise: crate::bench::noise::NoiseArgs,
    #[command(flatten)]
    hostile: crate::bench::hostile::HostileArgs,
    #[command(flatten)]
    capacity: crate::bench::capacity::CapacityArgs,
}

pub fn run(args: BenchArgs, config_path: Option<&Path>) -> anyhow::Result<()> {
    let BenchArgs {
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
        noise,
        hostile,
        capacity,
    } = args;
    let mut config = Config::load(config_path)?;
    if let Some(url) = llm_url {
        config.llm.base_url = url;
    }
    if let Some(url) = embed_url {
        config.rag.embed_url = url;
    }
    if hostile.hostile {
        let report = runtime()?.block_on(crate::bench::hostile::run(&hostile))?;
        report.print();
        if let Some(path) = json {
            std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        }
        return Ok(());
    }
    if capacity.capacity {
        let setup = crate::bench::capacity::Setup {
            levels: soak.clients,
            files,
            engine,
            config: config_path.map(Path::to_owned),
        };
        let report = runtime()?.block_on(crate::bench::capacity::run(&capacity, setup))?;
        println!("{}", report.to_markdown());
        println!("{}", report.capacity_line());
        if let Some(path) = json {
            std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        }
        return Ok(());
    }
    if rag {
        config.validate()?;
        let figures = runtime()?.block_on(crate::bench::rag::rag_latency(&config, chunks, runs))?;
        println!("{}", figures.to_markdown());
        return Ok(());
    }
    if keywords {
        config.validate()?;
        let figures = runtime()?.block_on(crate::bench::keyword_latency(&config, runs))?;
        println!("{}", figures.to_markdown());
        return Ok(());
    }
    let language = engine.language.unwrap_or(Language::En);
    engine.apply(&mut config);
    let config = config.with_decoder_layout(available_cores());
    config.validate()?;
    if soak.load {
        let report = runtime()?.block_on(crate::bench::load::run(config, &soak, language))?;
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
        return crate::bench::peers::run_child(system, config, &files, language);
    }
    if noise.vad {
        let report = crate::bench::vad::run(&config, &noise.snr)?;
        println!("{}", report.to_markdown());
        if let Some(path) = json {
            std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        }
        return Ok(());
    }
    if noise.noise {
        let report = crate::bench::noise::run(&config, &noise, &peers, runs.max(1), language)?;
        println!("{}", report.to_markdown());
        if let Some(path) = json {
            std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        }
        return Ok(());
    }
    if peers.peers {
        // Side by side for speed: every system greedy unless told otherwise.
        let mut peers = peers;
        peers.beam_size.get_or_insert(1);
        let files = if files.is_empty() {
            peer_bench_files()?
        } else {
            files
        };
        let report = crate::bench::peers::run(&config, &peers, &files, runs.max(1), language)?;
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
        .map(|f| crate::bench::BenchFile::new(f, language))
        .collect();
    let report = crate::bench::run(config, &files, runs.max(1))?;
    println!("{}", report.to_markdown());
    if let Some(path) = json {
        let value = serde_json::json!({ "files": report.files, "audio_ctx": report.ctx, "peak_rss_mb": report.peak_rss_mb });
        std::fs::write(&path, serde_json::to_string_pretty(&value)?)?;
    }
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
    sori_core::audio::wav::write_wav_16k(&single, &jfk)?;
    std::fs::write(single.with_extension("txt"), JFK_REFERENCE)?;
    let pause = vec![0.0f32; 24_000];
    let triple: Vec<f32> = [&jfk[..], &pause, &jfk, &pause, &jfk].concat();
    let three = dir.join("jfk_x3.wav");
    sori_core::audio::wav::write_wav_16k(&three, &triple)?;
    std::fs::write(three.with_extension("txt"), [JFK_REFERENCE; 3].join(" "))?;
    Ok(vec![single, three])
}
