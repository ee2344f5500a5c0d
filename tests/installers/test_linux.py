"""Linux: the generated .desktop file and systemd unit, parsed the way the desktop and systemd read them."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from qwendesk.installers import autostart
from qwendesk.installers._linux import desktop_entry, systemd_unit

from .conftest import AWKWARD, FakeSystemctl, Spawns, tree

RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


# ---- independent readers, written from the specs (not from the generator) ----------------------


def read_keyfile(text: str) -> dict[str, str]:
    """The [Desktop Entry] group of a key file, with string escapes (\\s \\n \\t \\r \\\\) undone."""
    parser = configparser.RawConfigParser(delimiters=("=",), comment_prefixes=("#",), strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(text)
    unescape = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    out = {}
    for key, raw in parser["Desktop Entry"].items():
        value, i = "", 0
        while i < len(raw):
            if raw[i] == "\\":
                value += unescape[raw[i + 1]]
                i += 2
            else:
                value += raw[i]
                i += 1
        out[key] = value
    return out


def split_exec(value: str) -> list[str]:
    """Exec= argv per the Desktop Entry spec: double quotes, \\-escapes of "`$\\ inside, %% -> %."""
    args, word, quoted, started, i = [], "", False, False, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                assert value[i + 1] in '"`$\\', f"undefined escape in {value!r}"
                word, i = word + value[i + 1], i + 1
            elif ch == '"':
                quoted = False
            else:
                word += ch
        elif ch == '"':
            quoted = started = True
        elif ch == " ":
            if started:
                args.append(word)
            word, started = "", False
        else:
            assert ch not in RESERVED, f"reserved {ch!r} outside quotes in {value!r}"
            word, started = word + ch, True
        i += 1
    assert not quoted, "unterminated quote"
    if started:
        args.append(word)
    for arg in args:
        assert "%" not in arg.replace("%%", ""), f"field code in {arg!r}"
    return [a.replace("%%", "%") for a in args]


def read_unit(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, comment_prefixes=("#", ";"))
    parser.optionxform = str
    parser.read_string(text)
    return parser


def split_systemd(value: str, exec_line: bool = True) -> list[str]:
    """A unit-file command line: %% specifiers undone, quote-split, then $$ undone in Exec arguments."""
    value = value.replace("%%", "\0")
    assert "%" not in value, "unescaped specifier"
    words = shlex.split(value.replace("\0", "%"), posix=True)
    if exec_line:  # systemd substitutes $VAR in arguments, never in the program path
        for i, word in enumerate(words[1:], 1):
            assert "$" not in word.replace("$$", ""), f"unescaped $ in {word!r} would be expanded"
            words[i] = word.replace("$$", "$")
    return words


# ---- the .desktop file ------------------------------------------------------------------------


def test_desktop_entry_parses_and_exec_runs_the_tray(settings, awkward_home: Path) -> None:
    argv = [f"/opt/{AWKWARD}/bin/qwendesk", "tray"]
    entry = read_keyfile(desktop_entry(argv, autostart.entry_env(settings)))
    assert entry["Type"] == "Application"
    assert entry["TryExec"] == argv[0]
    assert split_exec(entry["Exec"]) == ["env", f"QWENDESK_HOME={awkward_home}", *argv]


def test_desktop_entry_without_moved_home_runs_the_program_directly() -> None:
    entry = read_keyfile(desktop_entry(["/usr/bin/python3", "-m", "qwendesk.daemon", "tray"], {}))
    assert split_exec(entry["Exec"]) == ["/usr/bin/python3", "-m", "qwendesk.daemon", "tray"]


@pytest.mark.skipif(not shutil.which("desktop-file-validate"), reason="desktop-file-utils not installed")
def test_desktop_entry_passes_desktop_file_validate(settings, tmp_path: Path) -> None:
    path = tmp_path / "qwendesk.desktop"
    path.write_text(desktop_entry([f"/opt/{AWKWARD}/qwendesk", "tray"], autostart.entry_env(settings)))
    result = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.skipif(not shutil.which("gio"), reason="GLib's gio not installed")
def test_gio_launches_the_entry_with_exact_argv_and_home(
    settings, awkward_home: Path, dump_program: Path, tmp_path: Path
) -> None:
    """GLib (what GNOME and most sessions use to start autostart entries) runs exactly our command."""
    path = tmp_path / "qwendesk.desktop"
    path.write_text(desktop_entry([str(dump_program), "tray"], autostart.entry_env(settings)))
    out = tmp_path / "argv.json"
    env = {**os.environ, "DUMP_TO": str(out)}
    subprocess.run(["gio", "launch", str(path)], check=True, env=env, timeout=30)
    deadline = time.monotonic() + 20
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    seen = json.loads(out.read_text())
    assert seen == {"argv": [str(dump_program), "tray"], "home": str(awkward_home)}


# ---- the systemd unit ------------------------------------------------------------------------


def test_systemd_unit_parses_with_restart_and_exact_command(settings, awkward_home: Path) -> None:
    argv = [f"/opt/{AWKWARD}/qwendesk", "serve"]
    unit = read_unit(systemd_unit(argv, autostart.entry_env(settings), "qwendesk daemon"))
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    # systemd refuses quotes and backslashes in the program path, so env runs it.
    assert split_systemd(service["ExecStart"]) == ["/usr/bin/env", *argv]
    assert split_systemd(service["Environment"], exec_line=False) == [f"QWENDESK_HOME={awkward_home}"]
    assert unit["Install"]["WantedBy"] == "default.target"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_unit_passes_systemd_analyze_verify(settings, dump_program: Path, tmp_path: Path) -> None:
    # verify also checks that ExecStart names an existing executable, so use a real awkward path.
    path = tmp_path / "qwendesk.service"
    path.write_text(systemd_unit([str(dump_program), "serve"], autostart.entry_env(settings), "qwendesk"))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "qwendesk.service" not in result.stderr, result.stderr  # no warnings about our unit
    # Run the parsed command as systemd would exec it, with the unit's environment.
    service = read_unit(path.read_text())["Service"]
    name, _, value = split_systemd(service["Environment"], exec_line=False)[0].partition("=")
    out = tmp_path / "argv.json"
    env = {"PATH": os.environ["PATH"], name: value, "DUMP_TO": str(out)}
    subprocess.run(split_systemd(service["ExecStart"]), env=env, check=True, timeout=30)
    assert json.loads(out.read_text()) == {"argv": [str(dump_program), "serve"], "home": str(settings.home)}

    broken = tmp_path / "broken.service"
    broken.write_text(systemd_unit([str(tmp_path / "missing"), "serve"], {}, "qwendesk"))
    result = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True)
    assert result.returncode != 0  # the check can fail


# ---- enable / disable / status ---------------------------------------------------------------


def make(settings, user_home: Path, systemctl: FakeSystemctl, env: dict | None = None, spawns=None):
    return autostart.for_platform(
        settings,
        platform="linux",
        home=user_home,
        env=env or {},
        runner=systemctl,
        spawner=spawns if spawns is not None else Spawns(),
        command=lambda role: [f"/opt/{AWKWARD}/qwendesk", role],
    )


def test_enable_with_systemd_writes_both_and_enables_the_unit(settings, user_home: Path) -> None:
    systemctl = FakeSystemctl()
    status = make(settings, user_home, systemctl).enable()
    desktop = user_home / ".config/autostart/qwendesk.desktop"
    unit = user_home / ".config/systemd/user/qwendesk.service"
    assert desktop.is_file() and unit.is_file()
    assert systemctl.verbs() == ["daemon-reload", "enable qwendesk.service"]
    assert status.installed and status.daemon_managed and status.loaded is False
    assert split_systemd(read_unit(unit.read_text())["Service"]["ExecStart"])[-2:] == [
        f"/opt/{AWKWARD}/qwendesk",
        "serve",
    ]
    assert split_exec(read_keyfile(desktop.read_text())["Exec"])[-1] == "tray"


def test_enable_is_idempotent(settings, user_home: Path) -> None:
    systemctl = FakeSystemctl()
    make(settings, user_home, systemctl).enable()
    before = tree(user_home)
    mtimes = {p: os.stat(p).st_mtime_ns for p in before}
    systemctl.calls.clear()
    status = make(settings, user_home, systemctl).enable()
    assert tree(user_home) == before
    assert {p: os.stat(p).st_mtime_ns for p in before} == mtimes  # nothing rewritten
    assert systemctl.verbs() == ["enable qwendesk.service"]  # no daemon-reload: the unit did not change
    assert status.installed and not status.stale


def test_enable_now_starts_unit_and_tray_only_with_a_display(settings, user_home: Path) -> None:
    systemctl, spawns = FakeSystemctl(), Spawns()
    status = make(settings, user_home, systemctl, env={"DISPLAY": ":5"}, spawns=spawns).enable(now=True)
    assert "enable --now qwendesk.service" in systemctl.verbs()
    assert status.loaded is True
    assert spawns == [([f"/opt/{AWKWARD}/qwendesk", "tray"], {"QWENDESK_HOME": str(settings.home)})]

    headless = Spawns()
    status = make(settings, user_home, FakeSystemctl(), spawns=headless).enable(now=True)
    assert headless == [] and "No graphical session" in status.detail


def test_without_systemd_only_the_desktop_entry_is_written(settings, user_home: Path) -> None:
    systemctl = FakeSystemctl(available=False)
    status = make(settings, user_home, systemctl).enable()
    assert [p.name for p in Path(user_home).rglob("*") if p.is_file()] == ["qwendesk.desktop"]
    assert status.installed and status.loaded is None and not status.daemon_managed
    assert "systemd --user is not available" in status.detail


def test_disable_removes_exactly_what_enable_wrote(settings, user_home: Path) -> None:
    mine = user_home / ".config/autostart/other.desktop"
    mine.parent.mkdir(parents=True)
    mine.write_text("[Desktop Entry]\nName=other\n")
    before = tree(user_home)
    systemctl = FakeSystemctl()
    make(settings, user_home, systemctl).enable(now=True)
    # systemd's own enable would have made this link; disable must not leave it behind either.
    wants = user_home / ".config/systemd/user/default.target.wants/qwendesk.service"
    wants.parent.mkdir(parents=True)
    wants.symlink_to(user_home / ".config/systemd/user/qwendesk.service")
    systemctl.available = False  # e.g. disabled from a shell without a user bus
    status = make(settings, user_home, systemctl).disable(now=True)
    assert tree(user_home) == before
    assert not status.installed and status.paths == ()


def test_disable_with_systemd_stops_and_disables_the_unit(settings, user_home: Path) -> None:
    systemctl = FakeSystemctl()
    make(settings, user_home, systemctl).enable(now=True)
    systemctl.calls.clear()
    make(settings, user_home, systemctl).disable(now=True)
    assert systemctl.verbs() == ["disable --now qwendesk.service", "daemon-reload"]
    assert not systemctl.enabled and not systemctl.active


def test_disable_leaves_a_file_it_did_not_write(settings, user_home: Path) -> None:
    foreign = user_home / ".config/autostart/qwendesk.desktop"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("[Desktop Entry]\nName=someone else's\n")
    status = make(settings, user_home, FakeSystemctl(available=False)).disable()
    assert foreign.read_text() == "[Desktop Entry]\nName=someone else's\n"
    assert "did not write it" in status.detail and not status.installed


def test_status_tells_stale_and_turned_off_entries(settings, user_home: Path) -> None:
    systemctl = FakeSystemctl(available=False)
    make(settings, user_home, systemctl).enable()
    desktop = user_home / ".config/autostart/qwendesk.desktop"
    desktop.write_text(desktop.read_text().replace("Autostart-enabled=true", "Autostart-enabled=false"))
    status = make(settings, user_home, systemctl).status()
    assert status.installed and status.stale and "turned off" in status.detail
    assert not make(settings, user_home, systemctl).enable().stale  # enable repairs it


def test_xdg_config_home_is_honoured(settings, user_home: Path, tmp_path: Path) -> None:
    xdg = tmp_path / "xdg config"
    agent = make(settings, user_home, FakeSystemctl(available=False), env={"XDG_CONFIG_HOME": str(xdg)})
    agent.enable()
    assert (xdg / "autostart/qwendesk.desktop").is_file()
    assert not (user_home / ".config").exists()
    relative = make(settings, user_home, FakeSystemctl(available=False), env={"XDG_CONFIG_HOME": "rel"})
    assert relative.desktop_path == user_home / ".config/autostart/qwendesk.desktop"  # spec: ignore relative


def test_systemd_exec_runs_a_plain_program_directly_and_escapes_dollars() -> None:
    argv = ["/opt/q w/100%/qwendesk", "--x=$HOME", "serve"]
    line = read_unit(systemd_unit(argv, {}, "q"))["Service"]["ExecStart"]
    assert line.startswith('"/opt/q w/100%%/qwendesk"')
    assert split_systemd(line) == argv
