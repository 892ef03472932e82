//! Deletes old transcripts: the `.jsonl`, `.srt` and `.vtt` files sori wrote in its outputs
//! folder (named by a session id, a UUID) whose last change is older than a maximum age.
//! Everything else in the folder — an operator's notes, files of other tools, sub-folders — is
//! left alone. Blocking (it reads the folder): run it on a blocking thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The extensions of the files a session writes.
const TRANSCRIPT_EXTENSIONS: [&str; 3] = ["jsonl", "srt", "vtt"];

/// What one pass did.
#[derive(Debug, Default, PartialEq)]
pub struct Pruned {
    /// Transcript files deleted.
    pub deleted: Vec<PathBuf>,
    /// Transcript files young enough to keep.
    pub kept: usize,
    /// Files that could not be read or deleted, with why (the pass goes on past them).
    pub failed: Vec<(PathBuf, String)>,
}

/// Whether `path` is named like a transcript sori wrote: `<uuid>.jsonl|srt|vtt`.
pub fn is_transcript(path: &Path) -> bool {
    let extension_ok = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| TRANSCRIPT_EXTENSIONS.contains(&e));
    let stem_ok = path
        .file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| uuid::Uuid::try_parse(s).is_ok());
    extension_ok && stem_ok
}

/// Deletes the transcripts in `dir` last modified more than `max_age` before `now`. A missing
/// folder has nothing to prune.
pub fn prune(dir: &Path, max_age: Duration, now: SystemTime) -> std::io::Result<Pruned> {
    let mut pruned = Pruned::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(pruned),
        Err(e) => return Err(e),
    };
    let cutoff = now.checked_sub(max_age).unwrap_or(SystemTime::UNIX_EPOCH);
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if !is_transcript(&path) {
            continue;
        }
        let modified = entry.metadata().and_then(|m| {
            if m.is_file() {
                m.modified().map(Some)
            } else {
                Ok(None)
            }
        });
        match modified {
            Ok(Some(at)) if at < cutoff => match std::fs::remove_file(&path) {
                Ok(()) => pruned.deleted.push(path),
                Err(e) => pruned.failed.push((path, e.to_string())),
            },
            Ok(Some(_)) => pruned.kept += 1,
            Ok(None) => {}
            Err(e) => pruned.failed.push((path, e.to_string())),
        }
    }
    pruned.deleted.sort();
    Ok(pruned)
}

/// How often [`run`] looks again after its first pass.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Prunes `dir` now and then every `every`, for as long as the runtime runs, each pass on a
/// blocking thread; logs what each pass deleted. The server starts it (not `sori transcribe`).
pub async fn run(dir: PathBuf, max_age: Duration, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let folder = dir.clone();
        let pass =
            tokio::task::spawn_blocking(move || prune(&folder, max_age, SystemTime::now())).await;
        match pass {
            Ok(Ok(pruned)) => log_pass(&dir, &pruned),
            Ok(Err(e)) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot prune old transcripts");
            }
            Err(e) => tracing::warn!(error = %e, "the transcript pruning pass failed"),
        }
    }
}

fn log_pass(dir: &Path, pruned: &Pruned) {
    for path in &pruned.deleted {
        tracing::info!(file = %path.display(), "old transcript deleted");
    }
    for (path, why) in &pruned.failed {
        tracing::warn!(file = %path.display(), error = %why, "cannot prune an old transcript");
    }
    tracing::info!(
        dir = %dir.display(),
        deleted = pruned.deleted.len(),
        kept = pruned.kept,
        failed = pruned.failed.len(),
        "transcripts pruned"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn touch(path: &Path, age: Duration) {
        let file = std::fs::File::create(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn old_transcripts_go_young_ones_and_other_files_stay() {
        let dir = std::env::temp_dir().join(format!("sori-prune-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let old = "5f0c7d6e2a9b4c1d8e3f4a5b6c7d8e9f";
        let young = "0123456789abcdef0123456789abcdef";
        for ext in ["jsonl", "srt", "vtt"] {
            touch(&dir.join(format!("{old}.{ext}")), 31 * DAY);
            touch(&dir.join(format!("{young}.{ext}")), DAY);
        }
        touch(&dir.join("notes.txt"), 400 * DAY);
        touch(&dir.join("meeting.jsonl"), 400 * DAY);
        // A folder named like a transcript is not one.
        std::fs::create_dir(dir.join("ffffffffffffffffffffffffffffffff.srt")).unwrap();

        let pruned = prune(&dir, 30 * DAY, SystemTime::now()).unwrap();
        let names: Vec<String> = pruned
            .deleted
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                format!("{old}.jsonl"),
                format!("{old}.srt"),
                format!("{old}.vtt")
            ]
        );
        assert_eq!(pruned.kept, 3);
        assert!(pruned.failed.is_empty(), "{:?}", pruned.failed);
        for kept in [
            format!("{young}.jsonl"),
            "notes.txt".into(),
            "meeting.jsonl".into(),
        ] {
            assert!(dir.join(&kept).is_file(), "{kept} was deleted");
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_missing_folder_has_nothing_to_prune() {
        let dir = std::env::temp_dir().join(format!("sori-prune-none-{}", uuid::Uuid::new_v4()));
        assert_eq!(
            prune(&dir, DAY, SystemTime::now()).unwrap(),
            Pruned::default()
        );
    }
}
