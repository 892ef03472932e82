//! Transcript writers: a JSONL line per final as it is sent (so a crash loses nothing already
//! sent), and SRT / WebVTT / plain text renderings of a finished transcript.
//!
//! Nothing is created before the first final: a session with no speech leaves no files. Each
//! JSONL line is built whole and handed to the OS in one write; a write that fails half-way is
//! cut back, so the file never holds a torn line. [`prune`] deletes old transcripts.

pub mod prune;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::protocol::ServerMessage;

/// The parts of a final segment the subtitle formats need.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

impl Cue {
    pub fn from_final(message: &ServerMessage) -> Option<Self> {
        match message {
            ServerMessage::Final {
                start, end, text, ..
            } => Some(Cue {
                start: *start,
                end: *end,
                text: text.clone(),
            }),
            _ => None,
        }
    }
}

/// Why a transcript (or part of it) could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("cannot create the transcript {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot append to the transcript {}: {source}", path.display())]
    Append {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the subtitles {}: {source}", path.display())]
    Subtitles {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A file lines are appended to, that can be cut back to an earlier length. A real file in
/// the product; a test double in the torn-line tests.
pub trait LineSink {
    /// Writes all of `bytes` at the end, or fails (possibly after writing some of them).
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Cuts the file back to `len` bytes.
    fn truncate_to(&mut self, len: u64) -> std::io::Result<()>;
}

impl LineSink for File {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes)
    }

    fn truncate_to(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
}

/// Whole lines on a [`LineSink`]: a failed write is cut back to the last whole line, or,
/// where even that fails, the next line starts on a new line so it still parses alone.
#[derive(Debug)]
pub struct LineFile<S> {
    sink: S,
    /// Bytes of whole lines in the file.
    len: u64,
    /// A torn line could not be cut off: the next line starts with `\n`.
    torn: bool,
}

impl<S: LineSink> LineFile<S> {
    /// Lines are appended after the `len` bytes already there.
    pub fn new(sink: S, len: u64) -> Self {
        Self {
            sink,
            len,
            torn: false,
        }
    }

    /// Appends `line` (which ends with `\n`) in one write.
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        if self.torn {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(line.as_bytes());
        match self.sink.append(&bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                self.torn = false;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.sink.truncate_to(self.len) {
                    tracing::error!(error = %cut, "a torn transcript line could not be cut off");
                    self.torn = true;
                }
                Err(e)
            }
        }
    }

    pub fn into_sink(self) -> S {
        self.sink
    }
}

/// Writes one session's transcript under `dir` as `<session>.jsonl` (a line per final, per
/// revision and per keywords event), then `.srt` and `.vtt` (with the revised texts) — all of
/// them only once there is a final.
pub struct TranscriptWriter {
    dir: PathBuf,
    session_id: String,
    /// Opened at the first line to write.
    jsonl: Option<LineFile<File>>,
    /// Each segment's cue by segment id (time order), as revised.
    cues: BTreeMap<u64, Cue>,
    finals: bool,
}

impl TranscriptWriter {
    /// A writer that has written nothing yet (no I/O happens here).
    pub fn new(dir: &Path, session_id: &str) -> Self {
        Self {
            dir: dir.to_owned(),
            session_id: session_id.to_owned(),
            jsonl: None,
            cues: BTreeMap::new(),
            finals: false,
        }
    }

    fn path(&self, extension: &str) -> PathBuf {
        self.dir.join(format!("{}.{extension}", self.session_id))
    }

    /// Appends a final, a revision or a keywords event as one JSON line and hands it to the OS
    /// at once; other messages are ignored. The first such event creates the folder and the
    /// file.
    pub fn record(&mut self, message: &ServerMessage) -> Result<(), TranscriptError> {
        // The subtitles hold every final the client got, whether or not its line was saved.
        match message {
            ServerMessage::Final { segment_id, .. } => {
                self.cues
                    .extend(Cue::from_final(message).map(|cue| (*segment_id, cue)));
                self.finals = true;
            }
            ServerMessage::Revision {
                segment_id,
                text,
                start,
                end,
                ..
            } => {
                if text.is_empty() {
                    self.cues.remove(segment_id);
                } else {
                    let cue = Cue {
                        start: *start,
                        end: *end,
                        text: text.clone(),
                    };
                    self.cues.insert(*segment_id, cue);
                }
            }
            ServerMessage::Keywords { .. } => {}
            _ => return Ok(()),
        }
        let path = self.path("jsonl");
        let file = match &mut self.jsonl {
            Some(file) => file,
            None => {
                let opened =
                    open_append(&self.dir, &path).map_err(|source| TranscriptError::Create {
                        path: path.clone(),
                        source,
                    })?;
                self.jsonl.insert(opened)
            }
        };
        let mut line = message.to_json();
        line.push('\n');
        file.write_line(&line)
            .map_err(|source| TranscriptError::Append { path, source })
    }

    /// Whether any final was recorded (and so there is a transcript to finish).
    pub fn has_finals(&self) -> bool {
        self.finals
    }

    /// Writes the subtitle files (again, if called again) and returns every file of this
    /// transcript; a session with no final has none and writes nothing. Keywords recorded
    /// later still go to the JSONL file.
    pub fn finish(&mut self) -> Result<Vec<PathBuf>, TranscriptError> {
        if !self.has_finals() {
            return Ok(Vec::new());
        }
        let mut files = Vec::with_capacity(3);
        if self.jsonl.is_some() {
            files.push(self.path("jsonl"));
        }
        let cues: Vec<Cue> = self.cues.values().cloned().collect();
        let subtitles = [
            (self.path("srt"), to_srt(&cues)),
            (self.path("vtt"), to_vtt(&cues)),
        ];
        for (path, text) in subtitles {
            std::fs::create_dir_all(&self.dir)
                .and_then(|()| std::fs::write(&path, text))
                .map_err(|source| TranscriptError::Subtitles {
                    path: path.clone(),
                    source,
                })?;
            files.push(path);
        }
        Ok(files)
    }
}

impl TranscriptError {
    /// The system's reason, without the server's paths (what a client may be told).
    pub fn reason(&self) -> &std::io::Error {
        match self {
            TranscriptError::Create { source, .. }
            | TranscriptError::Append { source, .. }
            | TranscriptError::Subtitles { source, .. } => source,
        }
    }
}

/// Opens `path` for appending whole lines (creating `dir` and the file).
fn open_append(dir: &Path, path: &Path) -> std::io::Result<LineFile<File>> {
    std::fs::create_dir_all(dir)?;
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let len = file.metadata()?.len();
    Ok(LineFile::new(file, len))
}

pub fn to_srt(cues: &[Cue]) -> String {
    let mut out = String::new();
    for (i, cue) in cues.iter().enumerate() {
        out.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            timestamp(cue.start, ','),
            timestamp(cue.end, ','),
            cue.text.trim()
        ));
    }
    out
}

pub fn to_vtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for cue in cues {
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            timestamp(cue.start, '.'),
            timestamp(cue.end, '.'),
            cue.text.trim()
        ));
    }
    out
}

pub fn to_text(cues: &[Cue]) -> String {
    let mut out = String::new();
    for cue in cues {
        out.push_str(cue.text.trim());
        out.push('\n');
    }
    out
}

/// `HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (WebVTT).
fn timestamp(seconds: f64, separator: char) -> String {
    let total_ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (h, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}{separator}{ms:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cues() -> Vec<Cue> {
        vec![
            Cue {
                start: 0.5,
                end: 3.25,
                text: "안녕하세요".into(),
            },
            Cue {
                start: 3661.0,
                end: 3662.004,
                text: " second ".into(),
            },
        ]
    }

    #[test]
    fn srt_and_vtt_have_their_timestamp_formats() {
        let srt = to_srt(&cues());
        assert!(
            srt.starts_with("1\n00:00:00,500 --> 00:00:03,250\n안녕하세요\n\n2\n"),
            "{srt}"
        );
        assert!(
            srt.contains("01:01:01,000 --> 01:01:02,004\nsecond\n"),
            "{srt}"
        );
        let vtt = to_vtt(&cues());
        assert!(
            vtt.starts_with("WEBVTT\n\n00:00:00.500 --> 00:00:03.250\n"),
            "{vtt}"
        );
        assert_eq!(to_text(&cues()), "안녕하세요\nsecond\n");
    }

    fn a_final(text: &str) -> ServerMessage {
        ServerMessage::Final {
            segment_id: 0,
            text: text.into(),
            start: 0.0,
            end: 1.0,
            language: "en".into(),
            words: vec![],
            avg_logprob: -0.2,
            no_speech_prob: 0.01,
            speech_final: true,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("sori-out-{name}-{}", uuid::Uuid::new_v4().simple()))
    }

    #[test]
    fn writer_keeps_each_final_on_disk_as_it_is_recorded() {
        let dir = scratch("kept");
        let mut w = TranscriptWriter::new(&dir, "s1");
        w.record(&a_final("hello")).unwrap();
        w.record(&ServerMessage::error("x", "y", false)).unwrap();
        // Readable before close: nothing is held back in a buffer.
        let jsonl = std::fs::read_to_string(dir.join("s1.jsonl")).unwrap();
        assert_eq!(jsonl.lines().count(), 1);
        assert!(jsonl.contains("\"hello\""));
        let files = w.finish().unwrap();
        assert_eq!(files.len(), 3);
        assert!(
            std::fs::read_to_string(dir.join("s1.srt"))
                .unwrap()
                .contains("hello")
        );
        std::fs::remove_dir_all(dir).ok();
    }

    fn segment(segment_id: u64, start: f64, text: &str) -> ServerMessage {
        let ServerMessage::Final {
            language,
            words,
            avg_logprob,
            no_speech_prob,
            ..
        } = a_final(text)
        else {
            unreachable!()
        };
        ServerMessage::Revision {
            segment_id,
            text: text.into(),
            start,
            end: start + 1.0,
            language,
            words,
            avg_logprob,
            no_speech_prob,
        }
    }

    #[test]
    fn revisions_are_kept_as_lines_and_the_subtitles_carry_the_revised_text() {
        let dir = scratch("revised");
        let mut w = TranscriptWriter::new(&dir, "s1");
        w.record(&a_final("and so my fellow americans")).unwrap();
        let mut second = a_final("ask not");
        if let ServerMessage::Final {
            segment_id,
            start,
            end,
            ..
        } = &mut second
        {
            (*segment_id, *start, *end) = (1, 2.0, 3.0);
        }
        w.record(&second).unwrap();
        // Segment 1 corrected, segment 0 withdrawn (its words went to a neighbour).
        w.record(&segment(1, 2.0, "ask not what your country"))
            .unwrap();
        w.record(&segment(0, 0.0, "")).unwrap();
        let jsonl = std::fs::read_to_string(dir.join("s1.jsonl")).unwrap();
        assert_eq!(jsonl.lines().count(), 4, "{jsonl}");
        assert_eq!(jsonl.matches("\"type\":\"revision\"").count(), 2, "{jsonl}");
        w.finish().unwrap();
        let srt = std::fs::read_to_string(dir.join("s1.srt")).unwrap();
        assert_eq!(
            srt, "1\n00:00:02,000 --> 00:00:03,000\nask not what your country\n\n",
            "{srt}"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_session_without_a_final_leaves_no_file_not_even_its_folder() {
        let dir = scratch("empty");
        let mut w = TranscriptWriter::new(&dir, "s1");
        w.record(&ServerMessage::error("x", "y", false)).unwrap();
        assert_eq!(w.finish().unwrap(), Vec::<PathBuf>::new());
        assert!(!dir.exists(), "{} was created", dir.display());
    }

    #[test]
    fn a_folder_that_cannot_be_made_is_an_error_naming_the_file() {
        // A path under a regular file: refused for root too.
        let file = scratch("blocker");
        std::fs::write(&file, "not a folder").unwrap();
        let mut w = TranscriptWriter::new(&file.join("outputs"), "s1");
        let err = w.record(&a_final("hello")).unwrap_err();
        assert!(matches!(err, TranscriptError::Create { .. }), "{err}");
        assert!(err.to_string().contains("s1.jsonl"), "{err}");
        assert!(
            w.finish().is_err(),
            "the subtitles cannot be written either"
        );
        std::fs::remove_file(file).ok();
    }

    /// A test double for a disk that fills up: takes `room` more bytes, then fails with
    /// ENOSPC after writing what fitted (a partial write, as a real full disk does).
    struct FullDisk {
        data: Vec<u8>,
        room: usize,
        can_truncate: bool,
    }

    impl LineSink for FullDisk {
        fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            let fits = bytes.len().min(self.room);
            self.data.extend_from_slice(&bytes[..fits]);
            self.room -= fits;
            if fits < bytes.len() {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
            }
            Ok(())
        }

        fn truncate_to(&mut self, len: u64) -> std::io::Result<()> {
            if !self.can_truncate {
                return Err(std::io::Error::from_raw_os_error(5)); // EIO
            }
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    fn lines_of(file: LineFile<FullDisk>) -> Vec<String> {
        String::from_utf8(file.into_sink().data)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_write_that_fails_half_way_leaves_no_torn_line() {
        let disk = FullDisk {
            data: Vec::new(),
            room: 30,
            can_truncate: true,
        };
        let mut file = LineFile::new(disk, 0);
        file.write_line("{\"n\":1}\n").unwrap();
        let err = file.write_line("{\"n\":2,\"text\":\"a long line\"}\n");
        assert!(err.is_err(), "the disk is full");
        file.sink.room = 100; // space was freed
        file.write_line("{\"n\":3}\n").unwrap();
        let lines = lines_of(file);
        assert_eq!(lines, ["{\"n\":1}", "{\"n\":3}"]);
        for line in lines {
            serde_json::from_str::<serde_json::Value>(&line).expect("every line parses");
        }
    }

    #[test]
    fn a_torn_line_that_cannot_be_cut_off_does_not_swallow_the_next_one() {
        let disk = FullDisk {
            data: Vec::new(),
            room: 12,
            can_truncate: false,
        };
        let mut file = LineFile::new(disk, 0);
        file.write_line("{\"n\":1}\n").unwrap();
        assert!(file.write_line("{\"n\":2}\n").is_err());
        file.sink.room = 100;
        file.write_line("{\"n\":3}\n").unwrap();
        let lines = lines_of(file);
        // The fragment stays on a line of its own; the line after it is whole.
        assert_eq!(lines, ["{\"n\":1}", "{\"n\"", "{\"n\":3}"]);
    }
}
