//! `SORI_*` environment variables: applied from the settings table, and unknown names reported
//! with the closest known one (a misspelt variable would otherwise be ignored in silence).

use super::settings;
use super::{Config, ConfigError};

/// `SORI_*` variables that scripts and tests read, not the server; they are known, not typos.
pub const READ_ELSEWHERE: &[&str] = &[
    // tests/support: the model the integration tests load.
    "SORI_TEST_MODEL",
    // tests/it/llm_infra.rs: marks the child process of the Redis test.
    "SORI_TEST_REDIS_CHILD",
];

impl Config {
    /// Applies every `SORI_*` variable of the settings table; unknown `SORI_*` names are
    /// ignored here so that one environment can serve several versions (`serve` warns about
    /// them, see [`unknown_env`]).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (name, value) in vars {
            let Some(setting) = settings::by_env(&name) else {
                continue;
            };
            (setting.set)(self, &value).map_err(|reason| ConfigError::Env {
                // The table's own `&'static str`, not the caller's string.
                name: setting.env.unwrap_or_default(),
                value,
                reason,
            })?;
        }
        Ok(())
    }
}

/// A `SORI_*` variable no setting and no script reads, with the closest known name if one is
/// close enough to be a typo of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVar {
    pub name: String,
    pub suggestion: Option<&'static str>,
}

/// Every known `SORI_*` name: the table's and [`READ_ELSEWHERE`].
pub fn known_names() -> impl Iterator<Item = &'static str> {
    settings::all()
        .filter_map(|s| s.env)
        .chain(READ_ELSEWHERE.iter().copied())
}

/// The `SORI_*` names among `names` that nothing reads.
pub fn unknown_env(names: impl IntoIterator<Item = String>) -> Vec<UnknownVar> {
    names
        .into_iter()
        .filter(|name| name.starts_with("SORI_"))
        .filter(|name| !known_names().any(|known| known == name))
        .map(|name| {
            let suggestion = closest(&name);
            UnknownVar { name, suggestion }
        })
        .collect()
}

/// Logs one warning per unknown `SORI_*` variable of this process's environment.
pub fn warn_unknown_env() {
    for unknown in unknown_env(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok())) {
        match unknown.suggestion {
            Some(known) => tracing::warn!(
                variable = %unknown.name,
                "unknown environment variable {} is ignored; did you mean {known}?",
                unknown.name
            ),
            None => tracing::warn!(
                variable = %unknown.name,
                "unknown environment variable {} is ignored (docs/configuration.md lists them)",
                unknown.name
            ),
        }
    }
}

/// The known name nearest to `name`, if within a third of its length (at least 2 edits).
fn closest(name: &str) -> Option<&'static str> {
    let limit = (name.len() / 3).max(2);
    known_names()
        .map(|known| (edit_distance(name, known), known))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("SORI_BIND", "SORI_BIND"), 0);
    }

    #[test]
    fn unknown_variables_get_the_closest_known_name() {
        let names = [
            "SORI_MAX_SESION",
            "SORI_BIND",
            "SORI_TEST_MODEL",
            "PATH",
            "SORI_EMBEDURL",
            "SORI_SOMETHING_ELSE_ENTIRELY",
        ]
        .map(str::to_owned);
        let unknown = unknown_env(names);
        assert_eq!(
            unknown,
            [
                UnknownVar {
                    name: "SORI_MAX_SESION".to_owned(),
                    suggestion: Some("SORI_MAX_SESSIONS"),
                },
                UnknownVar {
                    name: "SORI_EMBEDURL".to_owned(),
                    suggestion: Some("SORI_EMBED_URL"),
                },
                UnknownVar {
                    name: "SORI_SOMETHING_ELSE_ENTIRELY".to_owned(),
                    suggestion: None,
                },
            ]
        );
    }
}
