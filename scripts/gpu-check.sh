#!/usr/bin/env bash
# Checks sori's GPU path on a machine with an NVIDIA driver (issue 17), in one command:
#   a. the driver answers (nvidia-smi), and the CUDA binary finds its libraries
#   b. whisper decodes on the GPU: `sori transcribe`'s log (whisper.cpp's device line, sori's
#      "whisper decodes on the GPU"), and a `sori serve`'s /api/config and /api/status (NVML:
#      name, memory, utilisation)
#   c. accuracy: `sori-tools eval` of JFK and the LibriVox clips on the GPU and with
#      SORI_USE_GPU=false; FAIL when the GPU's WER is above the CPU's
#   d. offline RTF: `sori transcribe` of the joined LibriVox file, GPU vs CPU, median of 3
#   e. capacity: `sori-tools bench --capacity --stop-at-first-miss` over LEVELS: streams per
#      GPU, latency, GPU memory per worker, utilisation, the SORI_MAX_SESSIONS to set
#
# Usage: scripts/gpu-check.sh [--bin DIR] [--model PATH] [--levels 8,32,64,128,256] [--tiny MODEL]
#   --bin DIR      holds `sori` and `sori-tools` built with CUDA (default target/cuda/release,
#                  what scripts/build-cuda.sh builds)
#   --model PATH   the whisper model (default models/ggml-base-q8_0.bin)
#   --levels L     the capacity levels, clients at once (default 8,32,64,128,256)
#   --tiny MODEL   also measure the capacity of this model (tiny.en)
#
# Needs: nvidia-smi, curl, python3 (for JSON), data/jfk.wav (`sori model fetch`) and, for the
# LibriVox clips and the capacity speech, data/bench/peers/ (`scripts/peers.sh fetch`; without
# it JFK alone is used). Libraries: LD_LIBRARY_PATH as given; when `ldd` does not find
# libcudart.so.13, .tools/cuda (scripts/build-cuda.sh) and Python site-packages'
# nvidia/cu13/lib (e.g. /opt/torch/.venv) are searched and added.
# Output: everything also goes to $OUT (if set, else ./gpu-check-out): gpu-check.log,
# summary.txt (one PASS/FAIL line per check), each step's log and JSON.
# Time: about 8 to 12 min with base on an H100/H200: a-d take 2-5 min, e about 1 min per level
# run (each client streams ~48 s; the sweep stops at the first level over p95 1.5 s); --tiny
# adds its own sweep. Every step has its own timeout. Exit status 1 when a check fails.
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
root=$PWD
script_name="gpu-check"
# shellcheck source=scripts/common.sh
. scripts/common.sh

# from_caller PATH: PATH as given on the command line, absolute (the script runs in the root).
from_caller() {
    case "$1" in
    /*) echo "$1" ;;
    *) echo "$caller/$1" ;;
    esac
}

bin_dir="$root/target/cuda/release"
model="models/ggml-base-q8_0.bin"
levels="8,32,64,128,256"
tiny=""
while [ $# -gt 0 ]; do
    case "$1" in
    --bin) bin_dir=$(from_caller "${2:?--bin needs a folder}") && shift 2 ;;
    --model) model=$(from_caller "${2:?--model needs a file}") && shift 2 ;;
    --levels) levels=${2:?--levels needs a list} && shift 2 ;;
    --tiny) tiny=$(from_caller "${2:?--tiny needs a model file}") && shift 2 ;;
    -h | --help) usage ;;
    *) usage ;;
    esac
done
[[ $levels =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--levels must be numbers separated by commas, e.g. 8,32,64"

out=$(from_caller "${OUT:-$root/gpu-check-out}")
mkdir -p "$out"
out=$(cd "$out" && pwd)
: >"$out/summary.txt"
exec > >(tee -a "$out/gpu-check.log") 2>&1
say "output in $out; started $(date -u +%FT%TZ) on $(hostname)"

failures=0
# check NAME PASS|FAIL FIGURES...: one line on the console and in summary.txt.
check() {
    local name=$1 verdict=$2
    shift 2
    printf '%-4s %-10s %s\n' "$verdict" "$name" "$*" | tee -a "$out/summary.txt"
    [ "$verdict" = PASS ] || failures=$((failures + 1))
}

# json FILE EXPR: a Python expression over the JSON in FILE (as `j`), printed; nothing when
# the file, the JSON or the field is missing.
json() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
try:
    with open(sys.argv[1]) as f:
        j = json.load(f)
    v = eval(sys.argv[2], {"j": j})
except Exception:
    v = None
print("" if v is None else v)
EOF
}

server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap stop_server EXIT

# The log filter that shows sori's "whisper decodes on the GPU/CPU" line and little else.
placement_log="warn,sori::stt::placement=info"

# placed SIDE LOG: whether LOG says whisper decoded where SIDE (gpu or cpu) means.
placed() {
    case "$1" in
    gpu) grep -q 'whisper decodes on the GPU' "$2" ;;
    *) grep -q 'whisper decodes on the CPU' "$2" ;;
    esac
}

# ---- a. the driver, the binaries, their libraries ------------------------------------------
step_driver() {
    command -v nvidia-smi >/dev/null 2>&1 ||
        die "no NVIDIA driver: nvidia-smi is not on PATH (and /proc/driver/nvidia/version \
$([ -e /proc/driver/nvidia/version ] && echo exists || echo 'is missing')); \
this check needs a machine with an NVIDIA GPU and its driver"
    local gpus
    gpus=$(timeout 60 nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total \
        --format=csv,noheader) || die "nvidia-smi is installed but does not answer: no usable NVIDIA driver"
    [ -n "$gpus" ] || die "nvidia-smi lists no GPU"
    gpu_count=$(printf '%s\n' "$gpus" | wc -l)
    check driver PASS "$gpu_count GPU(s): $(printf '%s' "$gpus" | paste -sd ';' -)"
    for tool in curl python3 timeout; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required but missing"
    done
}

# cuda_lib_dirs: folders that may hold the CUDA runtime and cuBLAS, best first: the toolkit
# of scripts/build-cuda.sh, then Python environments' NVIDIA wheels (nvidia/cu13/lib for
# CUDA 13; nvidia/cuda_runtime/lib and nvidia/cublas/lib for CUDA 12), then a system toolkit.
cuda_lib_dirs() {
    if [ -x .tools/cuda/venv/bin/python ]; then
        scripts/build-cuda.sh env 2>/dev/null | sed -n 's/^export LD_LIBRARY_PATH=\([^:]*\).*/\1/p'
    fi
    local py
    for py in python3 /opt/torch/.venv/bin/python /opt/*/.venv/bin/python /opt/*/venv/bin/python; do
        command -v "$py" >/dev/null 2>&1 || [ -x "$py" ] || continue
        "$py" - <<'EOF' 2>/dev/null || true
import site, sysconfig, os
roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
roots.update(getattr(site, "getsitepackages", lambda: [])())
for root in sorted(roots):
    for part in ("cu13", "cuda_runtime", "cublas"):
        lib = os.path.join(root, "nvidia", part, "lib")
        if os.path.isdir(lib):
            print(lib)
EOF
    done
    find /opt /usr/local /usr/lib -maxdepth 5 -name 'libcu*.so.[0-9]*' -printf '%h\n' 2>/dev/null |
        sort -u || true
}

# add_missing_libraries: for each CUDA library `ldd` does not find (libcudart.so.13,
# libcublas.so.13, …), the first folder of cuda_lib_dirs that holds it goes on LD_LIBRARY_PATH.
add_missing_libraries() {
    local lib dir dirs
    dirs=$(cuda_lib_dirs)
    for lib in $(ldd "$sori" | awk '/=> not found/ && $1 ~ /^libcu/ {print $1}'); do
        ldd "$sori" | grep -q "^[[:space:]]*$lib => not found" || continue
        while read -r dir; do
            [ -n "$dir" ] && [ -e "$dir/$lib" ] || continue
            say "$lib found in $dir: adding it to LD_LIBRARY_PATH"
            export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            break
        done <<<"$dirs"
    done
}

step_libraries() {
    sori="$bin_dir/sori"
    tools="$bin_dir/sori-tools"
    [ -x "$sori" ] || die "no sori at $sori (build it with scripts/build-cuda.sh, or give --bin DIR)"
    [ -x "$tools" ] || die "no sori-tools beside it at $tools (scripts/build-cuda.sh builds both)"
    [ -f "$model" ] || die "no model at $model (sori model fetch, or give --model PATH)"
    [ -z "$tiny" ] || [ -f "$tiny" ] || die "no model at $tiny (--tiny)"
    add_missing_libraries
    ldd "$sori" >"$out/ldd.txt" 2>&1 || true
    local missing
    missing=$(awk '/not found/ {print $1}' "$out/ldd.txt" | paste -sd ' ' -)
    if [ -n "$missing" ]; then
        check libraries FAIL "not found: $missing (set LD_LIBRARY_PATH to the CUDA 13 runtime and cuBLAS)"
        die "$sori cannot start without $missing"
    fi
    local cuda
    cuda=$(awk '/libcudart|libcublas/ {print $3}' "$out/ldd.txt" | paste -sd ' ' -)
    [ -n "$cuda" ] || say "warning: $sori links no CUDA runtime: is it a CPU build?"
    check libraries PASS "${cuda:-no CUDA libraries (a CPU build)}"
}

# ---- b. whisper on the GPU -----------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server NAME ENV...: `sori serve` on a free port with the model, until /health answers.
start_server() {
    local name=$1
    shift
    local port
    port=$(free_port)
    base_url="http://127.0.0.1:$port"
    env SORI_KEYWORDS=false SORI_RAG=false "$@" "$sori" serve --bind "127.0.0.1:$port" \
        --model "$model" --outputs-dir "$out/outputs" >"$out/$name.log" 2>&1 &
    server_pid=$!
    local _
    for _ in $(seq 1 180); do
        curl -fsS "$base_url/health" >/dev/null 2>&1 && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 1
    done
    tail -20 "$out/$name.log" >&2
    return 1
}

step_gpu_used() {
    local log="$out/transcribe-jfk-gpu.log" rc=0 device
    RUST_LOG=info timeout 300 "$sori" transcribe data/jfk.wav --language en --model "$model" \
        >"$out/transcribe-jfk-gpu.txt" 2>"$log" || rc=$?
    # whisper.cpp's own lines (through whisper-rs, at info) and sori's placement line.
    device=$({ grep -oE 'whisper decodes on the (GPU|CPU).*|using CUDA[0-9]* backend|ggml_cuda_init: .*' "$log" || true; } |
        paste -sd '|' -)
    if [ "$rc" -ne 0 ]; then
        check transcribe FAIL "exit $rc (see $log): $(tail -3 "$log" | paste -sd ' ' -)"
    elif grep -q 'whisper decodes on the GPU' "$log"; then
        check transcribe PASS "\"$(head -c 120 "$out/transcribe-jfk-gpu.txt" | tr '\n' ' ')\" [$device]"
    else
        check transcribe FAIL "whisper is not on the GPU: ${device:-no device line in $log}"
    fi

    if ! start_server serve-gpu; then
        check serve FAIL "sori serve did not answer /health within 180 s (see $out/serve-gpu.log)"
        stop_server
        return
    fi
    curl -fsS "$base_url/api/config" >"$out/api-config.json" || true
    # A decode, so that utilisation and memory reflect a loaded, used model.
    curl -fsS -H 'content-type: audio/wav' --data-binary @data/jfk.wav \
        "$base_url/api/transcribe?language=en" >/dev/null || true
    curl -fsS "$base_url/api/status" >"$out/api-status.json" || true
    stop_server
    local on device_list gpus
    on=$(json "$out/api-config.json" 'j["decoder"]["device"]')
    device_list=$(json "$out/api-config.json" '", ".join(j["decoder"]["gpus"])')
    gpus=$(json "$out/api-status.json" '"; ".join("%s: %s / %s MB, %s %%" % (d["name"], d["memory_used_mb"], d["memory_total_mb"], d["utilization_pct"]) for d in j["gpu"]["devices"])')
    if [ "$on" = gpu ]; then
        check api-config PASS "decoder.device gpu ($device_list), workers $(json "$out/api-config.json" 'j["decoder"]["workers"]') x threads $(json "$out/api-config.json" 'j["decoder"]["threads"]')"
    else
        check api-config FAIL "decoder.device ${on:-missing}: $(json "$out/api-config.json" 'j["decoder"]["cpu_reason"]')"
    fi
    if [ -n "$gpus" ] && [ "$(json "$out/api-status.json" 'j["gpu"]["used_by_whisper"]')" = True ]; then
        check api-status PASS "NVML: $gpus; used_by_whisper true"
    else
        check api-status FAIL "gpu: $(json "$out/api-status.json" 'j["gpu"]')"
    fi
}

# ---- c. accuracy, GPU against CPU ----------------------------------------------------------
eval_dir() {
    local dir="$out/eval-audio"
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ -d data/bench/peers ] && ls data/bench/peers/librivox-*.wav >/dev/null 2>&1; then
        cp data/bench/peers/jfk.wav data/bench/peers/jfk.txt data/bench/peers/librivox-* "$dir/"
    else
        say "no LibriVox clips in data/bench/peers (scripts/peers.sh fetch): JFK alone"
        cp data/jfk.wav "$dir/jfk.wav"
        echo "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country." >"$dir/jfk.txt"
    fi
    echo "$dir"
}

step_accuracy() {
    local dir side
    dir=$(eval_dir)
    for side in gpu cpu; do
        local use_gpu=true
        [ "$side" = cpu ] && use_gpu=false
        if ! SORI_USE_GPU=$use_gpu RUST_LOG=$placement_log timeout 900 "$tools" eval "$dir" \
            --language en --model "$model" --json "$out/eval-$side.json" \
            >"$out/eval-$side.txt" 2>"$out/eval-$side.log"; then
            check accuracy FAIL "sori-tools eval on the $side failed (see $out/eval-$side.log)"
            return
        fi
        if ! placed "$side" "$out/eval-$side.log"; then
            check accuracy FAIL "the $side run of sori-tools eval did not decode on the $side (see $out/eval-$side.log)"
            return
        fi
    done
    local files path gpu cpu verdict=PASS figures=""
    files=$(json "$out/eval-gpu.json" 'j["total"]["files"]')
    for path in offline stream; do
        gpu=$(json "$out/eval-gpu.json" "'%.4f' % j['total']['$path']['wer']['rate']")
        cpu=$(json "$out/eval-cpu.json" "'%.4f' % j['total']['$path']['wer']['rate']")
        figures+="$path WER GPU ${gpu:-?} / CPU ${cpu:-?}; "
        python3 -c "import sys; sys.exit(0 if float('${gpu:-1}') <= float('${cpu:-0}') + 1e-9 else 1)" ||
            verdict=FAIL
    done
    gpu=$(json "$out/eval-gpu.json" "'%.4f' % j['total']['offline']['rtf']")
    cpu=$(json "$out/eval-cpu.json" "'%.4f' % j['total']['offline']['rtf']")
    check accuracy "$verdict" "$files files: ${figures}offline RTF in process GPU $gpu / CPU $cpu"
}

# ---- d. offline RTF, GPU against CPU -------------------------------------------------------
# medians SIDE FILE: "PROCESSING WALL", the medians of 3 `sori transcribe` runs: the seconds it
# reports for the file ("N s of audio in P s", model load excluded) and the whole process's.
medians() {
    local side=$1 file=$2 use_gpu=true run started ended processing=() wall=()
    [ "$side" = cpu ] && use_gpu=false
    for run in 1 2 3; do
        local log="$out/rtf-$side-$run.log"
        started=$(date +%s.%N)
        SORI_USE_GPU=$use_gpu RUST_LOG=$placement_log timeout 600 "$sori" transcribe "$file" \
            --language en --model "$model" >"$out/rtf-$side-$run.txt" 2>"$log" || return 1
        ended=$(date +%s.%N)
        placed "$side" "$log" || return 1
        processing+=("$(sed -n 's/^.* s of audio in \([0-9.]*\) s .*/\1/p' "$log" | tail -1)")
        wall+=("$(python3 -c "print($ended - $started)")")
    done
    echo "$(printf '%s\n' "${processing[@]}" | sort -g | sed -n 2p)" \
        "$(printf '%s\n' "${wall[@]}" | sort -g | sed -n 2p)"
}

step_rtf() {
    local file=data/bench/peers/joined.wav audio gpu cpu
    [ -f "$file" ] || file=data/jfk.wav
    audio=$(python3 -c "import wave,sys; w=wave.open(sys.argv[1]); print(w.getnframes()/w.getframerate())" "$file")
    if ! gpu=$(medians gpu "$file") || ! cpu=$(medians cpu "$file"); then
        check rtf FAIL "sori transcribe failed or did not decode where asked (see $out/rtf-*.log)"
        return
    fi
    local figures text
    read -ra figures <<<"$gpu $cpu"
    if text=$(python3 - "$audio" "$file" "${figures[@]}" <<'EOF'
import sys
a, name = float(sys.argv[1]), sys.argv[2]
gp, gw, cp, cw = (float(x) for x in sys.argv[3:7])
print(f"{name} ({a:.1f} s), median of 3: GPU {gp:.2f} s (RTF {gp / a:.4f}), "
      f"CPU {cp:.2f} s (RTF {cp / a:.4f}), GPU {cp / gp:.1f}x faster; "
      f"whole process with the model load: GPU {gw:.2f} s, CPU {cw:.2f} s")
EOF
    ); then
        check rtf PASS "$text"
    else
        check rtf FAIL "no \"s of audio in\" timing in $out/rtf-*.log (got: $gpu / $cpu)"
    fi
}

# ---- e. capacity ---------------------------------------------------------------------------
# capacity NAME MODEL: the sweep, the table, and what it means for a deployment.
capacity() {
    local name=$1 which=$2 speech=() before limit figures
    [ -f data/bench/peers/joined.wav ] || speech=(data/jfk.wav)
    before=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits |
        python3 -c 'import sys; print(sum(float(x) for x in sys.stdin.read().split()))')
    # Each level streams ~48 s (joined.wav) and waits for its sessions to close; the server's
    # start and the warm-up take a minute at most.
    limit=$((180 + 150 * $(tr ',' '\n' <<<"$levels" | wc -l)))
    say "capacity of $which over $levels clients, at most $limit s (GPU memory before: $before MB)"
    if ! timeout "$limit" "$tools" bench --capacity --clients "$levels" --stop-at-first-miss \
        --model "$which" --json "$out/capacity-$name.json" "${speech[@]}" \
        >"$out/capacity-$name.md" 2>"$out/capacity-$name.log"; then
        check "capacity-$name" FAIL "sori-tools bench --capacity failed (see $out/capacity-$name.log)"
        return
    fi
    cat "$out/capacity-$name.md"
    figures=$(python3 - "$out/capacity-$name.json" "$before" 2>&1 <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
before = float(sys.argv[2])
d = j.get("decoder") or {}
gpus = max(len(d.get("gpus") or []), 1)
streams = j["capacity"]["streams"]
workers = max(j["workers"], 1)
parts = [f"decoder {d.get('device')}, {d.get('workers')} workers x {d.get('threads')} threads",
         f"{streams} streams ({streams / gpus:.0f} per GPU, {gpus} GPU(s) used)"]
held = [l for l, h in zip(j["levels"], j["capacity"]["held"]) if h and l["clients"] == streams]
if held:
    l = held[0]
    parts.append(f"final p50 {l['latency_p50_s']:.2f} s / p95 {l['latency_p95_s']:.2f} s")
    if l.get("gpu"):
        parts.append(f"GPU busy {l['gpu']['utilisation_mean_pct']:.0f} %, "
                     f"GPU memory peak {l['gpu']['peak_memory_mb']:.0f} MB")
idle = j.get("gpu_memory_idle_mb")
if idle:
    parts.append(f"GPU memory per worker {(idle - before) / workers:.0f} MB "
                 f"(({idle:.0f} MB after warm-up - {before:.0f} MB before) / {workers:.0f})")
parts.append(f"set SORI_MAX_SESSIONS={streams}")
print("; ".join(parts))
EOF
    ) || figures="no figures from $out/capacity-$name.json: $figures"
    if [ "$(json "$out/capacity-$name.json" 'j["decoder"]["device"]')" = gpu ] &&
        [ "$(json "$out/capacity-$name.json" 'j["capacity"]["streams"]')" -gt 0 ]; then
        check "capacity-$name" PASS "$(basename "$which"): $figures"
    else
        check "capacity-$name" FAIL "$(basename "$which"): $figures"
    fi
}

step_driver
step_libraries
step_gpu_used
step_accuracy
step_rtf
capacity base "$model"
[ -z "$tiny" ] || capacity tiny "$tiny"

say "summary ($out/summary.txt):"
cat "$out/summary.txt"
say "finished $(date -u +%FT%TZ); $failures check(s) failed"
[ "$failures" -eq 0 ]
