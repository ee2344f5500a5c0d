"""Detached children: their own session on POSIX, no console window on Windows."""

from __future__ import annotations

import os
import sys
import time

import pytest

from qwendesk.installers.detach import detach_options, spawn_detached


def test_detach_options_per_platform() -> None:
    assert detach_options("linux") == {"start_new_session": True}
    assert detach_options("darwin") == {"start_new_session": True}
    flags = detach_options("win32")["creationflags"]
    assert flags & 0x8 and flags & 0x08000000  # DETACHED_PROCESS | CREATE_NO_WINDOW


@pytest.mark.skipif(sys.platform == "win32", reason="sessions are POSIX")
def test_spawned_process_runs_in_its_own_session(tmp_path) -> None:
    out = tmp_path / "sid"
    code = f"import os; open({str(out)!r}, 'w').write(str(os.getsid(0)))"
    spawn_detached([sys.executable, "-c", code], {})
    deadline = time.monotonic() + 20
    while not (out.exists() and out.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert int(out.read_text()) != os.getsid(0)
