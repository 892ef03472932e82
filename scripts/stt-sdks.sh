#!/usr/bin/env bash
# The official streaming speech-to-text clients that sori's Deepgram-compatible `/v1/listen` and
# OpenAI-Realtime `/v1/realtime` adapters are tested with (issue 18), pinned, under .tools/stt-sdks/
# (git-ignored):
#   python  one venv: deepgram-sdk, openai, LiveKit Agents with its Deepgram and OpenAI STT plugins,
#           pipecat-ai with its Deepgram and OpenAI extras, websockets
#   node    @deepgram/sdk and openai (with ws) in .tools/stt-sdks/node/node_modules; only when
#           `node` (>= 18) and `npm` are on PATH, else skipped with a note
#
# Usage: scripts/stt-sdks.sh fetch | python [ARGS...] | node [ARGS...] | status
#   fetch           install both parts (each is skipped when its stamp matches and it imports)
#   python [ARGS]   run the venv's python (fails, naming `fetch`, when it is not installed)
#   node [ARGS]     run node with NODE_PATH at the SDKs' node_modules, so a CommonJS script
#                   anywhere can `require("@deepgram/sdk")` / `require("openai")`; an ES module
#                   can use createRequire(process.env.STT_SDKS_NODE_MODULES + "/")
#   status          print what is installed, one line a part (exit 1 when the python part is not)
#
# Node: @deepgram/sdk 5.x declares node >= 18; openai 7.x declares node >= 22 but its realtime
# WebSocket client (openai/realtime/ws, on the `ws` package) runs on node 20 (checked with 20.20).
# That client only opens wss:// (it forces the scheme), so it needs sori behind TLS.
#
# Cost (2-core machine): ~3.5 min from nothing (pip ~150 s, npm ~15 s); ~810 MB on disk, most of it
# pipecat-ai's numba/llvmlite/onnxruntime and livekit-agents' av/livekit. A fetch that finds
# everything installed takes ~10 s (the import check); `python`/`node` only check the stamps.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script_name=stt-sdks
# shellcheck source=scripts/common.sh
. scripts/common.sh

# Exact pins. openai is the pin of scripts/openai-sdk.sh; the three LiveKit packages move together.
# docopt (pulled in by pipecat-ai through num2words) ships only as an sdist, built by pip (pure
# Python, no compiler); everything else must come as a wheel.
py_specs=(
    deepgram-sdk==7.17.0
    "openai[realtime]==3.57.0"
    livekit-agents==1.8.9
    livekit-plugins-deepgram==1.8.9
    livekit-plugins-openai==1.8.9
    "pipecat-ai[deepgram,openai]==1.14.0"
    websockets==15.0.1
)
node_specs=(
    @deepgram/sdk@5.13.0
    openai@7.55.0
    ws@8.23.1
)
node_min_major=18

tool_dir="$root/.tools/stt-sdks"
venv="$tool_dir/venv"
stamp="$tool_dir/VERSION"
node_dir="$tool_dir/node"
node_stamp="$node_dir/VERSION"

py_stamp_text() { printf '%s\n' "${py_specs[@]}"; }
node_stamp_text() { printf '%s\n' "${node_specs[@]}"; }

# python_present: the venv and its stamp are there (cheap: what `python` checks before each run).
python_present() {
    [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(py_stamp_text)" ]
}

# python_ok: python_present, and the venv imports every client at its pinned version (~10 s).
python_ok() {
    python_present &&
        "$venv/bin/python" - "${py_specs[@]}" >/dev/null 2>&1 <<'PY'
import re, sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = re.sub(r"\[.*\]", "", spec).split("==")
    assert version(name) == want, (name, version(name), want)
import deepgram, openai, websockets
from deepgram import AsyncDeepgramClient, DeepgramClient
from openai import AsyncOpenAI
AsyncOpenAI(base_url="http://127.0.0.1:1/v1", api_key="unused").realtime
import livekit.agents, livekit.rtc
from livekit.plugins import deepgram as lk_deepgram, openai as lk_openai
lk_deepgram.STT, lk_openai.STT
import pipecat.services.deepgram.stt, pipecat.services.openai.stt
PY
}

node_usable() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
        [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -ge "$node_min_major" ]
}

# node_present: the node_modules and their stamp are there (what `node` checks before each run).
node_present() {
    [ -d "$node_dir/node_modules" ] && [ "$(cat "$node_stamp" 2>/dev/null)" = "$(node_stamp_text)" ]
}

# node_ok: the stamp matches and node resolves and loads both SDKs.
node_ok() {
    node_usable && node_present &&
        NODE_PATH="$node_dir/node_modules" node -e '
            const dg = require("@deepgram/sdk");
            if (!dg.DeepgramClient) throw new Error("no DeepgramClient");
            require("openai"); require("openai/realtime/ws"); require("ws");
        ' >/dev/null 2>&1
}

fetch_python() {
    if python_ok; then
        say "python SDKs present: $venv"
        return
    fi
    need_venv
    # A venv is not relocatable, so it is built in place; the stamp is written last, so a
    # broken or half-done one is rebuilt on the next fetch.
    rm -rf "$venv" "$stamp"
    mkdir -p "$tool_dir"
    local t0=$SECONDS
    say "creating a venv in $venv ($(python3 --version 2>&1))"
    python3 -m venv "$venv" >&2 || die "python3 -m venv failed (apt-get install -y python3-venv?)"
    say "installing ${py_specs[*]} from PyPI"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input \
        --only-binary=:all: --no-binary=docopt "${py_specs[@]}" >&2 ||
        die "pip could not install ${py_specs[*]}"
    py_stamp_text >"$stamp"
    python_ok || die "the python SDKs were installed but do not all import; try: $venv/bin/python -c 'import deepgram, openai, livekit.plugins.deepgram, pipecat'"
    say "python SDKs ready: $venv ($((SECONDS - t0)) s, $(du -sh "$venv" | cut -f1) on disk)"
}

fetch_node() {
    if ! node_usable; then
        say "note: skipping the npm SDKs: they need node >= $node_min_major and npm on PATH" \
            "(have node: $(node --version 2>/dev/null || echo none), npm: $(npm --version 2>/dev/null || echo none));" \
            "install them with: apt-get install -y nodejs npm"
        return
    fi
    if node_ok; then
        say "npm SDKs present: $node_dir/node_modules"
        return
    fi
    rm -rf "$node_dir"
    mkdir -p "$node_dir"
    local t0=$SECONDS
    printf '{ "name": "sori-stt-sdks", "private": true, "description": "written by scripts/stt-sdks.sh" }\n' \
        >"$node_dir/package.json"
    say "installing ${node_specs[*]} from npm (node $(node --version))"
    (cd "$node_dir" && npm install --no-audit --no-fund --save-exact --loglevel=error \
        "${node_specs[@]}") >&2 || die "npm could not install ${node_specs[*]}"
    node_stamp_text >"$node_stamp"
    node_ok || die "the npm SDKs were installed but do not load; try: NODE_PATH=$node_dir/node_modules node -e 'require(\"@deepgram/sdk\")'"
    say "npm SDKs ready: $node_dir/node_modules ($((SECONDS - t0)) s, $(du -sh "$node_dir" | cut -f1) on disk)"
}

case "${1:-}" in
fetch)
    [ $# -eq 1 ] || usage
    fetch_python
    fetch_node
    ;;
python)
    shift
    python_present || die "the python STT SDKs are not installed; run ./scripts/stt-sdks.sh fetch"
    exec "$venv/bin/python" "$@"
    ;;
node)
    shift
    node_usable || die "node >= $node_min_major and npm are required for the npm SDKs; install them with: apt-get install -y nodejs npm"
    node_present || die "the npm STT SDKs are not installed; run ./scripts/stt-sdks.sh fetch"
    export STT_SDKS_NODE_MODULES="$node_dir/node_modules"
    NODE_PATH="$node_dir/node_modules${NODE_PATH:+:$NODE_PATH}" exec node "$@"
    ;;
status)
    [ $# -eq 1 ] || usage
    rc=0
    if python_ok; then echo "python: $(tr '\n' ' ' <"$stamp")($venv)"; else echo "python: not installed"; rc=1; fi
    if node_ok; then echo "node: $(tr '\n' ' ' <"$node_stamp")($node_dir, node $(node --version))"; else echo "node: not installed"; fi
    exit $rc
    ;;
*) usage ;;
esac
