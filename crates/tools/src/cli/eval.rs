//! `sori eval DIR`: accuracy on recordings with reference transcripts, offline and over /ws
//! (see docs/accuracy.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use sori::config::Config;

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
    let options = crate::eval::run::EvalOptions {
        language: args.language,
        offline: !args.stream_only,
        stream: !args.offline_only,
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
