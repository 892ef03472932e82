#!/usr/bin/env bash
# How Whisper decodes behave when two of them share the CPU: one `sori transcribe` of
# data/bench/jfk_x3.wav (36 s of speech) timed alone and beside a second decoder that loops
# on the same file, for several thread counts. Prints one line per measurement.
# Usage: scripts/bench-sharing-cores.sh [ROUNDS]   (after `sori model fetch`)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
bin=./target/release/sori
audio=data/bench/jfk_x3.wav
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -f "$audio" ] || { echo "$audio is missing: run $bin model fetch" >&2; exit 1; }

transcribe() { "$bin" transcribe --language en --threads "$1" "$audio" >/dev/null 2>&1; }

for round in $(seq 1 "$rounds"); do
    # "THREADS LOAD_THREADS": LOAD_THREADS is the competing decoder's, or "none".
    for case in "2 none" "1 none" "1 1" "2 1" "2 2"; do
        set -- $case
        threads=$1 load=$2 load_pid=""
        if [ "$load" != none ]; then
            (while :; do transcribe "$load"; done) &
            load_pid=$!
            sleep 2
        fi
        started=$(date +%s.%N)
        transcribe "$threads"
        ended=$(date +%s.%N)
        if [ -n "$load_pid" ]; then
            kill "$load_pid" 2>/dev/null || true
            pkill -f "$bin transcribe" 2>/dev/null || true
            wait "$load_pid" 2>/dev/null || true
        fi
        printf 'round %s  threads %s  beside %-4s  wall %6.2f s\n' \
            "$round" "$threads" "$load" "$(awk "BEGIN { print $ended - $started }")"
    done
done
