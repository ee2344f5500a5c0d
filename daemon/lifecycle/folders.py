"""The models folders kept in step with the model table: scanned at start-up and after every change.

A scan finds GGUF files (models.folder.scan) and Whisper model folders (speech.models), and which GGUF models
can hear (their projector has an audio encoder)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from qwendesk.models.folder import ModelFiles, scan

from ..speech.hearing import projector_hears
from ..speech.models import SpeechModel, find_speech_models
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
            found, hearing = await asyncio.to_thread(scan_all, self.folders)
            await self.manager.apply_scan(found, hearing)
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


def scan_all(folders: list[Path]) -> tuple[Mapping[str, ModelFiles | SpeechModel], set[str]]:
    """Every model in the folders (GGUF models first; a speech model never takes a GGUF model's name), and
    the names of the GGUF models that can hear. Blocking: run it in a thread."""
    gguf = scan(folders, reserved=reserved_names())
    speech = find_speech_models(folders, taken=gguf)
    # Projector headers are read on each scan (a bounded read of a few KiB, only for models that have one).
    hearing = {name for name, files in gguf.items() if files.mmproj and projector_hears(files.mmproj)}
    return {**gguf, **speech}, hearing
