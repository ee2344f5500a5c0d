"""Keep collections current in the background: a folder watcher pokes one worker thread, which syncs.

The worker syncs at start (catching up on what changed while the daemon was off), after each debounced
burst of changes, again after `retry_after` for files that were still being written, and after a
back-off when the embedding model failed. A change arriving while chunks are being embedded interrupts
the embedding between batches, so an edit is searchable in seconds even during a long re-embed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from qwendesk.daemon.watcher import FolderWatcher
from qwendesk.models.errors import QwendeskError

from .collection import Collection
from .scan import wanted_change
from .sync import ProgressCallback, SyncReport

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.3
EMBED_RETRY_SECONDS = 60.0


class CollectionWatcher:
    """Watches one collection's folder and syncs it on a worker thread of its own."""

    def __init__(
        self,
        collection: Collection,
        *,
        on_progress: ProgressCallback | None = None,
        on_synced: Callable[[Collection, SyncReport], None] | None = None,
        on_failed: Callable[[Collection, Exception], None] | None = None,
        debounce: float = DEBOUNCE_SECONDS,
        watch_folder: bool = True,
    ) -> None:
        self.collection = collection
        self.on_progress = on_progress
        self.on_synced = on_synced
        self.on_failed = on_failed
        self.debounce = debounce
        self.watch_folder = watch_folder  # False: someone else watches and calls poke()
        self._cond = threading.Condition()
        self._poked = False
        self._busy = False
        self._retry_at: float | None = None
        self._retry_short = False  # the retry is for files still being written (not an embedding back-off)
        self._stopping = False
        self._watcher: FolderWatcher | None = None
        self._thread: threading.Thread | None = None
        self.last_report: SyncReport | None = None

    def start(self) -> None:
        # A missing folder is not created (an unplugged drive's mount point must stay empty): its sync
        # reports it, and the next poke after it comes back syncs it.
        if self.watch_folder and self.collection.folder.is_dir():
            self._watcher = FolderWatcher(
                [self.collection.folder], self.poke, debounce=self.debounce, wanted=wanted_change
            )
            self._watcher.start()
        self._thread = threading.Thread(
            target=self._run, name=f"qwendesk-docs-{self.collection.name}", daemon=True
        )
        self._thread.start()
        self.poke()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._watcher is not None:
            self._watcher.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def poke(self) -> None:
        """Something changed (or may have): sync soon."""
        with self._cond:
            self._poked = True
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once nothing is pending or running (for tests and the CLI); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._poked or self._busy or self._retry_at is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    @property
    def active(self) -> bool:
        """A sync runs or is about to (a change waits, or files being written are retried shortly);
        a back-off after an embedding failure does not count."""
        with self._cond:
            return self._poked or self._busy or (self._retry_at is not None and self._retry_short)

    def _interrupted(self) -> bool:
        with self._cond:
            return self._poked or self._stopping

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._poked:
                    if self._retry_at is not None and time.monotonic() >= self._retry_at:
                        break
                    wait = None if self._retry_at is None else max(0.0, self._retry_at - time.monotonic())
                    self._cond.wait(wait)
                if self._stopping:
                    return
                self._poked, self._retry_at, self._busy = False, None, True
            retry = None
            try:
                report = self.collection.sync(self.on_progress, should_stop=self._interrupted)
                self.last_report = report
                if report.pending:
                    retry = report.retry_after
                elif report.embed_error:
                    log.warning("collection %s: %s", self.collection.name, report.embed_error)
                    retry = EMBED_RETRY_SECONDS
                if self.on_synced is not None:
                    self.on_synced(self.collection, report)
            except Exception as exc:  # a failing sync must not stop the watching; the next change retries
                if isinstance(exc, QwendeskError):  # e.g. the folder is missing: expected, said plainly
                    log.warning("collection %s: %s", self.collection.name, exc.message)
                else:
                    log.exception("syncing collection %s failed", self.collection.name)
                if self.on_failed is not None:
                    self.on_failed(self.collection, exc)
            with self._cond:
                self._busy = False
                if retry is not None:
                    self._retry_at = time.monotonic() + retry
                    self._retry_short = retry < EMBED_RETRY_SECONDS
                self._cond.notify_all()
