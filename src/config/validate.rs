//! `Config::validate`: values that cannot work are refused with a message naming the knob.

use crate::stt::language::LanguageSet;

use super::{Config, ConfigError};

type Checked = Result<(), ConfigError>;

fn invalid(knob: &'static str, reason: &str) -> Checked {
    Err(ConfigError::Invalid {
        knob,
        reason: reason.to_owned(),
    })
}

impl Config {
    /// Called after the file, the environment and the flags are applied.
    pub fn validate(&self) -> Checked {
        self.validate_stt()?;
        self.validate_language()?;
        self.validate_vad()?;
        self.validate_server()?;
        self.validate_llm()
    }

    fn validate_stt(&self) -> Checked {
        let stt = &self.stt;
        if stt.workers > 64 {
            return invalid("stt.workers", "must be between 0 (automatic) and 64");
        }
        if stt.threads > 256 {
            return invalid("stt.threads", "must be between 0 (automatic) and 256");
        }
        if stt.beam_size > 16 {
            return invalid("stt.beam_size", "must be between 0 (greedy) and 16");
        }
        if stt.window_beam_size > 16 {
            return invalid("stt.window_beam_size", "must be between 0 (greedy) and 16");
        }
        if stt.queue_capacity == 0 {
            return invalid("stt.queue_capacity", "must be at least 1");
        }
        if !(0.0..=30.0).contains(&stt.audio_ctx_margin_s) {
            return invalid("stt.audio_ctx_margin_s", "must be between 0 and 30 seconds");
        }
        if !(0.0..=30.0).contains(&stt.audio_ctx_min_s) {
            return invalid("stt.audio_ctx_min_s", "must be between 0 and 30 seconds");
        }
        if !(stt.live_revision_s == 0.0 || (5.0..=120.0).contains(&stt.live_revision_s)) {
            return invalid(
                "stt.live_revision_s",
                "must be 0 (no revisions) or between 5 and 120 seconds",
            );
        }
        if stt.max_prompt_chars == 0 || stt.max_prompt_chars > 10_000 {
            return invalid("stt.max_prompt_chars", "must be between 1 and 10000");
        }
        if let Some(prompt) = &stt.initial_prompt
            && prompt.trim().chars().count() > stt.max_prompt_chars
        {
            return Err(ConfigError::Invalid {
                knob: "stt.initial_prompt",
                reason: format!(
                    "has {} characters, more than stt.max_prompt_chars ({}); shorten it or raise the limit",
                    prompt.trim().chars().count(),
                    stt.max_prompt_chars
                ),
            });
        }
        Ok(())
    }

    fn validate_language(&self) -> Checked {
        let stt = &self.stt;
        if let Err(e) = LanguageSet::from_items(&stt.languages) {
            return Err(ConfigError::Invalid {
                knob: "stt.languages",
                reason: e.to_string(),
            });
        }
        if !(stt.language_lock_probability > 0.0 && stt.language_lock_probability <= 1.0) {
            return invalid(
                "stt.language_lock_probability",
                "must be above 0 and at most 1",
            );
        }
        if !(0.0..=30.0).contains(&stt.language_lock_min_s) {
            return invalid(
                "stt.language_lock_min_s",
                "must be between 0 and 30 seconds",
            );
        }
        Ok(())
    }

    fn validate_vad(&self) -> Checked {
        let vad = &self.vad;
        if !(0.0..=1.0).contains(&vad.energy_threshold) {
            return invalid("vad.energy_threshold", "must be between 0.0 and 1.0 (RMS)");
        }
        if !(0.0..=1.0).contains(&vad.speech_threshold) {
            return invalid("vad.speech_threshold", "must be between 0.0 and 1.0");
        }
        if vad.silence_ms < 100 || vad.silence_ms > 10_000 {
            return invalid("vad.silence_ms", "must be between 100 and 10000 ms");
        }
        if !(1.0..=30.0).contains(&vad.max_utterance_s) {
            return invalid("vad.max_utterance_s", "must be between 1 and 30 seconds");
        }
        Ok(())
    }

    fn validate_server(&self) -> Checked {
        let server = &self.server;
        if server.tls_cert.is_some() != server.tls_key.is_some() {
            return invalid(
                "server.tls_cert / server.tls_key",
                "set both (SORI_TLS_CERT and SORI_TLS_KEY) or neither",
            );
        }
        if server.max_frame_bytes < 1024 {
            return invalid("server.max_frame_bytes", "must be at least 1024 bytes");
        }
        // Instants and durations overflow far beyond these; a year is already no limit.
        const YEAR_S: u64 = 365 * 24 * 3600;
        for (knob, seconds) in [
            ("server.max_session_s", server.max_session_s),
            ("server.idle_timeout_s", server.idle_timeout_s),
            ("server.max_file_s", server.max_file_s),
            ("server.shutdown_grace_s", server.shutdown_grace_s),
            ("server.send_timeout_s", server.send_timeout_s),
            ("server.header_timeout_s", server.header_timeout_s),
            ("server.body_timeout_s", server.body_timeout_s),
        ] {
            if seconds > YEAR_S {
                return invalid(knob, "must be at most a year (31536000 s)");
            }
        }
        for (knob, value) in [
            ("server.max_file_s", server.max_file_s),
            ("server.send_timeout_s", server.send_timeout_s),
            ("server.header_timeout_s", server.header_timeout_s),
            ("server.body_timeout_s", server.body_timeout_s),
            ("server.max_connections", server.max_connections as u64),
            (
                "server.max_tls_handshakes",
                server.max_tls_handshakes as u64,
            ),
        ] {
            if value == 0 {
                return invalid(knob, "must be at least 1");
            }
        }
        Ok(())
    }

    fn validate_llm(&self) -> Checked {
        let llm = &self.llm;
        if !llm.base_url.starts_with("http://") && !llm.base_url.starts_with("https://") {
            return invalid("llm.base_url", "must start with http:// or https://");
        }
        if llm.categories.is_empty() {
            return invalid("llm.categories", "needs at least one category");
        }
        if llm.max_concurrent == 0 || llm.max_keywords == 0 {
            return invalid(
                "llm.max_concurrent",
                "llm.max_concurrent and llm.max_keywords must be at least 1",
            );
        }
        if self.rag.max_concurrent == 0 {
            return invalid("rag.max_concurrent", "must be at least 1");
        }
        Ok(())
    }
}
