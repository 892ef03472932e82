//! Documents on disk for `sori index`: plain text, Markdown and PDF files, one by one or every
//! such file under a folder.

use std::path::{Path, PathBuf};

use super::RagError;

/// File types `sori index` reads.
pub const EXTENSIONS: &[&str] = &["txt", "md", "markdown", "pdf"];

/// `path` itself when it is a file, or every file with a known extension under it (sorted,
/// hidden entries skipped).
pub fn collect(path: &Path) -> Result<Vec<PathBuf>, RagError> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    if !path.is_dir() {
        return Err(RagError::Invalid(format!(
            "{}: no such file or folder",
            path.display()
        )));
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| RagError::Invalid(format!("{}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let p = entry.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else if known(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn known(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The text of a document as (page, text) pairs: one unnumbered page for text files, one per
/// page for PDFs (pages without text are left out).
pub fn load(path: &Path) -> Result<Vec<(Option<u32>, String)>, RagError> {
    let unreadable =
        |e: &dyn std::fmt::Display| RagError::Invalid(format!("{}: {e}", path.display()));
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => {
            let doc = lopdf::Document::load(path).map_err(|e| unreadable(&e))?;
            let mut pages = Vec::new();
            for number in doc.get_pages().keys() {
                let text = doc.extract_text(&[*number]).map_err(|e| unreadable(&e))?;
                if !text.trim().is_empty() {
                    pages.push((Some(*number), text));
                }
            }
            if pages.is_empty() {
                return Err(RagError::Invalid(format!(
                    "{}: the PDF has no extractable text (a scan needs OCR first)",
                    path.display()
                )));
            }
            Ok(pages)
        }
        "txt" | "md" | "markdown" => {
            let bytes = std::fs::read(path).map_err(|e| unreadable(&e))?;
            let text = String::from_utf8(bytes).map_err(|_| {
                RagError::Invalid(format!(
                    "{}: not UTF-8 text (convert it first, e.g. iconv -f cp949 -t utf-8)",
                    path.display()
                ))
            })?;
            Ok(vec![(None, text)])
        }
        _ => Err(RagError::Invalid(format!(
            "{}: unsupported file type; sori indexes {}",
            path.display(),
            EXTENSIONS.join(", ")
        ))),
    }
}
