//! The settings tables of docs/configuration.md, generated from the settings table.
//!
//! The file marks each table with `<!-- settings: SECTION -->` … `<!-- /settings -->`; the
//! prose around the tables is the file's own. `sori config docs --write
//! docs/configuration.md` rewrites the tables, and a test fails when the file is out of date.

use super::Config;
use super::settings::{SECTIONS, Section};

/// The closing marker of a generated table.
pub const END: &str = "<!-- /settings -->";

/// Why a Markdown file's generated tables could not be rewritten.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocsError {
    #[error("no `<!-- settings: {0} -->` table: every section needs one")]
    Missing(&'static str),
    #[error("`<!-- settings: {0} -->` names no section of the configuration")]
    Unknown(String),
    #[error("`<!-- settings: {0} -->` is not closed by `{END}`")]
    Unclosed(String),
}

/// One section's table: key, env, flag, default, meaning.
pub fn table(section: &Section) -> String {
    let defaults = Config::default();
    let code = |text: Option<&str>| text.map(|t| format!("`{t}`")).unwrap_or_default();
    let mut out = String::from("| key | env | flag | default | meaning |\n|---|---|---|---|---|\n");
    for setting in section.settings {
        out += &format!(
            "| `{}` | {} | {} | {} | {} |\n",
            setting.key,
            code(setting.env),
            code(setting.flag),
            (setting.show)(&defaults).markdown().replace('|', "\\|"),
            setting.doc.replace('|', "\\|"),
        );
    }
    out
}

/// Every section's table, each under its marker (what `sori config docs` prints).
pub fn tables() -> String {
    SECTIONS
        .iter()
        .map(|s| format!("{}\n{}{END}\n", begin(s.name), table(s)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn begin(name: &str) -> String {
    format!("<!-- settings: {name} -->")
}

/// `markdown` with every marked table regenerated.
pub fn update(markdown: &str) -> Result<String, DocsError> {
    let mut out = String::with_capacity(markdown.len());
    let mut lines = markdown.lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.next() {
        out += line;
        out.push('\n');
        let Some(name) = marker_name(line) else {
            continue;
        };
        let section = SECTIONS
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| DocsError::Unknown(name.to_owned()))?;
        if !lines.any(|l| l.trim() == END) {
            return Err(DocsError::Unclosed(name.to_owned()));
        }
        out += &table(section);
        out += END;
        out.push('\n');
        seen.push(section.name);
    }
    if let Some(missing) = SECTIONS.iter().find(|s| !seen.contains(&s.name)) {
        return Err(DocsError::Missing(missing.name));
    }
    Ok(out)
}

/// `<!-- settings: server -->` → `server`.
fn marker_name(line: &str) -> Option<&str> {
    line.trim()
        .strip_prefix("<!-- settings:")?
        .strip_suffix("-->")
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_replace_what_is_between_the_markers() {
        let mut doc = String::from("# Title\n\nprose\n\n");
        for s in SECTIONS {
            doc += &format!("{}\nstale\n{END}\n\nmore prose\n", begin(s.name));
        }
        let updated = update(&doc).unwrap();
        assert!(!updated.contains("stale"), "{updated}");
        assert!(updated.contains("| `server.bind` | `SORI_BIND` | `--bind` | `127.0.0.1:5000` |"));
        assert!(updated.contains("more prose"));
        assert_eq!(
            update(&updated).unwrap(),
            updated,
            "regenerating changes nothing"
        );
    }

    #[test]
    fn markers_are_checked() {
        assert_eq!(update("no tables\n"), Err(DocsError::Missing("server")));
        assert_eq!(
            update("<!-- settings: nope -->\n"),
            Err(DocsError::Unknown("nope".to_owned()))
        );
        assert_eq!(
            update("<!-- settings: server -->\n| a |\n"),
            Err(DocsError::Unclosed("server".to_owned()))
        );
    }

    /// docs/configuration.md is generated; run `sori config docs --write
    /// docs/configuration.md` after changing a setting.
    #[test]
    fn configuration_md_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let expected = update(&doc).unwrap();
        assert!(
            doc == expected,
            "docs/configuration.md is out of date: run `sori config docs --write docs/configuration.md`"
        );
    }
}
