//! `sori eval` and `sori bench` live in the `sori-tools` program (crates/tools), which the
//! server's package cannot depend on (it depends on the server). These commands run it: the
//! `sori-tools` found next to this executable, with the same arguments, the same standard
//! streams and the same exit status.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The program `sori eval` and `sori bench` run. `cargo build --release --workspace` (and
/// test.sh's build) puts it beside `sori` in target/release.
pub const TOOLS_BINARY: &str = "sori-tools";

/// A forwarded command's arguments, taken as they are: `sori eval --help` is the tools'
/// help, and every flag is checked there.
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct ForwardedArgs {
    /// The command's own arguments (see `sori eval --help`, `sori bench --help`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..,
        value_name = "ARGS"
    )]
    pub args: Vec<OsString>,
}

/// Why the tools program could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot tell where this sori executable is, to find {TOOLS_BINARY} beside it: {0}")]
    CurrentExe(std::io::Error),
    #[error(
        "`sori {command}` runs {}, which is missing; build it with `cargo build --release --workspace` (./test.sh builds it too)",
        path.display()
    )]
    Missing { command: String, path: PathBuf },
    #[error("cannot run {}: {source}", path.display())]
    Run {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `sori-tools` beside `exe`.
pub fn tools_path(exe: &Path) -> PathBuf {
    exe.with_file_name(format!("{TOOLS_BINARY}{}", std::env::consts::EXE_SUFFIX))
}

/// The tools program's arguments for `sori [--config FILE] COMMAND ARGS...`.
pub fn tools_args(command: &str, args: Vec<OsString>, config: Option<&Path>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len() + 3);
    if let Some(config) = config {
        out.push("--config".into());
        out.push(config.as_os_str().to_owned());
    }
    out.push(command.into());
    out.extend(args);
    out
}

/// Runs `sori-tools COMMAND ARGS...` in place of this process (on Unix, by `exec`: signals
/// and the exit status are the tools' own); returns only when it could not be started.
pub fn forward(
    command: &str,
    args: ForwardedArgs,
    config: Option<&Path>,
) -> Result<(), ForwardError> {
    let exe = std::env::current_exe().map_err(ForwardError::CurrentExe)?;
    let path = tools_path(&exe);
    if !path.is_file() {
        return Err(ForwardError::Missing {
            command: command.to_owned(),
            path,
        });
    }
    let mut child = Command::new(&path);
    child.args(tools_args(command, args.args, config));
    run(child, path)
}

#[cfg(unix)]
fn run(mut child: Command, path: PathBuf) -> Result<(), ForwardError> {
    use std::os::unix::process::CommandExt as _;
    // Usage lines then read `sori eval …`, the command the user typed.
    let source = child.arg0("sori").exec();
    Err(ForwardError::Run { path, source })
}

#[cfg(not(unix))]
fn run(mut child: Command, path: PathBuf) -> Result<(), ForwardError> {
    let status = child
        .status()
        .map_err(|source| ForwardError::Run { path, source })?;
    std::process::exit(status.code().unwrap_or(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tools_sit_beside_sori() {
        let path = tools_path(Path::new("/opt/sori/bin/sori"));
        assert_eq!(
            path,
            Path::new("/opt/sori/bin").join(format!("sori-tools{}", std::env::consts::EXE_SUFFIX))
        );
    }

    #[test]
    fn arguments_pass_through_with_the_config_first() {
        let args = vec!["dir".into(), "--json".into(), "out.json".into()];
        assert_eq!(
            tools_args("eval", args.clone(), None),
            ["eval", "dir", "--json", "out.json"].map(OsString::from)
        );
        assert_eq!(
            tools_args("eval", args, Some(Path::new("sori.toml"))),
            ["--config", "sori.toml", "eval", "dir", "--json", "out.json"].map(OsString::from)
        );
    }
}
