//! The `sori` command: serve | transcribe | stream | index | model | config, and eval / bench
//! (run by `sori-tools`). Each command is a module of `cli`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    sori::process::run_command(cli.default_log_filter(), || cli.run())
}
