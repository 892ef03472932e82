//! `sori eval DIR`: accuracy on recordings with reference transcripts, offline and over /ws
//! (see docs/accuracy.md). It runs `sori-tools eval` with the same arguments.

use std::path::Path;

use super::tools::{ForwardedArgs, forward};

/// `sori eval`'s arguments, checked by `sori-tools eval`.
pub type EvalArgs = ForwardedArgs;

pub fn run(args: EvalArgs, config_path: Option<&Path>) -> anyhow::Result<()> {
    Ok(forward("eval", args, config_path)?)
}
