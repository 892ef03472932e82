#!/usr/bin/env bash
# Runs every test of sori on a fresh machine: installs what the tests need (apt packages,
# the Whisper models, the test audio, llama.cpp's server and its model), checks formatting
# and lints, then runs the tests against the real model and real servers.
# Usage: ./test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")"

# Each step header carries the time since the start, so a CI log shows where the minutes went.
step() { printf '\n== [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }
trap 'printf "\n== [%dm%02ds] test.sh ended (exit %d)\n" $((SECONDS / 60)) $((SECONDS % 60)) $?' EXIT

step "system packages"
./scripts/install-deps.sh

step "build (release: whisper.cpp is unusably slow unoptimised)"
cargo build --release --locked --all-targets --timings

step "models and test audio (sori model fetch)"
./target/release/sori model fetch

step "LLM server, its model, the embedding server and the in-process embedding model for the keyword and RAG tests (tests start their own on free ports); the STT client SDKs and the LibriVox clips for the compatibility tests"
./scripts/llm-server.sh fetch
./scripts/embed-server.sh fetch
./scripts/onnx-embedder.sh fetch
./scripts/openai-sdk.sh fetch
./scripts/stt-sdks.sh fetch
./scripts/peers.sh audio

step "format and lints"
cargo fmt --all -- --check
cargo clippy --release --locked --all-targets -- -D warnings

step "tool check: the external tools the tests rely on behave as assumed (scripts/check-tools.sh)"
./scripts/check-tools.sh

step "tests"
cargo test --release --locked "$@"

step "fuzzing smoke: each cargo-fuzz target briefly (docs/fuzzing.md)"
./scripts/fuzz.sh smoke
