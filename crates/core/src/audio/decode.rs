//! Audio files (WAV, MP3, FLAC, Ogg Vorbis) → mono `f32`, through symphonia.
//!
//! [`FileDecoder`] decodes a file piece by piece, so a 3-hour recording never sits in memory
//! whole: file transcription (`POST /api/transcribe`, `/v1/audio/transcriptions`, the CLI) reads
//! it through [`crate::audio::file_stream::FileStream16k`]. [`decode_bytes`], [`decode_file`] and
//! [`load_16k_mono`] decode a whole clip into memory, for tests and offline tools. Any failure is
//! an [`AudioError`]: bad input never panics.

use std::fs::File;
use std::io::Cursor;
use std::path::Path;

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::packet::Packet;

use crate::audio::{AudioError, resample};

/// A decoded file: mono samples at the file's own rate.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Mono samples in `[-1, 1]` (multi-channel files are averaged), at `sample_rate`.
    pub samples: Vec<f32>,
    /// The file's sample rate, in Hz.
    pub sample_rate: u32,
    /// `samples.len() / sample_rate`, in seconds.
    pub duration_s: f64,
}

/// Packets that fail to decode are skipped (an MP3 with one damaged frame is still worth
/// transcribing), but past this share of bad packets the file is called corrupt.
const MAX_BAD_PACKET_SHARE: f64 = 0.05;

/// The most frames a whole-file decode reserves up front from the length a header declares
/// (about 20 s at 48 kHz). A header can claim anything; past this the buffer grows as audio
/// actually arrives.
const MAX_PREALLOCATED_FRAMES: usize = 1 << 20;

/// Decodes a whole file held in memory. `extension_hint` ("mp3", ".wav", …) speeds up probing
/// but is only a hint: the content decides.
pub fn decode_bytes(
    bytes: Vec<u8>,
    extension_hint: Option<&str>,
) -> Result<DecodedAudio, AudioError> {
    FileDecoder::from_bytes(bytes, extension_hint)?.decode_all()
}

/// Decodes a whole file from disk, using its extension as the probing hint.
pub fn decode_file(path: &Path) -> Result<DecodedAudio, AudioError> {
    FileDecoder::open(path, None)?.decode_all()
}

/// Decodes a file and resamples it to 16 kHz mono: what Whisper takes.
pub fn load_16k_mono(path: &Path) -> Result<Vec<f32>, AudioError> {
    let decoded = decode_file(path)?;
    resample::resample_all(&decoded.samples, decoded.sample_rate)
}

/// Wraps symphonia's error with context into ours.
fn undecodable(context: &str, e: impl std::fmt::Display) -> AudioError {
    AudioError::Undecodable {
        reason: format!("{context}: {e}"),
    }
}

/// An audio file opened for decoding in pieces: [`read`](Self::read) appends the next packets'
/// mono samples at the file's own rate, [`finish`](Self::finish) says whether the whole was
/// sound. Memory stays at one packet plus what the caller keeps.
pub struct FileDecoder {
    format: Box<dyn FormatReader>,
    track: TrackDecoder,
    /// Frames the header declares, when the file's size can hold them (see
    /// [`declared_frames`](Self::declared_frames)).
    declared_frames: Option<u64>,
    /// Set once the last packet was read.
    ended: bool,
}

impl std::fmt::Debug for FileDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDecoder")
            .field("sample_rate", &self.track.sample_rate)
            .field("frames", &self.track.frames)
            .field("declared_frames", &self.declared_frames)
            .finish()
    }
}

impl FileDecoder {
    /// Opens a file on disk. `extension_hint` speeds up probing (the path's own extension when
    /// `None`); the content decides.
    pub fn open(path: &Path, extension_hint: Option<&str>) -> Result<Self, AudioError> {
        let file = File::open(path).map_err(|source| AudioError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if let Ok(meta) = file.metadata() {
            if meta.is_dir() {
                return Err(AudioError::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::other("it is a directory, not a file"),
                });
            }
            if meta.len() == 0 {
                return Err(AudioError::EmptyAudio);
            }
        }
        let hint = extension_hint.or_else(|| path.extension().and_then(|e| e.to_str()));
        Self::from_source(Box::new(file), hint)
    }

    /// Opens a file held in memory.
    pub fn from_bytes(bytes: Vec<u8>, extension_hint: Option<&str>) -> Result<Self, AudioError> {
        if bytes.is_empty() {
            return Err(AudioError::EmptyAudio);
        }
        Self::from_source(Box::new(Cursor::new(bytes)), extension_hint)
    }

    fn from_source(
        source: Box<dyn MediaSource>,
        extension_hint: Option<&str>,
    ) -> Result<Self, AudioError> {
        let byte_len = source.byte_len();
        let format = probe(source, extension_hint)?;
        let (track, declared) = TrackDecoder::open(format.as_ref())?;
        let declared_frames = declared.filter(|d| d.plausible(byte_len)).map(|d| d.frames);
        Ok(FileDecoder {
            format,
            track,
            declared_frames,
            ended: false,
        })
    }

    /// The file's sample rate in Hz; `None` until known (from the header, or else the first
    /// decoded packet).
    pub fn sample_rate(&self) -> Option<u32> {
        (self.track.sample_rate > 0).then_some(self.track.sample_rate)
    }

    /// The length the header declares, in frames, when it has one and the file is big enough
    /// to hold it. Only a hint: a header can lie either way; [`frames`](Self::frames) counts
    /// what was actually decoded. Never allocate from it.
    pub fn declared_frames(&self) -> Option<u64> {
        self.declared_frames
    }

    /// Frames decoded so far.
    pub fn frames(&self) -> u64 {
        self.track.frames
    }

    /// Decodes packets until at least `min_frames` mono samples were appended to `out`, or the
    /// file ends; false once it has ended (with nothing, or the last samples, appended).
    pub fn read(&mut self, out: &mut Vec<f32>, min_frames: usize) -> Result<bool, AudioError> {
        let start = out.len();
        while !self.ended && out.len() - start < min_frames.max(1) {
            if !self.track.next(self.format.as_mut(), out)? {
                self.ended = true;
            }
        }
        Ok(!self.ended)
    }

    /// Checks the whole decode once [`read`](Self::read) said the file ended: an error when
    /// too many packets were damaged, nothing usable came out, or the rate was never stated.
    pub fn finish(&self) -> Result<(), AudioError> {
        self.track.check()
    }

    /// Decodes the rest of the file into memory.
    pub fn decode_all(mut self) -> Result<DecodedAudio, AudioError> {
        let reserve = self
            .declared_frames
            .map_or(0, |n| (n as usize).min(MAX_PREALLOCATED_FRAMES));
        let mut samples = Vec::with_capacity(reserve);
        while self.read(&mut samples, usize::MAX)? {}
        self.finish()?;
        let sample_rate = self.track.sample_rate;
        Ok(DecodedAudio {
            duration_s: seconds(samples.len() as u64, sample_rate),
            samples,
            sample_rate,
        })
    }
}

/// Finds the container format (the content decides; the extension is a hint).
fn probe(
    source: Box<dyn MediaSource>,
    extension_hint: Option<&str>,
) -> Result<Box<dyn FormatReader>, AudioError> {
    let mut hint = Hint::new();
    if let Some(ext) = extension_hint {
        let ext = ext.trim().trim_start_matches('.').to_ascii_lowercase();
        if !ext.is_empty() {
            hint.with_extension(&ext);
        }
    }
    let mss = MediaSourceStream::new(source, Default::default());
    symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match &e {
            SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                undecodable("the file ends before its headers do (truncated?)", e)
            }
            _ => undecodable("not a recognised audio file", e),
        })
}

/// The length a track's header declares.
#[derive(Debug, Clone, Copy)]
struct Declared {
    frames: u64,
    /// Bytes one frame takes when the codec is uncompressed PCM (WAV), else `None`.
    pcm_frame_bytes: Option<u64>,
}

impl Declared {
    /// False when the claim cannot be true: uncompressed audio longer than the file's bytes
    /// hold. (A WAV written by a recorder that never fixed up its header claims ~2³² bytes.)
    fn plausible(&self, byte_len: Option<u64>) -> bool {
        match (self.pcm_frame_bytes, byte_len) {
            (Some(per_frame), Some(len)) => self.frames.saturating_mul(per_frame) <= len,
            _ => true,
        }
    }
}

/// The default audio track's decoder and what it has decoded so far.
struct TrackDecoder {
    track_id: u32,
    decoder: Box<dyn AudioDecoder>,
    /// The track's rate; 0 until known (from the codec parameters or the first buffer).
    sample_rate: u32,
    /// Mono frames decoded so far.
    frames: u64,
    /// The header states a length. Without one (a WAV whose recorder never wrote its size) the
    /// file's end is the audio's end, not a sign of truncation.
    length_known: bool,
    /// Scratch buffer for one decoded packet, interleaved.
    interleaved: Vec<f32>,
    packets: usize,
    bad_packets: usize,
    last_bad: Option<String>,
}

impl TrackDecoder {
    /// Picks the default audio track and makes its decoder; also returns the length its
    /// header declares, if any.
    fn open(format: &dyn FormatReader) -> Result<(Self, Option<Declared>), AudioError> {
        let track =
            format
                .default_track(TrackType::Audio)
                .ok_or_else(|| AudioError::Undecodable {
                    reason: "the file has no audio track".into(),
                })?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| AudioError::Undecodable {
                reason: "the audio track has no codec parameters".into(),
            })?;
        let declared = track.num_frames.map(|frames| Declared {
            frames,
            pcm_frame_bytes: params.bits_per_coded_sample.map(|bits| {
                let channels = params.channels.as_ref().map_or(1, |c| c.count().max(1));
                (u64::from(bits).div_ceil(8) * channels as u64).max(1)
            }),
        });
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(|e| undecodable("unsupported audio codec", e))?;
        let track = TrackDecoder {
            track_id: track.id,
            decoder,
            sample_rate: params.sample_rate.unwrap_or(0),
            frames: 0,
            length_known: declared.is_some(),
            interleaved: Vec::new(),
            packets: 0,
            bad_packets: 0,
            last_bad: None,
        };
        Ok((track, declared))
    }

    /// Decodes the track's next packet into `out`; false at the end of the file (or of its
    /// first chained stream).
    fn next(
        &mut self,
        format: &mut dyn FormatReader,
        out: &mut Vec<f32>,
    ) -> Result<bool, AudioError> {
        loop {
            let packet = match format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(false),
                // A chained Ogg stream changed its track list: what we have is the first stream.
                Err(SymError::ResetRequired) => return Ok(false),
                Err(SymError::IoError(e))
                    if e.kind() == std::io::ErrorKind::UnexpectedEof && !self.length_known =>
                {
                    tracing::debug!(
                        frames = self.frames,
                        "no declared length: the file's end ends the audio"
                    );
                    return Ok(false);
                }
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(undecodable(
                        &format!(
                            "the file ends early (truncated?) after {:.2} s of audio",
                            seconds(self.frames, self.sample_rate)
                        ),
                        e,
                    ));
                }
                Err(e) => {
                    return Err(undecodable(
                        &format!(
                            "the file is damaged after {:.2} s of audio",
                            seconds(self.frames, self.sample_rate)
                        ),
                        e,
                    ));
                }
            };
            if packet.track_id == self.track_id {
                self.decode_packet(&packet, out)?;
                return Ok(true);
            }
        }
    }

    /// Decodes one packet into `out`; a damaged packet is counted and skipped.
    fn decode_packet(&mut self, packet: &Packet, out: &mut Vec<f32>) -> Result<(), AudioError> {
        self.packets += 1;
        match self.decoder.decode(packet) {
            Ok(buf) => {
                let spec = buf.spec();
                let channels = spec.channels().count().max(1);
                if self.sample_rate == 0 {
                    self.sample_rate = spec.rate();
                } else if spec.rate() != self.sample_rate {
                    return Err(AudioError::Undecodable {
                        reason: format!(
                            "the sample rate changes mid-file ({} Hz, then {} Hz)",
                            self.sample_rate,
                            spec.rate()
                        ),
                    });
                }
                buf.copy_to_vec_interleaved(&mut self.interleaved);
                let before = out.len();
                push_mono(&self.interleaved, channels, out);
                self.frames += (out.len() - before) as u64;
            }
            Err(e @ (SymError::DecodeError(_) | SymError::IoError(_))) => {
                self.bad_packets += 1;
                tracing::debug!(error = %e, packet = self.packets, "skipping an undecodable packet");
                self.last_bad = Some(e.to_string());
            }
            Err(e) => return Err(undecodable("the audio could not be decoded", e)),
        }
        Ok(())
    }

    /// An error unless the decode as a whole is usable: too many damaged packets, nothing
    /// usable, or no sample rate.
    fn check(&self) -> Result<(), AudioError> {
        let (packets, bad_packets) = (self.packets, self.bad_packets);
        if bad_packets > 0 {
            let share = bad_packets as f64 / packets as f64;
            if bad_packets == packets || (share > MAX_BAD_PACKET_SHARE && bad_packets > 2) {
                return Err(AudioError::Undecodable {
                    reason: format!(
                        "{bad_packets} of {packets} audio packets are damaged (last error: {})",
                        self.last_bad.as_deref().unwrap_or_default()
                    ),
                });
            }
            tracing::warn!(bad_packets, packets, "skipped damaged audio packets");
        }
        if self.frames == 0 {
            return Err(AudioError::EmptyAudio);
        }
        if self.sample_rate == 0 {
            return Err(AudioError::Undecodable {
                reason: "the file does not state its sample rate".into(),
            });
        }
        Ok(())
    }
}

/// `frames` at `rate` in seconds (0 while the rate is unknown).
pub fn seconds(frames: u64, rate: u32) -> f64 {
    if rate == 0 {
        0.0
    } else {
        frames as f64 / f64::from(rate)
    }
}

/// Averages interleaved frames into mono, replacing non-finite values (float WAVs can hold
/// them) with silence and clamping to `[-1, 1]`.
fn push_mono(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    let clean = |v: f32| {
        if v.is_finite() {
            v.clamp(-1.0, 1.0)
        } else {
            0.0
        }
    };
    if channels == 1 {
        out.extend(interleaved.iter().map(|&v| clean(v)));
    } else {
        let scale = 1.0 / channels as f32;
        out.extend(
            interleaved
                .chunks_exact(channels)
                .map(|frame| frame.iter().map(|&v| clean(v)).sum::<f32>() * scale),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::PI;
    use std::path::PathBuf;
    use std::process::Command;

    /// A scratch directory unique to one test, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir()
                .join(format!("sori-decode-{name}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        fn path(&self, file: &str) -> PathBuf {
            self.0.join(file)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A minimal RIFF/WAVE writer: 16-bit PCM, interleaved.
    fn wav_s16(rate: u32, channels: u16, interleaved: &[i16]) -> Vec<u8> {
        crate::audio::wav::wav_s16le(rate, channels, interleaved, None)
    }

    fn tone_s16(rate: u32, freq: f32, seconds: f32, amp: f32) -> Vec<i16> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .map(|i| (amp * 32767.0 * (2.0 * PI * freq * i as f32 / rate as f32).sin()) as i16)
            .collect()
    }

    fn zero_crossings(x: &[f32]) -> usize {
        x.windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count()
    }

    /// Formats `sox` can write here; fails loudly when sox or a format is missing.
    fn require_sox(formats: &[&str]) {
        let hint = "install it with: apt-get install sox libsox-fmt-mp3";
        let out = Command::new("sox")
            .arg("-h")
            .output()
            .unwrap_or_else(|e| panic!("these tests need `sox` ({e}); {hint}"));
        let help = String::from_utf8_lossy(&out.stdout);
        let line = help
            .lines()
            .find(|l| l.starts_with("AUDIO FILE FORMATS:"))
            .unwrap_or_else(|| panic!("`sox -h` lists no file formats; {hint}"));
        let have: Vec<&str> = line.split_whitespace().collect();
        for f in formats {
            assert!(
                have.contains(f),
                "sox cannot write .{f} files on this machine; {hint}"
            );
        }
    }

    /// Makes `file` in `dir` with sox: `sox -n -r RATE -c CH file synth SECS sine FREQ`.
    fn sox_sine(
        dir: &TempDir,
        file: &str,
        rate: u32,
        channels: u16,
        secs: f32,
        freq: f32,
    ) -> PathBuf {
        let path = dir.path(file);
        let status = Command::new("sox")
            .args(["-n", "-r", &rate.to_string(), "-c", &channels.to_string()])
            .arg(&path)
            .args(["synth", &secs.to_string(), "sine", &freq.to_string()])
            .status()
            .expect("run sox");
        assert!(status.success(), "sox failed to write {file}");
        path
    }

    #[test]
    fn wav_mono_roundtrip() {
        let pcm = tone_s16(16_000, 440.0, 0.5, 0.5);
        let d = decode_bytes(wav_s16(16_000, 1, &pcm), Some("wav")).unwrap();
        assert_eq!(d.sample_rate, 16_000);
        assert_eq!(d.samples.len(), pcm.len());
        assert!((d.duration_s - 0.5).abs() < 1e-9);
        for (a, b) in d.samples.iter().zip(&pcm) {
            assert!((a - f32::from(*b) / 32768.0).abs() < 1e-6);
        }
    }

    #[test]
    fn wav_stereo_is_downmixed() {
        // Left +0.5, right -0.25 → mono 0.125.
        let frames: Vec<i16> = (0..1000).flat_map(|_| [16384i16, -8192]).collect();
        let d = decode_bytes(wav_s16(8_000, 2, &frames), None).unwrap();
        assert_eq!(d.samples.len(), 1000);
        assert!(d.samples.iter().all(|&s| (s - 0.125).abs() < 1e-6));
    }

    #[test]
    fn wav_without_hint_and_with_wrong_hint() {
        let pcm = tone_s16(22_050, 300.0, 0.2, 0.3);
        let bytes = wav_s16(22_050, 1, &pcm);
        assert_eq!(
            decode_bytes(bytes.clone(), None).unwrap().samples.len(),
            pcm.len()
        );
        assert_eq!(
            decode_bytes(bytes, Some(".MP3")).unwrap().samples.len(),
            pcm.len()
        );
    }

    #[test]
    fn empty_inputs() {
        assert_eq!(
            decode_bytes(vec![], None).unwrap_err().code(),
            "empty_audio"
        );
        let e = decode_bytes(wav_s16(16_000, 1, &[]), Some("wav")).unwrap_err();
        assert!(
            matches!(e.code(), "empty_audio" | "undecodable_audio"),
            "{e}"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut x: u32 = 12345;
        let garbage: Vec<u8> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for hint in [None, Some("wav"), Some("mp3"), Some("flac"), Some("ogg")] {
            let e = decode_bytes(garbage.clone(), hint).unwrap_err();
            assert_eq!(e.code(), "undecodable_audio", "{hint:?}: {e}");
            assert!(e.to_string().contains("accepted formats"), "{e}");
        }
        let e = decode_bytes(b"hello, this is plain text, not audio".to_vec(), None).unwrap_err();
        assert_eq!(e.code(), "undecodable_audio");
    }

    #[test]
    fn truncated_wav_header_is_an_error() {
        let bytes = wav_s16(16_000, 1, &tone_s16(16_000, 440.0, 0.1, 0.5));
        for cut in [4, 12, 30, 43] {
            let e = decode_bytes(bytes[..cut].to_vec(), Some("wav")).unwrap_err();
            assert_eq!(e.code(), "undecodable_audio", "cut at {cut}: {e}");
        }
    }

    #[test]
    fn missing_file_directory_and_empty_file() {
        let e = decode_file(Path::new("/nonexistent/sori/none.wav")).unwrap_err();
        assert_eq!(e.code(), "unreadable_file");
        assert!(e.to_string().contains("/nonexistent/sori/none.wav"), "{e}");
        let dir = TempDir::new("paths");
        let e = decode_file(&dir.0).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        let empty = dir.path("empty.wav");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(decode_file(&empty).unwrap_err().code(), "empty_audio");
        let wav = dir.path("tone.wav");
        std::fs::write(&wav, wav_s16(48_000, 1, &tone_s16(48_000, 440.0, 0.5, 0.5))).unwrap();
        assert_eq!(load_16k_mono(&wav).unwrap().len(), 8_000);
    }

    #[test]
    fn sox_formats_decode_with_right_rate_length_and_pitch() {
        require_sox(&["flac", "ogg", "mp3", "wav"]);
        let dir = TempDir::new("formats");
        for (file, rate, channels) in [
            ("t.flac", 44_100, 2),
            ("t.ogg", 44_100, 2),
            ("t.mp3", 44_100, 2),
            ("t.wav", 48_000, 2),
            ("m.mp3", 16_000, 1),
            ("m.flac", 8_000, 1),
        ] {
            let path = sox_sine(&dir, file, rate, channels, 1.0, 440.0);
            let d = decode_file(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(d.sample_rate, rate, "{file}");
            // MP3 adds encoder delay/padding unless gapless info is honoured: allow 0.1 s.
            assert!(
                (d.duration_s - 1.0).abs() < 0.1,
                "{file}: {} s",
                d.duration_s
            );
            let peak = d.samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(peak > 0.5 && peak <= 1.0, "{file}: peak {peak}");

            let mono16 = load_16k_mono(&path).unwrap();
            assert!(
                mono16.len().abs_diff(16_000) < 1_600,
                "{file}: {}",
                mono16.len()
            );
            let middle = &mono16[3_200..12_800];
            let zc = zero_crossings(middle) as f64 * 16_000.0 / middle.len() as f64;
            assert!((zc - 880.0).abs() < 20.0, "{file}: {zc} crossings/s");
        }
    }

    #[test]
    fn truncated_and_corrupted_files_are_errors_not_panics() {
        require_sox(&["flac", "ogg", "mp3", "wav"]);
        let dir = TempDir::new("broken");
        for file in ["t.flac", "t.ogg", "t.mp3", "t.wav"] {
            let path = sox_sine(&dir, file, 44_100, 2, 2.0, 440.0);
            let full = std::fs::read(&path).unwrap();
            // Cut inside the header: never decodable.
            let e =
                decode_bytes(full[..full.len().min(20)].to_vec(), Some(&file[2..])).unwrap_err();
            assert_eq!(e.code(), "undecodable_audio", "{file} header cut: {e}");
            // Cut in the middle of the audio: WAV, FLAC and Ogg know their length, so the early
            // end is reported (saying it looks truncated). MP3 has no length to check: a cut MP3
            // is a valid, shorter stream.
            match decode_bytes(full[..full.len() * 3 / 4].to_vec(), Some(&file[2..])) {
                Ok(d) if file == "t.mp3" => {
                    assert!(
                        d.duration_s > 1.0 && d.duration_s < 1.8,
                        "{} s",
                        d.duration_s
                    )
                }
                Ok(d) => panic!("{file} cut short decoded as {} s", d.duration_s),
                Err(e) => {
                    assert_eq!(e.code(), "undecodable_audio", "{file}: {e}");
                    assert!(e.to_string().contains("truncated"), "{file}: {e}");
                }
            }
            // Scribble over the middle: an error or a (damaged) decode, never a panic.
            let mut scribbled = full.clone();
            let mid = scribbled.len() / 2;
            let end = (mid + 2000).min(scribbled.len());
            for (i, b) in scribbled[mid..end].iter_mut().enumerate() {
                *b = (i * 37 % 251) as u8;
            }
            let _ = decode_bytes(scribbled, Some(&file[2..]));
        }
    }
}
