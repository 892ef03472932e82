//! GPU presence. whisper.cpp only uses a GPU when sori was built with the `cuda` feature and an
//! NVIDIA driver is loaded; anything else reports `"gpu": false`.

use std::path::Path;

/// True when this build can use a GPU and the NVIDIA kernel driver is present.
pub fn gpu_available() -> bool {
    cfg!(feature = "cuda") && Path::new("/proc/driver/nvidia/version").exists()
}
