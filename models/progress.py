"""Terminal progress bars (rich) for long work: one bar per step, with bytes, speed and time left."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from types import TracebackType
from typing import Any


class ProgressBars:
    """Bars on stderr that appear with their first report (an early error shows no empty bar)."""

    def __init__(self, *, speed: bool = True) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), DownloadColumn()]
        if speed:
            columns.append(TransferSpeedColumn())
        columns += [TimeRemainingColumn(), TextColumn("[dim]{task.fields[item]}")]
        self._progress = Progress(*columns, console=Console(stderr=True))
        self._bars: dict[Hashable, Any] = {}

    def __enter__(self) -> ProgressBars:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, key: Hashable, label: str, done: int, total: int | None, item: str = "") -> None:
        """Move bar `key` (created with `label` on first use) to `done` of `total` bytes (None: unknown)."""
        if key not in self._bars:
            self._bars[key] = self._progress.add_task(label, total=total or None, item=item)
        self._progress.update(self._bars[key], completed=done, total=total or None, item=item)

    def step(self, label: str) -> Callable[[int, int, str], None]:
        """A callback `(done, total, item)` that moves the bar of one step."""
        return lambda done, total, item: self.update(label, label, done, total, item)
