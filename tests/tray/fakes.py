"""A scripted stand-in for DaemonClient, for unit tests of the tray's wiring (never as e2e evidence)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from qwendesk.daemon.errors import DaemonNotRunning, QwendeskError


class FakeClient:
    """Answers like a daemon would; `running` toggles /health; calls are recorded."""

    def __init__(self, running: bool = True) -> None:
        self.running = running
        self.calls: list[tuple[str, Any]] = []
        self.fail: dict[str, QwendeskError] = {}
        self.gate: threading.Event | None = None  # when set, start/stop wait for it
        self.streams: list[list[tuple[str, Any]] | Exception] = []

    def is_running(self) -> bool:
        return self.running

    def _call(self, what: str, name: str | None = None) -> dict[str, Any]:
        self.calls.append((what, name))
        if self.gate is not None:
            self.gate.wait(10)
        if what in self.fail:
            raise self.fail[what]
        if not self.running:
            raise DaemonNotRunning("not running")
        return (
            {"name": name, "state": {"start": "starting", "stop": "available"}.get(what, "")} if name else {}
        )

    def start(self, name: str, *, wait: bool = True, **options: Any) -> dict[str, Any]:
        assert wait is False, "the tray must never block on a model load"
        return self._call("start", name)

    def stop(self, name: str) -> dict[str, Any]:
        return self._call("stop", name)

    def shutdown(self) -> dict[str, Any]:
        return self._call("shutdown")

    def events(self, timeout: float | None = None) -> Iterator[tuple[str, Any]]:
        if not self.streams:
            raise DaemonNotRunning("not running")
        item = self.streams.pop(0)
        if isinstance(item, Exception):
            raise item
        yield from item

    def close(self) -> None:
        pass
