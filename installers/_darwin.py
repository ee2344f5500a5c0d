"""macOS: a LaunchAgent in ~/Library/LaunchAgents that runs the tray at login (the tray starts the daemon)."""

from __future__ import annotations

import os
import plistlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .autostart import LABEL, AutostartStatus, Context, entry_env, remove_file, write_file


def launch_agent(argv: Sequence[str], env: Mapping[str, str], log_dir: Path) -> dict[str, Any]:
    """The LaunchAgent property list (pure: no file is touched)."""
    plist: dict[str, Any] = {
        "Label": LABEL,
        "ProgramArguments": list(argv),  # an array: no shell, so paths with spaces need no quoting
        "RunAtLoad": True,
        # Restart after a crash (non-zero exit) but not after the user chose Quit (exit 0).
        "KeepAlive": {"SuccessfulExit": False},
        "ProcessType": "Interactive",
        "LimitLoadToSessionType": "Aqua",  # only in a logged-in GUI session, where a menu bar exists
        "StandardOutPath": str(log_dir / "tray.out.log"),
        "StandardErrorPath": str(log_dir / "tray.err.log"),
    }
    if env:
        plist["EnvironmentVariables"] = dict(env)
    return plist


class LaunchAgent:
    """~/Library/LaunchAgents/<LABEL>.plist, loaded with `launchctl bootstrap gui/<uid>`."""

    def __init__(self, ctx: Context, uid: int | None = None) -> None:
        self.ctx = ctx
        self.path = ctx.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        self.domain = f"gui/{os.getuid() if uid is None else uid}"

    def plist(self) -> dict[str, Any]:
        settings = self.ctx.settings
        return launch_agent(self.ctx.command("tray"), entry_env(settings), settings.log_dir)

    def _launchctl(self, *args: str) -> tuple[int, str]:
        result = self.ctx.runner(["launchctl", *args])
        return result.returncode, (result.stderr or result.stdout or "").strip()

    def loaded(self) -> bool | None:
        """Whether launchd has the agent loaded; None when launchctl cannot be run."""
        rc, _ = self._launchctl("print", f"{self.domain}/{LABEL}")
        return None if rc == 127 else rc == 0

    def enable(self, *, now: bool = False) -> AutostartStatus:
        notes = []
        self.ctx.settings.log_dir.mkdir(parents=True, exist_ok=True)  # launchd does not create folders
        changed = write_file(self.path, plistlib.dumps(self.plist()))
        if now:
            if self.loaded() and changed:
                self._launchctl("bootout", f"{self.domain}/{LABEL}")
            if not self.loaded():
                rc, out = self._launchctl("bootstrap", self.domain, str(self.path))
                if rc != 0:
                    notes.append(f"`launchctl bootstrap` failed ({rc}): {out}")
        elif changed and self.loaded():
            notes.append("The running agent keeps its old settings until the next login.")
        return self.status(notes)

    def disable(self, *, now: bool = False) -> AutostartStatus:
        notes = []
        if now and self.loaded():
            rc, out = self._launchctl("bootout", f"{self.domain}/{LABEL}")
            if rc != 0:
                notes.append(f"`launchctl bootout` failed ({rc}): {out}")
        remove_file(self.path)
        return self.status(notes)

    def status(self, notes: Sequence[str] = ()) -> AutostartStatus:
        installed = self.path.is_file()
        loaded = self.loaded()
        stale = False
        if installed:
            try:
                stale = plistlib.loads(self.path.read_bytes()) != self.plist()
            except (plistlib.InvalidFileException, ValueError, OSError):
                stale = True
        detail = [f"LaunchAgent {self.path}" if installed else "No LaunchAgent."]
        if loaded is None:
            detail.append("launchctl is not available, so whether it is loaded is unknown.")
        else:
            detail.append("It is loaded in launchd." if loaded else "It is not loaded in launchd now.")
            if loaded and not installed:
                detail.append("It stays loaded until you log out or run `qwendesk autostart disable --now`.")
        if stale:
            detail.append("It runs a different command than this installation; run enable again.")
        detail += [n for n in notes if n]
        paths = (str(self.path),) if installed else ()
        return AutostartStatus(installed, loaded, paths, " ".join(detail), False, stale)
