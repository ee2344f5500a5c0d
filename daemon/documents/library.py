"""All collections of one home: the default `documents` folder in the data folder, plus folders added by path.

The list lives in <data>/collections/collections.json; each collection's index is <data>/collections/<name>.sqlite.
Deleting a collection deletes its index, never its folder.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .collection import Collection
from .embedder import Embedder
from .errors import CollectionExists, CollectionFolderError, CollectionNotFound
from .search import RRF_K, Mode, SearchHit, SearchResult
from .sync import ProgressCallback, SyncReport
from .watch import CollectionWatcher

DEFAULT_COLLECTION = "documents"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
REGISTRY = "collections.json"


class Library:
    """Thread-safe registry of collections; each is opened (index file, parsers) only when first used."""

    def __init__(
        self,
        data_dir: Path,
        embedder: Embedder | None = None,
        **collection_options: Any,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "collections"
        self._embedder = embedder
        self._options = collection_options
        self._lock = threading.RLock()
        self._collections: dict[str, Collection] = {}
        self._watchers: dict[str, CollectionWatcher] = {}
        self._watch_args: (
            tuple[ProgressCallback | None, Callable[[Collection, SyncReport], None] | None] | None
        ) = None
        for name, folder in self._folders().items():
            self._collections[name] = self._make(name, folder)

    # ---- registry ------------------------------------------------------------------------------
    def _folders(self) -> dict[str, Path]:
        folders = {DEFAULT_COLLECTION: self.data_dir / "documents"}
        path = self.root / REGISTRY
        if path.exists():
            try:
                saved = json.loads(path.read_text(encoding="utf-8")).get("collections", {})
                folders.update({name: Path(entry["folder"]) for name, entry in saved.items()})
            except (ValueError, AttributeError, KeyError, TypeError) as exc:
                raise CollectionFolderError(
                    f"{path} is damaged ({exc}): fix it, or delete it and add the collections again."
                ) from exc
        return folders

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        saved = {
            n: {"folder": str(c.folder)} for n, c in self._collections.items() if n != DEFAULT_COLLECTION
        }
        tmp = self.root / (REGISTRY + ".tmp")
        tmp.write_text(json.dumps({"collections": saved}, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.root / REGISTRY)

    def _make(self, name: str, folder: Path) -> Collection:
        return Collection(name, folder, self.root / f"{name}.sqlite", self._embedder, **self._options)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._collections)

    def get(self, name: str) -> Collection:
        with self._lock:
            try:
                return self._collections[name]
            except KeyError:
                raise CollectionNotFound(
                    f"There is no collection {name!r}: known are {', '.join(sorted(self._collections))}."
                ) from None

    def add(self, name: str, folder: Path) -> Collection:
        """A new collection over an existing folder (indexed by the next sync, or at once when watching)."""
        if not NAME.match(name):
            raise CollectionFolderError(
                f"{name!r} is not a valid collection name: use letters, digits, '-', '_' or '.' (at most 64)."
            )
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise CollectionFolderError(f"{folder} is not a folder: give the path of an existing folder.")
        folder = folder.resolve()
        with self._lock:
            if name in self._collections:
                raise CollectionExists(
                    f"A collection named {name!r} exists: pick another name or remove it first."
                )
            collection = self._collections[name] = self._make(name, folder)
            self._save()
            if self._watch_args is not None:
                self._start_watcher(collection)
        return collection

    def remove(self, name: str) -> None:
        """Forget a collection and delete its index (its folder and files stay)."""
        if name == DEFAULT_COLLECTION:
            raise CollectionFolderError(
                f"The default collection {name!r} cannot be removed: empty its folder instead."
            )
        with self._lock:
            collection = self.get(name)
            watcher = self._watchers.pop(name, None)
            del self._collections[name]
            self._save()
        if watcher is not None:
            watcher.stop()
        collection.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(collection.index_path) + suffix).unlink(missing_ok=True)

    def set_embedder(self, embedder: Embedder | None) -> None:
        """The embedding model of every collection (each re-embeds in the background when it changes)."""
        with self._lock:
            self._embedder = embedder
            for collection in self._collections.values():
                collection.set_embedder(embedder)
            watchers = list(self._watchers.values())
        for watcher in watchers:
            watcher.poke()

    # ---- watching ------------------------------------------------------------------------------
    def watch(
        self,
        on_progress: ProgressCallback | None = None,
        on_synced: Callable[[Collection, SyncReport], None] | None = None,
    ) -> None:
        """Sync every collection now and on every change, each on a thread of its own (callbacks run there)."""
        with self._lock:
            self._watch_args = (on_progress, on_synced)
            for collection in self._collections.values():
                if collection.name not in self._watchers:
                    self._start_watcher(collection)

    def _start_watcher(self, collection: Collection) -> None:
        assert self._watch_args is not None
        on_progress, on_synced = self._watch_args
        watcher = CollectionWatcher(collection, on_progress=on_progress, on_synced=on_synced)
        self._watchers[collection.name] = watcher
        watcher.start()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        with self._lock:
            watchers = list(self._watchers.values())
        return all(w.wait_idle(timeout) for w in watchers)

    def close(self) -> None:
        """Stop watching and close every index."""
        with self._lock:
            watchers = list(self._watchers.values())
            self._watchers.clear()
            self._watch_args = None
            collections = list(self._collections.values())
        for watcher in watchers:
            watcher.stop()
        for collection in collections:
            collection.close()

    # ---- searching -----------------------------------------------------------------------------
    def search(
        self, query: str, k: int = 5, names: Iterable[str] | None = None, *, mode: Mode = "hybrid"
    ) -> SearchResult:
        """The k best chunks over several collections (all by default); blocking, any thread.

        One collection: its own ranking and scores. Several: their rankings are fused by rank (RRF), so
        collections of different sizes or modes mix fairly; `score` is then the fused score.
        """
        chosen = [self.get(n) for n in (names if names is not None else self.names())]
        results = [c.search(query, k, mode=mode) for c in chosen]
        if len(results) == 1:
            return results[0]
        fused: list[tuple[float, int, SearchHit]] = []
        for result in results:
            for rank, hit in enumerate(result.hits, start=1):
                fused.append((1.0 / (RRF_K + rank), rank, hit))
        fused.sort(key=lambda t: (-t[0], t[1]))
        hits = [replace(hit, score=score) for score, _, hit in fused[:k]]
        modes = {r.mode for r in results}
        notes = sorted({f"{c.name}: {r.note}" for c, r in zip(chosen, results, strict=True) if r.note})
        used: Mode = modes.pop() if len(modes) == 1 else "hybrid"
        return SearchResult(hits, used, "; ".join(notes) or None)
