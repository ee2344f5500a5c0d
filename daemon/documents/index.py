"""The index of one collection: one SQLite file (apsw, which bundles SQLite with FTS5 and loads sqlite-vec).

Tables: files (path, size, mtime_ns, sha256, state, error), chunks (file, page, heading, offsets, text),
chunks_fts (FTS5 over bigram-rewritten text, see terms.py), models (embedding models, by id) and one vec0
table per model, `embedded` (which chunk has a vector in which model).

Threading: one writer (the caller serializes writes: Collection holds a lock); every other thread reads
through its own connection. WAL and one transaction per file mean a reader sees a file's old chunks or its
new ones, never half of them. The file is a cache of the folder: if it is corrupt or of another schema
version it is moved aside and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import threading
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import terms
from .chunking import Chunk

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
TERMS_KIND = "bigram-1"  # terms.py's rewrite: a change rebuilds chunks_fts from chunks
BUSY_TIMEOUT_MS = 10_000
KNN_LIMIT = 4096  # sqlite-vec's largest k

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT,
    state TEXT NOT NULL CHECK (state IN ('indexed', 'error', 'skipped')),
    error TEXT,
    chunks INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_sha256 ON files(sha256);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    ord INTEGER NOT NULL,
    page INTEGER,
    heading TEXT,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    text TEXT NOT NULL,
    embed_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_file ON chunks(file_id);
CREATE INDEX IF NOT EXISTS chunks_embed_hash ON chunks(embed_hash);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    heading, body, content='', contentless_delete=1, tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS models(
    id INTEGER PRIMARY KEY,
    model_id TEXT NOT NULL UNIQUE,
    dim INTEGER NOT NULL,
    ready INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS embedded(
    model INTEGER NOT NULL, chunk_id INTEGER NOT NULL, PRIMARY KEY (model, chunk_id)
) WITHOUT ROWID;
"""


class VectorsGone(Exception):
    """The vectors of a model were dropped between choosing the model and searching them."""


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str  # relative to the collection folder, with / separators
    size: int
    mtime_ns: int
    sha256: str | None
    state: str  # indexed | error | skipped
    error: str | None
    chunks: int


@dataclass(frozen=True)
class ModelRow:
    id: int
    model_id: str
    dim: int
    ready: bool  # every chunk had a vector once: search may use it (new chunks get theirs shortly)

    @property
    def table(self) -> str:
        return f"vec_{self.id}"


@dataclass(frozen=True)
class ChunkRow:
    id: int
    path: str
    page: int | None
    heading: str | None
    start: int
    end: int
    text: str


def embed_input(heading: str | None, text: str) -> str:
    """What an embedder sees for a chunk: its heading path, then its text."""
    return f"{heading}\n\n{text}" if heading else text


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _blob(vector: Sequence[float]) -> bytes:
    return array("f", vector).tobytes()


def vec_extension() -> str:
    """sqlite-vec's loadable extension (as `sqlite_vec.loadable_path()` gives it), found without importing
    the package: its `__init__` imports numpy when numpy is installed, +10.6 MiB RSS (measured) for a path."""
    spec = importlib.util.find_spec("sqlite_vec")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ImportError("sqlite-vec is not installed: pip install sqlite-vec")
    return os.path.normpath(os.path.join(locations[0], "vec0"))


def _connect(path: Path, readonly: bool = False) -> Any:
    import apsw

    flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    conn = apsw.Connection(str(path), flags=flags)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    conn.enable_load_extension(True)
    conn.load_extension(vec_extension())
    conn.enable_load_extension(False)
    return conn


class DocumentIndex:
    """The SQLite file of one collection. Write methods must be called by one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._readers: list[Any] = []
        self._readers_lock = threading.Lock()
        self._db = self._open_writer()

    # ---- opening -------------------------------------------------------------------------------
    def _open_writer(self) -> Any:
        import apsw

        try:
            db = _connect(self.path)
            db.execute("PRAGMA journal_mode=WAL")
            version = self._meta(db, "schema")
            if version not in (None, SCHEMA_VERSION):
                raise apsw.SchemaChangeError(f"schema {version}")
        except (apsw.CorruptError, apsw.NotADBError, apsw.SchemaChangeError) as exc:
            with contextlib.suppress(NameError):
                db.close()
            aside = self.path.with_name(self.path.name + f".broken-{int(time.time())}")
            log.warning("Index %s unusable (%s): moved to %s, rebuilding", self.path, exc, aside)
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            db = _connect(self.path)
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        with self._transaction(db):
            db.execute(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        if self._meta(db, "terms") != TERMS_KIND:
            self._rebuild_fts(db)
        return db

    @staticmethod
    def _meta(db: Any, key: str) -> str | None:
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
        if not exists:
            return None
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _rebuild_fts(self, db: Any) -> None:
        with self._transaction(db):
            db.execute("DELETE FROM chunks_fts")
            rows = db.execute("SELECT id, heading, text FROM chunks").fetchall()
            for cid, heading, text in rows:
                self._insert_fts(db, cid, heading, text)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('terms', ?)", (TERMS_KIND,))

    @staticmethod
    @contextlib.contextmanager
    def _transaction(db: Any) -> Iterator[None]:
        """BEGIN IMMEDIATE: take the write lock up front (a deferred upgrade can fail under WAL)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def write(self) -> contextlib.AbstractContextManager[None]:
        """One write transaction on the writer connection."""
        return self._transaction(self._db)

    def reader(self) -> Any:
        """This thread's read connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._db.close()

    # ---- files ---------------------------------------------------------------------------------
    def files(self, conn: Any = None) -> dict[str, FileRow]:
        rows = (conn or self._db).execute(
            "SELECT id, path, size, mtime_ns, sha256, state, error, chunks FROM files"
        )
        return {r[1]: FileRow(*r) for r in rows}

    def _upsert_file(
        self, path: str, size: int, mtime_ns: int, sha256: str | None, state: str, error: str | None, n: int
    ) -> int:
        row = self._db.execute(
            "INSERT INTO files(path, size, mtime_ns, sha256, state, error, chunks, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET size = excluded.size,"
            " mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, state = excluded.state,"
            " error = excluded.error, chunks = excluded.chunks, updated = excluded.updated RETURNING id",
            (path, size, mtime_ns, sha256, state, error, n, time.time()),
        ).fetchone()
        return row[0]

    def _delete_chunks(self, chunk_ids: Sequence[int]) -> None:
        db = self._db
        models = self.models()
        for cid in chunk_ids:
            db.execute("DELETE FROM chunks_fts WHERE rowid = ?", (cid,))
            for model in models:
                db.execute(f"DELETE FROM {model.table} WHERE rowid = ?", (cid,))
            db.execute("DELETE FROM embedded WHERE chunk_id = ?", (cid,))
            db.execute("DELETE FROM chunks WHERE id = ?", (cid,))

    def _chunk_ids(self, file_id: int) -> list[int]:
        return [r[0] for r in self._db.execute("SELECT id FROM chunks WHERE file_id = ?", (file_id,))]

    def set_unindexed(
        self, path: str, size: int, mtime_ns: int, state: str, reason: str, sha256: str | None = None
    ) -> None:
        """Record a file as skipped or in error (with the reason); its old chunks, if any, go."""
        with self.write():
            old = self._db.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
            if old:
                self._delete_chunks(self._chunk_ids(old[0]))
            self._upsert_file(path, size, mtime_ns, sha256, state, reason, 0)

    def replace_file(self, path: str, size: int, mtime_ns: int, sha256: str, chunks: Sequence[Chunk]) -> int:
        """Swap a file's chunks for new ones in one transaction; vectors of unchanged chunk texts are kept
        (copied to the new rows), so an edit re-embeds only what changed. Returns the file id."""
        db = self._db
        with self.write():
            file_id = self._upsert_file(path, size, mtime_ns, sha256, "indexed", None, len(chunks))
            old_ids = self._chunk_ids(file_id)
            new_ids = []
            for ord_, chunk in enumerate(chunks):
                row = db.execute(
                    "INSERT INTO chunks(file_id, ord, page, heading, start, end, text, embed_hash)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        file_id,
                        ord_,
                        chunk.page,
                        chunk.heading,
                        chunk.start,
                        chunk.end,
                        chunk.text,
                        _hash(embed_input(chunk.heading, chunk.text)),
                    ),
                ).fetchone()
                new_ids.append(row[0])
                self._insert_fts(db, row[0], chunk.heading, chunk.text)
            self._reuse_vectors(new_ids)
            self._delete_chunks(old_ids)
        return file_id

    @staticmethod
    def _insert_fts(db: Any, cid: int, heading: str | None, text: str) -> None:
        db.execute(
            "INSERT INTO chunks_fts(rowid, heading, body) VALUES (?, ?, ?)",
            (cid, terms.index_terms(heading or ""), terms.index_terms(text)),
        )

    def _reuse_vectors(self, new_ids: Sequence[int]) -> None:
        """Give new chunks the vectors of existing chunks with the same embedding input (any file)."""
        if not new_ids:
            return
        db = self._db
        low, high = min(new_ids), max(new_ids)
        for model in self.models():
            pairs = db.execute(
                "SELECT n.id, (SELECT o.id FROM chunks o JOIN embedded e ON e.chunk_id = o.id AND e.model = ?"
                "  WHERE o.embed_hash = n.embed_hash AND o.id NOT BETWEEN ? AND ? LIMIT 1)"
                " FROM chunks n WHERE n.id BETWEEN ? AND ?",
                (model.id, low, high, low, high),
            ).fetchall()
            for new_id, old_id in pairs:
                if old_id is None:
                    continue
                (vector,) = db.execute(
                    f"SELECT embedding FROM {model.table} WHERE rowid = ?", (old_id,)
                ).fetchone()
                db.execute(f"INSERT INTO {model.table}(rowid, embedding) VALUES (?, ?)", (new_id, vector))
                db.execute("INSERT INTO embedded VALUES (?, ?)", (model.id, new_id))

    def update_stat(self, file_id: int, path: str, size: int, mtime_ns: int) -> None:
        """Same content under a new stat or a new path (touched, or renamed): nothing is re-parsed."""
        with self.write():
            self._db.execute(
                "UPDATE files SET path = ?, size = ?, mtime_ns = ?, updated = ? WHERE id = ?",
                (path, size, mtime_ns, time.time(), file_id),
            )

    def delete_files(self, file_ids: Iterable[int]) -> None:
        with self.write():
            for file_id in file_ids:
                self._delete_chunks(self._chunk_ids(file_id))
                self._db.execute("DELETE FROM files WHERE id = ?", (file_id,))

    # ---- embedding models ----------------------------------------------------------------------
    def models(self, conn: Any = None) -> list[ModelRow]:
        rows = (conn or self._db).execute("SELECT id, model_id, dim, ready FROM models ORDER BY id")
        return [ModelRow(r[0], r[1], r[2], bool(r[3])) for r in rows]

    def model(self, model_id: str, conn: Any = None) -> ModelRow | None:
        return next((m for m in self.models(conn) if m.model_id == model_id), None)

    def add_model(self, model_id: str, dim: int) -> ModelRow:
        with self.write():
            (mid,) = self._db.execute(
                "INSERT INTO models(model_id, dim, ready, created) VALUES (?, ?, 0, ?) RETURNING id",
                (model_id, dim, time.time()),
            ).fetchone()
            self._db.execute(
                f"CREATE VIRTUAL TABLE vec_{mid} USING vec0(embedding float[{dim}] distance_metric=cosine)"
            )
        return ModelRow(mid, model_id, dim, False)

    def drop_model(self, model: ModelRow) -> None:
        with self.write():
            self._db.execute(f"DROP TABLE IF EXISTS {model.table}")
            self._db.execute("DELETE FROM embedded WHERE model = ?", (model.id,))
            self._db.execute("DELETE FROM models WHERE id = ?", (model.id,))

    def mark_ready(self, model: ModelRow) -> ModelRow:
        with self.write():
            self._db.execute("UPDATE models SET ready = 1 WHERE id = ?", (model.id,))
        return ModelRow(model.id, model.model_id, model.dim, True)

    def missing_vectors(self, model: ModelRow, limit: int) -> list[tuple[int, str]]:
        """(chunk id, embedding input) of chunks with no vector in `model`, oldest first."""
        rows = self._db.execute(
            "SELECT c.id, c.heading, c.text FROM chunks c WHERE NOT EXISTS"
            " (SELECT 1 FROM embedded e WHERE e.model = ? AND e.chunk_id = c.id) ORDER BY c.id LIMIT ?",
            (model.id, limit),
        ).fetchall()
        return [(cid, embed_input(heading, text)) for cid, heading, text in rows]

    def first_chunks(self, limit: int) -> list[tuple[int, str]]:
        """(chunk id, embedding input) of the first chunks: a new model's first batch."""
        rows = self._db.execute(
            "SELECT id, heading, text FROM chunks ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [(cid, embed_input(heading, text)) for cid, heading, text in rows]

    def chunk_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def count_missing(self, model: ModelRow, conn: Any = None) -> int:
        (n,) = (
            (conn or self._db)
            .execute(
                "SELECT count(*) FROM chunks c WHERE NOT EXISTS"
                " (SELECT 1 FROM embedded e WHERE e.model = ? AND e.chunk_id = c.id)",
                (model.id,),
            )
            .fetchone()
        )
        return n

    def add_vectors(self, model: ModelRow, ids: Sequence[int], vectors: Sequence[Sequence[float]]) -> int:
        """Store vectors of chunks that still exist (a chunk may have gone while it was embedded)."""
        db = self._db
        stored = 0
        with self.write():
            for cid, vector in zip(ids, vectors, strict=True):
                if not db.execute("SELECT 1 FROM chunks WHERE id = ?", (cid,)).fetchone():
                    continue
                if db.execute(
                    "SELECT 1 FROM embedded WHERE model = ? AND chunk_id = ?", (model.id, cid)
                ).fetchone():
                    continue
                db.execute(f"INSERT INTO {model.table}(rowid, embedding) VALUES (?, ?)", (cid, _blob(vector)))
                db.execute("INSERT INTO embedded VALUES (?, ?)", (model.id, cid))
                stored += 1
        return stored

    # ---- reading (any thread) ------------------------------------------------------------------
    def keyword_search(self, query: str, limit: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score: higher is better) for chunks matching any query term, best first."""
        expression = terms.match_expression(query)
        if expression is None:
            return []
        rows = self.reader().execute(
            "SELECT rowid, -bm25(chunks_fts, 2.0, 1.0) AS score FROM chunks_fts WHERE chunks_fts MATCH ?"
            " ORDER BY score DESC LIMIT ?",
            (expression, limit),
        )
        return [(r[0], r[1]) for r in rows]

    def vector_search(self, model: ModelRow, vector: Sequence[float], limit: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) of the nearest chunks, best first; VectorsGone when the model's
        vectors were dropped since it was picked (a new model finished re-embedding meanwhile)."""
        import apsw

        try:
            rows = self.reader().execute(
                f"SELECT rowid, distance FROM {model.table} WHERE embedding MATCH ? AND k = ?",
                (_blob(vector), min(limit, KNN_LIMIT)),
            )
            return [(r[0], 1.0 - r[1]) for r in rows]
        except apsw.SQLError as exc:
            if "no such table" in str(exc):
                raise VectorsGone(model.model_id) from exc
            raise

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.reader().execute(
            "SELECT c.id, f.path, c.page, c.heading, c.start, c.end, c.text FROM chunks c"
            f" JOIN files f ON f.id = c.file_id WHERE c.id IN ({marks})",
            tuple(ids),
        )
        return {r[0]: ChunkRow(*r) for r in rows}

    def counts(self, conn: Any = None) -> dict[str, int]:
        conn = conn or self.reader()
        out = {state: 0 for state in ("indexed", "error", "skipped")}
        for state, n in conn.execute("SELECT state, count(*) FROM files GROUP BY state"):
            out[state] = n
        (out["chunks"],) = conn.execute("SELECT count(*) FROM chunks").fetchone()
        return out
