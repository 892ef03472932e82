//! The `sori-tools` command line: `eval` and `bench`, with exactly the flags `sori eval` and
//! `sori bench` document (the `sori` binary forwards those two commands here).

pub mod bench;
pub mod eval;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sori-tools",
    version,
    about = "sori's offline tools: accuracy (eval) and benchmarks (bench)"
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
    /// Measure speed and latency side by side (see docs/benchmarks.md).
    Bench(Box<bench::BenchArgs>),
    /// Measure accuracy on a directory of recordings with reference transcripts: each file
    /// offline and streamed over /ws; WER / CER, real-time factor, hallucinated segments
    /// (see docs/accuracy.md).
    Eval(eval::EvalArgs),
}

impl Cli {
    /// The tracing filter when RUST_LOG is unset: `eval` shows a progress bar and a report,
    /// which the server's per-session lines would bury.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Eval(_) => "warn",
            Command::Bench(_) => "info,whisper_rs=warn",
        }
    }

    /// Runs the chosen command.
    pub fn run(self) -> anyhow::Result<()> {
        let config = self.config.as_deref();
        match self.command {
            Command::Bench(args) => bench::run(*args, config),
            Command::Eval(args) => eval::run(args, config),
        }
    }
}

pub use sori::config::flags::EngineFlags;
pub use sori::process::runtime;
