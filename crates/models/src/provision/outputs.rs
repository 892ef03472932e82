//! Produced files: whether one already exists and checks out (trusted from the manifest,
//! rehashed, or rebuilt), and recording a new one.

use std::path::{Path, PathBuf};

use super::error::ModelError;
use super::fetch::Fetcher;
use super::hash::sha256_file;
use super::manifest::{Freshness, ManifestEntry, Root, freshness, stat};
use crate::convert::{self, GgmlHparams};

/// Tensors whisper.cpp loads: 7 + 15 per encoder block, 4 + 24 per decoder block.
pub(crate) fn ggml_tensor_count(hp: &GgmlHparams) -> usize {
    7 + 15 * hp.n_audio_layer as usize + 4 + 24 * hp.n_text_layer as usize
}

/// Checks a ggml file's header and walks all its tensors.
pub(crate) fn check_ggml(path: &Path, want: &GgmlHparams) -> Result<(), String> {
    let header = convert::read_ggml_header(path).map_err(|e| e.to_string())?;
    if header != *want {
        return Err(format!("its header is {header:?}, expected {want:?}"));
    }
    let tensors = convert::read_ggml_tensor_index(path).map_err(|e| e.to_string())?;
    let expected = ggml_tensor_count(want);
    if tensors.len() != expected {
        return Err(format!(
            "it holds {} tensors, expected {expected}",
            tensors.len()
        ));
    }
    Ok(())
}

/// Checks a file is exactly `expected` bytes long.
pub(crate) fn check_size(path: &Path, expected: u64) -> Result<(), String> {
    match stat(path) {
        Some(s) if s.bytes == expected => Ok(()),
        Some(s) => Err(format!("it is {} bytes long, expected {expected}", s.bytes)),
        None => Err("it is missing".into()),
    }
}

/// A produced file: where it is, how to check its structure, what it must hash to if pinned.
pub(crate) struct Output<'a> {
    pub(crate) root: Root,
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) sha256: Option<&'a str>,
    pub(crate) sources: Vec<String>,
    pub(crate) check: &'a dyn Fn(&Path) -> Result<(), String>,
}

impl Fetcher<'_> {
    /// Whether `out` already exists and checks out; updates the manifest when it rehashes.
    pub(crate) fn is_current(&mut self, out: &Output<'_>) -> Result<bool, ModelError> {
        if self.settled.contains(&out.path) {
            return Ok(true);
        }
        let entry = self.manifest.get(out.root, &out.name).cloned();
        let state = freshness(stat(&out.path), entry.as_ref(), self.opts.force);
        if state == Freshness::Missing {
            return Ok(false);
        }
        if let Err(reason) = (out.check)(&out.path) {
            tracing::warn!(path = %out.path.display(), %reason, "existing file does not check out; rebuilding");
            return Ok(false);
        }
        if state == Freshness::Recorded {
            // A pin that changed since the file was recorded makes the file stale.
            let recorded = entry.as_ref().map(|e| e.sha256.as_str());
            let current = out.sha256.is_none_or(|pin| Some(pin) == recorded);
            if current {
                self.settled.insert(out.path.clone());
            }
            return Ok(current);
        }
        self.say(&format!("Verifying {}", out.path.display()));
        let sha = sha256_file(&out.path)?;
        let expected = out.sha256.or(entry.as_ref().map(|e| e.sha256.as_str()));
        if expected.is_some_and(|want| want != sha) {
            tracing::warn!(path = %out.path.display(), "sha256 differs from the pinned or recorded one; rebuilding");
            return Ok(false);
        }
        self.record(out, sha)?;
        Ok(true)
    }

    /// Records a produced file in the manifest and saves it.
    pub(crate) fn record(&mut self, out: &Output<'_>, sha256: String) -> Result<(), ModelError> {
        if let Some(want) = out.sha256.filter(|want| *want != sha256) {
            return Err(ModelError::ChecksumMismatch {
                path: out.path.clone(),
                found: sha256,
                expected: want.into(),
            });
        }
        let s = stat(&out.path).ok_or_else(|| ModelError::Invalid {
            path: out.path.clone(),
            reason: "it vanished after being written".into(),
        })?;
        self.settled.insert(out.path.clone());
        self.manifest.put(ManifestEntry {
            root: out.root,
            name: out.name.clone(),
            bytes: s.bytes,
            sha256,
            modified_ns: s.modified_ns,
            sources: out.sources.clone(),
        });
        self.manifest.save(&self.manifest_path)
    }

    /// Hashes, checks and records a freshly produced file.
    pub(crate) fn finish(&mut self, out: &Output<'_>) -> Result<(), ModelError> {
        (out.check)(&out.path).map_err(|reason| ModelError::Invalid {
            path: out.path.clone(),
            reason,
        })?;
        let sha = sha256_file(&out.path)?;
        self.record(out, sha)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::fs;

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::convert::OutputType;
    use crate::convert::testing::{In, SMALL, fixture, synth};
    use crate::provision::FetchOptions;
    use crate::provision::catalogue::{BASE, TINY_EN};
    use crate::provision::files::temp_dir;
    use crate::provision::manifest::Manifest;

    fn fetcher<'a>(opts: &'a FetchOptions, data: &'a Path, log: &'a dyn Fn(&str)) -> Fetcher<'a> {
        let manifest_path = opts.models_dir.join("manifest.json");
        Fetcher {
            opts,
            data_dir: data,
            progress: log,
            manifest: Manifest::load(&manifest_path).unwrap(),
            manifest_path,
            settled: HashSet::new(),
        }
    }

    #[test]
    fn existing_outputs_are_trusted_rehashed_or_rebuilt() {
        let dir = temp_dir("current");
        let mut opts = FetchOptions::new(&dir);
        let path = dir.join("thing.bin");
        let ok = |_: &Path| Ok(());
        let out = Output {
            root: Root::Models,
            name: "thing.bin".into(),
            path: path.clone(),
            sha256: None,
            sources: vec!["pkg==1".into()],
            check: &ok,
        };
        let said = std::cell::RefCell::new(Vec::<String>::new());
        let log = |m: &str| said.borrow_mut().push(m.to_string());

        // Each `fetcher` below is a new run that reads the manifest back.
        let mut f = fetcher(&opts, &dir, &log);
        assert!(!f.is_current(&out).unwrap(), "missing file");
        fs::write(&path, b"hello").unwrap();
        f.finish(&out).unwrap();
        assert!(f.is_current(&out).unwrap());

        // Recorded size and mtime: trusted without hashing.
        assert!(fetcher(&opts, &dir, &log).is_current(&out).unwrap());
        assert!(said.borrow().is_empty(), "a recorded file is not rehashed");

        // Same size, new content and mtime: rehashed, found different, rebuilt.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&path, b"jello").unwrap();
        assert!(!fetcher(&opts, &dir, &log).is_current(&out).unwrap());
        assert_eq!(said.borrow().len(), 1);

        // Touched but unchanged: rehashed once, recorded again, then trusted.
        fs::write(&path, b"hello").unwrap();
        assert!(fetcher(&opts, &dir, &log).is_current(&out).unwrap());
        assert!(fetcher(&opts, &dir, &log).is_current(&out).unwrap());
        assert_eq!(said.borrow().len(), 2);

        // A failing structure check means rebuild.
        let bad = |_: &Path| Err("broken".to_string());
        let broken = Output {
            check: &bad,
            sources: vec![],
            path: path.clone(),
            name: out.name.clone(),
            ..out
        };
        assert!(!fetcher(&opts, &dir, &log).is_current(&broken).unwrap());

        // --force rebuilds each output once per run.
        opts.force = true;
        let out = Output {
            check: &ok,
            ..broken
        };
        let mut f = fetcher(&opts, &dir, &log);
        assert!(!f.is_current(&out).unwrap());
        f.finish(&out).unwrap();
        assert!(f.is_current(&out).unwrap());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pinned_outputs_must_match_their_sha256() {
        let dir = temp_dir("pinned");
        let opts = FetchOptions::new(&dir);
        let path = dir.join("clip.wav");
        fs::write(&path, b"abc").unwrap();
        let ok = |_: &Path| Ok(());
        let right = format!("{:x}", Sha256::digest(b"abc"));
        let wrong = "0".repeat(64);
        let pinned = |sha| Output {
            root: Root::Data,
            name: "clip.wav".into(),
            path: path.clone(),
            sha256: Some(sha),
            sources: vec![],
            check: &ok,
        };
        let log = |_: &str| {};
        assert!(
            fetcher(&opts, &dir, &log)
                .is_current(&pinned(&right))
                .unwrap()
        );
        // Recorded with the right sha256: a changed pin makes it stale without rehashing.
        assert!(
            !fetcher(&opts, &dir, &log)
                .is_current(&pinned(&wrong))
                .unwrap()
        );
        let err = fetcher(&opts, &dir, &log)
            .finish(&pinned(&wrong))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has sha256") && err.contains("pinned sha256 is 0000"),
            "{err}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tensor_counts_match_whisper_cpps_models() {
        // ggml-base.bin and ggml-tiny.en.bin as whisper.cpp publishes them.
        assert_eq!(ggml_tensor_count(&BASE.hparams), 245);
        assert_eq!(ggml_tensor_count(&TINY_EN.hparams), 167);
    }

    #[test]
    fn check_ggml_accepts_what_the_converter_writes_and_nothing_else() {
        let fx = fixture(&synth(SMALL, In::F16, false), 10);
        let out = fx.dir.join("out.bin");
        let report = convert::convert(&fx.model, &fx.assets, &out, OutputType::F16).unwrap();
        assert_eq!(ggml_tensor_count(&report.hparams), report.tensors);
        assert_eq!(check_ggml(&out, &report.hparams), Ok(()));

        let q8 = GgmlHparams {
            ftype: OutputType::Q8_0.header_ftype(),
            ..report.hparams
        };
        let err = check_ggml(&out, &q8).unwrap_err();
        assert!(err.starts_with("its header is"), "{err}");

        let bytes = std::fs::read(&out).unwrap();
        std::fs::write(&out, &bytes[..bytes.len() - 1]).unwrap();
        let err = check_ggml(&out, &report.hparams).unwrap_err();
        assert!(err.contains("in the middle of the data of tensor"), "{err}");
        assert_eq!(check_size(&out, bytes.len() as u64 - 1), Ok(()));
        let err = check_size(&out, bytes.len() as u64).unwrap_err();
        assert!(err.contains("expected"), "{err}");
    }
}
