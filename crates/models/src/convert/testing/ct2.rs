//! Synthetic CTranslate2 Whisper models: every variable faster-whisper writes, filled with
//! deterministic values, stored as f32, f16, bf16 or int8.

use std::collections::HashMap;

use half::{bf16, f16};

use super::Lcg;

/// How the synthetic model stores its floats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum In {
    F32,
    F16,
    Bf16,
    /// 2-D weights as i8 with a per-row `weight_scale`, the rest f16 (CT2 `int8_float16`).
    Int8,
}

/// The sizes of a synthetic model.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub(crate) state: usize,
    pub(crate) heads: usize,
    pub(crate) enc_layers: usize,
    pub(crate) dec_layers: usize,
    pub(crate) mels: usize,
    pub(crate) vocab: usize,
    pub(crate) audio_ctx: usize,
    pub(crate) text_ctx: usize,
}

/// A model small enough to convert in a blink.
pub(crate) const SMALL: Dims = Dims {
    state: 8,
    heads: 2,
    enc_layers: 2,
    dec_layers: 2,
    mels: 80,
    vocab: 40,
    audio_ctx: 10,
    text_ctx: 6,
};

/// A CT2 model.bin under construction.
pub(crate) struct Ct2File {
    pub(crate) version: u32,
    pub(crate) spec: String,
    pub(crate) vars: Vec<(String, Vec<usize>, u8, Vec<u8>)>,
    pub(crate) aliases: Vec<(String, String)>,
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

impl Ct2File {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.version.to_le_bytes());
        put_string(&mut out, &self.spec);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
        for (name, shape, code, data) in &self.vars {
            put_string(&mut out, name);
            out.push(shape.len() as u8);
            shape
                .iter()
                .for_each(|d| out.extend_from_slice(&(*d as u32).to_le_bytes()));
            out.push(*code);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
        for (alias, target) in &self.aliases {
            put_string(&mut out, alias);
            put_string(&mut out, target);
        }
        out
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.vars.retain(|v| v.0 != name);
    }
}

/// A synthetic Whisper model and the float values the converter should read from it.
pub(crate) struct Synth {
    pub(crate) file: Ct2File,
    pub(crate) values: HashMap<String, Vec<f32>>,
    pub(crate) rng: Lcg,
    pub(crate) input: In,
}

impl Synth {
    /// Adds a float variable; returns nothing, records the decoded reference values.
    pub(crate) fn put(&mut self, name: &str, shape: &[usize]) {
        let values = self.rng.take(shape.iter().product());
        let (code, data, reference) = match self.input {
            In::Int8 if name.ends_with("/weight") && shape.len() == 2 => {
                self.put_int8(name, shape, &values)
            }
            In::F32 => (
                0,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                values,
            ),
            In::Bf16 => {
                let b: Vec<bf16> = values.iter().map(|v| bf16::from_f32(*v)).collect();
                (
                    5,
                    b.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    b.iter().map(|v| v.to_f32()).collect(),
                )
            }
            In::F16 | In::Int8 => {
                let h: Vec<f16> = values.iter().map(|v| f16::from_f32(*v)).collect();
                (
                    4,
                    h.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    h.iter().map(|v| v.to_f32()).collect(),
                )
            }
        };
        self.file
            .vars
            .push((name.into(), shape.to_vec(), code, data));
        self.values.insert(name.into(), reference);
    }

    /// CT2's int8 quantization: per row, scale = 127 / amax, q = round(x * scale).
    pub(crate) fn put_int8(
        &mut self,
        name: &str,
        shape: &[usize],
        values: &[f32],
    ) -> (u8, Vec<u8>, Vec<f32>) {
        let mut scales = Vec::new();
        let mut q = Vec::new();
        let mut reference = Vec::new();
        for row in values.chunks(shape[1]) {
            let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if amax == 0.0 { 1.0 } else { 127.0 / amax };
            scales.push(scale);
            for v in row {
                let qi = (v * scale).round().clamp(-127.0, 127.0) as i8;
                q.push(qi as u8);
                reference.push(f32::from(qi) / scale);
            }
        }
        let scale_bytes = scales.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.file
            .vars
            .push((format!("{name}_scale"), vec![shape[0]], 0, scale_bytes));
        (1, q, reference)
    }

    pub(crate) fn put_i16(&mut self, name: &str, v: i16) {
        self.file
            .vars
            .push((name.into(), vec![], 2, v.to_le_bytes().to_vec()));
    }

    pub(crate) fn linear(&mut self, prefix: &str, rows: usize, cols: usize) {
        self.put(&format!("{prefix}/weight"), &[rows, cols]);
        self.put(&format!("{prefix}/bias"), &[rows]);
    }

    pub(crate) fn layer_norm(&mut self, prefix: &str, n: usize) {
        self.put(&format!("{prefix}/gamma"), &[n]);
        self.put(&format!("{prefix}/beta"), &[n]);
    }
}

/// Builds a faster-whisper-shaped model; with `alias_embeddings` the embeddings are stored
/// under `decoder/projection/weight` and reached through an alias.
pub(crate) fn synth(d: Dims, input: In, alias_embeddings: bool) -> Synth {
    let mut s = Synth {
        file: Ct2File {
            version: 6,
            spec: "WhisperSpec".into(),
            vars: Vec::new(),
            aliases: Vec::new(),
        },
        values: HashMap::new(),
        rng: Lcg(d.state as u64 * 31 + d.vocab as u64),
        input,
    };
    let n = d.state;
    s.put("encoder/conv1/weight", &[n, d.mels, 3]);
    s.put("encoder/conv1/bias", &[n]);
    s.put("encoder/conv2/weight", &[n, n, 3]);
    s.put("encoder/conv2/bias", &[n]);
    s.put("encoder/position_encodings/encodings", &[d.audio_ctx, n]);
    s.put_i16("encoder/num_heads", d.heads as i16);
    for l in 0..d.enc_layers {
        let p = format!("encoder/layer_{l}");
        s.linear(&format!("{p}/self_attention/linear_0"), 3 * n, n);
        s.linear(&format!("{p}/self_attention/linear_1"), n, n);
        s.layer_norm(&format!("{p}/self_attention/layer_norm"), n);
        s.linear(&format!("{p}/ffn/linear_0"), 4 * n, n);
        s.linear(&format!("{p}/ffn/linear_1"), n, 4 * n);
        s.layer_norm(&format!("{p}/ffn/layer_norm"), n);
    }
    s.layer_norm("encoder/layer_norm", n);
    let embeddings = if alias_embeddings {
        s.file.aliases.push((
            "decoder/embeddings/weight".into(),
            "decoder/projection/weight".into(),
        ));
        "decoder/projection/weight"
    } else {
        s.file.aliases.push((
            "decoder/projection/weight".into(),
            "decoder/embeddings/weight".into(),
        ));
        "decoder/embeddings/weight"
    };
    s.put(embeddings, &[d.vocab, n]);
    if alias_embeddings {
        let v = s.values.remove(embeddings).unwrap();
        s.values.insert("decoder/embeddings/weight".into(), v);
    }
    s.put("decoder/position_encodings/encodings", &[d.text_ctx, n]);
    s.put_i16("decoder/num_heads", d.heads as i16);
    s.file
        .vars
        .push(("decoder/activation".into(), vec![], 1, vec![3]));
    for l in 0..d.dec_layers {
        let p = format!("decoder/layer_{l}");
        s.linear(&format!("{p}/self_attention/linear_0"), 3 * n, n);
        s.linear(&format!("{p}/self_attention/linear_1"), n, n);
        s.layer_norm(&format!("{p}/self_attention/layer_norm"), n);
        s.linear(&format!("{p}/attention/linear_0"), n, n);
        s.linear(&format!("{p}/attention/linear_1"), 2 * n, n);
        s.linear(&format!("{p}/attention/linear_2"), n, n);
        s.layer_norm(&format!("{p}/attention/layer_norm"), n);
        s.linear(&format!("{p}/ffn/linear_0"), 4 * n, n);
        s.linear(&format!("{p}/ffn/linear_1"), n, 4 * n);
        s.layer_norm(&format!("{p}/ffn/layer_norm"), n);
    }
    s.layer_norm("decoder/layer_norm", n);
    // CT2 writes variables sorted by name.
    s.file.vars.sort_by(|a, b| a.0.cmp(&b.0));
    s
}
