//! Embeddings computed in this process: fastembed over ONNX Runtime, which is loaded from a
//! shared library at run time (nothing is downloaded at build time). Any sentence-embedding
//! model exported to ONNX works from a local directory:
//!
//! ```text
//! model.onnx (or onnx/model.onnx; model.onnx_data beside it when the weights are external)
//! tokenizer.json  config.json  special_tokens_map.json  tokenizer_config.json
//! 1_Pooling/config.json   (sentence-transformers' pooling; mean when absent)
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fastembed::{
    InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};

use super::EmbedError;

/// Texts run through the model at once.
const BATCH: usize = 16;

pub struct OnnxEmbedder {
    dir: PathBuf,
    model: Arc<Mutex<TextEmbedding>>,
}

impl OnnxEmbedder {
    /// Loads ONNX Runtime from `runtime_lib` (once per process) and the model from `dir`;
    /// blocking, seconds for a large model.
    pub fn load(dir: &Path, runtime_lib: &Path, threads: usize) -> Result<Self, EmbedError> {
        let environment =
            crate::onnx_runtime::environment(runtime_lib).map_err(|reason| local(dir, reason))?;
        let files = ModelFiles::find(dir).map_err(|reason| local(dir, reason))?;
        let mut model =
            UserDefinedEmbeddingModel::new(files.onnx, files.tokenizer).with_pooling(files.pooling);
        if let Some((name, bytes)) = files.external_weights {
            model = model.with_external_initializer(name, bytes);
        }
        let options = InitOptionsUserDefined::new()
            .with_environment(environment)
            .with_intra_threads(threads.max(1));
        // ort panics instead of returning some errors (an API version the library lacks).
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            TextEmbedding::try_new_from_user_defined(model, options)
        }))
        .map_err(|_| {
            local(
                dir,
                "ONNX Runtime panicked while loading the model".to_owned(),
            )
        })?
        .map_err(|e| local(dir, format!("the model does not load: {e}")))?;
        Ok(Self {
            dir: dir.to_owned(),
            model: Arc::new(Mutex::new(loaded)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Model name shown in status: the directory's name.
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dir.display().to_string())
    }

    /// Embeds on a blocking thread (inference would stall the async runtime).
    pub async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let model = Arc::clone(&self.model);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut model = model.lock().unwrap_or_else(|p| p.into_inner());
            model
                .embed(&inputs, Some(BATCH))
                .map_err(|e| local(&dir, format!("inference failed: {e}")))
        })
        .await
        .map_err(|e| local(&self.dir, format!("the inference thread failed: {e}")))?
    }
}

fn local(dir: &Path, reason: String) -> EmbedError {
    EmbedError::Local {
        dir: dir.display().to_string(),
        reason,
    }
}

/// The files of a model directory, read into memory.
struct ModelFiles {
    onnx: Vec<u8>,
    external_weights: Option<(String, Vec<u8>)>,
    tokenizer: TokenizerFiles,
    pooling: Pooling,
}

impl ModelFiles {
    fn find(dir: &Path) -> Result<Self, String> {
        if !dir.is_dir() {
            return Err(
                "no such directory (scripts/onnx-embedder.sh fetch makes an English one)"
                    .to_owned(),
            );
        }
        let onnx_path = ["model.onnx", "onnx/model.onnx"]
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
            .ok_or("it holds no model.onnx (nor onnx/model.onnx)")?;
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let external_weights = match onnx_path.with_extension("onnx_data") {
            data if data.is_file() => Some(("model.onnx_data".to_owned(), read(&data)?)),
            _ => None,
        };
        let tokenizer_file = |name: &str| {
            [dir.join(name), onnx_path.with_file_name(name)]
                .into_iter()
                .find(|p| p.is_file())
                .ok_or_else(|| format!("it holds no {name} (a model needs its tokenizer files)"))
                .and_then(|p| read(&p))
        };
        Ok(Self {
            onnx: read(&onnx_path)?,
            external_weights,
            tokenizer: TokenizerFiles {
                tokenizer_file: tokenizer_file("tokenizer.json")?,
                config_file: tokenizer_file("config.json")?,
                special_tokens_map_file: tokenizer_file("special_tokens_map.json")?,
                tokenizer_config_file: tokenizer_file("tokenizer_config.json")?,
            },
            pooling: pooling_of(dir),
        })
    }
}

/// Pooling from sentence-transformers' `1_Pooling/config.json`: CLS when it says so (BGE
/// models), mean otherwise (MiniLM, E5).
fn pooling_of(dir: &Path) -> Pooling {
    let cls = std::fs::read(dir.join("1_Pooling/config.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|v| v.get("pooling_mode_cls_token")?.as_bool())
        .unwrap_or(false);
    if cls { Pooling::Cls } else { Pooling::Mean }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_follows_the_sentence_transformers_config() {
        let dir = std::env::temp_dir().join(format!("sori-pooling-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        assert!(matches!(pooling_of(&dir), Pooling::Mean));
        std::fs::write(
            dir.join("1_Pooling/config.json"),
            r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        )
        .unwrap();
        assert!(matches!(pooling_of(&dir), Pooling::Cls));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_without_a_model_says_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("sori-nomodel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = ModelFiles::find(&dir).err().unwrap();
        assert!(err.contains("model.onnx"), "{err}");
        std::fs::write(dir.join("model.onnx"), b"x").unwrap();
        let err = ModelFiles::find(&dir).err().unwrap();
        assert!(err.contains("tokenizer.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
