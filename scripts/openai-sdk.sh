#!/usr/bin/env bash
# The official OpenAI Python SDK, used by tests/it/openai_api.rs as the client of sori's
# OpenAI-compatible `POST /v1/audio/transcriptions`.
#
# Usage: scripts/openai-sdk.sh fetch | python [ARGS...]
#   fetch           install the `openai` package from PyPI into a venv under .tools/openai-sdk/
#                   (skips when already installed at this version and importable)
#   python [ARGS]   run the venv's python (fails, naming `fetch`, when it is not installed)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

pkg_spec="openai==3.57.0"
tool_dir="$root/.tools/openai-sdk"
venv="$tool_dir/venv"
stamp="$tool_dir/VERSION"

script_name=openai-sdk
# shellcheck source=scripts/common.sh
. scripts/common.sh

# installed_ok: the stamp matches and the venv's python imports openai at that version.
installed_ok() {
    [ -x "$venv/bin/python" ] &&
        [ "$(cat "$stamp" 2>/dev/null)" = "$pkg_spec" ] &&
        "$venv/bin/python" - "$pkg_spec" >/dev/null 2>&1 <<'PY'
import sys
import openai
assert "openai==" + openai.__version__ == sys.argv[1]
openai.OpenAI(base_url="http://127.0.0.1:1/v1", api_key="unused").audio.transcriptions
PY
}

fetch() {
    if installed_ok; then
        say "openai SDK present: $venv ($pkg_spec)"
        return
    fi
    need_venv
    # A venv is not relocatable, so it is built in place; the stamp is written last, so a
    # broken or half-done one is rebuilt on the next fetch.
    rm -rf "$tool_dir"
    mkdir -p "$tool_dir"
    say "creating a venv in $venv ($(python3 --version 2>&1))"
    python3 -m venv "$venv" >&2 || die "python3 -m venv failed (apt-get install -y python3-venv?)"
    say "installing $pkg_spec from PyPI"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --only-binary=:all: \
        "$pkg_spec" >&2 || die "pip could not install $pkg_spec"
    echo "$pkg_spec" >"$stamp"
    installed_ok || die "openai was installed but does not import; try: $venv/bin/python -c 'import openai'"
    say "openai SDK ready: $venv ($pkg_spec, $(du -sh "$tool_dir" | cut -f1) on disk)"
}

case "${1:-}" in
fetch)
    [ $# -eq 1 ] || usage
    fetch
    ;;
python)
    shift
    installed_ok || die "the openai SDK is not installed; run ./scripts/openai-sdk.sh fetch"
    exec "$venv/bin/python" "$@"
    ;;
*) usage ;;
esac
