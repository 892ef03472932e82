//! Whisper's languages: the codes it knows, the set a session's `auto` detection may choose
//! from, and the rule that locks a session to the language it detected.
//!
//! Whisper's own `auto` picks any of its ~99 languages per utterance, and on short or noisy
//! Korean it often picks Japanese, Chinese or English. Restricting the choice to the languages
//! a site actually hears (by default `ko,en`) removes most of those mistakes; locking the
//! session once one utterance was detected with confidence removes the rest.

use std::fmt;
use std::sync::Arc;

/// Written in place of a list to mean every language the model knows.
pub const ALL: &str = "all";

/// A language code or name that Whisper does not know, or an empty list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LanguageError {
    #[error(
        "language {given:?} is not one of Whisper's languages; use Whisper's two- or three-letter codes \
         (ko, en, ja, zh, de, …) separated by commas, or \"all\" (docs/configuration.md lists them)"
    )]
    Unknown { given: String },
    #[error(
        "the language list is empty; give at least one code, e.g. \"ko,en\", or \"all\" for every language"
    )]
    Empty,
}

/// Whisper's languages as `(code, english name)`, in whisper.cpp's order (the order of the
/// language tokens: a code's index + `sot` + 1 is its token). The server crate's tests check
/// this table against the linked whisper.cpp, so the two never disagree.
pub const WHISPER_LANGUAGES: [(&str, &str); 100] = [
    ("en", "english"),
    ("zh", "chinese"),
    ("de", "german"),
    ("es", "spanish"),
    ("ru", "russian"),
    ("ko", "korean"),
    ("fr", "french"),
    ("ja", "japanese"),
    ("pt", "portuguese"),
    ("tr", "turkish"),
    ("pl", "polish"),
    ("ca", "catalan"),
    ("nl", "dutch"),
    ("ar", "arabic"),
    ("sv", "swedish"),
    ("it", "italian"),
    ("id", "indonesian"),
    ("hi", "hindi"),
    ("fi", "finnish"),
    ("vi", "vietnamese"),
    ("he", "hebrew"),
    ("uk", "ukrainian"),
    ("el", "greek"),
    ("ms", "malay"),
    ("cs", "czech"),
    ("ro", "romanian"),
    ("da", "danish"),
    ("hu", "hungarian"),
    ("ta", "tamil"),
    ("no", "norwegian"),
    ("th", "thai"),
    ("ur", "urdu"),
    ("hr", "croatian"),
    ("bg", "bulgarian"),
    ("lt", "lithuanian"),
    ("la", "latin"),
    ("mi", "maori"),
    ("ml", "malayalam"),
    ("cy", "welsh"),
    ("sk", "slovak"),
    ("te", "telugu"),
    ("fa", "persian"),
    ("lv", "latvian"),
    ("bn", "bengali"),
    ("sr", "serbian"),
    ("az", "azerbaijani"),
    ("sl", "slovenian"),
    ("kn", "kannada"),
    ("et", "estonian"),
    ("mk", "macedonian"),
    ("br", "breton"),
    ("eu", "basque"),
    ("is", "icelandic"),
    ("hy", "armenian"),
    ("ne", "nepali"),
    ("mn", "mongolian"),
    ("bs", "bosnian"),
    ("kk", "kazakh"),
    ("sq", "albanian"),
    ("sw", "swahili"),
    ("gl", "galician"),
    ("mr", "marathi"),
    ("pa", "punjabi"),
    ("si", "sinhala"),
    ("km", "khmer"),
    ("sn", "shona"),
    ("yo", "yoruba"),
    ("so", "somali"),
    ("af", "afrikaans"),
    ("oc", "occitan"),
    ("ka", "georgian"),
    ("be", "belarusian"),
    ("tg", "tajik"),
    ("sd", "sindhi"),
    ("gu", "gujarati"),
    ("am", "amharic"),
    ("yi", "yiddish"),
    ("lo", "lao"),
    ("uz", "uzbek"),
    ("fo", "faroese"),
    ("ht", "haitian creole"),
    ("ps", "pashto"),
    ("tk", "turkmen"),
    ("nn", "nynorsk"),
    ("mt", "maltese"),
    ("sa", "sanskrit"),
    ("lb", "luxembourgish"),
    ("my", "myanmar"),
    ("bo", "tibetan"),
    ("tl", "tagalog"),
    ("mg", "malagasy"),
    ("as", "assamese"),
    ("tt", "tatar"),
    ("haw", "hawaiian"),
    ("ln", "lingala"),
    ("ha", "hausa"),
    ("ba", "bashkir"),
    ("jw", "javanese"),
    ("su", "sundanese"),
    ("yue", "cantonese"),
];

/// Whisper's languages (see [`WHISPER_LANGUAGES`]).
pub fn whisper_languages() -> &'static [(&'static str, &'static str)] {
    &WHISPER_LANGUAGES
}

/// The canonical code for a code or an English name ("KO", "korean" → "ko").
pub fn lookup(code_or_name: &str) -> Option<&'static str> {
    let wanted = code_or_name.trim().to_ascii_lowercase();
    whisper_languages()
        .iter()
        .find(|(code, name)| *code == wanted || *name == wanted)
        .map(|(code, _)| *code)
}

/// Whisper's index of a code (its language token is `sot + 1 + index`).
pub fn index_of(code: &str) -> Option<usize> {
    whisper_languages().iter().position(|(c, _)| *c == code)
}

/// The languages detection may choose from: canonical codes, no duplicates, in the order given.
/// Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq)]
pub struct LanguageSet(Arc<[&'static str]>);

impl LanguageSet {
    /// Parses `"ko,en"` (codes or names, any case, spaces allowed) or `"all"`.
    pub fn parse(list: &str) -> Result<Self, LanguageError> {
        Self::from_items(list.split(','))
    }

    /// The same from separate items (a TOML or JSON array); an item may itself hold commas.
    pub fn from_items<S: AsRef<str>>(
        items: impl IntoIterator<Item = S>,
    ) -> Result<Self, LanguageError> {
        let mut codes: Vec<&'static str> = Vec::new();
        for item in items {
            for part in item.as_ref().split(',') {
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                if part.eq_ignore_ascii_case(ALL) {
                    return Ok(Self::all());
                }
                let code = lookup(part).ok_or_else(|| LanguageError::Unknown {
                    given: part.to_owned(),
                })?;
                if !codes.contains(&code) {
                    codes.push(code);
                }
            }
        }
        if codes.is_empty() {
            return Err(LanguageError::Empty);
        }
        Ok(Self(codes.into()))
    }

    /// Every language Whisper knows (unrestricted detection).
    pub fn all() -> Self {
        Self(whisper_languages().iter().map(|(code, _)| *code).collect())
    }

    /// A set of one: decoding is forced to it, nothing is detected.
    pub fn single(code: &'static str) -> Self {
        Self(Arc::from([code]))
    }

    pub fn codes(&self) -> &[&'static str] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, code: &str) -> bool {
        self.0.contains(&code)
    }

    pub fn is_all(&self) -> bool {
        self.0.len() == whisper_languages().len()
    }

    /// The codes as owned strings (for `ready`); `["all"]` when unrestricted.
    pub fn to_strings(&self) -> Vec<String> {
        if self.is_all() {
            return vec![ALL.to_owned()];
        }
        self.0.iter().map(|c| (*c).to_owned()).collect()
    }

    /// The most probable language of this set, with its probability renormalised over the set.
    /// `probs[i]` is Whisper's probability of language index `i` (over all its languages);
    /// codes beyond `probs` (a model without them) are skipped. `None` when no code of the set
    /// has a probability.
    pub fn pick(&self, probs: &[f32]) -> Option<Detection> {
        let mut best: Option<(&'static str, f32)> = None;
        let mut total = 0.0f32;
        for &code in self.0.iter() {
            let Some(p) = index_of(code).and_then(|i| probs.get(i)).copied() else {
                continue;
            };
            if !p.is_finite() {
                continue;
            }
            total += p;
            if best.is_none_or(|(_, b)| p > b) {
                best = Some((code, p));
            }
        }
        let (code, p) = best?;
        Some(Detection {
            language: code,
            probability: if total > 0.0 { p / total } else { 0.0 },
            raw_probability: p,
        })
    }
}

impl fmt::Debug for LanguageSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl fmt::Display for LanguageSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            f.write_str(ALL)
        } else {
            f.write_str(&self.0.join(","))
        }
    }
}

impl std::str::FromStr for LanguageSet {
    type Err = LanguageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A language chosen by detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub language: &'static str,
    /// Probability within the set the choice was made from (sums to 1 over the set).
    pub probability: f32,
    /// Whisper's probability over all its languages, for logs: a Korean clip that Whisper
    /// gives 0.3 may still be 0.95 of "ko or en".
    pub raw_probability: f32,
}

/// When a session's detected language becomes its language for good.
///
/// One kept final suffices when its utterance is long enough and its detection confident
/// enough within the set: short utterances ("네", "OK") and noise are where detection goes
/// wrong, so they never lock, and a filtered final (a hallucination) never locks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LockRule {
    /// Off: every utterance is detected anew (code-switching meetings).
    pub enabled: bool,
    /// Smallest within-set probability that locks.
    pub min_probability: f32,
    /// Shortest utterance that locks, in seconds.
    pub min_seconds: f32,
}

impl LockRule {
    /// Whether a kept final with this detection over `seconds` of audio locks the session.
    pub fn locks(&self, detection: &Detection, seconds: f32) -> bool {
        self.enabled && detection.probability >= self.min_probability && seconds >= self.min_seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(pairs: &[(&str, f32)]) -> Vec<f32> {
        let mut p = vec![0.0; whisper_languages().len()];
        for (code, v) in pairs {
            p[index_of(code).unwrap()] = *v;
        }
        p
    }

    #[test]
    fn whisper_list_is_whisper_cpps() {
        let all = whisper_languages();
        assert!(all.len() >= 99, "{}", all.len());
        assert_eq!(all[0], ("en", "english"));
        assert_eq!(lookup("KO"), Some("ko"));
        assert_eq!(lookup("korean"), Some("ko"));
        assert_eq!(lookup(" Japanese "), Some("ja"));
        assert_eq!(lookup("xx"), None);
        assert_eq!(lookup("auto"), None);
    }

    #[test]
    fn sets_parse_codes_and_names_without_duplicates() {
        let s = LanguageSet::parse(" ko, EN ,korean,,ja").unwrap();
        assert_eq!(s.codes(), ["ko", "en", "ja"]);
        assert_eq!(s.to_string(), "ko,en,ja");
        let s = LanguageSet::from_items(["ko", "en,zh"]).unwrap();
        assert_eq!(s.codes(), ["ko", "en", "zh"]);
        let all = LanguageSet::parse("ALL").unwrap();
        assert!(all.is_all() && all.contains("sw"));
        assert_eq!(all.to_string(), "all");
    }

    #[test]
    fn bad_sets_say_what_is_accepted() {
        let e = LanguageSet::parse("ko,xx").unwrap_err();
        assert_eq!(
            e,
            LanguageError::Unknown {
                given: "xx".to_owned()
            }
        );
        let m = e.to_string();
        assert!(
            m.contains("\"xx\"") && m.contains("ko, en") && m.contains("all"),
            "{m}"
        );
        assert_eq!(LanguageSet::parse(" , ").unwrap_err(), LanguageError::Empty);
        assert!(LanguageSet::parse("auto").is_err());
    }

    #[test]
    fn pick_takes_the_best_language_of_the_set_and_renormalises() {
        // Short Korean as Whisper often hears it: Japanese first over all languages.
        let p = probs(&[("ja", 0.5), ("ko", 0.3), ("en", 0.1), ("zh", 0.1)]);
        let all = LanguageSet::all().pick(&p).unwrap();
        assert_eq!(all.language, "ja");
        let d = LanguageSet::parse("ko,en").unwrap().pick(&p).unwrap();
        assert_eq!(d.language, "ko");
        assert!((d.probability - 0.75).abs() < 1e-6, "{d:?}");
        assert!((d.raw_probability - 0.3).abs() < 1e-6);
        // A code the model has no probability for is skipped.
        assert_eq!(LanguageSet::single("ko").pick(&[0.9]), None);
        assert_eq!(
            LanguageSet::single("en").pick(&[0.9]).unwrap().probability,
            1.0
        );
    }

    #[test]
    fn only_long_confident_utterances_lock() {
        let rule = LockRule {
            enabled: true,
            min_probability: 0.9,
            min_seconds: 1.5,
        };
        let d = |p| Detection {
            language: "ko",
            probability: p,
            raw_probability: p,
        };
        assert!(rule.locks(&d(0.95), 3.0));
        assert!(rule.locks(&d(0.9), 1.5));
        assert!(!rule.locks(&d(0.95), 0.8), "short utterances never lock");
        assert!(!rule.locks(&d(0.6), 5.0), "doubtful detections never lock");
        let off = LockRule {
            enabled: false,
            ..rule
        };
        assert!(!off.locks(&d(1.0), 10.0));
    }
}
