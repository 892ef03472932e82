//! `sori eval DIR`, the real binary on the real model: a directory with the JFK clip,
//! espeak-ng English and Korean sentences, silence with an empty reference and a file
//! without a reference. The reported error rates are recomputed here from the hypotheses
//! the JSON reports, with an edit distance written in this file. `sori eval` runs the
//! `sori-tools` program beside it; how that forwarding behaves is tested here too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{JFK_REFERENCE, data_file, espeak, model_path, scratch_dir};
use serde_json::Value;

/// The English espeak-ng sentence and its reference.
const ENGLISH: &str = "The traffic on the northern highway is moving slowly.";
/// What espeak-ng says, and the reference as a person would write it (digits).
const KOREAN_SPOKEN: &str = "오늘 회의는 세 시에 시작합니다";
const KOREAN_REFERENCE: &str = "오늘 회의는 3시에 시작합니다.";

/// `sori-tools`, which `sori eval` and `sori bench` run, beside the `sori` under test.
fn tools_binary() -> PathBuf {
    let sori = Path::new(env!("CARGO_BIN_EXE_sori"));
    let tools = sori.with_file_name(format!("sori-tools{}", std::env::consts::EXE_SUFFIX));
    assert!(
        tools.is_file(),
        "{} is missing: `sori eval` runs it. Build the whole workspace first: \
         `cargo build --release --workspace` (./test.sh does).",
        tools.display()
    );
    tools
}

fn sori_eval(dir: &Path, extra: &[&str]) -> Output {
    tools_binary();
    Command::new(env!("CARGO_BIN_EXE_sori"))
        .arg("eval")
        .arg(dir)
        .args(["--model"])
        .arg(model_path())
        .args(["--threads", "1"])
        .args(extra)
        .env("SORI_THREADS", "1")
        .env("SORI_WORKERS", "1")
        .output()
        .expect("sori eval runs")
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The corpus: nested folders, as a KsponSpeech-like layout would have.
fn build_corpus() -> PathBuf {
    let dir = fresh_dir("eval-corpus");
    std::fs::create_dir_all(dir.join("en")).unwrap();
    std::fs::create_dir_all(dir.join("ko/session1")).unwrap();
    std::fs::copy(data_file("jfk.wav"), dir.join("en/jfk.wav")).unwrap();
    std::fs::write(dir.join("en/jfk.txt"), JFK_REFERENCE).unwrap();
    let english = espeak("eval-en-highway", "en", ENGLISH);
    std::fs::copy(english, dir.join("en/highway.wav")).unwrap();
    std::fs::write(dir.join("en/highway.txt"), ENGLISH).unwrap();
    let korean = espeak("eval-ko-meeting", "ko", KOREAN_SPOKEN);
    std::fs::copy(korean, dir.join("ko/session1/meeting.wav")).unwrap();
    std::fs::write(dir.join("ko/session1/meeting.txt"), KOREAN_REFERENCE).unwrap();
    sori::audio::wav::write_wav_16k(&dir.join("silence.wav"), &vec![0.0; 16_000 * 5]).unwrap();
    std::fs::write(dir.join("silence.txt"), "").unwrap();
    std::fs::copy(data_file("jfk.wav"), dir.join("no_reference.wav")).unwrap();
    dir
}

/// Levenshtein distance, written here independently of sori's.
fn levenshtein<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j - 1] + cost)
                .min(d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1);
        }
    }
    d[a.len()][b.len()]
}

fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

fn chars(text: &str) -> Vec<char> {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A simple English normalisation (lowercase, apostrophes joined, other punctuation out),
/// enough for espeak-ng and JFK sentences.
fn simple_english(text: &str) -> String {
    let kept: String = text
        .to_lowercase()
        .chars()
        .filter(|c| *c != '\'')
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn count(value: &Value) -> (usize, usize) {
    (
        value["edits"].as_u64().expect("edits") as usize,
        value["units"].as_u64().expect("units") as usize,
    )
}

fn assert_rate(value: &Value, edits: usize, units: usize, what: &str) {
    assert_eq!(count(value), (edits, units), "{what}: {value}");
    if units == 0 {
        assert!(
            value["rate"].is_null(),
            "{what}: no units, no rate: {value}"
        );
    } else {
        let rate = value["rate"].as_f64().expect("rate");
        assert!(
            (rate - edits as f64 / units as f64).abs() < 1e-12,
            "{what}: {value}"
        );
    }
}

#[test]
fn eval_reports_error_rates_that_an_independent_computation_confirms() {
    let dir = build_corpus();
    let json_path = scratch_dir().join("eval-report.json");
    let _ = std::fs::remove_file(&json_path);
    let out = sori_eval(&dir, &["--json", json_path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sori eval failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("--json written"))
            .expect("the report is JSON");

    // The table names every file and the total.
    for name in [
        "en/jfk.wav",
        "en/highway.wav",
        "ko/session1/meeting.wav",
        "silence.wav",
        "total (4 files)",
    ] {
        assert!(stdout.contains(name), "table lacks {name}:\n{stdout}");
    }
    assert_eq!(report["skipped"][0]["file"], "no_reference.wav", "{report}");
    assert_eq!(report["failed"].as_array().unwrap().len(), 0, "{report}");

    let files = report["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["file"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "en/highway.wav",
            "en/jfk.wav",
            "ko/session1/meeting.wav",
            "silence.wav"
        ]
    );

    let mut pooled = [[0usize; 4]; 2]; // per path: word edits, words, char edits, chars
    for file in files {
        let name = file["file"].as_str().unwrap();
        let reference = file["reference_normalized"].as_str().unwrap();
        let korean = name.starts_with("ko/");
        assert_eq!(file["metric"], if korean { "cer" } else { "wer" }, "{name}");
        match name {
            "ko/session1/meeting.wav" => {
                // "3시" is read out natively, the full stop goes.
                assert_eq!(reference, "오늘 회의는 세시에 시작합니다");
                assert_eq!(file["language"], "ko");
            }
            "silence.wav" => assert_eq!(reference, ""),
            _ => {
                assert_eq!(
                    reference,
                    simple_english(file["reference"].as_str().unwrap())
                );
                assert_eq!(file["language"], "en");
            }
        }
        let audio_s = file["audio_s"].as_f64().unwrap();
        assert!(audio_s > 1.0, "{name}: {audio_s}");

        for (slot, path) in ["offline", "stream"].into_iter().enumerate() {
            let p = &file[path];
            assert!(p.is_object(), "{name}: no {path} figures: {file}");
            let finals: Vec<&str> = p["finals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            assert_eq!(p["hypothesis"], finals.join(" "), "{name} {path}");
            let hypothesis = p["hypothesis_normalized"].as_str().unwrap();
            if !korean {
                assert_eq!(
                    hypothesis,
                    simple_english(&finals.join(" ")),
                    "{name} {path}"
                );
            }
            let word_edits = levenshtein(&words(reference), &words(hypothesis));
            let char_edits = levenshtein(&chars(reference), &chars(hypothesis));
            let (n_words, n_chars) = (words(reference).len(), chars(reference).len());
            assert_rate(
                &p["wer"],
                word_edits,
                n_words,
                &format!("{name} {path} wer"),
            );
            assert_rate(
                &p["cer"],
                char_edits,
                n_chars,
                &format!("{name} {path} cer"),
            );
            let primary = if korean { &p["cer"] } else { &p["wer"] };
            assert_eq!(p["error_rate"], primary["rate"], "{name} {path}");
            for (i, n) in [word_edits, n_words, char_edits, n_chars]
                .into_iter()
                .enumerate()
            {
                pooled[slot][i] += n;
            }

            let wall = p["wall_s"].as_f64().unwrap();
            let rtf = p["rtf"].as_f64().unwrap();
            assert!(wall > 0.0, "{name} {path}: wall {wall}");
            assert!(
                (rtf - wall / audio_s).abs() < 1e-9,
                "{name} {path}: rtf {rtf}"
            );

            let hallucinated = p["hallucinated_segments"].as_u64().unwrap() as usize;
            if name == "silence.wav" {
                // On silence every final with any text is a hallucination.
                let with_text = finals
                    .iter()
                    .filter(|f| f.chars().any(char::is_alphanumeric))
                    .count();
                assert_eq!(hallucinated, with_text, "{name} {path}: {finals:?}");
            }
            if name == "en/jfk.wav" {
                assert!(
                    word_edits * 10 <= n_words,
                    "{name} {path}: JFK should be transcribed within 10 % WER: {hypothesis:?}"
                );
                assert_eq!(hallucinated, 0, "{name} {path}: {finals:?}");
            }
        }

        // streaming − offline.
        let delta = &file["delta"];
        let diff = |key: &str| {
            file["stream"][key]["rate"]
                .as_f64()
                .zip(file["offline"][key]["rate"].as_f64())
                .map(|(s, o)| s - o)
        };
        // The report rounds nothing, but computes the rates from edits and units itself: equal
        // to the last bits of a double, not bit for bit.
        for key in ["wer", "cer"] {
            match (delta[key].as_f64(), diff(key)) {
                (Some(reported), Some(expected)) => assert!(
                    (reported - expected).abs() < 1e-12,
                    "{name} {key}: {reported} vs {expected}: {delta}"
                ),
                (reported, expected) => {
                    assert_eq!(reported, expected, "{name} {key}: {delta}")
                }
            }
        }
        let rtf_diff =
            file["stream"]["rtf"].as_f64().unwrap() - file["offline"]["rtf"].as_f64().unwrap();
        assert!((delta["rtf"].as_f64().unwrap() - rtf_diff).abs() < 1e-12);
    }

    // Totals pool edits and units over the files (not a mean of per-file rates).
    let total = &report["total"];
    assert_eq!(total["files"], 4);
    for (slot, path) in ["offline", "stream"].into_iter().enumerate() {
        let [we, wn, ce, cn] = pooled[slot];
        assert_rate(&total[path]["wer"], we, wn, &format!("total {path} wer"));
        assert_rate(&total[path]["cer"], ce, cn, &format!("total {path} cer"));
        let finals: usize = files
            .iter()
            .map(|f| f[path]["finals"].as_array().unwrap().len())
            .sum();
        assert_eq!(total[path]["finals"], finals);
        let hallucinated: u64 = files
            .iter()
            .map(|f| f[path]["hallucinated_segments"].as_u64().unwrap())
            .sum();
        assert_eq!(total[path]["hallucinated_segments"], hallucinated);
        assert!(total[path]["rtf"].as_f64().unwrap() > 0.0);
    }
    assert!(total["delta"].is_object(), "{total}");
}

#[test]
fn json_on_stdout_and_one_path_only() {
    let dir = fresh_dir("eval-jfk-only");
    std::fs::copy(data_file("jfk.wav"), dir.join("jfk.wav")).unwrap();
    std::fs::write(dir.join("jfk.txt"), JFK_REFERENCE).unwrap();
    let out = sori_eval(
        &dir,
        &["--format", "json", "--offline-only", "--language", "en"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON report");
    let file = &report["files"][0];
    assert!(file["offline"].is_object(), "{file}");
    assert!(
        file["stream"].is_null(),
        "--offline-only runs no stream: {file}"
    );
    assert!(file["delta"].is_null());
    assert_eq!(report["language"], "en");
}

#[test]
fn bad_directories_and_files_get_clear_errors() {
    let missing = sori_eval(Path::new("/no/such/corpus"), &[]);
    assert!(!missing.status.success());
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(
        message.contains("does not exist") && message.contains(".wav") && message.contains(".txt"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");

    let empty = fresh_dir("eval-no-audio");
    std::fs::write(empty.join("notes.txt"), "text without audio").unwrap();
    let out = sori_eval(&empty, &[]);
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("no audio files"), "{message}");
    assert!(message.contains(".flac"), "{message}");

    // An undecodable file is reported by name with the formats accepted; the run fails.
    let broken = fresh_dir("eval-broken");
    std::fs::write(broken.join("broken.wav"), b"this is not audio at all").unwrap();
    std::fs::write(broken.join("broken.txt"), "hello").unwrap();
    let out = sori_eval(&broken, &["--offline-only"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("FAILED broken.wav") && stdout.contains("accepted formats"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 of 1 files could not be evaluated"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn forwarding_keeps_the_flags_the_usage_and_the_exit_status() {
    tools_binary();
    let sori = env!("CARGO_BIN_EXE_sori");
    let help = Command::new(sori)
        .args(["bench", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--peers",
        "--load",
        "--rag",
        "--keywords",
        "--runs",
        "--json",
    ] {
        assert!(
            text.contains(flag),
            "`sori bench --help` lacks {flag}: {text}"
        );
    }
    assert!(text.contains("Usage: sori bench"), "{text}");
    let help = Command::new(sori)
        .args(["eval", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("--offline-only") && text.contains("Usage: sori eval"),
        "{text}"
    );

    // A usage error is clap's (exit status 2), named as the user typed it.
    let out = Command::new(sori).arg("eval").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sori eval"), "{stderr}");
}

#[test]
fn a_missing_tools_binary_is_named_with_how_to_build_it() {
    let dir = fresh_dir("eval-sori-alone");
    let alone = dir.join("sori");
    std::fs::copy(env!("CARGO_BIN_EXE_sori"), &alone).unwrap();
    let out = Command::new(&alone)
        .args(["eval", "/no/such/corpus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sori-tools") && stderr.contains("cargo build --release --workspace"),
        "{stderr}"
    );
}

/// `--noise white|FILE --snr DB`: the noise is really added (the words change, and the report
/// says which noise), a recording of the user's own is looped under every file, and bad noise
/// arguments are refused with what is accepted.
#[test]
fn noise_at_a_given_snr_is_added_to_every_file() {
    let dir = fresh_dir("eval-noise");
    std::fs::copy(data_file("jfk.wav"), dir.join("jfk.wav")).unwrap();
    std::fs::write(dir.join("jfk.txt"), JFK_REFERENCE).unwrap();
    let report = |extra: &[&str]| -> Value {
        let mut args = vec!["--format", "json", "--offline-only", "--language", "en"];
        args.extend_from_slice(extra);
        let out = sori_eval(&dir, &args);
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("stdout is the JSON report")
    };
    let clean = report(&[]);
    assert!(clean["noise"].is_null(), "{}", clean["noise"]);
    let white = report(&["--noise", "white", "--snr", "0"]);
    assert_eq!(white["noise"], "white noise at 0 dB SNR");
    let hypothesis = |r: &Value| r["files"][0]["offline"]["hypothesis"].clone();
    let wer = |r: &Value| r["files"][0]["offline"]["wer"]["rate"].as_f64().unwrap();
    assert_ne!(hypothesis(&clean), hypothesis(&white), "the noise is heard");
    assert!(
        wer(&white) >= wer(&clean),
        "{} {}",
        wer(&white),
        wer(&clean)
    );

    // A recording shorter than the file (2 s of a hum), looped under all of it.
    let hum = scratch_dir().join("eval-noise-hum.wav");
    let samples: Vec<f32> = (0..32_000)
        .map(|i| 0.2 * (2.0 * std::f32::consts::PI * 120.0 * i as f32 / 16_000.0).sin())
        .collect();
    sori::audio::wav::write_wav_16k(&hum, &samples).unwrap();
    let hummed = report(&["--noise", hum.to_str().unwrap(), "--snr", "5"]);
    let label = hummed["noise"].as_str().unwrap();
    assert!(
        label.contains("eval-noise-hum") && label.contains("5 dB"),
        "{label}"
    );
    assert!(wer(&hummed) <= 0.25, "speech over a hum still reads");

    for (extra, says) in [
        (&["--noise", "white"][..], "--snr"),
        (&["--snr", "5"][..], "--noise"),
        (
            &["--noise", "white", "--snr", "200"][..],
            "from -30 to 60 dB",
        ),
        (
            &["--noise", "/no/such/hum.wav", "--snr", "5"][..],
            "/no/such/hum.wav",
        ),
    ] {
        let out = sori_eval(&dir, extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(says),
            "{extra:?}: {stderr}"
        );
    }
}
