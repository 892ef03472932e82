//! openai-whisper's assets the ggml file embeds: the token list (`.tiktoken`) and the mel
//! filter bank (`mel_filters.npz`, NumPy arrays in a zip).

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::error::{ConvertError, io_error};

/// Vocabulary size from which a Whisper model is multilingual (51864 is English-only).
const MULTILINGUAL_MIN_VOCAB: i32 = 51865;

/// Where openai-whisper's tokenizer and mel filter files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhisperAssets {
    /// Holds `multilingual.tiktoken` and `gpt2.tiktoken`.
    pub tiktoken_dir: PathBuf,
    /// openai-whisper's `mel_filters.npz` (`mel_80.npy`, `mel_128.npy`).
    pub mel_filters_npz: PathBuf,
    /// A token list to use instead of picking one of the two files by vocabulary size.
    pub tokenizer_override: Option<PathBuf>,
}

impl WhisperAssets {
    /// Assets laid out as in openai-whisper's `whisper/assets` directory.
    pub fn from_dir(dir: &Path) -> Self {
        Self {
            tiktoken_dir: dir.to_path_buf(),
            mel_filters_npz: dir.join("mel_filters.npz"),
            tokenizer_override: None,
        }
    }

    /// The token list for a model with `n_vocab` tokens.
    pub fn tokenizer_for(&self, n_vocab: i32) -> PathBuf {
        self.tokenizer_override
            .clone()
            .unwrap_or_else(|| self.tiktoken_dir.join(tokenizer_file_name(n_vocab)))
    }
}

/// openai-whisper's token list for a vocabulary size: English-only models (51864 tokens) use
/// GPT-2's, multilingual ones (51865, large-v3 51866) their own.
pub fn tokenizer_file_name(n_vocab: i32) -> &'static str {
    if n_vocab >= MULTILINGUAL_MIN_VOCAB {
        "multilingual.tiktoken"
    } else {
        "gpt2.tiktoken"
    }
}

/// Reads an openai-whisper `.tiktoken` file: `base64(token) rank` per line, ranks 0..n in order.
pub(crate) fn load_tiktoken(path: &Path) -> Result<Vec<Vec<u8>>, ConvertError> {
    let text = fs::read_to_string(path).map_err(io_error("read", path))?;
    parse_tiktoken(&text).map_err(|reason| ConvertError::Tokenizer {
        path: path.to_path_buf(),
        reason,
    })
}

/// [`load_tiktoken`] on text already read; the error is the reason, without the path.
fn parse_tiktoken(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut tokens = Vec::new();
    for (line_no, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line_no = line_no + 1;
        let mut parts = line.split_whitespace();
        let (Some(token), Some(rank), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("line {line_no} is not \"<base64 token> <rank>\""));
        };
        let rank: usize = rank
            .parse()
            .map_err(|_| format!("line {line_no} has rank \"{rank}\", not a number"))?;
        if rank != tokens.len() {
            return Err(format!(
                "line {line_no} has rank {rank}, expected {} (ranks must run 0, 1, 2, … in order)",
                tokens.len()
            ));
        }
        // openai-whisper's multilingual list holds one empty token written as a bare "=".
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|e| format!("line {line_no} has a token that is not base64 ({e})"))?;
        tokens.push(bytes);
    }
    if tokens.is_empty() {
        return Err("it holds no tokens".into());
    }
    Ok(tokens)
}

/// A mel filter bank: `n_mel` rows of `n_fft` weights.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MelFilters {
    pub(crate) n_mel: usize,
    pub(crate) n_fft: usize,
    pub(crate) data: Vec<f32>,
}

/// Reads `mel_<n_mels>.npy` from openai-whisper's `mel_filters.npz`.
pub(crate) fn load_mel_filters(npz: &Path, n_mels: usize) -> Result<MelFilters, ConvertError> {
    let fail = |reason: String| ConvertError::MelFilters {
        path: npz.to_path_buf(),
        reason,
    };
    let file = File::open(npz).map_err(io_error("open", npz))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| fail(format!("it is not a zip archive ({e})")))?;
    let entry_name = format!("mel_{n_mels}.npy");
    let mut bytes = Vec::new();
    archive
        .by_name(&entry_name)
        .map_err(|e| {
            fail(format!(
                "it has no {entry_name} for this {n_mels}-mel model ({e})"
            ))
        })?
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("{entry_name} could not be unpacked ({e})")))?;
    let (shape, data) = parse_npy_f32(&bytes).map_err(|e| fail(format!("{entry_name}: {e}")))?;
    match shape[..] {
        [rows, n_fft] if rows == n_mels && n_fft > 0 => Ok(MelFilters {
            n_mel: rows,
            n_fft,
            data,
        }),
        _ => Err(fail(format!(
            "{entry_name} has shape {shape:?}, expected ({n_mels}, n_fft)"
        ))),
    }
}

/// Parses a NumPy `.npy` array of little-endian f32 in C order.
fn parse_npy_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), String> {
    let rest = bytes
        .strip_prefix(b"\x93NUMPY")
        .ok_or("it does not start with the .npy magic")?;
    let (major, rest) = rest.split_first().ok_or("its header is cut short")?;
    let rest = rest.get(1..).ok_or("its header is cut short")?; // minor version
    let (header_len, rest) = match major {
        1 => {
            let len = rest.get(..2).ok_or("its header is cut short")?;
            (u16::from_le_bytes([len[0], len[1]]) as usize, &rest[2..])
        }
        2 | 3 => {
            let len = rest.get(..4).ok_or("its header is cut short")?;
            (
                u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize,
                &rest[4..],
            )
        }
        v => {
            return Err(format!(
                "it has .npy format version {v}, expected 1, 2 or 3"
            ));
        }
    };
    let header = rest.get(..header_len).ok_or("its header is cut short")?;
    let header = std::str::from_utf8(header).map_err(|_| "its header is not text")?;
    let data = &rest[header_len..];

    let descr = npy_field(header, "descr")
        .and_then(|v| v.strip_prefix('\''))
        .and_then(|v| v.split('\'').next())
        .ok_or("its header has no descr")?;
    if descr != "<f4" {
        return Err(format!(
            "it holds '{descr}' data, expected '<f4' (little-endian f32)"
        ));
    }
    if !npy_field(header, "fortran_order").is_some_and(|v| v.starts_with("False")) {
        return Err("it is not in C order (fortran_order is not False)".into());
    }
    let shape_text = npy_field(header, "shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or("its header has no shape")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("its shape ({shape_text}) is not numeric"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let numel: usize = shape.iter().product();
    if data.len() != numel * 4 {
        return Err(format!(
            "it holds {} data bytes, but shape {shape:?} needs {}",
            data.len(),
            numel * 4
        ));
    }
    let values = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((shape, values))
}

/// The text after `'key':` in an `.npy` header dict, leading spaces trimmed.
fn npy_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = header[at + key.len() + 2..].trim_start();
    Some(rest.strip_prefix(':')?.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::testing::*;

    #[test]
    fn tiktoken_parsing() {
        let tokens = parse_tiktoken("IQ== 0\n\nIg== 1\n= 2\n").unwrap();
        assert_eq!(tokens, vec![b"!".to_vec(), b"\"".to_vec(), Vec::new()]);
        let err = parse_tiktoken("IQ== 0\nIg== 2\n").unwrap_err();
        assert!(err.contains("rank 2, expected 1"), "{err}");
        assert!(
            parse_tiktoken("IQ== zero\n")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(parse_tiktoken("@@ 0\n").unwrap_err().contains("not base64"));
        assert!(parse_tiktoken("").unwrap_err().contains("no tokens"));
    }

    #[test]
    fn npy_parsing() {
        let (shape, data) =
            parse_npy_f32(&npy_bytes(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])).unwrap();
        assert_eq!((shape, data[5]), (vec![2, 3], 6.0));

        let good = npy_bytes(&[2, 3], &[0.0; 6]);
        let text = String::from_utf8_lossy(&good[10..]).into_owned();
        let swap = |from: &str, to: &str| {
            let mut b = good[..10].to_vec();
            b.extend_from_slice(text.replacen(from, to, 1).as_bytes());
            b
        };
        let err = parse_npy_f32(&swap("'<f4'", "'<f8'")).unwrap_err();
        assert!(err.contains("'<f8'"), "{err}");
        let err = parse_npy_f32(&swap("False", "True ")).unwrap_err();
        assert!(err.contains("C order"), "{err}");
        let err = parse_npy_f32(&good[..good.len() - 4]).unwrap_err();
        assert!(
            err.contains("holds 20 data bytes") && err.contains("needs 24"),
            "{err}"
        );
        assert!(parse_npy_f32(b"PK\x03\x04").unwrap_err().contains("magic"));
    }

    #[test]
    fn tokenizer_file_names() {
        assert_eq!(tokenizer_file_name(51864), "gpt2.tiktoken");
        assert_eq!(tokenizer_file_name(51865), "multilingual.tiktoken");
        assert_eq!(tokenizer_file_name(51866), "multilingual.tiktoken");
        let assets = WhisperAssets::from_dir(Path::new("/a"));
        assert_eq!(assets.tokenizer_for(51864), Path::new("/a/gpt2.tiktoken"));
        assert_eq!(assets.mel_filters_npz, Path::new("/a/mel_filters.npz"));
    }
}
