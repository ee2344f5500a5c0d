#!/bin/sh
# Uninstall qwendesk (macOS, Linux): stop it, remove start at login, the program and its `qwendesk` link.
# Your models, conversations and settings stay unless you pass --purge.
#
#   sh installers/uninstall.sh [--purge]
#
# Uses the same QWENDESK_VENV / QWENDESK_BIN_DIR / QWENDESK_INSTALLER as install.sh, and QWENDESK_HOME.
set -eu

purge=0
for arg in "$@"; do
    case "$arg" in
        --purge) purge=1 ;;
        -h | --help) sed -n '2,7p' "$0" 2>/dev/null | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "uninstall.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'qwendesk: %s\n' "$*"; }

default_venv() {
    if [ "$(uname -s)" = Darwin ]; then
        printf '%s\n' "$HOME/Library/Application Support/qwendesk-venv"
    else
        printf '%s\n' "${XDG_DATA_HOME:-$HOME/.local/share}/qwendesk-venv"
    fi
}

venv="${QWENDESK_VENV:-$(default_venv)}"
bin_dir="${QWENDESK_BIN_DIR:-$HOME/.local/bin}"
pipx_installed=0
if [ "${QWENDESK_INSTALLER:-}" != venv ] && command -v pipx >/dev/null 2>&1 \
    && pipx list --short 2>/dev/null | grep -q '^qwendesk '; then
    pipx_installed=1
fi

# The command of this installation (not whatever else `qwendesk` on PATH may be).
if [ -x "$venv/bin/qwendesk" ]; then
    qwendesk="$venv/bin/qwendesk"
elif [ "$pipx_installed" = 1 ]; then
    qwendesk="$(pipx environment --value PIPX_BIN_DIR)/qwendesk"
else
    qwendesk="$(command -v qwendesk || true)"
fi

folders=""
if [ -n "$qwendesk" ] && [ -x "$qwendesk" ]; then
    "$qwendesk" autostart disable --now || say "could not remove start at login; see \`qwendesk autostart status\`"
    if "$qwendesk" shutdown >/dev/null 2>&1; then say "stopped the daemon"; fi
    # Ask qwendesk itself where its folders are before the program goes away (one per line).
    folders="$("$qwendesk" path home 2>/dev/null)" || true
    config="$("$qwendesk" path config 2>/dev/null)" && folders="$(printf '%s\n%s' "$folders" "$(dirname "$config")")"
    logs="$("$qwendesk" path logs 2>/dev/null)" || true
    # Linux keeps logs and run files under ~/.local/state/qwendesk/{log,run}: that whole folder is ours.
    case "$(basename "$(dirname "$logs")")" in qwendesk) logs="$(dirname "$logs")" ;; esac
    folders="$(printf '%s\n%s\n' "$folders" "$logs" | sort -u)"
else
    say "no qwendesk program found; removing what is left"
    curl -fsS -X POST "http://127.0.0.1:${QWENDESK_PORT:-11470}/api/shutdown" >/dev/null 2>&1 || true
fi

# A tray started at login or by hand still runs from this installation: ask it to quit (SIGTERM).
if [ -d "$venv/bin" ]; then
    pids="$(ps -eo pid=,args= 2>/dev/null | grep -F -- "$venv/bin/" | grep -v grep | awk '{print $1}')" || true
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086
        kill $pids 2>/dev/null || true
        say "stopped the tray"
    fi
fi

if [ "$pipx_installed" = 1 ]; then
    pipx uninstall qwendesk
fi
if [ -L "$bin_dir/qwendesk" ]; then
    case "$(readlink "$bin_dir/qwendesk")" in
        "$venv"/*) rm -f "$bin_dir/qwendesk"; say "removed $bin_dir/qwendesk" ;;
        *) say "left $bin_dir/qwendesk: it is not this installation's" ;;
    esac
fi
if [ -d "$venv" ]; then
    rm -rf "$venv"
    say "removed $venv"
fi

if [ "$purge" = 1 ]; then
    printf '%s\n' "$folders" | while IFS= read -r dir; do
        # Never a top-level or home folder, whatever QWENDESK_HOME says.
        case "$dir" in
            "") ;;
            / | "$HOME" | "$HOME/") say "refusing to remove $dir" ;;
            *) if [ -e "$dir" ]; then rm -rf "$dir"; say "removed $dir"; fi ;;
        esac
    done
    say "models you keep in other folders (models_dirs) were not touched"
elif [ -n "$folders" ]; then
    say "kept your models, conversations and settings (run with --purge to remove them):"
    printf '%s\n' "$folders" | sed 's/^/  /'

fi
say "uninstalled"
