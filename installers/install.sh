#!/bin/sh
# Install qwendesk for this user (macOS, Linux), enable start at login and start the tray.
#
#   curl -fsSL https://raw.githubusercontent.com/qwendesk/qwendesk/main/installers/install.sh | sh
#   sh installers/install.sh --no-start          # from a checkout: set QWENDESK_SOURCE=.
#
# Flags:  --no-autostart  do not start qwendesk at login
#         --no-start      do not start it now (headless machines, CI)
# Environment (all optional):
#   QWENDESK_SOURCE     what pip installs: default "qwendesk" from PyPI; a folder installs that checkout
#   QWENDESK_INSTALLER  pipx | venv   (default: pipx when it is on PATH and QWENDESK_VENV is not set)
#   QWENDESK_VENV       the virtual environment (default: ~/.local/share/qwendesk-venv,
#                       macOS: ~/Library/Application Support/qwendesk-venv); an existing one is reused
#   QWENDESK_PYTHON     Python >= 3.10 to create it with (default: python3)
#   QWENDESK_BIN_DIR    where the `qwendesk` command is linked (default: ~/.local/bin)
#   QWENDESK_PIP_ARGS   extra pip arguments, e.g. "--constraint constraints.txt" (PIP_* variables work too)
#   QWENDESK_VENV_ARGS  extra `python -m venv` arguments, e.g. "--system-site-packages"
set -eu

autostart=1
start=1
for arg in "$@"; do
    case "$arg" in
        --no-autostart) autostart=0 ;;
        --no-start) start=0 ;;
        -h | --help) sed -n '2,19p' "$0" 2>/dev/null | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'qwendesk: %s\n' "$*"; }
die() { printf 'qwendesk: error: %s\n' "$*" >&2; exit 1; }

default_venv() {
    if [ "$(uname -s)" = Darwin ]; then
        printf '%s\n' "$HOME/Library/Application Support/qwendesk-venv"
    else
        printf '%s\n' "${XDG_DATA_HOME:-$HOME/.local/share}/qwendesk-venv"
    fi
}

source_spec() {
    # A folder is a checkout: install it with the tray extra; anything else goes to pip as given.
    src="${QWENDESK_SOURCE:-qwendesk}"
    if [ -d "$src" ]; then
        src="$(cd "$src" && pwd)"
        printf '%s[tray]\n' "$src"
    elif [ "$src" = qwendesk ]; then
        printf 'qwendesk[tray]\n'
    else
        printf '%s\n' "$src"
    fi
}

installer="${QWENDESK_INSTALLER:-}"
if [ -z "$installer" ]; then
    if [ -z "${QWENDESK_VENV:-}" ] && command -v pipx >/dev/null 2>&1; then installer=pipx; else installer=venv; fi
fi
spec="$(source_spec)"
bin_dir="${QWENDESK_BIN_DIR:-$HOME/.local/bin}"
pip_args="${QWENDESK_PIP_ARGS:-}"

if [ "$installer" = pipx ]; then
    say "installing $spec with pipx"
    # shellcheck disable=SC2086  # pip_args is a list of words on purpose
    pipx install --force ${pip_args:+--pip-args "$pip_args"} "$spec"
    qwendesk="$(pipx environment --value PIPX_BIN_DIR)/qwendesk"
else
    venv="${QWENDESK_VENV:-$(default_venv)}"
    python="${QWENDESK_PYTHON:-python3}"
    if [ ! -x "$venv/bin/python" ]; then
        command -v "$python" >/dev/null 2>&1 || die "$python not found; install Python 3.10 or newer first."
        "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
            || die "$python is older than 3.10; set QWENDESK_PYTHON to a newer one."
        say "creating a virtual environment in $venv"
        # shellcheck disable=SC2086
        "$python" -m venv ${QWENDESK_VENV_ARGS:-} "$venv" || die "could not create $venv (Debian/Ubuntu: apt install python3-venv)."
    fi
    say "installing $spec (this downloads Xinference and llama.cpp; it takes a few minutes)"
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install --quiet --upgrade $pip_args "$spec" || die "pip could not install $spec."
    qwendesk="$venv/bin/qwendesk"
    mkdir -p "$bin_dir"
    ln -sfn "$qwendesk" "$bin_dir/qwendesk"
    say "linked $bin_dir/qwendesk -> $qwendesk"
fi

"$qwendesk" --version >/dev/null || die "the installed qwendesk command does not run."
case ":$PATH:" in
    *":$bin_dir:"*) ;;
    *) say "add $bin_dir to your PATH to use the qwendesk command, e.g. in ~/.profile: export PATH=\"$bin_dir:\$PATH\"" ;;
esac

now=""
[ "$start" = 1 ] && now="--now"
if [ "$autostart" = 1 ]; then
    # shellcheck disable=SC2086
    "$qwendesk" autostart enable $now
elif [ "$start" = 1 ]; then
    if [ "$(uname -s)" = Darwin ] || [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
        nohup "$qwendesk" tray >/dev/null 2>&1 &
        say "started the tray"
    else
        say "no display: start the daemon with \`qwendesk serve\`"
    fi
fi
say "installed. Put .gguf models in $("$qwendesk" path models) or run \`qwendesk pull\`; \`qwendesk status\` shows the daemon."
