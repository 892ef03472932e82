//! End-to-end conversions of synthetic models, checked tensor by tensor.

use super::quantise::QK;
use super::*;
use crate::convert::testing::*;

/// Converts a synthetic model and checks the whole output file against it.
fn check_roundtrip(d: Dims, input: In, out: OutputType, alias_embeddings: bool) {
    let s = synth(d, input, alias_embeddings);
    let fx = fixture(&s, d.vocab - 3);
    let ggml = fx.dir.join("out.bin");
    let report = convert(&fx.model, &fx.assets, &ggml, out).unwrap();
    assert!(!tmp_path(&ggml).exists());

    let want = GgmlHparams {
        n_vocab: d.vocab as i32,
        n_audio_ctx: d.audio_ctx as i32,
        n_audio_state: d.state as i32,
        n_audio_head: d.heads as i32,
        n_audio_layer: d.enc_layers as i32,
        n_text_ctx: d.text_ctx as i32,
        n_text_state: d.state as i32,
        n_text_head: d.heads as i32,
        n_text_layer: d.dec_layers as i32,
        n_mels: d.mels as i32,
        ftype: out.header_ftype(),
    };
    assert_eq!(report.hparams, want);
    assert_eq!(read_ggml_header(&ggml).unwrap(), want);
    assert_eq!(report.bytes, fs::metadata(&ggml).unwrap().len());

    let layout = walk_ggml(&ggml).unwrap();
    assert_eq!(layout.tokens, fx.tokens);
    let bytes = fs::read(&ggml).unwrap();
    let mel_start = layout.mel_offset as usize;
    assert_eq!((layout.n_mel, layout.n_fft), (d.mels, N_FFT));
    assert_eq!(
        dequantize(0, &bytes[mel_start..mel_start + d.mels * N_FFT * 4]),
        mel_values(d.mels)
    );

    let expected = expected_tensors(d);
    assert_eq!(report.tensors, expected.len());
    assert_eq!(layout.tensors.len(), expected.len());
    let index = read_ggml_tensor_index(&ggml).unwrap();
    for ((name, shape, src, rows), t) in expected.iter().zip(&layout.tensors) {
        let ne: Vec<i64> = shape.iter().rev().map(|&x| x as i64).collect();
        assert_eq!((&t.name, &t.ne), (name, &ne), "tensor {name}");
        assert_eq!(t.ttype, expected_type(name, shape, out), "type of {name}");
        let source = &s.values[src];
        let row_len = source.len()
            / s.file
                .vars
                .iter()
                .find(|v| &v.0 == src)
                .map_or(d.vocab, |v| v.1[0]);
        let want = &source[rows.start * row_len..rows.end * row_len];
        let got = dequantize(
            t.ttype,
            &bytes[t.offset as usize..(t.offset + t.bytes) as usize],
        );
        assert_eq!(got.len(), want.len(), "length of {name}");
        for (gb, wb) in got.chunks(QK).zip(want.chunks(QK)) {
            let tol = tolerance(t.ttype, wb);
            for (g, w) in gb.iter().zip(wb) {
                assert!(
                    (g - w).abs() <= tol,
                    "{name}: got {g}, want {w} (tolerance {tol})"
                );
            }
        }
    }
    let listed: Vec<String> = index.into_iter().map(|t| t.0).collect();
    let names: Vec<String> = expected.into_iter().map(|t| t.0).collect();
    assert_eq!(listed, names);
}

#[test]
fn f32_model_converts_exactly_to_f32() {
    check_roundtrip(SMALL, In::F32, OutputType::F32, false);
}

#[test]
fn f16_model_with_128_mels_and_4_decoder_layers_converts_to_f16() {
    let turbo = Dims {
        enc_layers: 3,
        dec_layers: 4,
        mels: 128,
        ..SMALL
    };
    check_roundtrip(turbo, In::F16, OutputType::F16, false);
}

#[test]
fn int8_model_dequantizes_exactly_to_f32_through_aliases() {
    check_roundtrip(SMALL, In::Int8, OutputType::F32, true);
}

#[test]
fn int8_model_quantizes_to_q8_0() {
    let d = Dims {
        state: 64,
        dec_layers: 1,
        vocab: 70,
        ..SMALL
    };
    check_roundtrip(d, In::Int8, OutputType::Q8_0, false);
}

#[test]
fn bf16_model_quantizes_to_q5_0() {
    let d = Dims {
        state: 32,
        enc_layers: 1,
        mels: 128,
        ..SMALL
    };
    check_roundtrip(d, In::Bf16, OutputType::Q5_0, false);
}

#[test]
fn f16_model_quantizes_to_q4_0() {
    let d = Dims { state: 32, ..SMALL };
    check_roundtrip(d, In::F16, OutputType::Q4_0, false);
}

#[test]
fn f32_model_converts_to_q8_0_and_f16() {
    let d = Dims { state: 32, ..SMALL };
    check_roundtrip(d, In::F32, OutputType::Q8_0, false);
    check_roundtrip(d, In::F32, OutputType::F16, true);
}

#[test]
fn tokenizer_is_chosen_by_vocabulary_size() {
    let gpt2 = token_list(5);
    let multi = token_list(7);
    for (vocab, expected) in [(51864, &gpt2), (51865, &multi), (51866, &multi)] {
        let d = Dims {
            vocab,
            enc_layers: 1,
            dec_layers: 1,
            audio_ctx: 4,
            text_ctx: 4,
            ..SMALL
        };
        let s = synth(d, In::F16, false);
        let fx = fixture(&s, 1);
        for (file, tokens) in [("gpt2.tiktoken", &gpt2), ("multilingual.tiktoken", &multi)] {
            let refs: Vec<&[u8]> = tokens.iter().map(Vec::as_slice).collect();
            fs::write(fx.dir.join(file), tiktoken_text(&refs)).unwrap();
        }
        let assets = WhisperAssets::from_dir(&fx.dir.0);
        let out = fx.dir.join("out.bin");
        convert(&fx.model, &assets, &out, OutputType::F16).unwrap();
        assert_eq!(
            &walk_ggml(&out).unwrap().tokens,
            expected,
            "vocabulary {vocab}"
        );
    }
}

#[test]
fn refuses_a_token_list_longer_than_the_vocabulary() {
    let s = synth(SMALL, In::F16, false);
    let fx = fixture(&s, 41);
    let err = convert(
        &fx.model,
        &fx.assets,
        &fx.dir.join("o.bin"),
        OutputType::F16,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("41 tokens, more than the model's vocabulary of 40"),
        "{err}"
    );
}

#[test]
fn a_failed_conversion_keeps_the_previous_file() {
    let s = synth(SMALL, In::F16, false);
    let fx = fixture(&s, 10);
    let out = fx.dir.join("out.bin");
    fs::write(&out, b"previous").unwrap();
    fs::write(&fx.assets.mel_filters_npz, b"not a zip").unwrap();
    let err = convert(&fx.model, &fx.assets, &out, OutputType::F16).unwrap_err();
    assert!(err.to_string().contains("not a zip archive"), "{err}");
    assert_eq!(fs::read(&out).unwrap(), b"previous");
}
