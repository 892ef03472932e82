//! whisper.cpp's ggml model file: its header, the tensor types it holds and the weight
//! formats this converter writes; [`write`] builds a file, [`read`] walks one back.

use std::fmt;
use std::str::FromStr;

use super::ConvertError;

mod read;
mod write;

pub(crate) use read::walk_ggml;
pub use read::{read_ggml_header, read_ggml_tensor_index};
pub(crate) use write::write_ggml;

/// `ggml` in ASCII, read as a little-endian u32.
const GGML_MAGIC: u32 = 0x6767_6d6c;
/// ggml's `GGML_QNT_VERSION`: quantized files carry it in the header's ftype.
const GGML_QNT_VERSION: i32 = 2;
/// ggml's `GGML_QNT_VERSION_FACTOR`: ftype = qnt_version * factor + ggml_ftype.
const GGML_QNT_VERSION_FACTOR: i32 = 1000;

/// Weight format of the ggml file to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OutputType {
    F32,
    #[default]
    F16,
    Q8_0,
    Q5_0,
    /// 4-bit blocks: whisper.cpp repacks them for its fastest CPU matrix kernels (AVX2 and up).
    Q4_0,
}

impl OutputType {
    /// Every output type, in the order of the `FromStr` names.
    pub const ALL: [OutputType; 5] = [Self::F32, Self::F16, Self::Q8_0, Self::Q5_0, Self::Q4_0];

    /// The lowercase name used on the command line and in file names (`q8_0`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q5_0 => "q5_0",
            Self::Q4_0 => "q4_0",
        }
    }

    /// The header `ftype`: ggml's file type, plus `GGML_QNT_VERSION * 1000` for quantized
    /// files, exactly as whisper.cpp's `quantize` tool writes it.
    pub fn header_ftype(self) -> i32 {
        let qnt = GGML_QNT_VERSION * GGML_QNT_VERSION_FACTOR;
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => qnt + 7,
            Self::Q5_0 => qnt + 8,
            Self::Q4_0 => qnt + 2,
        }
    }

    /// Type of the 2-D weight matrices (whisper.cpp's `wtype`).
    pub(crate) fn matrix_type(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q5_0 => GgmlType::Q5_0,
            Self::Q4_0 => GgmlType::Q4_0,
        }
    }

    /// Type of the 3-D convolution kernels (whisper.cpp's `vtype`: never quantized).
    pub(crate) fn conv_type(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            _ => GgmlType::F16,
        }
    }
}

impl fmt::Display for OutputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutputType {
    type Err = ConvertError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == wanted)
            .ok_or_else(|| ConvertError::UnknownOutputType(s.to_string()))
    }
}

/// ggml tensor types this converter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q5_0,
    Q8_0,
}

impl GgmlType {
    /// The `ggml_type` number stored in the tensor header.
    pub(crate) fn code(self) -> i32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q5_0 => 6,
            Self::Q8_0 => 8,
        }
    }

    pub(crate) fn is_quantized(self) -> bool {
        matches!(self, Self::Q4_0 | Self::Q5_0 | Self::Q8_0)
    }
}

/// Bytes that `n` elements of ggml type `code` occupy, for the types whisper model files use
/// (f32, f16, q4_0, q4_1, q5_0, q5_1, q8_0). `None` for other types or a partial block.
fn ggml_data_bytes(code: i32, n: u64) -> Option<u64> {
    let (block, block_bytes) = match code {
        0 => (1, 4),
        1 => (1, 2),
        2 => (32, 18),
        3 => (32, 20),
        6 => (32, 22),
        7 => (32, 24),
        8 => (32, 34),
        _ => return None,
    };
    n.is_multiple_of(block).then(|| n / block * block_bytes)
}

/// The 11 header integers of a whisper.cpp ggml file, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct GgmlHparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    pub ftype: i32,
}

impl GgmlHparams {
    fn to_array(self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    fn from_array(a: [i32; 11]) -> Self {
        Self {
            n_vocab: a[0],
            n_audio_ctx: a[1],
            n_audio_state: a[2],
            n_audio_head: a[3],
            n_audio_layer: a[4],
            n_text_ctx: a[5],
            n_text_state: a[6],
            n_text_head: a[7],
            n_text_layer: a[8],
            n_mels: a[9],
            ftype: a[10],
        }
    }

    /// The output type the header's ftype stands for, if it is one this converter writes.
    pub fn output_type(&self) -> Option<OutputType> {
        OutputType::ALL
            .into_iter()
            .find(|t| t.header_ftype() == self.ftype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_types_parse_and_name_themselves() {
        for t in OutputType::ALL {
            assert_eq!(t.to_string().parse::<OutputType>().unwrap(), t);
        }
        assert_eq!("Q8_0".parse::<OutputType>().unwrap(), OutputType::Q8_0);
        let msg = "q4_1".parse::<OutputType>().unwrap_err().to_string();
        assert!(msg.contains("\"q4_1\"") && msg.contains("q4_0"), "{msg}");
        let ftypes: Vec<i32> = OutputType::ALL.iter().map(|t| t.header_ftype()).collect();
        assert_eq!(ftypes, [0, 1, 2007, 2008, 2002]);
        assert_eq!(OutputType::default(), OutputType::F16);
    }
}
