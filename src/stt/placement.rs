//! Where whisper.cpp decodes: on a GPU or on the CPU, and why. Read from ggml's own device
//! registry once the model is loaded, so what sori reports (`/api/config` `gpu`, the monitor's
//! `used_by_whisper`, the start-up log) is what whisper.cpp does, not a guess from the build.
//!
//! A `cuda` build on a machine without a driver registers no CUDA device (ggml logs
//! `ggml_cuda_init: failed to initialize CUDA …` as an error) and decodes on the CPU; this
//! module turns that into one clear line saying so.

use std::ffi::CStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a model is loaded on a GPU in this process: what the GPU monitor reports as
/// `used_by_whisper`.
static WHISPER_ON_GPU: AtomicBool = AtomicBool::new(false);

/// Where the loaded model decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The GPUs whisper.cpp decodes on (ggml's description of each); empty on the CPU.
    pub gpus: Vec<String>,
    /// Why decoding is on the CPU, when it is.
    pub cpu_reason: Option<String>,
}

impl Placement {
    pub fn on_gpu(&self) -> bool {
        !self.gpus.is_empty()
    }

    /// The CPU, for a decoder that is not whisper.cpp (the scripted test double).
    pub fn cpu(reason: &str) -> Self {
        Self {
            gpus: Vec::new(),
            cpu_reason: Some(reason.to_owned()),
        }
    }
}

/// True once this process has loaded a model that decodes on a GPU.
pub fn whisper_on_gpu() -> bool {
    WHISPER_ON_GPU.load(Ordering::Relaxed)
}

/// The GPU devices ggml has registered in this build (none in a CPU build, and none in a
/// `cuda` build where CUDA found no usable device).
pub fn ggml_gpu_devices() -> Vec<String> {
    // SAFETY: ggml's registry functions take no pointers from us; the registry lives for the
    // process, so the device handles and their description strings stay valid.
    unsafe {
        let count = whisper_rs_sys::ggml_backend_dev_count();
        (0..count)
            .map(|index| whisper_rs_sys::ggml_backend_dev_get(index))
            .filter(|&device| {
                !device.is_null()
                    && whisper_rs_sys::ggml_backend_dev_type(device)
                        == whisper_rs_sys::ggml_backend_dev_type_GGML_BACKEND_DEVICE_TYPE_GPU
            })
            .map(|device| {
                let name = whisper_rs_sys::ggml_backend_dev_name(device);
                let description = whisper_rs_sys::ggml_backend_dev_description(device);
                let text = |p: *const std::ffi::c_char| {
                    if p.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(p).to_string_lossy().into_owned()
                    }
                };
                format!("{} ({})", text(description), text(name))
            })
            .collect()
    }
}

/// Decides and logs where a model loaded with `use_gpu` decodes, and records it for the
/// monitor. whisper.cpp takes the first GPU ggml registered when `use_gpu` is set.
pub fn settle(use_gpu: bool) -> Placement {
    let placement = decide(
        cfg!(feature = "cuda"),
        use_gpu,
        ggml_gpu_devices(),
        driver_present(),
    );
    match &placement.cpu_reason {
        None => tracing::info!(gpus = ?placement.gpus, "whisper decodes on the GPU"),
        Some(reason) if cfg!(feature = "cuda") && use_gpu => {
            tracing::warn!("whisper decodes on the CPU: {reason}")
        }
        Some(reason) => tracing::info!("whisper decodes on the CPU: {reason}"),
    }
    WHISPER_ON_GPU.store(placement.on_gpu(), Ordering::Relaxed);
    placement
}

/// The NVIDIA kernel driver is loaded on this machine.
fn driver_present() -> bool {
    Path::new("/proc/driver/nvidia/version").exists()
}

fn decide(cuda_build: bool, use_gpu: bool, gpus: Vec<String>, driver: bool) -> Placement {
    let reason = if !cuda_build {
        "this build has no GPU support (build with `--features cuda`: scripts/build-cuda.sh)"
    } else if !use_gpu {
        "stt.use_gpu is false (SORI_USE_GPU)"
    } else if !gpus.is_empty() {
        return Placement {
            gpus,
            cpu_reason: None,
        };
    } else if !driver {
        "this is a CUDA build, but the machine has no NVIDIA driver \
         (/proc/driver/nvidia/version is missing), so CUDA found no GPU"
    } else {
        "this is a CUDA build and the NVIDIA driver is loaded, but CUDA found no usable GPU \
         (see ggml_cuda_init's error above: a driver older than the CUDA runtime, or no device \
         visible to this process)"
    };
    Placement::cpu(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_for_the_cpu_is_told_apart() {
        let gpu = vec!["NVIDIA H200 (CUDA0)".to_owned()];
        assert!(
            decide(false, true, vec![], true)
                .cpu_reason
                .unwrap()
                .contains("--features cuda")
        );
        assert!(
            decide(true, false, gpu.clone(), true)
                .cpu_reason
                .unwrap()
                .contains("use_gpu")
        );
        assert!(
            decide(true, true, vec![], false)
                .cpu_reason
                .unwrap()
                .contains("no NVIDIA driver")
        );
        assert!(
            decide(true, true, vec![], true)
                .cpu_reason
                .unwrap()
                .contains("no usable GPU")
        );
        let placed = decide(true, true, gpu.clone(), true);
        assert!(placed.on_gpu());
        assert_eq!(placed.gpus, gpu);
    }

    #[test]
    fn this_build_registers_gpus_only_with_the_cuda_feature() {
        // ggml's registry, as whisper.cpp sees it: a CPU build has no GPU device at all; a
        // CUDA build has one per device its runtime found (none without a driver).
        let devices = ggml_gpu_devices();
        if !cfg!(feature = "cuda") || !driver_present() {
            assert!(devices.is_empty(), "{devices:?}");
        }
    }
}
