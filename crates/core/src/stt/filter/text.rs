//! Text helpers of the filter: normalisation, annotation stripping, weight and compression ratio.

use std::borrow::Cow;

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
pub(super) fn strip_annotations(text: &str) -> Cow<'_, str> {
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
pub(super) fn weight(norm: &str) -> usize {
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
