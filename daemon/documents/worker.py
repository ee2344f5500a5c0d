"""The documents worker: a child process of the daemon that holds every collection's index (parsing, chunking,
embedding, search), so the daemon itself never loads SQLite, sqlite-vec or the document parsers.

    python -m qwendesk.daemon.documents.worker --data-dir DIR [--log-level info]

Why a process of its own (measured in one interpreter after the daemon's own imports, 59.9 MiB): apsw and
sqlite-vec +1 MiB (+11.6 if sqlite_vec's package is imported: it imports numpy), pypdf +14.5, python-docx
(lxml) +7.8, BeautifulSoup +4.2; Python never gives imported modules back, so a daemon that indexed once
would idle at ~90 MiB against a limit of 80. This process starts on the first search or folder change and
the daemon stops it when idle.

It talks to the daemon over stdin/stdout, one JSON message per line (rpc.py); fd 1 is re-pointed at
stderr so that nothing else lands on the channel, and stderr (the log) is read by the daemon. Requests to
models (embeddings, rerank) go back to the daemon, which runs them on the model's engine, starting the
model on demand. The worker exits when stdin closes.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from qwendesk.models.errors import BadRequest, QwendeskError

from . import rpc
from .collection import Collection
from .embedder import HttpEmbedder
from .errors import DocumentsUnavailable, EmbeddingError
from .library import Library
from .search import Reranker
from .sync import Progress, SyncReport

log = logging.getLogger("qwendesk.documents.worker")

DAEMON = "http://qwendesk-daemon"  # requests to it travel over the channel (DaemonTransport), never a socket
EMBED_BATCH = 32  # texts per embeddings request (a sync embeds 64 chunks between checks for new changes)
PROGRESS_INTERVAL = 0.5  # seconds between progress messages of one collection (phase changes always go)
HANDLER_THREADS = 4

_local = threading.local()


@contextlib.contextmanager
def interactive() -> Iterator[None]:
    """Model requests made inside answer someone who waits (a search): the daemon does not wait for a
    stopped model to start or for a busy one; it says so at once and the search falls back to keywords."""
    _local.interactive = True
    try:
        yield
    finally:
        _local.interactive = False


class Channel:
    """The worker's end of the line protocol: sends messages, and blocks a thread on a call to the daemon."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._pending: dict[str, Future[Any]] = {}
        self._ids = itertools.count(1)
        self._closed = False

    def send(self, message: dict[str, Any]) -> None:
        data = rpc.encode(message)
        with self._lock:
            if self._closed:
                raise DocumentsUnavailable("The daemon went away.")
            self._out.write(data)
            self._out.flush()

    def notify(self, method: str, params: dict[str, Any]) -> None:
        try:
            self.send({"method": method, "params": params})
        except (OSError, DocumentsUnavailable):
            log.debug("dropped %s: the daemon went away", method)

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """Ask the daemon and wait for its answer; its error is raised as the QwendeskError it names."""
        future: Future[Any] = Future()
        key = f"w{next(self._ids)}"
        with self._lock:
            self._pending[key] = future
        try:
            self.send({"id": key, "method": method, "params": params})
        except (OSError, DocumentsUnavailable) as exc:
            with self._lock:
                self._pending.pop(key, None)
            raise DocumentsUnavailable(f"The daemon went away ({exc}).") from exc
        return future.result()

    def answer(self, message: dict[str, Any]) -> None:
        """The daemon's answer to one of our calls."""
        with self._lock:
            future = self._pending.pop(str(message.get("id")), None)
        if future is None:
            return
        if "error" in message:
            future.set_exception(rpc.error_from(message["error"]))
        else:
            future.set_result(message.get("result"))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending, self._pending = list(self._pending.values()), {}
        for future in pending:
            future.set_exception(DocumentsUnavailable("The daemon went away."))


class DaemonTransport(httpx.BaseTransport):
    """An httpx transport whose requests the daemon runs on a model's engine (HttpEmbedder speaks through it)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        params = {
            "service": "rerank" if path.endswith("/rerank") else "embeddings",
            "path": path,
            "body": json.loads(request.read()),
            "interactive": bool(getattr(_local, "interactive", False)),
        }
        try:
            result = self.channel.call("engine", params)
        except QwendeskError as exc:  # the model cannot answer now: raised as is, not as an HTTP failure
            raise EmbeddingError(exc.message) from exc
        body = result.get("body")
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return httpx.Response(int(result["status"]), content=content, request=request)


class Worker:
    """The collections of one data folder, driven by the daemon's requests (the `on_*` methods)."""

    def __init__(self, data_dir: Path, channel: Channel) -> None:
        self.data_dir = data_dir
        self.channel = channel
        self.http = httpx.Client(transport=DaemonTransport(channel), base_url=DAEMON, timeout=None)
        self.library: Library | None = None
        self.embedding_model: str | None = None
        self.rerank_model: str | None = None
        self.embedding_models: set[str] = set()  # every embedding model the daemon has: old vectors' queries
        self.errors: dict[str, str] = {}  # collection -> what went wrong in its last sync
        self._sent: dict[str, tuple[str, float]] = {}  # collection -> (phase, time) of the last progress sent
        self._lock = threading.Lock()

    def close(self) -> None:
        if self.library is not None:
            self.library.close()
        self.http.close()

    def handle(self, method: str, params: dict[str, Any]) -> Any:
        handler = getattr(self, f"on_{method}", None)
        if handler is None:
            raise BadRequest(f"The documents worker has no method {method!r}.")
        return handler(**params)

    # ---- models --------------------------------------------------------------------------------
    def _embedder(self, model: str) -> HttpEmbedder:
        return HttpEmbedder(
            f"{DAEMON}/v1/embeddings", model, model_id=model, batch_size=EMBED_BATCH, client=self.http
        )

    def _query_embedder_for(self, model_id: str) -> HttpEmbedder | None:
        """An embedder for vectors a previous model left, while the daemon still has that model."""
        return self._embedder(model_id) if model_id in self.embedding_models else None

    def _reranker(self, model: str) -> Reranker:
        def rerank(query: str, texts: list[str]) -> list[float]:
            response = self.http.post("/v1/rerank", json={"model": model, "query": query, "documents": texts})
            if response.status_code != 200:
                raise EmbeddingError(
                    f"the reranker {model} refused (HTTP {response.status_code}: {response.text[:200]})"
                )
            scores = [float("-inf")] * len(texts)
            for item in response.json().get("results", []):
                scores[int(item["index"])] = float(item["relevance_score"])
            return scores

        return rerank

    # ---- requests from the daemon --------------------------------------------------------------
    def on_configure(
        self, embedding_model: str | None, rerank_model: str | None, embedding_models: list[str]
    ) -> None:
        """The models to use (the first call opens the library and starts syncing every collection)."""
        self.embedding_models = set(embedding_models)
        embedder = self._embedder(embedding_model) if embedding_model else None
        reranker = self._reranker(rerank_model) if rerank_model else None
        if self.library is None:
            self.library = Library(
                self.data_dir, embedder, reranker=reranker, query_embedder_for=self._query_embedder_for
            )
            self.embedding_model, self.rerank_model = embedding_model, rerank_model
            self.library.watch(self._progress, self._synced, self._failed, watch_folders=False)
            return
        if embedding_model != self.embedding_model:
            log.info("embedding model: %s (was %s)", embedding_model, self.embedding_model)
            self.embedding_model = embedding_model
            self.library.set_embedder(embedder)  # re-embeds in the background; search keeps the old vectors
        if rerank_model != self.rerank_model:
            self.rerank_model = rerank_model
            self.library.set_reranker(reranker)

    @property
    def _library(self) -> Library:
        if self.library is None:
            raise DocumentsUnavailable("The documents worker is not configured yet.")
        return self.library

    def on_status(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        library = self._library
        return [self._status(library.get(name)) for name in (names or library.names())]

    def on_search(self, query: str, k: int, names: list[str] | None = None, mode: str = "hybrid") -> dict:
        with interactive():
            result = self._library.search(query, k, names, mode=mode)  # type: ignore[arg-type]
        return result.as_dict()

    def on_add(self, name: str, folder: str) -> dict[str, Any]:
        return self._status(self._library.add(name, Path(folder)))

    def on_remove(self, name: str) -> None:
        self._library.remove(name)
        self.errors.pop(name, None)

    def on_poke(self, names: list[str] | None = None) -> None:
        self._library.poke(names)

    def on_idle(self) -> bool:
        """Nothing syncing or about to: the daemon may stop this process."""
        return self.library is None or not self.library.active()

    # ---- what the collections report -----------------------------------------------------------
    def _status(self, collection: Collection) -> dict[str, Any]:
        status = collection.status().as_dict()
        status["last_error"] = self.errors.get(collection.name)
        return status

    def _progress(self, progress: Progress) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._sent.get(progress.collection)
            if last is not None and last[0] == progress.phase and now - last[1] < PROGRESS_INTERVAL:
                return
            self._sent[progress.collection] = (progress.phase, now)
        self.channel.notify("progress", asdict(progress))

    def _synced(self, collection: Collection, report: SyncReport) -> None:
        if report.embed_error:
            self.errors[collection.name] = report.embed_error
        else:
            self.errors.pop(collection.name, None)
        summary = {
            "added": len(report.added),
            "updated": len(report.updated),
            "renamed": len(report.renamed),
            "removed": len(report.removed),
            "unchanged": report.unchanged,
            "errors": len(report.errors),
            "skipped": len(report.skipped),
            "pending": len(report.pending),
            "chunks_written": report.chunks_written,
            "texts_embedded": report.texts_embedded,
            "embed_error": report.embed_error,
            "seconds": round(report.seconds, 3),
        }
        self.channel.notify(
            "synced", {"collection": collection.name, "status": self._status(collection), "report": summary}
        )

    def _failed(self, collection: Collection, exc: Exception) -> None:
        message = exc.message if isinstance(exc, QwendeskError) else f"{type(exc).__name__}: {exc}"
        self.errors[collection.name] = message
        try:
            status: dict[str, Any] | None = self._status(collection)
        except Exception:  # the index itself may be what failed
            status = None
        self.channel.notify("failed", {"collection": collection.name, "error": message, "status": status})


def serve(worker: Worker, channel: Channel, message: dict[str, Any]) -> None:
    """Run one request from the daemon and send its answer."""
    try:
        result = worker.handle(str(message["method"]), dict(message.get("params") or {}))
        reply: dict[str, Any] = {"id": message["id"], "result": result}
    except Exception as exc:
        if not isinstance(exc, QwendeskError):
            log.exception("documents request %s failed", message.get("method"))
        reply = {"id": message["id"], "error": rpc.error_payload(exc)}
    try:
        channel.send(reply)
    except (OSError, DocumentsUnavailable):
        log.debug("could not answer %s: the daemon went away", message.get("method"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qwendesk-documents-worker")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    out = os.fdopen(os.dup(1), "wb")  # the channel; fd 1 itself now writes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    channel = Channel(out)
    worker = Worker(args.data_dir, channel)
    pool = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="qwendesk-docs-request")
    try:
        for line in sys.stdin.buffer:
            try:
                message = rpc.decode(line)
            except ValueError:
                log.warning("not a message from the daemon: %r", line[:200])
                continue
            if "method" not in message:
                channel.answer(message)
            elif "id" in message:
                pool.submit(serve, worker, channel, message)
    finally:  # stdin closed: the daemon stops us (or died)
        channel.close()
        pool.shutdown(wait=False, cancel_futures=True)
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
