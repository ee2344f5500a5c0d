"""`qwendesk serve` keeps its state to this user: folders 0700, files 0600, old state repaired."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess, free_port


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(not hasattr(__import__("os"), "getuid"), reason="POSIX file modes")
def test_state_is_private_to_the_user(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True, mode=0o755)
    old = home / "logs" / "xinference.log.1"  # left world-readable by an older version
    old.write_text("api_keys=['secret']")
    old.chmod(0o644)
    proc = DaemonProcess(home, free_port()).start()
    try:
        for folder in (home, home / "logs", home / "run", home / "xinference"):
            assert mode(folder) == 0o700, folder
        assert mode(old) == 0o600
        for created in (home / "logs" / "daemon.log", home / "run" / "daemon.json"):
            assert mode(created) == 0o600, created
    finally:
        proc.stop()
