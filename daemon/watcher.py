"""Watch folders and call back once per burst of relevant changes (debounced).

`on_change` runs on the watcher's own worker thread, never on the event loop: the caller hops over
with `loop.call_soon_threadsafe(...)`. It takes no arguments; the caller rescans its folders.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)

MODEL_DEPTH = 2  # <folder>/x.gguf and <folder>/<sub>/x.gguf, as the models folder scan reads them
# A speech model is a folder at the GGUF files' depth: <folder>/<model>/model.bin, <folder>/<sub>/<model>/model.bin.
SPEECH_DEPTH = MODEL_DEPTH + 1
SPEECH_FILES = frozenset({"model.bin", "config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json"})

# Decides from a path's parts below the watched folder (and whether it is a folder) if a change matters.
PathFilter = Callable[[tuple[str, ...], bool], bool]


def model_files(parts: tuple[str, ...], is_dir: bool) -> bool:
    """A .gguf at a depth the models scan reads, a speech model's file at a depth the speech scan reads, or a
    folder that may hold either."""
    if is_dir:
        return len(parts) < SPEECH_DEPTH
    name = parts[-1].lower()
    if name.endswith(".gguf"):
        return len(parts) <= MODEL_DEPTH
    return name in SPEECH_FILES and 1 < len(parts) <= SPEECH_DEPTH


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, notify: Callable[[], None], wanted: PathFilter) -> None:
        self.root, self.notify, self.wanted = root, notify, wanted

    def relevant(self, path: str | bytes, is_dir: bool) -> bool:
        """A path below the root, with no hidden part, that the filter wants."""
        p = Path(path.decode() if isinstance(path, bytes) else path)
        try:
            parts = p.relative_to(self.root).parts
        except ValueError:
            return False
        if not parts or any(part.startswith(".") for part in parts):
            return False
        return self.wanted(parts, is_dir)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write") or (
            event.is_directory and event.event_type == "modified"
        ):
            return  # reads (our own header parsing) and folder mtime updates must not trigger rescans
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        if any(p and self.relevant(p, event.is_directory) for p in paths):
            self.notify()


class FolderWatcher:
    """Debounced watchdog over folders (missing folders are created).

    Bursts of events (a large copy fires thousands) become one `on_change` call after `debounce`
    seconds of quiet, or at the latest `max_wait` seconds after the first one. `wanted` picks the
    changes that matter (default: model files).
    """

    def __init__(
        self,
        folders: Iterable[Path],
        on_change: Callable[[], None],
        debounce: float = 1.0,
        max_wait: float = 30.0,
        wanted: PathFilter = model_files,
    ) -> None:
        self.folders = [Path(f) for f in folders]
        self.on_change = on_change
        self.wanted = wanted
        self.debounce, self.max_wait = debounce, max_wait
        self._cond = threading.Condition()
        self._quiet_at: float | None = None  # fire when events stop until then
        self._first_at: float | None = None
        self._stopping = False
        self._observer: Observer | None = None
        self._worker: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Create missing folders and start watching; folders that cannot be watched are logged."""
        self._stopping = False
        observer = Observer()
        for folder in self.folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                root = folder.resolve()
                observer.schedule(_Handler(root, self.notify, self.wanted), str(root), recursive=True)
            except OSError as exc:
                log.warning("Cannot watch folder %s: %s", folder, exc)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._worker = threading.Thread(target=self._run, name="qwendesk-watcher", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Stop watching; pending callbacks are dropped. Safe to call twice."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=5)
        self._worker = None

    def __enter__(self) -> FolderWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- scheduling ------------------------------------------------------------------------------
    def notify(self) -> None:
        """Something changed: (re)start the quiet period."""
        now = time.monotonic()
        with self._cond:
            self._quiet_at = now + self.debounce
            self._first_at = self._first_at or now
            self._cond.notify_all()

    def _due(self) -> float | None:
        if self._quiet_at is None:
            return None
        return min(self._quiet_at, (self._first_at or 0) + self.max_wait)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    due = self._due()
                    now = time.monotonic()
                    if due is not None and due <= now:
                        break
                    self._cond.wait(None if due is None else due - now)
                if self._stopping:
                    return
                self._quiet_at = self._first_at = None
            try:
                self.on_change()
            except Exception:  # a failing callback must not kill the watcher
                log.exception("folder change handler failed")
