"""Launching the daemon detached, waiting for /health, opening URLs and folders (OS calls injected)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.errors import DaemonNotRunning, QwendeskError
from qwendesk.tray import launcher


class Recorder:
    def __init__(self, result: Any = None) -> None:
        self.calls: list[tuple[tuple, dict]] = []
        self.result = result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.result


def test_daemon_command_uses_this_interpreter() -> None:
    assert launcher.daemon_command() == [sys.executable, "-m", "qwendesk.daemon", "serve"]


def test_daemon_env_hands_down_home_port_and_token(tmp_path: Path) -> None:
    settings = load_settings({"home": str(tmp_path), "port": 12345, "token": "s3cret"}, env={})
    env = launcher.daemon_env(settings, base={"PATH": "/bin", "QWENDESK_LOG_LEVEL": "debug"})
    assert env["PATH"] == "/bin" and env["QWENDESK_LOG_LEVEL"] == "debug"
    assert env["QWENDESK_HOME"] == str(tmp_path.resolve())
    assert env["QWENDESK_PORT"] == "12345" and env["QWENDESK_HOST"] == "127.0.0.1"
    assert env["QWENDESK_TOKEN"] == "s3cret"
    assert "QWENDESK_MODELS_DIRS" not in env


def test_launch_daemon_logs_to_the_log_folder(tmp_path: Path) -> None:
    settings = load_settings({"home": str(tmp_path)}, env={})
    popen = Recorder(result="proc")
    assert launcher.launch_daemon(settings, popen=popen) == "proc"
    (argv,), kwargs = popen.calls[0]
    assert argv == launcher.daemon_command()
    assert kwargs["stdout"].name == str(settings.log_dir / launcher.DAEMON_LOG)
    assert kwargs["stderr"] == subprocess.STDOUT and kwargs["stdin"] == subprocess.DEVNULL
    assert kwargs["env"]["QWENDESK_HOME"] == str(settings.home)
    assert "started by qwendesk tray" in (settings.log_dir / launcher.DAEMON_LOG).read_text()


def test_launch_daemon_really_detaches(tmp_path: Path) -> None:
    """A real child: its own session (no SIGHUP from our terminal), output in the console log."""
    settings = load_settings({"home": str(tmp_path)}, env={})

    def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", "import os; print('sid', os.getsid(0), os.getpid())"], **kwargs
        )

    proc = launcher.launch_daemon(settings, popen=popen)
    assert proc.wait(timeout=30) == 0
    line = next(
        x for x in (settings.log_dir / launcher.DAEMON_LOG).read_text().splitlines() if x.startswith("sid")
    )
    _, sid, pid = line.split()
    assert sid == pid  # session leader: start_new_session took effect


class FakeClient:
    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers

    def is_running(self) -> bool:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class FakeProcess:
    def __init__(self, code: int | None) -> None:
        self.code = code

    def poll(self) -> int | None:
        return self.code


def test_wait_until_healthy_returns_when_health_answers(tmp_path: Path) -> None:
    launcher.wait_until_healthy(
        FakeClient([False, False, True]), FakeProcess(None), log_path=tmp_path, interval=0
    )


def test_wait_until_healthy_reports_an_early_exit(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match=r"exited at start \(code 3\).*daemon.log"):
        launcher.wait_until_healthy(
            FakeClient([False]), FakeProcess(3), log_path=tmp_path / "daemon.log", interval=0
        )


def test_wait_until_healthy_times_out(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match="did not answer within"):
        launcher.wait_until_healthy(FakeClient([False]), None, log_path=tmp_path, timeout=0.05, interval=0.01)


def test_chat_url_and_open_url() -> None:
    settings = load_settings({"port": 11999}, env={})
    opened = Recorder(result=True)
    launcher.open_url(launcher.chat_url(settings), opened)
    assert opened.calls == [(("http://127.0.0.1:11999/",), {})]
    with pytest.raises(QwendeskError, match="No web browser"):
        launcher.open_url("http://x/", Recorder(result=False))


@pytest.mark.parametrize(("platform", "tool"), [("darwin", "open"), ("linux", "xdg-open")])
def test_open_folder_uses_the_platform_file_manager(tmp_path: Path, platform: str, tool: str) -> None:
    popen = Recorder()
    folder = tmp_path / "models"
    launcher.open_folder(folder, platform=platform, popen=popen)
    assert folder.is_dir()  # created so the file manager has something to show
    assert popen.calls[0][0][0] == [tool, str(folder)]


def test_open_folder_on_windows_uses_startfile(tmp_path: Path) -> None:
    started = Recorder()
    launcher.open_folder(tmp_path, platform="win32", startfile=started)
    assert started.calls == [((str(tmp_path),), {})]


def test_open_folder_without_a_file_manager_says_so(tmp_path: Path) -> None:
    def missing(*args: Any, **kwargs: Any) -> None:
        raise FileNotFoundError(2, "No such file or directory", "xdg-open")

    with pytest.raises(QwendeskError, match="Could not open the folder"):
        launcher.open_folder(tmp_path, platform="linux", popen=missing)
