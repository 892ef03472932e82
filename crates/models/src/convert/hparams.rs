//! The ggml header's hyperparameters, read off a CT2 model's tensor shapes, and the check of
//! its `config.json` against them.

use std::fs;
use std::path::Path;

use super::error::{ConvertError, io_error};
use super::reader::Ct2Model;
use super::{GgmlHparams, OutputType};

/// The `[rows, cols]` of a non-empty 2-D variable.
fn shape_2d(model: &Ct2Model, name: &str) -> Result<(usize, usize), ConvertError> {
    let var = model.var(name)?;
    match var.shape[..] {
        [a, b] if a > 0 && b > 0 => Ok((a, b)),
        _ => Err(ConvertError::BadShape {
            name: name.into(),
            found: var.shape.clone(),
            expected: "a non-empty 2-D tensor".into(),
        }),
    }
}

/// A size as a ggml header integer.
pub(crate) fn to_i32(what: &str, v: usize) -> Result<i32, ConvertError> {
    i32::try_from(v).map_err(|_| {
        ConvertError::Inconsistent(format!("{what} is {v}, too large for a ggml header"))
    })
}

/// Reads `<side>/num_heads`; models without it get Whisper's fixed head width of 64.
fn head_count(model: &mut Ct2Model, side: &str, state: usize) -> Result<usize, ConvertError> {
    let name = format!("{side}/num_heads");
    let heads = match model.read_int_scalar(&name)? {
        Some(h) => usize::try_from(h).unwrap_or(0),
        None => {
            tracing::warn!(%name, "variable missing; assuming 64-wide attention heads");
            state / 64
        }
    };
    if heads == 0 || !state.is_multiple_of(heads) {
        return Err(ConvertError::Inconsistent(format!(
            "{side} has {heads} attention heads, which do not divide its width {state}"
        )));
    }
    Ok(heads)
}

/// Reads the hyperparameters off the tensors' shapes and the `num_heads` scalars.
pub(crate) fn infer_hparams(
    model: &mut Ct2Model,
    out: OutputType,
) -> Result<GgmlHparams, ConvertError> {
    let (audio_ctx, audio_state) = shape_2d(model, "encoder/position_encodings/encodings")?;
    let conv1 = model.var("encoder/conv1/weight")?;
    let n_mels = match conv1.shape[..] {
        [s, m, 3] if s == audio_state && m > 0 => m,
        _ => {
            return Err(ConvertError::BadShape {
                name: conv1.name.clone(),
                found: conv1.shape.clone(),
                expected: format!("[{audio_state}, n_mels, 3]"),
            });
        }
    };
    let (n_vocab, text_state) = shape_2d(model, "decoder/embeddings/weight")?;
    let (text_ctx, pe_state) = shape_2d(model, "decoder/position_encodings/encodings")?;
    if pe_state != text_state || text_state != audio_state {
        return Err(ConvertError::Inconsistent(format!(
            "the encoder is {audio_state} wide but the decoder embeddings are {text_state} and its \
             position encodings {pe_state} wide; whisper.cpp needs one width"
        )));
    }
    let audio_layers = model.count_layers("encoder")?;
    let text_layers = model.count_layers("decoder")?;
    let audio_heads = head_count(model, "encoder", audio_state)?;
    let text_heads = head_count(model, "decoder", text_state)?;
    Ok(GgmlHparams {
        n_vocab: to_i32("n_vocab", n_vocab)?,
        n_audio_ctx: to_i32("n_audio_ctx", audio_ctx)?,
        n_audio_state: to_i32("n_audio_state", audio_state)?,
        n_audio_head: to_i32("n_audio_head", audio_heads)?,
        n_audio_layer: to_i32("n_audio_layer", audio_layers)?,
        n_text_ctx: to_i32("n_text_ctx", text_ctx)?,
        n_text_state: to_i32("n_text_state", text_state)?,
        n_text_head: to_i32("n_text_head", text_heads)?,
        n_text_layer: to_i32("n_text_layer", text_layers)?,
        n_mels: to_i32("n_mels", n_mels)?,
        ftype: out.header_ftype(),
    })
}

/// Checks the CT2 `config.json` (token ids, alignment heads) against the tensors, so a config
/// from a different model is caught before the file is written.
pub(crate) fn check_config(path: &Path, hp: &GgmlHparams) -> Result<(), ConvertError> {
    let fail = |reason: String| ConvertError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let text = fs::read_to_string(path).map_err(io_error("read", path))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("it is not valid JSON ({e})")))?;
    for key in ["lang_ids", "suppress_ids", "suppress_ids_begin"] {
        let Some(ids) = json.get(key).and_then(|v| v.as_array()) else {
            continue;
        };
        for id in ids {
            let id = id
                .as_i64()
                .ok_or_else(|| fail(format!("{key} holds {id}, not a token id")))?;
            if id >= i64::from(hp.n_vocab) {
                return Err(fail(format!(
                    "{key} lists token {id}, but the model has {} tokens",
                    hp.n_vocab
                )));
            }
        }
    }
    if let Some(heads) = json.get("alignment_heads").and_then(|v| v.as_array()) {
        for pair in heads {
            let (layer, head) = match pair.as_array().map(Vec::as_slice) {
                Some([l, h]) => (l.as_i64().unwrap_or(-1), h.as_i64().unwrap_or(-1)),
                _ => (-1, -1),
            };
            let fits = (0..i64::from(hp.n_text_layer)).contains(&layer)
                && (0..i64::from(hp.n_text_head)).contains(&head);
            if !fits {
                return Err(fail(format!(
                    "alignment head {pair} is outside the decoder's {} layers of {} heads",
                    hp.n_text_layer, hp.n_text_head
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::convert;
    use crate::convert::testing::*;

    #[test]
    fn refuses_a_config_from_another_model() {
        let s = synth(SMALL, In::F16, false);
        let fx = fixture(&s, 10);
        let out = fx.dir.join("out.bin");
        fs::write(
            fx.dir.join("config.json"),
            r#"{"lang_ids": [3, 41], "suppress_ids": []}"#,
        )
        .unwrap();
        let msg = convert(&fx.model, &fx.assets, &out, OutputType::F16)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("lang_ids lists token 41, but the model has 40 tokens"),
            "{msg}"
        );

        fs::write(
            fx.dir.join("config.json"),
            r#"{"alignment_heads": [[1, 1], [2, 0]]}"#,
        )
        .unwrap();
        let msg = convert(&fx.model, &fx.assets, &out, OutputType::F16)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("alignment head [2,0]"), "{msg}");

        fs::write(
            fx.dir.join("config.json"),
            r#"{"alignment_heads": [[1, 1]], "lang_ids": [39]}"#,
        )
        .unwrap();
        convert(&fx.model, &fx.assets, &out, OutputType::F16).unwrap();
    }
}
