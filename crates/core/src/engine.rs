//! What every session of one server shares: the session settings, the decoder pool over one
//! loaded model, the hallucination filter and the voice detector.

use std::sync::Arc;

use crate::audio::AudioError;
use crate::config::{FilterSettings, SttConfig, VadConfig};
use crate::protocol::EffectiveOptions;
use crate::session::{Session, Stream};
use crate::stt::engine::SttPool;
use crate::stt::filter::{FilterError, HallucinationFilter};
use crate::vad::{DetectorFactory, earshot_detector};

pub struct Engine {
    pub stt: SttConfig,
    pub vad: VadConfig,
    /// The decoder threads; every session's jobs go through its one bounded queue.
    pub pool: SttPool,
    pub filter: Arc<HallucinationFilter>,
    /// Shown to clients in `ready` (the model's file name).
    pub model_name: String,
    /// Makes each session's voice detector: earshot's, Silero's (`vad.detector`), or a test
    /// double in scheduler tests.
    pub voice_detector: DetectorFactory,
}

impl Engine {
    /// An engine over a started pool, with the product's voice detector.
    pub fn new(
        stt: SttConfig,
        vad: VadConfig,
        filter: &FilterSettings,
        pool: SttPool,
        model_name: String,
    ) -> Result<Self, FilterError> {
        let filter = Arc::new(HallucinationFilter::new(&filter.filter_config())?);
        Ok(Self {
            stt,
            vad,
            pool,
            filter,
            model_name,
            voice_detector: earshot_detector(),
        })
    }

    /// The same engine with another voice detector (Silero's; tests drive sessions with a tone).
    pub fn with_voice_detector(mut self, voice_detector: DetectorFactory) -> Self {
        self.voice_detector = voice_detector;
        self
    }

    /// A new session with `options`, driven against this engine's pool.
    pub fn stream(&self, id: String, options: EffectiveOptions) -> Result<Stream, AudioError> {
        let session = Session::new(id, options, self)?;
        Ok(Stream::new(session, self.pool.clone()))
    }
}
