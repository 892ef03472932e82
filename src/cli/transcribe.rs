//! `sori transcribe FILE`: one audio file through the offline path, printed as text, JSON,
//! SRT or VTT.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sori::audio::decode::decode_file;
use sori::config::Config;
use sori::outputs::{Cue, to_srt, to_text, to_vtt};
use sori::transcribe::Transcriber;

use super::{EngineFlags, runtime};

// No `///` here: the variant's doc in `Command` is the command's help.
#[derive(clap::Args)]
pub struct TranscribeArgs {
    file: PathBuf,
    #[arg(long, default_value = "text")]
    format: String,
    #[command(flatten)]
    engine: EngineFlags,
    /// Domain words to bias recognition towards.
    #[arg(long)]
    prompt: Option<String>,
}

pub fn run(args: TranscribeArgs, config_path: Option<&Path>) -> anyhow::Result<()> {
    let mut config = Config::load(config_path)?;
    args.engine.apply(&mut config);
    config.validate()?;
    runtime()?.block_on(transcribe_file(
        config,
        &args.file,
        &args.format,
        args.prompt.as_deref(),
    ))
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
