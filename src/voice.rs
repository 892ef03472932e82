//! The voice detector every session's segmenter asks, frame by frame, whether someone is
//! speaking (`vad.detector`): earshot, built into the binary, or Silero VAD v6 over ONNX
//! Runtime. Silero holds up better under steady noise (docs/accuracy.md, "Voice detectors").

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::TensorRef;
use sori_core::config::{VadConfig, VoiceDetectorKind};
use sori_core::vad::{DetectorFactory, FRAME_SAMPLES, VoiceDetector, earshot_detector};

/// Samples Silero scores at once at 16 kHz (32 ms): two of the segmenter's frames.
const SILERO_CHUNK: usize = 512;
/// The end of the previous chunk that Silero v5/v6 reads before each chunk at 16 kHz.
const SILERO_CONTEXT: usize = 64;
/// Silero's recurrent state: 2 × batch 1 × 128.
const SILERO_STATE: usize = 2 * 128;
const _: () = assert!(SILERO_CHUNK == 2 * FRAME_SAMPLES);

#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("Silero VAD model {path}: {reason}")]
    Silero { path: PathBuf, reason: String },
}

/// The detector factory `vad` asks for; loads Silero's model (blocking: call at start-up).
pub fn detector_factory(
    vad: &VadConfig,
    onnxruntime_lib: &Path,
) -> Result<DetectorFactory, VoiceError> {
    match vad.detector {
        VoiceDetectorKind::Earshot => Ok(earshot_detector()),
        VoiceDetectorKind::Silero => {
            let model = SileroModel::load(&vad.silero_model, onnxruntime_lib)?;
            Ok(Arc::new(move || {
                Box::new(SileroDetector::new(Arc::clone(&model)))
            }))
        }
    }
}

/// Silero's ONNX session, shared by every session of the server: a chunk's inference takes
/// tens of microseconds, so one lock costs less than a session (and its memory) per stream.
pub struct SileroModel {
    path: PathBuf,
    session: Mutex<Session>,
}

impl SileroModel {
    pub fn load(path: &Path, onnxruntime_lib: &Path) -> Result<Arc<Self>, VoiceError> {
        let error = |reason: String| VoiceError::Silero {
            path: path.to_owned(),
            reason,
        };
        if !path.is_file() {
            return Err(error(
                "no such file; fetch it with scripts/onnx-embedder.sh fetch, or point \
                 vad.silero_model (SORI_VAD_SILERO_MODEL) at silero_vad.onnx"
                    .to_owned(),
            ));
        }
        let environment = crate::onnx_runtime::environment(onnxruntime_lib).map_err(error)?;
        let bytes = std::fs::read(path).map_err(|e| error(format!("cannot read it: {e}")))?;
        // One thread per inference: the model is tiny, and the decoders own the cores.
        let session = Session::builder(&environment)
            .and_then(|b| Ok(b.with_intra_threads(1)?.with_inter_threads(1)?))
            .and_then(|mut b| b.commit_from_memory(&bytes))
            .map_err(|e| error(format!("ONNX Runtime cannot load it: {e}")))?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        if names != ["input", "state", "sr"] {
            return Err(error(format!(
                "its inputs are {names:?}, not Silero VAD v5/v6's [\"input\", \"state\", \"sr\"]"
            )));
        }
        Ok(Arc::new(Self {
            path: path.to_owned(),
            session: Mutex::new(session),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Voice probability of `input` (the context, then a chunk); updates `state`.
    fn score(
        &self,
        input: &[f32; SILERO_CONTEXT + SILERO_CHUNK],
        state: &mut [f32; SILERO_STATE],
    ) -> Result<f32, ort::Error> {
        let sample_rate = [i64::from(sori_core::audio::TARGET_SAMPLE_RATE)];
        let inputs = ort::inputs![
            "input" => TensorRef::from_array_view(([1usize, input.len()], &input[..]))?,
            "state" => TensorRef::from_array_view(([2usize, 1, 128], &state[..]))?,
            "sr" => TensorRef::from_array_view((Vec::<usize>::new(), &sample_rate[..]))?,
        ];
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session.run(inputs)?;
        let (_, probability) = outputs["output"].try_extract_tensor::<f32>()?;
        let (_, next_state) = outputs["stateN"].try_extract_tensor::<f32>()?;
        state.copy_from_slice(next_state);
        Ok(probability.first().copied().unwrap_or(0.0))
    }
}

/// One stream's Silero state. The segmenter's 16 ms frames are paired into Silero's 32 ms
/// chunks: the first frame of a pair gets the previous chunk's probability, the second its own.
pub struct SileroDetector {
    model: Arc<SileroModel>,
    /// The previous chunk's last 64 samples, then the chunk being filled.
    window: Box<[f32; SILERO_CONTEXT + SILERO_CHUNK]>,
    filled: usize,
    state: Box<[f32; SILERO_STATE]>,
    last: f32,
    /// An inference failed: logged once, then the stream is scored as silence.
    failed: bool,
}

impl SileroDetector {
    pub fn new(model: Arc<SileroModel>) -> Self {
        Self {
            model,
            window: Box::new([0.0; SILERO_CONTEXT + SILERO_CHUNK]),
            filled: 0,
            state: Box::new([0.0; SILERO_STATE]),
            last: 0.0,
            failed: false,
        }
    }
}

impl VoiceDetector for SileroDetector {
    fn voice_probability(&mut self, frame: &[f32]) -> f32 {
        let at = SILERO_CONTEXT + self.filled;
        let take = frame.len().min(SILERO_CHUNK - self.filled);
        self.window[at..at + take].copy_from_slice(&frame[..take]);
        self.filled += take;
        if self.filled < SILERO_CHUNK || self.failed {
            return self.last;
        }
        self.filled = 0;
        match self.model.score(&self.window, &mut self.state) {
            Ok(p) => self.last = p,
            Err(e) => {
                tracing::error!(model = %self.model.path().display(), error = %e,
                    "Silero VAD inference failed; this stream's audio counts as silence from here");
                self.failed = true;
                self.last = 0.0;
            }
        }
        self.window.copy_within(SILERO_CHUNK.., 0);
        self.last
    }
}
