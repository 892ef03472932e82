//! Sample-rate conversion to [`TARGET_SAMPLE_RATE`] (16 kHz), for live streams and whole clips.

use std::fmt;

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Indexing, Resampler, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};

use crate::audio::{
    AudioError, MAX_FILE_SAMPLE_RATE, MAX_STREAM_SAMPLE_RATE, MIN_FILE_SAMPLE_RATE,
    MIN_STREAM_SAMPLE_RATE, TARGET_SAMPLE_RATE,
};

/// How much input one resampler chunk holds, as a fraction of a second (1/50 s = 20 ms, the
/// usual client frame). Small enough to add little latency, large enough for a sharp filter.
const CHUNKS_PER_SECOND: usize = 50;

/// Input frames per FFT block for files (at least; a whole number of exact ratio periods).
const FILE_BLOCK_FRAMES: usize = 2048;

/// Which rubato engine a [`StreamResampler`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Input already at 16 kHz: samples are copied through untouched.
    Passthrough,
    /// rubato's synchronous FFT resampler (every common rate).
    Fft,
    /// rubato's asynchronous sinc resampler (rates whose exact ratio to 16 kHz has no short block).
    Sinc,
}

/// Converts a live mono stream at 8–48 kHz to 16 kHz, fed chunks of any size.
///
/// **Engine choice.** For every rate whose exact ratio to 16 kHz repeats within 40 ms of input
/// (8, 11.025, 12, 22.05, 24, 32, 44.1, 48 kHz — every rate a browser, phone or SDK uses) this
/// runs rubato's synchronous [`Fft`] resampler with both chunk sizes fixed: the ratio is exact,
/// the anti-aliasing filter is a long windowed sinc applied in the frequency domain (flat past
/// 7 kHz, so the whole band Whisper listens to survives; a 10 kHz tone at 48 kHz comes out below
/// -40 dB instead of aliasing to 6 kHz), and it costs ~15 µs per 20 ms frame at 48 kHz here —
/// about 4× cheaper than rubato's sinc interpolator at comparable quality. Blocks are 20 ms
/// (40 ms at 11.025 and 22.05 kHz, whose exact ratio period is 40 ms; see `fft_block` for why
/// blocks are kept even), so the added latency is one block plus half a block of filter delay — about
/// 30 ms — and that delay is trimmed, so the output is time-aligned with the input.
/// An odd rate such as 44 101 Hz has no short exact period (its FFT block would be a whole
/// second), so such rates fall back to rubato's [`Async`] sinc resampler (128-tap
/// Blackman-Harris sinc, cubic interpolation, ~60 µs per 20 ms frame), which takes any ratio.
///
/// Input is buffered internally up to the engine's chunk size, so the output does not depend on
/// how the stream is cut into calls: feeding one sample at a time and feeding whole seconds give
/// identical samples. The resampler's delay is dropped from the start of the output and
/// [`finish`](Self::finish) flushes the tail, so over a whole stream the output has
/// `round(input_len × 16000 / input_rate)` samples, aligned with the input.
pub struct StreamResampler {
    /// Declared rate of the incoming stream.
    input_rate: u32,
    /// The resampling machinery; `None` at 16 kHz (passthrough).
    inner: Option<Inner>,
}

/// State of a non-passthrough resampler.
struct Inner {
    /// Which engine `resampler` is, for diagnostics.
    engine: Engine,
    /// The rubato engine, mono.
    resampler: Box<dyn Resampler<f32>>,
    /// Input frames waiting for a full chunk (always fewer than one chunk).
    pending: Vec<f32>,
    /// One chunk of output, reused on every call.
    scratch: Vec<f32>,
    /// Output frames of start-up delay still to drop.
    to_trim: usize,
    /// Input frames received since the stream started.
    frames_in: u64,
    /// Output frames emitted since the stream started (after trimming).
    frames_out: u64,
}

impl fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamResampler")
            .field("input_rate", &self.input_rate)
            .field("engine", &self.engine())
            .field("chunk_frames", &self.chunk_frames())
            .finish()
    }
}

impl StreamResampler {
    /// A resampler for a stream at `input_rate` (8000–48000 Hz).
    pub fn new(input_rate: u32) -> Result<Self, AudioError> {
        check_rate(input_rate, MIN_STREAM_SAMPLE_RATE, MAX_STREAM_SAMPLE_RATE)?;
        let rate_in = input_rate as usize;
        Self::build(
            input_rate,
            fft_block(
                rate_in,
                TARGET_SAMPLE_RATE as usize,
                rate_in / CHUNKS_PER_SECOND,
                rate_in / 25,
            ),
        )
    }

    /// A resampler for a decoded file at `input_rate` (4–384 kHz), fed piece by piece: the
    /// streaming twin of [`resample_all`]. Latency does not matter for files, so every rate
    /// gets the exact-ratio FFT engine with [`resample_all`]'s blocks (at most one second of
    /// input, for rates whose ratio to 16 kHz has no shorter period).
    pub fn for_file(input_rate: u32) -> Result<Self, AudioError> {
        check_rate(input_rate, MIN_FILE_SAMPLE_RATE, MAX_FILE_SAMPLE_RATE)?;
        let block = fft_block(
            input_rate as usize,
            TARGET_SAMPLE_RATE as usize,
            FILE_BLOCK_FRAMES,
            usize::MAX,
        );
        Self::build(input_rate, block)
    }

    /// A passthrough at 16 kHz, else the FFT engine over `block` input frames, or the sinc
    /// engine when no block fits.
    fn build(input_rate: u32, block: Option<usize>) -> Result<Self, AudioError> {
        if input_rate == TARGET_SAMPLE_RATE {
            return Ok(StreamResampler {
                input_rate,
                inner: None,
            });
        }
        let rate_in = input_rate as usize;
        let rate_out = TARGET_SAMPLE_RATE as usize;
        let construction = |e: rubato::ResamplerConstructionError| AudioError::Resample {
            rate: input_rate,
            reason: e.to_string(),
        };
        let (engine, resampler): (Engine, Box<dyn Resampler<f32>>) = match block {
            Some(block) => {
                let r = Fft::<f32>::new(rate_in, rate_out, block, 1, FixedSync::Both)
                    .map_err(construction)?;
                (Engine::Fft, Box::new(r))
            }
            None => {
                let params = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2)
                    .interpolation(SincInterpolationType::Cubic);
                let ratio = TARGET_SAMPLE_RATE as f64 / input_rate as f64;
                let chunk = rate_in / CHUNKS_PER_SECOND;
                let r = Async::<f32>::new_sinc(ratio, 1.0, &params, chunk, 1, FixedAsync::Input)
                    .map_err(construction)?;
                (Engine::Sinc, Box::new(r))
            }
        };
        let inner = Inner {
            engine,
            pending: Vec::with_capacity(resampler.input_frames_max()),
            scratch: vec![0.0; resampler.output_frames_max()],
            to_trim: resampler.output_delay(),
            frames_in: 0,
            frames_out: 0,
            resampler,
        };
        Ok(StreamResampler {
            input_rate,
            inner: Some(inner),
        })
    }

    /// The declared input rate.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// Which engine runs this stream.
    pub fn engine(&self) -> Engine {
        self.inner
            .as_ref()
            .map_or(Engine::Passthrough, |i| i.engine)
    }

    /// Input frames per engine call (1 for passthrough): the granularity of the output.
    pub fn chunk_frames(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(1, |i| i.resampler.input_frames_next())
    }

    /// Worst-case latency the resampler adds, in 16 kHz output samples: one chunk waiting to
    /// fill plus the filter's delay.
    pub fn latency_samples(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| {
            let chunk_out = i.resampler.input_frames_next() as u64 * u64::from(TARGET_SAMPLE_RATE)
                / u64::from(self.input_rate);
            chunk_out as usize + i.resampler.output_delay()
        })
    }

    /// Resamples `input` and appends every 16 kHz sample that is ready to `out`.
    ///
    /// Input that does not fill a whole chunk is kept for the next call (or [`finish`]).
    /// At 16 kHz the input is appended unchanged.
    ///
    /// [`finish`]: Self::finish
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        inner.frames_in += input.len() as u64;
        let chunk = inner.resampler.input_frames_next();
        let mut rest = input;
        if !inner.pending.is_empty() {
            let take = (chunk - inner.pending.len()).min(rest.len());
            inner.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if inner.pending.len() < chunk {
                return;
            }
            let pending = std::mem::take(&mut inner.pending);
            inner.run_chunk(&pending, None, out);
            inner.pending = pending;
            inner.pending.clear();
        }
        // Whole chunks straight from the caller's slice, no copy.
        while rest.len() >= chunk {
            let (now, later) = rest.split_at(chunk);
            inner.run_chunk(now, None, out);
            rest = later;
        }
        inner.pending.extend_from_slice(rest);
    }

    /// Ends the stream: flushes buffered input and the filter's tail into `out`, so the whole
    /// stream's output has `round(input_len × 16000 / input_rate)` samples. The resampler is
    /// then reset and can start a new stream.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        let rate = u64::from(self.input_rate);
        let expected = (inner.frames_in * u64::from(TARGET_SAMPLE_RATE) + rate / 2) / rate;
        let start_len = out.len();
        if inner.frames_in > 0 {
            let pending = std::mem::take(&mut inner.pending);
            inner.run_chunk(&pending, Some(pending.len()), out);
            inner.pending = pending;
            // Pump silence until the delayed tail is out. Bounded: each call yields output.
            let mut guard = 0;
            while inner.frames_out < expected && guard < 64 {
                inner.run_chunk(&[], Some(0), out);
                guard += 1;
            }
        }
        if inner.frames_out > expected {
            let excess = (inner.frames_out - expected) as usize;
            let appended = out.len() - start_len;
            out.truncate(out.len() - excess.min(appended));
        }
        inner.resampler.reset();
        inner.pending.clear();
        inner.to_trim = inner.resampler.output_delay();
        inner.frames_in = 0;
        inner.frames_out = 0;
    }
}

impl Inner {
    /// Runs one engine call on `input` (a whole chunk, or with `partial` set, a short last one)
    /// and appends its output minus any start-up delay still to trim.
    fn run_chunk(&mut self, input: &[f32], partial: Option<usize>, out: &mut Vec<f32>) {
        let indexing = partial.map(|p| Indexing::new().partial_len(p));
        let Ok(buf_in) = InterleavedSlice::new(input, 1, input.len()) else {
            return;
        };
        let cap = self.scratch.len();
        let Ok(mut buf_out) = InterleavedSlice::new_mut(&mut self.scratch[..], 1, cap) else {
            return;
        };
        let produced =
            match self
                .resampler
                .process_into_buffer(&buf_in, &mut buf_out, indexing.as_ref())
            {
                Ok((_, produced)) => produced,
                Err(e) => {
                    // Sizes are computed from the engine itself, so this is a bug, not bad input.
                    tracing::error!(error = %e, "resampler rejected a chunk; dropping it");
                    return;
                }
            };
        let skip = self.to_trim.min(produced);
        self.to_trim -= skip;
        out.extend_from_slice(&self.scratch[skip..produced]);
        self.frames_out += (produced - skip) as u64;
    }
}

/// The FFT block (input frames) for `rate_in → rate_out`: the smallest whole number of exact
/// ratio periods holding at least `target` frames, made an even number of periods when that
/// still fits in `max` frames; `None` when even one period is longer than `max`.
///
/// Why even: rubato's FFT filter is centred on input frame `floor(n/2)` while it reports a delay
/// of `floor(n_out/2)` output frames; both agree exactly only when both block sizes are even.
/// Otherwise the output leads by a fraction of a sample (at most 0.5 output samples, 31 µs).
fn fft_block(rate_in: usize, rate_out: usize, target: usize, max: usize) -> Option<usize> {
    let g = gcd(rate_in, rate_out);
    let (period_in, period_out) = (rate_in / g, rate_out / g);
    if period_in > max {
        return None;
    }
    let mut periods = target.div_ceil(period_in).max(1);
    let odd = |p: usize| (p * period_in) % 2 == 1 || (p * period_out) % 2 == 1;
    if odd(periods) && (periods + 1) * period_in <= max && !odd(periods + 1) {
        periods += 1;
    }
    Some(periods * period_in)
}

/// An error unless `rate` is within `min..=max` Hz.
fn check_rate(rate: u32, min: u32, max: u32) -> Result<(), AudioError> {
    if (min..=max).contains(&rate) {
        Ok(())
    } else {
        Err(AudioError::UnsupportedSampleRate { rate, min, max })
    }
}

/// Greatest common divisor.
fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Resamples a whole mono clip at `input_rate` (4–384 kHz) to 16 kHz, time-aligned, with
/// `ceil(len × 16000 / input_rate)` output samples. Uses rubato's [`Fft`] resampler (exact ratio,
/// high quality; for files latency does not matter, so larger blocks are fine).
pub fn resample_all(samples: &[f32], input_rate: u32) -> Result<Vec<f32>, AudioError> {
    check_rate(input_rate, MIN_FILE_SAMPLE_RATE, MAX_FILE_SAMPLE_RATE)?;
    if input_rate == TARGET_SAMPLE_RATE || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let err = |reason: String| AudioError::Resample {
        rate: input_rate,
        reason,
    };
    let (rate_in, rate_out) = (input_rate as usize, TARGET_SAMPLE_RATE as usize);
    let block = fft_block(rate_in, rate_out, FILE_BLOCK_FRAMES, usize::MAX).unwrap_or(2048);
    let mut resampler = Fft::<f32>::new(rate_in, rate_out, block, 1, FixedSync::Both)
        .map_err(|e| err(e.to_string()))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| err(e.to_string()))?;
    let output = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| err(e.to_string()))?;
    Ok(output.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(rate: u32, freq: f64, seconds: f64, amp: f64) -> Vec<f32> {
        let n = (rate as f64 * seconds).round() as usize;
        (0..n)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / rate as f64).sin()) as f32)
            .collect()
    }

    fn stream(rate: u32, input: &[f32], chunk: usize) -> Vec<f32> {
        let mut r = StreamResampler::new(rate).unwrap();
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            r.process(c, &mut out);
        }
        r.finish(&mut out);
        out
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Least-squares fit of `a·sin + b·cos` at `freq` over `out` minus `edge` samples at both
    /// ends (the abrupt start and end of a test tone ring through any band-limited filter).
    /// Returns (amplitude, lag in 16 kHz samples against the ideal tone, max residual).
    fn fit(out: &[f32], freq: f64, edge: usize) -> (f64, f64, f64) {
        let w = 2.0 * PI * freq / 16_000.0;
        let mid = &out[edge..out.len() - edge];
        let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (k, y) in mid.iter().enumerate() {
            let t = w * (k + edge) as f64;
            let (s, c) = t.sin_cos();
            ss += s * s;
            sc += s * c;
            cc += c * c;
            ys += f64::from(*y) * s;
            yc += f64::from(*y) * c;
        }
        let det = ss * cc - sc * sc;
        let a = (ys * cc - yc * sc) / det;
        let b = (yc * ss - ys * sc) / det;
        let resid = mid
            .iter()
            .enumerate()
            .map(|(k, y)| {
                let t = w * (k + edge) as f64;
                (f64::from(*y) - a * t.sin() - b * t.cos()).abs()
            })
            .fold(0.0, f64::max);
        // a·sin(t) + b·cos(t) = A·sin(t + φ): a lead of φ/w samples is a lag of -φ/w.
        ((a * a + b * b).sqrt(), -b.atan2(a) / w, resid)
    }

    fn zero_crossings(x: &[f32]) -> usize {
        x.windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count()
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<StreamResampler>();
    }

    #[test]
    fn engines_by_rate() {
        for rate in [8000, 11025, 12000, 22050, 24000, 32000, 44100, 48000] {
            let r = StreamResampler::new(rate).unwrap();
            assert_eq!(r.engine(), Engine::Fft, "{rate}");
            assert!(r.chunk_frames() <= rate as usize / 25, "{rate}: {r:?}");
        }
        assert_eq!(
            StreamResampler::new(16000).unwrap().engine(),
            Engine::Passthrough
        );
        assert_eq!(StreamResampler::new(44101).unwrap().engine(), Engine::Sinc);
    }

    #[test]
    fn rejects_rates_out_of_range() {
        for bad in [0, 7999, 48001, 96000] {
            let e = StreamResampler::new(bad).unwrap_err();
            assert_eq!(e.code(), "unsupported_sample_rate");
            assert!(e.to_string().contains("8000–48000 Hz"), "{e}");
        }
        let e = resample_all(&[0.0; 10], 1000).unwrap_err();
        assert!(e.to_string().contains("4000–384000 Hz"), "{e}");
    }

    #[test]
    fn sines_keep_frequency_phase_and_length() {
        for rate in [48_000u32, 44_100, 32_000, 22_050, 11_025, 8_000, 44_101] {
            for freq in [440.0, 1000.0, 3000.0] {
                if freq >= f64::from(rate) * 0.45 {
                    continue;
                }
                let input = sine(rate, freq, 1.0, 0.5);
                let out = stream(rate, &input, 960);
                let expected = (input.len() as f64 * 16_000.0 / f64::from(rate)).round() as usize;
                assert!(
                    out.len().abs_diff(expected) <= 1,
                    "{rate} Hz: {} samples, expected {expected}",
                    out.len()
                );
                let (amp, lag, resid) = fit(&out, freq, 400);
                assert!(
                    (amp - 0.5).abs() < 0.005,
                    "{rate} Hz, {freq} Hz: amplitude {amp}"
                );
                // Exactly aligned where the FFT blocks are even; within a sample otherwise.
                let max_lag = match rate {
                    11_025 | 44_101 => 1.0,
                    _ => 0.02,
                };
                assert!(
                    lag.abs() < max_lag,
                    "{rate} Hz, {freq} Hz: lag {lag} samples"
                );
                assert!(resid < 0.003, "{rate} Hz, {freq} Hz: residual {resid}");
                let zc = zero_crossings(&out[400..out.len() - 400]) as f64;
                let want = 2.0 * freq * (out.len() - 800) as f64 / 16_000.0;
                assert!(
                    (zc - want).abs() <= 2.0,
                    "{rate} Hz: {zc} crossings vs {want}"
                );
            }
        }
    }

    #[test]
    fn removes_content_above_8khz() {
        // A 10 kHz tone at 48 kHz cannot exist at 16 kHz: it must be filtered, not aliased.
        let out = stream(48_000, &sine(48_000, 10_000.0, 1.0, 0.5), 960);
        let level = rms(&out[400..out.len() - 400]);
        assert!(level < 0.5 * 0.01, "10 kHz leaked at rms {level}");
        // 7 kHz is inside the passband.
        let out = stream(48_000, &sine(48_000, 7_000.0, 1.0, 0.5), 960);
        let level = rms(&out[400..out.len() - 400]);
        assert!(level > 0.3, "7 kHz attenuated to rms {level}");
    }

    #[test]
    fn chunk_size_does_not_change_output() {
        for rate in [48_000u32, 44_100, 8_000, 44_101] {
            let input = sine(rate, 523.0, 0.7, 0.8);
            let reference = stream(rate, &input, 4800);
            for chunk in [1usize, 160, 960, 1234] {
                let out = stream(rate, &input, chunk);
                assert_eq!(out.len(), reference.len(), "{rate} Hz, chunk {chunk}");
                let diff = out
                    .iter()
                    .zip(&reference)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(diff < 1e-4, "{rate} Hz, chunk {chunk}: diff {diff}");
            }
        }
    }

    #[test]
    fn passthrough_at_16k() {
        let input = sine(16_000, 440.0, 0.1, 0.5);
        let mut r = StreamResampler::new(16_000).unwrap();
        let mut out = vec![];
        r.process(&input[..7], &mut out);
        r.process(&input[7..], &mut out);
        r.finish(&mut out);
        assert_eq!(out, input);
        assert_eq!(r.latency_samples(), 0);
        assert_eq!(resample_all(&input, 16_000).unwrap(), input);
    }

    #[test]
    fn reusable_after_finish_and_short_streams() {
        let mut r = StreamResampler::new(44_100).unwrap();
        let input = sine(44_100, 440.0, 0.3, 0.5);
        let mut first = vec![];
        r.process(&input, &mut first);
        r.finish(&mut first);
        let mut second = vec![];
        r.process(&input, &mut second);
        r.finish(&mut second);
        assert_eq!(first, second);
        // A stream shorter than one chunk still gets its samples out.
        let mut out = vec![];
        r.process(&input[..100], &mut out);
        r.finish(&mut out);
        assert_eq!(out.len(), 36);
        // An empty stream gives nothing.
        let mut out = vec![];
        r.finish(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn output_arrives_while_streaming() {
        let mut r = StreamResampler::new(48_000).unwrap();
        let mut out = vec![];
        let input = sine(48_000, 440.0, 1.0, 0.5);
        for c in input.chunks(960) {
            r.process(c, &mut out);
        }
        // Everything but the latency is out before finish.
        assert!(out.len() + r.latency_samples() >= 16_000, "{}", out.len());
        assert!(r.latency_samples() <= 800, "{}", r.latency_samples());
    }

    #[test]
    fn resample_all_matches_ideal() {
        for rate in [48_000u32, 44_100, 22_050, 8_000, 96_000, 11_025] {
            let input = sine(rate, 440.0, 1.0, 0.5);
            let out = resample_all(&input, rate).unwrap();
            let expected = (input.len() as f64 * 16_000.0 / f64::from(rate)).ceil() as usize;
            assert!(out.len().abs_diff(expected) <= 1, "{rate}: {}", out.len());
            let (amp, lag, resid) = fit(&out, 440.0, 400);
            assert!((amp - 0.5).abs() < 0.005, "{rate}: amplitude {amp}");
            assert!(lag.abs() < 0.02, "{rate}: lag {lag}");
            assert!(resid < 0.003, "{rate}: residual {resid}");
        }
        assert!(resample_all(&[], 44_100).unwrap().is_empty());
    }
}
