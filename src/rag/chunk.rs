//! Cuts documents into overlapping chunks of about `max_chars` characters on sentence
//! boundaries. Korean prose often has sentence endings (…습니다, …요) without a following
//! period in transcripts and notes, so those count as boundaries too when a sentence would
//! otherwise be too long.

/// How documents are cut.
#[derive(Debug, Clone, Copy)]
pub struct ChunkOptions {
    /// Upper bound of a chunk, in characters (not bytes: Hangul is 3 bytes a syllable).
    pub max_chars: usize,
    /// Characters of the previous chunk's last sentences repeated at the start of the next,
    /// so a fact split across the boundary is still found whole in one chunk.
    pub overlap_chars: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self {
            max_chars: 1000,
            overlap_chars: 150,
        }
    }
}

/// Splits `text` into chunks. Whitespace is normalised (runs become one space, paragraphs
/// end sentences); empty input gives no chunks.
pub fn chunk_text(text: &str, opts: ChunkOptions) -> Vec<String> {
    let max = opts.max_chars.max(50);
    let overlap = opts.overlap_chars.min(max / 2);
    let mut pieces = Vec::new();
    for sentence in sentences(text) {
        split_long(&sentence, max, &mut pieces);
    }

    let mut chunks = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut len = 0;
    for piece in pieces {
        let piece_len = piece.chars().count();
        if len > 0 && len + 1 + piece_len > max {
            chunks.push(current.join(" "));
            // The next chunk starts with the overlap, and always gets a new piece after it.
            current = tail_within(&current, overlap, max.saturating_sub(piece_len + 1));
            len = joined_len(&current);
        }
        len += piece_len + usize::from(len > 0);
        current.push(piece);
    }
    if !current.is_empty() {
        chunks.push(current.join(" "));
    }
    chunks
}

fn joined_len(parts: &[String]) -> usize {
    parts.iter().map(|p| p.chars().count()).sum::<usize>() + parts.len().saturating_sub(1)
}

/// The last sentences of `parts` that fit in `overlap` characters (and leave room: `room`).
fn tail_within(parts: &[String], overlap: usize, room: usize) -> Vec<String> {
    let limit = overlap.min(room);
    let mut tail = Vec::new();
    let mut len = 0;
    for part in parts.iter().rev() {
        let n = part.chars().count() + usize::from(len > 0);
        if len + n > limit {
            break;
        }
        len += n;
        tail.push(part.clone());
    }
    tail.reverse();
    tail
}

/// Sentences: text up to `.`, `?`, `!` (and their full-width forms, `。`) followed by
/// whitespace or the end, and paragraph breaks. "3.5" or "e.g.x" stay whole.
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n").flat_map(|p| p.split("\r\n\r\n")) {
        let chars: Vec<char> = paragraph.chars().collect();
        let mut current = String::new();
        for (i, &c) in chars.iter().enumerate() {
            current.push(c);
            let ends = matches!(c, '.' | '?' | '!' | '。' | '？' | '！')
                && chars.get(i + 1).is_none_or(|n| n.is_whitespace());
            if ends {
                push_sentence(&mut out, &current);
                current.clear();
            }
        }
        push_sentence(&mut out, &current);
    }
    out
}

fn push_sentence(out: &mut Vec<String>, raw: &str) {
    let sentence = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if !sentence.is_empty() {
        out.push(sentence);
    }
}

/// Korean sentence endings that end a sentence even without punctuation.
const KOREAN_ENDINGS: &[&str] = &[
    "니다", "어요", "아요", "세요", "해요", "이다", "한다", "했다",
];

/// Pushes `sentence` whole when it fits; otherwise cuts it at Korean sentence endings, then
/// at spaces, then (a run without spaces) every `max` characters.
fn split_long(sentence: &str, max: usize, out: &mut Vec<String>) {
    if sentence.chars().count() <= max {
        out.push(sentence.to_owned());
        return;
    }
    let words: Vec<&str> = sentence.split(' ').collect();
    let mut current = String::new();
    let mut current_len = 0;
    for (i, word) in words.iter().enumerate() {
        let word_len = word.chars().count();
        if word_len > max {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
                current_len = 0;
            }
            let chars: Vec<char> = word.chars().collect();
            out.extend(chars.chunks(max).map(|c| c.iter().collect::<String>()));
            continue;
        }
        if current_len > 0 && current_len + 1 + word_len > max {
            out.push(std::mem::take(&mut current));
            current_len = 0;
        }
        if current_len > 0 {
            current.push(' ');
            current_len += 1;
        }
        current.push_str(word);
        current_len += word_len;
        // A Korean ending closes the piece once it is at least half full, so pieces are
        // sentences where the text allows it.
        let korean_end = KOREAN_ENDINGS.iter().any(|e| word.ends_with(e));
        if korean_end && current_len >= max / 2 && i + 1 < words.len() {
            out.push(std::mem::take(&mut current));
            current_len = 0;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(max_chars: usize, overlap_chars: usize) -> ChunkOptions {
        ChunkOptions {
            max_chars,
            overlap_chars,
        }
    }

    #[test]
    fn short_text_is_one_chunk_and_empty_text_none() {
        assert_eq!(
            chunk_text("  서울역 앞   교통 통제.\n\n끝. ", opts(1000, 150)),
            ["서울역 앞 교통 통제. 끝."]
        );
        assert!(chunk_text(" \n\n ", ChunkOptions::default()).is_empty());
    }

    #[test]
    fn chunks_end_on_sentences_stay_within_the_limit_and_overlap() {
        let sentences: Vec<String> = (0..40)
            .map(|i| format!("경부고속도로 {i}번 구간에서 차량 정체가 이어지고 있습니다."))
            .collect();
        let text = sentences.join(" ");
        let chunks = chunk_text(&text, opts(200, 60));
        assert!(chunks.len() > 5);
        for chunk in &chunks {
            assert!(chunk.chars().count() <= 200, "{chunk}");
            assert!(chunk.ends_with("습니다."), "ends mid-sentence: {chunk}");
        }
        // Each chunk after the first starts with the previous one's last sentence.
        for pair in chunks.windows(2) {
            let last = pair[0].rsplit(". ").next().unwrap();
            assert!(pair[1].starts_with(last), "{} / {}", pair[0], pair[1]);
        }
        // Every sentence is somewhere.
        for s in &sentences {
            assert!(chunks.iter().any(|c| c.contains(s.as_str())), "{s} lost");
        }
    }

    #[test]
    fn decimals_do_not_end_sentences() {
        assert_eq!(
            sentences("수위가 3.5 m 올랐다. 다음."),
            ["수위가 3.5 m 올랐다.", "다음."]
        );
    }

    #[test]
    fn long_korean_without_periods_is_cut_at_endings_then_spaces() {
        let text = "오늘 오전 회의에서 예산안을 검토했습니다 다음 주에는 현장 점검을 진행합니다 "
            .repeat(10);
        let chunks = chunk_text(&text, opts(120, 0));
        assert!(chunks.len() >= 5);
        for chunk in &chunks {
            assert!(chunk.chars().count() <= 120);
            assert!(chunk.ends_with("니다"), "{chunk}");
        }
        // A run with no spaces at all is still cut.
        let run = "가".repeat(250);
        let chunks = chunk_text(&run, opts(100, 0));
        assert_eq!(
            chunks.iter().map(|c| c.chars().count()).collect::<Vec<_>>(),
            [100, 100, 50]
        );
    }
}
