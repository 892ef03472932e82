//! The GPU side of `sori bench --capacity`: where the server's decoder runs (`/api/config`'s
//! `decoder`, read once), and per level the GPU memory and utilisation sori's own monitor
//! reports (`/api/status`'s `gpu.devices`, read through NVML), sampled every 0.5 s like the
//! server's RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::bench::child::ChildServer;

/// How often `/api/status` is read during a level.
const GPU_EVERY: Duration = Duration::from_millis(500);
/// A status request slower than this is skipped (the level goes on).
const STATUS_LIMIT: Duration = Duration::from_secs(2);

/// `/api/config`'s `decoder`: where whisper decodes, and the layout.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Decoder {
    /// "gpu" or "cpu".
    pub device: String,
    /// ggml's description of each GPU whisper decodes on; empty on the CPU.
    pub gpus: Vec<String>,
    /// Why decoding is on the CPU, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_reason: Option<String>,
    pub workers: Option<u64>,
    pub threads: Option<u64>,
}

impl Decoder {
    pub fn on_gpu(&self) -> bool {
        self.device == "gpu"
    }

    /// From the `/api/config` body; `None` for a server without a `decoder` object.
    pub fn from_config(config: &Value) -> Option<Self> {
        let decoder = config.get("decoder")?.as_object()?;
        let device = decoder.get("device")?.as_str()?.to_owned();
        Some(Decoder {
            device,
            gpus: decoder
                .get("gpus")
                .and_then(Value::as_array)
                .map(|gpus| {
                    gpus.iter()
                        .filter_map(|g| g.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            cpu_reason: decoder
                .get("cpu_reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
            workers: decoder.get("workers").and_then(Value::as_u64),
            threads: decoder.get("threads").and_then(Value::as_u64),
        })
    }

    /// `GET /api/config`'s decoder.
    pub async fn read(
        http: &reqwest::Client,
        server: &ChildServer,
    ) -> anyhow::Result<Option<Self>> {
        let config: Value = http
            .get(server.url("/api/config"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(Self::from_config(&config))
    }

    /// `decoder: gpu (NVIDIA H200 (CUDA0)), 4 workers × 1 thread` or
    /// `decoder: cpu (this build has no GPU support …)`.
    pub fn line(&self) -> String {
        let detail = if self.on_gpu() {
            self.gpus.join(", ")
        } else {
            self.cpu_reason.clone().unwrap_or_default()
        };
        let mut line = format!("decoder: {}", self.device);
        if !detail.is_empty() {
            line.push_str(&format!(" ({detail})"));
        }
        if let (Some(w), Some(t)) = (self.workers, self.threads) {
            let plural = |n: u64| if n == 1 { "" } else { "s" };
            line.push_str(&format!(
                ", {w} worker{} × {t} thread{}",
                plural(w),
                plural(t)
            ));
        }
        line
    }
}

/// One reading of `/api/status`'s `gpu.devices`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuSample {
    /// `memory_used_mb`, summed over the devices.
    pub memory_used_mb: f64,
    /// `utilization_pct`, the mean over the devices.
    pub utilization_pct: f64,
}

/// The GPU figures of one `/api/status` body; `None` when it lists no device.
pub fn gpu_sample(status: &Value) -> Option<GpuSample> {
    let devices = status.get("gpu")?.get("devices")?.as_array()?;
    if devices.is_empty() {
        return None;
    }
    let field = |d: &Value, name: &str| d.get(name).and_then(Value::as_f64).unwrap_or(0.0);
    let memory_used_mb = devices.iter().map(|d| field(d, "memory_used_mb")).sum();
    let utilization_pct = devices
        .iter()
        .map(|d| field(d, "utilization_pct"))
        .sum::<f64>()
        / devices.len() as f64;
    Some(GpuSample {
        memory_used_mb,
        utilization_pct,
    })
}

/// A level's GPU figures, as sori's monitor reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct GpuLevel {
    /// The highest GPU memory in use (all processes, summed over devices) seen in the level.
    pub peak_memory_mb: f64,
    /// The mean of the sampled utilisations (NVML's share of time a kernel ran).
    pub utilisation_mean_pct: f64,
    pub samples: usize,
}

impl GpuLevel {
    /// `None` without a sample.
    pub fn from_samples(samples: &[GpuSample]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        Some(GpuLevel {
            peak_memory_mb: samples.iter().map(|s| s.memory_used_mb).fold(0.0, f64::max),
            utilisation_mean_pct: samples.iter().map(|s| s.utilization_pct).sum::<f64>()
                / samples.len() as f64,
            samples: samples.len(),
        })
    }
}

/// One `/api/status` reading; `None` when it failed or listed no GPU.
pub async fn read_sample(http: &reqwest::Client, url: &str) -> Option<GpuSample> {
    let response = http.get(url).timeout(STATUS_LIMIT).send().await.ok()?;
    let status: Value = response.error_for_status().ok()?.json().await.ok()?;
    gpu_sample(&status)
}

/// `/api/status`'s GPU figures, read every [`GPU_EVERY`] while a level runs.
pub struct GpuWatch {
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<GpuSample>>,
}

impl GpuWatch {
    pub fn start(http: &reqwest::Client, server: &ChildServer) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let (http, url) = (http.clone(), server.url("/api/status"));
        let task = tokio::spawn({
            let done = Arc::clone(&done);
            async move {
                let mut samples = Vec::new();
                loop {
                    samples.extend(read_sample(&http, &url).await);
                    if done.load(Ordering::SeqCst) {
                        return samples;
                    }
                    tokio::time::sleep(GPU_EVERY).await;
                }
            }
        });
        GpuWatch { done, task }
    }

    /// Stops sampling (after one last sample) and sums the level up.
    pub async fn stop(self) -> Option<GpuLevel> {
        self.done.store(true, Ordering::SeqCst);
        GpuLevel::from_samples(&self.task.await.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/api/status` of a two-GPU server, trimmed to what the bench reads.
    const STATUS: &str = r#"{"uptime_s":12,"sessions":3,"max_sessions":40,
        "gpu":{"available":true,"used_by_whisper":true,"devices":[
          {"index":0,"name":"NVIDIA H200","memory_used_mb":1536,"memory_total_mb":143771,
           "utilization_pct":40},
          {"index":1,"name":"NVIDIA H200","memory_used_mb":512,"memory_total_mb":143771,
           "utilization_pct":20}]}}"#;

    #[test]
    fn a_status_sample_sums_memory_and_averages_utilisation() {
        let status: Value = serde_json::from_str(STATUS).unwrap();
        assert_eq!(
            gpu_sample(&status),
            Some(GpuSample {
                memory_used_mb: 2048.0,
                utilization_pct: 30.0
            })
        );
    }

    #[test]
    fn no_gpu_gives_no_sample() {
        let none = r#"{"sessions":0,"gpu":{"available":false,"used_by_whisper":false,
            "reason":"NVML could not be loaded (no NVIDIA driver?)","devices":[]}}"#;
        assert_eq!(gpu_sample(&serde_json::from_str(none).unwrap()), None);
        assert_eq!(gpu_sample(&serde_json::json!({ "sessions": 0 })), None);
    }

    #[test]
    fn a_level_has_the_peak_memory_and_the_mean_utilisation() {
        let samples = [
            GpuSample {
                memory_used_mb: 900.0,
                utilization_pct: 10.0,
            },
            GpuSample {
                memory_used_mb: 1400.0,
                utilization_pct: 70.0,
            },
            GpuSample {
                memory_used_mb: 1200.0,
                utilization_pct: 40.0,
            },
        ];
        let level = GpuLevel::from_samples(&samples).unwrap();
        assert_eq!(level.peak_memory_mb, 1400.0);
        assert!((level.utilisation_mean_pct - 40.0).abs() < 1e-9);
        assert_eq!(level.samples, 3);
        assert_eq!(GpuLevel::from_samples(&[]), None);
    }

    #[test]
    fn the_decoder_is_read_from_api_config() {
        let gpu: Value = serde_json::from_str(
            r#"{"version":"0.1.0","gpu":true,"decoder":{"device":"gpu",
                "gpus":["NVIDIA H200 (CUDA0)"],"cpu_reason":null,"workers":4,"threads":1},
                "model":"ggml-base-q5_0.bin"}"#,
        )
        .unwrap();
        let decoder = Decoder::from_config(&gpu).unwrap();
        assert!(decoder.on_gpu());
        assert_eq!(decoder.gpus, ["NVIDIA H200 (CUDA0)"]);
        assert_eq!((decoder.workers, decoder.threads), (Some(4), Some(1)));
        assert_eq!(
            decoder.line(),
            "decoder: gpu (NVIDIA H200 (CUDA0)), 4 workers × 1 thread"
        );

        let cpu: Value = serde_json::from_str(
            r#"{"gpu":false,"decoder":{"device":"cpu","gpus":[],
                "cpu_reason":"stt.use_gpu is false (SORI_USE_GPU)","workers":2,"threads":1}}"#,
        )
        .unwrap();
        let decoder = Decoder::from_config(&cpu).unwrap();
        assert!(!decoder.on_gpu());
        assert_eq!(
            decoder.line(),
            "decoder: cpu (stt.use_gpu is false (SORI_USE_GPU)), 2 workers × 1 thread"
        );
        // A server from before the decoder object.
        assert_eq!(
            Decoder::from_config(&serde_json::json!({ "gpu": false })),
            None
        );
    }
}
