# Helpers shared by scripts/*.sh; source it after setting `script_name`.
# say MSG: a line on stderr prefixed with the script's name.
# die MSG: says "error: MSG" and exits 1.
# usage: prints the script's header comment (line 2 up to `set -euo`) and exits 2.

say() { printf '%s: %s\n' "${script_name:-sori}" "$*" >&2; }

die() {
    say "error: $*"
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# need_venv: python3 with venv + ensurepip, or a message saying how to install it.
need_venv() {
    command -v python3 >/dev/null 2>&1 ||
        die "'python3' is required but missing; install it with: apt-get install -y python3"
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 ||
        die "python3's venv module (with ensurepip) is required but missing; install it with: apt-get install -y python3-venv"
}
