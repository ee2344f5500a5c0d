"""The model table and each model's lifecycle: available -> starting -> running -> stopping.

Two kinds of model share the table and the lifecycle: GGUF files, launched in Xinference, and Whisper
(faster-whisper) folders, each run by a speech worker process of ours (`speech_worker`). `_launch_engine` and
`_terminate` pick the launcher; everything else (states, events, keep-alive, memory check, crashed engines
relaunched by the next request) is the same for both."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Collection, Coroutine, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

from qwendesk.models.folder import ModelFiles

from ..accelerator import Accelerator, memory_snapshot
from ..config import Settings
from ..errors import BadRequest, Conflict, NotEnoughMemory, NotFound, QwendeskError
from ..events import EventBus
from ..schemas import ModelState, ModelView, StartRequest
from ..speech.errors import SpeechUnsupported
from ..speech.limits import WORKER_BASE_MIB
from ..speech.models import SpeechModel
from ..xinference import Supervisor
from ..xinference.registration import model_type, registration_spec
from .entry import ModelEntry
from .folders import FolderSync
from .keepalive import KeepAlive
from .launch import Engine, LaunchPlan, launch_plan
from .speech_worker import SpeechWorkers

log = logging.getLogger(__name__)

GiB = 2**30
# How long a failed engine's terminate waits for Xinference to finish restarting it, and how often it asks.
DROP_ENGINE_TIMEOUT, DROP_ENGINE_RETRY = 120.0, 0.5
# What a /v1 route asks a model to do; each kind of model serves one of them (speech: the last two).
Service = Literal["chat", "embeddings", "rerank", "transcriptions", "translations"]
SPEECH_SERVICES = ("transcriptions", "translations")
# The route each kind of model serves, for the message that refuses a request of another kind.
_SERVES = {"chat": "/v1/chat/completions", "embedding": "/v1/embeddings", "rerank": "/v1/rerank",
           "speech": "/v1/audio/transcriptions and /v1/audio/translations"}  # fmt: skip


@dataclass(frozen=True)
class Endpoint:
    """Where one request for a running model goes: `url` + the /v1 path, with these headers."""

    name: str  # qwendesk's name for the model: responses are rewritten to say it
    url: str
    headers: dict[str, str]
    send_as: str | None  # the model id the upstream needs in the body; None: send the body as it came


class ModelManager:
    """Owns the model table; every state change is published on the event bus."""

    def __init__(self, settings: Settings, supervisor: Supervisor, accel: Accelerator, events: EventBus):
        self.settings = settings
        self.supervisor = supervisor
        self.accel = accel
        self.events = events
        self.models: dict[str, ModelEntry] = {}
        self.last_activity = time.monotonic()
        self.folders = FolderSync(self)
        self.keep_alive = KeepAlive(self)
        self.speech = SpeechWorkers(
            settings, settings.n_threads or accel.physical_cores, on_exit=self._on_speech_worker_exit
        )
        self._registered: dict[str, str] = {}  # name -> Xinference model type it is registered as
        # In error because their engine died while running (the next request relaunches them), with the uid
        # Xinference may still hold for the dead process until it is dropped.
        self._crashed: dict[str, str | None] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        supervisor.on_state_change = self._on_supervisor_state
        supervisor.on_restarted = self._on_supervisor_restarted

    # ---- start-up and shut-down ----------------------------------------------------------------
    async def start_up(self) -> None:
        """Scan and watch the folders, start the keep-alive, and connect Xinference now if asked to."""
        await self.folders.start()
        if self.settings.supervisor_start == "eager" or self.supervisor.mode == "remote":
            self.spawn(self.ensure_supervisor(), "supervisor start")
        self.spawn(self.keep_alive.run(), "keep-alive")

    async def shut_down(self) -> None:
        """Stop watching, stop every model (speech workers too) and the embedded Xinference."""
        self.folders.stop()
        for task in list(self._tasks):
            task.cancel()
        await self.speech.stop_all()
        if self.supervisor.mode == "remote" and self.supervisor.client is not None:
            for entry in self.models.values():
                if entry.uid and entry.state in (ModelState.RUNNING, ModelState.STARTING):
                    with suppress(QwendeskError):
                        await self.supervisor.client.terminate(entry.uid)
        await self.supervisor.stop()

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        """Run `coro` in the background; its failure is logged, never lost (cancelled at shut-down)."""
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

    # ---- what the folders hold -------------------------------------------------------------------
    async def apply_scan(
        self, found: Mapping[str, ModelFiles | SpeechModel], hearing: Collection[str] = ()
    ) -> None:
        """Reconcile the table with a scan: add new models, re-register changed ones, forget removed ones.

        `hearing` names the GGUF models whose projector has an audio encoder (read by the folder scan)."""
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
            elif entry.files.fingerprint() != files.fingerprint():
                await self._replace_files(entry, files)
                changed = True
        for name, entry in self.models.items():
            hears = name in hearing and not entry.speech
            changed, entry.hears = changed or hears != entry.hears, hears
        if changed:
            self.events.publish("snapshot", self.snapshot())
        if self.supervisor.client is not None:
            await self._register_all()

    async def _forget(self, entry: ModelEntry) -> None:
        """The file is gone: stop the model if it runs, unregister it, drop it."""
        log.info("model %s was removed from the folder", entry.name)
        async with entry.lock:
            await self._terminate(entry)
            await self._unregister(entry.name)
        self.models.pop(entry.name, None)

    async def _replace_files(self, entry: ModelEntry, files: ModelFiles | SpeechModel) -> None:
        """The file changed on disk: stop what runs from the old bytes and register the new ones."""
        async with entry.lock:
            await self._terminate(entry)
            await self._unregister(entry.name)
            entry.files, entry.error = files, None
            entry.state = ModelState.AVAILABLE

    # ---- Xinference ----------------------------------------------------------------------------
    async def ensure_supervisor(self) -> None:
        """Start (or connect to) Xinference and register every usable model with it."""
        if self.supervisor.client is None:
            self._registered.clear()
        await self.supervisor.start()
        await self._register_all()

    async def stop_supervisor(self) -> None:
        await self.supervisor.stop()
        self._registered.clear()

    async def _register_all(self) -> None:
        for entry in list(self.models.values()):
            if entry.files.ok:
                with suppress(QwendeskError):
                    await self._register(entry)

    async def _register(self, entry: ModelEntry) -> None:
        client = self.supervisor.client
        if entry.name in self._registered or client is None or entry.speech:
            return
        kind = model_type(entry.files)
        await client.register(kind, registration_spec(entry.files))
        self._registered[entry.name] = kind

    async def _unregister(self, name: str) -> None:
        kind = self._registered.pop(name, None)
        if kind and self.supervisor.client is not None:
            with suppress(QwendeskError):
                await self.supervisor.client.unregister(kind, name)

    async def _terminate(self, entry: ModelEntry) -> None:
        """Stop the model in Xinference, or its speech worker, if it runs (caller holds entry.lock)."""
        await self._drop_dead_engine(entry)
        self._crashed.pop(entry.name, None)
        if entry.speech:
            if self.speech.alive(entry.name):
                self._set(entry, ModelState.STOPPING)
            await self.speech.terminate(entry.name)
        elif entry.uid and self.supervisor.client is not None:
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
                self.spawn(self._relaunch(entry), f"relaunch {entry.name}")

    async def _relaunch(self, entry: ModelEntry) -> None:
        entry.relaunch = False
        with suppress(QwendeskError):
            await self._start(entry, entry.options, entry.on_demand)

    def _on_supervisor_state(self) -> None:
        """Models lose their engine when Xinference dies: they are starting again, or in error if it gave up."""
        self.events.publish("status", self.status())
        state = self.supervisor.state
        for entry in self.models.values():
            if entry.speech:
                continue  # its worker is ours, not Xinference's
            if state == "restarting" and entry.state == ModelState.RUNNING:
                entry.uid, entry.relaunch = None, True
                self._set(entry, ModelState.STARTING)
            elif state == "failed" and entry.state in (ModelState.RUNNING, ModelState.STARTING):
                entry.uid, entry.relaunch = None, False
                self._set(entry, ModelState.ERROR, self.supervisor.view().error)

    # ---- queries ---------------------------------------------------------------------------------
    def find(self, model_id: str) -> ModelEntry:
        """A model by name, by file name (with or without .gguf), or by path of its file (a speech model: of
        its folder)."""
        if model_id in self.models:
            return self.models[model_id]
        wanted = model_id.lower()
        for entry in self.models.values():
            if isinstance(entry.files, SpeechModel):
                first = entry.files.folder
            else:
                first = entry.files.files[0] if entry.files.files else Path()
            if wanted in (first.name.lower(), first.stem.lower(), str(first).lower()):
                return entry
        raise NotFound(f"No model named '{model_id}'. `qwendesk models` lists what is available.")

    def views(self) -> list[ModelView]:
        return [self.models[name].view() for name in sorted(self.models)]

    def snapshot(self) -> dict[str, Any]:
        return {"models": [v.model_dump(mode="json") for v in self.views()], "status": self.status()}

    def status(self) -> dict[str, Any]:
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
                self.spawn(self._start_quietly(entry, options, on_demand), f"start {name}")
            return entry.view()
        await self._start(entry, options, on_demand)
        return entry.view()

    async def _start_quietly(self, entry: ModelEntry, options: StartRequest, on_demand: bool) -> None:
        try:
            await self._start(entry, options, on_demand)
        except QwendeskError as exc:  # the failure is the entry's state and message
            if entry.state == ModelState.STARTING:  # refused before its launch (memory): still "starting"
                self._set(entry, ModelState.ERROR, exc.message)

    async def _start(self, entry: ModelEntry, options: StartRequest, on_demand: bool) -> None:
        async with entry.lock:
            if entry.state == ModelState.RUNNING and (entry.uid or entry.engine):
                return
            self._check_startable(entry)
            plan: LaunchPlan | None = None
            if isinstance(entry.files, SpeechModel):
                self._check_speech_memory(entry.files)
            else:
                plan = launch_plan(
                    self.settings, self.accel, entry.files, options, direct=self.supervisor.mode == "embedded"
                )
                if self.supervisor.mode == "embedded":
                    self._check_memory(entry, plan)
            self._set(entry, ModelState.STARTING)
            try:
                await self._drop_dead_engine(entry)  # before the launch: the uid is the same
                engine = await self._launch_engine(entry, plan)
            except QwendeskError as exc:
                entry.uid = None
                self._set(entry, ModelState.ERROR, exc.message)
                raise
            except Exception as exc:  # keep the daemon alive whatever Xinference does
                entry.uid = None
                message = f"Starting {entry.name} failed unexpectedly: {exc}. See {self.settings.log_dir}."
                self._set(entry, ModelState.ERROR, message)
                raise QwendeskError(message) from exc
            entry.options, entry.on_demand = options, on_demand
            entry.n_ctx = plan.n_ctx if plan is not None else None
            entry.engine, entry.last_used = engine, time.monotonic()
            self._crashed.pop(entry.name, None)
            self._set(entry, ModelState.RUNNING)

    async def _launch_engine(self, entry: ModelEntry, plan: LaunchPlan | None) -> Engine | None:
        """Start the model's engine: a speech worker, or Xinference's launch (`entry.uid` set); returns the
        engine the daemon talks to directly (None: through a remote Xinference's API)."""
        if isinstance(entry.files, SpeechModel):
            return await self.speech.launch(entry.files)
        assert plan is not None
        entry.uid = await self._launch(entry, plan)
        return plan.engine

    async def _launch(self, entry: ModelEntry, plan: LaunchPlan) -> str:
        """Register the model if needed and launch it in Xinference; returns its uid."""
        await self.ensure_supervisor()
        client = self.supervisor.client
        assert client is not None
        await self._register(entry)
        offset = self.supervisor.log_offset()
        return await client.launch(
            entry.name,
            entry.name,
            model_size=plan.model_size,
            quantization=plan.quantization,
            explain=lambda: self.supervisor.explain_failure(offset),
            model_type=plan.model_type,
            **plan.engine_kwargs,
        )

    def _check_startable(self, entry: ModelEntry) -> None:
        if entry.files.pending:
            raise Conflict(f"{entry.name} is still being copied; start it once the copy has finished.")
        if not entry.files.ok:
            raise Conflict(f"{entry.name} cannot start: {entry.files.error or 'its file could not be read'}")

    def _check_speech_memory(self, model: SpeechModel) -> None:
        """Refuse a speech worker whose weights, runtime and longest audio cannot fit in the memory available."""
        need = model.estimated_memory(self.settings.speech_max_seconds)
        available = memory_snapshot()["available_bytes"]
        if need > available:
            audio = need - model.size_bytes - WORKER_BASE_MIB * 2**20
            raise NotEnoughMemory(
                f"{model.name} needs about {need / GiB:.1f} GiB (weights {model.size_bytes / GiB:.1f} GiB + worker "
                f"{WORKER_BASE_MIB / 1024:.2f} GiB + {audio / GiB:.1f} GiB for {self.settings.speech_max_seconds:g} s "
                f"of audio) but only {available / GiB:.1f} GiB is available. Stop other models or programs, or "
                "lower speech_max_seconds."
            )

    def _check_memory(self, entry: ModelEntry, plan: LaunchPlan) -> None:
        """Refuse a start whose weights plus KV cache cannot fit in the memory available now."""
        need, kv = plan.memory_needed(entry.files)
        available = memory_snapshot()["available_bytes"]
        if need > available:
            weights, runtime = entry.files.size_bytes, need - entry.files.size_bytes - kv
            raise NotEnoughMemory(
                f"{entry.name} needs about {need / GiB:.1f} GiB (weights {weights / GiB:.1f} GiB"
                f" + KV cache for {plan.total_ctx} tokens {kv / GiB:.1f} GiB + runtime {runtime / GiB:.1f} GiB)"
                f" but only {available / GiB:.1f} GiB is available. Stop other models or programs, or start it"
                " with a smaller context (n_ctx)."
            )

    async def stop(self, name: str) -> ModelView:
        entry = self.find(name)
        async with entry.lock:
            await self._drop_dead_engine(entry)
            self._crashed.pop(entry.name, None)
            if entry.state == ModelState.ERROR and not entry.uid:
                await self.speech.terminate(entry.name)  # none runs for a model in error; for certain
                entry.error = None
                self._set(entry, ModelState.AVAILABLE)
            else:
                await self._terminate(entry)
        return entry.view()

    def _set(self, entry: ModelEntry, state: ModelState, error: str | None = None) -> None:
        entry.state, entry.error = state, error
        if state != ModelState.RUNNING:
            entry.engine = None  # its llama-server is gone with it
        self.last_activity = time.monotonic()
        self.events.publish("model", entry.view().model_dump(mode="json"))

    # ---- use by the /v1 routes -------------------------------------------------------------------
    def check_serves(self, entry: ModelEntry, service: Service, path: str) -> None:
        """Refuse, before starting anything, a request the model cannot answer (chat, embeddings, rerank, speech)."""
        if entry.speech or service in SPEECH_SERVICES:
            self._check_speech_serves(entry, service, path)
            return
        reg = entry.files.registration
        if reg is None:
            return  # an unusable file: `using` explains why
        if service == "embeddings" and reg.kind != "embedding":
            raise BadRequest(
                f"{entry.name} does not serve embeddings: it is a {_kind_name(reg.kind)}. Use an embedding model "
                "for /v1/embeddings."
            )
        if service == "rerank" and reg.kind != "rerank":
            raise BadRequest(
                f"{entry.name} does not rerank: it is a {_kind_name(reg.kind)}. Use a reranker (e.g. "
                f"bge-reranker-v2-m3 or Qwen3-Reranker GGUF) for {path}."
            )
        if service == "chat" and reg.kind != "chat":
            raise BadRequest(
                f"{entry.name} is a {_kind_name(reg.kind)}: it serves {_SERVES[reg.kind]} only. Use a chat "
                f"model for {path}."
            )

    def _check_speech_serves(self, entry: ModelEntry, service: Service, path: str) -> None:
        """A speech model serves the audio routes only, and only speech models serve them."""
        files = entry.files
        if isinstance(files, SpeechModel):
            if service not in SPEECH_SERVICES:
                raise BadRequest(
                    f"{entry.name} is a speech-to-text model: it serves {_SERVES['speech']} only. Use a chat model "
                    f"for {path}."
                )
            if service == "translations" and files.ok and not files.can_translate:
                raise SpeechUnsupported(
                    f"{entry.name} is an English-only Whisper model: it cannot translate. Use a multilingual "
                    f"Whisper model for {path}{_listing(self._speech_models(translate=True))}."
                )
            return
        kind = _kind_name(files.registration.kind) if files.registration is not None else "model file"
        raise BadRequest(
            f"{entry.name} is a {kind}: it cannot transcribe audio. Use a speech model for {path}"
            f"{_listing(self._speech_models())}, or add a faster-whisper model folder (`qwendesk pull "
            "faster-whisper:base`)."
        )

    def _speech_models(self, *, translate: bool = False) -> list[str]:
        return sorted(
            e.name
            for e in self.models.values()
            if isinstance(e.files, SpeechModel) and e.files.ok and (e.files.can_translate or not translate)
        )

    @asynccontextmanager
    async def using(self, model_id: str, service: Service, path: str) -> AsyncIterator[Endpoint]:
        """Hold a model busy for one request, starting it first if it is stopped and auto-start is on."""
        entry = self.find(model_id)
        self.check_serves(entry, service, path)
        if entry.state != ModelState.RUNNING:
            crashed = entry.state == ModelState.ERROR and entry.name in self._crashed
            if (entry.state == ModelState.ERROR and not crashed) or entry.files.error:
                raise Conflict(f"{entry.name} is in error: {entry.error or entry.files.error}")
            if not self.settings.auto_start and entry.state != ModelState.STARTING and not crashed:
                raise Conflict(f"{entry.name} is not running. Start it with `qwendesk start {entry.name}`.")
            on_demand = entry.on_demand if entry.state == ModelState.STARTING or crashed else True
            await self._start(entry, entry.options, on_demand)
        elif entry.speech and (gone := self.speech.check(entry.name)):
            # Its worker died a moment ago and the watcher has not said so yet: relaunch it now.
            self._speech_failed(entry, gone)
            await self._start(entry, entry.options, entry.on_demand)
        endpoint = await self._endpoint(entry)
        entry.busy += 1
        try:
            yield endpoint
        finally:
            entry.busy -= 1
            entry.last_used = self.last_activity = time.monotonic()

    def engine_failed(self, endpoint: Endpoint, reason: str) -> None:
        """A request found the model's own engine dead (refused, or cut off mid-answer): show the model in
        error with the cause, drop what Xinference still holds of it, and let the next request launch it."""
        entry = self.models.get(endpoint.name)
        if entry is None or entry.state != ModelState.RUNNING or not self._is_current(entry, endpoint):
            return  # already noticed by another request, or relaunched since
        if entry.speech:
            engine = entry.engine
            self._speech_failed(entry, reason)
            # Only that worker: the next request may have started a new one by the time this runs.
            self.spawn(self.speech.terminate(entry.name, engine), f"stop the speech worker of {entry.name}")
            return
        uid, entry.uid, entry.relaunch = entry.uid, None, False
        self._crashed[entry.name] = uid
        log.warning("the engine of %s failed: %s", entry.name, reason)
        self._set(
            entry,
            ModelState.ERROR,
            f"The engine of {entry.name} stopped unexpectedly ({reason}). The next request starts it again; "
            f"if it keeps failing, see the logs in {self.settings.log_dir}.",
        )
        self.spawn(self._drop_engine(entry), f"drop engine of {entry.name}")

    def _on_speech_worker_exit(self, name: str, engine: Engine, reason: str) -> None:
        """A speech worker died on its own (killed, crashed): the model is in error until the next request."""
        entry = self.models.get(name)
        if entry is not None and entry.state == ModelState.RUNNING and entry.engine == engine:
            self._speech_failed(entry, reason)

    def _speech_failed(self, entry: ModelEntry, reason: str) -> None:
        """Show a speech model in error with the cause; the next request starts its worker again."""
        self._crashed[entry.name] = None  # no Xinference model to drop
        entry.relaunch = False
        log.warning("the speech worker of %s failed: %s", entry.name, reason)
        self._set(
            entry,
            ModelState.ERROR,
            f"The speech worker of {entry.name} stopped unexpectedly ({reason}). The next request starts it "
            f"again; if it keeps failing, see {self.speech.log_path(entry.name)}.",
        )

    def _is_current(self, entry: ModelEntry, endpoint: Endpoint) -> bool:
        """Whether `endpoint` is the model's own engine as it runs now (not one replaced since).

        Through a remote Xinference's API a failure may be Xinference's, which its supervisor watches."""
        return entry.engine is not None and entry.engine.url == endpoint.url

    async def _drop_engine(self, entry: ModelEntry) -> None:
        async with entry.lock:
            await self._drop_dead_engine(entry)

    async def _drop_dead_engine(self, entry: ModelEntry) -> None:
        """Terminate a dead engine's model in Xinference (caller holds entry.lock), so a relaunch gets a fresh
        process, port and key rather than a "uid taken".

        Xinference's worker restarts a model process that died and refuses a terminate while that runs
        ("... is launching"): wait it out."""
        uid = self._crashed.get(entry.name)
        deadline = time.monotonic() + DROP_ENGINE_TIMEOUT
        while uid is not None and self.supervisor.client is not None:
            try:
                await self.supervisor.client.terminate(uid)
                break
            except QwendeskError as exc:
                if "launching" not in exc.message or time.monotonic() > deadline:
                    log.warning("could not drop the failed engine of %s: %s", entry.name, exc.message)
                    break
            await asyncio.sleep(DROP_ENGINE_RETRY)
        if entry.name in self._crashed:
            self._crashed[entry.name] = None

    async def _endpoint(self, entry: ModelEntry) -> Endpoint:
        """The model's own llama-server or speech worker when we launched it (stops on disconnect), else
        Xinference's API."""
        if entry.speech:
            if entry.engine is None:
                raise Conflict(f"{entry.name} stopped while the request was waiting for it; try again.")
            return Endpoint(entry.name, entry.engine.url, entry.engine.headers, send_as=None)
        client = self.supervisor.client
        if entry.uid is None or client is None:
            raise Conflict(f"{entry.name} stopped while the request was waiting for it; try again.")
        if entry.engine is not None:
            return Endpoint(entry.name, entry.engine.url, entry.engine.headers, send_as=None)
        return Endpoint(entry.name, client.endpoint, await client.fresh_headers(), send_as=entry.uid)


def _kind_name(kind: str) -> str:
    return {"chat": "chat model", "embedding": "embedding model", "rerank": "reranker"}.get(kind, kind)


def _listing(names: list[str]) -> str:
    return f" (here: {', '.join(names)})" if names else ""
