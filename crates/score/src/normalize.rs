//! Transcript normalisation before scoring: what must not count as an error (case, punctuation,
//! spacing, how a number is written, KsponSpeech's annotation marks) is taken out of both the
//! reference and the hypothesis, the same way. The rules are listed in docs/accuracy.md; every
//! one has a unit test below.
//!
//! Steps, in order:
//! 1. KsponSpeech marks ([`strip_kspon_marks`]): dual spellings `(A)/(B)` keep `A` (the
//!    orthographic side); noise tags `b/ n/ o/ l/ u/` are removed.
//! 2. Unicode NFKC (full-width letters and digits become ASCII, compatibility forms fold,
//!    Hangul is composed), then lowercase.
//! 3. Thousands separators between digits go ("1,000" = "1000"); a decimal point between
//!    digits stays; an apostrophe inside a word goes ("don't" = "dont"); `%` becomes a word
//!    ("percent", or "퍼센트" in Korean text); every other character that is not a letter or a
//!    digit becomes a space.
//! 4. Korean text only ([`Profile::Korean`]): numbers written in digits are read out in Hangul
//!    ([`crate::korean::verbalise_numbers`]), so "35" and "삼십오" compare equal.
//! 5. Words are split on whitespace. CER joins them (Korean spacing never counts).

use unicode_normalization::UnicodeNormalization;

use crate::korean;

/// Which language's rules apply; chosen from the reference's script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Any text without Hangul: scored by WER.
    English,
    /// Text with at least one Hangul letter: scored by CER, numbers read out in Hangul.
    Korean,
}

impl Profile {
    /// Korean when `reference` contains Hangul, English otherwise.
    pub fn of(reference: &str) -> Self {
        if has_hangul(reference) {
            Profile::Korean
        } else {
            Profile::English
        }
    }
}

/// Hangul syllables or jamo (conjoining or compatibility) anywhere in `text`.
pub fn has_hangul(text: &str) -> bool {
    text.chars().any(|c| {
        matches!(c, '\u{AC00}'..='\u{D7A3}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}')
    })
}

/// The normalised words of `text` under `profile`.
pub fn words(text: &str, profile: Profile) -> Vec<String> {
    let text = strip_kspon_marks(text);
    let text: String = text.nfkc().collect::<String>().to_lowercase();
    let text = clean_punctuation(&text, profile);
    let text = match profile {
        Profile::Korean => korean::verbalise_numbers(&text),
        Profile::English => text,
    };
    text.split_whitespace().map(str::to_owned).collect()
}

/// The characters CER compares: the normalised words joined without spaces.
pub fn chars_of(words: &[String]) -> Vec<char> {
    words.iter().flat_map(|w| w.chars()).collect()
}

/// KsponSpeech (AIHub) transcript marks. Its raw transcripts carry dual spellings
/// `(orthographic)/(pronounced)` — e.g. `(1시)/(한 시)`, `(KTX)/(케이티엑스)` — of which the
/// first, orthographic side is kept (it is what a written transcript, and Whisper, writes);
/// and noise tags (`b/` breath, `l/` laughter, `n/` noise, `o/` other speaker, `u/`
/// unintelligible), which are removed. A tag is one of those letters at the start of a word,
/// followed by `/`. The other marks (`word/` for fillers, `*` unclear, `+` repetition) are
/// punctuation and become spaces in the next step, keeping the spoken word.
pub fn strip_kspon_marks(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '('
            && let Some((first, next)) = dual_spelling(&chars, i)
        {
            out.push_str(&first);
            i = next;
            continue;
        }
        let at_word_start = i == 0 || !chars[i - 1].is_alphanumeric();
        if at_word_start
            && matches!(c, 'b' | 'l' | 'n' | 'o' | 'u')
            && chars.get(i + 1) == Some(&'/')
        {
            out.push(' ');
            i += 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// `(A)/(B)` starting at `open`: `A` and the index after the closing `)` of `B`.
fn dual_spelling(chars: &[char], open: usize) -> Option<(String, usize)> {
    let close_a = open + 1 + chars[open + 1..].iter().position(|&c| c == ')')?;
    if chars.get(close_a + 1) != Some(&'/') || chars.get(close_a + 2) != Some(&'(') {
        return None;
    }
    let open_b = close_a + 2;
    let close_b = open_b + 1 + chars[open_b + 1..].iter().position(|&c| c == ')')?;
    let first: String = chars[open + 1..close_a].iter().collect();
    if first.contains('(') {
        return None;
    }
    Some((first, close_b + 1))
}

/// Step 3: separators, apostrophes, `%`, and every other non-alphanumeric character.
fn clean_punctuation(text: &str, profile: Profile) -> String {
    let chars: Vec<char> = text.chars().collect();
    let digit = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
    let letter = |i: usize| chars.get(i).is_some_and(|c| c.is_alphabetic());
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        if c.is_alphanumeric() {
            out.push(c);
            continue;
        }
        let after_digit = i > 0 && digit(i - 1);
        match c {
            // "1,000" and "1,000,000": a comma followed by exactly three digits.
            ',' if after_digit && digit(i + 1) && digit(i + 2) && digit(i + 3) && !digit(i + 4) => {
            }
            '.' if after_digit && digit(i + 1) => out.push('.'),
            '\'' | '\u{2019}' | '\u{02BC}' if i > 0 && letter(i - 1) && letter(i + 1) => {}
            '%' => out.push_str(match profile {
                Profile::English => " percent ",
                Profile::Korean => " 퍼센트 ",
            }),
            _ => out.push(' '),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn en(text: &str) -> String {
        words(text, Profile::English).join(" ")
    }

    fn ko(text: &str) -> String {
        words(text, Profile::Korean).join(" ")
    }

    #[test]
    fn profile_follows_the_script_of_the_reference() {
        assert_eq!(Profile::of("안녕하세요"), Profile::Korean);
        assert_eq!(Profile::of("KTX 타요"), Profile::Korean);
        assert_eq!(Profile::of("ㅋㅋ"), Profile::Korean);
        assert_eq!(Profile::of("hello 123"), Profile::English);
        assert_eq!(Profile::of(""), Profile::English);
    }

    #[test]
    fn case_and_punctuation_do_not_count() {
        assert_eq!(
            en("And so, my fellow Americans!"),
            "and so my fellow americans"
        );
        assert_eq!(
            en("well-known \"quotes\" (and) [brackets]"),
            "well known quotes and brackets"
        );
        assert_eq!(ko("안녕하세요? 반갑습니다."), "안녕하세요 반갑습니다");
    }

    #[test]
    fn unicode_is_nfkc_normalised() {
        // Full-width letters and digits, and a decomposed Hangul syllable (ᄒ + ᅡ + ᆫ).
        assert_eq!(en("ＡＢＣ １２３"), "abc 123");
        assert_eq!(ko("\u{1112}\u{1161}\u{11AB}국"), "한국");
        assert_eq!(
            ko("한국"),
            ko("\u{1112}\u{1161}\u{11AB}\u{1100}\u{116E}\u{11A8}")
        );
    }

    #[test]
    fn apostrophes_inside_words_join() {
        assert_eq!(en("Don't stop, it's John’s"), "dont stop its johns");
        assert_eq!(en("'quoted'"), "quoted");
    }

    #[test]
    fn thousands_separators_and_decimals() {
        assert_eq!(en("1,000 and 1000"), "1000 and 1000");
        assert_eq!(en("1,000,000"), "1000000");
        assert_eq!(en("3.5 kg"), "3.5 kg");
        // A comma in a list of numbers is not a separator.
        assert_eq!(en("1, 2, 3"), "1 2 3");
        assert_eq!(en("12,34"), "12 34");
        assert_eq!(en("end."), "end");
    }

    #[test]
    fn percent_becomes_a_word() {
        assert_eq!(en("50% off"), "50 percent off");
        assert_eq!(ko("50%"), ko("오십 퍼센트"));
    }

    #[test]
    fn kspon_dual_spelling_keeps_the_orthographic_side() {
        assert_eq!(strip_kspon_marks("(1시)/(한 시)에 만나"), "1시에 만나");
        assert_eq!(strip_kspon_marks("(KTX)/(케이티엑스) 타고"), "KTX 타고");
        // Plain parentheses are not a dual spelling: the text stays.
        assert_eq!(strip_kspon_marks("(웃음) 네"), "(웃음) 네");
        assert_eq!(strip_kspon_marks("(a)/b"), "(a)/b");
        assert_eq!(strip_kspon_marks("unclosed (a"), "unclosed (a");
    }

    #[test]
    fn kspon_noise_tags_are_removed() {
        assert_eq!(ko("o/ 그래서 b/ 어/ 갔지 n/"), "그래서 어 갔지");
        assert_eq!(ko("l/ 아 u/ 뭐야"), "아 뭐야");
        // Only at the start of a word: "and/or" keeps both words.
        assert_eq!(en("and/or"), "and or");
        assert_eq!(en("b/ hello"), "hello");
    }

    #[test]
    fn kspon_fillers_unclear_and_repetition_marks_keep_the_word() {
        assert_eq!(ko("음/ 그+ 그거 *모르겠어"), "음 그 그거 모르겠어");
    }

    #[test]
    fn a_full_kspon_line() {
        let raw = "o/ b/ 그래서 (3학년)/(삼 학년) 때 n/ 음/ 그+ 그거 했잖아 *";
        assert_eq!(ko(raw), "그래서 삼학년 때 음 그 그거 했잖아");
        assert_eq!(
            chars_of(&words(raw, Profile::Korean)),
            chars_of(&words(
                "그래서 삼 학년 때 음 그 그거 했잖아.",
                Profile::Korean
            ))
        );
    }
}
