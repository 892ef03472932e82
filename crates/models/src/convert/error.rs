//! Why a conversion or a ggml check failed.

use std::io;
use std::path::{Path, PathBuf};

use super::OutputType;

/// Why a conversion or a ggml check failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("Could not {action} {}: {source}.", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} ends early while reading {what}; the file is truncated or is not a CTranslate2 model.",
        .path.display()
    )]
    Truncated { path: PathBuf, what: String },
    #[error(
        "{} has CTranslate2 binary version {found}, but this converter reads versions 5 and 6 only.",
        .path.display()
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("{} holds a \"{found}\" model, but only \"WhisperSpec\" models can be converted.", .path.display())]
    NotWhisper { path: PathBuf, found: String },
    #[error(
        "Variable `{name}` has data type code {code}, which is none of f32, i8, i16, i32, f16 or bf16 (codes 0 to 5)."
    )]
    UnsupportedDtype { name: String, code: u8 },
    #[error(
        "Variable `{name}` declares {found} bytes of data, but its shape and data type need {expected}."
    )]
    BadByteCount {
        name: String,
        found: u64,
        expected: u64,
    },
    #[error("The model has no variable `{name}`, so it is not a complete Whisper model.")]
    MissingVariable { name: String },
    #[error("Variable `{name}` has shape {found:?}, but {expected} was expected.")]
    BadShape {
        name: String,
        found: Vec<usize>,
        expected: String,
    },
    #[error("The model is inconsistent: {0}.")]
    Inconsistent(String),
    #[error("The token list {} is unusable: {reason}.", .path.display())]
    Tokenizer { path: PathBuf, reason: String },
    #[error("The mel filter file {} is unusable: {reason}.", .path.display())]
    MelFilters { path: PathBuf, reason: String },
    #[error("The model config {} does not fit the model: {reason}.", .path.display())]
    Config { path: PathBuf, reason: String },
    #[error("Tensor `{name}` has rows of {row_len} values, but {out} needs a multiple of 32.")]
    NotQuantizable {
        name: String,
        row_len: usize,
        out: OutputType,
    },
    #[error("{} is not a valid whisper.cpp ggml file: {reason}.", .path.display())]
    NotGgml { path: PathBuf, reason: String },
    #[error("Unknown output type \"{0}\"; expected one of f32, f16, q8_0, q5_0 or q4_0.")]
    UnknownOutputType(String),
}

/// Wraps an I/O error with what was being done to which file.
pub(crate) fn io_error<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(io::Error) -> ConvertError + 'p {
    move |source| ConvertError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
