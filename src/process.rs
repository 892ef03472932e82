//! What the `sori` and `sori-tools` programs share around a command: logs to stderr (filtered
//! by `RUST_LOG`, else the command's default), the async runtime, and the exit status.

use std::process::ExitCode;

use anyhow::Context;

/// Sets up logging, runs `command`, and turns its error into a message and a failure status.
pub fn run_command(default_filter: &str, command: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match command() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A multi-threaded tokio runtime for the commands that need one.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
