#!/usr/bin/env bash
# The peers `sori bench --peers` measures sori against (docs/benchmarks.md), and its audio.
#
# Usage: scripts/peers.sh fetch | audio | python [ARGS...] | bench [SORI BENCH ARGS...]
#   fetch    install faster-whisper from PyPI into a venv under .tools/peers/, and assemble
#            data/bench/peers/: the JFK clip, five LibriVox read-speech clips with their
#            transcripts (from the pocketsphinx sdist's test data), and all six joined with
#            pauses, each a 16 kHz mono wav with a same-named .txt reference; and
#            data/bench/long/utterance-10s.wav, two clips joined without a pause
#   audio    only the audio of `fetch` (the compatibility tests stream it)
#   noise    the music `sori bench --noise` mixes under the speech: the three tracks of Debian's
#            asc-music package (game music, GPL-2+, ~6.5 min of mp3) in data/bench/noise/music/
#   python   run the venv's python
#   bench    the whole benchmark in one command: release build, `sori model fetch`, fetch,
#            then `sori bench --peers --runs 5 ARGS...`
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

fw_spec="faster-whisper==1.2.1"
ct2_spec="ctranslate2==4.8.5"
sphinx_sdist="pocketsphinx-5.1.1.tar.gz"
sphinx_sha256="675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355"
tool_dir="$root/.tools/peers"
venv="$tool_dir/venv"
stamp="$tool_dir/VERSION"
audio_dir="$root/data/bench/peers"
long_dir="$root/data/bench/long"
music_pkg="asc-music=1.3-6"
music_dir="$root/data/bench/noise/music"

say() { printf 'peers: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but missing; install it with: $2"; }

installed_ok() {
    [ -x "$venv/bin/python" ] &&
        [ "$(cat "$stamp" 2>/dev/null)" = "$fw_spec $ct2_spec" ] &&
        "$venv/bin/python" -c 'import faster_whisper, ctranslate2' >/dev/null 2>&1
}

fetch_python() {
    if installed_ok; then
        say "faster-whisper present: $venv ($fw_spec, $ct2_spec)"
        return
    fi
    need python3 "apt-get install -y python3"
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 ||
        die "python3's venv module is missing; install it with: apt-get install -y python3-venv"
    rm -rf "$tool_dir"
    mkdir -p "$tool_dir"
    say "creating a venv in $venv"
    python3 -m venv "$venv" >&2
    say "installing $fw_spec $ct2_spec from PyPI"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --only-binary=:all: \
        "$fw_spec" "$ct2_spec" >&2 || die "pip could not install $fw_spec"
    echo "$fw_spec $ct2_spec" >"$stamp"
    installed_ok || die "faster-whisper was installed but does not import"
    say "faster-whisper ready ($(du -sh "$tool_dir" | cut -f1) on disk)"
}

fetch_audio() {
    local done_mark="$audio_dir/.complete"
    if [ -f "$done_mark" ]; then
        say "benchmark audio present: $audio_dir"
        return
    fi
    need sox "apt-get install -y sox (or ./scripts/install-deps.sh)"
    [ -f data/jfk.wav ] || die "data/jfk.wav is missing; run: ./target/release/sori model fetch"
    local work="$tool_dir/sphinx"
    rm -rf "$work" "$audio_dir" "$long_dir"
    mkdir -p "$work" "$audio_dir"
    say "downloading $sphinx_sdist (its test data holds LibriVox clips with transcripts)"
    # --no-binary for this package only: `:all:` would also build its build dependencies
    # (Cython) from source just to read its metadata, ~10 min on 2 cores instead of ~15 s.
    python3 -m pip download --disable-pip-version-check --no-deps --no-binary pocketsphinx \
        -d "$work" "pocketsphinx==5.1.1" >&2 || die "pip could not download pocketsphinx==5.1.1"
    echo "$sphinx_sha256  $work/$sphinx_sdist" | sha256sum -c --quiet ||
        die "$sphinx_sdist does not have the expected sha256"
    tar -xzf "$work/$sphinx_sdist" -C "$work" --wildcards '*/test/data/librivox/*'
    cp data/jfk.wav "$audio_dir/jfk.wav"
    echo "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country." \
        >"$audio_dir/jfk.txt"
    local parts=("$audio_dir/jfk.wav") texts=("$(cat "$audio_dir/jfk.txt")") n=0
    for wav in "$work"/pocketsphinx-5.1.1/test/data/librivox/*.wav; do
        n=$((n + 1))
        local name
        name="librivox-$(basename "$wav" .wav | sed 's/.*-//')"
        sox "$wav" -r 16000 -c 1 -b 16 "$audio_dir/$name.wav"
        # The transcripts are lowercase words; strip stray spaces.
        tr -s ' ' <"${wav%.wav}.txt" | sed 's/^ //; s/ $//' >"$audio_dir/$name.txt"
        parts+=("$audio_dir/$name.wav")
        texts+=("$(cat "$audio_dir/$name.txt")")
    done
    [ "$n" -eq 5 ] || die "expected 5 LibriVox clips in $sphinx_sdist, found $n"
    # All six with 1.5 s pauses: one longer file, cut by the VAD as live speech would be.
    local padded=()
    for p in "${parts[@]}"; do
        sox "$p" "$work/$(basename "$p")" pad 0 1.5
        padded+=("$work/$(basename "$p")")
    done
    sox "${padded[@]}" "$audio_dir/joined.wav"
    printf '%s\n' "${texts[*]}" >"$audio_dir/joined.txt"
    # One utterance of about 10 s, no pause inside: the longest the latency target covers
    # (`sori bench data/bench/long/utterance-10s.wav`).
    mkdir -p "$long_dir"
    sox "$audio_dir/librivox-0870.wav" "$audio_dir/librivox-0880.wav" "$long_dir/utterance-10s.wav"
    printf '%s %s\n' "$(cat "$audio_dir/librivox-0870.txt")" "$(cat "$audio_dir/librivox-0880.txt")" \
        >"$long_dir/utterance-10s.txt"
    touch "$done_mark"
    say "benchmark audio ready: $(ls "$audio_dir"/*.wav | wc -l) files in $audio_dir"
}

fetch_noise() {
    if [ -f "$music_dir/.complete" ]; then
        say "noise audio present: $music_dir"
        return
    fi
    need apt-get "a Debian system (the music is Debian's $music_pkg package)"
    need dpkg-deb "apt-get install -y dpkg"
    local work="$tool_dir/noise"
    rm -rf "$work" "$music_dir"
    mkdir -p "$work" "$music_dir"
    say "downloading $music_pkg (apt verifies it against Debian's signed index)"
    # Downloaded, not installed: nothing on the system changes.
    (cd "$work" && apt-get download "$music_pkg" >&2 2>/dev/null) ||
        (apt-get update >&2 && cd "$work" && apt-get download "$music_pkg" >&2) ||
        die "apt-get could not download $music_pkg"
    dpkg-deb -x "$work"/asc-music_*.deb "$work/unpacked"
    cp "$work"/unpacked/usr/share/games/asc/music/*.mp3 "$music_dir"/
    cp "$work/unpacked/usr/share/doc/asc-music/copyright" "$music_dir/COPYRIGHT"
    local n
    n=$(find "$music_dir" -name '*.mp3' | wc -l)
    [ "$n" -ge 1 ] || die "no mp3 files in $music_pkg"
    touch "$music_dir/.complete"
    say "noise audio ready: $n tracks in $music_dir"
}

case "${1:-}" in
fetch)
    [ $# -eq 1 ] || usage
    fetch_python
    fetch_audio
    ;;
audio)
    [ $# -eq 1 ] || usage
    fetch_audio
    ;;
noise)
    [ $# -eq 1 ] || usage
    fetch_noise
    ;;
python)
    shift
    installed_ok || die "faster-whisper is not installed; run ./scripts/peers.sh fetch"
    exec "$venv/bin/python" "$@"
    ;;
bench)
    shift
    cargo build --release --locked
    ./target/release/sori model fetch
    fetch_python
    fetch_audio
    exec ./target/release/sori bench --peers --runs 5 "$@"
    ;;
*) usage ;;
esac
