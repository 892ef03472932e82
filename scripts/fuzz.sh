#!/usr/bin/env bash
# cargo-fuzz targets of sori's untrusted-input parsers (fuzz/, docs/fuzzing.md):
#   protocol     client text frames on /ws, their base64 audio, and stream options (JSON or query)
#   pcm          binary PCM frames → mono f32 → the 16 kHz stream resampler
#   decode_file  uploaded files (WAV, MP3, FLAC, Ogg Vorbis) → samples → 16 kHz
#
# Usage: scripts/fuzz.sh build | smoke [SECONDS] | run TARGET [SECONDS] | repro TARGET FILE...
#   build               install cargo-fuzz into .tools/cargo-fuzz/ (once) and build every target
#   smoke [SECONDS]     build, then run each target for SECONDS (default 10) one after another,
#                       from the seeds with libFuzzer's -seed=1 (FUZZ_SEED to change it); exits
#                       non-zero if any found a crash, panic, hang or runaway memory (test.sh
#                       runs it)
#   run TARGET [SECS]   a long run of one target (default 600 s), its corpus kept in fuzz/corpus/
#   repro TARGET FILE   runs the target once on each FILE (a crash from fuzz/artifacts/TARGET/)
#
# Runs on the stable toolchain: targets are built with `--sanitizer none` (AddressSanitizer needs
# nightly's -Zsanitizer; safe Rust does not need it to catch panics, overflows — debug assertions
# are on — out-of-bounds indexing, timeouts or runaway memory). FUZZ_SANITIZER=address with
# RUSTUP_TOOLCHAIN=nightly builds with ASan where a nightly toolchain exists.
# One fuzzing process at a time (the machine has 2 cores, shared with whatever else runs).
# Seed corpora are made from the repo's own audio (data/jfk.wav and data/jfk.mp3 after
# `sori model fetch`; sox converts them to FLAC, Ogg and other WAV layouts) and fuzz/seeds/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fuzz_dir="$root/fuzz"

cargo_fuzz_version="0.13.2"
cargo_fuzz_root="$root/.tools/cargo-fuzz"
cargo_fuzz="$cargo_fuzz_root/bin/cargo-fuzz"
sanitizer="${FUZZ_SANITIZER:-none}"
targets=(protocol pcm decode_file compat)
# Seeds made from the repo's audio (remade on every run), and the smoke test's scratch corpus.
seeds_dir="$fuzz_dir/target/seeds"
smoke_corpus="$fuzz_dir/target/smoke-corpus"

log() { printf '[fuzz] %s\n' "$*" >&2; }

# Per-target libFuzzer options: the longest input tried (keeps one execution fast: a 64 KiB
# upload is a few seconds of compressed audio), and the dictionary.
max_len() {
    case "$1" in
    protocol) echo 4096 ;;
    pcm) echo 16384 ;;
    decode_file) echo 65536 ;;
    compat) echo 4096 ;;
    *) echo "unknown target $1 (targets: ${targets[*]})" >&2 && return 1 ;;
    esac
}

target_args() {
    local target=$1
    local args=(
        "-max_len=$(max_len "$target")"
        -timeout=10       # one input taking 10 s is a hang: reported like a crash
        -rss_limit_mb=2048 # and so is one needing 2 GiB
        -print_final_stats=1
    )
    if [ "$target" = protocol ]; then
        args+=("-dict=$fuzz_dir/protocol.dict")
    fi
    printf '%s\n' "${args[@]}"
}

install_cargo_fuzz() {
    local want=" $cargo_fuzz_version\$"
    if [ -x "$cargo_fuzz" ] && "$cargo_fuzz" --version 2>/dev/null | grep -q "$want"; then
        return
    fi
    if cargo-fuzz --version 2>/dev/null | grep -q "$want"; then
        return # the same version is on PATH already
    fi
    log "installing cargo-fuzz $cargo_fuzz_version into ${cargo_fuzz_root#"$root"/}"
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked --root "$cargo_fuzz_root" --quiet
}

cargo_fuzz() {
    # `cargo fuzz` finds its subcommand on PATH; the fuzz crate has its own target dir
    # (fuzz/target), so the main crate's build is never touched by the instrumented flags.
    PATH="$cargo_fuzz_root/bin:$PATH" cargo fuzz "$@"
}

build() {
    install_cargo_fuzz
    log "building the targets (sanitizer: $sanitizer)"
    cargo_fuzz build --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer"
}

# Writes the bytes given as \xHH escapes, then the file, to a seed.
seed_with_prefix() {
    local prefix=$1 file=$2 out=$3
    { printf '%b' "$prefix"; cat "$file"; } >"$out"
}

make_seeds() {
    local tmp
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'; trap - RETURN" RETURN
    local wav="$root/data/jfk.wav" mp3="$root/data/jfk.mp3"
    rm -rf "$seeds_dir"
    mkdir -p "$seeds_dir/protocol" "$seeds_dir/pcm" "$seeds_dir/decode_file"

    # decode_file: byte 0 is the extension hint (0 none, 1 wav, 2 mp3, 3 flac, 4 ogg).
    local d="$seeds_dir/decode_file"
    # A canonical 44-byte WAV header with 4 samples, needing no tool.
    printf '%b' 'RIFF\x2c\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\x3e\x00\x00\x00\x7d\x00\x00\x02\x00\x10\x00data\x08\x00\x00\x00\x00\x00\xff\x7f\x00\x80\x01\x00' >"$tmp/tiny.wav"
    seed_with_prefix '\x01' "$tmp/tiny.wav" "$d/seed-tiny.wav"
    # Regression: a header claiming 61441 channels overflowed symphonia's u16 block-align
    # arithmetic (a panic with overflow checks; docs/fuzzing.md).
    printf '%b' '\x01RIFF\x2c\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\xf0\x57\x00\x00\x00\x00\x00\x00\x00\x02\x00\x10\x00data\x08\x00\x00\x00\x00\x00\xff\x7f\x00\x80\x01\x00' \
        >"$d/regression-wav-61441-channels"
    if [ -f "$mp3" ]; then
        head -c 12000 "$mp3" >"$tmp/head.mp3" # whole frames and a cut one
        seed_with_prefix '\x02' "$tmp/head.mp3" "$d/seed-jfk-head.mp3"
        seed_with_prefix '\x00' "$tmp/head.mp3" "$d/seed-jfk-head-nohint.mp3"
    fi
    if command -v sox >/dev/null; then
        local src="$tmp/src.wav"
        if [ -f "$wav" ]; then
            sox "$wav" "$src" trim 1.0 1.0
        else
            log "no data/jfk.wav (run \`sori model fetch\`): seeding from a synthetic tone"
            sox -n -r 16000 -c 1 -b 16 "$src" synth 1.0 sine 300-3000 vol 0.5
        fi
        # Each conversion may be missing from a given sox build: keep what works.
        mkdir "$tmp/conv"
        conv() { # NAME SECONDS FORMAT-OPTIONS...
            local out=$1 seconds=$2
            shift 2
            sox "$src" "$@" "$tmp/conv/$out" trim 0 "$seconds" 2>/dev/null \
                || log "sox could not make $out"
        }
        conv s16.wav 0.5 -r 16000 -c 1 -b 16
        conv f32-stereo.wav 0.3 -r 8000 -c 2 -e floating-point -b 32
        conv s24.wav 0.1 -r 44100 -c 1 -b 24
        conv extensible-3ch.wav 0.2 -r 11025 -c 3 -b 16
        conv ulaw.wav 0.5 -r 8000 -c 1 -e u-law
        conv alaw.wav 0.5 -r 8000 -c 1 -e a-law
        conv u8.wav 0.5 -r 8000 -c 1 -b 8
        conv mono.flac 1.0 -r 16000 -c 1
        conv stereo-24bit.flac 0.1 -r 48000 -c 2 -b 24
        conv mono.ogg 1.0 -r 16000 -c 1
        conv stereo.ogg 0.5 -r 22050 -c 2
        conv mono.mp3 1.0 -r 16000 -c 1
        conv stereo.mp3 0.3 -r 44100 -c 2
        local f name hint
        for f in "$tmp"/conv/*; do
            name=$(basename "$f")
            case "$name" in
            *.wav) hint='\x01' ;;
            *.mp3) hint='\x02' ;;
            *.flac) hint='\x03' ;;
            *.ogg) hint='\x04' ;;
            esac
            if [ "$(stat -c %s "$f")" -lt "$(max_len decode_file)" ]; then
                seed_with_prefix "$hint" "$f" "$d/seed-$name"
            fi
        done

        # pcm: 4 header bytes (see fuzz/fuzz_targets/pcm.rs), then raw little-endian PCM.
        # byte 0 = (frame unit - 1) << 2 | stereo << 1 | f32; bytes 1-2 = rate; byte 3 = unit count - 1.
        local p="$seeds_dir/pcm"
        sox "$src" -t raw -r 16000 -c 1 -e signed -b 16 "$tmp/s16-16k.raw" trim 0 0.3
        seed_with_prefix '\x24\x40\x1f\x3f' "$tmp/s16-16k.raw" "$p/seed-s16-mono-16k" # 640-byte frames
        sox "$src" -t raw -r 8000 -c 1 -e signed -b 16 "$tmp/s16-8k.raw" trim 0 0.5
        seed_with_prefix '\x24\x00\x00\x1f' "$tmp/s16-8k.raw" "$p/seed-s16-mono-8k"
        sox "$src" -t raw -r 48000 -c 2 -e floating-point -b 32 "$tmp/f32-48k.raw" trim 0 0.04
        seed_with_prefix '\xef\x48\x9c\x7f' "$tmp/f32-48k.raw" "$p/seed-f32-stereo-48k" # 7680-byte frames
        sox "$src" -t raw -r 44100 -c 2 -e signed -b 16 "$tmp/s16-44k.raw" trim 0 0.08
        seed_with_prefix '\x4e\x47\x9c\x3f' "$tmp/s16-44k.raw" "$p/seed-s16-stereo-44k1"
        sox "$src" -t raw -r 44101 -c 1 -e floating-point -b 32 "$tmp/f32-odd.raw" trim 0 0.08
        seed_with_prefix '\x1d\x49\x9c\x3f' "$tmp/f32-odd.raw" "$p/seed-f32-mono-44101-sinc"
        sox "$src" -t raw -r 22050 -c 1 -e signed -b 16 "$tmp/s16-22k.raw" trim 0 0.3
        seed_with_prefix '\x04\xe2\x36\x00' "$tmp/s16-22k.raw" "$p/seed-s16-mono-22050-tiny-frames"
    else
        log "no sox: decode_file and pcm start from the tiny WAV seed only"
    fi
    printf '%b' '\x04\x40\x1f\x00\x00\x80\xff\x7f' >"$seeds_dir/pcm/seed-s16-min-max"

    # protocol: the committed text seeds (fuzz/seeds/protocol), and a real frame's base64.
    if [ -f "$wav" ]; then
        printf '{"type":"audio","audio":"%s"}' "$(head -c 2044 "$wav" | tail -c 640 | base64 -w0)" \
            >"$seeds_dir/protocol/seed-audio-20ms.json"
    fi
}

# Runs one target for a number of seconds, growing the corpus in CORPUS_DIR; prints a summary
# line; non-zero on any finding (crash, panic, timeout, out-of-memory).
run_target() {
    local target=$1 seconds=$2 corpus_dir=$3
    shift 3 # the rest: more libFuzzer options
    local corpus="$corpus_dir/$target" logs="$fuzz_dir/artifacts/logs"
    local log_file
    # Every target has a generated-seeds folder, empty for those with committed seeds only.
    mkdir -p "$corpus" "$logs" "$fuzz_dir/artifacts/$target" "$seeds_dir/$target"
    log_file="$logs/$target-$(date -u +%Y%m%dT%H%M%SZ).log"
    local dirs=("$corpus" "$seeds_dir/$target")
    [ -d "$fuzz_dir/seeds/$target" ] && dirs+=("$fuzz_dir/seeds/$target")
    local args
    mapfile -t args < <(target_args "$target")
    log "running $target for ${seconds}s (log: ${log_file#"$root"/})"
    local start rc=0
    start=$(date +%s)
    cargo_fuzz run --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer" "$target" "${dirs[@]}" -- \
        "${args[@]}" "-max_total_time=$seconds" "$@" >"$log_file" 2>&1 || rc=$?
    local elapsed=$(($(date +%s) - start))
    local execs rate cov ft corp peak
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log_file" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log_file" | tail -1)
    peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log_file" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log_file" | tail -1 | cut -d' ' -f2)
    ft=$(grep -oE 'ft: [0-9]+' "$log_file" | tail -1 | cut -d' ' -f2)
    corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log_file" | tail -1 | cut -d' ' -f2)
    printf '%-12s %ss  execs %s  exec/s %s  cov %s  ft %s  corpus %s  peak RSS %s MB  %s\n' \
        "$target" "$elapsed" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
        "${peak:-?}" "$([ "$rc" -eq 0 ] && echo "no crash" || echo "FAILED (exit $rc)")"
    if [ "$rc" -ne 0 ]; then
        log "$target failed; the end of its log:"
        grep -v -E '^#[0-9]+ +(NEW|REDUCE|pulse)|NEW_FUNC' "$log_file" | tail -60 >&2
        log "reproduce with: scripts/fuzz.sh repro $target fuzz/artifacts/$target/<crash-file>"
        ls -1 "$fuzz_dir/artifacts/$target" >&2 || true
    fi
    return "$rc"
}

cmd="${1:-}"
case "$cmd" in
build)
    build
    ;;
smoke)
    seconds="${2:-10}"
    t0=$(date +%s)
    build
    make_seeds
    status=0
    # From the seeds alone, in a corpus thrown away afterwards, with a fixed random seed: about
    # the same work on every machine, and a finding shows up again on a re-run.
    rm -rf "$smoke_corpus"
    for t in "${targets[@]}"; do
        run_target "$t" "$seconds" "$smoke_corpus" "-seed=${FUZZ_SEED:-1}" || status=1
    done
    rm -rf "$smoke_corpus"
    log "smoke took $(($(date +%s) - t0))s"
    exit "$status"
    ;;
run)
    target="${2:?usage: scripts/fuzz.sh run TARGET [SECONDS]}"
    max_len "$target" >/dev/null
    build
    make_seeds
    run_target "$target" "${3:-600}" "$fuzz_dir/corpus"
    ;;
repro)
    target="${2:?usage: scripts/fuzz.sh repro TARGET FILE...}"
    shift 2
    build
    cargo_fuzz run --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer" "$target" "$@"
    ;;
*)
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] || [ "$cmd" = help ] || [ "$cmd" = -h ] || exit 2
    ;;
esac
