#!/usr/bin/env bash
# Builds sori with whisper.cpp on CUDA, on any x86-64 Linux machine, GPU or not: the CUDA
# toolkit comes from PyPI into .tools/cuda/ (git-ignored), the binary goes to
# target/cuda/release/ (beside the CPU build, never over it). Not part of the tests: it takes
# long (docs/deployment.md, "Building the CUDA binary here", has the times).
#
# Usage: scripts/build-cuda.sh [build] | fetch | run ARGS... | ldd | env
#   build        (the default) fetch the toolkit, build `sori` and `sori-tools` (release,
#                --features cuda) for CUDA_ARCHS, then print what the binary loads at run time
#   fetch        only install the pinned CUDA toolkit pieces into .tools/cuda/
#   run ARGS     run the CUDA binary with its CUDA libraries found, e.g.
#                  scripts/build-cuda.sh run transcribe data/jfk.wav --language en
#                with no NVIDIA driver it falls back to the CPU and says why
#   ldd          print the shared libraries the built binary needs
#   env          print the environment `run` uses (to source elsewhere)
#
# Environment:
#   CUDA_ARCHS   GPU architectures, `;`-separated (default "90;120": H100/H200 and the
#                RTX 50 series, e.g. the RTX 5090). "86" alone builds for RTX 30/A-series
#                only, in about half the time of two.
#   CARGO_BUILD_JOBS / NUM_JOBS   as cargo reads them (nvcc runs one per job)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script_name=build-cuda
# shellcheck source=scripts/common.sh
. scripts/common.sh

# One CUDA release, every piece pinned to it: unpinned, pip takes nvvm 13.5 beside nvcc 13.0
# and ptxas fails ("Unsupported .version 9.5"). 13.0 runs on drivers >= 580.
toolkit_specs=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.88
    nvidia-cuda-cccl==13.0.85
    nvidia-cublas==13.0.2.14
)
tool_dir="$root/.tools/cuda"
venv="$tool_dir/venv"
stamp="$tool_dir/VERSION"
stubs="$tool_dir/stubs"
target_dir="$root/target/cuda"
binary="$target_dir/release/sori"
archs="${CUDA_ARCHS:-90;120}"

# cuda_home: the toolkit's root inside the venv (bin/nvcc, include/, lib/).
cuda_home() {
    local site
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$site/nvidia/cu13"
}

installed_ok() {
    [ -x "$venv/bin/python" ] &&
        [ "$(cat "$stamp" 2>/dev/null)" = "${toolkit_specs[*]}" ] &&
        [ -x "$(cuda_home)/bin/nvcc" ] &&
        [ -e "$(cuda_home)/lib/libcublas.so" ] &&
        [ -e "$stubs/libcuda.so" ]
}

fetch() {
    if installed_ok; then
        say "CUDA toolkit present: $(cuda_home) ($("$(cuda_home)/bin/nvcc" --version | tail -1))"
        return
    fi
    need_venv
    command -v cc >/dev/null 2>&1 || die "a C compiler is needed (apt-get install -y build-essential)"
    rm -rf "$tool_dir"
    mkdir -p "$tool_dir"
    say "creating a venv in $venv"
    python3 -m venv "$venv" >&2 || die "python3 -m venv failed (apt-get install -y python3-venv?)"
    say "installing ${toolkit_specs[*]} from PyPI (~1.1 GB)"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --only-binary=:all: \
        "${toolkit_specs[@]}" >&2 || die "pip could not install the CUDA toolkit pieces"
    local home
    home=$(cuda_home)
    [ -x "$home/bin/nvcc" ] || die "nvcc is not where expected: $home/bin/nvcc"
    # The wheels hold only versioned libraries (libcudart.so.13); the linker wants the bare names.
    local lib
    for lib in cudart cublas cublasLt; do
        local versioned
        versioned=$(find "$home/lib" -maxdepth 1 -name "lib$lib.so.[0-9]*" | sort | head -1)
        [ -n "$versioned" ] || die "lib$lib.so.* is missing from $home/lib"
        ln -sf "$(basename "$versioned")" "$home/lib/lib$lib.so"
    done
    # whisper-rs-sys always links `cuda` (the driver library) and `culibos`, which no PyPI
    # package ships. With GGML_CUDA_NO_VMM nothing calls the driver API, so empty stand-ins
    # satisfy the linker and `--as-needed` drops them: the binary needs no libcuda to start.
    mkdir -p "$stubs"
    printf '/* empty: link-time stand-in for libcuda (see scripts/build-cuda.sh) */\n' >"$stubs/empty.c"
    cc -shared -fPIC -o "$stubs/libcuda.so" "$stubs/empty.c"
    ar rcs "$stubs/libculibos.a"
    printf '%s' "${toolkit_specs[*]}" >"$stamp"
    installed_ok || die "the toolkit was installed but is incomplete; see $tool_dir"
    say "CUDA toolkit ready: $home ($(du -sh "$tool_dir" | cut -f1) on disk)"
}

# runtime_env: what the binary needs at run time, as `export` lines. The CUDA runtime and
# cuBLAS come from .tools/cuda here; a machine with its own (a CUDA image, a PyTorch venv)
# can put those on LD_LIBRARY_PATH instead.
runtime_env() {
    echo "export LD_LIBRARY_PATH=$(cuda_home)/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

build() {
    command -v cargo >/dev/null 2>&1 || die "cargo is needed (https://rustup.rs)"
    command -v cmake >/dev/null 2>&1 || die "cmake is needed (./scripts/install-deps.sh)"
    fetch
    local home started
    home=$(cuda_home)
    started=$(date +%s)
    say "building sori with CUDA for architectures '$archs' into $target_dir (expect ~30 min per architecture on 2 cores)"
    # whisper-rs-sys passes every CMAKE_* and GGML_* variable to whisper.cpp's cmake.
    env CUDA_PATH="$home" CUDAToolkit_ROOT="$home" \
        CMAKE_CUDA_COMPILER="$home/bin/nvcc" \
        CMAKE_CUDA_ARCHITECTURES="$archs" \
        GGML_CUDA_NO_VMM=ON GGML_NATIVE=OFF \
        PATH="$home/bin:$PATH" \
        LIBRARY_PATH="$home/lib:$stubs${LIBRARY_PATH:+:$LIBRARY_PATH}" \
        CARGO_TARGET_DIR="$target_dir" \
        cargo build --release --locked -p sori -p sori-tools --features sori/cuda,sori-tools/cuda >&2
    local took=$(($(date +%s) - started))
    say "built $binary in $((took / 60)) min $((took % 60)) s ($(du -h "$binary" | cut -f1), architectures '$archs')"
    show_ldd
    say "run it with: scripts/build-cuda.sh run transcribe data/jfk.wav --language en"
}

show_ldd() {
    [ -x "$binary" ] || die "no CUDA binary yet at $binary; run: scripts/build-cuda.sh build"
    say "shared libraries $binary needs (CUDA ones from $(cuda_home)/lib here):"
    eval "$(runtime_env)"
    ldd "$binary" >&2
    if ldd "$binary" | grep -q 'libcuda\.so'; then
        die "the binary links the driver library libcuda: it would not start without a driver"
    fi
}

case "${1:-build}" in
build)
    [ $# -le 1 ] || usage
    build
    ;;
fetch)
    [ $# -eq 1 ] || usage
    fetch
    ;;
run)
    shift
    installed_ok || die "the CUDA toolkit is not installed; run: scripts/build-cuda.sh"
    [ -x "$binary" ] || die "no CUDA binary yet at $binary; run: scripts/build-cuda.sh"
    eval "$(runtime_env)"
    exec "$binary" "$@"
    ;;
ldd) show_ldd ;;
env) runtime_env ;;
*) usage ;;
esac
