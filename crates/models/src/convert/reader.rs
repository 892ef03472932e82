//! Reads a CTranslate2 `model.bin`: the variable index once, then any variable's rows on
//! demand as f32, integer weights divided by their stored scale.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use super::error::{ConvertError, io_error};

/// CT2 binary versions whose layout this reader knows (4 and later share it; 5 and 6 are what
/// faster-whisper models use).
const CT2_VERSIONS: std::ops::RangeInclusive<u32> = 5..=6;

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
pub(crate) struct Ct2Var {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    dtype: Ct2Dtype,
    offset: u64,
}

impl Ct2Var {
    pub(crate) fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Outer dimension: the unit CT2 quantizes by and this converter streams by.
    pub(crate) fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    pub(crate) fn row_len(&self) -> usize {
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
pub(crate) enum Scale {
    None,
    Global(f32),
    PerRow(Vec<f32>),
}

/// An indexed CT2 `model.bin`: variable headers are read once, data on demand.
pub(crate) struct Ct2Model {
    path: PathBuf,
    file: File,
    vars: HashMap<String, Ct2Var>,
    aliases: HashMap<String, String>,
}

impl Ct2Model {
    pub(crate) fn open(path: &Path) -> Result<Self, ConvertError> {
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

    pub(crate) fn var(&self, name: &str) -> Result<&Ct2Var, ConvertError> {
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
    pub(crate) fn scale_for(&mut self, var: &Ct2Var) -> Result<Scale, ConvertError> {
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
    pub(crate) fn read_rows_f32(
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
    pub(crate) fn read_int_scalar(&mut self, name: &str) -> Result<Option<i64>, ConvertError> {
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
    pub(crate) fn count_layers(&self, prefix: &str) -> Result<usize, ConvertError> {
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::convert::testing::*;
    use crate::convert::{OutputType, convert};

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
    fn refuses_gaps_in_layer_numbers() {
        let mut s = synth(SMALL, In::F16, false);
        s.file.vars.retain(|v| !v.0.starts_with("encoder/layer_0/"));
        let msg = convert_error(&s).to_string();
        assert!(msg.contains("encoder layers are numbered {1}"), "{msg}");
    }

    #[test]
    fn refuses_wrong_byte_counts() {
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
}
