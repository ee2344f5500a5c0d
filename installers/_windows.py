"""Windows: a value under HKCU\\...\\CurrentVersion\\Run that starts the tray with pythonw (no console)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

from .autostart import APP_ID, AutostartError, AutostartStatus, Context, entry_env

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
# Where Task Manager's "Startup apps" records that the user turned an entry off.
APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"


def run_command_line(argv: Sequence[str], env: dict[str, str]) -> str:
    """The Run value: a command line quoted by the MS C runtime rules; a moved home goes in as --home."""
    argv = list(argv)
    if env.get("QWENDESK_HOME"):
        # A Run value cannot set environment variables; `--home` is the same setting as a global flag.
        argv[-1:-1] = ["--home", env["QWENDESK_HOME"]]
    return subprocess.list2cmdline(argv)


class RunKey:
    """HKCU Run value "qwendesk"; winreg comes from the context so tests can fake it."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        if ctx.registry is None:
            import winreg

            ctx.registry = winreg
        self.reg = ctx.registry

    def command_line(self) -> str:
        return run_command_line(self.ctx.command("tray"), entry_env(self.ctx.settings))

    def _read(self, key: str, name: str) -> Any:
        try:
            with self.reg.OpenKey(self.reg.HKEY_CURRENT_USER, key) as handle:
                return self.reg.QueryValueEx(handle, name)[0]
        except FileNotFoundError:
            return None

    def enable(self, *, now: bool = False) -> AutostartStatus:
        line = self.command_line()
        if self._read(RUN_KEY, APP_ID) != line:
            try:
                with self.reg.CreateKeyEx(
                    self.reg.HKEY_CURRENT_USER, RUN_KEY, 0, self.reg.KEY_SET_VALUE
                ) as key:
                    self.reg.SetValueEx(key, APP_ID, 0, self.reg.REG_SZ, line)
            except OSError as exc:
                raise AutostartError(f"Could not write HKCU\\{RUN_KEY}\\{APP_ID}: {exc}.") from exc
        if now:
            self.ctx.spawner(self.ctx.command("tray"), entry_env(self.ctx.settings))
        return self.status(["Started the tray."] if now else [])

    def disable(self, *, now: bool = False) -> AutostartStatus:
        if self._read(RUN_KEY, APP_ID) is not None:
            try:
                with self.reg.OpenKey(self.reg.HKEY_CURRENT_USER, RUN_KEY, 0, self.reg.KEY_SET_VALUE) as key:
                    self.reg.DeleteValue(key, APP_ID)
            except OSError as exc:
                raise AutostartError(f"Could not remove HKCU\\{RUN_KEY}\\{APP_ID}: {exc}.") from exc
        notes = ["A tray that is running keeps running until you quit it."] if now else []
        return self.status(notes)

    def status(self, notes: Sequence[str] = ()) -> AutostartStatus:
        value = self._read(RUN_KEY, APP_ID)
        installed = value is not None
        approved = self._read(APPROVED_KEY, APP_ID) if installed else None
        # Task Manager stores 0x02... (on) or 0x03... (off); Windows has no "loaded" state to ask about.
        turned_off = isinstance(approved, (bytes, bytearray)) and len(approved) > 0 and approved[0] & 1 == 1
        loaded = False if turned_off else None
        stale = installed and value != self.command_line()
        detail = [f"Run value HKCU\\{RUN_KEY}\\{APP_ID}: {value}" if installed else "No Run value."]
        if turned_off:
            detail.append("It is turned off in Task Manager > Startup apps; turn it on there.")
        if stale:
            detail.append("It runs a different command than this installation; run enable again.")
        detail += [n for n in notes if n]
        paths = (f"HKCU\\{RUN_KEY}\\{APP_ID}",) if installed else ()
        return AutostartStatus(installed, loaded, paths, " ".join(detail), False, stale)
