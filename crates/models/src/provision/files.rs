//! Small file-system helpers: atomic writes through `<path>.tmp`, directory creation, and
//! scratch directories for tests.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::{ModelError, io_error};

/// `<path>.tmp`: where a file is built before it is renamed into place.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `data` to `<path>.tmp` and renames it into place.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ModelError> {
    let tmp = tmp_path(path);
    fs::write(&tmp, data).map_err(io_error("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_error("rename into place", path))
}

pub(crate) fn create_dir(path: &Path) -> Result<(), ModelError> {
    fs::create_dir_all(path).map_err(io_error("create", path))
}

/// A fresh, empty scratch directory for a test; the test removes it.
#[cfg(test)]
pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sori-model-{tag}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}
