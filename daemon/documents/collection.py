"""A collection: a named folder, its index file, its embedding model; sync and search it from any thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from qwendesk.models.errors import NotEnoughSpace
from qwendesk.models.files import free_space_text, is_disk_full

from .embedder import Embedder, covers
from .index import DocumentIndex, FileRow, ModelRow, VectorsGone
from .scan import MAX_FILE_BYTES, scan_folder
from .search import Mode, Reranker, SearchResult, search_index
from .sync import SETTLE_SECONDS, Progress, ProgressCallback, Syncer, SyncReport


@dataclass(frozen=True)
class CollectionStatus:
    name: str
    folder: str
    files: int  # indexed
    errors: int
    skipped: int
    chunks: int
    embedding_model: str | None  # the model set for the collection
    search_model: str | None  # the model whose vectors search uses now (an older one while re-embedding)
    vectors_missing: int | None  # chunks without a vector of the set model (None: no model set)
    syncing: bool
    last_sync: float | None  # time.time() of the last finished sync
    problems: list[dict] = field(default_factory=list)  # [{"path", "state", "reason"}] for error and skipped

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class Collection:
    """Thread-safe: `sync` runs one at a time (a lock), `search` and `status` run on any thread at once.

    Nothing is opened until first used. `embedder` is the collection's model; `query_embedders` serve
    queries against vectors of older models (kept while a new model re-embeds in the background), and
    `query_embedder_for(model_id)` makes one for vectors an earlier run left (None: that model is gone).
    """

    def __init__(
        self,
        name: str,
        folder: Path,
        index_path: Path,
        embedder: Embedder | None = None,
        *,
        query_embedders: Iterable[Embedder] = (),
        query_embedder_for: Callable[[str], Embedder | None] | None = None,
        reranker: Reranker | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self.name = name
        self.folder = Path(folder)
        self.index_path = Path(index_path)
        self.reranker = reranker
        self.max_file_bytes = max_file_bytes
        self.settle_seconds = settle_seconds
        self._embedder = embedder
        self._query_embedders = {e.model_id: e for e in query_embedders}
        self._query_embedder_for = query_embedder_for
        self._index: DocumentIndex | None = None
        self._open_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._syncing = False
        self.last_sync: float | None = None

    # ---- lifecycle -----------------------------------------------------------------------------
    @property
    def index(self) -> DocumentIndex:
        with self._open_lock:
            if self._index is None:
                self._index = DocumentIndex(self.index_path)
            return self._index

    def close(self) -> None:
        with self._write_lock, self._open_lock:
            if self._index is not None:
                self._index.close()
                self._index = None

    @property
    def embedder(self) -> Embedder | None:
        return self._embedder

    def set_embedder(self, embedder: Embedder | None) -> None:
        """Change the collection's model: the next sync embeds every chunk with it, in batches; search
        keeps using the old model's vectors (and the old embedder for queries) until that is done."""
        if self._embedder is not None:
            self._query_embedders[self._embedder.model_id] = self._embedder
        self._embedder = embedder

    # ---- writing -------------------------------------------------------------------------------
    def sync(
        self,
        progress: ProgressCallback | None = None,
        *,
        embed: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> SyncReport:
        """Reflect the folder in the index, then embed chunks that lack vectors (blocking: call it from a
        worker thread). `should_stop` is asked between embedding batches: a caller with new changes
        waiting returns early and syncs again (the report says `embed_interrupted`)."""
        started = time.perf_counter()
        with self._write_lock:
            if self._nothing_to_index():
                self.last_sync = time.time()
                return SyncReport(seconds=time.perf_counter() - started)
            self._syncing = True
            try:
                syncer = Syncer(
                    self.name,
                    self.folder,
                    self.index,
                    progress,
                    max_bytes=self.max_file_bytes,
                    settle=self.settle_seconds,
                )
                report = syncer.run_files()
                if embed and self._embedder is not None:
                    syncer.run_embeddings(self._embedder, should_stop)
                self.last_sync = time.time()
            except Exception as exc:
                if _disk_full(exc):
                    raise self._no_space() from exc
                raise
            finally:
                self._syncing = False
        report.seconds = time.perf_counter() - started
        if progress is not None:
            progress(Progress(self.name, "done"))
        return report

    def _no_space(self) -> NotEnoughSpace:
        where = self.index_path.parent
        return NotEnoughSpace(
            f"The disk holding the index of collection {self.name} is full ({free_space_text(where)}). "
            "What was indexed before is kept and still searched; free some space "
            "there and the next change in the folder (or a restart) brings the index up to date."
        )

    def _nothing_to_index(self) -> bool:
        """An empty folder and no index yet: leave SQLite unloaded (the idle daemon stays small; opening
        the first index costs ~15 MiB, apsw and sqlite-vec)."""
        if self._index is not None or self.index_path.exists() or not self.folder.is_dir():
            return False
        found = scan_folder(self.folder, self.max_file_bytes)
        return not found.candidates and not found.skipped

    # ---- reading -------------------------------------------------------------------------------
    def _search_model(self) -> tuple[tuple[ModelRow, Embedder] | None, str | None]:
        """The model to search with and its query embedder, or None and the reason."""
        index = self.index
        models = index.models(index.reader())
        target = self._embedder
        if target is not None:
            mine = next((m for m in models if m.model_id == target.model_id), None)
            if mine is not None and mine.ready:
                return (mine, target), None
        for model in reversed(models):
            embedder = self._query_embedder(model.model_id) if model.ready else None
            if embedder is not None:
                return (model, embedder), None
        if target is None:
            return None, "no embedding model is set for this collection"
        return None, f"vectors of {target.model_id} are still being computed"

    def _query_embedder(self, model_id: str) -> Embedder | None:
        embedder = self._query_embedders.get(model_id)
        if embedder is None and self._query_embedder_for is not None:
            embedder = self._query_embedder_for(model_id)
            if embedder is not None:
                self._query_embedders[model_id] = embedder
        return embedder

    def search(self, query: str, k: int = 5, *, mode: Mode = "hybrid", rerank: bool = True) -> SearchResult:
        """The k best chunks for `query` (blocking; any thread). Without usable vectors it answers from
        keywords alone and says so in `note`."""
        for attempt in (1, 2):
            vectors, why = self._search_model() if mode != "bm25" else (None, None)
            if vectors is not None and not covers(vectors[1], query):
                vectors, why = (
                    None,
                    f"the embedding model {vectors[0].model_id} does not know this query's language",
                )
            try:
                return search_index(
                    self.index, self.name, query, k, mode, vectors, why, self.reranker if rerank else None
                )
            except VectorsGone:  # a re-embedding finished meanwhile: its model is the one to use now
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def files(self) -> list[FileRow]:
        index = self.index
        return sorted(index.files(index.reader()).values(), key=lambda r: r.path)

    def status(self) -> CollectionStatus:
        if self._index is None and not self.index_path.exists():  # never indexed: do not load SQLite for it
            return CollectionStatus(
                self.name, str(self.folder), 0, 0, 0, 0, self._embedder.model_id if self._embedder else None,
                None, 0 if self._embedder else None, self._syncing, self.last_sync,
            )  # fmt: skip
        index = self.index
        reader = index.reader()
        counts = index.counts(reader)
        vectors, _ = self._search_model()
        target = self._embedder
        model = index.model(target.model_id, reader) if target else None
        missing = (
            None if target is None else index.count_missing(model, reader) if model else counts["chunks"]
        )
        problems = [
            {"path": r.path, "state": r.state, "reason": r.error}
            for r in index.files(reader).values()
            if r.state != "indexed"
        ]
        return CollectionStatus(
            name=self.name,
            folder=str(self.folder),
            files=counts["indexed"],
            errors=counts["error"],
            skipped=counts["skipped"],
            chunks=counts["chunks"],
            embedding_model=target.model_id if target else None,
            search_model=vectors[0].model_id if vectors else None,
            vectors_missing=missing,
            syncing=self._syncing,
            last_sync=self.last_sync,
            problems=sorted(problems, key=lambda p: p["path"]),
        )


def _disk_full(exc: BaseException) -> bool:
    """SQLite's "database or disk is full", or an OS write that found no space left."""
    import apsw  # loaded already: the index that raised uses it

    return isinstance(exc, apsw.FullError) or is_disk_full(exc)
