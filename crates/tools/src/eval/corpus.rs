//! The directory `sori eval` reads: audio files, each with a same-named `.txt` reference,
//! found recursively (so AIHub's KsponSpeech layout, `KsponSpeech_01/KsponSpeech_0001/
//! KsponSpeech_000001.pcm` + `.txt`, works as it is unpacked).

use std::path::{Path, PathBuf};

use sori_core::audio::AudioError;
use sori_core::audio::decode::load_16k_mono;

/// Audio file extensions `sori eval` picks up (case-insensitive). `.pcm` is raw 16 kHz 16-bit
/// little-endian mono without a header, as KsponSpeech ships it.
pub const AUDIO_EXTENSIONS: [&str; 5] = ["wav", "mp3", "flac", "ogg", "pcm"];

/// What the directory must hold, for error messages.
pub const ACCEPTED: &str = "audio files (.wav, .mp3, .flac, .ogg, or raw 16 kHz 16-bit mono .pcm as in KsponSpeech), \
     each with its reference transcript in a same-named .txt file (a.wav + a.txt)";

/// Why a directory cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{} does not exist; sori eval takes a directory of {ACCEPTED}", path.display())]
    Missing { path: PathBuf },
    #[error("{} is not a directory; sori eval takes a directory of {ACCEPTED}", path.display())]
    NotADirectory { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no audio files under {}; sori eval reads {ACCEPTED}", path.display())]
    NoAudio { path: PathBuf },
    #[error(
        "none of the {count} audio files under {} has a reference transcript; put each file's text in a same-named .txt beside it (a.wav + a.txt; an empty .txt marks silence)",
        path.display()
    )]
    NoReferences { path: PathBuf, count: usize },
}

/// Why one reference transcript cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot read reference {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "reference {} is neither UTF-8 nor CP949/EUC-KR text; save it as UTF-8",
        path.display()
    )]
    Encoding { path: PathBuf },
}

/// An audio file found under the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub audio: PathBuf,
    /// Path relative to the directory, with `/` separators (how files are named in reports).
    pub name: String,
    /// The same-named `.txt`, when it exists.
    pub reference: Option<PathBuf>,
}

/// Every audio file under `dir`, sorted by path. Hidden files and folders (a leading `.`)
/// are skipped; symbolic links to files are followed, to folders not (no cycles).
pub fn collect(dir: &Path) -> Result<Vec<Entry>, CorpusError> {
    let meta = std::fs::metadata(dir).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => CorpusError::Missing {
            path: dir.to_owned(),
        },
        _ => CorpusError::Io {
            path: dir.to_owned(),
            source,
        },
    })?;
    if !meta.is_dir() {
        return Err(CorpusError::NotADirectory {
            path: dir.to_owned(),
        });
    }
    let mut audio = Vec::new();
    walk(dir, &mut audio)?;
    audio.sort();
    if audio.is_empty() {
        return Err(CorpusError::NoAudio {
            path: dir.to_owned(),
        });
    }
    let entries: Vec<Entry> = audio
        .into_iter()
        .map(|path| {
            let txt = path.with_extension("txt");
            let name = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            Entry {
                reference: txt.is_file().then_some(txt),
                audio: path,
                name,
            }
        })
        .collect();
    if entries.iter().all(|e| e.reference.is_none()) {
        return Err(CorpusError::NoReferences {
            path: dir.to_owned(),
            count: entries.len(),
        });
    }
    Ok(entries)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), CorpusError> {
    let io = |source| CorpusError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            walk(&path, found)?;
        } else if (kind.is_file() || (kind.is_symlink() && path.is_file())) && is_audio(&path) {
            found.push(path);
        }
    }
    Ok(())
}

fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(e)))
}

/// A reference transcript: UTF-8 (a byte-order mark is dropped), or CP949 / EUC-KR, the
/// encoding of KsponSpeech's original transcripts. Lines are joined with spaces.
pub fn read_reference(path: &Path) -> Result<String, ReferenceError> {
    let bytes = std::fs::read(path).map_err(|source| ReferenceError::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let (text, _, had_errors) = encoding_rs::EUC_KR.decode(e.as_bytes());
            if had_errors {
                return Err(ReferenceError::Encoding {
                    path: path.to_owned(),
                });
            }
            text.into_owned()
        }
    };
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// 16 kHz mono samples of an audio file; `.pcm` is read as headerless 16-bit little-endian
/// 16 kHz mono (KsponSpeech), anything else is decoded by its content.
pub fn load_audio(path: &Path) -> Result<Vec<f32>, AudioError> {
    let raw = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("pcm"));
    if !raw {
        return load_16k_mono(path);
    }
    let bytes = std::fs::read(path).map_err(|source| AudioError::Io {
        path: path.to_owned(),
        source,
    })?;
    if bytes.is_empty() {
        return Err(AudioError::EmptyAudio);
    }
    if bytes.len() % 2 != 0 {
        return Err(AudioError::Undecodable {
            reason: format!(
                "{} has {} bytes, not a whole number of 16-bit samples; a .pcm file must be raw 16 kHz 16-bit little-endian mono",
                path.display(),
                bytes.len()
            ),
        });
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sori-eval-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn files_are_found_recursively_with_their_references() {
        let dir = scratch("walk");
        std::fs::create_dir_all(dir.join("KsponSpeech_01/KsponSpeech_0001")).unwrap();
        std::fs::write(dir.join("a.wav"), b"x").unwrap();
        std::fs::write(dir.join("a.txt"), "hello").unwrap();
        std::fs::write(dir.join("b.MP3"), b"x").unwrap();
        std::fs::write(dir.join("notes.md"), "not audio").unwrap();
        std::fs::write(dir.join(".hidden.wav"), b"x").unwrap();
        let deep = dir.join("KsponSpeech_01/KsponSpeech_0001/KsponSpeech_000001");
        std::fs::write(deep.with_extension("pcm"), [0u8, 0]).unwrap();
        std::fs::write(deep.with_extension("txt"), "네").unwrap();
        let entries = collect(&dir).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "KsponSpeech_01/KsponSpeech_0001/KsponSpeech_000001.pcm",
                "a.wav",
                "b.MP3"
            ]
        );
        assert!(entries[0].reference.is_some());
        assert!(entries[1].reference.is_some());
        assert!(entries[2].reference.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_directories_say_what_is_accepted() {
        let missing = collect(Path::new("/no/such/dir")).unwrap_err();
        assert!(matches!(missing, CorpusError::Missing { .. }));
        assert!(missing.to_string().contains("same-named .txt"), "{missing}");

        let dir = scratch("empty");
        std::fs::write(dir.join("a.txt"), "text only").unwrap();
        let none = collect(&dir).unwrap_err();
        assert!(matches!(none, CorpusError::NoAudio { .. }), "{none}");
        assert!(
            none.to_string().contains(".wav, .mp3, .flac, .ogg"),
            "{none}"
        );

        let file = dir.join("a.txt");
        assert!(matches!(
            collect(&file).unwrap_err(),
            CorpusError::NotADirectory { .. }
        ));

        std::fs::write(dir.join("b.wav"), b"x").unwrap();
        let unreferenced = collect(&dir).unwrap_err();
        assert!(
            matches!(unreferenced, CorpusError::NoReferences { count: 1, .. }),
            "{unreferenced}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn references_are_utf8_or_cp949() {
        let dir = scratch("refs");
        let utf8 = dir.join("u.txt");
        std::fs::write(&utf8, "\u{FEFF}첫 줄\n둘째  줄\n").unwrap();
        assert_eq!(read_reference(&utf8).unwrap(), "첫 줄 둘째 줄");
        let cp949 = dir.join("k.txt");
        let (bytes, _, _) = encoding_rs::EUC_KR.encode("o/ 안녕하세요 (1시)/(한 시)");
        std::fs::write(&cp949, &bytes).unwrap();
        assert_eq!(
            read_reference(&cp949).unwrap(),
            "o/ 안녕하세요 (1시)/(한 시)"
        );
        let garbage = dir.join("g.txt");
        std::fs::write(&garbage, [0xFFu8, 0xFF, 0xFF]).unwrap();
        assert!(matches!(
            read_reference(&garbage).unwrap_err(),
            ReferenceError::Encoding { .. }
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn raw_pcm_is_16_bit_mono() {
        let dir = scratch("pcm");
        let pcm = dir.join("a.pcm");
        std::fs::write(&pcm, [0x00u8, 0x40, 0x00, 0xC0]).unwrap();
        assert_eq!(load_audio(&pcm).unwrap(), [0.5, -0.5]);
        std::fs::write(&pcm, [0u8, 0, 0]).unwrap();
        let odd = load_audio(&pcm).unwrap_err();
        assert!(odd.to_string().contains("16-bit"), "{odd}");
        std::fs::write(&pcm, []).unwrap();
        assert!(matches!(
            load_audio(&pcm).unwrap_err(),
            AudioError::EmptyAudio
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
