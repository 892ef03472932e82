//! External tools the fetch needs (`python3 -m pip`, `npm`, `tar`): checking they are there,
//! and running them with their output's tail in the error when they fail.

use std::path::Path;
use std::process::{Command, Stdio};

use super::error::ModelError;

/// Checks that `program args…` runs and succeeds.
pub(crate) fn require_tool(
    program: &str,
    args: &[&str],
    tool: &'static str,
    hint: &'static str,
) -> Result<(), ModelError> {
    let ok = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(ModelError::MissingTool { tool, hint })
    }
}

/// The last `n` non-empty lines of a command's output.
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a command to completion; a failure carries the tail of its stderr (or stdout).
pub(crate) fn run(cmd: &mut Command) -> Result<(), ModelError> {
    let command = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    tracing::debug!(%command, "running");
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ModelError::CommandFailed {
            command: command.clone(),
            status: "it could not be started".into(),
            output_tail: e.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = if stderr.trim().is_empty() {
        String::from_utf8_lossy(&output.stdout)
    } else {
        stderr
    };
    Err(ModelError::CommandFailed {
        command,
        status: output.status.to_string(),
        output_tail: tail_lines(&text, 15),
    })
}

/// Checks for `python3` and its `pip` module.
pub(crate) fn require_pip() -> Result<(), ModelError> {
    require_tool(
        "python3",
        &["--version"],
        "python3",
        "apt-get install python3 python3-pip",
    )?;
    require_tool(
        "python3",
        &["-m", "pip", "--version"],
        "python3 -m pip",
        "apt-get install python3-pip",
    )
}

/// Checks for `tar`.
fn require_tar() -> Result<(), ModelError> {
    require_tool("tar", &["--version"], "tar", "apt-get install tar gzip")
}

/// Extracts exact `members` of a `.tar.gz` into `dir`.
pub(crate) fn untar(archive: &Path, dir: &Path, members: &[&str]) -> Result<(), ModelError> {
    require_tar()?;
    run(Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .args(members))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_and_failing_commands_explain_themselves() {
        let err = require_tool(
            "sori-no-such-tool",
            &[],
            "sori-no-such-tool",
            "apt-get install it",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`sori-no-such-tool` is needed to fetch models but is not available here; install it with `apt-get install it`."
        );
        let err =
            run(Command::new("sh").args(["-c", "echo one >&2; echo two >&2; exit 3"])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("`sh -c echo one"), "{msg}");
        assert!(
            msg.contains("exit status: 3") && msg.ends_with("one\ntwo"),
            "{msg}"
        );
        assert_eq!(tail_lines("a\n\nb\nc\n", 2), "b\nc");
    }
}
