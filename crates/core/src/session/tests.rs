//! The scheduler, driven by hand: the energy detector turns a tone into "speech", jobs are
//! taken with `next_job` and answered with the scripted decoder's description of their audio,
//! so each test decides exactly which decode finishes when.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::scheduler::Job;
use crate::config::{SttConfig, VadConfig};
use crate::protocol::{EffectiveOptions, Language, ServerMessage};
use crate::session::{Stream, default_options};
use crate::stt::SttError;
use crate::stt::engine::DecodeOutcome;
use crate::stt::scripted::{Script, describe};
use crate::testing::{scripted_engine, silence, tone};

fn stream_with(workers: usize, options: impl FnOnce(&mut EffectiveOptions)) -> Stream {
    let stt = SttConfig {
        workers,
        ..SttConfig::default()
    };
    let engine = scripted_engine(&Script::new().shared(), stt.clone(), VadConfig::default());
    let mut opts = default_options(&stt, false);
    opts.sample_rate = 16_000;
    options(&mut opts);
    engine
        .stream("test".into(), opts)
        .expect("16 kHz PCM is valid")
}

fn stream() -> Stream {
    stream_with(1, |_| {})
}

/// The outcome the scripted decoder would give for `job`.
fn decoded(job: &Job) -> DecodeOutcome {
    DecodeOutcome {
        job_id: job.job_id,
        result: Ok(describe(&job.audio, &job.opts)),
        queued: Duration::ZERO,
        decode: Duration::ZERO,
    }
}

fn cancelled(job: &Job) -> DecodeOutcome {
    DecodeOutcome {
        job_id: job.job_id,
        result: Err(SttError::Cancelled),
        queued: Duration::ZERO,
        decode: Duration::ZERO,
    }
}

fn seconds(job: &Job) -> f64 {
    job.audio.len() as f64 / 16_000.0
}

fn finals(events: &[ServerMessage]) -> Vec<(u64, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerMessage::Final {
                segment_id, text, ..
            } => Some((*segment_id, text.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn partials_while_speaking_then_the_final_and_the_stale_partial_is_cancelled() {
    let mut s = stream();
    let session = &mut s.session;
    session.push_samples(&tone(2.5));
    let partial = session
        .next_job(true)
        .expect("a partial is due after 1 s of speech");
    assert!(
        !partial.opts.word_timestamps,
        "partials skip word timestamps"
    );
    assert!(seconds(&partial) >= 1.0);
    let flag = partial
        .opts
        .cancel
        .clone()
        .expect("partials can be cancelled");
    assert!(
        session.next_job(true).is_none(),
        "one job at a time per session"
    );

    // The utterance ends while the partial is still decoding: the partial is now stale.
    session.push_samples(&silence(1.2));
    assert!(
        flag.load(Ordering::Relaxed),
        "the stale partial was cancelled"
    );
    session.on_outcome(cancelled(&partial));
    assert!(
        session.take_events().is_empty(),
        "a cancelled partial sends nothing"
    );

    let last = session.next_job(true).expect("the final is queued");
    assert!(last.opts.word_timestamps, "finals carry word timestamps");
    assert!(seconds(&last) > 2.5, "the final covers the whole utterance");
    session.on_outcome(decoded(&last));
    let events = session.take_events();
    assert_eq!(finals(&events), [(0, format!("{:.2} s", seconds(&last)))]);
    assert!(session.is_drained());
}

#[test]
fn a_partial_is_sent_while_the_utterance_is_open() {
    let mut s = stream();
    let session = &mut s.session;
    session.push_samples(&tone(1.6));
    let partial = session.next_job(true).expect("a partial is due");
    session.on_outcome(decoded(&partial));
    let events = session.take_events();
    assert!(
        matches!(&events[..], [ServerMessage::Partial { segment_id: 0, text, .. }] if *text == format!("{:.2} s", seconds(&partial))),
        "{events:?}"
    );
    // No new audio since: no partial is due yet (the interval is 1 s of audio).
    assert!(session.next_job(true).is_none());
    session.push_samples(&tone(0.5));
    assert!(session.next_job(true).is_none(), "half a second: not yet");
    session.push_samples(&tone(0.6));
    assert!(
        session.next_job(true).is_some(),
        "a second of new speech: partial due"
    );
}

#[test]
fn no_optional_work_without_an_idle_worker() {
    let mut s = stream();
    s.session.push_samples(&tone(2.5));
    assert!(
        !s.session.has_job(false),
        "partials wait for an idle worker"
    );
    s.session.push_samples(&silence(1.2));
    assert!(
        s.session.has_job(false),
        "finals never wait for an idle worker"
    );
}

#[test]
fn a_speculative_decode_becomes_the_final_when_the_silence_lasts() {
    let mut s = stream();
    let session = &mut s.session;
    session.push_samples(&tone(2.0));
    session.push_samples(&silence(0.4));
    let speculative = session
        .next_job(true)
        .expect("speculation once the tail is reached");
    assert!(
        speculative.opts.word_timestamps,
        "a speculative decode is a final's decode"
    );
    session.on_outcome(decoded(&speculative));
    let early = session.take_events();
    assert!(
        matches!(&early[..], [ServerMessage::Partial { .. }]),
        "its text is shown at once as a partial: {early:?}"
    );

    session.push_samples(&silence(0.8));
    assert!(
        session.next_job(true).is_none(),
        "no second decode: the speculation is adopted"
    );
    let events = session.take_events();
    assert_eq!(
        finals(&events),
        [(0, format!("{:.2} s", seconds(&speculative)))]
    );
    assert!(session.is_drained());
}

#[test]
fn a_speculative_decode_is_discarded_when_speech_resumes() {
    let mut s = stream();
    let session = &mut s.session;
    session.push_samples(&tone(2.0));
    session.push_samples(&silence(0.4));
    let speculative = session.next_job(true).expect("speculation");
    session.on_outcome(decoded(&speculative));
    session.take_events();

    session.push_samples(&tone(1.0));
    session.push_samples(&silence(1.2));
    let last = session
        .next_job(true)
        .expect("the longer utterance is decoded again");
    assert!(seconds(&last) > seconds(&speculative) + 1.0);
    session.on_outcome(decoded(&last));
    let events = session.take_events();
    assert_eq!(finals(&events), [(0, format!("{:.2} s", seconds(&last)))]);
}

#[test]
fn finals_are_released_in_segment_order_whatever_order_they_finish_in() {
    let mut s = stream_with(2, |o| o.partials = false);
    let session = &mut s.session;
    for _ in 0..2 {
        session.push_samples(&tone(1.5));
        session.push_samples(&silence(1.2));
    }
    let first = session.next_job(false).expect("first final");
    let second = session
        .next_job(false)
        .expect("second final: two workers, two in flight");
    assert!(session.next_job(false).is_none());

    session.on_outcome(decoded(&second));
    assert!(
        finals(&session.take_events()).is_empty(),
        "segment 1 waits for segment 0"
    );
    session.on_outcome(decoded(&first));
    let ids: Vec<u64> = finals(&session.take_events())
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, [0, 1]);
}

#[test]
fn finals_in_flight_are_bounded_by_the_workers_and_the_rest_is_backlog() {
    let mut s = stream_with(1, |o| o.partials = false);
    let session = &mut s.session;
    for _ in 0..3 {
        session.push_samples(&tone(2.0));
        session.push_samples(&silence(1.2));
    }
    let first = session.next_job(false).expect("one final in flight");
    assert!(
        session.next_job(false).is_none(),
        "one worker: one final at a time"
    );
    let backlog = session.backlog_seconds();
    assert!(
        (4.0..7.5).contains(&backlog),
        "two utterances of ~2.3 s wait: {backlog}"
    );
    session.on_outcome(decoded(&first));
    assert!(session.next_job(false).is_some());
    assert!(session.backlog_seconds() < backlog);
}

#[test]
fn a_failed_decode_is_an_error_event_in_its_place() {
    let mut s = stream_with(1, |o| o.partials = false);
    let session = &mut s.session;
    session.push_samples(&tone(1.5));
    session.push_samples(&silence(1.2));
    let job = session.next_job(false).unwrap();
    session.on_outcome(DecodeOutcome {
        job_id: job.job_id,
        result: Err(SttError::Decode("boom".into())),
        queued: Duration::ZERO,
        decode: Duration::ZERO,
    });
    let events = session.take_events();
    assert!(
        matches!(&events[..], [ServerMessage::Error { code, fatal: false, .. }] if code == "decode_failed"),
        "{events:?}"
    );
    assert_eq!(session.summary().errors, 1);
}

fn auto(o: &mut EffectiveOptions) {
    o.language = Language::Auto;
    o.languages = vec!["ko".into(), "en".into()];
    o.partials = false;
}

#[test]
fn auto_detects_within_the_set_and_locks_after_a_confident_long_final() {
    let mut s = stream_with(1, auto);
    let session = &mut s.session;
    assert_eq!(session.language(), None, "still detecting");

    session.push_samples(&tone(2.5));
    session.push_samples(&silence(1.2));
    let first = session.next_job(false).unwrap();
    let set: Vec<&str> = first.opts.languages.as_ref().unwrap().codes().to_vec();
    assert_eq!(
        set,
        ["ko", "en"],
        "detection is restricted to the session's set"
    );
    session.on_outcome(decoded(&first));
    let events = session.take_events();
    assert!(
        matches!(&events[0], ServerMessage::Language { language, locked: true, segment_id: 0, .. } if language == "ko"),
        "the language event comes before the final: {events:?}"
    );
    assert!(matches!(&events[1], ServerMessage::Final { language, .. } if language == "ko"));
    assert_eq!(session.language(), Some("ko"));

    session.push_samples(&tone(1.0));
    session.push_samples(&silence(1.2));
    let next = session.next_job(false).unwrap();
    let set: Vec<&str> = next.opts.languages.as_ref().unwrap().codes().to_vec();
    assert_eq!(
        set,
        ["ko"],
        "after the lock, finals are decoded in the locked language"
    );
}

#[test]
fn a_short_utterance_does_not_lock_the_language() {
    let mut s = stream_with(1, auto);
    let session = &mut s.session;
    session.push_samples(&tone(1.0));
    session.push_samples(&silence(1.2));
    let job = session.next_job(false).unwrap();
    assert!(seconds(&job) < 2.0);
    session.on_outcome(decoded(&job));
    let events = session.take_events();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ServerMessage::Language { .. })),
        "{events:?}"
    );
    assert_eq!(session.language(), None);
}

#[test]
fn without_the_lock_every_final_detects_anew() {
    let mut s = stream_with(1, |o| {
        auto(o);
        o.language_lock = false;
    });
    let session = &mut s.session;
    for _ in 0..2 {
        session.push_samples(&tone(2.5));
        session.push_samples(&silence(1.2));
        let job = session.next_job(false).unwrap();
        assert_eq!(job.opts.languages.as_ref().unwrap().len(), 2);
        session.on_outcome(decoded(&job));
        session.take_events();
    }
    assert_eq!(session.language(), None);
}

#[test]
fn a_hallucination_is_filtered_and_counted_not_sent() {
    let script = Script::new()
        .answer(|audio, opts| {
            let mut t = describe(audio, opts);
            t.text = "시청해주셔서 감사합니다".into();
            Ok(t)
        })
        .shared();
    let stt = SttConfig::default();
    let engine = scripted_engine(&script, stt.clone(), VadConfig::default());
    let mut opts = default_options(&stt, false);
    opts.partials = false;
    let mut s = engine.stream("t".into(), opts).unwrap();
    s.session.push_samples(&tone(2.0));
    s.session.push_samples(&silence(1.2));
    let job = s.session.next_job(false).unwrap();
    s.session.on_outcome(decoded_by(&script, &job));
    assert!(finals(&s.session.take_events()).is_empty());
    assert_eq!(s.session.summary().filtered, 1);
    assert!(s.session.is_drained());
}

fn decoded_by(script: &Arc<Script>, job: &Job) -> DecodeOutcome {
    use crate::stt::Decoder;
    let mut decoder = crate::stt::scripted::ScriptedDecoder::new(Arc::clone(script));
    DecodeOutcome {
        job_id: job.job_id,
        result: decoder.decode(&job.audio, &job.opts),
        queued: Duration::ZERO,
        decode: Duration::ZERO,
    }
}

/// With `condition_on_previous_text`: each final is prompted with the finals before it, one
/// final at a time, and a filtered hallucination never reaches a later prompt.
#[test]
fn conditioning_prompts_with_kept_finals_only_and_never_a_filtered_one() {
    use std::sync::Mutex;
    let prompts: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let seen = Arc::clone(&prompts);
    // Utterances of 1.5, 2.5 and 3.5 s: the second is heard as a known hallucination.
    let script = Script::new()
        .answer(move |audio, opts| {
            seen.lock()
                .unwrap()
                .push(opts.initial_prompt.as_deref().map(str::to_owned));
            let mut t = describe(audio, opts);
            t.text = match audio.len() / 16_000 {
                1 => "the bridge on main street".into(),
                2 => "시청해주셔서 감사합니다".into(),
                _ => "carries twenty tonnes".into(),
            };
            Ok(t)
        })
        .shared();
    let stt = SttConfig {
        workers: 2,
        condition_on_previous_text: true,
        ..SttConfig::default()
    };
    let engine = scripted_engine(&script, stt.clone(), VadConfig::default());
    let mut opts = default_options(&stt, false);
    opts.partials = false;
    opts.sample_rate = 16_000;
    opts.prompt = Some("Main Street".into());
    let mut s = engine.stream("t".into(), opts).unwrap();
    for seconds in [1.2, 2.2, 3.2] {
        s.session.push_samples(&tone(seconds));
        s.session.push_samples(&silence(1.2));
    }
    let mut texts = Vec::new();
    for _ in 0..3 {
        let job = s.session.next_job(false).expect("the next final");
        assert!(
            s.session.next_job(false).is_none(),
            "two workers, yet one final at a time: the next needs this one's text"
        );
        s.session.on_outcome(decoded_by(&script, &job));
        texts.extend(finals(&s.session.take_events()).into_iter().map(|(_, t)| t));
    }
    assert_eq!(
        texts,
        ["the bridge on main street", "carries twenty tonnes"]
    );
    assert_eq!(s.session.summary().filtered, 1);
    let prompts = prompts.lock().unwrap().clone();
    assert_eq!(
        prompts,
        [
            Some("Main Street".to_owned()),
            Some("the bridge on main street Main Street".to_owned()),
            Some("the bridge on main street Main Street".to_owned()),
        ],
        "the filtered hallucination is in no prompt"
    );
}

/// Word times from the attention cost every decode, so only a file's finals ask for them: its
/// windows' words are split between utterances by their times (merge.rs).
#[test]
fn only_file_finals_ask_for_aligned_word_times() {
    let mut live = stream_with(1, |_| {});
    live.session.push_samples(&tone(1.5));
    let partial = live
        .session
        .next_job(true)
        .expect("a partial while speaking");
    assert!(!partial.opts.aligned_words);
    live.session.on_outcome(cancelled(&partial));
    live.session.push_samples(&silence(1.2));
    let live_final = live.session.next_job(false).expect("the live final");
    assert!(live_final.opts.word_timestamps && !live_final.opts.aligned_words);

    let mut file = stream_with(1, |o| o.partials = false);
    file.session
        .merge_file_windows(0.0, crate::session::WindowJoin::ALIGNED);
    file.session.push_samples(&tone(1.5));
    file.session.push_samples(&silence(1.2));
    let file_final = file.session.next_job(false).expect("the file's final");
    assert!(file_final.opts.word_timestamps && file_final.opts.aligned_words);

    // Nor does the decode that chooses where a file's too-long utterance is cut: it looks for
    // pauses between words, which only the heuristic times show.
    let mut long = stream_with(1, |o| o.partials = false);
    long.session
        .merge_file_windows(0.0, crate::session::WindowJoin::ALIGNED);
    long.session.push_samples(&tone(26.0));
    let boundary = long.session.next_job(true).expect("the boundary decode");
    assert!(
        seconds(&boundary) > 20.0,
        "the open utterance: {}",
        seconds(&boundary)
    );
    assert!(boundary.opts.word_timestamps && !boundary.opts.aligned_words);
}
