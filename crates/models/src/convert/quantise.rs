//! Tensor data encoders: f32, f16, and ggml's `q8_0`, `q5_0` and `q4_0` blocks, bit for bit as
//! ggml's reference quantizers (`quantize_row_*_ref`) write them.

use half::f16;

use super::ggml::GgmlType;

/// Elements per block in ggml's `q8_0`, `q5_0` and `q4_0` formats.
pub(crate) const QK: usize = 32;

/// ggml's `quantize_row_q8_0_ref` for one block: f16 scale `amax/127`, then 32 rounded i8.
fn quantize_block_q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    // `as i8` saturates; |x * id| <= 127 here, as in ggml's roundf-to-int8 store.
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
}

/// The value of largest magnitude, sign kept (the first one on a tie, as ggml's loop picks).
fn largest_magnitude(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// ggml's `quantize_row_q5_0_ref` for one block: scale `max/-16` from the value of largest
/// magnitude (sign kept), 5-bit codes offset by 16; low nibbles packed in pairs (j, j+16),
/// fifth bits in a u32.
fn quantize_block_q5_0(x: &[f32], out: &mut Vec<u8>) {
    let d = largest_magnitude(x) / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    // C's `(int8_t)(x + 16.5f)` truncates toward zero, then `MIN(31, …)` clamps the top.
    let code = |v: f32| ((v * id + 16.5) as i8).min(31) as u8;
    let half = QK / 2;
    let mut qh: u32 = 0;
    let mut qs = [0u8; QK / 2];
    for j in 0..half {
        let (c0, c1) = (code(x[j]), code(x[j + half]));
        qs[j] = (c0 & 0x0f) | ((c1 & 0x0f) << 4);
        qh |= u32::from((c0 & 0x10) >> 4) << j;
        qh |= u32::from((c1 & 0x10) >> 4) << (j + half);
    }
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}

/// ggml's `quantize_row_q4_0_ref` for one block: scale `max/-8` from the value of largest
/// magnitude (sign kept), 4-bit codes offset by 8, packed in pairs (j, j+16).
fn quantize_block_q4_0(x: &[f32], out: &mut Vec<u8>) {
    let d = largest_magnitude(x) / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    // C's `(int8_t)(x + 8.5f)` truncates toward zero, then `MIN(15, …)` clamps the top.
    let code = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    let half = QK / 2;
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend((0..half).map(|j| code(x[j]) | (code(x[j + half]) << 4)));
}

/// Appends `values` (whole rows of `row_len`) encoded as `ty`.
pub(crate) fn encode(ty: GgmlType, values: &[f32], out: &mut Vec<u8>) {
    match ty {
        GgmlType::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        GgmlType::Q8_0 => values
            .chunks_exact(QK)
            .for_each(|b| quantize_block_q8_0(b, out)),
        GgmlType::Q5_0 => values
            .chunks_exact(QK)
            .for_each(|b| quantize_block_q5_0(b, out)),
        GgmlType::Q4_0 => values
            .chunks_exact(QK)
            .for_each(|b| quantize_block_q4_0(b, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::testing::*;

    #[test]
    fn q8_0_blocks_follow_ggml() {
        let mut out = Vec::new();
        quantize_block_q8_0(&[0.0; 32], &mut out);
        assert_eq!(out, [0u8; 34]);

        let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        out.clear();
        quantize_block_q8_0(&x, &mut out);
        assert_eq!(f16_at(&out), f16::from_f32(16.0 / 127.0).to_f32());
        assert_eq!(out[2] as i8, -127);
        assert_eq!(out[2 + 16] as i8, 0);
        assert_eq!(out[2 + 24] as i8, 64); // 8 * 127/16 = 63.5 rounds away from zero
    }

    #[test]
    fn q5_0_blocks_follow_ggml() {
        // All zeros: scale 0 / -16 = -0.0 (as in C), every code 16, so every fifth bit is set
        // and every nibble is 0.
        let mut out = Vec::new();
        quantize_block_q5_0(&[0.0; 32], &mut out);
        assert_eq!(&out[..2], &[0x00, 0x80]);
        assert_eq!(&out[2..6], &[0xff; 4]);
        assert_eq!(&out[6..], &[0u8; 16]);

        // The largest value sets d = max / -16, so it maps to code 0 and its negation to 32,
        // which is clipped to 31.
        let mut x = [0.0f32; 32];
        x[0] = 2.0;
        x[17] = -2.0;
        out.clear();
        quantize_block_q5_0(&x, &mut out);
        assert_eq!(f16_at(&out), -0.125);
        let back = dequantize(6, &out);
        assert_eq!((back[0], back[17], back[5]), (2.0, -1.875, 0.0));
    }

    #[test]
    fn q4_0_blocks_follow_ggml() {
        // All zeros: scale -0.0, every code 8 in both nibbles.
        let mut out = Vec::new();
        quantize_block_q4_0(&[0.0; 32], &mut out);
        assert_eq!(&out[..2], &[0x00, 0x80]);
        assert_eq!(&out[2..], &[0x88u8; 16]);

        // The largest value sets d = max / -8: it maps to code 0, its negation to 16, which
        // is clipped to 15; small values round to the nearest step.
        let mut x = [0.0f32; 32];
        x[0] = 2.0;
        x[17] = -2.0;
        x[3] = 0.5;
        out.clear();
        quantize_block_q4_0(&x, &mut out);
        assert_eq!(f16_at(&out), -0.25);
        let back = dequantize(2, &out);
        assert_eq!(
            (back[0], back[17], back[3], back[5]),
            (2.0, -1.75, 0.5, 0.0)
        );
    }
}
