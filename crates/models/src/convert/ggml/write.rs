//! Writes a whisper.cpp ggml file: the header, mel filters and tokens, then every planned
//! tensor streamed from the CT2 model a few rows at a time, so memory stays small.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{GGML_MAGIC, GgmlHparams, GgmlType};
use crate::convert::assets::MelFilters;
use crate::convert::error::{ConvertError, io_error};
use crate::convert::hparams::to_i32;
use crate::convert::plan::Planned;
use crate::convert::quantise::encode;
use crate::convert::reader::Ct2Model;

/// Rough amount of f32 data converted per write while streaming a tensor.
const CHUNK_BYTES: usize = 4 << 20;

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

/// Writes the whole file at `path`, calling `progress(done, total)` after each tensor; returns
/// its size in bytes.
pub(crate) fn write_ggml(
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
