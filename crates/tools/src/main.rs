//! `sori-tools`: `eval` and `bench`, the offline tools, out of the server's binary. `sori eval`
//! and `sori bench` run this program (found next to `sori`) with the same arguments.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = sori_tools::cli::Cli::parse();
    sori::process::run_command(cli.default_log_filter(), || cli.run())
}
