"""Side effects the tray needs from the OS: start the daemon detached, open a URL, open a folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import webbrowser
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from qwendesk.daemon.client import DaemonClient
from qwendesk.daemon.errors import DaemonNotRunning, QwendeskError
from qwendesk.installers.detach import detach_options

# The daemon writes its own rotating daemon.log; its console output (also a crash before logging
# is set up) goes here, so the two never interleave and rotation never strands our file handle.
DAEMON_LOG = "daemon-console.log"
CHAT_PATH = "/"  # the daemon serves its chat page at its root
HEALTH_TIMEOUT = 60.0


def daemon_command() -> list[str]:
    """How to run `qwendesk serve` with the interpreter the tray runs on (works in venvs and bundles)."""
    return [sys.executable, "-m", "qwendesk.daemon", "serve"]


def daemon_env(settings: Any, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The tray's environment plus the settings that decide where the daemon lives and listens.

    Flags given to `qwendesk tray` exist only in this process, so the ones that must match
    (home, host, port, token, models folders) are handed down as QWENDESK_* variables.
    """
    env = dict(os.environ if base is None else base)
    if settings.home:
        env["QWENDESK_HOME"] = str(settings.home)
    env["QWENDESK_HOST"] = str(settings.host)
    env["QWENDESK_PORT"] = str(settings.port)
    if settings.token:
        env["QWENDESK_TOKEN"] = settings.token
    if settings.models_dirs:
        env["QWENDESK_MODELS_DIRS"] = os.pathsep.join(str(p) for p in settings.models_dirs)
    return env


def launch_daemon(
    settings: Any, *, popen: Callable[..., subprocess.Popen] = subprocess.Popen
) -> subprocess.Popen:
    """Start `qwendesk serve` in the background, its console output appended to <log_dir>/DAEMON_LOG."""
    log_dir = Path(settings.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / DAEMON_LOG
    with log_path.open("ab") as log:
        log.write(f"\n--- started by qwendesk tray at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        log.flush()
        return popen(
            daemon_command(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=daemon_env(settings),
            close_fds=True,
            **detach_options(),
        )


def wait_until_healthy(
    client: DaemonClient,
    process: subprocess.Popen | None,
    *,
    log_path: Path,
    timeout: float = HEALTH_TIMEOUT,
    interval: float = 0.25,
) -> None:
    """Poll /health until the daemon answers; raise DaemonNotRunning if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        if client.is_running():
            return
        code = process.poll() if process is not None else None
        # Exit code 0 or a clash: another tray may have started the same daemon first; keep polling briefly.
        if code not in (None, 0) and not client.is_running():
            raise DaemonNotRunning(
                f"The qwendesk daemon exited at start (code {code}). See {log_path} for why."
            )
        if time.monotonic() > deadline:
            raise DaemonNotRunning(
                f"The qwendesk daemon did not answer within {timeout:.0f} s. See {log_path}."
            )
        time.sleep(interval)


def chat_url(settings: Any) -> str:
    return settings.url + CHAT_PATH


def open_url(url: str, opener: Callable[[str], Any] = webbrowser.open) -> None:
    """Open a URL in the default browser."""
    if opener(url) is False:
        raise QwendeskError(f"No web browser could be started. Open {url} yourself.")


def folder_command(path: Path, platform: str = sys.platform) -> list[str] | None:
    """The file-manager command for a platform (None on Windows, which uses os.startfile)."""
    if platform == "win32":
        return None
    return ["open" if platform == "darwin" else "xdg-open", str(path)]


def open_folder(
    path: Path,
    *,
    platform: str = sys.platform,
    popen: Callable[..., Any] = subprocess.Popen,
    startfile: Callable[[str], Any] | None = None,
) -> None:
    """Show a folder in the platform's file manager, creating it first so there is something to show."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    command = folder_command(path, platform)
    try:
        if command is None:
            (startfile or os.startfile)(str(path))  # type: ignore[attr-defined]
        else:
            popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as exc:
        raise QwendeskError(
            f"Could not open the folder {path} ({exc}). Open it in your file manager."
        ) from exc
