"""The daemon's side of document collections: the worker process that holds the indexes (started on demand,
stopped when idle), the folders watched while it is stopped, which models it uses, progress on the event
bus, and the calls the routes make. Everything here runs on the daemon's event loop.

The daemon never opens an index itself (worker.py says why); what it shows of a collection while the
worker is stopped is the status the worker last reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from qwendesk.daemon.config import Settings
from qwendesk.daemon.events import EventBus
from qwendesk.daemon.watcher import FolderWatcher
from qwendesk.models.errors import QwendeskError

from . import rpc
from .errors import DocumentsUnavailable
from .library import DEFAULT_COLLECTION, collections_root, read_registry
from .model_choice import Choice, choose
from .parsers import is_supported
from .scan import IGNORED_FOLDERS, wanted_change
from .watch import DEBOUNCE_SECONDS

log = logging.getLogger(__name__)
worker_log = logging.getLogger("qwendesk.documents.worker")

IDLE_CHECK_SECONDS = 2.0
START_TIMEOUT = 60.0  # the worker's imports and opening the library
STOP_TIMEOUT = 10.0  # a sync in its file phase finishes the file it is on
CALL_TIMEOUT = 120.0  # one request to the worker (a search that waits for a busy index)
CRASH_BACKOFF = 30.0  # after the worker died, folder changes wait this long before starting it again

# The worker asks the daemon to run a request on a model: {"service", "path", "body", "interactive"} ->
# (HTTP status, body bytes). The routes layer provides it (it owns the model lifecycle).
EngineCall = Callable[[dict[str, Any]], Awaitable[tuple[int, bytes]]]
ModelsCall = Callable[[], list[Any]]


class WorkerProcess:
    """The documents worker seen from the event loop: starts it, sends it requests, answers its requests
    (`serve`), hands its notifications to `notify`, and tells `on_exit` when it ends."""

    def __init__(
        self,
        command: list[str],
        serve: Callable[[str, dict[str, Any]], Awaitable[Any]],
        notify: Callable[[str, dict[str, Any]], None],
        on_exit: Callable[[WorkerProcess, int | None, bool], None],
    ) -> None:
        self.command = command
        self.serve, self.notify, self.on_exit = serve, notify, on_exit
        self.proc: asyncio.subprocess.Process | None = None
        self.busy = 0  # requests in flight, either way
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and not self._stopping

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=rpc.MAX_LINE,
        )
        self._spawn(self._read())
        self._spawn(self._log_stderr())

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def call(self, method: str, params: dict[str, Any], timeout: float | None = CALL_TIMEOUT) -> Any:
        """Send a request and wait for its answer; the worker's error is raised as the error it names."""
        if not self.running:
            raise DocumentsUnavailable("The documents worker is not running; try again.")
        key = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        self.busy += 1
        try:
            await self._write(rpc.encode({"id": key, "method": method, "params": params}))
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise DocumentsUnavailable(
                f"The documents worker did not answer {method} within {timeout:.0f} s; try again."
            ) from None
        finally:
            self._pending.pop(key, None)
            self.busy -= 1

    async def _write(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise DocumentsUnavailable(f"The documents worker went away ({exc}); try again.") from exc

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                try:
                    message = rpc.decode(line)
                except ValueError:
                    worker_log.warning("not a message: %r", line[:200])
                    continue
                if "method" not in message:
                    future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
                    if future is not None and not future.done():
                        if "error" in message:
                            future.set_exception(rpc.error_from(message["error"]))
                        else:
                            future.set_result(message.get("result"))
                elif "id" in message:
                    self._spawn(self._answer(message))
                else:
                    self.notify(str(message["method"]), dict(message.get("params") or {}))
        except (ValueError, asyncio.LimitOverrunError) as exc:  # a line over the limit: the channel is lost
            worker_log.error("the documents worker's channel broke: %s", exc)
            self.proc.kill()
        code = await self.proc.wait()
        expected = self._stopping
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    DocumentsUnavailable(
                        f"The documents worker stopped (exit status {code}) before answering: see the daemon "
                        "log. The next request starts it again."
                    )
                )
        self.on_exit(self, code, expected)

    async def _answer(self, message: dict[str, Any]) -> None:
        """Run one request of the worker's and send the answer (bytes from `serve` are a JSON result as is)."""
        self.busy += 1
        try:
            result = await self.serve(str(message["method"]), dict(message.get("params") or {}))
            if isinstance(result, bytes):
                reply = b'{"id":' + json.dumps(message["id"]).encode() + b',"result":' + result + b"}\n"
            else:
                reply = rpc.encode({"id": message["id"], "result": result})
        except Exception as exc:
            if not isinstance(exc, QwendeskError):
                log.exception("the documents worker's %s request failed", message.get("method"))
            reply = rpc.encode({"id": message["id"], "error": rpc.error_payload(exc)})
        finally:
            self.busy -= 1
        with contextlib.suppress(DocumentsUnavailable):
            await self._write(reply)

    async def _log_stderr(self) -> None:
        """The worker's log lines ("LEVEL name: message") into the daemon's log at their level."""
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode("utf-8", errors="replace").rstrip()
            level, _, rest = text.partition(" ")
            number = logging.getLevelName(level)
            if isinstance(number, int):
                worker_log.log(number, "%s", rest)
            elif text:
                worker_log.info("%s", text)

    async def stop(self) -> None:
        """Close its stdin (it stops its syncs and exits); kill it if it has not exited in time."""
        if self.proc is None:
            return
        self._stopping = True
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                log.warning("the documents worker did not stop in %.0f s: killing it", STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        for task in list(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 5)


def folder_has_documents(folder: Path) -> bool:
    """Whether a folder holds any file a collection reads (stops at the first; hidden folders skipped)."""
    for _, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in IGNORED_FOLDERS]
        if any(is_supported(f) and not f.startswith(".") for f in filenames):
            return True
    return False


class DocumentsService:
    """Collections as the daemon serves them (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: EngineCall,
        models: ModelsCall,
        events: Callable[[], EventBus],
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.on_stop = on_stop
        self.data_dir = settings.data_dir
        self.root = collections_root(self.data_dir)
        self.engine, self.models, self.events = engine, models, events  # called when used
        self.error: str | None = None  # why documents could not start at all
        self.keep_alive = settings.documents_keep_alive
        self.folders: dict[str, Path] = {}
        self.registry_error: str | None = None
        self.statuses: dict[str, dict[str, Any]] = {}  # what the worker last reported of each collection
        self.progress: dict[str, dict[str, Any]] = {}  # syncs in progress
        self.embedding = Choice(None)
        self.rerank = Choice(None)
        self.embedding_models: list[str] = []
        # Embedding requests run for the worker since start-up: indexing (requests, texts) and search queries.
        self.embedded = {"requests": 0, "texts": 0, "queries": 0}
        self.worker: WorkerProcess | None = None
        self._watchers: dict[str, FolderWatcher] = {}
        self._present: dict[str, bool] = {}  # whether each folder existed at the last check
        self._start_lock = asyncio.Lock()
        self._last_activity = time.monotonic()
        self._crashed_at: float | None = None
        self._wanted = False  # a change came in while the worker could not be started
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- start-up and shut-down ----------------------------------------------------------------
    async def start(self) -> None:
        """Watch the folders; start the worker now only if there is something to bring up to date.

        A failure here leaves the daemon serving everything else; the documents API then says why."""
        self._loop = asyncio.get_running_loop()
        try:
            self.choose_models()
            await self._load_registry()
            self._spawn(self._follow_models())
            self._spawn(self._idle_loop())
            if await asyncio.to_thread(self._has_work):
                self._spawn(self._start_quietly())
        except Exception as exc:
            log.exception("documents could not start")
            self.error = (
                f"Document collections are unavailable: {exc}. See the daemon log in {self.settings.log_dir}."
            )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        watchers, self._watchers = list(self._watchers.values()), {}
        await asyncio.to_thread(lambda: [w.stop() for w in watchers])
        try:
            if self.worker is not None:
                await self.worker.stop()
        finally:
            if self.on_stop is not None:
                await self.on_stop()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if isinstance(exc, QwendeskError):
                log.warning("documents: %s", exc.message)
            else:
                log.error("documents task failed", exc_info=exc)

    def _has_work(self) -> bool:
        """An index to bring up to date, or a folder with documents and no index yet."""
        if self.root.is_dir() and any(self.root.glob("*.sqlite")):
            return True
        return any(f.is_dir() and folder_has_documents(f) for f in self.folders.values())

    # ---- the folders ---------------------------------------------------------------------------
    async def _load_registry(self) -> None:
        """Read the list of collections and watch every folder that exists (the default one is created)."""
        try:
            self.folders = await asyncio.to_thread(read_registry, self.data_dir)
            self.registry_error = None
        except QwendeskError as exc:
            self.registry_error = exc.message
            self.folders = {DEFAULT_COLLECTION: self.data_dir / "documents"}
        self.folders[DEFAULT_COLLECTION].mkdir(parents=True, exist_ok=True)
        for name in [n for n in self._watchers if n not in self.folders]:
            watcher = self._watchers.pop(name)
            await asyncio.to_thread(watcher.stop)
        for name in list(self.statuses):
            if name not in self.folders:
                del self.statuses[name]
        self._present = {n: p for n, p in self._present.items() if n in self.folders}
        for name, folder in self.folders.items():
            self._present[name] = folder.is_dir()
            if name not in self._watchers and self._present[name]:
                await asyncio.to_thread(self._watch, name, folder)

    def _watch(self, name: str, folder: Path) -> None:
        watcher = FolderWatcher(
            [folder], lambda: self._changed_threadsafe(name), debounce=DEBOUNCE_SECONDS, wanted=wanted_change
        )
        watcher.start()
        self._watchers[name] = watcher

    def _changed_threadsafe(self, name: str) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._changed, name)

    def _changed(self, name: str) -> None:
        """A folder changed: the running worker syncs it; a stopped one is started (it syncs everything)."""
        self._last_activity = time.monotonic()
        worker = self.worker
        if worker is not None and worker.running:
            self._spawn(worker.call("poke", {"names": [name]}))
        elif self._crashed_at is not None and time.monotonic() - self._crashed_at < CRASH_BACKOFF:
            self._wanted = True  # the idle loop starts it once the back-off has passed
        else:
            self._spawn(self._start_quietly())

    async def _check_folders(self) -> None:
        """A folder that went missing (an unplugged drive) is synced (which reports it, keeping its index);
        one that is back is watched again (the old watch followed the old folder) and synced."""
        for name, folder in list(self.folders.items()):
            present = folder.is_dir()
            was = self._present.get(name)
            self._present[name] = present
            if was is None or was == present:
                continue
            old = self._watchers.pop(name, None)
            if old is not None:
                await asyncio.to_thread(old.stop)
            if present:
                await asyncio.to_thread(self._watch, name, folder)
            self._changed(name)

    # ---- the models ----------------------------------------------------------------------------
    def choose_models(self) -> bool:
        """Pick the embedding model and reranker from the settings and the models folders; True if changed."""
        embed_file = rerank_file = None
        with contextlib.suppress(QwendeskError, KeyError):
            from qwendesk.models.catalog import load_catalog

            catalog = load_catalog(self.settings.catalog_file)
            with contextlib.suppress(QwendeskError):
                embed_file = catalog.default_for("embedding").main_file
            with contextlib.suppress(QwendeskError):
                rerank_file = catalog.default_for("rerank").main_file
        views = self.models()
        before = (self.embedding, self.rerank, self.embedding_models)
        self.embedding = choose(views, "embedding", self.settings.embedding_model, embed_file)
        self.rerank = choose(views, "rerank", self.settings.rerank_model, rerank_file)
        self.embedding_models = sorted(v.name for v in views if v.kind == "embedding")
        return before != (self.embedding, self.rerank, self.embedding_models)

    def _configuration(self) -> dict[str, Any]:
        return {
            "embedding_model": self.embedding.name,
            "rerank_model": self.rerank.name,
            "embedding_models": self.embedding_models,
        }

    async def _follow_models(self) -> None:
        """Re-pick the models when the models folders change (a pulled embedding model is used at once:
        the collections are embedded with it in the background)."""
        async with self.events().subscribe() as queue:
            while True:
                event, _ = await queue.get()
                if event != "snapshot" or not self.choose_models():
                    continue
                log.info("documents: embedding model %s, reranker %s", self.embedding.name, self.rerank.name)
                worker = self.worker
                try:
                    if worker is not None and worker.running:
                        await worker.call("configure", self._configuration())
                    elif self.embedding.name and await asyncio.to_thread(self._has_work):
                        await self._start_quietly()
                except QwendeskError as exc:
                    log.warning("documents: could not switch models: %s", exc.message)

    def pull_hint(self) -> str | None:
        """The command that gets the catalog's default embedding model."""
        with contextlib.suppress(QwendeskError, KeyError):
            from qwendesk.models.catalog import load_catalog

            return f"qwendesk pull {load_catalog(self.settings.catalog_file).default_for('embedding').model.name}"
        return None

    def note(self) -> str | None:
        """Why search is by keywords only, for people (None: an embedding model is in use)."""
        if self.embedding.name:
            return None
        if self.settings.embedding_model and self.embedding.problem is None:  # set to "none"
            return "Search uses keywords only (BM25): embedding_model is set to none."
        hint = self.pull_hint()
        reason = self.embedding.problem or "there is no embedding model in the models folders"
        get = f" Run `{hint}` for search by meaning." if hint else ""
        return f"Search uses keywords only (BM25): {reason}.{get}".replace("..", ".")

    # ---- the worker ----------------------------------------------------------------------------
    async def _start_quietly(self) -> None:
        with contextlib.suppress(QwendeskError):  # logged by ensure_worker; the next request says it
            await self.ensure_worker()

    async def ensure_worker(self) -> WorkerProcess:
        """The running worker, started (and configured: it then syncs every collection) if needed."""
        async with self._start_lock:
            if self.worker is not None and self.worker.running:
                return self.worker
            self._last_activity = time.monotonic()
            command = [
                sys.executable, "-m", "qwendesk.daemon.documents.worker",
                "--data-dir", str(self.data_dir), "--log-level", self.settings.log_level,
            ]  # fmt: skip
            worker = WorkerProcess(command, self._serve, self._notified, self._exited)
            try:
                await worker.start()
                await worker.call("configure", self._configuration(), timeout=START_TIMEOUT)
            except (OSError, QwendeskError) as exc:
                await worker.stop()
                self._crashed_at = time.monotonic()
                message = exc.message if isinstance(exc, QwendeskError) else str(exc)
                log.warning("the documents worker could not start: %s", message)
                raise DocumentsUnavailable(
                    f"The documents indexer could not start ({message}). See the daemon log in "
                    f"{self.settings.log_dir}."
                ) from exc
            log.info("documents worker started (pid %s)", worker.pid)
            self.worker, self._crashed_at, self._wanted = worker, None, False
            return worker

    def _exited(self, worker: WorkerProcess, code: int | None, expected: bool) -> None:
        if worker is not self.worker:
            return
        if expected:
            log.info("documents worker stopped")
        else:
            log.warning("the documents worker exited unexpectedly (status %s)", code)
            self._crashed_at = time.monotonic()
        for name in list(self.progress):
            self._publish_progress({"collection": name, "phase": "done"})

    async def _stop_worker(self) -> None:
        worker = self.worker
        if worker is not None:
            await worker.stop()

    async def _idle_loop(self) -> None:
        """Stop the worker once nothing has used it for `documents_keep_alive` seconds; catch up on folders."""
        while True:
            await asyncio.sleep(IDLE_CHECK_SECONDS)
            try:
                await self._idle_check()
            except Exception:  # the loop must outlive any one check
                log.exception("documents idle check failed")

    async def _idle_check(self) -> None:
        await self._check_folders()
        now = time.monotonic()
        worker = self.worker
        if worker is None or not worker.running:
            if self._wanted and (self._crashed_at is None or now - self._crashed_at >= CRASH_BACKOFF):
                self._wanted = False
                await self._start_quietly()
            return
        if (
            self.keep_alive <= 0
            or worker.busy
            or self.progress
            or now - self._last_activity < self.keep_alive
        ):
            return
        try:
            idle = await worker.call("idle", {}, timeout=10)
        except QwendeskError:
            return
        if idle and not worker.busy and not self.progress:
            log.info("documents worker idle for %.0f s: stopping it", now - self._last_activity)
            await self._stop_worker()

    async def _call(self, method: str, params: dict[str, Any], timeout: float | None = CALL_TIMEOUT) -> Any:
        if self.error:
            raise DocumentsUnavailable(self.error)
        self._last_activity = time.monotonic()
        worker = await self.ensure_worker()
        try:
            return await worker.call(method, params, timeout)
        finally:
            self._last_activity = time.monotonic()

    # ---- what the worker sends -----------------------------------------------------------------
    async def _serve(self, method: str, params: dict[str, Any]) -> Any:
        """A request of the worker's: run a model request (the only kind it makes)."""
        self._last_activity = time.monotonic()
        if method != "engine":
            raise QwendeskError(f"The daemon has no method {method!r} for the documents worker.")
        body = params.get("body") or {}
        if params.get("service") == "embeddings":
            texts = body.get("input")
            if params.get("interactive"):
                self.embedded["queries"] += 1
            else:
                self.embedded["requests"] += 1
                self.embedded["texts"] += len(texts) if isinstance(texts, list) else 1
        status, data = await self.engine(params)
        self._last_activity = time.monotonic()
        if status == 200 and data.lstrip().startswith(b"{"):
            # The engine's JSON goes through unparsed (a batch of vectors is megabytes of floats);
            # JSON allows a raw newline only between tokens, so replacing it keeps it valid.
            return b'{"status":200,"body":' + data.replace(b"\r", b" ").replace(b"\n", b" ") + b"}"
        return {"status": status, "body": data.decode("utf-8", errors="replace")}

    def _notified(self, method: str, params: dict[str, Any]) -> None:
        self._last_activity = time.monotonic()
        name = str(params.get("collection"))
        if method == "progress":
            self._publish_progress(params)
        elif method in ("synced", "failed"):
            if params.get("status"):
                self.statuses[name] = params["status"]
            if method == "failed":
                self.statuses.setdefault(name, self._empty_status(name))["last_error"] = params.get("error")
            self.progress.pop(name, None)
            if method == "synced":
                report = params.get("report") or {}
                log.info(
                    "collection %s synced: %s", name, ", ".join(f"{k} {v}" for k, v in report.items() if v)
                )
            self.events().publish("collection", self.view(name))

    def _publish_progress(self, progress: dict[str, Any]) -> None:
        name = str(progress.get("collection"))
        if progress.get("phase") == "done":
            self.progress.pop(name, None)
        else:
            self.progress[name] = progress
        self.events().publish("indexing", progress)

    # ---- what the routes call ------------------------------------------------------------------
    def _empty_status(self, name: str) -> dict[str, Any]:
        return {
            "name": name, "folder": str(self.folders.get(name, "")), "files": 0, "errors": 0, "skipped": 0,
            "chunks": 0, "embedding_model": self.embedding.name, "search_model": None,
            "vectors_missing": None, "syncing": False, "last_sync": None, "problems": [], "last_error": None,
        }  # fmt: skip

    def view(self, name: str) -> dict[str, Any]:
        """One collection as the API shows it: the worker's status, live progress, state and search mode."""
        status = dict(self.statuses.get(name) or self._empty_status(name))
        folder = self.folders.get(name)
        progress = self.progress.get(name)
        status["name"] = name
        status["folder"] = str(folder) if folder is not None else status.get("folder")
        status["progress"] = progress
        missing = folder is not None and not folder.is_dir()
        waiting = status.get("last_sync") is None and self.worker is not None and self.worker.running
        if progress is not None:
            status["state"] = "embedding" if progress.get("phase") == "embed" else "indexing"
        elif waiting and not missing:  # added, or the worker just started: its first sync comes
            status["state"] = "indexing"
        elif missing or status.get("last_error"):
            status["state"] = "error"
        else:
            status["state"] = "ready"
        if missing and not status.get("last_error"):
            status["last_error"] = (
                f"The folder {folder} is missing: reconnect or restore it, or remove the collection."
            )
        status["search"] = "hybrid" if status.get("search_model") else "keywords"
        if status["search"] == "keywords":
            if not self.embedding.name:
                status["note"] = self.note()
            elif status.get("chunks"):
                left = status.get("vectors_missing")
                status["note"] = f"Keyword search until the vectors of {self.embedding.name} are computed" + (
                    f" ({left} chunks left)." if left else "."
                )
            else:
                status["note"] = None
        else:
            status["note"] = None
        return status

    async def collections(self) -> dict[str, Any]:
        """Every collection (fresh from the worker when it runs), the models used, and the keyword-only note."""
        if self.error or self.registry_error:
            raise DocumentsUnavailable(self.error or str(self.registry_error))
        worker = self.worker
        if worker is not None and worker.running:
            with contextlib.suppress(QwendeskError):
                for status in await worker.call("status", {}):
                    self.statuses[status["name"]] = status
        return {
            "collections": [self.view(name) for name in sorted(self.folders)],
            "embedding_model": self.embedding.name,
            "rerank_model": self.rerank.name,
            "note": self.note(),
            "pull_command": None if self.embedding.name else self.pull_hint(),
            "documents_folder": str(self.folders.get(DEFAULT_COLLECTION, self.data_dir / "documents")),
            "worker": {"running": bool(worker and worker.running), "pid": worker.pid if worker else None},
            "embedded": dict(self.embedded),
        }

    async def add(self, name: str, folder: str) -> dict[str, Any]:
        status = await self._call("add", {"name": name, "folder": folder})
        self.statuses.setdefault(name, status)  # its first sync may have reported already (newer)
        await self._load_registry()
        view = self.view(name)
        self.events().publish("collection", view)
        return view

    async def remove(self, name: str) -> None:
        await self._call("remove", {"name": name})
        self.statuses.pop(name, None)
        self.progress.pop(name, None)
        await self._load_registry()
        self.events().publish("collection", {"name": name, "removed": True})

    async def search(
        self, query: str, k: int = 5, names: list[str] | None = None, mode: str = "hybrid"
    ) -> dict[str, Any]:
        """The k best chunks of the named collections (all by default): {"results", "mode", "note"}."""
        result = await self._call("search", {"query": query, "k": k, "names": names, "mode": mode})
        if result.get("mode") == "bm25" and mode != "bm25" and not self.embedding.name:
            result["note"] = self.note()
        return result
