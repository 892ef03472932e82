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
//!    a row. [`HallucinationFilter::apply`] first tries [`HallucinationFilter::strip_repetition`]
//!    and only drops when nothing substantial survives the cut.
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

/// The built-in pattern list, compiled in. Users extend it with `extra_patterns_file`.
pub const BUILTIN_PATTERNS: &str = include_str!("hallucinations.txt");

/// `*` in a pattern matches at most this many normalised characters (a name plus "기자").
pub const MAX_WILDCARD_CHARS: usize = 6;

/// Text with less weight than this is "not substantial": a Hangul/CJK/kana character weighs 2,
/// any other letter or digit 1 (so: under 3 syllables, or under 6 Latin letters).
pub const MIN_SUBSTANTIAL_WEIGHT: usize = 6;

/// How far below `logprob_threshold` `avg_logprob` must be for the LowLogprob rule.
pub const LOGPROB_HARD_MARGIN: f32 = 1.0;

/// Longest repeated unit looked for, in words (word loops) and in characters (loops in
/// unspaced text such as "감사합니다감사합니다…").
const MAX_UNIT_WORDS: usize = 12;
const MAX_UNIT_CHARS: usize = 20;

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

/// One compiled pattern: normalised literal parts separated by bounded wildcards.
#[derive(Debug, Clone)]
struct Pattern {
    /// The line as written, reported in [`DropReason::Pattern`].
    raw: String,
    /// Normalised parts; more than one means `*` between them.
    parts: Vec<Vec<char>>,
    /// Total characters in `parts`, for longest-first ordering.
    len: usize,
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

    /// The first loop in `text`: word/phrase loops first, then character loops inside a word.
    fn find_loop(&self, text: &str) -> Option<LoopCut> {
        let min_reps = self.cfg.max_repeats.max(1) + 1;
        word_loop(text, min_reps).or_else(|| char_loop(text, min_reps))
    }
}

/// Where a loop is and how to cut it: keep `text[..keep_end]`, resume at `text[resume..]`.
#[derive(Debug, Clone, Copy)]
struct LoopCut {
    /// End (byte) of the first occurrence of the repeated unit.
    keep_end: usize,
    /// Start (byte) of what follows the loop (and any partial repeat).
    resume: usize,
    /// Whether the unit was words (rejoin with a space) or characters inside a word.
    word_level: bool,
}

/// A whitespace-separated word: byte span plus normalised form.
struct Word {
    start: usize,
    end: usize,
    norm: String,
}

fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, ch) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (ch.is_whitespace(), start) {
            (true, Some(s)) => {
                let norm = normalize(&text[s..i]);
                if !norm.is_empty() {
                    out.push(Word {
                        start: s,
                        end: i,
                        norm,
                    });
                }
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    out
}

/// A unit of 1..=MAX_UNIT_WORDS words repeated at least `min_reps` times in a row.
fn word_loop(text: &str, min_reps: usize) -> Option<LoopCut> {
    let w = words(text);
    let n = w.len();
    for i in 0..n {
        for k in 1..=MAX_UNIT_WORDS.min((n - i) / min_reps) {
            let same = |a: usize, b: usize| (0..k).all(|j| w[a + j].norm == w[b + j].norm);
            let mut reps = 1;
            while i + (reps + 1) * k <= n && same(i, i + reps * k) {
                reps += 1;
            }
            if reps < min_reps {
                continue;
            }
            // Swallow a trailing partial repeat ("… the end the end the").
            let mut j = i + reps * k;
            let partial = (0..k)
                .take_while(|&m| j + m < n && w[j + m].norm == w[i + m].norm)
                .count();
            if partial > 0 && partial < k && j + partial == n {
                j = n;
            }
            return Some(LoopCut {
                keep_end: w[i + k - 1].end,
                resume: if j < n { w[j].start } else { text.len() },
                word_level: true,
            });
        }
    }
    None
}

/// Inside one word (unspaced CJK/Hangul text), a unit of 1..=MAX_UNIT_CHARS characters with at
/// least one letter (digit runs such as "1000000" are numbers, not loops) repeated at least
/// `min_reps` times in a row.
fn char_loop(text: &str, min_reps: usize) -> Option<LoopCut> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let byte_at = |idx: usize| chars.get(idx).map_or(text.len(), |c| c.0);
    for i in 0..n {
        if chars[i].1.is_whitespace() {
            continue;
        }
        for k in 1..=MAX_UNIT_CHARS.min((n - i) / min_reps) {
            let unit = &chars[i..i + k];
            if unit.iter().any(|c| c.1.is_whitespace()) {
                break;
            }
            if !unit.iter().any(|c| c.1.is_alphabetic()) {
                continue;
            }
            let same = |a: usize, b: usize| (0..k).all(|j| chars[a + j].1 == chars[b + j].1);
            let mut reps = 1;
            while i + (reps + 1) * k <= n && same(i, i + reps * k) {
                reps += 1;
            }
            if reps < min_reps {
                continue;
            }
            let mut j = i + reps * k;
            let partial = (0..k)
                .take_while(|&m| j + m < n && chars[j + m].1 == chars[i + m].1)
                .count();
            let word_ends = |idx: usize| idx >= n || chars[idx].1.is_whitespace();
            if partial > 0 && partial < k && word_ends(j + partial) {
                j += partial;
            }
            return Some(LoopCut {
                keep_end: byte_at(i + k),
                resume: byte_at(j),
                word_level: false,
            });
        }
    }
    None
}

/// Finds `parts` (with gaps of at most [`MAX_WILDCARD_CHARS`] between consecutive parts) in
/// `text`; returns the matched span `[start, end)`. Gaps are matched lazily (shortest first).
fn find_pattern(text: &[char], parts: &[Vec<char>]) -> Option<(usize, usize)> {
    let first = parts.first()?;
    let mut from = 0;
    while let Some(s) = find_from(text, first, from, text.len()) {
        if let Some(e) = match_rest(text, s + first.len(), &parts[1..]) {
            return Some((s, e));
        }
        from = s + 1;
    }
    None
}

fn match_rest(text: &[char], at: usize, parts: &[Vec<char>]) -> Option<usize> {
    let Some(part) = parts.first() else {
        return Some(at);
    };
    for gap in 0..=MAX_WILDCARD_CHARS {
        let s = at + gap;
        if s + part.len() > text.len() {
            break;
        }
        if text[s..s + part.len()] == part[..]
            && let Some(e) = match_rest(text, s + part.len(), &parts[1..])
        {
            return Some(e);
        }
    }
    None
}

/// First index `>= from` where `needle` occurs, with the match ending at or before `limit`.
fn find_from(hay: &[char], needle: &[char], from: usize, limit: usize) -> Option<usize> {
    if needle.is_empty() || needle.len() > limit {
        return None;
    }
    (from..=limit - needle.len()).find(|&s| hay[s..s + needle.len()] == *needle)
}

fn parse_patterns(text: &str, file: &str) -> Result<Vec<Pattern>, FilterError> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let line = line.trim().trim_start_matches('\u{feff}');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: &'static str| FilterError::BadPattern {
            file: file.to_string(),
            line: idx + 1,
            text: line.to_string(),
            reason,
        };
        let parts: Vec<Vec<char>> = line
            .split('*')
            .map(|p| normalize(p).chars().collect())
            .collect();
        if parts.iter().all(|p: &Vec<char>| p.is_empty()) {
            return Err(bad("has no letters or digits"));
        }
        if parts.first().is_some_and(|p| p.is_empty()) || parts.last().is_some_and(|p| p.is_empty())
        {
            return Err(bad("starts or ends with `*`"));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad("has `*` with nothing between"));
        }
        let len = parts.iter().map(Vec::len).sum();
        out.push(Pattern {
            raw: line.to_string(),
            parts,
            len,
        });
    }
    Ok(out)
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

/// Normalises text for comparison: fullwidth ASCII folded (`Ａ` → `a`, `！` → dropped),
/// lowercased, and every character that is not a letter or a digit removed. Hangul, CJK and
/// kana are letters and stay as they are.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        let ch = match ch {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(ch as u32 - 0xFEE0).unwrap_or(ch),
            _ => ch,
        };
        if ch.is_alphanumeric() {
            out.extend(ch.to_lowercase());
        }
    }
    out
}

/// Removes bracketed non-speech annotations — `[Music]`, `(박수)`, `（笑）`, `【音楽】`,
/// `{noise}`, `*applause*` — and music notes. Unbalanced brackets are left alone.
fn strip_annotations(text: &str) -> Cow<'_, str> {
    const PAIRS: [(char, char); 6] = [
        ('[', ']'),
        ('(', ')'),
        ('{', '}'),
        ('（', '）'),
        ('【', '】'),
        ('［', '］'),
    ];
    if !text
        .chars()
        .any(|c| c == '*' || c == '♪' || c == '♫' || PAIRS.iter().any(|p| p.0 == c))
    {
        return Cow::Borrowed(text);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let close = PAIRS
            .iter()
            .find(|p| p.0 == c)
            .map(|p| p.1)
            .or((c == '*').then_some('*'));
        if let Some(close) = close
            && let Some(off) = chars[i + 1..].iter().position(|&x| x == close)
            && off <= 40
        {
            i += off + 2;
            out.push(' ');
            continue;
        }
        if c != '♪' && c != '♫' {
            out.push(c);
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// Weight of normalised text: Hangul/CJK/kana count 2, other letters and digits 1.
fn weight(norm: &str) -> usize {
    norm.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum()
}

/// Hangul, CJK ideographs and kana: scripts where one character carries a syllable or a word.
fn is_wide(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF      // Hangul Jamo
        | 0x3040..=0x30FF    // Hiragana, Katakana
        | 0x3130..=0x318F    // Hangul Compatibility Jamo
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xAC00..=0xD7AF    // Hangul Syllables
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0xFF66..=0xFF9F    // Halfwidth Katakana
        | 0x20000..=0x2FFFF) // CJK Extensions B–F
}

/// openai-whisper's compression ratio: UTF-8 length over zlib-compressed length.
///
/// Computed with a real DEFLATE (level 6, zlib's default) through the `zip` crate's in-memory
/// compressor (flate2 on the zlib-rs backend), plus zlib's 6 bytes of header and checksum, so
/// the figures are Python's `len(b) / len(zlib.compress(b))` to within a byte or two of
/// compressed size (checked in the tests against values from CPython's zlib). It costs a few
/// tens of microseconds per segment — nothing next to a Whisper decode. Empty text gives 0.
pub fn compression_ratio(text: &str) -> f32 {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return 0.0;
    }
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(6));
    match zip::PreparedZipFile::from_data("t", options, bytes) {
        Ok(prepared) => bytes.len() as f32 / (prepared.compressed_size() + 6) as f32,
        Err(e) => {
            tracing::warn!(error = %e, "deflate failed; compression ratio check skipped");
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> HallucinationFilter {
        HallucinationFilter::new(&FilterConfig::default()).unwrap()
    }

    fn speech(text: &str) -> Candidate<'_> {
        Candidate {
            text,
            avg_logprob: -0.3,
            no_speech_prob: 0.05,
            audio_rms: 0.08,
            duration_s: 3.0,
        }
    }

    fn verdict(f: &HallucinationFilter, text: &str) -> Result<String, DropReason> {
        f.apply(&speech(text)).map(|t| t.into_owned())
    }

    const JFK: &str = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.";

    #[test]
    fn builtin_list_is_large_and_valid() {
        let f = filter();
        assert!(f.pattern_count() >= 37, "{} patterns", f.pattern_count());
        // Spacing variants collapse into one pattern.
        let lines = BUILTIN_PATTERNS
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .count();
        assert!(f.pattern_count() < lines);
    }

    #[test]
    fn normalisation_is_korean_aware() {
        assert_eq!(
            normalize("시청해 주셔서, 감사합니다…!"),
            "시청해주셔서감사합니다"
        );
        assert_eq!(normalize("ＭＢＣ　뉴스。"), "mbc뉴스");
        assert_eq!(normalize("Thanks for WATCHING!!"), "thanksforwatching");
        assert_eq!(
            normalize("ご視聴ありがとうございました。"),
            "ご視聴ありがとうございました"
        );
        assert_eq!(normalize("♪ ... ♪"), "");
    }

    #[test]
    fn korean_youtube_outros_are_dropped() {
        let f = filter();
        for t in [
            "시청해주셔서 감사합니다.",
            "시청해 주셔서 감사합니다!",
            "  시청해주셔서   감사합니다…  ",
            "끝까지 시청해주셔서 감사합니다",
            "구독과 좋아요 부탁드립니다",
            "구독, 좋아요, 알림설정 부탁드립니다.",
            "다음 영상에서 만나요~",
            "네. 시청해주셔서 감사합니다",
        ] {
            assert!(
                matches!(verdict(&f, t), Err(DropReason::Pattern(_))),
                "{t}: {:?}",
                verdict(&f, t)
            );
        }
    }

    #[test]
    fn broadcast_and_subtitle_credits_are_dropped() {
        let f = filter();
        for t in [
            "MBC 뉴스 이덕영입니다.",
            "MBC 뉴스 김성현 기자입니다",
            "KBS 뉴스",
            "SBS 뉴스 홍길동입니다",
            "이 시각 세계였습니다.",
            "자막 제공",
            "한글자막 by 한효정",
        ] {
            let v = verdict(&f, t);
            assert!(matches!(v, Err(DropReason::Pattern(_))), "{t}: {v:?}");
        }
    }

    #[test]
    fn english_japanese_chinese_outros_are_dropped() {
        let f = filter();
        for t in [
            "Thank you for watching!",
            "Thanks for watching.",
            "THANK YOU SO MUCH FOR WATCHING",
            "Please subscribe to my channel.",
            "Don't forget to like and subscribe!",
            "Subtitles by the Amara.org community",
            "ご視聴ありがとうございました",
            "チャンネル登録よろしくお願いします！",
            "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
            "字幕由Amara.org社区提供",
            "谢谢观看。",
        ] {
            let v = verdict(&f, t);
            assert!(matches!(v, Err(DropReason::Pattern(_))), "{t}: {v:?}");
        }
        let Err(DropReason::Pattern(p)) = verdict(&f, "Thanks for watching!") else {
            panic!()
        };
        assert_eq!(p, "Thanks for watching");
    }

    #[test]
    fn real_sentences_are_kept() {
        let f = filter();
        for t in [
            "오늘 회의에 참석해 주셔서 감사합니다 다음 안건은 예산입니다",
            "감사합니다.",
            "네 감사합니다",
            "Thank you.",
            "Thank you, that's all for today's meeting.",
            "MBC 뉴스에서 보도한 사고 현장은 지금 통제 중입니다",
            "Thanks for watching the east gate camera while I was out.",
            "자막 제공 기능을 켜 주시고 회의를 시작하겠습니다",
            "강남대로 양방향 정체가 심합니다",
            "1000000원 입금 확인했습니다",
            JFK,
        ] {
            assert_eq!(verdict(&f, t).as_deref(), Ok(t), "{t}");
        }
    }

    #[test]
    fn empty_and_annotations_are_dropped() {
        let f = filter();
        for t in [
            "",
            "   ",
            "...",
            "…",
            "[Music]",
            "(박수)",
            "♪♪",
            "♪ ~ ♪",
            "[음악] (웃음)",
            "*applause*",
            "（笑）",
            "【音楽】",
            "-",
        ] {
            assert_eq!(verdict(&f, t), Err(DropReason::Empty), "{t:?}");
        }
        // An annotation next to speech keeps the speech, without the annotation.
        assert!(f.check(&speech("(웃음) 네 맞습니다")).is_ok());
        assert_eq!(verdict(&f, "(웃음) 네 맞습니다").unwrap(), "네 맞습니다");
        assert_eq!(
            verdict(&f, "What your country can do for you. (buzzer) (buzzer)").unwrap(),
            "What your country can do for you."
        );
    }

    #[test]
    fn whisper_score_rules() {
        let f = filter();
        let base = speech("오늘 날씨가 좋습니다");
        assert!(f.check(&base).is_ok());
        let c = Candidate {
            no_speech_prob: 0.9,
            avg_logprob: -1.2,
            ..base
        };
        assert_eq!(f.check(&c), Err(DropReason::NoSpeech));
        // High no-speech probability alone is not enough (openai-whisper semantics).
        let c = Candidate {
            no_speech_prob: 0.9,
            avg_logprob: -0.2,
            ..base
        };
        assert!(f.check(&c).is_ok());
        let c = Candidate {
            avg_logprob: -2.5,
            ..base
        };
        assert_eq!(f.check(&c), Err(DropReason::LowLogprob));
        let c = Candidate {
            audio_rms: 0.001,
            ..base
        };
        assert_eq!(f.check(&c), Err(DropReason::Silence));
        // Unknown scores skip their rules.
        let c = Candidate::text_only("오늘 날씨가 좋습니다");
        assert!(f.check(&c).is_ok());
    }

    #[test]
    fn english_loops_are_cut_or_dropped() {
        let f = filter();
        assert_eq!(
            verdict(&f, "I think the the the the the the the problem is here"),
            Ok("I think the problem is here".into())
        );
        assert_eq!(
            f.strip_repetition("We should go home. We should go home. We should go home. We should go home. We should go home. We should go"),
            Some("We should go home.".into())
        );
        assert_eq!(
            verdict(&f, "the the the the the the the the"),
            Err(DropReason::Repetition)
        );
        // Four in a row is still speech ("no no no no").
        assert_eq!(f.strip_repetition("no no no no, stop"), None);
        assert!(f.check(&speech("the the the the the the")).is_err());
    }

    #[test]
    fn korean_loops_are_cut_or_dropped() {
        let f = filter();
        assert_eq!(
            verdict(
                &f,
                "차량 정체가 계속되고 있습니다 감사합니다 감사합니다 감사합니다 감사합니다 감사합니다 감사합니다"
            ),
            Ok("차량 정체가 계속되고 있습니다 감사합니다".into())
        );
        assert_eq!(
            f.strip_repetition(
                "사고 현장입니다. 감사합니다감사합니다감사합니다감사합니다감사합니다감사합니다"
            ),
            Some("사고 현장입니다. 감사합니다".into())
        );
        assert_eq!(
            verdict(&f, "네 네 네 네 네 네 네"),
            Err(DropReason::Repetition)
        );
        assert_eq!(verdict(&f, "네네네네네네네네"), Err(DropReason::Repetition));
        // Phrase loop with punctuation differences still counts.
        assert_eq!(
            f.strip_repetition(
                "좌회전 하세요. 좌회전 하세요, 좌회전 하세요 좌회전 하세요. 좌회전 하세요!"
            ),
            Some("좌회전 하세요.".into())
        );
        assert_eq!(f.strip_repetition("네 네 네 알겠습니다"), None);
        // Numbers are not loops.
        assert_eq!(f.strip_repetition("금액은 1000000원 입니다"), None);
        // Chinese unspaced loop.
        assert_eq!(
            f.strip_repetition("谢谢谢谢谢谢谢谢谢谢谢谢"),
            Some("谢".into())
        );
    }

    #[test]
    fn compression_ratio_matches_python_zlib() {
        // (text, len(zlib.compress(text.encode()))) from CPython 3.11's zlib, level 6.
        let cases: [(&str, usize); 8] = [
            (JFK, 79),
            (
                "오늘 회의에 참석해 주셔서 감사합니다 다음 안건은 예산입니다",
                89,
            ),
            (&"감사합니다. ".repeat(10), 30),
            (
                "the the the the the the the the the the the the the the the the",
                15,
            ),
            (&"I'm going to go to the store. ".repeat(6), 38),
            ("시청해주셔서 감사합니다.", 46),
            ("Thank you.", 18),
            (
                "서울 강남구 테헤란로 일대 교통 정체가 심합니다. 우회 도로를 이용해 주시기 바랍니다. 현재 사고 처리 중입니다.",
                137,
            ),
        ];
        for (text, zlen) in cases {
            let want = text.len() as f32 / zlen as f32;
            let got = compression_ratio(text);
            assert!(
                (got - want).abs() / want < 0.05,
                "{text:?}: {got} vs zlib {want}"
            );
        }
        assert_eq!(compression_ratio(""), 0.0);
        assert!(compression_ratio(JFK) < 2.4);
        assert!(compression_ratio(&"I'm going to go to the store. ".repeat(6)) > 2.4);
    }

    #[test]
    fn compression_rule_catches_loops_that_are_not_consecutive() {
        let f = filter();
        // Repeats with variations: no exact run of 5, but it compresses like a loop.
        let t = "그래서 우리는 그래서 우리는 다시 그래서 우리는 그래서 우리는 다시 그래서 우리는 그래서 우리는 다시 그래서 우리는 그래서 우리는 다시";
        assert_eq!(f.strip_repetition(t), None);
        assert_eq!(f.check(&speech(t)), Err(DropReason::CompressionRatio));
    }

    #[test]
    fn user_file_adds_patterns() {
        let dir = std::env::temp_dir().join(format!("sori-filter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("extra.txt");
        std::fs::write(
            &path,
            "# site-specific\n\n교통정보센터 안내 방송입니다\nACME * Radio\n",
        )
        .unwrap();
        let cfg = FilterConfig {
            extra_patterns_file: Some(path.clone()),
            ..FilterConfig::default()
        };
        let f = HallucinationFilter::new(&cfg).unwrap();
        assert_eq!(f.pattern_count(), filter().pattern_count() + 2);
        assert_eq!(
            verdict(&f, "교통정보센터 안내방송입니다."),
            Err(DropReason::Pattern("교통정보센터 안내 방송입니다".into()))
        );
        assert!(matches!(
            verdict(&f, "ACME FM Radio!"),
            Err(DropReason::Pattern(_))
        ));
        assert!(verdict(&filter(), "교통정보센터 안내방송입니다.").is_ok());

        std::fs::write(&path, "ok line\n* bad\n").unwrap();
        let e = HallucinationFilter::new(&cfg).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        std::fs::write(&path, "!!!\n").unwrap();
        assert!(HallucinationFilter::new(&cfg).is_err());
        std::fs::remove_dir_all(&dir).unwrap();

        let e = HallucinationFilter::new(&cfg).unwrap_err();
        assert!(matches!(e, FilterError::Io { .. }), "{e}");
        assert!(e.to_string().contains("extra.txt"), "{e}");
    }

    #[test]
    fn config_is_validated() {
        let bad = FilterConfig {
            no_speech_threshold: 1.5,
            ..FilterConfig::default()
        };
        let e = HallucinationFilter::new(&bad).unwrap_err();
        assert!(e.to_string().contains("no_speech_threshold"), "{e}");
        let bad = FilterConfig {
            max_repeats: 0,
            ..FilterConfig::default()
        };
        assert!(HallucinationFilter::new(&bad).is_err());
    }

    #[test]
    fn filter_is_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<HallucinationFilter>();
    }

    #[test]
    fn labels_are_stable() {
        let all = [
            DropReason::Empty,
            DropReason::Pattern("x".into()),
            DropReason::NoSpeech,
            DropReason::LowLogprob,
            DropReason::CompressionRatio,
            DropReason::Repetition,
            DropReason::Silence,
        ];
        let labels: Vec<&str> = all.iter().map(DropReason::as_str).collect();
        assert_eq!(labels, DropReason::LABELS);
        assert!(
            DropReason::Pattern("Thanks for watching".into())
                .to_string()
                .contains("Thanks for watching")
        );
    }
}
