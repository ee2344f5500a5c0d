"""Windows: the HKCU Run value, with winreg faked (there is no Windows here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwendesk.installers import autostart
from qwendesk.installers._windows import APPROVED_KEY, RUN_KEY, run_command_line

PYTHONW = r"C:\Users\Jo Doe\AppData\Local\qwendesk\venv\Scripts\pythonw.exe"


class FakeWinreg:
    """Enough of winreg for HKCU values: keys are dicts of name -> (value, type)."""

    HKEY_CURRENT_USER = "HKCU"
    KEY_SET_VALUE = 2
    REG_SZ = 1

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, tuple[object, int]]] = {}

    class _Handle:
        def __init__(self, values: dict) -> None:
            self.values = values

        def __enter__(self):
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    def OpenKey(self, root, key, reserved=0, access=0):  # noqa: N802 (winreg's names)
        assert root == "HKCU"
        if key not in self.keys:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return self._Handle(self.keys[key])

    def CreateKeyEx(self, root, key, reserved=0, access=0):  # noqa: N802
        assert root == "HKCU"
        return self._Handle(self.keys.setdefault(key, {}))

    def QueryValueEx(self, handle, name):  # noqa: N802
        if name not in handle.values:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return handle.values[name]

    def SetValueEx(self, handle, name, reserved, kind, value):  # noqa: N802
        handle.values[name] = (value, kind)

    def DeleteValue(self, handle, name):  # noqa: N802
        del handle.values[name]


def split_windows(line: str) -> list[str]:
    """CommandLineToArgvW's rules: quotes group, 2n backslashes + quote -> n and a quote toggle."""
    args, word, quoted, started, i = [], "", False, False, 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            n = len(line[i:]) - len(line[i:].lstrip("\\"))
            if i + n < len(line) and line[i + n] == '"':
                word += "\\" * (n // 2)
                if n % 2:
                    word += '"'
                    i += n + 1
                    started = True
                    continue
                i += n
                continue
            word, i, started = word + "\\" * n, i + n, True
            continue
        if ch == '"':
            quoted, started = not quoted, True
        elif ch in " \t" and not quoted:
            if started:
                args.append(word)
            word, started = "", False
        else:
            word, started = word + ch, True
        i += 1
    if started:
        args.append(word)
    return args


def make(settings, registry: FakeWinreg, spawns=None):
    return autostart.for_platform(
        settings,
        platform="win32",
        registry=registry,
        home=Path("C:/Users/Jo Doe"),
        spawner=spawns if spawns is not None else (lambda argv, env: None),
        command=lambda role: autostart.launch_command(
            role,
            executable=PYTHONW.replace("pythonw", "python"),
            platform="win32",
            frozen=False,
            exists=lambda p: True,
        ),
    )


def test_launch_command_uses_pythonw_without_console() -> None:
    argv = autostart.launch_command(
        "tray",
        executable=PYTHONW.replace("pythonw", "python"),
        platform="win32",
        frozen=False,
        exists=lambda p: True,
    )
    assert argv == [PYTHONW, "-m", "qwendesk.daemon", "tray"]
    fallback = autostart.launch_command(
        "tray", executable=r"C:\py\python.exe", platform="win32", frozen=False, exists=lambda p: False
    )
    assert fallback == [r"C:\py\python.exe", "-m", "qwendesk.daemon", "tray"]


def test_run_value_quotes_paths_and_carries_the_home(settings, awkward_home: Path) -> None:
    registry = FakeWinreg()
    status = make(settings, registry).enable()
    value, kind = registry.keys[RUN_KEY]["qwendesk"]
    assert kind == FakeWinreg.REG_SZ
    assert split_windows(value) == [PYTHONW, "-m", "qwendesk.daemon", "--home", str(awkward_home), "tray"]
    assert status.installed and status.loaded is None and status.paths == (f"HKCU\\{RUN_KEY}\\qwendesk",)


@pytest.mark.parametrize("arg", ["C:\\a b\\", 'say "hi"', "tab\there", "trailing\\\\", ""])
def test_windows_quoting_round_trips(arg: str) -> None:
    assert split_windows(run_command_line(["C:\\p y\\pythonw.exe", arg, "tray"], {})) == [
        "C:\\p y\\pythonw.exe",
        arg,
        "tray",
    ]


def test_enable_is_idempotent_and_disable_removes_only_our_value(settings) -> None:
    registry = FakeWinreg()
    registry.keys[RUN_KEY] = {"OneDrive": ("C:\\onedrive.exe", 1)}
    make(settings, registry).enable()
    first = dict(registry.keys[RUN_KEY])
    make(settings, registry).enable()
    assert registry.keys[RUN_KEY] == first
    status = make(settings, registry).disable()
    assert registry.keys[RUN_KEY] == {"OneDrive": ("C:\\onedrive.exe", 1)}
    assert not status.installed and status.paths == ()
    assert not make(settings, registry).disable().installed  # disabling twice is fine


def test_status_reports_task_manager_turned_it_off_and_stale_values(settings) -> None:
    registry = FakeWinreg()
    make(settings, registry).enable()
    registry.keys[APPROVED_KEY] = {"qwendesk": (b"\x03\x00\x00\x00" + bytes(8), 3)}
    status = make(settings, registry).status()
    assert status.installed and status.loaded is False and "Task Manager" in status.detail
    registry.keys[RUN_KEY]["qwendesk"] = ("C:\\old\\pythonw.exe -m qwendesk.daemon tray", 1)
    assert make(settings, registry).status().stale


def test_enable_now_starts_the_tray(settings) -> None:
    spawns: list = []
    make(settings, FakeWinreg(), spawns=lambda argv, env: spawns.append(argv)).enable(now=True)
    assert spawns == [[PYTHONW, "-m", "qwendesk.daemon", "tray"]]
