//! The command line checked against the settings table: a flag that sets a setting names its
//! variable and default as the table has them, and every flag of the table exists.

use clap::CommandFactory;

use sori::config::Config;
use sori::config::settings::{self, Setting};

use super::Cli;

/// Flags that share a setting's flag name but mean something else on their command.
const OTHER_MEANING: &[(&str, &str)] = &[
    // `sori eval --language ref`: per file from the reference, not stt.language.
    ("eval", "language"),
    // `sori stream --language`: the streamed session's option, sent to a running server.
    ("stream", "language"),
];

/// Every (command path, flag name, help) of the command line.
fn flags() -> Vec<(String, String, String)> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String, String)>) {
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                out.push((path.to_owned(), long.to_owned(), help));
            }
        }
        for sub in cmd.get_subcommands() {
            let path = format!("{path} {}", sub.get_name()).trim().to_owned();
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), "", &mut out);
    out
}

/// `… (env SORI_X; default D)` → (`SORI_X`, `Some(D)`).
fn env_in_help(help: &str) -> Option<(&str, Option<&str>)> {
    let rest = &help[help.find("(env SORI_")? + "(env ".len()..];
    let end = rest.find([';', ')']).unwrap_or(rest.len());
    let default = rest[end..]
        .strip_prefix("; default ")
        .and_then(|d| d.rfind(')').map(|i| &d[..i]))
        .filter(|d| !d.starts_with(':'));
    Some((&rest[..end], default))
}

fn setting_with_flag(flag: &str) -> Option<&'static Setting> {
    settings::all().find(|s| s.flag == Some(flag))
}

#[test]
fn the_command_line_is_valid() {
    Cli::command().debug_assert();
}

#[test]
fn flags_that_set_a_setting_agree_with_the_table() {
    let defaults = Config::default();
    for (command, long, help) in flags() {
        let flag = format!("--{long}");
        let named = env_in_help(&help);
        let by_flag = setting_with_flag(&flag);
        if OTHER_MEANING.contains(&(command.as_str(), long.as_str())) {
            assert!(named.is_none(), "sori {command} {flag}: {help}");
            continue;
        }
        match (named, by_flag) {
            (None, None) => {}
            (Some((env, default)), _) => {
                let setting = settings::by_env(env)
                    .unwrap_or_else(|| panic!("sori {command} {flag} names {env}, not a setting"));
                assert_eq!(setting.flag, Some(flag.as_str()), "sori {command} {flag}");
                if let Some(default) = default {
                    assert_eq!(
                        (setting.show)(&defaults).text,
                        default,
                        "sori {command} {flag}"
                    );
                }
            }
            (None, Some(setting)) => panic!(
                "sori {command} {flag} sets {} but its help does not say (env {})",
                setting.key,
                setting.env.unwrap_or("…")
            ),
        }
    }
}

#[test]
fn every_flag_of_the_table_exists() {
    let flags = flags();
    for setting in settings::all() {
        if let Some(flag) = setting.flag {
            assert!(
                flags.iter().any(|(_, long, _)| format!("--{long}") == flag),
                "{} has {flag}, which no command takes",
                setting.key
            );
        }
    }
}

#[test]
fn help_parsing_finds_env_and_default() {
    assert_eq!(
        env_in_help("Address (env SORI_BIND; default 127.0.0.1:5000)."),
        Some(("SORI_BIND", Some("127.0.0.1:5000")))
    );
    assert_eq!(
        env_in_help("Redis (env SORI_REDIS_URL; default: in-memory cache)."),
        Some(("SORI_REDIS_URL", None))
    );
    assert_eq!(
        env_in_help("Model (env SORI_MODEL)."),
        Some(("SORI_MODEL", None))
    );
    assert_eq!(env_in_help("Runs per measurement."), None);
}
