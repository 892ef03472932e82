#!/usr/bin/env bash
# Runs every test of sori on a fresh machine: installs what the tests need (apt packages,
# the Whisper models, the test audio, llama.cpp's server and its model), checks formatting
# and lints, then runs the tests against the real model and real servers.
# Usage: ./test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")"

# Each step header carries the time since the start, so a CI log shows where the minutes went.
step() { printf '\n== [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }
fetch_pid=
on_exit() {
    local status=$?
    [ -z "$fetch_pid" ] || kill "$fetch_pid" 2>/dev/null || true
    printf "\n== [%dm%02ds] test.sh ended (exit %d)\n" $((SECONDS / 60)) $((SECONDS % 60)) "$status"
}
trap on_exit EXIT

step "system packages"
./scripts/install-deps.sh

step "format"
cargo fmt --all -- --check

# What needs no build is fetched while the build runs (downloads and pip: mostly waiting on
# the network), its output kept for after the build.
step "fetches in the background: llama.cpp's server and its model, the embedding server, the in-process embedding model, the STT client SDKs"
mkdir -p target
fetch_log=target/test-fetches.log
(
    ./scripts/llm-server.sh fetch
    ./scripts/embed-server.sh fetch
    ./scripts/onnx-embedder.sh fetch
    ./scripts/openai-sdk.sh fetch
    ./scripts/stt-sdks.sh fetch
) >"$fetch_log" 2>&1 &
fetch_pid=$!

# The build is also the lint: clippy's driver compiles sori's own crates (the dependencies go to
# rustc as usual), so one release build both lints with -D warnings and makes the binaries
# the tests run, instead of a second, check-only pass over everything. The tests below must
# see the same two variables, or cargo would rebuild sori's crates without them.
export RUSTC_WORKSPACE_WRAPPER
RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)" ||
    { echo "clippy-driver is missing: rustup component add clippy" >&2; exit 1; }
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# The `ci` profile (Cargo.toml): release where the tests' speed lives (whisper.cpp is unusably
# slow unoptimised), less optimisation elsewhere; binaries in target/ci/.
step "build and lints (profile ci; clippy -D warnings on sori's crates)"
cargo build --profile ci --locked --all-targets --timings

step "the background fetches"
if ! wait "$fetch_pid"; then
    fetch_pid=
    cat "$fetch_log"
    echo "a fetch failed (its output above)" >&2
    exit 1
fi
fetch_pid=
cat "$fetch_log"

step "models and test audio (sori model fetch; the LibriVox clips for the compatibility tests; the noise bench's music)"
./target/ci/sori model fetch
./scripts/peers.sh audio
./scripts/peers.sh noise

step "tool check: the external tools the tests rely on behave as assumed (scripts/check-tools.sh)"
./scripts/check-tools.sh

step "tests"
cargo test --profile ci --locked "$@"

step "fuzzing smoke: each cargo-fuzz target briefly (docs/fuzzing.md)"
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
./scripts/fuzz.sh smoke
