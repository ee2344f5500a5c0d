"""Model lifecycle: the models found in the folders, their state, and starting/stopping them in Xinference."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .accelerator import Accelerator, launch_kwargs, memory_snapshot
from .config import Settings
from .errors import Conflict, InsufficientResources, NotFound, QwendeskError
from .events import EventBus
from .schemas import ModelState, ModelView, StartRequest
from .xinference import Supervisor
from .xinference.client import XinferenceClient

log = logging.getLogger(__name__)

# The model process Xinference spawns imports torch before llama.cpp loads (~600 MiB measured here).
MODEL_PROCESS_OVERHEAD = 600 * 2**20
GiB = 2**30


@dataclass
class RunningModel:
    """What a proxy needs to reach a running model."""

    name: str
    uid: str
    client: XinferenceClient
    # The llama-server inside the model process (embedded mode): talking to it directly lets a client
    # disconnect stop generation, which Xinference's own API does not do.
    engine_url: str | None = None
    engine_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Engine:
    """Address and secret of a model's own llama-server, fixed by us at launch."""

    url: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @classmethod
    def new(cls) -> Engine:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return cls(f"http://127.0.0.1:{port}", secrets.token_urlsafe(32))

    def launch_kwargs(self) -> dict[str, Any]:
        """xllamacpp CommonParams fields: its HTTP server on our port, refusing requests without our key."""
        return {"port": int(self.url.rsplit(":", 1)[1]), "api_keys": [self.key]}


@dataclass
class ModelEntry:
    """One model the daemon knows of, with its lifecycle state."""

    files: registry.ModelFiles
    state: ModelState = ModelState.AVAILABLE
    error: str | None = None
    uid: str | None = None
    options: StartRequest = field(default_factory=StartRequest)
    n_ctx: int | None = None
    on_demand: bool = False  # started by a /v1 request, so stopped again when idle
    relaunch: bool = False  # was running when Xinference crashed: start again once it is back
    engine: Engine | None = None
    busy: int = 0
    last_used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.files.name

    def view(self) -> ModelView:
        fields = self.files.view_fields()
        unusable = self.files.error is not None and not self.files.pending
        fields["state"] = ModelState.ERROR if unusable else self.state
        fields["error"] = self.error or fields["error"]
        fields["n_ctx"] = self.n_ctx if self.state == ModelState.RUNNING else None
        return ModelView(**fields)


class ModelManager:
    """Owns the model table; every state change is published on the event bus."""

    def __init__(self, settings: Settings, supervisor: Supervisor, accel: Accelerator, events: EventBus):
        self.settings = settings
        self.supervisor = supervisor
        self.accel = accel
        self.events = events
        self.models: dict[str, ModelEntry] = {}
        self._registered: dict[str, str] = {}  # name -> Xinference model type it is registered as
        self._rescan_lock = asyncio.Lock()
        self._rescan_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_activity = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: Any = None
        supervisor.on_state_change = self._on_supervisor_state
        supervisor.on_restarted = self._on_supervisor_restarted

    # ---- start-up and shut-down ----------------------------------------------------------------
    async def start_up(self) -> None:
        """Scan the folders, start watching them, and start Xinference now if asked to."""
        self._loop = asyncio.get_running_loop()
        for folder in self.settings.model_folders:
            folder.mkdir(parents=True, exist_ok=True)
        await self.rescan()
        from .watcher import FolderWatcher  # watchdog threads only once we serve

        self._watcher = FolderWatcher(self.settings.model_folders, self._on_folder_change)
        self._watcher.start()
        if self.settings.supervisor_start == "eager" or self.supervisor.mode == "remote":
            self._spawn(self._ensure_supervisor(), "supervisor start")
        self._spawn(self._idle_loop(), "idle stopper")

    async def shut_down(self) -> None:
        """Stop watching, stop every model and the embedded Xinference."""
        if self._watcher is not None:
            self._watcher.stop()
        for task in list(self._tasks):
            task.cancel()
        if self.supervisor.mode == "remote" and self.supervisor.client is not None:
            for entry in self.models.values():
                if entry.uid and entry.state in (ModelState.RUNNING, ModelState.STARTING):
                    with suppress(QwendeskError):
                        await self.supervisor.client.terminate(entry.uid)
        await self.supervisor.stop()

    def _spawn(self, coro: Any, what: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=what)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, QwendeskError):
                log.error("%s failed", task.get_name(), exc_info=exc)

    # ---- the folders -----------------------------------------------------------------------------
    def _on_folder_change(self) -> None:
        """Called from the watcher's thread: hop onto the event loop."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._schedule_rescan, 0.0)

    def _schedule_rescan(self, delay: float) -> None:
        if self._rescan_handle is not None:
            self._rescan_handle.cancel()
        loop = asyncio.get_running_loop()
        self._rescan_handle = loop.call_later(delay, lambda: self._spawn(self.rescan(), "rescan"))

    async def rescan(self) -> None:
        """Re-read the folders and reconcile: add, re-register, or stop and remove models."""
        async with self._rescan_lock:
            found = await asyncio.to_thread(registry.scan, self.settings.model_folders)
            removed = [name for name in self.models if name not in found]
            for name in removed:
                await self._forget(self.models[name])
            changed = bool(removed)
            for name, files in found.items():
                entry = self.models.get(name)
                if entry is None:
                    self.models[name] = ModelEntry(files)
                    log.info("found model %s (%s)", name, files.error or "ok")
                    changed = True
                elif _changed(entry.files, files):
                    await self._replace_files(entry, files)
                    changed = True
            if changed:
                self.events.publish("snapshot", self.snapshot())
            if self.supervisor.client is not None:
                await self._register_all()
            if any(f.pending for f in found.values()):
                self._schedule_rescan(2.0)

    async def _forget(self, entry: ModelEntry) -> None:
        """The file is gone: stop the model if it runs, unregister it, drop it."""
        log.info("model %s was removed from the folder", entry.name)
        async with entry.lock:
            await self._terminate(entry)
            await self._unregister(entry.name)
        self.models.pop(entry.name, None)

    async def _replace_files(self, entry: ModelEntry, files: registry.ModelFiles) -> None:
        """The file changed on disk: stop what runs from the old bytes and register the new ones."""
        async with entry.lock:
            await self._terminate(entry)
            await self._unregister(entry.name)
            entry.files, entry.error = files, None
            entry.state = ModelState.AVAILABLE

    # ---- Xinference ----------------------------------------------------------------------------
    async def _ensure_supervisor(self) -> XinferenceClient:
        fresh = self.supervisor.client is None
        client = await self.supervisor.start()
        if fresh:
            self._registered.clear()
        await self._register_all()
        return client

    async def _register_all(self) -> None:
        for entry in list(self.models.values()):
            if entry.files.ok:
                with suppress(QwendeskError):
                    await self._register(entry)

    async def _register(self, entry: ModelEntry) -> None:
        if entry.name in self._registered or self.supervisor.client is None:
            return
        model_type = registry.model_type(entry.files)
        await self.supervisor.client.register(model_type, registry.registration_spec(entry.files))
        self._registered[entry.name] = model_type

    async def _unregister(self, name: str) -> None:
        model_type = self._registered.pop(name, None)
        if model_type and self.supervisor.client is not None:
            with suppress(QwendeskError):
                await self.supervisor.client.unregister(model_type, name)

    async def _terminate(self, entry: ModelEntry) -> None:
        """Stop the model in Xinference if it runs (caller holds entry.lock)."""
        if entry.uid and self.supervisor.client is not None:
            self._set(entry, ModelState.STOPPING)
            with suppress(QwendeskError):
                await self.supervisor.client.terminate(entry.uid)
        entry.uid, entry.n_ctx, entry.on_demand = None, None, False
        self._set(entry, ModelState.AVAILABLE)

    async def _on_supervisor_restarted(self) -> None:
        """Xinference came back after a crash: register again and relaunch what was running."""
        self._registered.clear()
        await self._register_all()
        for entry in list(self.models.values()):
            if entry.relaunch:
                self._spawn(self._relaunch(entry), f"relaunch {entry.name}")

    async def _relaunch(self, entry: ModelEntry) -> None:
        entry.relaunch = False
        with suppress(QwendeskError):
            await self._start(entry, entry.options, entry.on_demand)

    def _on_supervisor_state(self) -> None:
        """Models lose their engine when Xinference dies: they are starting again, or in error if it gave up."""
        self.events.publish("status", self.status())
        state = self.supervisor.state
        for entry in self.models.values():
            if state == "restarting" and entry.state == ModelState.RUNNING:
                entry.uid, entry.relaunch = None, True
                self._set(entry, ModelState.STARTING)
            elif state == "failed" and entry.state in (ModelState.RUNNING, ModelState.STARTING):
                entry.uid, entry.relaunch = None, False
                self._set(entry, ModelState.ERROR, self.supervisor.view().error)

    # ---- queries ---------------------------------------------------------------------------------
    def find(self, model_id: str) -> ModelEntry:
        """A model by name, by file name (with or without .gguf), or by path of its file."""
        if model_id in self.models:
            return self.models[model_id]
        wanted = model_id.lower()
        for entry in self.models.values():
            first = entry.files.files[0] if entry.files.files else Path()
            if wanted in (first.name.lower(), first.stem.lower(), str(first).lower()):
                return entry
        raise NotFound(f"No model named '{model_id}'. `qwendesk models` lists what is available.")

    def views(self) -> list[ModelView]:
        return [self.models[name].view() for name in sorted(self.models)]

    def snapshot(self) -> dict[str, Any]:
        return {"models": [v.model_dump(mode="json") for v in self.views()], "status": self.status()}

    def status(self) -> dict[str, Any]:
        from importlib.metadata import version

        running = sum(1 for e in self.models.values() if e.state == ModelState.RUNNING)
        return {
            "version": version("qwendesk"),
            "supervisor": self.supervisor.view().model_dump(mode="json"),
            "accelerator": self.accel.as_dict(),
            "memory": memory_snapshot(),
            "models": len(self.models),
            "running": running,
            "models_dirs": [str(p) for p in self.settings.model_folders],
            "keep_alive": self.settings.keep_alive,
        }

    # ---- start / stop ----------------------------------------------------------------------------
    async def start(
        self, name: str, options: StartRequest | None = None, *, wait: bool = True, on_demand: bool = False
    ) -> ModelView:
        """Start a model in Xinference; with wait=False return at once while it loads."""
        entry = self.find(name)
        options = options or StartRequest()
        if not wait:
            if entry.state not in (ModelState.RUNNING, ModelState.STARTING):
                self._check_startable(entry)
                self._set(entry, ModelState.STARTING)
                self._spawn(self._start_quietly(entry, options, on_demand), f"start {name}")
            return entry.view()
        await self._start(entry, options, on_demand)
        return entry.view()

    async def _start_quietly(self, entry: ModelEntry, options: StartRequest, on_demand: bool) -> None:
        with suppress(QwendeskError):
            await self._start(entry, options, on_demand)

    async def _start(self, entry: ModelEntry, options: StartRequest, on_demand: bool) -> None:
        async with entry.lock:
            if entry.state == ModelState.RUNNING and entry.uid:
                return
            self._check_startable(entry)
            kwargs = launch_kwargs(self.settings, self.accel, options)
            model_type = registry.model_type(entry.files)
            if model_type == "embedding":
                kwargs = registry.embedding_launch_kwargs(entry.files, kwargs)
            if self.supervisor.mode == "embedded":
                self._check_memory(entry, kwargs["n_ctx"])
            self._set(entry, ModelState.STARTING)
            try:
                client = await self._ensure_supervisor()
                await self._register(entry)
                offset = self.supervisor.log_offset()
                engine = Engine.new() if self.supervisor.mode == "embedded" else None
                if engine is not None:
                    kwargs.update(engine.launch_kwargs())
                spec = registry.registration_spec(entry.files)["model_specs"][0]
                file_kwargs = registry.launch_kwargs_for_files(entry.files)
                file_kwargs.pop("model_format", None)  # the client always launches ggufv2
                entry.uid = await client.launch(
                    entry.name,
                    entry.name,
                    model_size=spec.get("model_size_in_billions"),  # embedding specs have none
                    quantization=file_kwargs.pop("quantization", spec["quantization"]),
                    explain=lambda: self.supervisor.explain_failure(offset),
                    model_type=model_type,
                    **kwargs,
                    **file_kwargs,
                )
            except QwendeskError as exc:
                entry.uid = None
                self._set(entry, ModelState.ERROR, exc.message)
                raise
            except Exception as exc:  # keep the daemon alive whatever Xinference does
                entry.uid = None
                message = f"Starting {entry.name} failed unexpectedly: {exc}. See {self.settings.log_dir}."
                self._set(entry, ModelState.ERROR, message)
                raise QwendeskError(message) from exc
            entry.options, entry.on_demand, entry.engine = options, on_demand, engine
            entry.n_ctx = kwargs["n_ctx"] // kwargs["n_parallel"]
            entry.last_used = time.monotonic()
            self._set(entry, ModelState.RUNNING)

    def _check_startable(self, entry: ModelEntry) -> None:
        if entry.files.pending:
            raise Conflict(f"{entry.name} is still being copied; start it once the copy has finished.")
        if not entry.files.ok:
            raise Conflict(f"{entry.name} cannot start: {entry.files.error or 'its file could not be read'}")

    def _check_memory(self, entry: ModelEntry, n_ctx: int) -> None:
        """Refuse a start whose weights plus KV cache cannot fit in the memory available now."""
        info = entry.files.info
        kv = info.kv_cache_bytes(n_ctx) if info is not None else 0
        need = entry.files.size_bytes + kv + MODEL_PROCESS_OVERHEAD
        available = memory_snapshot()["available_bytes"]
        if need > available:
            raise InsufficientResources(
                f"{entry.name} needs about {need / GiB:.1f} GiB (weights {entry.files.size_bytes / GiB:.1f} GiB"
                f" + KV cache for {n_ctx} tokens {kv / GiB:.1f} GiB + runtime {MODEL_PROCESS_OVERHEAD / GiB:.1f} GiB)"
                f" but only {available / GiB:.1f} GiB is available. Stop other models or programs, or start it"
                " with a smaller context (n_ctx)."
            )

    async def stop(self, name: str) -> ModelView:
        entry = self.find(name)
        async with entry.lock:
            if entry.state == ModelState.ERROR and not entry.uid:
                entry.error = None
                self._set(entry, ModelState.AVAILABLE)
            else:
                await self._terminate(entry)
        return entry.view()

    def _set(self, entry: ModelEntry, state: ModelState, error: str | None = None) -> None:
        entry.state, entry.error = state, error
        if state != ModelState.RUNNING:
            entry.engine = None
        self._last_activity = time.monotonic()
        self._save_engines()
        self.events.publish("model", entry.view().model_dump(mode="json"))

    def _save_engines(self) -> None:
        """Write the running engines' addresses and keys to run/engines.json (0600) for local tools and tests."""
        engines = {
            e.name: {"url": e.engine.url, "key": e.engine.key} for e in self.models.values() if e.engine
        }
        path = self.settings.run_dir / "engines.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(engines, fh)
        except OSError as exc:  # a convenience file: never fail a state change over it
            log.warning("could not write %s: %s", path, exc)

    # ---- use by the /v1 proxy --------------------------------------------------------------------
    @asynccontextmanager
    async def using(self, model_id: str) -> AsyncIterator[RunningModel]:
        """Hold a model busy for one request, starting it first if it is stopped and auto-start is on."""
        entry = self.find(model_id)
        if entry.state != ModelState.RUNNING:
            if entry.state == ModelState.ERROR or entry.files.error:
                raise Conflict(f"{entry.name} is in error: {entry.error or entry.files.error}")
            if not self.settings.auto_start and entry.state != ModelState.STARTING:
                raise Conflict(f"{entry.name} is not running. Start it with `qwendesk start {entry.name}`.")
            on_demand = entry.on_demand if entry.state == ModelState.STARTING else True
            await self._start(entry, entry.options, on_demand)
        client = self.supervisor.client
        if entry.uid is None or client is None:
            raise Conflict(f"{entry.name} stopped while the request was waiting for it; try again.")
        entry.busy += 1
        try:
            engine = entry.engine
            yield RunningModel(
                entry.name,
                entry.uid,
                client,
                engine.url if engine else None,
                engine.headers if engine else {},
            )
        finally:
            entry.busy -= 1
            entry.last_used = self._last_activity = time.monotonic()

    # ---- keep-alive ------------------------------------------------------------------------------
    async def _idle_loop(self, every: float = 5.0) -> None:
        """Stop on-demand models idle for keep_alive, then the embedded Xinference once nothing runs."""
        keep = self.settings.keep_alive
        while keep > 0:
            await asyncio.sleep(min(every, keep))
            now = time.monotonic()
            for entry in list(self.models.values()):
                if (
                    entry.on_demand
                    and entry.state == ModelState.RUNNING
                    and not entry.busy
                    and now - entry.last_used > keep
                ):
                    log.info("stopping %s: idle for %.0f s", entry.name, now - entry.last_used)
                    await self.stop(entry.name)
            active = any(
                e.state in (ModelState.RUNNING, ModelState.STARTING, ModelState.STOPPING)
                for e in self.models.values()
            )
            if (
                self.supervisor.mode == "embedded"
                and self.supervisor.client is not None
                and not active
                and now - self._last_activity > keep
            ):
                log.info("no model has run for %.0f s: stopping the embedded Xinference", keep)
                await self.supervisor.stop()
                self._registered.clear()


def _changed(old: registry.ModelFiles, new: registry.ModelFiles) -> bool:
    return old.fingerprint() != new.fingerprint()
