#!/usr/bin/env bash
# Run qwendesk from this checkout: set up .venv once, then start the app (tray + daemon; the daemon
# alone, saying so, where there is no display). Usage: bash installers/run.sh [qwendesk flags]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${QWENDESK_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
# find_spec only locates the packages: importing pystray raises where there is no display.
if ! python -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ('qwendesk.daemon', 'xinference', 'pystray')))" 2>/dev/null; then
  python -m pip install -q --upgrade pip
  # The constraints file keeps torch (needed by Xinference) on the CPU build in development set-ups.
  python -m pip install -q -c tests/constraints.txt -e ".[tray]"
fi
exec qwendesk "$@" run
