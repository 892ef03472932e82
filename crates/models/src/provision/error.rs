//! Why fetching models failed.

use std::io;
use std::path::{Path, PathBuf};

use crate::convert::ConvertError;

/// Why fetching models failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "`{tool}` is needed to fetch models but is not available here; install it with `{hint}`."
    )]
    MissingTool {
        tool: &'static str,
        hint: &'static str,
    },
    #[error("`{command}` failed ({status}). Its last output lines were:\n{output_tail}")]
    CommandFailed {
        command: String,
        status: String,
        output_tail: String,
    },
    #[error("Could not {action} {}: {source}.", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} has sha256 {found}, but the pinned sha256 is {expected}.", .path.display())]
    ChecksumMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{what} is {found} bytes long, but {expected} bytes were expected.")]
    SizeMismatch {
        what: String,
        found: u64,
        expected: u64,
    },
    #[error("{} could not be unpacked: {reason}.", .path.display())]
    Archive { path: PathBuf, reason: String },
    #[error("The manifest {} is unreadable: {reason}.", .path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("{} was written but does not check out: {reason}.", .path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

/// Wraps an I/O error with what was being done to which file.
pub(crate) fn io_error<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(io::Error) -> ModelError + 'p {
    move |source| ModelError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
