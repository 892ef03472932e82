//! The `sori` command line: the clap definitions shared by every command, and the dispatch
//! to one module per command.

pub mod bench;
pub mod config;
pub mod eval;
pub mod index;
pub mod model;
pub mod serve;
pub mod stream;
pub mod tools;
pub mod transcribe;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sori",
    version,
    about = "Real-time speech-and-keyword streaming server"
)]
pub struct Cli {
    /// Configuration file (default: ./sori.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Transcribe an audio file (wav, mp3, flac, ogg) and print the result.
    Transcribe(transcribe::TranscribeArgs),
    /// Stream an audio file to a running server's /ws, as a microphone would, and print
    /// every server message as one JSON line (see docs/protocol.md).
    Stream(stream::StreamArgs),
    /// Measure speed and latency side by side (see docs/benchmarks.md).
    Bench(bench::BenchArgs),
    /// Index documents for RAG: .txt, .md and .pdf files, or every such file under folders.
    /// Re-indexing a file replaces its earlier version (the source is its path as given).
    Index(index::IndexArgs),
    /// Measure accuracy on a directory of recordings with reference transcripts: each file
    /// offline and streamed over /ws; WER / CER, real-time factor, hallucinated segments
    /// (see docs/accuracy.md).
    Eval(eval::EvalArgs),
    /// Fetch and convert Whisper models.
    Model {
        #[command(subcommand)]
        command: model::ModelCommand,
    },
    /// The configuration's settings (see docs/configuration.md).
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
}

impl Cli {
    /// The tracing filter when RUST_LOG is unset: `sori eval` shows a progress bar and a
    /// report, which the server's per-session lines would bury.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Eval(_) | Command::Stream(_) => "warn",
            _ => "info,whisper_rs=warn",
        }
    }

    /// Runs the chosen command.
    pub fn run(self) -> anyhow::Result<()> {
        let file = self.config.as_deref();
        match self.command {
            Command::Serve(args) => serve::run(args, file),
            Command::Transcribe(args) => transcribe::run(args, file),
            Command::Stream(args) => stream::run(args),
            Command::Bench(args) => bench::run(args, file),
            Command::Index(args) => index::run(args, file),
            Command::Eval(args) => eval::run(args, file),
            Command::Model { command } => model::run(command),
            Command::Config { command } => config::run(command),
        }
    }
}

pub use sori::config::flags::EngineFlags;
pub use sori::process::runtime;

#[cfg(test)]
mod tests;
