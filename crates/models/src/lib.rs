//! sori's offline model tooling, kept out of the server's module tree: converting Whisper from
//! CTranslate2 (faster-whisper) format into whisper.cpp's ggml files ([`convert`]), and
//! fetching, converting and recording the models sori needs ([`provision`], `sori model fetch`).

pub mod convert;
pub mod provision;
