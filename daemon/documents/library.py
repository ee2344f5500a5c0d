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
from .search import RRF_K, Mode, Reranker, SearchHit, SearchResult
from .sync import ProgressCallback, SyncReport
from .watch import CollectionWatcher

DEFAULT_COLLECTION = "documents"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
REGISTRY = "collections.json"


def name_for(folder: Path) -> str:
    """A collection name from a folder's name: `My Notes` -> `My-Notes` (letters, digits, '-', '_', '.')."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(folder).expanduser().resolve().name).strip("-_.")[:64]
    return name or "collection"


def collections_root(data_dir: Path) -> Path:
    """Where the list of collections and their index files live."""
    return Path(data_dir) / "collections"


def read_registry(data_dir: Path) -> dict[str, Path]:
    """Every collection's folder by name, the default one first (reads only the small JSON list)."""
    folders = {DEFAULT_COLLECTION: Path(data_dir) / "documents"}
    path = collections_root(data_dir) / REGISTRY
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8")).get("collections", {})
            folders.update({name: Path(entry["folder"]) for name, entry in saved.items()})
        except (ValueError, AttributeError, KeyError, TypeError) as exc:
            raise CollectionFolderError(
                f"{path} is damaged ({exc}): fix it, or delete it and add the collections again."
            ) from exc
    return folders


class Library:
    """Thread-safe registry of collections; each is opened (index file, parsers) only when first used."""

    def __init__(
        self,
        data_dir: Path,
        embedder: Embedder | None = None,
        **collection_options: Any,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.root = collections_root(self.data_dir)
        self._embedder = embedder
        self._options = collection_options
        self._lock = threading.RLock()
        self._collections: dict[str, Collection] = {}
        self._watchers: dict[str, CollectionWatcher] = {}
        self._watch_options: dict[str, Any] | None = None
        for name, folder in read_registry(self.data_dir).items():
            self._collections[name] = self._make(name, folder)

    # ---- registry ------------------------------------------------------------------------------

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
            if self._watch_options is not None:
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

    def set_reranker(self, reranker: Reranker | None) -> None:
        """The reranker of every collection (None: rank without one)."""
        with self._lock:
            self._options["reranker"] = reranker
            for collection in self._collections.values():
                collection.reranker = reranker

    # ---- watching ------------------------------------------------------------------------------
    def watch(
        self,
        on_progress: ProgressCallback | None = None,
        on_synced: Callable[[Collection, SyncReport], None] | None = None,
        on_failed: Callable[[Collection, Exception], None] | None = None,
        *,
        watch_folders: bool = True,
    ) -> None:
        """Sync every collection now and on every change, each on a thread of its own (callbacks run there).

        With `watch_folders` False nothing watches the folders here: the caller watches them and calls
        `poke` (the daemon does, so that its folders are watched while this process is not running)."""
        with self._lock:
            self.data_dir.joinpath("documents").mkdir(parents=True, exist_ok=True)
            self._watch_options = {
                "on_progress": on_progress,
                "on_synced": on_synced,
                "on_failed": on_failed,
                "watch_folder": watch_folders,
            }
            for collection in self._collections.values():
                if collection.name not in self._watchers:
                    self._start_watcher(collection)

    def _start_watcher(self, collection: Collection) -> None:
        assert self._watch_options is not None
        watcher = CollectionWatcher(collection, **self._watch_options)
        self._watchers[collection.name] = watcher
        watcher.start()

    def poke(self, names: Iterable[str] | None = None) -> None:
        """Sync these collections (all by default) soon: their folders changed, or may have."""
        with self._lock:
            chosen = list(self._watchers) if names is None else [n for n in names if n in self._watchers]
            watchers = [self._watchers[n] for n in chosen]
        for watcher in watchers:
            watcher.poke()

    def active(self) -> bool:
        """Whether any collection is syncing or about to (see CollectionWatcher.active)."""
        with self._lock:
            watchers = list(self._watchers.values())
        return any(w.active for w in watchers)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        with self._lock:
            watchers = list(self._watchers.values())
        return all(w.wait_idle(timeout) for w in watchers)

    def close(self) -> None:
        """Stop watching and close every index."""
        with self._lock:
            watchers = list(self._watchers.values())
            self._watchers.clear()
            self._watch_options = None
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
