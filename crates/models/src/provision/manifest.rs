//! `models/manifest.json`: what was produced, its size, mtime and sha256, so a later run
//! trusts an untouched file without hashing it again.

use std::fs;
use std::io;
use std::path::Path;
use std::time::UNIX_EPOCH;

use super::error::{ModelError, io_error};
use super::files::write_atomic;

/// Which directory a manifest entry's name is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Root {
    Models,
    Data,
}

/// One produced file as recorded in `models/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ManifestEntry {
    pub(crate) root: Root,
    pub(crate) name: String,
    pub(crate) bytes: u64,
    pub(crate) sha256: String,
    /// Modification time when hashed; a file with the same size and mtime is not rehashed.
    pub(crate) modified_ns: u64,
    /// Pinned packages the file came from (`name==version`).
    pub(crate) sources: Vec<String>,
}

/// Every produced file, sorted by root and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Manifest {
    files: Vec<ManifestEntry>,
}

impl Manifest {
    /// Reads a manifest; a missing file is an empty manifest.
    pub(crate) fn load(path: &Path) -> Result<Self, ModelError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(io_error("read", path)(e)),
        };
        serde_json::from_str(&text).map_err(|e| ModelError::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    pub(crate) fn save(&self, path: &Path) -> Result<(), ModelError> {
        let json = serde_json::to_string_pretty(self).map_err(|e| ModelError::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        write_atomic(path, json.as_bytes())
    }

    pub(crate) fn get(&self, root: Root, name: &str) -> Option<&ManifestEntry> {
        self.files.iter().find(|e| e.root == root && e.name == name)
    }

    pub(crate) fn put(&mut self, entry: ManifestEntry) {
        self.files
            .retain(|e| !(e.root == entry.root && e.name == entry.name));
        self.files.push(entry);
        self.files
            .sort_by(|a, b| (a.root as u8, &a.name).cmp(&(b.root as u8, &b.name)));
    }
}

/// Size and modification time of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    pub(crate) bytes: u64,
    pub(crate) modified_ns: u64,
}

/// A regular file's size and mtime; `None` when it is absent or not a file.
pub(crate) fn stat(path: &Path) -> Option<FileStat> {
    let meta = fs::metadata(path).ok().filter(|m| m.is_file())?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    Some(FileStat {
        bytes: meta.len(),
        modified_ns,
    })
}

/// What to do about an output that may already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Absent (or a rebuild was forced): produce it.
    Missing,
    /// Same size and mtime as when it was hashed: trust the recorded sha256.
    Recorded,
    /// Present but unrecorded or touched since: hash it again before trusting it.
    Rehash,
}

/// Decides from size and mtime alone whether an output needs producing, trusting or rehashing.
pub(crate) fn freshness(
    stat: Option<FileStat>,
    entry: Option<&ManifestEntry>,
    force: bool,
) -> Freshness {
    match (stat, entry) {
        (None, _) => Freshness::Missing,
        _ if force => Freshness::Missing,
        (Some(s), Some(e)) if s.bytes == e.bytes && s.modified_ns == e.modified_ns => {
            Freshness::Recorded
        }
        (Some(_), _) => Freshness::Rehash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::files::temp_dir;

    fn entry(name: &str, bytes: u64, modified_ns: u64) -> ManifestEntry {
        ManifestEntry {
            root: Root::Models,
            name: name.into(),
            bytes,
            sha256: "ab".repeat(32),
            modified_ns,
            sources: vec!["pkg==1".into()],
        }
    }

    #[test]
    fn manifest_round_trips_and_replaces_entries() {
        let dir = temp_dir("manifest");
        let path = dir.join("manifest.json");
        assert_eq!(Manifest::load(&path).unwrap(), Manifest::default());

        let mut m = Manifest::default();
        m.put(entry("b.bin", 2, 20));
        m.put(entry("a.bin", 1, 10));
        m.put(entry("b.bin", 3, 30));
        m.save(&path).unwrap();
        let loaded = Manifest::load(&path).unwrap();
        assert_eq!(loaded, m);
        let names: Vec<&str> = loaded.files.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a.bin", "b.bin"]);
        assert_eq!(loaded.get(Root::Models, "b.bin").unwrap().bytes, 3);
        assert!(loaded.get(Root::Data, "b.bin").is_none());
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"root\": \"models\"") && text.contains("\"sha256\""),
            "{text}"
        );

        fs::write(&path, "{ not json").unwrap();
        let msg = Manifest::load(&path).unwrap_err().to_string();
        assert!(
            msg.starts_with("The manifest") && msg.contains("unreadable"),
            "{msg}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn freshness_decisions() {
        let s = FileStat {
            bytes: 5,
            modified_ns: 7,
        };
        let same = entry("x", 5, 7);
        let touched = entry("x", 5, 8);
        let resized = entry("x", 6, 7);
        assert_eq!(freshness(None, Some(&same), false), Freshness::Missing);
        assert_eq!(freshness(Some(s), Some(&same), false), Freshness::Recorded);
        assert_eq!(freshness(Some(s), Some(&same), true), Freshness::Missing);
        assert_eq!(freshness(Some(s), Some(&touched), false), Freshness::Rehash);
        assert_eq!(freshness(Some(s), Some(&resized), false), Freshness::Rehash);
        assert_eq!(freshness(Some(s), None, false), Freshness::Rehash);
    }
}
