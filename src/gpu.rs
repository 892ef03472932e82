//! GPU monitor for `/api/status` and the page: NVIDIA's NVML, loaded at run time, so the
//! same binary runs where no driver is installed (then it reports "no GPU" with the reason).
//! Whether whisper.cpp decodes on a GPU is `stt::placement`'s: read from ggml once the model
//! is loaded.

use std::sync::OnceLock;

use nvml_wrapper::Nvml;
use serde::Serialize;

/// True once this process has loaded a model that decodes on a GPU.
pub fn gpu_available() -> bool {
    crate::stt::placement::whisper_on_gpu()
}

/// What the monitor shows about GPUs.
#[derive(Debug, Clone, Serialize)]
pub struct GpuStatus {
    /// At least one NVIDIA GPU answered through NVML.
    pub available: bool,
    /// Whisper decodes on a GPU (a `cuda` build whose model found a CUDA device).
    pub used_by_whisper: bool,
    /// Why there is no GPU, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub devices: Vec<GpuDevice>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuDevice {
    pub index: u32,
    pub name: String,
    pub memory_used_mb: u64,
    pub memory_total_mb: u64,
    pub utilization_pct: u32,
}

/// NVML, loaded once; the error says why it could not be.
fn nvml() -> Result<&'static Nvml, &'static str> {
    static NVML: OnceLock<Result<Nvml, String>> = OnceLock::new();
    NVML.get_or_init(|| {
        Nvml::init().map_err(|e| format!("NVML could not be loaded (no NVIDIA driver?): {e}"))
    })
    .as_ref()
    .map_err(String::as_str)
}

/// Reads every GPU's name, memory and utilisation. Blocking but quick (microseconds per
/// device); "no GPU" with the reason when NVML or its devices are missing.
pub fn gpu_status() -> GpuStatus {
    let none = |reason: String| GpuStatus {
        available: false,
        used_by_whisper: false,
        reason: Some(reason),
        devices: Vec::new(),
    };
    let nvml = match nvml() {
        Ok(nvml) => nvml,
        Err(reason) => return none(reason.to_owned()),
    };
    let count = match nvml.device_count() {
        Ok(n) if n > 0 => n,
        Ok(_) => return none("NVML found no GPU".to_owned()),
        Err(e) => return none(format!("NVML cannot count GPUs: {e}")),
    };
    let devices: Vec<GpuDevice> = (0..count)
        .filter_map(|index| {
            let device = nvml.device_by_index(index).ok()?;
            let memory = device.memory_info().ok();
            Some(GpuDevice {
                index,
                name: device.name().unwrap_or_else(|_| format!("GPU {index}")),
                memory_used_mb: memory.as_ref().map_or(0, |m| m.used / (1024 * 1024)),
                memory_total_mb: memory.as_ref().map_or(0, |m| m.total / (1024 * 1024)),
                utilization_pct: device.utilization_rates().map_or(0, |u| u.gpu),
            })
        })
        .collect();
    GpuStatus {
        available: !devices.is_empty(),
        used_by_whisper: gpu_available(),
        reason: None,
        devices,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_driver_means_no_gpu_with_a_reason() {
        // These machines have no NVIDIA driver; a machine with one reports its devices.
        let status = gpu_status();
        if std::path::Path::new("/proc/driver/nvidia/version").exists() {
            assert!(status.available, "{status:?}");
        } else {
            assert!(!status.available);
            assert!(status.devices.is_empty());
            assert!(status.reason.unwrap().contains("NVML"));
        }
    }
}
