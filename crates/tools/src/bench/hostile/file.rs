//! A long file uploaded whole: the server's memory while it transcribes three hours of audio.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench::child::{ChildServer, rss_mb};

/// What the upload did to the server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileFigures {
    pub audio_s: f64,
    pub file_mb: f64,
    pub status: u16,
    pub wall_s: f64,
    pub idle_rss_mb: f64,
    pub peak_rss_mb: f64,
    /// Peak minus idle: what the issue bounds by 200 MB.
    pub growth_mb: f64,
}

/// Silence at 48 kHz, 16-bit mono FLAC, `seconds` long (sox; FLAC compresses it to ~8 KB/s).
pub fn silent_flac(dir: &Path, seconds: u64) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("silence-{seconds}s.flac"));
    if path.exists() {
        return Ok(path);
    }
    let status = Command::new("sox")
        .args(["-n", "-r", "48000", "-b", "16", "-c", "1"])
        .arg(&path)
        .args(["trim", "0", &seconds.to_string()])
        .status()
        .context("sox is needed to make the long file: apt-get install sox")?;
    if !status.success() {
        bail!("sox failed ({status}) making {}", path.display());
    }
    Ok(path)
}

/// Uploads `file` to `POST /api/transcribe` while sampling the server's resident memory.
pub async fn upload_measured(
    server: &ChildServer,
    file: &Path,
    audio_s: f64,
) -> anyhow::Result<FileFigures> {
    let idle = server.rss_mb();
    let bytes = tokio::fs::read(file).await?;
    let file_mb = bytes.len() as f64 / 1e6;
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(peak_rss(server.pid(), Arc::clone(&done)));
    let started = Instant::now();
    let status = upload(server, bytes, file).await?;
    let wall_s = started.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    let peak = sampler.await?.max(idle);
    Ok(FileFigures {
        audio_s,
        file_mb,
        status,
        wall_s,
        idle_rss_mb: idle,
        peak_rss_mb: peak,
        growth_mb: peak - idle,
    })
}

/// One multipart upload; returns the HTTP status.
pub async fn upload(server: &ChildServer, bytes: Vec<u8>, file: &Path) -> anyhow::Result<u16> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "audio".to_owned());
    let form = reqwest::multipart::Form::new().text("language", "en").part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(name),
    );
    let response = reqwest::Client::new()
        .post(server.url("/api/transcribe"))
        .multipart(form)
        .send()
        .await?;
    let status = response.status().as_u16();
    // Read the body, so the request is finished on both sides.
    let _ = response.bytes().await;
    Ok(status)
}

/// The highest VmRSS seen every 50 ms until `done`.
async fn peak_rss(pid: u32, done: Arc<AtomicBool>) -> f64 {
    let mut peak = 0.0f64;
    while !done.load(Ordering::SeqCst) {
        peak = peak.max(rss_mb(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peak
}
