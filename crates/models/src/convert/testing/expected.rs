//! What a converted synthetic model must hold: openai-whisper's tensor list, each tensor's
//! ggml type, and the ggml data decoded back to f32 with the error each type may add.

use std::ops::Range;

use half::f16;

use super::Dims;
use crate::convert::OutputType;

/// One expected tensor: openai-whisper name, PyTorch shape, CT2 source variable, its rows.
pub(crate) type ExpectedTensor = (String, Vec<usize>, String, Range<usize>);

/// The tensors openai-whisper's state_dict holds, in order. Written out name by name rather
/// than derived from the converter's plan, so the two check each other.
pub(crate) fn expected_tensors(d: Dims) -> Vec<ExpectedTensor> {
    let n = d.state;
    let mut t = Tensors(Vec::new());
    let pe = "encoder/position_encodings/encodings";
    t.add(
        "encoder.positional_embedding",
        &[d.audio_ctx, n],
        pe,
        0..d.audio_ctx,
    );
    t.add(
        "encoder.conv1.weight",
        &[n, d.mels, 3],
        "encoder/conv1/weight",
        0..n,
    );
    t.add("encoder.conv1.bias", &[n, 1], "encoder/conv1/bias", 0..n);
    t.add(
        "encoder.conv2.weight",
        &[n, n, 3],
        "encoder/conv2/weight",
        0..n,
    );
    t.add("encoder.conv2.bias", &[n, 1], "encoder/conv2/bias", 0..n);
    for l in 0..d.enc_layers {
        let (o, p) = (format!("encoder.blocks.{l}"), format!("encoder/layer_{l}"));
        t.self_attention(&o, &p, n);
        t.mlp(&o, &p, n);
    }
    t.add(
        "encoder.ln_post.weight",
        &[n],
        "encoder/layer_norm/gamma",
        0..n,
    );
    t.add(
        "encoder.ln_post.bias",
        &[n],
        "encoder/layer_norm/beta",
        0..n,
    );
    let pe = "decoder/position_encodings/encodings";
    t.add(
        "decoder.positional_embedding",
        &[d.text_ctx, n],
        pe,
        0..d.text_ctx,
    );
    let emb = "decoder/embeddings/weight";
    t.add(
        "decoder.token_embedding.weight",
        &[d.vocab, n],
        emb,
        0..d.vocab,
    );
    for l in 0..d.dec_layers {
        let (o, p) = (format!("decoder.blocks.{l}"), format!("decoder/layer_{l}"));
        t.self_attention(&o, &p, n);
        t.cross_attention(&o, &p, n);
        t.mlp(&o, &p, n);
    }
    t.add("decoder.ln.weight", &[n], "decoder/layer_norm/gamma", 0..n);
    t.add("decoder.ln.bias", &[n], "decoder/layer_norm/beta", 0..n);
    t.0
}

/// [`expected_tensors`] under construction.
struct Tensors(Vec<ExpectedTensor>);

impl Tensors {
    fn add(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        src: impl Into<String>,
        rows: Range<usize>,
    ) {
        self.0.push((name.into(), shape.to_vec(), src.into(), rows));
    }

    /// `<o>.attn.*` and `<o>.attn_ln.*` from the fused `<p>/self_attention/linear_0` (query,
    /// key without bias, value) and `linear_1` (out).
    fn self_attention(&mut self, o: &str, p: &str, n: usize) {
        let sa = format!("{p}/self_attention");
        let (qkv_w, qkv_b) = (
            format!("{sa}/linear_0/weight"),
            format!("{sa}/linear_0/bias"),
        );
        self.add(format!("{o}.attn.query.weight"), &[n, n], &qkv_w, 0..n);
        self.add(format!("{o}.attn.query.bias"), &[n], &qkv_b, 0..n);
        self.add(format!("{o}.attn.key.weight"), &[n, n], &qkv_w, n..2 * n);
        self.add(
            format!("{o}.attn.value.weight"),
            &[n, n],
            &qkv_w,
            2 * n..3 * n,
        );
        self.add(format!("{o}.attn.value.bias"), &[n], &qkv_b, 2 * n..3 * n);
        self.add(
            format!("{o}.attn.out.weight"),
            &[n, n],
            format!("{sa}/linear_1/weight"),
            0..n,
        );
        self.add(
            format!("{o}.attn.out.bias"),
            &[n],
            format!("{sa}/linear_1/bias"),
            0..n,
        );
        self.add(
            format!("{o}.attn_ln.weight"),
            &[n],
            format!("{sa}/layer_norm/gamma"),
            0..n,
        );
        self.add(
            format!("{o}.attn_ln.bias"),
            &[n],
            format!("{sa}/layer_norm/beta"),
            0..n,
        );
    }

    /// `<o>.cross_attn.*` and `<o>.cross_attn_ln.*` from `<p>/attention`: `linear_0` (query),
    /// the fused `linear_1` (key without bias, value) and `linear_2` (out).
    fn cross_attention(&mut self, o: &str, p: &str, n: usize) {
        let ca = format!("{p}/attention");
        let (kv_w, kv_b) = (
            format!("{ca}/linear_1/weight"),
            format!("{ca}/linear_1/bias"),
        );
        let x = format!("{o}.cross_attn");
        self.add(
            format!("{x}.query.weight"),
            &[n, n],
            format!("{ca}/linear_0/weight"),
            0..n,
        );
        self.add(
            format!("{x}.query.bias"),
            &[n],
            format!("{ca}/linear_0/bias"),
            0..n,
        );
        self.add(format!("{x}.key.weight"), &[n, n], &kv_w, 0..n);
        self.add(format!("{x}.value.weight"), &[n, n], &kv_w, n..2 * n);
        self.add(format!("{x}.value.bias"), &[n], &kv_b, n..2 * n);
        self.add(
            format!("{x}.out.weight"),
            &[n, n],
            format!("{ca}/linear_2/weight"),
            0..n,
        );
        self.add(
            format!("{x}.out.bias"),
            &[n],
            format!("{ca}/linear_2/bias"),
            0..n,
        );
        self.add(
            format!("{x}_ln.weight"),
            &[n],
            format!("{ca}/layer_norm/gamma"),
            0..n,
        );
        self.add(
            format!("{x}_ln.bias"),
            &[n],
            format!("{ca}/layer_norm/beta"),
            0..n,
        );
    }

    /// `<o>.mlp.0`, `<o>.mlp.2` and `<o>.mlp_ln` from `<p>/ffn`.
    fn mlp(&mut self, o: &str, p: &str, n: usize) {
        let f = format!("{p}/ffn");
        self.add(
            format!("{o}.mlp.0.weight"),
            &[4 * n, n],
            format!("{f}/linear_0/weight"),
            0..4 * n,
        );
        self.add(
            format!("{o}.mlp.0.bias"),
            &[4 * n],
            format!("{f}/linear_0/bias"),
            0..4 * n,
        );
        self.add(
            format!("{o}.mlp.2.weight"),
            &[n, 4 * n],
            format!("{f}/linear_1/weight"),
            0..n,
        );
        self.add(
            format!("{o}.mlp.2.bias"),
            &[n],
            format!("{f}/linear_1/bias"),
            0..n,
        );
        self.add(
            format!("{o}.mlp_ln.weight"),
            &[n],
            format!("{f}/layer_norm/gamma"),
            0..n,
        );
        self.add(
            format!("{o}.mlp_ln.bias"),
            &[n],
            format!("{f}/layer_norm/beta"),
            0..n,
        );
    }
}

/// The ggml type whisper.cpp expects for a tensor of a file written as `out`.
pub(crate) fn expected_type(name: &str, shape: &[usize], out: OutputType) -> i32 {
    let keep_f32 = name.ends_with("positional_embedding")
        || name.ends_with("conv1.bias")
        || name.ends_with("conv2.bias");
    match (shape.len(), out) {
        _ if keep_f32 => 0,
        (1, _) => 0,
        (3, OutputType::F32) => 0,
        (3, _) => 1,
        (_, OutputType::F32) => 0,
        (_, OutputType::F16) => 1,
        (_, OutputType::Q8_0) => 8,
        (_, OutputType::Q5_0) => 6,
        (_, OutputType::Q4_0) => 2,
    }
}

/// The f16 at the start of `b`, as f32.
pub(crate) fn f16_at(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Decodes ggml tensor data back to f32, for checking.
pub(crate) fn dequantize(ttype: i32, data: &[u8]) -> Vec<f32> {
    match ttype {
        0 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        1 => data.chunks_exact(2).map(f16_at).collect(),
        8 => data
            .chunks_exact(34)
            .flat_map(|b| {
                let d = f16_at(b);
                b[2..].iter().map(move |&q| f32::from(q as i8) * d)
            })
            .collect(),
        6 => data
            .chunks_exact(22)
            .flat_map(|b| {
                let d = f16_at(b);
                let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                let qs = &b[6..22];
                let lo = (0..16)
                    .map(move |j| ((qs[j] & 0x0f) as u32 | ((qh >> j) & 1) << 4) as i32 - 16);
                let hi = (0..16)
                    .map(move |j| ((qs[j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4) as i32 - 16);
                lo.chain(hi).map(move |q| q as f32 * d).collect::<Vec<_>>()
            })
            .collect(),
        2 => data
            .chunks_exact(18)
            .flat_map(|b| {
                let d = f16_at(b);
                let qs = &b[2..18];
                let lo = (0..16).map(move |j| (qs[j] & 0x0f) as i32 - 8);
                let hi = (0..16).map(move |j| (qs[j] >> 4) as i32 - 8);
                lo.chain(hi).map(move |q| q as f32 * d).collect::<Vec<_>>()
            })
            .collect(),
        t => panic!("unexpected type {t}"),
    }
}

/// Largest error a block may have after quantization: half a step (plus the f16 rounding of
/// the step) for q8_0; a full step for q5_0, whose code range is clipped at the top.
pub(crate) fn tolerance(ttype: i32, block: &[f32]) -> f32 {
    let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    match ttype {
        0 => 0.0,
        1 => amax * 1e-3,
        8 => amax / 127.0 * 0.6,
        6 => amax / 16.0 * 1.05,
        2 => amax / 8.0 * 1.05,
        t => panic!("unexpected type {t}"),
    }
}
