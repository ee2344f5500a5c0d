"""Start qwendesk at login: one small interface, one implementation per platform.

Use it like this (the tray's "Start at Login" item and `qwendesk autostart` both do):

    from qwendesk.installers import autostart
    autostart.enable(settings)            # write the login entries (idempotent)
    autostart.enable(settings, now=True)  # ... and also start them right away
    autostart.disable(settings)           # remove exactly what enable wrote
    autostart.status(settings)            # -> AutostartStatus(installed, loaded, paths, detail, ...)

`now` is off by default so the tray can toggle its own login item without starting a second tray
(enable) or being killed by the service manager (disable). `for_platform(settings)` returns the object
behind these functions; its collaborators (command runner, process spawner, paths) are injectable.

What gets written:
  macOS   ~/Library/LaunchAgents/<LABEL>.plist running the tray (KeepAlive on crash), via launchctl.
  Linux   $XDG_CONFIG_HOME/autostart/qwendesk.desktop for the tray, and where `systemctl --user` works,
          $XDG_CONFIG_HOME/systemd/user/qwendesk.service for the daemon (Restart=on-failure).
  Windows HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run value "qwendesk" (pythonw, no console).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any, Literal, Protocol

from qwendesk.models.errors import QwendeskError

from .detach import spawn_detached

Role = Literal["tray", "serve"]
#: Runs a command and returns its result (tests pass a fake; the default never raises on a missing tool).
Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]
#: Starts a detached process: (argv, environment overrides) -> None.
Spawner = Callable[[Sequence[str], Mapping[str, str]], None]

APP_ID = "qwendesk"
LABEL = "io.qwendesk.tray"  # the macOS LaunchAgent label
MARKER = "Written by `qwendesk autostart enable`; `qwendesk autostart disable` removes it."


class AutostartError(QwendeskError):
    """A login entry could not be written, removed or (un)loaded."""

    code = "autostart_error"


@dataclass(frozen=True)
class AutostartStatus:
    """What is installed for login, and whether the service manager says it is active."""

    installed: bool  # the login entry for the tray is present
    loaded: bool | None  # the service manager has it loaded/active; None when the platform cannot say
    paths: tuple[str, ...] = ()  # every entry of ours that exists now (files, registry values)
    detail: str = ""  # one or more sentences for humans
    daemon_managed: bool = False  # a service manager (systemd) runs the daemon: the tray must not spawn one
    stale: bool = False  # an entry exists but runs a different command than enable would write now


class Autostart(Protocol):
    """The per-platform implementation."""

    def enable(self, *, now: bool = False) -> AutostartStatus: ...

    def disable(self, *, now: bool = False) -> AutostartStatus: ...

    def status(self) -> AutostartStatus: ...


# ---- how to start qwendesk --------------------------------------------------------------------


def launch_command(
    role: Role,
    *,
    executable: str | None = None,
    frozen: bool | None = None,
    platform: str | None = None,
    exists: Callable[[str], bool] = os.path.exists,
) -> list[str]:
    """argv that runs `qwendesk <role>` from this installation (frozen app, venv/pipx script, or -m)."""
    executable = executable or sys.executable
    frozen = getattr(sys, "frozen", False) if frozen is None else frozen
    platform = platform or sys.platform
    if frozen:
        return [executable, role]
    if platform.startswith("win"):
        # pythonw.exe has no console window; the console-script .exe would open one.
        pythonw = str(PureWindowsPath(executable).with_name("pythonw.exe"))
        python = pythonw if exists(pythonw) else executable
        return [python, "-m", "qwendesk.daemon", role]
    # Not resolved: a venv's python is a symlink, and resolving it would leave the venv.
    script = Path(os.path.abspath(executable)).with_name("qwendesk")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), role]
    return [executable, "-m", "qwendesk.daemon", role]


def entry_env(settings: Any) -> dict[str, str]:
    """Environment the login entries must carry: QWENDESK_HOME when the home was moved."""
    return {"QWENDESK_HOME": str(settings.home)} if settings.home else {}


# ---- process plumbing (injectable) -----------------------------------------------------------


def run_command(argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run a tool and capture its output; a missing tool or a hang becomes a failed result, not a crash."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(list(argv), 127, "", str(exc))
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(argv), 124, "", f"timed out after {timeout:.0f} s")


@dataclass
class Context:
    """Everything an implementation needs from the outside world; tests replace parts of it."""

    settings: Any
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    home: Path = field(default_factory=Path.home)
    runner: Runner = run_command
    spawner: Spawner = spawn_detached
    command: Callable[[Role], list[str]] = launch_command
    registry: Any = None  # the winreg module (Windows); tests pass a fake

    @property
    def config_home(self) -> Path:
        """$XDG_CONFIG_HOME when it is an absolute path (as the spec says), else ~/.config."""
        xdg = self.env.get("XDG_CONFIG_HOME", "")
        return Path(xdg) if os.path.isabs(xdg) else self.home / ".config"


def write_file(path: Path, data: bytes) -> bool:
    """Write a file atomically; returns False when it already held exactly these bytes."""
    try:
        if path.is_file() and path.read_bytes() == data:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as exc:
        raise AutostartError(
            f"Could not write {path}: {exc.strerror or exc}. Check that folder's permissions."
        ) from exc
    return True


def remove_file(path: Path) -> bool:
    """Delete a file or symlink if present; returns whether something was removed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise AutostartError(f"Could not remove {path}: {exc.strerror or exc}. Remove it by hand.") from exc
    return True


# ---- the public functions --------------------------------------------------------------------


def for_platform(settings: Any, *, platform: str | None = None, **context: Any) -> Autostart:
    """The implementation for this (or the given) platform; keyword args override Context fields."""
    platform = platform or sys.platform
    ctx = Context(settings, **context)
    if platform == "darwin":
        from ._darwin import LaunchAgent

        return LaunchAgent(ctx)
    if platform.startswith("win"):
        from ._windows import RunKey

        return RunKey(ctx)
    from ._linux import XdgAutostart

    return XdgAutostart(ctx)


def enable(settings: Any, *, now: bool = False) -> AutostartStatus:
    """Start qwendesk at login (idempotent); with now=True also start it right away."""
    return for_platform(settings).enable(now=now)


def disable(settings: Any, *, now: bool = False) -> AutostartStatus:
    """Remove exactly what enable wrote; with now=True also stop what the service manager runs."""
    return for_platform(settings).disable(now=now)


def status(settings: Any) -> AutostartStatus:
    """What is installed, and whether the platform says it is loaded."""
    return for_platform(settings).status()
