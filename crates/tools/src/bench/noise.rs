//! `sori bench --noise`: accuracy in noise, sori offline and live beside faster-whisper
//! (docs/accuracy.md, "Accuracy in noise").
//!
//! The mixes are made here from what the fetch scripts bring: the 39 s of JFK + LibriVox read
//! speech (`data/bench/peers/joined.wav`, `scripts/peers.sh fetch`) and the game music of
//! Debian's `asc-music` package (`scripts/peers.sh noise`), or Gaussian white noise, at each
//! `--snr`. Each mix is written to `data/bench/noise/mixes/` with its reference, and every system
//! of `sori bench --peers` runs over all of them in its own process (live: real-time `/ws`).
//! Two more files hold the noises alone at the loudest level: whatever a system transcribes
//! there is a hallucination.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use super::peers::{PeersArgs, PeersReport, System};
use sori::config::Config;
use sori_core::audio::decode::load_16k_mono;
use sori_core::audio::noise::{WHITE_SEED, mean_power, mix_at_snr, white_noise};
use sori_core::audio::wav::write_wav_16k;
use sori_core::protocol::Language;

/// The speech every mix is made of.
const SPEECH: &str = "data/bench/peers/joined.wav";
/// Where `scripts/peers.sh noise` puts the music (mp3).
const MUSIC_DIR: &str = "data/bench/noise/music";
/// Where the mixes are written.
const MIX_DIR: &str = "data/bench/noise/mixes";

/// `sori bench --noise` options (flattened into `sori bench`).
#[derive(Debug, Clone, clap::Args)]
pub struct NoiseArgs {
    /// Accuracy in noise instead: speech mixed with music and white noise at each --snr, run
    /// through the --peers systems (default: sori offline, sori streaming, faster-whisper int8).
    #[arg(long)]
    pub noise: bool,
    /// Signal-to-noise ratios of the mixes, in dB (speech power ÷ noise power).
    #[arg(long, value_delimiter = ',', default_values_t = [10.0, 5.0, 0.0], allow_negative_numbers = true, requires = "noise")]
    pub snr: Vec<f32>,
    /// With --noise: compare the voice detectors (earshot, Silero) on the mixes instead of
    /// transcribing them: speech kept, noise taken for speech, utterances, time per second.
    #[arg(long, requires = "noise")]
    pub vad: bool,
    /// Mixes per noisy row: other white-noise seeds and other stretches of the music, each
    /// row's figure the mean over them. One mix is 93 words, so one word is 1.1 points;
    /// four make a row's figure steady enough to tell two settings apart.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8), requires = "noise")]
    pub mixes: u32,
}

/// One row of the table: a kind of noise at one SNR, or clean speech, or a noise alone.
#[derive(Debug, Clone, Serialize)]
pub struct Condition {
    /// `clean`, `music`, `white`.
    pub noise: String,
    /// None for clean speech.
    pub snr_db: Option<f32>,
    /// A noise alone, no speech: the figure is the words transcribed (hallucinations).
    pub noise_only: bool,
    /// Which mix of this row (0 for the first; `--mixes`).
    pub mix: u32,
    pub file: PathBuf,
}

impl Condition {
    pub(crate) fn label(&self) -> String {
        match (self.noise_only, self.snr_db) {
            (true, _) => format!("{} alone", self.noise),
            (false, Some(snr)) => format!("{}, {snr} dB", self.noise),
            (false, None) => self.noise.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct NoiseReport {
    pub conditions: Vec<Condition>,
    /// sori's `stt.condition_on_previous_text` in this run (faster-whisper's is always on).
    pub sori_conditioning: bool,
    pub peers: PeersReport,
}

/// Builds the mixes, runs the systems over them, returns the figures; progress on stderr.
pub fn run(
    config: &Config,
    args: &NoiseArgs,
    peers: &PeersArgs,
    runs: usize,
    language: Language,
) -> anyhow::Result<NoiseReport> {
    let conditions = write_mixes(&args.snr, args.mixes)?;
    let mut peers = peers.clone();
    // The bar is faster-whisper as its users run it: its defaults, conditioning included.
    peers.fw_condition_on_previous_text = true;
    if peers.systems.is_empty() {
        peers.systems = vec![System::Sori, System::SoriStream, System::FwInt8];
    }
    let files: Vec<PathBuf> = conditions.iter().map(|c| c.file.clone()).collect();
    let report = super::peers::run(config, &peers, &files, runs, language)?;
    Ok(NoiseReport {
        conditions,
        sori_conditioning: config.stt.condition_on_previous_text,
        peers: report,
    })
}

/// Writes clean speech, each noise at each SNR (`mixes` of each: other white-noise seeds, other
/// stretches of the music), and each noise alone, with references. The first mix of a row is
/// `{noise}-{snr}dB.wav`, the others `{noise}-{snr}dB-{n}.wav`.
pub(crate) fn write_mixes(snrs: &[f32], mixes: u32) -> anyhow::Result<Vec<Condition>> {
    let speech = load_16k_mono(Path::new(SPEECH))
        .with_context(|| format!("cannot read {SPEECH}; run ./scripts/peers.sh fetch"))?;
    let reference = std::fs::read_to_string(Path::new(SPEECH).with_extension("txt"))
        .with_context(|| format!("no reference beside {SPEECH}; run ./scripts/peers.sh fetch"))?;
    let music = music_tracks()?;
    let noises = [
        (
            "music",
            (0..mixes)
                .map(|mix| music_stretch(&music, speech.len(), mix))
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
        (
            "white",
            (0..mixes)
                .map(|mix| white_noise(speech.len(), WHITE_SEED + u64::from(mix)))
                .collect(),
        ),
    ];
    let dir = Path::new(MIX_DIR);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {MIX_DIR}"))?;
    let write = |name: &str, samples: &[f32], reference: Option<&str>| -> anyhow::Result<PathBuf> {
        let path = dir.join(format!("{name}.wav"));
        write_wav_16k(&path, samples)?;
        let txt = path.with_extension("txt");
        match reference {
            Some(text) => std::fs::write(&txt, text)?,
            // No reference: the peers bench then counts words instead of an error rate.
            None => {
                let _ = std::fs::remove_file(&txt);
            }
        }
        Ok(path)
    };

    let mut conditions = vec![Condition {
        noise: "clean".into(),
        snr_db: None,
        noise_only: false,
        mix: 0,
        file: write("clean", &speech, Some(&reference))?,
    }];
    let loudest = snrs.iter().copied().fold(f32::INFINITY, f32::min);
    for (kind, realizations) in &noises {
        for &snr in snrs {
            for (mix, noise) in (0u32..).zip(realizations) {
                let name = match mix {
                    0 => format!("{kind}-{snr}dB"),
                    n => format!("{kind}-{snr}dB-{}", n + 1),
                };
                conditions.push(Condition {
                    noise: (*kind).into(),
                    snr_db: Some(snr),
                    noise_only: false,
                    mix,
                    file: write(&name, &mix_at_snr(&speech, noise, snr)?, Some(&reference))?,
                });
            }
        }
        // The noise alone (its first stretch), at the level it has in the loudest mix.
        let noise = &realizations[0];
        let gain = (mean_power(&speech) / mean_power(noise) / 10f64.powf(f64::from(loudest) / 10.0))
            .sqrt() as f32;
        let alone: Vec<f32> = noise
            .iter()
            .map(|s| (s * gain).clamp(-0.99, 0.99))
            .collect();
        conditions.push(Condition {
            noise: (*kind).into(),
            snr_db: Some(loudest),
            noise_only: true,
            mix: 0,
            file: write(&format!("{kind}-alone"), &alone, None)?,
        });
    }
    Ok(conditions)
}

/// Where the first mix's music starts in the joined tracks: past the quiet intros.
const MUSIC_START_S: usize = 30;
/// How much further each next mix's music starts.
const MUSIC_STRIDE_S: usize = 90;

/// The music tracks, decoded and joined in name order.
fn music_tracks() -> anyhow::Result<Vec<f32>> {
    let fetch = "run ./scripts/peers.sh noise (Debian's asc-music package)";
    let mut tracks: Vec<PathBuf> = std::fs::read_dir(MUSIC_DIR)
        .with_context(|| format!("{MUSIC_DIR} is missing; {fetch}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "mp3"))
        .collect();
    tracks.sort();
    if tracks.is_empty() {
        bail!("no .mp3 files in {MUSIC_DIR}; {fetch}");
    }
    let mut all = Vec::new();
    for track in &tracks {
        all.extend(
            load_16k_mono(track).with_context(|| format!("cannot decode {}", track.display()))?,
        );
    }
    Ok(all)
}

/// `len` samples of the music for mix number `mix`.
fn music_stretch(music: &[f32], len: usize, mix: u32) -> anyhow::Result<Vec<f32>> {
    let start = (MUSIC_START_S + MUSIC_STRIDE_S * mix as usize) * 16_000;
    if mix > 0 && start + len > music.len() {
        bail!(
            "the music is {} s long: too short for {} mixes",
            music.len() / 16_000,
            mix + 1
        );
    }
    let start = start.min(music.len().saturating_sub(len));
    Ok(music[start..(start + len).min(music.len())].to_vec())
}

impl NoiseReport {
    /// The table's rows in order: each label with the conditions (its mixes) under it.
    fn rows(&self) -> Vec<(String, Vec<usize>)> {
        let mut rows: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, condition) in self.conditions.iter().enumerate() {
            let label = condition.label();
            match rows.iter_mut().find(|(l, _)| *l == label) {
                Some((_, indices)) => indices.push(i),
                None => rows.push((label, vec![i])),
            }
        }
        rows
    }

    /// One row per condition, one column per system: WER in % (the mean over the row's
    /// mixes), or for a noise alone the number of words transcribed.
    pub fn to_markdown(&self) -> String {
        let systems = &self.peers.systems;
        let mixes = self.conditions.iter().map(|c| c.mix + 1).max().unwrap_or(1);
        let mut out = format!(
            "{:.1} s of speech per mix{}; {} thread(s), {}; sori streaming is real time over /ws; \
             sori conditioning on previous text {}, faster-whisper with its defaults (conditioning on)\n\n| audio |",
            self.peers.audio_s / self.conditions.len() as f64,
            if mixes > 1 {
                format!(", {mixes} mixes per noisy row (the mean of their error rates)")
            } else {
                String::new()
            },
            self.peers.threads,
            super::peers::beam_label(self.peers.beam_size),
            if self.sori_conditioning { "on" } else { "off" },
        );
        for s in systems {
            out.push_str(&format!(" {} |", s.name));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(systems.len()));
        out.push('\n');
        for (label, rows) in self.rows() {
            out.push_str(&format!("| {label} |"));
            for s in systems {
                let first = &s.files[rows[0]];
                let rates: Option<Vec<f64>> = rows.iter().map(|&i| s.files[i].error_rate).collect();
                let cell = match rates {
                    Some(rates) if !self.conditions[rows[0]].noise_only => {
                        let mean = rates.iter().sum::<f64>() / rates.len() as f64;
                        format!("{:.1} %", mean * 100.0)
                    }
                    _ => {
                        let words = first.text.split_whitespace().count();
                        if words == 0 {
                            "no text".into()
                        } else {
                            format!("{words} word(s): “{}”", first.text)
                        }
                    }
                };
                out.push_str(&format!(" {cell} |"));
            }
            out.push('\n');
        }
        out
    }
}
