//! Test fixtures shared by the converter's modules (and provisioning's tests): synthetic CT2
//! models, token lists and mel filters in scratch directories, and what their conversion must
//! produce.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;

use super::{ConvertError, OutputType, WhisperAssets, convert, tmp_path};

mod ct2;
mod expected;

pub(crate) use ct2::*;
pub(crate) use expected::*;

/// A scratch directory, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("sori-convert-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Deterministic values in [-1, 1).
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub(crate) fn take(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// A `.npy` file (format 1.0) holding `data` as little-endian f32 of `shape`.
pub(crate) fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
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

/// Columns of the synthetic mel filter banks.
pub(crate) const N_FFT: usize = 5;

pub(crate) fn mel_values(n_mel: usize) -> Vec<f32> {
    (0..n_mel * N_FFT)
        .map(|i| i as f32 * 0.25 + n_mel as f32)
        .collect()
}

pub(crate) fn write_npz(path: &Path) {
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

pub(crate) fn tiktoken_text(tokens: &[&[u8]]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{} {i}\n", b64.encode(t)))
        .collect()
}

pub(crate) fn token_list(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("tok{i}").into_bytes()).collect()
}

/// A temp dir holding a synthetic model, token list and mel filters.
pub(crate) struct Fixture {
    pub(crate) dir: TempDir,
    pub(crate) model: PathBuf,
    pub(crate) assets: WhisperAssets,
    pub(crate) tokens: Vec<Vec<u8>>,
}

pub(crate) fn fixture(s: &Synth, n_tokens: usize) -> Fixture {
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

/// Converts `s` to f16, expecting a failure that leaves no output behind.
pub(crate) fn convert_error(s: &Synth) -> ConvertError {
    let fx = fixture(s, 10);
    let out = fx.dir.join("out.bin");
    let err = convert(&fx.model, &fx.assets, &out, OutputType::F16).unwrap_err();
    assert!(!out.exists() && !tmp_path(&out).exists());
    err
}
