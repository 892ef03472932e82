//! Hallucination patterns: parsing the pattern files and finding a pattern in normalised text.

use super::text::normalize;
use super::{FilterError, MAX_WILDCARD_CHARS};

/// One compiled pattern: normalised literal parts separated by bounded wildcards.
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    /// The line as written, reported in [`DropReason::Pattern`](super::DropReason::Pattern).
    pub(super) raw: String,
    /// Normalised parts; more than one means `*` between them.
    pub(super) parts: Vec<Vec<char>>,
    /// Total characters in `parts`, for longest-first ordering.
    pub(super) len: usize,
}

/// Finds `parts` (with gaps of at most [`MAX_WILDCARD_CHARS`] between consecutive parts) in
/// `text`; returns the matched span `[start, end)`. Gaps are matched lazily (shortest first).
pub(super) fn find_pattern(text: &[char], parts: &[Vec<char>]) -> Option<(usize, usize)> {
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

pub(super) fn parse_patterns(text: &str, file: &str) -> Result<Vec<Pattern>, FilterError> {
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
