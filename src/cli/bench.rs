//! `sori bench`: speed and latency of the decoder, keywords, RAG, a load soak, or peers side by
//! side (see docs/benchmarks.md). It runs `sori-tools bench` with the same arguments.

use std::path::Path;

use super::tools::{ForwardedArgs, forward};

/// `sori bench`'s arguments, checked by `sori-tools bench`.
pub type BenchArgs = ForwardedArgs;

pub fn run(args: BenchArgs, config_path: Option<&Path>) -> anyhow::Result<()> {
    Ok(forward("bench", args, config_path)?)
}
