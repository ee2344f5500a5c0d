"""End to end on this Linux machine: enable, run the login entry as the session would, see the daemon
answer, stop it, disable, and check nothing is left (files or processes)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.ports import free_port
from qwendesk.installers import autostart

from .conftest import tree
from .test_linux import read_keyfile, read_unit, split_exec, split_systemd

pytestmark = pytest.mark.e2e
QWENDESK = str(Path(sys.executable).with_name("qwendesk"))


def ours(home: Path) -> list[psutil.Process]:
    """Every process whose environment carries our QWENDESK_HOME (tray, daemon, Xinference)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("QWENDESK_HOME") == str(home):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def kill_all(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(procs, timeout=10)


def session_env(user_home: Path, **extra: str) -> dict[str, str]:
    """A login session's environment: no QWENDESK_* (the entry must carry the home itself)."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(user_home), "LANG": "C.UTF-8", **extra}


def wait_health(url: str, proc: subprocess.Popen | None = None, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return httpx.get(f"{url}/health", timeout=2).raise_for_status().json()
        except httpx.HTTPError:
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"the entry's command exited with {proc.returncode} before answering")
            time.sleep(0.5)
    pytest.fail(f"nothing answered {url}/health within {timeout:.0f} s")


@pytest.fixture
def login(user_home: Path, qwendesk_home: Path) -> Iterator[dict]:
    """A temp HOME and QWENDESK_HOME on a free port; afterwards everything we started is killed."""
    port = free_port()
    (qwendesk_home / "config.toml").write_text(f"port = {port}\n")
    info = {"home": qwendesk_home, "user_home": user_home, "url": f"http://127.0.0.1:{port}"}
    info["before"] = tree(user_home)
    try:
        yield info
    finally:
        leftovers = ours(qwendesk_home)
        kill_all(leftovers)


def cli(login: dict, *args: str) -> subprocess.CompletedProcess:
    env = session_env(login["user_home"], QWENDESK_HOME=str(login["home"]))
    return subprocess.run([QWENDESK, *args], env=env, capture_output=True, text=True, timeout=120)


def is_tray(proc: psutil.Process) -> bool:
    try:
        return "tray" in proc.cmdline()
    except psutil.Error:
        return False


def describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {proc.status()} {' '.join(proc.cmdline())}"
    except psutil.Error:
        return str(proc.pid)


def stop_and_disable(login: dict) -> None:
    """Shut the daemon down over its API, quit the tray (SIGTERM), disable; nothing may remain."""
    httpx.post(f"{login['url']}/api/shutdown", timeout=60)
    deadline = time.monotonic() + 60
    while [p for p in ours(login["home"]) if not is_tray(p)] and time.monotonic() < deadline:
        time.sleep(0.5)
    daemons = [p for p in ours(login["home"]) if not is_tray(p)]
    described = [describe(p) for p in daemons]
    for tray in ours(login["home"]):
        tray.terminate()
    psutil.wait_procs(ours(login["home"]), timeout=20)
    leftovers = ours(login["home"])
    kill_all(daemons + leftovers)
    result = cli(login, "autostart", "disable", "--now")
    assert result.returncode == 0, result.stderr
    assert tree(login["user_home"]) == login["before"], "disable left files behind"
    assert not daemons, f"still running 60 s after /api/shutdown: {described}"
    assert not leftovers, "processes survived the tray's SIGTERM"


def test_daemon_unit_command_serves_and_stops_cleanly(login: dict) -> None:
    """The systemd unit's ExecStart + Environment, exec'd as systemd would, brings up the daemon."""
    # systemd --user is not reachable in this container, so enable does not write the unit; the text is
    # the one enable writes where it is (same code path, real command resolution, real settings).
    settings = load_settings(env={"QWENDESK_HOME": str(login["home"])})
    linux = autostart.for_platform(settings, platform="linux", home=login["user_home"])
    service = read_unit(linux.unit_text())["Service"]
    argv = split_systemd(service["ExecStart"])
    assert argv[-1] == "serve" and Path(argv[0]).is_file()
    name, _, value = split_systemd(service["Environment"], exec_line=False)[0].partition("=")
    env = session_env(login["user_home"], **{name: value})
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_health(login["url"], proc)
        httpx.post(f"{login['url']}/api/shutdown", timeout=60)
        # Exit 0 after a shutdown request, so Restart=on-failure leaves it stopped.
        assert proc.wait(timeout=60) == 0, proc.stderr.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not ours(login["home"])
    assert tree(login["user_home"]) == login["before"]


@pytest.mark.display
@pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("gio")), reason="needs Xvfb and GLib's gio")
def test_desktop_entry_starts_tray_and_daemon(login: dict) -> None:
    """`qwendesk autostart enable`, then GLib launches the .desktop entry in an X session (Xvfb)."""
    result = cli(login, "autostart", "enable")
    assert result.returncode == 0, result.stderr
    entry_path = login["user_home"] / ".config/autostart/qwendesk.desktop"
    entry = read_keyfile(entry_path.read_text())
    assert split_exec(entry["Exec"]) == ["env", f"QWENDESK_HOME={login['home']}", QWENDESK, "tray"]
    status = cli(login, "autostart", "status")
    assert status.returncode == 0 and str(entry_path) in status.stdout

    display = f":{free_port() % 1000 + 100}"
    xvfb = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        env=session_env(login["user_home"]),  # not our QWENDESK_HOME: ours() must not count it
        start_new_session=True,
    )
    try:
        time.sleep(1)
        env = session_env(login["user_home"], DISPLAY=display)
        subprocess.run(["gio", "launch", str(entry_path)], env=env, check=True, timeout=30)
        wait_health(login["url"])
        stop_and_disable(login)
    finally:
        kill_all(ours(login["home"]))
        xvfb.kill()
        xvfb.wait()
