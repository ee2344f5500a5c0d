"""The models folders kept in step with the model table: scanned at start-up and after every change."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from qwendesk.models.folder import scan

from ..watcher import FolderWatcher
from ..xinference.registration import reserved_names

if TYPE_CHECKING:
    from .manager import ModelManager

log = logging.getLogger(__name__)

PENDING_RECHECK = 2.0  # seconds between looks at a file that is still being copied


class FolderSync:
    """Scans the models folders into the manager, debounced after watcher events and while copies run."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager
        self.folders = manager.settings.model_folders
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._watcher: FolderWatcher | None = None

    async def start(self) -> None:
        """Create the folders, scan them once, then watch them."""
        self._loop = asyncio.get_running_loop()
        for folder in self.folders:
            folder.mkdir(parents=True, exist_ok=True)
        await self.rescan()
        self._watcher = FolderWatcher(self.folders, self._on_change)
        self._watcher.start()

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self._handle is not None:
            self._handle.cancel()

    async def rescan(self) -> None:
        """Scan the folders and hand the result to the manager (one scan at a time)."""
        async with self._lock:
            found = await asyncio.to_thread(scan, self.folders, reserved=reserved_names())
            await self.manager.apply_scan(found)
        if any(files.pending for files in found.values()):
            self._schedule(PENDING_RECHECK)

    def _on_change(self) -> None:
        """Called on the watcher's thread: hop onto the event loop."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._schedule, 0.0)

    def _schedule(self, delay: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(delay, lambda: self.manager.spawn(self.rescan(), "rescan"))
