//! What `sori bench --capacity` streams and how its server is started: the levels, the speech
//! and its reference, the child's flags and environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sori_core::audio::decode::load_16k_mono;
use sori_core::testing::silence;

use super::{CapacityArgs, DEFAULT_FILE, DEFAULT_LEVELS, PAUSE_S, Setup};

/// `--server-env`'s parser.
pub fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// `--clients`, or the default levels; sorted, without repeats.
pub fn levels(given: &[usize]) -> anyhow::Result<Vec<usize>> {
    let mut levels = if given.is_empty() {
        DEFAULT_LEVELS.to_vec()
    } else {
        given.to_vec()
    };
    if levels.contains(&0) {
        bail!("--clients levels must be at least 1");
    }
    levels.sort_unstable();
    levels.dedup();
    Ok(levels)
}

/// The FILES one after another with [`PAUSE_S`] between them, and their references joined.
pub fn load_speech(files: &[PathBuf]) -> anyhow::Result<(Vec<f32>, String)> {
    let mut samples = Vec::new();
    let mut references = Vec::new();
    for (i, file) in files.iter().enumerate() {
        if !file.exists() && file == Path::new(DEFAULT_FILE) {
            bail!("{DEFAULT_FILE} is missing: make it with `./scripts/peers.sh fetch`");
        }
        if i > 0 {
            samples.extend(silence(PAUSE_S));
        }
        samples.extend(
            load_16k_mono(file).with_context(|| format!("cannot read {}", file.display()))?,
        );
        references.push(crate::bench::load::reference_for(file)?);
    }
    Ok((samples, references.join(" ")))
}

/// The child's flags and environment: the bench's engine flags and `--config`, limits raised
/// so that no client is refused, then `--server-env` (which may override those limits).
pub fn server_settings(
    args: &CapacityArgs,
    setup: &Setup,
    levels: &[usize],
) -> (Vec<OsString>, Vec<(String, String)>) {
    let mut flags: Vec<OsString> = Vec::new();
    if let Some(config) = &setup.config {
        flags.extend(["--config".into(), config.into()]);
    }
    if let Some(model) = &setup.engine.model {
        flags.extend(["--model".into(), model.into()]);
    }
    if let Some(workers) = setup.engine.workers {
        flags.extend(["--workers".into(), workers.to_string().into()]);
    }
    if let Some(threads) = setup.engine.threads {
        flags.extend(["--threads".into(), threads.to_string().into()]);
    }
    let most = levels.iter().max().copied().unwrap_or(1);
    let mut env = vec![
        ("SORI_MAX_SESSIONS".to_owned(), (most + 4).to_string()),
        ("SORI_MAX_CONNECTIONS_PER_CLIENT".to_owned(), "0".to_owned()),
        (
            "SORI_MAX_CONNECTIONS_PER_ADDRESS".to_owned(),
            "0".to_owned(),
        ),
    ];
    env.extend(args.server_env.iter().cloned());
    (flags, env)
}

/// The settings as one line of shell, for the report.
pub fn shown_settings(flags: &[OsString], env: &[(String, String)]) -> Vec<String> {
    env.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(flags.iter().map(|f| f.to_string_lossy().into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_default_sort_and_refuse_zero() {
        assert_eq!(levels(&[]).unwrap(), DEFAULT_LEVELS);
        assert_eq!(levels(&[4, 1, 2, 4]).unwrap(), [1, 2, 4]);
        assert!(levels(&[1, 0]).is_err());
    }

    #[test]
    fn server_env_is_key_equals_value() {
        assert_eq!(
            key_value("SORI_PARTIAL_INTERVAL_MS=1500").unwrap(),
            ("SORI_PARTIAL_INTERVAL_MS".to_owned(), "1500".to_owned())
        );
        assert_eq!(key_value("A=b=c").unwrap().1, "b=c");
        assert!(key_value("SORI_X").is_err());
        assert!(key_value("=1").is_err());
    }
}
