//! The tensor plan: which rows of which CT2 variable become which openai-whisper tensor, in
//! `state_dict` order, and in which ggml type.

use std::ops::Range;

use super::error::ConvertError;
use super::ggml::GgmlType;
use super::quantise::QK;
use super::reader::Ct2Model;
use super::{GgmlHparams, OutputType};

/// One output tensor: rows of a CT2 variable written under an openai-whisper name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Planned {
    pub(crate) name: String,
    pub(crate) source: String,
    pub(crate) rows: Range<usize>,
    /// Output shape in PyTorch order (the file stores it reversed).
    pub(crate) shape: Vec<usize>,
    pub(crate) ty: GgmlType,
}

/// Builds the output tensor list in openai-whisper `state_dict` order, checking every source
/// shape first so a malformed model fails before anything is written.
struct Planner<'a> {
    model: &'a Ct2Model,
    out: OutputType,
    list: Vec<Planned>,
}

impl Planner<'_> {
    fn expect(&self, source: &str, shape: &[usize]) -> Result<(), ConvertError> {
        let var = self.model.var(source)?;
        if var.shape != shape {
            return Err(ConvertError::BadShape {
                name: source.into(),
                found: var.shape.clone(),
                expected: format!("{shape:?}"),
            });
        }
        Ok(())
    }

    /// Picks the tensor type the way whisper.cpp's converter and quantizer do: 1-D tensors,
    /// conv biases and positional embeddings stay f32, 3-D conv kernels are never quantized.
    fn push(
        &mut self,
        name: String,
        source: &str,
        rows: Range<usize>,
        shape: Vec<usize>,
        keep_f32: bool,
    ) -> Result<(), ConvertError> {
        let ty = match shape.len() {
            _ if keep_f32 => GgmlType::F32,
            0 | 1 => GgmlType::F32,
            2 => self.out.matrix_type(),
            _ => self.out.conv_type(),
        };
        let row_len = shape.last().copied().unwrap_or(1);
        if ty.is_quantized() && !row_len.is_multiple_of(QK) {
            return Err(ConvertError::NotQuantizable {
                name,
                row_len,
                out: self.out,
            });
        }
        self.list.push(Planned {
            name,
            source: self.model.var(source)?.name.clone(),
            rows,
            shape,
            ty,
        });
        Ok(())
    }

    fn whole(
        &mut self,
        name: &str,
        source: &str,
        shape: &[usize],
        keep_f32: bool,
    ) -> Result<(), ConvertError> {
        self.expect(source, shape)?;
        self.push(name.into(), source, 0..shape[0], shape.to_vec(), keep_f32)
    }

    /// `linear` weight `[rows, cols]` and bias `[rows]` → `<out>.weight`, `<out>.bias`.
    fn linear(
        &mut self,
        out: &str,
        source: &str,
        rows: usize,
        cols: usize,
    ) -> Result<(), ConvertError> {
        self.whole(
            &format!("{out}.weight"),
            &format!("{source}/weight"),
            &[rows, cols],
            false,
        )?;
        self.whole(
            &format!("{out}.bias"),
            &format!("{source}/bias"),
            &[rows],
            false,
        )
    }

    fn layer_norm(&mut self, out: &str, source: &str, n: usize) -> Result<(), ConvertError> {
        self.whole(
            &format!("{out}.weight"),
            &format!("{source}/gamma"),
            &[n],
            false,
        )?;
        self.whole(
            &format!("{out}.bias"),
            &format!("{source}/beta"),
            &[n],
            false,
        )
    }

    /// Splits a linear fused along its output rows into `names.len()` projections of `n` rows.
    /// `None` names a part that has no bias in openai-whisper: the key projection. Dropping
    /// CT2's (zero) key bias is exact anyway: q·b_k is the same for every key, and softmax
    /// ignores a constant shift.
    fn fused(
        &mut self,
        out: &str,
        source: &str,
        parts: &[(&str, bool)],
        n: usize,
    ) -> Result<(), ConvertError> {
        let k = parts.len();
        let (w, b) = (format!("{source}/weight"), format!("{source}/bias"));
        self.expect(&w, &[k * n, n])?;
        self.expect(&b, &[k * n])?;
        for (i, &(part, has_bias)) in parts.iter().enumerate() {
            let rows = i * n..(i + 1) * n;
            self.push(
                format!("{out}.{part}.weight"),
                &w,
                rows.clone(),
                vec![n, n],
                false,
            )?;
            if has_bias {
                self.push(format!("{out}.{part}.bias"), &b, rows, vec![n], false)?;
            }
        }
        Ok(())
    }

    fn self_attention(&mut self, out: &str, source: &str, n: usize) -> Result<(), ConvertError> {
        let qkv = [("query", true), ("key", false), ("value", true)];
        self.fused(out, &format!("{source}/linear_0"), &qkv, n)?;
        self.linear(&format!("{out}.out"), &format!("{source}/linear_1"), n, n)
    }

    fn cross_attention(&mut self, out: &str, source: &str, n: usize) -> Result<(), ConvertError> {
        self.linear(&format!("{out}.query"), &format!("{source}/linear_0"), n, n)?;
        let kv = [("key", false), ("value", true)];
        self.fused(out, &format!("{source}/linear_1"), &kv, n)?;
        self.linear(&format!("{out}.out"), &format!("{source}/linear_2"), n, n)
    }

    fn mlp(&mut self, out: &str, source: &str, n: usize) -> Result<(), ConvertError> {
        self.linear(
            &format!("{out}.mlp.0"),
            &format!("{source}/ffn/linear_0"),
            4 * n,
            n,
        )?;
        self.linear(
            &format!("{out}.mlp.2"),
            &format!("{source}/ffn/linear_1"),
            n,
            4 * n,
        )?;
        self.layer_norm(
            &format!("{out}.mlp_ln"),
            &format!("{source}/ffn/layer_norm"),
            n,
        )
    }

    fn encoder(&mut self, hp: &GgmlHparams) -> Result<(), ConvertError> {
        let (n, ctx, mels) = (
            hp.n_audio_state as usize,
            hp.n_audio_ctx as usize,
            hp.n_mels as usize,
        );
        self.whole(
            "encoder.positional_embedding",
            "encoder/position_encodings/encodings",
            &[ctx, n],
            true,
        )?;
        for (i, inputs) in [(1, mels), (2, n)] {
            let (w, b) = (
                format!("encoder/conv{i}/weight"),
                format!("encoder/conv{i}/bias"),
            );
            self.whole(
                &format!("encoder.conv{i}.weight"),
                &w,
                &[n, inputs, 3],
                false,
            )?;
            self.expect(&b, &[n])?;
            self.push(format!("encoder.conv{i}.bias"), &b, 0..n, vec![n, 1], true)?;
        }
        for l in 0..hp.n_audio_layer {
            let (out, src) = (format!("encoder.blocks.{l}"), format!("encoder/layer_{l}"));
            self.self_attention(&format!("{out}.attn"), &format!("{src}/self_attention"), n)?;
            self.layer_norm(
                &format!("{out}.attn_ln"),
                &format!("{src}/self_attention/layer_norm"),
                n,
            )?;
            self.mlp(&out, &src, n)?;
        }
        self.layer_norm("encoder.ln_post", "encoder/layer_norm", n)
    }

    fn decoder(&mut self, hp: &GgmlHparams) -> Result<(), ConvertError> {
        let (n, ctx, vocab) = (
            hp.n_text_state as usize,
            hp.n_text_ctx as usize,
            hp.n_vocab as usize,
        );
        self.whole(
            "decoder.positional_embedding",
            "decoder/position_encodings/encodings",
            &[ctx, n],
            true,
        )?;
        self.whole(
            "decoder.token_embedding.weight",
            "decoder/embeddings/weight",
            &[vocab, n],
            false,
        )?;
        for l in 0..hp.n_text_layer {
            let (out, src) = (format!("decoder.blocks.{l}"), format!("decoder/layer_{l}"));
            self.self_attention(&format!("{out}.attn"), &format!("{src}/self_attention"), n)?;
            self.layer_norm(
                &format!("{out}.attn_ln"),
                &format!("{src}/self_attention/layer_norm"),
                n,
            )?;
            self.cross_attention(&format!("{out}.cross_attn"), &format!("{src}/attention"), n)?;
            self.layer_norm(
                &format!("{out}.cross_attn_ln"),
                &format!("{src}/attention/layer_norm"),
                n,
            )?;
            self.mlp(&out, &src, n)?;
        }
        self.layer_norm("decoder.ln", "decoder/layer_norm", n)
    }
}

/// The whole plan for a model with header `hp`, written as `out`.
pub(crate) fn plan_tensors(
    model: &Ct2Model,
    hp: &GgmlHparams,
    out: OutputType,
) -> Result<Vec<Planned>, ConvertError> {
    let mut planner = Planner {
        model,
        out,
        list: Vec::new(),
    };
    planner.encoder(hp)?;
    planner.decoder(hp)?;
    Ok(planner.list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::convert;
    use crate::convert::testing::*;

    #[test]
    fn refuses_missing_variables() {
        let mut s = synth(SMALL, In::F16, false);
        s.file.remove("encoder/layer_1/ffn/linear_0/bias");
        let msg = convert_error(&s).to_string();
        assert!(msg.contains("`encoder/layer_1/ffn/linear_0/bias`"), "{msg}");

        let mut s = synth(SMALL, In::F16, false);
        s.file.remove("decoder/position_encodings/encodings");
        let msg = convert_error(&s).to_string();
        assert!(
            msg.contains("no variable `decoder/position_encodings/encodings`"),
            "{msg}"
        );
    }

    #[test]
    fn refuses_wrong_shapes() {
        let mut s = synth(SMALL, In::F32, false);
        let var = s
            .file
            .vars
            .iter_mut()
            .find(|v| v.0 == "decoder/layer_1/ffn/linear_1/weight")
            .unwrap();
        var.1 = vec![16, 16];
        let msg = convert_error(&s).to_string();
        assert!(msg.contains("[16, 16]") && msg.contains("[8, 32]"), "{msg}");
    }

    #[test]
    fn refuses_rows_that_do_not_fill_quantization_blocks() {
        let s = synth(SMALL, In::F16, false);
        let fx = fixture(&s, 10);
        let err = convert(
            &fx.model,
            &fx.assets,
            &fx.dir.join("q.bin"),
            OutputType::Q8_0,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("rows of 8 values, but q8_0 needs a multiple of 32"),
            "{err}"
        );
    }
}
