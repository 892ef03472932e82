//! `sori eval DIR`: accuracy on recordings with reference transcripts, offline and over /ws
//! (see docs/accuracy.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use sori::config::Config;
use sori_core::audio::decode::load_16k_mono;
use sori_core::audio::noise::{NoiseMix, NoiseSource, NoiseSpec};

use crate::eval::run::Labelled;

use super::{EngineFlags, runtime};

// No `///` here: the variant's doc in `Command` is the command's help.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// Audio files (wav, mp3, flac, ogg, KsponSpeech .pcm), each with a same-named .txt
    /// reference; subfolders are searched too.
    dir: PathBuf,
    /// ko, en, auto, or ref: per file from the reference's script (Hangul → ko, else en).
    #[arg(long, default_value = "ref")]
    language: crate::eval::run::EvalLanguage,
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
    /// Add noise to every file before transcribing it: `white`, or a recording (any format
    /// sori reads; looped to each file's length). Measures accuracy in noise on your corpus.
    #[arg(long, value_name = "white|FILE", requires = "snr")]
    noise: Option<NoiseSpec>,
    /// Signal-to-noise ratio of --noise in dB: the file's mean power ÷ the noise's (e.g. 10, 5, 0).
    #[arg(
        long,
        value_name = "DB",
        requires = "noise",
        allow_negative_numbers = true
    )]
    snr: Option<f32>,
}

/// The noise of `--noise` at `--snr`, its recording decoded once, and its label for the report.
pub fn noise_mix(spec: &NoiseSpec, snr_db: f32) -> anyhow::Result<Labelled<NoiseMix>> {
    let (source, name) = match spec {
        NoiseSpec::White => (NoiseSource::White, "white noise".to_owned()),
        NoiseSpec::File(path) => {
            let samples = load_16k_mono(path)
                .with_context(|| format!("cannot read the noise recording {}", path.display()))?;
            (
                NoiseSource::Samples(samples.into()),
                format!("noise from {}", path.display()),
            )
        }
    };
    Ok(Labelled {
        value: NoiseMix::new(source, snr_db)?,
        label: format!("{name} at {snr_db} dB SNR"),
    })
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum EvalFormat {
    Table,
    Json,
}

pub fn run(args: EvalArgs, config_path: Option<&Path>) -> anyhow::Result<()> {
    let mut config = Config::load(config_path)?;
    EngineFlags {
        model: args.model,
        language: None,
        workers: None,
        threads: args.threads,
    }
    .apply(&mut config);
    let config = config.with_decoder_layout(sori::config::auto::available_cores());
    config.validate()?;
    let noise = match (args.noise, args.snr) {
        (Some(spec), Some(snr_db)) => Some(noise_mix(&spec, snr_db)?),
        _ => None,
    };
    let options = crate::eval::run::EvalOptions {
        language: args.language,
        offline: !args.stream_only,
        stream: !args.offline_only,
        noise,
    };
    runtime()?.block_on(eval_dir(
        config,
        &args.dir,
        &options,
        args.format,
        args.json.as_deref(),
    ))
}

/// The report as a table or JSON on stdout (and JSON to `json`), a progress bar on stderr;
/// fails after reporting when a file could not be evaluated.
async fn eval_dir(
    config: Config,
    dir: &Path,
    options: &crate::eval::run::EvalOptions,
    format: EvalFormat,
    json: Option<&Path>,
) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = crate::eval::run::run(config, dir, options, &bar).await?;
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
