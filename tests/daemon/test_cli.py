"""The `qwendesk` command line: parsing, flags generated from the settings, and `run` without a display."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from qwendesk.daemon import cli
from tests.conftest import free_port


def test_global_flags_work_before_and_after_the_command() -> None:
    parser = cli.build_parser()
    # Values stay strings here; the settings model converts and validates them.
    assert parser.parse_args(["--port", "1234", "serve"]).port == "1234"
    assert parser.parse_args(["serve", "--port", "1234"]).port == "1234"
    assert parser.parse_args(["models", "--home", "/x"]).home == "/x"
    args = parser.parse_args(["serve", "--xinference-endpoint", "http://h:9997", "--no-auto-start"])
    assert args.xinference_endpoint == "http://h:9997" and args.auto_start is False


def test_every_setting_has_a_serve_flag_and_help_lists_the_environment(capsys) -> None:
    parser = cli.build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]  # noqa: SLF001 - argparse has no public way
    flags = {opt for action in serve._actions for opt in action.option_strings}
    from qwendesk.daemon.config import FIELDS, flag_name

    assert {flag_name(n) for n in FIELDS} <= flags
    assert "QWENDESK_PORT" in parser.format_help()


def test_path_prints_folders_under_the_home(qwendesk_home: Path, capsys) -> None:
    assert cli.main(["path", "models"]) == 0
    assert capsys.readouterr().out.strip() == str(qwendesk_home.resolve() / "models")


def test_bad_setting_is_a_clear_error(monkeypatch, capsys) -> None:
    monkeypatch.setenv("QWENDESK_PORT", "nope")
    assert cli.main(["path", "models"]) == 1
    assert "port" in capsys.readouterr().err


def test_run_without_a_display_serves_the_daemon_alone_and_says_so(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(QWENDESK_HOME=str(tmp_path), QWENDESK_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwendesk.daemon", "run"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("the daemon did not answer")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert "No display found: running the daemon alone" in err
