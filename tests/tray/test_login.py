"""The Start at Login item over qwendesk.installers.autostart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.errors import QwendeskError
from qwendesk.tray.login import LoginItem


@dataclass
class Status:
    installed: bool
    daemon_managed: bool = False


class FakeAutostart:
    def __init__(self) -> None:
        self.installed = False
        self.calls: list[tuple[str, Any]] = []

    def status(self, settings: Any) -> Status:
        return Status(self.installed)

    def enable(self, settings: Any, *, now: bool = False) -> Status:
        self.calls.append(("enable", now))
        self.installed = True
        return Status(True)

    def disable(self, settings: Any, *, now: bool = False) -> Status:
        self.calls.append(("disable", now))
        self.installed = False
        return Status(False)


def test_toggle_round_trip() -> None:
    fake = FakeAutostart()
    item = LoginItem(load_settings(), module=fake)
    assert item.available and item.is_enabled() is False
    assert item.set_enabled(True) is True and item.is_enabled() is True
    assert item.set_enabled(False) is False
    assert fake.calls == [("enable", False), ("disable", False)]  # never starts a second tray


def test_broken_status_probe_reads_as_unavailable() -> None:
    class Broken(FakeAutostart):
        def status(self, settings: Any) -> Status:
            raise RuntimeError("launchctl exploded")

    assert LoginItem(load_settings(), module=Broken()).is_enabled() is None


def test_missing_module_is_unavailable() -> None:
    item = LoginItem(load_settings(), module=None)
    item._module = None  # as if qwendesk.installers.autostart were not installed
    assert item.is_enabled() is None and not item.daemon_managed()
    with pytest.raises(QwendeskError, match="not available"):
        item.set_enabled(True)


def test_the_real_autostart_module_is_found() -> None:
    item = LoginItem(load_settings())
    assert item.available
    assert item.is_enabled() in (True, False)  # nothing is installed in a temp home / HOME
