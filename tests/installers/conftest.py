"""Fixtures for the auto-start tests: a temp HOME, awkward paths, fake service managers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from qwendesk.daemon.config import load_settings

# Every character that needs care in some format: space, quotes, $, %, backslash, ;, non-ASCII.
AWKWARD = "we ird 'q' \"dq\" $HOME %u \\back;é"


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp HOME with no XDG overrides, so nothing touches the real one."""
    home = tmp_path / "user home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def awkward_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A QWENDESK_HOME whose path has every awkward character."""
    home = tmp_path / AWKWARD / "qwendesk home"
    home.mkdir(parents=True)
    monkeypatch.setenv("QWENDESK_HOME", str(home))
    return home


@pytest.fixture
def settings(awkward_home: Path):
    return load_settings()


@pytest.fixture
def dump_program(tmp_path: Path) -> Path:
    """An executable at an awkward path that records its argv and QWENDESK_HOME as JSON in $DUMP_TO."""
    folder = tmp_path / f"bin {AWKWARD}"
    folder.mkdir()
    program = folder / "qwen desk"
    program.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "with open(os.environ['DUMP_TO'], 'w') as fh:\n"
        "    json.dump({'argv': sys.argv, 'home': os.environ.get('QWENDESK_HOME')}, fh)\n"
    )
    program.chmod(0o755)
    return program


def done(argv: Sequence[str], rc: int = 0, out: str = "", err: str = "") -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(list(argv), rc, out, err)


class FakeSystemctl:
    """`systemctl --user` with state: records calls, tracks enabled/active like systemd would."""

    def __init__(self, available: bool = True) -> None:
        self.available = available
        self.calls: list[list[str]] = []
        self.enabled = False
        self.active = False

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess:
        argv = list(argv)
        self.calls.append(argv)
        assert argv[:2] == ["systemctl", "--user"], argv
        if not self.available:
            return done(argv, 1, err="Failed to connect to bus: No medium found")
        verb, rest = argv[2], argv[3:]
        if verb in ("enable", "disable"):
            self.enabled = verb == "enable"
            if "--now" in rest:
                self.active = self.enabled
        elif verb == "is-enabled":
            return done(argv, 0 if self.enabled else 1, "enabled" if self.enabled else "disabled")
        elif verb == "is-active":
            return done(argv, 0 if self.active else 3, "active" if self.active else "inactive")
        return done(argv)

    def verbs(self) -> list[str]:
        return [
            " ".join(c[2:]) for c in self.calls if c[2] not in ("show-environment", "is-enabled", "is-active")
        ]


class FakeLaunchctl:
    """`launchctl` with a loaded flag, as bootstrap/bootout/print behave."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.loaded = False

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess:
        argv = list(argv)
        self.calls.append(argv)
        verb = argv[1]
        if verb == "print":
            return done(argv, 0 if self.loaded else 113, err="" if self.loaded else "Could not find service")
        if verb == "bootstrap":
            if self.loaded:
                return done(argv, 37, err="Bootstrap failed: 37: Operation already in progress")
            assert Path(argv[3]).is_file(), "bootstrap of a plist that does not exist"
            self.loaded = True
        elif verb == "bootout":
            if not self.loaded:
                return done(argv, 113, err="Boot-out failed: 113: Could not find specified service")
            self.loaded = False
        return done(argv)

    def verbs(self) -> list[str]:
        return [c[1] for c in self.calls if c[1] != "print"]


class Spawns(list):
    """Records what would have been started detached."""

    def __call__(self, argv: Sequence[str], env: dict) -> None:
        self.append((list(argv), dict(env)))


def tree(root: Path) -> dict[str, bytes | str]:
    """Every file and symlink under root (dirs excluded) with its content, for before/after checks."""
    out: dict[str, bytes | str] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            out[str(path)] = f"-> {os.readlink(path)}" if path.is_symlink() else path.read_bytes()
    return out
