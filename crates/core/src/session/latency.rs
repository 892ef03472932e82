//! When each stretch of a live session's audio arrived, so that a final's latency can be
//! measured the way its listener feels it: from the moment the audio of its last word reached
//! the server to the moment the final is sent.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::audio::TARGET_SAMPLE_RATE;

/// How far back arrivals are remembered: longer than any utterance (30 s) plus its decode.
const KEEP: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
pub(super) struct ArrivalClock {
    /// (16 kHz samples received in all after this push, when the push arrived), oldest first.
    marks: VecDeque<(u64, Instant)>,
    received: u64,
}

impl ArrivalClock {
    /// `samples` more 16 kHz samples arrived now.
    pub(super) fn arrived(&mut self, samples: usize) {
        if samples == 0 {
            return;
        }
        let now = Instant::now();
        self.received += samples as u64;
        self.marks.push_back((self.received, now));
        while self
            .marks
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) > KEEP)
        {
            self.marks.pop_front();
        }
    }

    /// When the audio at `stream_s` seconds into the stream arrived (the push that carried it).
    pub(super) fn arrival_of(&self, stream_s: f64) -> Option<Instant> {
        let sample = (stream_s.max(0.0) * f64::from(TARGET_SAMPLE_RATE)) as u64;
        let index = self.marks.partition_point(|(upto, _)| *upto < sample);
        self.marks.get(index).map(|(_, at)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_maps_to_the_push_that_carried_it() {
        let mut clock = ArrivalClock::default();
        clock.arrived(1600); // 0.0–0.1 s
        let first = clock.marks[0].1;
        std::thread::sleep(Duration::from_millis(5));
        clock.arrived(1600); // 0.1–0.2 s
        let second = clock.marks[1].1;
        assert_eq!(clock.arrival_of(0.05), Some(first));
        assert_eq!(clock.arrival_of(0.1), Some(first));
        assert_eq!(clock.arrival_of(0.15), Some(second));
        assert_eq!(clock.arrival_of(0.3), None, "not arrived yet");
    }
}
