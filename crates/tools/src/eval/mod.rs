//! `sori eval DIR`: scores a directory of recordings with reference transcripts offline and
//! streamed over `/ws` (docs/accuracy.md). The scoring itself (normalisation, WER, CER) is
//! the `sori-score` crate.
//!
//! - [`corpus`]: finding audio files and their references under a directory;
//! - [`run`]: running each file through the offline and the streaming path;
//! - [`report`]: the JSON shape and the terminal table.

pub mod corpus;
pub mod report;
pub mod run;
