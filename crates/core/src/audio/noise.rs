//! Noise mixed into speech at a chosen signal-to-noise ratio, to measure accuracy where people
//! actually talk (music on hold, fans, traffic) on any corpus: `sori eval --noise`, and the
//! mixes of `sori bench --noise`.
//!
//! SNR here is the speech clip's mean power over its whole length ÷ the added noise's mean
//! power, in dB. The noise is looped (or cut) to the speech's length; white noise is Gaussian
//! from a fixed seed, so a mix is the same on every run and every machine.

use std::str::FromStr;

/// Loudest SNR a mix may ask for: beyond it the noise is below 16-bit quantisation anyway.
pub const MAX_SNR_DB: f32 = 60.0;
/// Quietest: speech 30 dB under the noise is gone for any recogniser.
pub const MIN_SNR_DB: f32 = -30.0;

/// Why a mix could not be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NoiseError {
    #[error("the speech is silent (all samples zero): no SNR can be set against it")]
    SilentSpeech,
    #[error("the noise is silent or empty: nothing to mix in")]
    SilentNoise,
    #[error("SNR {0} dB is out of range; give a value from {MIN_SNR_DB} to {MAX_SNR_DB} dB")]
    SnrOutOfRange(f32),
}

/// What to add: white noise, or the samples of a recording (16 kHz mono).
#[derive(Debug, Clone, PartialEq)]
pub enum NoiseSource {
    White,
    Samples(std::sync::Arc<[f32]>),
}

/// A noise source and the SNR to mix it at.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseMix {
    pub source: NoiseSource,
    pub snr_db: f32,
}

impl NoiseMix {
    pub fn new(source: NoiseSource, snr_db: f32) -> Result<Self, NoiseError> {
        if !(MIN_SNR_DB..=MAX_SNR_DB).contains(&snr_db) {
            return Err(NoiseError::SnrOutOfRange(snr_db));
        }
        Ok(Self { source, snr_db })
    }

    /// `speech` with this noise added at this SNR.
    pub fn apply(&self, speech: &[f32]) -> Result<Vec<f32>, NoiseError> {
        match &self.source {
            NoiseSource::White => {
                mix_at_snr(speech, &white_noise(speech.len(), WHITE_SEED), self.snr_db)
            }
            NoiseSource::Samples(noise) => mix_at_snr(speech, noise, self.snr_db),
        }
    }
}

/// The seed of every white-noise mix: the same noise on every run.
pub const WHITE_SEED: u64 = 0x5072_6953_6f72_6931;

/// Mean power (mean square) of `samples`; 0 for none.
pub fn mean_power(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum::<f64>()
        / samples.len() as f64
}

/// `speech` + `noise` scaled so that power(speech) ÷ power(noise) is `snr_db`. The noise is
/// looped from its start to the speech's length. If the sum would clip, the whole mix is scaled
/// down (the SNR is unchanged by that).
pub fn mix_at_snr(speech: &[f32], noise: &[f32], snr_db: f32) -> Result<Vec<f32>, NoiseError> {
    if !(MIN_SNR_DB..=MAX_SNR_DB).contains(&snr_db) {
        return Err(NoiseError::SnrOutOfRange(snr_db));
    }
    let speech_power = mean_power(speech);
    if speech_power == 0.0 {
        return Err(NoiseError::SilentSpeech);
    }
    let looped: Vec<f32> = noise.iter().copied().cycle().take(speech.len()).collect();
    let noise_power = mean_power(&looped);
    if noise_power == 0.0 {
        return Err(NoiseError::SilentNoise);
    }
    let wanted_noise_power = speech_power / 10f64.powf(f64::from(snr_db) / 10.0);
    let gain = (wanted_noise_power / noise_power).sqrt() as f32;
    let mut mix: Vec<f32> = speech
        .iter()
        .zip(&looped)
        .map(|(&s, &n)| s + gain * n)
        .collect();
    let peak = mix.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if peak > 0.99 {
        let scale = 0.99 / peak;
        mix.iter_mut().for_each(|s| *s *= scale);
    }
    Ok(mix)
}

/// `len` samples of Gaussian white noise (unit variance) from `seed` (splitmix64 and
/// Box–Muller: no dependency, the same numbers everywhere).
pub fn white_noise(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut next_unit = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 random bits into (0, 1]: never 0, so the logarithm below is finite.
        ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    };
    let mut out = Vec::with_capacity(len + 1);
    while out.len() < len {
        let radius = (-2.0 * next_unit().ln()).sqrt();
        let angle = std::f64::consts::TAU * next_unit();
        out.push((radius * angle.cos()) as f32);
        out.push((radius * angle.sin()) as f32);
    }
    out.truncate(len);
    out
}

/// A noise kind as users name it: `white`, or a path to a recording.
#[derive(Debug, Clone, PartialEq)]
pub enum NoiseSpec {
    White,
    File(std::path::PathBuf),
}

impl FromStr for NoiseSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Err("give `white` or the path of a noise recording".into()),
            "white" => Ok(NoiseSpec::White),
            path => Ok(NoiseSpec::File(path.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(len: usize, amplitude: f32) -> Vec<f32> {
        (0..len)
            .map(|i| amplitude * (i as f32 * 0.05).sin())
            .collect()
    }

    fn snr_of(speech: &[f32], mix: &[f32]) -> f64 {
        let noise: Vec<f32> = mix.iter().zip(speech).map(|(m, s)| m - s).collect();
        10.0 * (mean_power(speech) / mean_power(&noise)).log10()
    }

    #[test]
    fn the_added_noise_has_the_asked_snr() {
        // Quiet enough that no mix clips (clipping is scaled, tested below).
        let speech = tone(16_000, 0.1);
        for snr in [20.0, 10.0, 5.0, 0.0] {
            let mix = mix_at_snr(&speech, &white_noise(16_000, 7), snr).unwrap();
            assert!(
                (snr_of(&speech, &mix) - f64::from(snr)).abs() < 0.01,
                "{snr} dB"
            );
        }
    }

    #[test]
    fn a_short_noise_is_looped_to_the_speech_length() {
        let speech = tone(10_000, 0.2);
        let noise = tone(333, 0.5);
        let mix = mix_at_snr(&speech, &noise, 10.0).unwrap();
        assert_eq!(mix.len(), speech.len());
        let added: Vec<f32> = mix.iter().zip(&speech).map(|(m, s)| m - s).collect();
        // Sample 333 is the noise's first sample again.
        assert!((added[333] - added[0]).abs() < 1e-6);
        assert!((snr_of(&speech, &mix) - 10.0).abs() < 0.01);
    }

    #[test]
    fn a_mix_that_would_clip_is_scaled_down_keeping_its_snr() {
        let speech = tone(16_000, 0.95);
        let mix = mix_at_snr(&speech, &white_noise(16_000, 1), 0.0).unwrap();
        assert!(mix.iter().all(|s| s.abs() <= 0.99));
        let scale = mix.iter().zip(&speech).map(|(m, s)| m * s).sum::<f32>()
            / speech.iter().map(|s| s * s).sum::<f32>();
        let scaled: Vec<f32> = speech.iter().map(|s| s * scale).collect();
        assert!((snr_of(&scaled, &mix) - 0.0).abs() < 0.2);
    }

    #[test]
    fn white_noise_is_repeatable_and_unit_variance() {
        let a = white_noise(50_000, 3);
        assert_eq!(a, white_noise(50_000, 3));
        assert_ne!(a, white_noise(50_000, 4));
        assert!((mean_power(&a) - 1.0).abs() < 0.03);
        let mean = a.iter().map(|&s| f64::from(s)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.02);
    }

    #[test]
    fn silence_and_absurd_snrs_are_refused() {
        let speech = tone(1000, 0.3);
        assert_eq!(
            mix_at_snr(&[0.0; 100], &speech, 5.0),
            Err(NoiseError::SilentSpeech)
        );
        assert_eq!(mix_at_snr(&speech, &[], 5.0), Err(NoiseError::SilentNoise));
        assert_eq!(
            mix_at_snr(&speech, &[0.0; 10], 5.0),
            Err(NoiseError::SilentNoise)
        );
        assert_eq!(
            mix_at_snr(&speech, &speech, 90.0),
            Err(NoiseError::SnrOutOfRange(90.0))
        );
        assert!(NoiseMix::new(NoiseSource::White, -40.0).is_err());
        assert_eq!("white".parse(), Ok(NoiseSpec::White));
        assert_eq!("a/b.mp3".parse(), Ok(NoiseSpec::File("a/b.mp3".into())));
    }
}
