//! The driver over a real decoder pool of scripted decoders: what a transport sees, from
//! `ready` to `closed`, with limits, shutdown, a vanished client and the enricher fan-out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::enrich::{EarlyEvents, EnrichFuture, Enriched, Enricher, FinalText};
use super::{Closed, Driver, DriverConfig, Ending, Opening, Reply, SessionLags, Step};
use crate::config::{SttConfig, VadConfig};
use crate::engine::Engine;
use crate::protocol::{ClientMessage, EffectiveOptions, ServerMessage, close_code};
use crate::session::default_options;
use crate::stt::scripted::Script;
use crate::testing::{pcm_s16le, scripted_engine, silence, tone};

fn engine() -> Engine {
    scripted_engine(
        &Script::new().shared(),
        SttConfig::default(),
        VadConfig::default(),
    )
}

fn live_config() -> DriverConfig {
    DriverConfig {
        max_frame_bytes: 64_000,
        max_backlog_s: 120.0,
        max_prompt_chars: 200,
        idle_timeout: None,
        max_session: None,
        status_interval: None,
        outputs_dir: None,
    }
}

fn options(keywords: bool) -> EffectiveOptions {
    let mut o = default_options(&SttConfig::default(), keywords);
    o.partials = false;
    o
}

fn start(
    engine: &Engine,
    config: DriverConfig,
    enrichers: &[Arc<dyn Enricher>],
) -> (Driver, Vec<ServerMessage>) {
    let opening = Opening {
        id: "s1".into(),
        options: options(true),
        early_errors: Vec::new(),
    };
    Driver::start(engine, config, opening, enrichers).expect("valid options")
}

/// Two utterances of tone, as a live client would send them (100 ms frames).
fn speak_two_utterances(driver: &mut Driver) {
    let audio: Vec<f32> = [tone(1.5), silence(1.2), tone(2.0), silence(1.2)].concat();
    for frame in audio.chunks(1600) {
        assert!(driver.push_audio(&pcm_s16le(frame)).is_empty());
    }
}

/// Runs the driver to its end, collecting what it sends.
async fn run_to_close(driver: &mut Driver) -> (Vec<ServerMessage>, Closed) {
    let mut sent = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), driver.next())
            .await
            .expect("the driver makes progress")
        {
            Step::Send(events) => sent.extend(events),
            Step::Ending(notice) => sent.extend(notice),
            Step::Closed(closed) => return (sent, closed),
        }
    }
}

fn final_ids(events: &[ServerMessage]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerMessage::Final { segment_id, .. } => Some(*segment_id),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn stop_sends_the_last_finals_then_closed() {
    let engine = engine();
    let (mut driver, greeting) = start(&engine, live_config(), &[]);
    assert!(
        matches!(&greeting[..], [ServerMessage::Ready { session_id, .. }] if session_id == "s1")
    );
    speak_two_utterances(&mut driver);
    assert_eq!(driver.apply(ClientMessage::Stop), Reply::Stop);
    assert!(
        driver.push_audio(&pcm_s16le(&tone(0.1))).is_empty(),
        "audio after stop is ignored"
    );
    let (sent, closed) = run_to_close(&mut driver).await;
    assert_eq!(final_ids(&sent), [0, 1]);
    assert_eq!(closed.summary.finals, 2);
    let (message, code, reason) = closed.farewell.expect("a graceful end says goodbye");
    assert!(matches!(message, ServerMessage::Closed { summary, .. } if summary.finals == 2));
    assert_eq!((code, reason), (close_code::NORMAL, "stopped"));
}

#[tokio::test]
async fn a_vanished_client_gets_nothing_but_its_transcript_is_written() {
    let dir = std::env::temp_dir().join(format!("sori-driver-{}", std::process::id()));
    let engine = engine();
    let config = DriverConfig {
        outputs_dir: Some(dir.clone()),
        ..live_config()
    };
    let (mut driver, _) = start(&engine, config, &[]);
    speak_two_utterances(&mut driver);
    driver.close(Ending::Gone);
    let (sent, closed) = run_to_close(&mut driver).await;
    assert!(sent.is_empty(), "nothing is sent to a client that is gone");
    assert!(closed.farewell.is_none());
    assert_eq!(closed.summary.finals, 2);
    let jsonl = std::fs::read_to_string(dir.join("s1.jsonl")).expect("transcript written");
    assert_eq!(jsonl.lines().count(), 2, "{jsonl}");
    assert!(dir.join("s1.srt").is_file() && dir.join("s1.vtt").is_file());
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn an_idle_client_is_told_why_and_closed() {
    let engine = engine();
    let config = DriverConfig {
        idle_timeout: Some(Duration::from_millis(100)),
        ..live_config()
    };
    let (mut driver, _) = start(&engine, config, &[]);
    let (sent, closed) = run_to_close(&mut driver).await;
    assert!(
        matches!(&sent[..], [ServerMessage::Error { code, fatal: true, .. }] if code == "idle_timeout"),
        "{sent:?}"
    );
    let (_, code, reason) = closed.farewell.unwrap();
    assert_eq!((code, reason), (close_code::NORMAL, "idle"));
}

#[tokio::test]
async fn hearing_from_the_client_keeps_it_open() {
    let engine = engine();
    let config = DriverConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        ..live_config()
    };
    let (mut driver, _) = start(&engine, config, &[]);
    for _ in 0..4 {
        let step = tokio::time::timeout(Duration::from_millis(150), driver.next()).await;
        assert!(step.is_err(), "nothing happens within the idle limit");
        driver.heard();
    }
    assert!(driver.is_live());
}

#[tokio::test]
async fn a_session_ends_at_its_length_limit() {
    let engine = engine();
    let config = DriverConfig {
        max_session: Some(Duration::from_millis(100)),
        ..live_config()
    };
    let (mut driver, _) = start(&engine, config, &[]);
    let (sent, closed) = run_to_close(&mut driver).await;
    assert!(matches!(&sent[0], ServerMessage::Error { code, .. } if code == "session_too_long"));
    assert_eq!(closed.farewell.unwrap().2, "session length limit");
}

#[tokio::test]
async fn shutdown_finishes_the_finals_and_closes_with_going_away() {
    let engine = engine();
    let (stop, stopping) = watch::channel(false);
    let (driver, _) = start(&engine, live_config(), &[]);
    let mut driver = driver.stop_on(stopping);
    speak_two_utterances(&mut driver);
    stop.send_replace(true);
    let (sent, closed) = run_to_close(&mut driver).await;
    assert_eq!(final_ids(&sent), [0, 1], "finals are not lost on shutdown");
    let (_, code, _) = closed.farewell.unwrap();
    assert_eq!(code, close_code::GOING_AWAY);
}

#[tokio::test]
async fn what_a_client_sends_while_the_session_drains_is_ignored_without_errors() {
    let engine = engine();
    let (mut driver, _) = start(&engine, live_config(), &[]);
    speak_two_utterances(&mut driver);
    let audio_before = driver.stream.session.summary_mut().audio_seconds;
    assert_eq!(driver.apply(ClientMessage::Stop), Reply::Stop);
    // A client that goes on streaming after `stop`: speech, oversized and empty frames, commands.
    for frame in [tone(1.5), silence(1.2)].concat().chunks(1600) {
        assert!(driver.push_audio(&pcm_s16le(frame)).is_empty());
    }
    assert!(driver.push_audio(&vec![0u8; 1 << 20]).is_empty());
    assert!(driver.push_audio(&[]).is_empty());
    let restart = ClientMessage::Start(Default::default());
    assert_eq!(driver.apply(restart), Reply::Send(Vec::new()));
    assert_eq!(driver.apply(ClientMessage::Stop), Reply::Stop);
    let (sent, closed) = run_to_close(&mut driver).await;
    assert_eq!(
        final_ids(&sent),
        [0, 1],
        "only what came before stop: {sent:?}"
    );
    assert_eq!(closed.summary.errors, 0, "no error flood");
    assert_eq!(
        closed.summary.audio_seconds,
        (audio_before * 1000.0).round() / 1000.0
    );
}

#[tokio::test]
async fn limits_too_far_to_express_are_no_limits() {
    let engine = engine();
    let config = DriverConfig {
        idle_timeout: Some(Duration::MAX),
        max_session: Some(Duration::MAX),
        ..live_config()
    };
    let (mut driver, _) = start(&engine, config, &[]);
    let step = tokio::time::timeout(Duration::from_millis(200), driver.next()).await;
    assert!(step.is_err(), "no limit fires: {step:?}");
    speak_two_utterances(&mut driver);
    driver.close(Ending::stopped());
    let (sent, _) = run_to_close(&mut driver).await;
    assert_eq!(final_ids(&sent), [0, 1]);
}

#[tokio::test]
async fn status_ticks_report_the_lag_to_the_monitor() {
    let engine = engine();
    let lags = SessionLags::default();
    let config = DriverConfig {
        status_interval: Some(Duration::from_millis(50)),
        ..live_config()
    };
    let (driver, _) = start(&engine, config, &[]);
    let mut driver = driver.report_lag_to(lags.clone());
    driver.push_audio(&pcm_s16le(&tone(0.5)));
    let step = driver.next().await;
    assert!(
        matches!(&step, Step::Send(events) if matches!(&events[..], [ServerMessage::Status { audio_seconds, .. }] if *audio_seconds == 0.5)),
        "{step:?}"
    );
    driver.apply(ClientMessage::Stop);
    run_to_close(&mut driver).await;
    assert_eq!(lags.max(), 0, "a closed session leaves the table");
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_session_goes_on() {
    let engine = engine();
    let (mut driver, _) = start(&engine, live_config(), &[]);
    let codes = |events: Vec<ServerMessage>| -> Vec<String> {
        events
            .into_iter()
            .filter_map(|e| match e {
                ServerMessage::Error { code, .. } => Some(code),
                _ => None,
            })
            .collect()
    };
    assert_eq!(codes(driver.push_audio(&[])), ["empty_frame"]);
    assert_eq!(codes(driver.push_audio(&[0; 64_001])), ["frame_too_large"]);
    assert_eq!(codes(driver.push_audio(&[0; 3])), ["bad_frame_length"]);
    speak_two_utterances(&mut driver);
    driver.apply(ClientMessage::Stop);
    let (sent, closed) = run_to_close(&mut driver).await;
    assert_eq!(final_ids(&sent), [0, 1]);
    assert_eq!(closed.summary.errors, 3);
}

#[tokio::test]
async fn a_flood_of_invalid_messages_ends_the_session_with_1008() {
    let engine = engine();
    let (mut driver, _) = start(&engine, live_config(), &[]);
    let invalid = || ServerMessage::error("invalid_message", "not understood", false);
    for _ in 0..super::MAX_INVALID_MESSAGES {
        assert_eq!(driver.refuse(invalid()).len(), 1, "each earns its error");
    }
    assert!(driver.is_live(), "up to the limit the session goes on");
    let last = driver.refuse(invalid());
    assert!(
        matches!(last.as_slice(), [ServerMessage::Error { code, fatal: true, .. }] if code == "too_many_invalid_messages"),
        "{last:?}"
    );
    assert!(!driver.is_live());
    assert!(
        driver.refuse(invalid()).is_empty(),
        "nothing more once closing"
    );
    let (_, closed) = run_to_close(&mut driver).await;
    let (_, code, _) = closed.farewell.expect("a graceful close");
    assert_eq!(code, close_code::POLICY);
}

#[tokio::test]
async fn audio_beyond_the_backlog_is_refused() {
    let script = Script::new().delay(Duration::from_secs(5)).shared();
    let engine = scripted_engine(&script, SttConfig::default(), VadConfig::default());
    let config = DriverConfig {
        max_backlog_s: 3.0,
        ..live_config()
    };
    let (mut driver, _) = start(&engine, config, &[]);
    let mut refused = Vec::new();
    for _ in 0..4 {
        for frame in [tone(2.0), silence(1.2)].concat().chunks(1600) {
            refused.extend(driver.push_audio(&pcm_s16le(frame)));
        }
        // Hand the first final to the (slow) decoder, as the transport loop would.
        let _ = tokio::time::timeout(Duration::from_millis(20), driver.next()).await;
    }
    assert!(
        matches!(refused.first(), Some(ServerMessage::Error { code, .. }) if code == "backlog_full"),
        "{refused:?}"
    );
}

/// A test double for keyword extraction: the final's text upper-cased as its one keyword,
/// sent early and then as the segment's result; `fail_first` finals find the backend down.
struct Shouting {
    fail_first: usize,
    calls: AtomicUsize,
}

impl Enricher for Shouting {
    fn wanted(&self, options: &EffectiveOptions) -> bool {
        options.keywords
    }

    fn drain_limit(&self) -> Duration {
        Duration::from_secs(2)
    }

    fn enrich(&self, segment: FinalText, early: EarlyEvents) -> EnrichFuture {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let down = call < self.fail_first;
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            if down {
                return Enriched::Unavailable(ServerMessage::error(
                    "llm_unavailable",
                    "down",
                    false,
                ));
            }
            let keyword = crate::protocol::Keyword {
                text: segment.text.to_uppercase(),
                category: "test".into(),
                label: "test".into(),
            };
            early.send(ServerMessage::Keyword {
                segment_id: segment.segment_id,
                keyword: keyword.clone(),
                latency_ms: 1,
            });
            Enriched::Events(vec![ServerMessage::Keywords {
                segment_id: segment.segment_id,
                keywords: vec![keyword],
                model: "shouting".into(),
                latency_ms: 30,
                cached: false,
            }])
        })
    }
}

fn keywords_of(events: &[ServerMessage]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerMessage::Keywords { segment_id, .. } => Some(*segment_id),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn every_final_gets_its_keywords_before_closed() {
    let engine = engine();
    let shouting: Arc<dyn Enricher> = Arc::new(Shouting {
        fail_first: 0,
        calls: AtomicUsize::new(0),
    });
    let (mut driver, _) = start(&engine, live_config(), &[shouting]);
    speak_two_utterances(&mut driver);
    driver.apply(ClientMessage::Stop);
    let (sent, _) = run_to_close(&mut driver).await;
    let mut ids = keywords_of(&sent);
    ids.sort();
    assert_eq!(ids, [0, 1]);
    for id in [0, 1] {
        let final_at = sent.iter().position(
            |e| matches!(e, ServerMessage::Final { segment_id, .. } if *segment_id == id),
        );
        let early_at = sent.iter().position(
            |e| matches!(e, ServerMessage::Keyword { segment_id, .. } if *segment_id == id),
        );
        let done_at = sent.iter().position(
            |e| matches!(e, ServerMessage::Keywords { segment_id, .. } if *segment_id == id),
        );
        assert!(final_at < early_at && early_at < done_at, "{sent:?}");
    }
}

/// The scripted decoder names the audio it heard ("1.50 s"), so the revision window (both
/// utterances, one "word" over them all) changes the text: the segment its word lands in gets
/// the window's name, the other is withdrawn. The revised text gets its own keywords.
#[tokio::test]
async fn a_revision_with_text_gets_keywords_for_the_revised_text() {
    let engine = engine();
    let shouting: Arc<dyn Enricher> = Arc::new(Shouting {
        fail_first: 0,
        calls: AtomicUsize::new(0),
    });
    let (driver, _) = start(&engine, live_config(), &[shouting]);
    let mut driver = driver.revise_live(60.0, crate::session::WindowJoin::ALIGNED);
    speak_two_utterances(&mut driver);
    driver.apply(ClientMessage::Stop);
    let (sent, closed) = run_to_close(&mut driver).await;
    let revised: Vec<(u64, String)> = sent
        .iter()
        .filter_map(|e| match e {
            ServerMessage::Revision {
                segment_id, text, ..
            } if !text.is_empty() => Some((*segment_id, text.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(revised.len(), 1, "{sent:?}");
    assert_eq!(closed.summary.revisions, 2, "one revised, one withdrawn");
    let (id, text) = &revised[0];
    let revision_at = sent
        .iter()
        .position(|e| matches!(e, ServerMessage::Revision { segment_id, .. } if segment_id == id))
        .unwrap();
    let after = &sent[revision_at..];
    assert!(
        after.iter().any(
            |e| matches!(e, ServerMessage::Keywords { segment_id, keywords, .. }
            if segment_id == id && keywords[0].text == text.to_uppercase())
        ),
        "no keywords for the revised text {text:?}: {sent:?}"
    );
    assert_eq!(keywords_of(&sent).len(), 3, "two finals and one revision");
}

#[tokio::test]
async fn an_outage_is_reported_once_not_per_final() {
    let engine = engine();
    let shouting: Arc<dyn Enricher> = Arc::new(Shouting {
        fail_first: 2,
        calls: AtomicUsize::new(0),
    });
    let (mut driver, _) = start(&engine, live_config(), &[shouting]);
    speak_two_utterances(&mut driver);
    driver.apply(ClientMessage::Stop);
    let (sent, _) = run_to_close(&mut driver).await;
    let outages = sent
        .iter()
        .filter(|e| matches!(e, ServerMessage::Error { code, .. } if code == "llm_unavailable"))
        .count();
    assert_eq!(outages, 1, "{sent:?}");
    assert!(keywords_of(&sent).is_empty());
}

#[tokio::test]
async fn sessions_that_do_not_want_an_enricher_do_not_get_it() {
    let engine = engine();
    let shouting: Arc<dyn Enricher> = Arc::new(Shouting {
        fail_first: 0,
        calls: AtomicUsize::new(0),
    });
    let opening = Opening {
        id: "s2".into(),
        options: options(false),
        early_errors: Vec::new(),
    };
    let (mut driver, _) = Driver::start(&engine, live_config(), opening, &[shouting]).unwrap();
    speak_two_utterances(&mut driver);
    driver.apply(ClientMessage::Stop);
    let (sent, _) = run_to_close(&mut driver).await;
    assert_eq!(final_ids(&sent), [0, 1]);
    assert!(keywords_of(&sent).is_empty());
}

#[tokio::test]
async fn a_transcript_that_cannot_be_saved_is_reported_once_and_the_finals_still_come() {
    // The outputs folder under a regular file: every write fails, for root too.
    let blocker = std::env::temp_dir().join(format!("sori-driver-blocker-{}", std::process::id()));
    std::fs::write(&blocker, "a file, not a folder").unwrap();
    let engine = engine();
    let config = DriverConfig {
        outputs_dir: Some(blocker.join("outputs")),
        ..live_config()
    };
    let (mut driver, _) = start(&engine, config, &[]);
    speak_two_utterances(&mut driver);
    driver.close(Ending::stopped());
    let (sent, closed) = run_to_close(&mut driver).await;
    assert_eq!(final_ids(&sent), [0, 1], "{sent:?}");
    let errors: Vec<_> = sent
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Error { code, fatal, .. } => Some((code.as_str(), *fatal)),
            _ => None,
        })
        .collect();
    assert_eq!(errors, [("transcript_not_saved", false)], "{sent:?}");
    assert_eq!(closed.summary.errors, 1);
    assert!(closed.summary.outputs.is_empty(), "{:?}", closed.summary);
    std::fs::remove_file(blocker).ok();
}

#[tokio::test]
async fn a_session_without_speech_leaves_no_files() {
    let dir = std::env::temp_dir().join(format!("sori-driver-silent-{}", std::process::id()));
    let engine = engine();
    let config = DriverConfig {
        outputs_dir: Some(dir.clone()),
        ..live_config()
    };
    let (mut driver, _) = start(&engine, config, &[]);
    for frame in silence(3.0).chunks(1600) {
        assert!(driver.push_audio(&pcm_s16le(frame)).is_empty());
    }
    driver.close(Ending::stopped());
    let (sent, closed) = run_to_close(&mut driver).await;
    assert!(final_ids(&sent).is_empty(), "{sent:?}");
    assert!(closed.summary.outputs.is_empty());
    assert!(!dir.exists(), "{} was created", dir.display());
}

/// An enricher whose backend never answers (a hung LLM), with the given drain limit.
struct Hung(Duration);

impl Enricher for Hung {
    fn wanted(&self, _: &EffectiveOptions) -> bool {
        true
    }

    fn drain_limit(&self) -> Duration {
        self.0
    }

    fn enrich(&self, _: FinalText, _: EarlyEvents) -> EnrichFuture {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn enrichers_drain_side_by_side_within_one_deadline() {
    let engine = engine();
    let limit = Duration::from_secs(2);
    let hung: [Arc<dyn Enricher>; 2] = [Arc::new(Hung(limit)), Arc::new(Hung(limit))];
    let (mut driver, _) = start(&engine, live_config(), &hung);
    speak_two_utterances(&mut driver);
    driver.apply(ClientMessage::Stop);
    let started = std::time::Instant::now();
    let (sent, closed) = run_to_close(&mut driver).await;
    let took = started.elapsed();
    assert_eq!(final_ids(&sent), [0, 1]);
    assert!(closed.farewell.is_some());
    // One after the other they would take 4 s.
    assert!(took < limit + limit / 2, "the drain took {took:?}");
}

#[tokio::test]
async fn a_stopping_server_bounds_the_drain_whatever_the_enrichers_limits() {
    let engine = engine();
    let (stop, stopping) = watch::channel(false);
    let limit = Duration::from_secs(30);
    let hung: [Arc<dyn Enricher>; 2] = [Arc::new(Hung(limit)), Arc::new(Hung(limit))];
    let (driver, _) = start(&engine, live_config(), &hung);
    let mut driver = driver
        .stop_on(stopping)
        .drain_within(Duration::from_millis(500));
    speak_two_utterances(&mut driver);
    let started = std::time::Instant::now();
    stop.send_replace(true);
    let (sent, closed) = run_to_close(&mut driver).await;
    let took = started.elapsed();
    assert_eq!(final_ids(&sent), [0, 1], "the finals still come");
    assert_eq!(closed.farewell.unwrap().1, close_code::GOING_AWAY);
    assert!(took < Duration::from_secs(5), "the drain took {took:?}");
}
