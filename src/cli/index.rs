//! `sori index`: documents into the RAG store (or sources out of it).

use std::path::{Path, PathBuf};

use sori::config::Config;

use super::runtime;

// No `///` here: the variant's doc in `Command` is the command's help.
#[derive(clap::Args)]
pub struct IndexArgs {
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
}

pub fn run(args: IndexArgs, config_path: Option<&Path>) -> anyhow::Result<()> {
    let mut config = Config::load(config_path)?;
    if let Some(url) = args.embed_url {
        config.rag.embed_url = url;
    }
    if let Some(url) = args.qdrant_url {
        config.rag.qdrant_url = Some(url);
    }
    config.rag.enabled = true;
    config.validate()?;
    runtime()?.block_on(index_paths(config, &args.paths, &args.delete))
}

/// Every file under `paths` with a progress bar, then a summary.
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
