"""macOS: the LaunchAgent plist and the launchctl calls (launchctl is faked: there is no Mac here)."""

from __future__ import annotations

import plistlib
from pathlib import Path

from qwendesk.installers import autostart
from qwendesk.installers._darwin import launch_agent

from .conftest import AWKWARD, FakeLaunchctl, tree

PROGRAM = f"/Users/me/{AWKWARD}/qwendesk.app/Contents/MacOS/qwendesk"


def make(settings, user_home: Path, launchctl: FakeLaunchctl):
    agent = autostart.for_platform(
        settings, platform="darwin", home=user_home, runner=launchctl, command=lambda role: [PROGRAM, role]
    )
    agent.domain = "gui/501"
    return agent


def test_plist_round_trips_with_the_right_keys(settings, awkward_home: Path) -> None:
    data = plistlib.loads(
        plistlib.dumps(launch_agent([PROGRAM, "tray"], autostart.entry_env(settings), settings.log_dir))
    )
    assert data["Label"] == autostart.LABEL
    assert data["ProgramArguments"] == [PROGRAM, "tray"]  # an array: no shell quoting involved
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}  # crash restarts, Quit stays quit
    assert data["ProcessType"] == "Interactive"
    assert data["LimitLoadToSessionType"] == "Aqua"
    assert data["EnvironmentVariables"] == {"QWENDESK_HOME": str(awkward_home)}
    assert Path(data["StandardOutPath"]).parent == settings.log_dir
    assert Path(data["StandardErrorPath"]).parent == settings.log_dir


def test_no_environment_key_without_a_moved_home(tmp_path: Path) -> None:
    assert "EnvironmentVariables" not in launch_agent(["/x", "tray"], {}, tmp_path)


def test_enable_writes_plist_and_now_bootstraps_it(settings, user_home: Path) -> None:
    launchctl = FakeLaunchctl()
    status = make(settings, user_home, launchctl).enable()
    path = user_home / "Library/LaunchAgents" / f"{autostart.LABEL}.plist"
    assert plistlib.loads(path.read_bytes())["ProgramArguments"] == [PROGRAM, "tray"]
    assert settings.log_dir.is_dir()  # launchd opens the log files but does not create folders
    assert launchctl.verbs() == [] and status.installed and status.loaded is False

    status = make(settings, user_home, launchctl).enable(now=True)
    assert [c for c in launchctl.calls if c[1] != "print"][-1] == [
        "launchctl",
        "bootstrap",
        "gui/501",
        str(path),
    ]
    assert status.loaded is True

    launchctl.calls.clear()
    make(settings, user_home, launchctl).enable(now=True)  # idempotent: no bootstrap of a loaded agent
    assert launchctl.verbs() == []


def test_enable_now_reloads_a_changed_plist(settings, user_home: Path) -> None:
    launchctl = FakeLaunchctl()
    make(settings, user_home, launchctl).enable(now=True)
    path = user_home / "Library/LaunchAgents" / f"{autostart.LABEL}.plist"
    path.write_bytes(
        plistlib.dumps({"Label": autostart.LABEL, "ProgramArguments": ["/old/qwendesk", "tray"]})
    )
    assert make(settings, user_home, launchctl).status().stale
    launchctl.calls.clear()
    status = make(settings, user_home, launchctl).enable(now=True)
    assert launchctl.verbs() == ["bootout", "bootstrap"]
    assert status.loaded and not status.stale


def test_disable_removes_the_plist_and_now_boots_it_out(settings, user_home: Path) -> None:
    before = tree(user_home)
    launchctl = FakeLaunchctl()
    make(settings, user_home, launchctl).enable(now=True)
    status = make(settings, user_home, launchctl).disable()
    # Without --now the agent stays loaded (the tray may be the caller); status says so.
    assert tree(user_home) == before and status.loaded is True and not status.installed
    assert "until you log out" in status.detail
    status = make(settings, user_home, launchctl).disable(now=True)
    assert launchctl.verbs()[-1] == "bootout" and status.loaded is False


def test_status_without_launchctl_says_unknown(settings, user_home: Path) -> None:
    from .conftest import done

    agent = autostart.for_platform(
        settings,
        platform="darwin",
        home=user_home,
        runner=lambda argv: done(argv, 127),
        command=lambda r: ["/x", r],
    )
    status = agent.status()
    assert status.loaded is None and not status.installed and "unknown" in status.detail
