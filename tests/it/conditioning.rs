//! Conditioning on the previous text (`stt.condition_on_previous_text`) on real speech with
//! the real model, voice detector and hallucination filter: every decode is prompted with the
//! finals before it, and a hallucination the filter dropped is in no later prompt and no later
//! final. The session is driven by hand (each job decoded by a real Whisper decoder as it is
//! taken), so the test sees the prompt of every decode.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use sori::engine::Engine;
use sori::protocol::{Language, ServerMessage};
use sori::session::default_options;
use sori::stt::engine::{DecodeOutcome, SttPool};
use sori::stt::whisper::WhisperModel;
use sori::stt::{Decoder, Transcript};

/// Speech, a phrase Whisper is known to invent over silence and the filter drops, then more
/// speech, with pauses long enough to end each utterance.
fn speech_hallucination_speech() -> Vec<f32> {
    let load = |path: &std::path::Path| sori::audio::decode::load_16k_mono(path).unwrap();
    let pause = vec![0.0f32; 24_000];
    let thanks = load(&espeak("thanks", "en-us", "Thank you for watching."));
    let bridge = load(&espeak(
        "bridge",
        "en-us",
        "The bridge on Main Street carries twenty tonnes.",
    ));
    [
        jfk_16k(),
        pause.clone(),
        thanks,
        pause.clone(),
        bridge,
        pause,
    ]
    .concat()
}

#[test]
fn a_filtered_hallucination_is_never_carried_into_a_later_prompt_or_final() {
    let mut config = test_config();
    config.stt.condition_on_previous_text = true;
    config.stt.workers = 1;
    let model = WhisperModel::load(&config.stt.model, false, config.stt.dtw_timestamps)
        .expect("the model loads");
    let mut decoder = model.new_decoder().expect("a decoder");
    // The stream's own pool is not used: each job is decoded here, in order.
    let pool_model = Arc::clone(&model);
    let pool = SttPool::start(1, 4, move || pool_model.new_decoder()).unwrap();
    let engine = Engine::new(
        config.stt.clone(),
        config.vad.clone(),
        &config.filter,
        pool,
        "base".to_owned(),
    )
    .unwrap();
    let mut options = default_options(&config.stt, false);
    options.language = Language::En;
    options.sample_rate = 16_000;
    options.partials = false;
    options.filtered = true;
    let mut stream = engine.stream("conditioning".into(), options).unwrap();
    stream.session.push_samples(&speech_hallucination_speech());
    stream.session.finish();

    let mut prompts = Vec::new();
    let mut events = Vec::new();
    while let Some(job) = stream.session.next_job(true) {
        prompts.push(job.opts.initial_prompt.as_deref().map(str::to_owned));
        let result: Result<Transcript, _> = decoder.decode(&job.audio, &job.opts);
        stream.session.on_outcome(DecodeOutcome {
            job_id: job.job_id,
            result,
            queued: Duration::ZERO,
            decode: Duration::ZERO,
        });
        events.extend(stream.session.take_events());
    }
    events.extend(stream.session.take_events());

    let finals: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            ServerMessage::Final { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let filtered: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            ServerMessage::Filtered { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let said = |text: &str| text.to_lowercase().contains("watching");
    assert!(
        filtered.iter().any(|t| said(t)),
        "the phrase is heard and filtered: {events:?}"
    );
    assert!(
        !finals.iter().any(|t| said(t)),
        "and never a final: {finals:?}"
    );
    // Conditioning is on: the decodes after JFK are prompted with what it said...
    assert!(
        prompts
            .iter()
            .flatten()
            .any(|p| p.to_lowercase().contains("country")),
        "{prompts:?}"
    );
    // ...and never with the filtered phrase, though it was decoded before the last one.
    assert!(!prompts.iter().flatten().any(|p| said(p)), "{prompts:?}");
    let last = finals.last().expect("finals");
    assert!(
        sori::eval::wer("The bridge on Main Street carries twenty tonnes.", last) <= 0.25,
        "the speech after the phrase reads as it was said: {finals:?}"
    );
}
