"""Starting a process that outlives its parent and never opens a console window (login items, the tray)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any


def detach_options(platform: str = sys.platform) -> dict[str, Any]:
    """Popen options for a child that outlives us: its own session (POSIX), or detached with no window."""
    if platform == "win32":
        flags = (
            getattr(subprocess, "DETACHED_PROCESS", 0x8)
            | getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)
            | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200)
        )
        return {"creationflags": flags}
    return {"start_new_session": True}


def spawn_detached(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Start a process that outlives us, with no console and no inherited stdio."""
    subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
        close_fds=True,
        **detach_options(),
    )
