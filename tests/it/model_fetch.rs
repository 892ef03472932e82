//! `sori model fetch`: idempotent, produces valid ggml files (checked by reading them back),
//! records checksums, and names a missing tool.

use std::process::Command;
use std::time::Instant;

use crate::support::*;
use sori::stt::convert::{read_ggml_header, read_ggml_tensor_index};

fn fetch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sori"))
        .current_dir(repo_root())
        .args(["model", "fetch", "--no-verify"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn a_second_fetch_does_nothing_and_says_what_is_ready() {
    model_path(); // the first fetch ran in the test command; fail loudly if not
    let started = Instant::now();
    let out = fetch(&[]);
    let elapsed = started.elapsed();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        !log.contains("Downloading"),
        "nothing should be downloaded again: {log}"
    );
    assert!(
        !log.contains("Converting"),
        "nothing should be converted again: {log}"
    );
    for name in [
        "ggml-base.bin",
        "ggml-base-q8_0.bin",
        "ggml-tiny.en.bin",
        "jfk.wav",
    ] {
        assert!(
            log.contains(&format!("{name} (")),
            "{name} not reported ready: {log}"
        );
    }
    // Validation reads headers and sizes, it does not rehash 300 MB every time.
    assert!(elapsed.as_secs() < 20, "idempotent fetch took {elapsed:?}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("models/manifest.json")).unwrap(),
    )
    .unwrap();
    let files = manifest["files"].as_array().unwrap();
    let base = files
        .iter()
        .find(|f| f["name"] == "ggml-base.bin")
        .expect("base in manifest");
    assert_eq!(base["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn converted_models_have_whisper_cpp_headers_and_tensors() {
    let root = repo_root().join("models");
    let base = read_ggml_header(&root.join("ggml-base.bin")).unwrap();
    assert_eq!(
        (
            base.n_vocab,
            base.n_audio_state,
            base.n_audio_layer,
            base.n_text_layer,
            base.n_mels,
            base.ftype
        ),
        (51865, 512, 6, 6, 80, 1)
    );
    assert_eq!(
        std::fs::metadata(root.join("ggml-base.bin")).unwrap().len(),
        147_951_465
    );
    let q8 = read_ggml_header(&root.join("ggml-base-q8_0.bin")).unwrap();
    assert_eq!(q8.ftype, 2007, "q8_0 with the quantization version factor");
    let tiny = read_ggml_header(&root.join("ggml-tiny.en.bin")).unwrap();
    assert_eq!(
        (tiny.n_vocab, tiny.n_audio_state, tiny.n_audio_layer),
        (51864, 384, 4)
    );

    let tensors = read_ggml_tensor_index(&root.join("ggml-base.bin")).unwrap();
    assert_eq!(tensors.len(), 245);
    assert_eq!(tensors[0].0, "encoder.positional_embedding");
    assert_eq!(tensors.last().unwrap().0, "decoder.ln.bias");
    let conv_bias = tensors
        .iter()
        .find(|t| t.0 == "encoder.conv1.bias")
        .unwrap();
    assert_eq!(
        conv_bias.1,
        vec![1, 512],
        "conv biases are (n, 1), dims innermost first"
    );
    assert!(
        !tensors.iter().any(|t| t.0.ends_with("attn.key.bias")),
        "key projections have no bias"
    );
}

#[test]
fn a_missing_tool_is_named_with_how_to_install_it() {
    let empty = scratch_dir().join("empty-models");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sori"))
        .args(["model", "fetch", "--models-dir"])
        .arg(&empty)
        .arg("--data-dir")
        .arg(&empty)
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("python3") && err.contains("apt-get install"),
        "{err}"
    );
}
