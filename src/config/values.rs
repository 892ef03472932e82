//! How one setting's text (a `SORI_*` value) becomes its typed value, and how a value is shown
//! (the defaults column of docs/configuration.md). The parsers keep the rules the environment
//! has always had: numbers and addresses are trimmed, paths and URLs are taken as given, an
//! empty optional value means unset, lists are comma-separated.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::VoiceDetectorKind;
use crate::protocol::Language;

use crate::stt::language::LanguageSet;

use super::Category;

/// Numbers, booleans (`true` / `false`), addresses, languages: trimmed, then `FromStr`.
pub fn value<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.trim().parse().map_err(|e: T::Err| e.to_string())
}

/// A URL or other text, as given.
pub fn text(text: &str) -> Result<String, String> {
    Ok(text.to_owned())
}

/// Optional text: empty = unset.
pub fn opt_text(text: &str) -> Result<Option<String>, String> {
    Ok(Some(text.to_owned()).filter(|v| !v.is_empty()))
}

/// A prompt: blank (only white space) = unset; otherwise kept as given.
pub fn prompt(text: &str) -> Result<Option<String>, String> {
    Ok(Some(text.to_owned()).filter(|v| !v.trim().is_empty()))
}

/// A path, as given.
pub fn path(text: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(text))
}

/// An optional path: empty = unset.
pub fn opt_path(text: &str) -> Result<Option<PathBuf>, String> {
    Ok(Some(PathBuf::from(text)).filter(|p| !p.as_os_str().is_empty()))
}

/// An optional path that is set even when empty (`SORI_FILTER_PATTERNS_FILE` always was).
pub fn some_path(text: &str) -> Result<Option<PathBuf>, String> {
    Ok(Some(PathBuf::from(text)))
}

/// `a, b,,c` → `["a", "b", "c"]`.
pub fn list(text: &str) -> Result<Vec<String>, String> {
    Ok(comma_list(text))
}

/// Whisper codes or English names, or `all`; stored as codes.
pub fn languages(text: &str) -> Result<Vec<String>, String> {
    let set: LanguageSet = value(text)?;
    Ok(set.to_strings())
}

/// Categories are records (`[[llm.categories]]`); they have no one-line form.
pub fn categories(_: &str) -> Result<Vec<Category>, String> {
    Err("categories are set in sori.toml ([[llm.categories]])".to_owned())
}

/// `a, b,,c` → `["a", "b", "c"]`.
pub fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A value as the documentation shows it; `code` values are set in backticks there.
pub struct Shown {
    pub text: String,
    pub code: bool,
}

impl Shown {
    fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            code: false,
        }
    }

    fn code(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            code: true,
        }
    }

    /// Markdown: code values in backticks.
    pub fn markdown(&self) -> String {
        if self.code {
            format!("`{}`", self.text)
        } else {
            self.text.clone()
        }
    }
}

/// How a setting's value is shown.
pub trait Show {
    fn show(&self) -> Shown;
}

macro_rules! show_plain {
    ($($t:ty),*) => {$(
        impl Show for $t {
            fn show(&self) -> Shown {
                Shown::plain(self.to_string())
            }
        }
    )*};
}
show_plain!(usize, u64, bool);

impl Show for f64 {
    /// `{:?}` keeps the decimal point (`1.0`, not `1`), so a float reads as one.
    fn show(&self) -> Shown {
        Shown::plain(format!("{self:?}"))
    }
}

macro_rules! show_code {
    ($($t:ty),*) => {$(
        impl Show for $t {
            fn show(&self) -> Shown {
                Shown::code(self.to_string())
            }
        }
    )*};
}
show_code!(SocketAddr, Language, VoiceDetectorKind);

impl Show for String {
    fn show(&self) -> Shown {
        if self.is_empty() {
            Shown::plain("empty")
        } else {
            Shown::code(self.clone())
        }
    }
}

impl Show for PathBuf {
    fn show(&self) -> Shown {
        Shown::code(self.display().to_string())
    }
}

impl<T: Show> Show for Option<T> {
    fn show(&self) -> Shown {
        match self {
            Some(v) => v.show(),
            None => Shown::plain("none"),
        }
    }
}

impl Show for Vec<String> {
    fn show(&self) -> Shown {
        if self.is_empty() {
            Shown::plain("none")
        } else {
            Shown::code(self.join(","))
        }
    }
}

impl Show for Vec<Category> {
    fn show(&self) -> Shown {
        let ids: Vec<&str> = self.iter().map(|c| c.id.as_str()).collect();
        Shown::code(ids.join(","))
    }
}
