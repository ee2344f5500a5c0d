"""`python -m qwendesk.tray`: the tray without going through the `qwendesk` CLI (used by bundles and tests)."""

from __future__ import annotations

import argparse
import sys

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.errors import QwendeskError

from .command import add_arguments, handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qwendesk.tray", description="The qwendesk tray icon.")
    parser.add_argument("--home", help="Folder that holds all qwendesk state (QWENDESK_HOME).")
    parser.add_argument("--port", type=int, help="Port of the daemon's HTTP API (QWENDESK_PORT).")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = load_settings({"home": args.home, "port": args.port})
    except QwendeskError as exc:
        print(f"qwendesk tray: {exc.message}", file=sys.stderr)
        return 2
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
