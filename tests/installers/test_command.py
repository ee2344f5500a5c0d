"""Command resolution and the `qwendesk autostart` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from qwendesk.installers import autostart, command


def test_frozen_app_runs_itself(tmp_path: Path) -> None:
    exe = str(tmp_path / "Qwen Desk.app/Contents/MacOS/qwendesk")
    assert autostart.launch_command("tray", executable=exe, frozen=True, platform="darwin") == [exe, "tray"]


def test_console_script_next_to_the_interpreter_is_preferred(tmp_path: Path) -> None:
    bin_dir = tmp_path / "pipx venvs" / "qwendesk" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.symlink_to(sys.executable)  # not resolved: that would leave the venv
    assert autostart.launch_command("serve", executable=str(python), frozen=False, platform="linux") == [
        str(python),
        "-m",
        "qwendesk.daemon",
        "serve",
    ]
    script = bin_dir / "qwendesk"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert autostart.launch_command("serve", executable=str(python), frozen=False, platform="linux") == [
        str(script),
        "serve",
    ]


def test_entry_env_carries_only_a_moved_home(settings, awkward_home: Path) -> None:
    assert autostart.entry_env(settings) == {"QWENDESK_HOME": str(awkward_home)}
    assert autostart.entry_env(settings.model_copy(update={"home": None})) == {}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="qwendesk")
    command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_enable_status_disable(settings, user_home: Path, capsys: pytest.CaptureFixture) -> None:
    args = parse(["autostart", "status", "--json"])
    assert args.func(args, settings) == 1
    assert json.loads(capsys.readouterr().out)["installed"] is False

    args = parse(["autostart", "enable"])
    assert args.func(args, settings) == 0
    assert "Start at login: on" in capsys.readouterr().out

    args = parse(["autostart", "status"])
    assert args.func(args, settings) == 0
    out = capsys.readouterr().out
    assert str(user_home / ".config/autostart/qwendesk.desktop") in out

    args = parse(["autostart", "disable", "--now"])
    assert args.func(args, settings) == 0
    assert "Start at login: off" in capsys.readouterr().out
    assert not any(user_home.rglob("*.desktop"))


def test_cli_requires_an_action() -> None:
    with pytest.raises(SystemExit):
        parse(["autostart"])
