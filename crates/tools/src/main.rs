//! `sori-tools`: `eval` and `bench`, the offline tools, out of the server's binary. `sori eval`
//! and `sori bench` run this program (found next to `sori`) with the same arguments.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = sori_tools::cli::Cli::parse();
    let default_filter = cli.default_log_filter();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
