//! Hallucination filter: decides, per decoded Whisper segment, keep or drop (with a reason).
//!
//! Whisper invents text when it hears silence, noise or music ("시청해주셔서 감사합니다",
//! "Thanks for watching!") and sometimes loops ("the the the the …"). The rules, in the order
//! they are applied (the first that fires is the reported [`DropReason`]):
//!
//! 1. **Empty** — nothing but punctuation, whitespace or bracketed non-speech annotations
//!    ("[Music]", "(박수)", "♪♪", "*applause*").
//! 2. **Silence** — the segment's audio is near-silent (`audio_rms < min_rms`): whatever Whisper
//!    wrote, nobody spoke. An unknown RMS (`NaN`) skips this rule; `min_rms = 0` disables it.
//! 3. **Pattern** — after removing every known hallucination phrase (built-in
//!    `hallucinations.txt` plus the user's file; see that file for the matching semantics),
//!    nothing substantial is left.
//! 4. **NoSpeech** — openai-whisper's silence rule: `no_speech_prob > no_speech_threshold`
//!    **and** `avg_logprob < logprob_threshold`.
//! 5. **Repetition** — a word, phrase or character run repeated more than `max_repeats` times in
//!    a row, or a phrase of five words or more written twice in a row (Whisper doubling a short
//!    window's sentence). [`HallucinationFilter::apply`] first tries
//!    [`HallucinationFilter::strip_repetition`] and only drops when nothing substantial survives
//!    the cut.
//! 6. **CompressionRatio** — openai-whisper's loop detector: the text's zlib compression ratio is
//!    above `compression_ratio_threshold` (2.4): highly repetitive text.
//! 7. **LowLogprob** — `avg_logprob` more than [`LOGPROB_HARD_MARGIN`] below `logprob_threshold`.
//!    openai-whisper would retry such a segment at a higher temperature; text that stays this
//!    unlikely is noise decoded as words.
//!
//! Normalisation ([`normalize`]) is Korean-aware: Hangul, CJK and kana are kept as they are;
//! case is folded, fullwidth forms are folded to ASCII, and everything that is not a letter or a
//! digit (whitespace, "…", "。", "！", "♪", …) is dropped, so spacing variants compare equal.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod loops;
mod patterns;
mod text;

use loops::{LoopCut, char_loop, word_loop};
use patterns::{Pattern, find_pattern, parse_patterns};
pub use text::{compression_ratio, normalize};
use text::{strip_annotations, weight};

/// The built-in pattern list, compiled in. Users extend it with `extra_patterns_file`.
pub const BUILTIN_PATTERNS: &str = include_str!("../hallucinations.txt");

/// `*` in a pattern matches at most this many normalised characters (a name plus "기자").
pub const MAX_WILDCARD_CHARS: usize = 6;

/// Text with less weight than this is "not substantial": a Hangul/CJK/kana character weighs 2,
/// any other letter or digit 1 (so: under 3 syllables, or under 6 Latin letters).
pub const MIN_SUBSTANTIAL_WEIGHT: usize = 6;

/// How far below `logprob_threshold` `avg_logprob` must be for the LowLogprob rule.
pub const LOGPROB_HARD_MARGIN: f32 = 1.0;

/// Thresholds of the filter. The defaults are openai-whisper's where it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// Above this `no_speech_prob` (and with `avg_logprob` below `logprob_threshold`) the
    /// segment is silence. openai-whisper: 0.6.
    pub no_speech_threshold: f32,
    /// Average token log-probability under which a segment is doubtful. openai-whisper: -1.0.
    pub logprob_threshold: f32,
    /// zlib compression ratio above which text is a loop. openai-whisper: 2.4.
    pub compression_ratio_threshold: f32,
    /// A unit repeated more than this many times in a row is a loop (default 4: the fifth
    /// "the" in a row, or a phrase said five times, is cut).
    pub max_repeats: usize,
    /// RMS of the segment's audio (samples in [-1, 1]) under which it is silence. 0.005 is
    /// about -46 dBFS: room tone, far below quiet speech (~-35 dBFS). 0 disables the rule.
    pub min_rms: f32,
    /// A file of extra patterns, same format as the built-in `hallucinations.txt`.
    pub extra_patterns_file: Option<PathBuf>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            no_speech_threshold: 0.6,
            logprob_threshold: -1.0,
            compression_ratio_threshold: 2.4,
            max_repeats: 4,
            min_rms: 0.005,
            extra_patterns_file: None,
        }
    }
}

/// One decoded segment, as the filter sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<'a> {
    /// The segment's text.
    pub text: &'a str,
    /// Mean log-probability of its tokens (Whisper's `avg_logprob`); `NaN` if unknown.
    pub avg_logprob: f32,
    /// Whisper's probability that the window holds no speech; `NaN` if unknown.
    pub no_speech_prob: f32,
    /// RMS of the audio the segment was decoded from; `NaN` if unknown (skips the Silence rule).
    pub audio_rms: f32,
    /// Length of that audio in seconds (for logs and callers' own rate checks).
    pub duration_s: f32,
}

impl<'a> Candidate<'a> {
    /// A candidate with only text known: neutral scores and unknown RMS, so only the text rules
    /// (empty, pattern, repetition, compression) apply.
    pub fn text_only(text: &'a str) -> Self {
        Candidate {
            text,
            avg_logprob: 0.0,
            no_speech_prob: 0.0,
            audio_rms: f32::NAN,
            duration_s: 0.0,
        }
    }
}

/// Why a segment was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// Only punctuation, whitespace or non-speech annotations.
    Empty,
    /// Nothing substantial left after removing this known hallucination pattern (as written in
    /// its file).
    Pattern(String),
    /// Whisper says no speech (high `no_speech_prob` with low `avg_logprob`).
    NoSpeech,
    /// Token log-probability far below the threshold.
    LowLogprob,
    /// Text compresses too well: a loop.
    CompressionRatio,
    /// A repetition loop that cutting could not salvage.
    Repetition,
    /// The audio was near-silent.
    Silence,
}

impl DropReason {
    /// Every label [`as_str`](Self::as_str) returns, for registering metrics up front.
    pub const LABELS: [&'static str; 7] = [
        "empty",
        "pattern",
        "no_speech",
        "low_logprob",
        "compression_ratio",
        "repetition",
        "silence",
    ];

    /// A stable label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            DropReason::Empty => "empty",
            DropReason::Pattern(_) => "pattern",
            DropReason::NoSpeech => "no_speech",
            DropReason::LowLogprob => "low_logprob",
            DropReason::CompressionRatio => "compression_ratio",
            DropReason::Repetition => "repetition",
            DropReason::Silence => "silence",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Empty => f.write_str("no speech in the text (empty or only annotations)"),
            DropReason::Pattern(p) => write!(f, "known Whisper hallucination \"{p}\""),
            DropReason::NoSpeech => f.write_str("Whisper detected no speech"),
            DropReason::LowLogprob => f.write_str("decoder confidence far too low"),
            DropReason::CompressionRatio => f.write_str("text too repetitive (compression ratio)"),
            DropReason::Repetition => f.write_str("repetition loop"),
            DropReason::Silence => f.write_str("audio is near-silent"),
        }
    }
}

/// What can go wrong building the filter.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The user's pattern file could not be read.
    #[error(
        "could not read hallucination patterns file {}: {source}; check filter.extra_patterns_file",
        path.display()
    )]
    Io {
        /// The configured path.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A pattern line that cannot be used.
    #[error(
        "hallucination pattern on line {line} of {file} ({text:?}) {reason}; write a literal phrase, optionally with `*` between two parts"
    )]
    BadPattern {
        /// "built-in hallucinations.txt" or the user's path.
        file: String,
        /// 1-based line number.
        line: usize,
        /// The line as written.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A threshold outside its meaningful range.
    #[error("filter setting {field} = {value} is out of range; use {accepted}")]
    Config {
        /// The setting's name.
        field: &'static str,
        /// Its value, as text.
        value: String,
        /// What is accepted.
        accepted: &'static str,
    },
}

/// The filter: thresholds plus the compiled pattern list. Cheap to share (`Arc`) across sessions.
#[derive(Debug, Clone)]
pub struct HallucinationFilter {
    /// Thresholds, copied from the config.
    cfg: FilterConfig,
    /// Unique patterns, longest first.
    patterns: Vec<Pattern>,
}

impl HallucinationFilter {
    /// Builds the filter from the built-in list and, if configured, the user's pattern file.
    pub fn new(cfg: &FilterConfig) -> Result<Self, FilterError> {
        validate(cfg)?;
        let mut patterns = parse_patterns(BUILTIN_PATTERNS, "built-in hallucinations.txt")?;
        if let Some(path) = &cfg.extra_patterns_file {
            let text = std::fs::read_to_string(path).map_err(|source| FilterError::Io {
                path: path.clone(),
                source,
            })?;
            patterns.extend(parse_patterns(&text, &path.display().to_string())?);
        }
        // Unique by normalised form (spacing variants collapse), longest first.
        let mut seen = std::collections::HashSet::new();
        patterns.retain(|p| seen.insert(p.parts.clone()));
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len));
        Ok(HallucinationFilter {
            cfg: cfg.clone(),
            patterns,
        })
    }

    /// Number of distinct patterns (after normalisation) in use.
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// The thresholds in use.
    pub fn config(&self) -> &FilterConfig {
        &self.cfg
    }

    /// Judges `c.text` as given. `Ok(())` = keep. A text that still contains a repetition loop
    /// is dropped; call [`apply`](Self::apply) to cut loops first.
    pub fn check(&self, c: &Candidate) -> Result<(), DropReason> {
        let speech = strip_annotations(c.text);
        let norm: Vec<char> = normalize(&speech).chars().collect();
        if norm.is_empty() {
            return Err(DropReason::Empty);
        }
        if c.audio_rms.is_finite() && c.audio_rms < self.cfg.min_rms {
            return Err(DropReason::Silence);
        }
        if let Some(p) = self.pattern_hit(&norm) {
            return Err(DropReason::Pattern(p.raw.clone()));
        }
        if c.no_speech_prob > self.cfg.no_speech_threshold
            && c.avg_logprob < self.cfg.logprob_threshold
        {
            return Err(DropReason::NoSpeech);
        }
        if self.find_loop(c.text).is_some() {
            return Err(DropReason::Repetition);
        }
        if compression_ratio(c.text) > self.cfg.compression_ratio_threshold {
            return Err(DropReason::CompressionRatio);
        }
        if c.avg_logprob < self.cfg.logprob_threshold - LOGPROB_HARD_MARGIN {
            return Err(DropReason::LowLogprob);
        }
        Ok(())
    }

    /// Cuts repetition loops, then judges: `Ok(text to emit)` or the reason to drop. The text is
    /// borrowed when nothing was cut. A segment that was little more than a loop ("네 네 네 네
    /// 네 네", "the the the the the") cannot be salvaged and is dropped as `Repetition`.
    pub fn apply<'t>(&self, c: &Candidate<'t>) -> Result<Cow<'t, str>, DropReason> {
        let kept = match self.strip_repetition(c.text) {
            None => {
                self.check(c)?;
                Cow::Borrowed(c.text)
            }
            Some(cut) => {
                if weight(&normalize(&strip_annotations(&cut))) < MIN_SUBSTANTIAL_WEIGHT {
                    return Err(DropReason::Repetition);
                }
                self.check(&Candidate { text: &cut, ..*c })?;
                Cow::Owned(cut)
            }
        };
        // Speech is kept, the "(buzzer)" or "[Music]" beside it is not: it is not what was
        // said, and the keyword model would take it for a noun.
        let stripped = match strip_annotations(&kept) {
            Cow::Borrowed(_) => None,
            Cow::Owned(text) => Some(text.split_whitespace().collect::<Vec<_>>().join(" ")),
        };
        Ok(stripped.map_or(kept, Cow::Owned))
    }

    /// Cuts looping repetitions ("the the the the the …", a phrase said five times, an unspaced
    /// "감사합니다감사합니다…") down to their first occurrence, keeping the text around them and
    /// dropping a trailing partial repeat. `None` when there is no loop.
    pub fn strip_repetition(&self, text: &str) -> Option<String> {
        let mut current = text.to_string();
        let mut changed = false;
        // Each cut removes at least one unit; bound the work on pathological input.
        for _ in 0..32 {
            let Some(cut) = self.find_loop(&current) else {
                break;
            };
            let mut next = String::with_capacity(current.len());
            next.push_str(current[..cut.keep_end].trim_end());
            let rest = current[cut.resume..].trim_start();
            if !rest.is_empty() {
                if cut.word_level {
                    next.push(' ');
                }
                next.push_str(rest);
            }
            current = next;
            changed = true;
        }
        changed.then(|| current.trim().to_string())
    }

    /// The first (longest) pattern that leaves nothing substantial once all patterns are removed.
    fn pattern_hit(&self, norm: &[char]) -> Option<&Pattern> {
        let mut rest = norm.to_vec();
        let mut first: Option<&Pattern> = None;
        for p in &self.patterns {
            let mut hit = false;
            while let Some((s, e)) = find_pattern(&rest, &p.parts) {
                rest.drain(s..e);
                hit = true;
            }
            if hit && first.is_none() {
                first = Some(p);
            }
        }
        let left: String = rest.into_iter().collect();
        match first {
            Some(p) if weight(&left) < MIN_SUBSTANTIAL_WEIGHT => Some(p),
            _ => None,
        }
    }

    /// The first loop in `text`: word/phrase loops first, then character loops inside a word,
    /// then a long phrase said twice in a row (Whisper doubling a short window's text).
    fn find_loop(&self, text: &str) -> Option<LoopCut> {
        let min_reps = self.cfg.max_repeats.max(1) + 1;
        word_loop(text, min_reps, 1)
            .or_else(|| char_loop(text, min_reps))
            .or_else(|| word_loop(text, 2, loops::MIN_DOUBLED_WORDS))
    }
}
fn validate(cfg: &FilterConfig) -> Result<(), FilterError> {
    let check = |field: &'static str, v: f32, ok: bool, accepted: &'static str| {
        if ok && !v.is_nan() {
            Ok(())
        } else {
            Err(FilterError::Config {
                field,
                value: v.to_string(),
                accepted,
            })
        }
    };
    let v = cfg.no_speech_threshold;
    check(
        "no_speech_threshold",
        v,
        (0.0..=1.0).contains(&v),
        "0.0–1.0",
    )?;
    let v = cfg.logprob_threshold;
    check("logprob_threshold", v, v <= 0.0, "a value ≤ 0 (e.g. -1.0)")?;
    let v = cfg.compression_ratio_threshold;
    check(
        "compression_ratio_threshold",
        v,
        v > 0.0,
        "a value > 0 (e.g. 2.4)",
    )?;
    let v = cfg.min_rms;
    check("min_rms", v, (0.0..1.0).contains(&v), "0.0 ≤ min_rms < 1.0")?;
    if cfg.max_repeats == 0 {
        return Err(FilterError::Config {
            field: "max_repeats",
            value: "0".into(),
            accepted: "1 or more (e.g. 4)",
        });
    }
    Ok(())
}
#[cfg(test)]
mod tests;
