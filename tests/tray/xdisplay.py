"""Real X11 plumbing for the display tests: Xvfb, a tiny XEmbed tray host, the tray as a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

HOST_SCRIPT = Path(__file__).with_name("xembed_host.py")
ICON_PX = 48


def have_x_tools() -> bool:
    return all(shutil.which(tool) for tool in ("Xvfb", "xdotool", "import"))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with_kill = proc.poll() is None
            if with_kill:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@contextmanager
def xvfb(size: str = "320x96x24") -> Iterator[str]:
    """A private Xvfb; yields its DISPLAY (":N", a number Xvfb picked itself)."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        assert number, "Xvfb did not report a display number"
        yield f":{number}"
    finally:
        _stop(proc)


@contextmanager
def spawn(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A child in its own process group, killed (with its children) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        _stop(proc)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")


def x_env(display: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "DISPLAY": display, **extra}


def xdotool(display: str, *args: str) -> str:
    result = subprocess.run(
        ["xdotool", *args], env=x_env(display), capture_output=True, text=True, timeout=20
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def tray_window(display: str) -> str:
    """The visible window of the qwendesk icon (WM_CLASS instance qwendeskSystemTrayIcon), or ''."""
    found = xdotool(display, "search", "--onlyvisible", "--classname", "qwendeskSystemTrayIcon").split()
    return found[0] if found else ""


def window_name(display: str, window: str) -> str:
    return xdotool(display, "getwindowname", window)


def screenshot(display: str, target: Path, window: str = "root") -> Image.Image:
    """`import -window <id>` from ImageMagick; returns the image as RGB."""
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["import", "-window", window, str(target)], env=x_env(display), check=True, timeout=30)
    return Image.open(target).convert("RGB")


def tray_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "qwendesk.tray", *args]


def host_command() -> list[str]:
    return [sys.executable, str(HOST_SCRIPT), str(ICON_PX)]


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute per-channel difference of two same-size RGB images (0 = identical)."""
    pa, pb = a.tobytes(), b.tobytes()
    assert len(pa) == len(pb)
    return sum(abs(x - y) for x, y in zip(pa, pb, strict=True)) / len(pa)


def wait_title(display: str, window: str, expected: str, timeout: float, log: Path) -> None:
    """Wait for the icon's title (pystray sets WM_NAME); on failure show the last one and the tray log."""
    deadline = time.monotonic() + timeout
    title = ""
    while time.monotonic() < deadline:
        title = window_name(display, window)
        if title == expected:
            return
        time.sleep(0.1)
    raise AssertionError(
        f"icon title is {title!r}, expected {expected!r}; tray log:\n{log.read_text()[-3000:]}"
    )
