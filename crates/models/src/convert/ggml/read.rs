//! Reads a ggml file back the way a loader would: the header, mel filters, tokens and every
//! tensor header, checking that each tensor's data fits and the file ends right after the last.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::{GGML_MAGIC, GgmlHparams, ggml_data_bytes};
use crate::convert::error::{ConvertError, io_error};

/// Reads and checks the magic and the 11 header integers of a ggml file.
pub fn read_ggml_header(path: &Path) -> Result<GgmlHparams, ConvertError> {
    let file = File::open(path).map_err(io_error("open", path))?;
    let mut r = GgmlReader::new(path, file)?;
    r.header()
}

/// Walks a whole ggml file and lists its tensors as `(name, ne, ggml type)`, `ne` in ggml
/// order (innermost dimension first, the reverse of PyTorch's shape). Fails unless the file
/// ends exactly after the last tensor.
pub fn read_ggml_tensor_index(path: &Path) -> Result<Vec<(String, Vec<i64>, i32)>, ConvertError> {
    Ok(walk_ggml(path)?
        .tensors
        .into_iter()
        .map(|t| (t.name, t.ne, t.ttype))
        .collect())
}

/// A tensor's place in a ggml file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GgmlTensorInfo {
    pub(crate) name: String,
    pub(crate) ne: Vec<i64>,
    pub(crate) ttype: i32,
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) offset: u64,
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) bytes: u64,
}

/// Everything [`walk_ggml`] learns about a file.
#[derive(Debug, Clone)]
pub(crate) struct GgmlLayout {
    pub(crate) hparams: GgmlHparams,
    pub(crate) n_mel: usize,
    pub(crate) n_fft: usize,
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) mel_offset: u64,
    pub(crate) tokens: Vec<Vec<u8>>,
    pub(crate) tensors: Vec<GgmlTensorInfo>,
    pub(crate) end: u64,
}

/// A sequential reader over a ggml file that knows its position and length, so a short file
/// fails with where it ended instead of an I/O error.
struct GgmlReader<'a> {
    inner: BufReader<File>,
    path: &'a Path,
    pos: u64,
    len: u64,
}

impl<'a> GgmlReader<'a> {
    fn new(path: &'a Path, file: File) -> Result<Self, ConvertError> {
        let len = file.metadata().map_err(io_error("read", path))?.len();
        Ok(Self {
            inner: BufReader::new(file),
            path,
            pos: 0,
            len,
        })
    }

    fn bad(&self, reason: String) -> ConvertError {
        ConvertError::NotGgml {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), ConvertError> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(self.bad(format!(
                "it ends at byte {} in the middle of {what}",
                self.len
            )));
        }
        self.inner
            .read_exact(buf)
            .map_err(io_error("read", self.path))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn i32(&mut self, what: &str) -> Result<i32, ConvertError> {
        let mut b = [0u8; 4];
        self.fill(&mut b, what)?;
        Ok(i32::from_le_bytes(b))
    }

    /// An i32 count that must lie in `0..=max`.
    fn count(&mut self, what: &str, max: usize) -> Result<usize, ConvertError> {
        let v = self.i32(what)?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| self.bad(format!("{what} is {v}, outside 0..={max}")))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), ConvertError> {
        if self.pos + n > self.len {
            return Err(self.bad(format!(
                "it ends at byte {} in the middle of {what}",
                self.len
            )));
        }
        self.inner
            .seek_relative(n as i64)
            .map_err(io_error("read", self.path))?;
        self.pos += n;
        Ok(())
    }

    fn header(&mut self) -> Result<GgmlHparams, ConvertError> {
        let mut magic = [0u8; 4];
        self.fill(&mut magic, "the magic number")?;
        let magic = u32::from_le_bytes(magic);
        if magic != GGML_MAGIC {
            return Err(self.bad(format!(
                "it starts with 0x{magic:08x} instead of the ggml magic 0x{GGML_MAGIC:08x}"
            )));
        }
        let mut values = [0i32; 11];
        for v in &mut values {
            *v = self.i32("the hyperparameters")?;
        }
        Ok(GgmlHparams::from_array(values))
    }

    fn tensor(&mut self) -> Result<GgmlTensorInfo, ConvertError> {
        let n_dims = self.count("a tensor's dimension count", 4)?;
        let name_len = self.count("a tensor name length", 4096)?;
        let ttype = self.i32("a tensor type")?;
        let mut ne = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            ne.push(i64::from(self.i32("a tensor dimension")?));
        }
        let mut name = vec![0u8; name_len];
        self.fill(&mut name, "a tensor name")?;
        let name =
            String::from_utf8(name).map_err(|_| self.bad("a tensor name is not UTF-8".into()))?;
        if n_dims == 0 || name.is_empty() || ne.iter().any(|&d| d <= 0) {
            return Err(self.bad(format!("tensor `{name}` has dimensions {ne:?}")));
        }
        let numel = ne.iter().product::<i64>() as u64;
        let bytes = ggml_data_bytes(ttype, numel).ok_or_else(|| {
            self.bad(format!(
                "tensor `{name}` has type {ttype}, which whisper files do not use, or a partial block"
            ))
        })?;
        let offset = self.pos;
        self.skip(bytes, &format!("the data of tensor `{name}`"))?;
        Ok(GgmlTensorInfo {
            name,
            ne,
            ttype,
            offset,
            bytes,
        })
    }
}

/// Reads a whole ggml file's structure: header, mel filters, tokens, every tensor header.
pub(crate) fn walk_ggml(path: &Path) -> Result<GgmlLayout, ConvertError> {
    let file = File::open(path).map_err(io_error("open", path))?;
    let mut r = GgmlReader::new(path, file)?;
    let hparams = r.header()?;
    let n_mel = r.count("n_mel", 1024)?;
    let n_fft = r.count("n_fft", 1 << 16)?;
    let mel_offset = r.pos;
    r.skip((n_mel * n_fft * 4) as u64, "the mel filters")?;
    let n_tokens = r.count("the token count", 1 << 22)?;
    let mut tokens = Vec::with_capacity(n_tokens);
    for _ in 0..n_tokens {
        let len = r.count("a token length", 1 << 16)?;
        let mut token = vec![0u8; len];
        r.fill(&mut token, "a token")?;
        tokens.push(token);
    }
    let mut tensors: Vec<GgmlTensorInfo> = Vec::new();
    let mut seen = HashSet::new();
    while r.pos < r.len {
        let t = r.tensor()?;
        if !seen.insert(t.name.clone()) {
            return Err(r.bad(format!("tensor `{}` appears twice", t.name)));
        }
        tensors.push(t);
    }
    if tensors.is_empty() {
        return Err(r.bad("it holds no tensors".into()));
    }
    Ok(GgmlLayout {
        hparams,
        n_mel,
        n_fft,
        mel_offset,
        tokens,
        tensors,
        end: r.pos,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::convert::testing::*;
    use crate::convert::{OutputType, convert};

    #[test]
    fn ggml_reader_rejects_damaged_files() {
        let s = synth(SMALL, In::F16, false);
        let fx = fixture(&s, 10);
        let out = fx.dir.join("out.bin");
        convert(&fx.model, &fx.assets, &out, OutputType::F16).unwrap();
        let good = fs::read(&out).unwrap();
        let damaged = fx.dir.join("damaged.bin");

        fs::write(&damaged, &good[..good.len() - 1]).unwrap();
        let msg = read_ggml_tensor_index(&damaged).unwrap_err().to_string();
        assert!(
            msg.contains("in the middle of the data of tensor `decoder.ln.bias`"),
            "{msg}"
        );
        assert!(read_ggml_header(&damaged).is_ok());

        let mut longer = good.clone();
        longer.extend_from_slice(&[0, 0]);
        fs::write(&damaged, &longer).unwrap();
        assert!(read_ggml_tensor_index(&damaged).is_err());

        let mut bad_magic = good.clone();
        bad_magic[0] = b'x';
        fs::write(&damaged, &bad_magic).unwrap();
        let msg = read_ggml_header(&damaged).unwrap_err().to_string();
        assert!(
            msg.contains("instead of the ggml magic 0x67676d6c"),
            "{msg}"
        );

        fs::write(&damaged, &good[..20]).unwrap();
        assert!(
            read_ggml_header(&damaged)
                .unwrap_err()
                .to_string()
                .contains("in the middle of the hyperparameters")
        );
    }
}
