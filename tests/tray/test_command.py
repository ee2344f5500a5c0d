"""`qwendesk tray` as a command: registration, the CLI entry point, and a clear error without a desktop."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from qwendesk.tray.command import handler, register


def test_register_adds_the_tray_command() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tray", "--no-start-daemon"])
    assert args.func is handler and args.start_daemon is False
    assert parser.parse_args(["tray"]).start_daemon is True


def test_qwendesk_cli_lists_tray() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qwendesk.daemon", "tray", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--no-start-daemon" in result.stdout


def test_without_a_desktop_the_tray_says_what_to_do() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYSTRAY_BACKEND")}
    result = subprocess.run(
        [sys.executable, "-m", "qwendesk.tray", "--no-start-daemon"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "No desktop session" in result.stderr and "qwendesk serve" in result.stderr
    assert "Traceback" not in result.stderr
