"""Bring an index in line with its folder: only what changed is re-parsed, only new chunk texts re-embedded.

A file is unchanged when its size and mtime match the index; else it is read and hashed: the same hash
under a new path is a rename (the row moves, nothing is parsed or embedded), the same hash at the same
path a touch. A file whose stat moves while it is read, or that changed less than `settle` seconds ago,
is left for the next sync (`SyncReport.pending`): it is still being written.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .chunking import chunk_document
from .embedder import Embedder
from .errors import CollectionFolderError, DocumentError, EmbeddingError
from .index import DocumentIndex, FileRow, ModelRow
from .parsers import parse_bytes
from .scan import MAX_FILE_BYTES, Candidate, scan_folder

SETTLE_SECONDS = 0.5
EMBED_BATCH = 64  # chunks per embed() call: large enough to keep every engine slot busy


@dataclass(frozen=True)
class Progress:
    """Where a sync is: phase "scan", "index" (files), "embed" (chunks) or "done"."""

    collection: str
    phase: str
    files_done: int = 0
    files_total: int = 0
    chunks_done: int = 0
    chunks_total: int = 0
    path: str | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass
class SyncReport:
    """What one sync did. Paths are relative to the collection folder, with / separators."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old, new)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # path -> what is wrong and what to do
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why it is not indexed
    pending: list[str] = field(default_factory=list)  # still being written: sync again after `retry_after`
    chunks_written: int = 0
    texts_embedded: int = 0  # texts sent to the embedder (vectors reused from unchanged text are not)
    vectors_missing: int = 0  # chunks with no vector of the current model yet (keyword search finds them)
    embed_error: str | None = None
    embed_interrupted: bool = False  # stopped between batches because a new change came in
    seconds: float = 0.0

    @property
    def retry_after(self) -> float | None:
        return SETTLE_SECONDS if self.pending else None

    def as_dict(self) -> dict:
        return {
            "added": self.added,
            "updated": self.updated,
            "renamed": [list(pair) for pair in self.renamed],
            "removed": self.removed,
            "unchanged": self.unchanged,
            "errors": self.errors,
            "skipped": self.skipped,
            "pending": self.pending,
            "chunks_written": self.chunks_written,
            "texts_embedded": self.texts_embedded,
            "vectors_missing": self.vectors_missing,
            "embed_error": self.embed_error,
            "seconds": round(self.seconds, 3),
        }


def read_settled(candidate: Candidate, settle: float, max_bytes: int) -> bytes | None:
    """The file's bytes, or None while it is still being written (recent mtime, or stat moved during read)."""
    age = time.time() - candidate.mtime_ns / 1e9
    if 0 <= age < settle:
        return None
    with open(candidate.real, "rb") as f:
        data = f.read(max_bytes + 1)
        after = os.fstat(f.fileno())
    if (
        after.st_size != candidate.size
        or after.st_mtime_ns != candidate.mtime_ns
        or len(data) != after.st_size
    ):
        return None
    return data


def _unchanged(row: FileRow | None, c: Candidate) -> bool:
    return (
        row is not None
        and row.state in ("indexed", "error")
        and row.size == c.size
        and row.mtime_ns == c.mtime_ns
    )


class Syncer:
    """One pass over a folder for one index; the caller makes sure only one runs at a time per index."""

    def __init__(
        self,
        name: str,
        folder: Path,
        index: DocumentIndex,
        progress: ProgressCallback | None = None,
        *,
        max_bytes: int = MAX_FILE_BYTES,
        settle: float = SETTLE_SECONDS,
    ) -> None:
        self.name, self.folder, self.index = name, folder, index
        self.progress = progress or (lambda p: None)
        self.max_bytes, self.settle = max_bytes, settle
        self.report = SyncReport()

    def run_files(self) -> SyncReport:
        """The text phase: scan, then add, update, rename and delete files (FTS is current after this)."""
        report, index = self.report, self.index
        self.progress(Progress(self.name, "scan"))
        if not self.folder.is_dir():  # an unplugged drive must not empty the index: keep it as it is
            raise CollectionFolderError(
                f"The folder of collection {self.name} ({self.folder}) is missing: reconnect or restore it,"
                " or remove the collection."
            )
        scan = scan_folder(self.folder, self.max_bytes)
        known = index.files()
        present: set[str] = set()
        for s in scan.skipped:
            present.add(s.rel)
            report.skipped[s.rel] = s.reason
            row = known.get(s.rel)
            if row is None or (row.state, row.error, row.size, row.mtime_ns) != (
                "skipped",
                s.reason,
                s.size,
                s.mtime_ns,
            ):
                index.set_unindexed(s.rel, s.size, s.mtime_ns, "skipped", s.reason)
        todo = []
        for c in scan.candidates:
            present.add(c.rel)
            row = known.get(c.rel)
            if _unchanged(row, c):
                report.unchanged += 1
                if row is not None and row.state == "error":
                    report.errors[c.rel] = row.error or "unreadable"
            else:
                todo.append(c)
        gone = {rel: row for rel, row in known.items() if rel not in present}
        moved_from: dict[str, list[FileRow]] = {}
        for row in gone.values():
            if row.state == "indexed" and row.sha256:
                moved_from.setdefault(row.sha256, []).append(row)
        for i, c in enumerate(todo):
            self.progress(Progress(self.name, "index", i, len(todo), path=c.rel))
            self._one(c, known.get(c.rel), moved_from, gone)
        if gone:
            index.delete_files(row.id for row in gone.values())
            report.removed.extend(sorted(gone))
        self.progress(Progress(self.name, "index", len(todo), len(todo)))
        return report

    def _one(
        self,
        c: Candidate,
        row: FileRow | None,
        moved_from: dict[str, list[FileRow]],
        gone: dict[str, FileRow],
    ) -> None:
        report, index = self.report, self.index
        try:
            data = read_settled(c, self.settle, self.max_bytes)
        except OSError as exc:
            reason = f"cannot read it ({exc.strerror or exc}): check its permissions"
            index.set_unindexed(c.rel, c.size, c.mtime_ns, "error", reason)
            report.errors[c.rel] = reason
            return
        if data is None:
            report.pending.append(c.rel)
            return
        sha = hashlib.sha256(data).hexdigest()
        if row is not None and row.state == "indexed" and row.sha256 == sha:
            index.update_stat(row.id, c.rel, c.size, c.mtime_ns)  # touched: same content
            report.unchanged += 1
            return
        if row is None and moved_from.get(sha):
            old = moved_from[sha].pop()
            del gone[old.path]
            index.update_stat(old.id, c.rel, c.size, c.mtime_ns)
            report.renamed.append((old.path, c.rel))
            return
        try:
            chunks = chunk_document(parse_bytes(data, c.rel))
        except DocumentError as exc:
            index.set_unindexed(c.rel, c.size, c.mtime_ns, "error", exc.message, sha)
            report.errors[c.rel] = exc.message
            return
        index.replace_file(c.rel, c.size, c.mtime_ns, sha, chunks)
        report.chunks_written += len(chunks)
        (report.updated if row is not None else report.added).append(c.rel)

    def run_embeddings(
        self,
        embedder: Embedder,
        should_stop: Callable[[], bool] | None = None,
        batch: int = EMBED_BATCH,
    ) -> SyncReport:
        """Embed every chunk with no vector of `embedder`'s model, in batches (committed one by one).

        When the model's vectors are complete for the first time the model becomes ready, and the vectors
        of other (older) models are dropped: until then search answers from the old ones.
        """
        report, index = self.report, self.index
        model = index.model(embedder.model_id)
        total = index.count_missing(model) if model else index.chunk_count()
        done = 0
        try:
            while True:
                if should_stop is not None and should_stop():
                    report.embed_interrupted = True
                    break
                rows = index.missing_vectors(model, batch) if model else index.first_chunks(batch)
                if not rows:
                    break
                self.progress(Progress(self.name, "embed", chunks_done=done, chunks_total=total))
                vectors = embedder.embed([text for _, text in rows])
                if model is None:  # its first vectors tell the model's dimension, which vec0 needs
                    model = index.add_model(embedder.model_id, len(vectors[0]))
                _check_dims(model, vectors, len(rows))
                index.add_vectors(model, [cid for cid, _ in rows], vectors)
                report.texts_embedded += len(rows)
                done += len(rows)
        except EmbeddingError as exc:
            report.embed_error = exc.message
        if model is not None:
            report.vectors_missing = index.count_missing(model)
            if report.vectors_missing == 0 and not model.ready:
                model = index.mark_ready(model)
                for other in index.models():
                    if other.id != model.id:
                        index.drop_model(other)
        self.progress(Progress(self.name, "embed", chunks_done=done, chunks_total=total))
        return report


def _check_dims(model: ModelRow, vectors: list[list[float]], expected: int) -> None:
    if len(vectors) != expected:
        raise EmbeddingError(
            f"The embedding model {model.model_id} returned {len(vectors)} vectors for {expected} texts."
        )
    if any(len(v) != model.dim for v in vectors):
        raise EmbeddingError(
            f"The embedding model {model.model_id} returned vectors of {len(vectors[0])} dimensions where"
            f" the index holds {model.dim}: give a changed model a new model id, so it is re-embedded."
        )
