//! Transcript writers: a JSONL line per final as it is sent (so a crash loses nothing already
//! sent), and SRT / WebVTT / plain text renderings of a finished transcript.

use std::fs::File;
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

/// Writes one session's transcript under `dir` as `<session>.jsonl`, then `.srt` and `.vtt`.
pub struct TranscriptWriter {
    dir: PathBuf,
    session_id: String,
    jsonl: File,
    cues: Vec<Cue>,
}

impl TranscriptWriter {
    pub fn create(dir: &Path, session_id: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let jsonl = File::create(dir.join(format!("{session_id}.jsonl")))?;
        Ok(Self {
            dir: dir.to_owned(),
            session_id: session_id.to_owned(),
            jsonl,
            cues: Vec::new(),
        })
    }

    /// Appends a final or a keywords event as one JSON line and hands it to the OS at once;
    /// other messages are ignored.
    pub fn record(&mut self, message: &ServerMessage) -> std::io::Result<()> {
        let cue = Cue::from_final(message);
        if cue.is_none() && !matches!(message, ServerMessage::Keywords { .. }) {
            return Ok(());
        }
        let mut line = message.to_json();
        line.push('\n');
        self.jsonl.write_all(line.as_bytes())?;
        self.jsonl.flush()?;
        self.cues.extend(cue);
        Ok(())
    }

    /// Writes the subtitle files and returns every file of this transcript.
    pub fn close(self) -> std::io::Result<Vec<PathBuf>> {
        let base = self.dir.join(&self.session_id);
        let jsonl = base.with_extension("jsonl");
        let srt = base.with_extension("srt");
        let vtt = base.with_extension("vtt");
        std::fs::write(&srt, to_srt(&self.cues))?;
        std::fs::write(&vtt, to_vtt(&self.cues))?;
        Ok(vec![jsonl, srt, vtt])
    }
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

    #[test]
    fn writer_keeps_each_final_on_disk_as_it_is_recorded() {
        let dir = std::env::temp_dir().join(format!("sori-out-{}", std::process::id()));
        let mut w = TranscriptWriter::create(&dir, "s1").unwrap();
        let final_msg = ServerMessage::Final {
            segment_id: 0,
            text: "hello".into(),
            start: 0.0,
            end: 1.0,
            language: "en".into(),
            words: vec![],
            avg_logprob: -0.2,
            no_speech_prob: 0.01,
            speech_final: true,
        };
        w.record(&final_msg).unwrap();
        w.record(&ServerMessage::error("x", "y", false)).unwrap();
        // Readable before close: nothing is held back in a buffer.
        let jsonl = std::fs::read_to_string(dir.join("s1.jsonl")).unwrap();
        assert_eq!(jsonl.lines().count(), 1);
        assert!(jsonl.contains("\"hello\""));
        let files = w.close().unwrap();
        assert_eq!(files.len(), 3);
        assert!(
            std::fs::read_to_string(dir.join("s1.srt"))
                .unwrap()
                .contains("hello")
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
