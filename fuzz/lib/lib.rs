//! The part of sori the fuzz targets exercise, compiled from the main crate's own source files.
//!
//! `src/protocol.rs` and `src/audio/` need only serde, base64, rubato and symphonia, so they
//! are included here as they are (`#[path]`), under the same module paths as in `sori`
//! (`sori::protocol`, `sori::audio::…`). Were one of them to start using another module of the
//! main crate, this crate stops compiling and `scripts/fuzz.sh smoke` (run by `test.sh`) fails:
//! add that module here too, or depend on the main crate instead.

#[path = "../../src/audio/mod.rs"]
pub mod audio;

#[path = "../../src/protocol.rs"]
pub mod protocol;
