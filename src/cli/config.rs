//! `sori config docs`: the settings tables of docs/configuration.md, from the settings table.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use sori::config::docs;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the settings tables of docs/configuration.md, generated from the code's table.
    Docs {
        /// Rewrite the tables between the `<!-- settings: … -->` markers of this Markdown file
        /// in place (docs/configuration.md) instead of printing them.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
    },
}

pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Docs { write: None } => {
            print!("{}", docs::tables());
            Ok(())
        }
        ConfigCommand::Docs { write: Some(path) } => write_docs(&path),
    }
}

fn write_docs(path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let updated = docs::update(&text).with_context(|| path.display().to_string())?;
    if updated == text {
        eprintln!("{} is up to date", path.display());
        return Ok(());
    }
    std::fs::write(path, updated).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("rewrote the settings tables of {}", path.display());
    Ok(())
}
