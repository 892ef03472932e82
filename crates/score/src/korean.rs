//! Numbers in Korean text, read out in Hangul so that "35" and "삼십오", "1000" and "천",
//! "2026년" and "이천이십육 년" compare equal.
//!
//! The direction is deliberate: digits → Hangul, never Hangul → digits. Hangul numerals are
//! also everyday words (이 "this", 사이 "between", 천사 "angel", 이만 "this much", 조사
//! "survey", 구조 "structure"), so turning them into digits would corrupt normal text; and
//! a Hangul reading is ambiguous in reverse (이십일 is 21 or 20일). Reading digits out is
//! deterministic and never touches a Hangul word.
//!
//! Rules (docs/accuracy.md lists them for users):
//! - A run of ASCII digits, optionally with a decimal part (`3.5`), is read as a Sino-Korean
//!   number: 2026 → 이천이십육, 10000 → 만, 100000000 → 일억; 1 before 십/백/천 is silent
//!   (1000 → 천, 110 → 백십), as Koreans say it.
//! - Directly before a native-Korean counter (optionally after spaces) — 시 (1–12 only), 시간,
//!   명, 개, 살, 마리, 사람, 가지, 달 — a number from 1 to 99 is read in native Korean
//!   (3시 → 세시, 2명 → 두명, 20살 → 스무살, 12시 → 열두시). 개월 and 달러 stay Sino
//!   (3개월 → 삼개월, 5달러 → 오달러).
//! - A 1 written right before a Hangul unit is silent: 1만 → 만, 1천 → 천 (as said aloud).
//! - Digit strings that are codes rather than quantities — a leading zero ("010") or more
//!   than 16 digits — are read digit by digit, 0 as 공 ("010" → 공일공); a lone 0 is 영.
//! - A decimal part is read digit by digit after 점 (3.5 → 삼점오).
//!
//! Not done: native Korean numerals written in Hangul are left as they are (하나, 스물); a
//! counter that can be read both ways (번, 장, 대, 분) gets the Sino reading; 일천/일만
//! written with an explicit 일 do not equal 천/만.

/// Sino-Korean digits 0–9.
const SINO_DIGITS: [&str; 10] = ["영", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"];
/// Digit-by-digit reading of codes: 0 is 공.
const CODE_DIGITS: [&str; 10] = ["공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"];
/// Units of four-digit groups: 만 (10⁴), 억 (10⁸), 조 (10¹²).
const GROUP_UNITS: [&str; 4] = ["", "만", "억", "조"];
/// Native tens (10–90) and attributive ones (1–9), the forms used before a counter.
const NATIVE_TENS: [&str; 10] = [
    "", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔",
];
const NATIVE_ONES: [&str; 10] = [
    "", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉",
];

/// Counters after which a number is read in native Korean, with the largest number read so.
/// Longer entries first; `None` marks a Sino counter that shares a prefix with a native one.
const COUNTERS: [(&str, Option<u64>); 11] = [
    ("개월", None),
    ("달러", None),
    ("시간", Some(99)),
    ("사람", Some(99)),
    ("마리", Some(99)),
    ("가지", Some(99)),
    ("시", Some(12)),
    ("명", Some(99)),
    ("개", Some(99)),
    ("살", Some(99)),
    ("달", Some(99)),
];

/// Hangul units a silent 1 may stand before ("1만" is said 만).
const UNITS_AFTER_SILENT_ONE: [char; 4] = ['십', '백', '천', '만'];

/// Reads every digit run in `text` out in Hangul; everything else is kept as it is.
pub fn verbalise_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() * 2);
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let integer: String = chars[start..i].iter().collect();
        let mut fraction = String::new();
        if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                fraction.push(chars[i]);
                i += 1;
            }
        }
        let rest: String = chars[i..].iter().collect();
        out.push_str(&read_number(&integer, &fraction, &rest));
    }
    out
}

/// The Hangul reading of one number, given the text that follows it.
fn read_number(integer: &str, fraction: &str, rest: &str) -> String {
    let code_like = (integer.len() > 1 && integer.starts_with('0')) || integer.len() > 16;
    let mut out = if code_like {
        integer
            .bytes()
            .map(|b| CODE_DIGITS[usize::from(b - b'0')])
            .collect()
    } else {
        // At most 16 digits: fits in u64.
        let n: u64 = integer.parse().unwrap_or(0);
        let follows = rest.trim_start();
        if fraction.is_empty() && n == 1 && rest.starts_with(UNITS_AFTER_SILENT_ONE) {
            String::new()
        } else if fraction.is_empty()
            && native_limit(follows).is_some_and(|limit| (1..=limit).contains(&n))
        {
            native(n)
        } else {
            sino(n)
        }
    };
    if !fraction.is_empty() {
        out.push('점');
        out.extend(fraction.bytes().map(|b| SINO_DIGITS[usize::from(b - b'0')]));
    }
    out
}

/// The largest number read natively before the counter `text` starts with, if it starts
/// with a native counter.
fn native_limit(text: &str) -> Option<u64> {
    COUNTERS
        .iter()
        .find(|(counter, _)| text.starts_with(counter))
        .and_then(|(_, limit)| *limit)
}

/// Sino-Korean reading of `n` (< 10¹⁶).
pub fn sino(n: u64) -> String {
    if n == 0 {
        return SINO_DIGITS[0].to_owned();
    }
    let mut out = String::new();
    for (index, unit) in GROUP_UNITS.iter().enumerate().rev() {
        let group = (n / 10_000u64.pow(index as u32)) % 10_000;
        if group == 0 {
            continue;
        }
        // 10000 is 만, not 일만; 억 and 조 keep their 일 (일억).
        if !(group == 1 && index == 1) {
            out.push_str(&below_ten_thousand(group));
        }
        out.push_str(unit);
    }
    out
}

/// 1–9999 with 천, 백, 십; a 1 before them is silent (천, 백, 십).
fn below_ten_thousand(n: u64) -> String {
    let mut out = String::new();
    for (power, unit) in [(1000, "천"), (100, "백"), (10, "십"), (1, "")] {
        let digit = (n / power % 10) as usize;
        if digit == 0 {
            continue;
        }
        if digit != 1 || unit.is_empty() {
            out.push_str(SINO_DIGITS[digit]);
        }
        out.push_str(unit);
    }
    out
}

/// Native Korean attributive reading of 1–99 (the form before a counter).
fn native(n: u64) -> String {
    if n == 20 {
        return "스무".to_owned();
    }
    let (tens, ones) = ((n / 10) as usize, (n % 10) as usize);
    format!("{}{}", NATIVE_TENS[tens], NATIVE_ONES[ones])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sino_korean_readings() {
        let cases = [
            (0, "영"),
            (1, "일"),
            (10, "십"),
            (11, "십일"),
            (35, "삼십오"),
            (100, "백"),
            (105, "백오"),
            (110, "백십"),
            (1000, "천"),
            (2026, "이천이십육"),
            (10_000, "만"),
            (11_000, "만천"),
            (35_000, "삼만오천"),
            (100_000, "십만"),
            (1_000_000, "백만"),
            (10_000_000, "천만"),
            (100_000_000, "일억"),
            (120_003_000, "일억이천만삼천"),
            (1_000_000_000_000, "일조"),
        ];
        for (n, reading) in cases {
            assert_eq!(sino(n), reading, "{n}");
        }
    }

    #[test]
    fn digits_in_text_are_read_out() {
        assert_eq!(verbalise_numbers("35"), "삼십오");
        assert_eq!(verbalise_numbers("1000"), "천");
        assert_eq!(verbalise_numbers("2026년"), "이천이십육년");
        assert_eq!(verbalise_numbers("3학년 때"), "삼학년 때");
        assert_eq!(verbalise_numbers("3.5 킬로"), "삼점오 킬로");
        assert_eq!(verbalise_numbers("3개월"), "삼개월");
        assert_eq!(verbalise_numbers("5달러"), "오달러");
    }

    #[test]
    fn native_counters_take_native_numbers() {
        assert_eq!(verbalise_numbers("3시"), "세시");
        assert_eq!(verbalise_numbers("1 시"), "한 시");
        assert_eq!(verbalise_numbers("12시"), "열두시");
        // 24-hour times are read in Sino-Korean.
        assert_eq!(verbalise_numbers("13시"), "십삼시");
        assert_eq!(verbalise_numbers("2시간"), "두시간");
        assert_eq!(verbalise_numbers("2명"), "두명");
        assert_eq!(verbalise_numbers("20살"), "스무살");
        assert_eq!(verbalise_numbers("21살"), "스물한살");
        assert_eq!(verbalise_numbers("4개"), "네개");
        // Past 99 the Sino reading is used even before a native counter.
        assert_eq!(verbalise_numbers("100명"), "백명");
        // Minutes (분) are Sino.
        assert_eq!(verbalise_numbers("30분"), "삼십분");
    }

    #[test]
    fn a_written_one_before_a_hangul_unit_is_silent() {
        assert_eq!(verbalise_numbers("1만 원"), "만 원");
        assert_eq!(verbalise_numbers("1천"), "천");
        assert_eq!(verbalise_numbers("2천"), "이천");
        assert_eq!(verbalise_numbers("3만 원"), "삼만 원");
        assert_eq!(verbalise_numbers("1억"), "일억");
    }

    #[test]
    fn codes_are_read_digit_by_digit() {
        assert_eq!(verbalise_numbers("010 1234"), "공일공 천이백삼십사");
        assert_eq!(verbalise_numbers("0"), "영");
        assert_eq!(
            verbalise_numbers("12345678901234567"),
            "일이삼사오육칠팔구공일이삼사오육칠"
        );
    }

    #[test]
    fn hangul_words_are_never_touched() {
        for word in [
            "이", "사이", "천사", "이만", "조사", "구조", "오", "이번", "사회", "천장",
        ] {
            assert_eq!(verbalise_numbers(word), word);
        }
    }
}
