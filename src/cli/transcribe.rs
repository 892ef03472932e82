//! `sori transcribe FILE`: one audio file through the offline path, printed as text, JSON,
//! SRT or VTT.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sori::cache::Cache;
use sori::config::Config;
use sori::enrich::Enrichment;
use sori::http::api::Format;
use sori::outputs::{Cue, to_srt, to_text, to_vtt};
use sori::protocol::ServerMessage;
use sori::transcribe::{FileRequest, FileTranscript, Transcriber};

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
    /// Also extract each segment's keywords with the LLM (llm.base_url, as the server does).
    #[arg(long)]
    keywords: bool,
    /// Also retrieve each segment's related documents (needs rag.enabled).
    #[arg(long)]
    rag: bool,
}

/// What `transcribe` does with the file, once the engine flags are applied.
struct FileArgs {
    file: PathBuf,
    format: String,
    prompt: Option<String>,
    keywords: bool,
    rag: bool,
}

pub fn run(args: TranscribeArgs, config_path: Option<&Path>) -> anyhow::Result<()> {
    let TranscribeArgs {
        engine,
        file,
        format,
        prompt,
        keywords,
        rag,
    } = args;
    let args = FileArgs {
        file,
        format,
        prompt,
        keywords,
        rag,
    };
    let mut config = Config::load(config_path)?;
    engine.apply(&mut config);
    config.validate()?;
    if args.keywords && !config.llm.enabled {
        anyhow::bail!(
            "--keywords needs keyword extraction on (llm.enabled; SORI_KEYWORDS is false)"
        );
    }
    if args.rag && !config.rag.enabled {
        anyhow::bail!("--rag needs RAG on (rag.enabled = true, SORI_RAG=true)");
    }
    runtime()?.block_on(transcribe_file(config, &args))
}

async fn transcribe_file(config: Config, args: &FileArgs) -> anyhow::Result<()> {
    let format: Format = args.format.parse().map_err(anyhow::Error::msg)?;
    let prompt = match args.prompt.as_deref() {
        Some(p) => sori::session::check_prompt(p, config.stt.max_prompt_chars)?,
        None => None,
    };
    let request = FileRequest {
        language: config.stt.language,
        prompt,
        keywords: args.keywords,
        rag: args.rag,
    };
    let enrichers = if args.keywords || args.rag {
        let cache = match &config.cache.redis_url {
            Some(url) => Cache::redis(url, config.cache.max_entries).await,
            None => Cache::memory(config.cache.max_entries),
        };
        Enrichment::new(&config, &cache).enrichers.to_vec()
    } else {
        Vec::new()
    };
    let transcriber = Transcriber::start(Arc::new(config))?;
    // Decoded piece by piece, in bounded memory, within server.max_file_s: as the server does.
    let transcript = transcriber
        .transcribe_file(&args.file, None, &request, &enrichers)
        .await?;
    let cues: Vec<Cue> = transcript
        .segments
        .iter()
        .filter_map(Cue::from_final)
        .collect();
    let out = match format {
        Format::Json => serde_json::to_string_pretty(&transcript)? + "\n",
        Format::Text if args.keywords => text_with_keywords(&transcript),
        Format::Text => to_text(&cues),
        Format::Srt => to_srt(&cues),
        Format::Vtt => to_vtt(&cues),
    };
    print!("{out}");
    for warning in &transcript.warnings {
        if let ServerMessage::Error { message, .. } = warning {
            eprintln!("warning: {message}");
        }
    }
    eprintln!(
        "{:.1} s of audio in {:.2} s ({} segments, {} filtered)",
        transcript.duration_s,
        transcript.processing_s,
        cues.len(),
        transcript.filtered
    );
    Ok(())
}

/// Each segment's text, then its keywords on an indented line ("장소: 서울요금소 · …").
fn text_with_keywords(transcript: &FileTranscript) -> String {
    let mut out = String::new();
    for segment in &transcript.segments {
        let ServerMessage::Final {
            segment_id, text, ..
        } = segment
        else {
            continue;
        };
        out.push_str(text);
        out.push('\n');
        if let Some(keywords) = transcript.keywords.get(segment_id)
            && !keywords.is_empty()
        {
            let list: Vec<String> = keywords
                .iter()
                .map(|k| format!("{}: {}", k.label, k.text))
                .collect();
            out.push_str(&format!("    keywords: {}\n", list.join(" · ")));
        }
    }
    out
}
