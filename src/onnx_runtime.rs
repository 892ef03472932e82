//! ONNX Runtime, loaded from its shared library at run time (nothing is downloaded or linked at
//! build time): the in-process embedder and Silero VAD both run on it.

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;

/// ONNX Runtime's one environment in this process, loaded from `lib`. A process can load the
/// library and build the environment once; later calls return the first outcome, whatever
/// library they name.
pub fn environment(lib: &Path) -> Result<Environment, String> {
    static LOADED: OnceLock<Result<Environment, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            if !lib.is_file() {
                return Err(format!(
                    "ONNX Runtime's library {} is missing; fetch it with scripts/onnx-embedder.sh fetch \
                     or point rag.onnxruntime_lib (SORI_ONNXRUNTIME_LIB) at libonnxruntime.so",
                    lib.display()
                ));
            }
            // ort panics instead of returning some errors (an API version the library lacks).
            std::panic::catch_unwind(|| {
                ort::init_from(lib)
                    .map_err(|e| format!("ONNX Runtime {} does not load: {e}", lib.display()))?
                    .with_name("sori")
                    .build()
                    .map_err(|e| format!("ONNX Runtime {} does not start: {e}", lib.display()))
            })
            .unwrap_or_else(|_| Err(format!("ONNX Runtime {} panicked on loading", lib.display())))
        })
        .clone()
}
