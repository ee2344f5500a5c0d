"""`qwendesk tray`: registered with the CLI through the `qwendesk.commands` entry point."""

from __future__ import annotations

import argparse
import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from qwendesk.daemon.errors import QwendeskError

TRAY_LOG = "tray.log"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-start-daemon",
        dest="start_daemon",
        action="store_false",
        help="Do not start a daemon when none is running; just show that it is down.",
    )


def register(subparsers: Any) -> None:
    """Add the `tray` sub-command."""
    parser = subparsers.add_parser(
        "tray",
        help="Show the qwendesk icon in the menu bar / system tray.",
        description="Show the qwendesk icon in the menu bar (macOS) or system tray (Windows, Linux): "
        "start and stop models, open the chat. Starts the daemon in the background if it is not running.",
    )
    add_arguments(parser)
    parser.set_defaults(func=handler)


def _log_to_file(log_dir: Path, level: str = "info") -> None:
    """The tray has no console when started at login: its log goes to <log_dir>/tray.log."""
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(log_dir / TRAY_LOG, maxBytes=1_000_000, backupCount=2, encoding="utf-8")
    except OSError:
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("qwendesk.tray")
    root.addHandler(handler)
    root.setLevel(level.upper())


def handler(args: argparse.Namespace, settings: Any) -> int:
    """Run the tray until Quit; returns the exit code."""
    _log_to_file(Path(settings.log_dir), settings.log_level)
    try:
        from .app import TrayApp  # Pillow and pystray load only when the tray really runs

        return TrayApp(settings, start_daemon=getattr(args, "start_daemon", True)).run()
    except ImportError as exc:
        print(f"qwendesk tray: {exc}. Install the tray extra: pip install 'qwendesk[tray]'.", file=sys.stderr)
        return 1
    except QwendeskError as exc:
        print(f"qwendesk tray: {exc.message}", file=sys.stderr)
        return 1
