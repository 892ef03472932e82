//! Revision windows driven by the scripted decoder (a test double: no model). Each burst of
//! tone is heard as one word named by its length ("2.0s", `merge::tests::bursts`); what the
//! real model gains from a window is measured by `sori eval` and the noise bench.

use std::sync::Arc;

use super::super::merge::REDECODE_WINDOW_S;
use super::super::merge::tests::{bursts, decode, finals, speech};
use crate::config::{SttConfig, VadConfig};
use crate::protocol::ServerMessage;
use crate::session::{Session, Stream, WindowJoin, default_options};
use crate::stt::scripted::Script;
use crate::stt::{DecodeOptions, Transcript};
use crate::testing::{scripted_engine, silence};

/// A decoder that hears a word better beside others: in a decode of two or more bursts every
/// word gets a "ctx", as a window's text differs from the utterances' decoded alone.
fn heard_in_context(audio: &[f32], opts: &DecodeOptions) -> Transcript {
    let mut t = bursts(audio, opts);
    if t.words.len() > 1 {
        for w in &mut t.words {
            w.word.push_str("ctx");
        }
        t.text = t
            .words
            .iter()
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" ");
    }
    t
}

/// A live session with revision windows of `revision_s`, no partials.
fn live_stream(script: &Arc<Script>, revision_s: f64) -> Stream {
    let stt = SttConfig::default();
    let engine = scripted_engine(script, stt.clone(), VadConfig::default());
    let mut opts = default_options(&stt, false);
    opts.partials = false;
    let mut s = engine.stream("live".into(), opts).expect("valid options");
    s.session.revise_live(revision_s, WindowJoin::ALIGNED);
    s
}

/// Feeds `audio` in 0.1 s chunks, decoding every job at once; `idle` says whether a worker is
/// idle for optional work. Returns the events.
fn feed(
    session: &mut Session,
    script: &Arc<Script>,
    audio: &[f32],
    idle: bool,
) -> Vec<ServerMessage> {
    let mut events = Vec::new();
    for chunk in audio.chunks(1600) {
        session.push_samples(chunk);
        events.extend(run(session, script, idle));
    }
    events
}

fn run(session: &mut Session, script: &Arc<Script>, idle: bool) -> Vec<ServerMessage> {
    let mut events = Vec::new();
    while let Some(job) = session.next_job(idle) {
        session.on_outcome(decode(script, &job));
        events.extend(session.take_events());
    }
    // A speculative decode adopted as the final is released without a decode.
    events.extend(session.take_events());
    events
}

/// (segment id, text) of each `revision` event.
fn revisions(events: &[ServerMessage]) -> Vec<(u64, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerMessage::Revision {
                segment_id, text, ..
            } => Some((*segment_id, text.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_finals_are_revised_together_on_an_idle_worker_or_when_the_stream_ends() {
    let script = Script::new()
        .answer(|a, o| Ok(heard_in_context(a, o)))
        .shared();
    let mut s = live_stream(&script, 60.0);
    let session = &mut s.session;
    let live = feed(session, &script, &speech(&[2.0, 3.0, 2.0]), false);
    let texts: Vec<String> = finals(&live).into_iter().map(|f| f.1).collect();
    assert_eq!(texts, ["2.0s", "3.0s", "2.0s"], "each final decoded alone");
    assert_eq!(
        script.calls().len(),
        3,
        "no revision while no worker is idle"
    );
    assert!(revisions(&live).is_empty());

    session.finish();
    let end = run(session, &script, true);
    let calls = script.calls();
    assert_eq!(calls.len(), 4, "the last window is decoded at the end");
    assert!(
        calls[3].seconds > 7.0,
        "the three utterances in one decode: {} s",
        calls[3].seconds
    );
    assert_eq!(
        revisions(&end),
        [
            (0, "2.0sctx".to_owned()),
            (1, "3.0sctx".to_owned()),
            (2, "2.0sctx".to_owned())
        ]
    );
    assert_eq!(session.summary().revisions, 3);
    assert!(session.is_drained());
}

#[test]
fn a_revision_searches_with_the_window_beam_and_the_finals_with_the_live_one() {
    let stt = SttConfig::default();
    assert_ne!(stt.beam_size, stt.window_beam_size, "the defaults differ");
    let script = Script::new()
        .answer(|a, o| Ok(heard_in_context(a, o)))
        .shared();
    let mut s = live_stream(&script, 60.0);
    let session = &mut s.session;
    feed(session, &script, &speech(&[2.0, 3.0]), false);
    session.finish();
    run(session, &script, true);
    let beams: Vec<usize> = script.calls().iter().map(|c| c.beam_size).collect();
    assert_eq!(
        beams,
        [stt.beam_size, stt.beam_size, stt.window_beam_size],
        "two finals, then their revision window"
    );
}

#[test]
fn a_revision_that_changes_no_text_sends_nothing() {
    let script = Script::new().answer(|a, o| Ok(bursts(a, o))).shared();
    let mut s = live_stream(&script, 60.0);
    let session = &mut s.session;
    let mut events = feed(session, &script, &speech(&[2.0, 3.0]), false);
    session.finish();
    events.extend(run(session, &script, true));
    assert_eq!(
        script.calls().len(),
        3,
        "two finals and the revision window"
    );
    assert!(revisions(&events).is_empty(), "{events:?}");
    assert_eq!(finals(&events).len(), 2);
    assert!(session.is_drained());
}

#[test]
fn ten_seconds_of_silence_end_the_window_and_an_idle_worker_revises_it() {
    let script = Script::new()
        .answer(|a, o| Ok(heard_in_context(a, o)))
        .shared();
    let mut s = live_stream(&script, 60.0);
    let session = &mut s.session;
    let mut events = feed(session, &script, &speech(&[2.0, 3.0]), true);
    assert!(revisions(&events).is_empty(), "the window is still open");
    events.extend(feed(session, &script, &silence(11.0), true));
    assert_eq!(revisions(&events).len(), 2, "{events:?}");
    let first_revision = events
        .iter()
        .position(|e| matches!(e, ServerMessage::Revision { .. }))
        .unwrap();
    assert_eq!(
        events[..first_revision]
            .iter()
            .filter(|e| matches!(e, ServerMessage::Final { .. }))
            .count(),
        2,
        "both finals were sent before their revision"
    );
}

#[test]
fn a_window_of_one_utterance_is_not_decoded_again() {
    let script = Script::new()
        .answer(|a, o| Ok(heard_in_context(a, o)))
        .shared();
    let mut s = live_stream(&script, 60.0);
    let session = &mut s.session;
    feed(session, &script, &speech(&[2.0]), false);
    session.finish();
    let end = run(session, &script, true);
    assert_eq!(script.calls().len(), 1);
    assert!(revisions(&end).is_empty());
}

#[test]
fn a_window_with_doubtful_word_times_is_revised_in_shorter_windows() {
    // Word times doubtful in any window over 20 s, as DTW's path over a long pass can pile
    // words up.
    let script = Script::new()
        .answer(|a, o| {
            let mut t = heard_in_context(a, o);
            t.words_doubtful = a.len() as f32 / 16_000.0 > REDECODE_WINDOW_S as f32;
            Ok(t)
        })
        .shared();
    let mut s = live_stream(&script, 60.0);
    let session = &mut s.session;
    // Seven utterances of ~4.6 s, 0.6 s apart: one window of 35.5 s.
    feed(session, &script, &speech(&[4.0; 7]), false);
    session.finish();
    let end = run(session, &script, true);
    let windows: Vec<f32> = script.calls()[7..].iter().map(|c| c.seconds).collect();
    assert_eq!(
        windows.len(),
        3,
        "the long window, then two shorter: {windows:?}"
    );
    assert!(windows[0] > 30.0, "{windows:?}");
    assert!(
        windows[1..]
            .iter()
            .all(|&s| 8.0 < s && s <= REDECODE_WINDOW_S as f32),
        "windows of two or more utterances, none over 20 s: {windows:?}"
    );
    let revised = revisions(&end);
    assert_eq!(
        revised.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>(),
        "every segment revised, in order"
    );
    assert!(revised.iter().all(|r| r.1 == "4.0sctx"), "{revised:?}");
    assert!(session.is_drained());
}

#[test]
fn a_client_that_turns_revisions_off_gets_none() {
    let script = Script::new()
        .answer(|a, o| Ok(heard_in_context(a, o)))
        .shared();
    let mut s = live_stream(&script, 60.0);
    let session = &mut s.session;
    assert!(
        session.options().revisions,
        "on by default where the server revises"
    );
    feed(session, &script, &speech(&[2.0]), false);
    let mut options = session.options().clone();
    options.revisions = false;
    session.reconfigure(options).expect("same format");
    feed(session, &script, &speech(&[3.0]), false);
    session.finish();
    let end = run(session, &script, true);
    assert_eq!(script.calls().len(), 2, "two finals, no revision");
    assert!(revisions(&end).is_empty());
    assert!(!session.options().revisions);
}

#[test]
fn windows_are_as_long_as_the_setting_allows() {
    let script = Script::new()
        .answer(|a, o| Ok(heard_in_context(a, o)))
        .shared();
    let mut s = live_stream(&script, 10.0);
    let session = &mut s.session;
    // 4 s utterances: two share a 10 s window (4 + 1.2 s kept pause + 4), a third does not.
    let mut events = feed(session, &script, &speech(&[4.0, 4.0, 4.0, 4.0]), true);
    session.finish();
    events.extend(run(session, &script, true));
    let windows: Vec<f64> = script
        .calls()
        .iter()
        .map(|c| f64::from(c.seconds))
        .filter(|&s| s > 6.0)
        .collect();
    assert_eq!(windows.len(), 2, "two windows of two: {windows:?}");
    assert!(windows.iter().all(|&s| s <= 10.0), "{windows:?}");
    assert_eq!(revisions(&events).len(), 4);
}

#[test]
fn a_revision_that_only_moves_punctuation_or_case_is_not_sent() {
    assert!(super::same_words(
        "And so, my fellow Americans.",
        "and so my fellow americans"
    ));
    assert!(super::same_words("서울 요금소에서", "서울요금소에서."));
    assert!(!super::same_words("ill-disposed", "old exposed"));
}
