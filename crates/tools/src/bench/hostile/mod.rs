//! `sori bench --hostile`: the attacks of issue 15 run against a real `sori serve` child
//! process, printing what the server did (docs/benchmarks.md). Figures, not a pass/fail test:
//! the hostile-client tests in `tests/it/hostile_*.rs` assert the behaviour.
//!
//! 1. **file**: three hours of silent 48 kHz FLAC (~90 MB) uploaded to `/api/transcribe`; the
//!    server's resident memory is sampled throughout (peak minus idle).
//! 2. **stalled**: a `/ws` client sends 20,000 frames that each earn an `error` event and never
//!    reads; how long until `/api/status` stops counting its session.
//! 3. **pinging**: keepalive clients ping every second while streaming speech faster than real
//!    time, then `stop`: pong delays, finals received against finals saved, `closed`.
//! 4. **flood**: thousands of sockets from 127.0.0.2 each send half a request header; `/health`
//!    and a new `/ws` session from 127.0.0.1 meanwhile, and when the server closes the flood.
//! 5. **shutdown**: `SIGTERM` with monitors (`/api/status/stream`), an upload and a live session
//!    open: time to exit, and the session's `closed` and close code.

mod clients;
mod file;
mod flood;
mod shutdown;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use sori_core::audio::decode::load_16k_mono;
use sori_core::testing::{pcm_s16le, silence};

use crate::bench::child::ChildServer;

/// `sori bench --hostile` options (flattened into `sori bench`).
#[derive(Debug, Clone, clap::Args)]
pub struct HostileArgs {
    /// Run the hostile-client figures instead (see docs/benchmarks.md).
    #[arg(long)]
    pub hostile: bool,
    /// Hours of silent FLAC uploaded for --hostile's memory figure.
    #[arg(long, default_value_t = 3.0, requires = "hostile")]
    pub file_hours: f64,
    /// Half-open sockets in --hostile's header flood.
    #[arg(long, default_value_t = 5000, requires = "hostile")]
    pub flood: usize,
    /// Keepalive clients streaming at once in --hostile.
    #[arg(long, default_value_t = 3, requires = "hostile")]
    pub pingers: usize,
    /// Open monitors during --hostile's shutdown.
    #[arg(long, default_value_t = 20, requires = "hostile")]
    pub monitors: usize,
}

/// Everything `--hostile` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostileReport {
    pub file: file::FileFigures,
    pub stalled: clients::StalledFigures,
    pub pinging: Vec<clients::PingingFigures>,
    pub flood: flood::FloodFigures,
    pub shutdown: shutdown::ShutdownFigures,
}

/// The server's own defaults, as `./start_system.sh` runs it, except a shorter grace so the
/// shutdown figure does not take long, and the header timeout stated for the flood.
const GRACE_S: u64 = 5;

pub async fn run(args: &HostileArgs) -> anyhow::Result<HostileReport> {
    // reqwest has no TLS backend of its own here; plain http needs one installed all the same.
    sori::llm::install_tls_provider();
    let scratch = scratch_dir()?;
    // All clients here come from 127.0.0.1: the monitors of the shutdown figure must not be
    // refused by the per-address limit of long requests (8) before SIGTERM.
    let env = [
        ("SORI_SHUTDOWN_GRACE_S", GRACE_S.to_string()),
        (
            "SORI_MAX_CONNECTIONS_PER_CLIENT",
            (args.monitors + 8).to_string(),
        ),
    ];
    let server = ChildServer::start(&scratch, &[], &env).await?;

    let seconds = (args.file_hours * 3600.0).round() as u64;
    eprintln!("file: making {seconds} s of silent FLAC with sox…");
    let long = file::silent_flac(&scratch, seconds)?;
    eprintln!("file: uploading {}…", long.display());
    let file = file::upload_measured(&server, &long, seconds as f64).await?;

    eprintln!("stalled: a client that never reads…");
    let stalled = clients::stalled_client(&server, 20_000, Duration::from_secs(90)).await?;

    eprintln!("pinging: {} keepalive clients…", args.pingers);
    let speech = speech_pcm()?;
    let mut tasks = Vec::new();
    for _ in 0..args.pingers {
        let (server, pcm) = (&server, speech.clone());
        tasks.push(
            async move { clients::pinging_client(server, pcm, Duration::from_secs(1)).await },
        );
    }
    let pinging = futures_util::future::try_join_all(tasks).await?;

    eprintln!("flood: {} half-open headers…", args.flood);
    let flood = flood::header_flood(&server, args.flood, Duration::from_secs(60)).await?;

    eprintln!(
        "shutdown: SIGTERM with {} monitors, an upload and a session…",
        args.monitors
    );
    let shutdown = shutdown::terminate_busy(server, args.monitors, &long, speech, GRACE_S).await?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(HostileReport {
        file,
        stalled,
        pinging,
        flood,
        shutdown,
    })
}

/// JFK three times with 2 s pauses (33 s of speech, five finals), as 16 kHz s16le.
fn speech_pcm() -> anyhow::Result<Vec<u8>> {
    let jfk = load_16k_mono(Path::new("data/jfk.wav"))
        .context("data/jfk.wav is missing: run `sori model fetch`")?;
    let mut audio = Vec::new();
    for _ in 0..3 {
        audio.extend_from_slice(&jfk);
        audio.extend(silence(2.0));
    }
    Ok(pcm_s16le(&audio))
}

fn scratch_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sori-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

impl HostileReport {
    /// The figures as the lines docs/benchmarks.md quotes.
    pub fn print(&self) {
        let f = &self.file;
        println!(
            "file: {:.0} s of audio ({:.1} MB FLAC) → HTTP {} in {:.1} s; server RSS {:.0} MB idle, \
             {:.0} MB peak: growth {:.0} MB",
            f.audio_s, f.file_mb, f.status, f.wall_s, f.idle_rss_mb, f.peak_rss_mb, f.growth_mb
        );
        let s = &self.stalled;
        println!(
            "stalled: {} frames sent, session released after {}",
            s.frames_sent,
            seconds(s.released_after_s)
        );
        for (i, p) in self.pinging.iter().enumerate() {
            println!(
                "pinging client {}: finals {} of {} saved, closed {}, close code {:?}, worst pong \
                 {:.2} s, unanswered pings {}",
                i + 1,
                p.finals,
                p.finals_saved,
                p.closed,
                p.close_code,
                p.worst_pong_s,
                p.unanswered_pings
            );
        }
        let fl = &self.flood;
        println!(
            "flood: {} sockets ({} not opened); /health p50 {} max {}; /ws ready {}; {} closed by \
             the server, all after {}",
            fl.sockets,
            fl.not_opened,
            millis(fl.health_p50_ms),
            millis(fl.health_max_ms),
            millis(fl.ws_ready_ms),
            fl.closed_by_server,
            seconds(fl.all_closed_after_s)
        );
        let sd = &self.shutdown;
        println!(
            "shutdown: {} monitors + an upload + a session, grace {} s: exited after {}; session \
             closed {}, close code {:?}",
            sd.monitors,
            sd.grace_s,
            seconds(sd.exit_after_s),
            sd.session_closed,
            sd.session_close_code
        );
    }
}

fn seconds(value: Option<f64>) -> String {
    value.map_or("never (limit reached)".to_owned(), |s| format!("{s:.1} s"))
}

fn millis(value: Option<f64>) -> String {
    value.map_or("failed".to_owned(), |ms| format!("{ms:.0} ms"))
}
