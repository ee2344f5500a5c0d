"""The speech worker processes: one per running Whisper model, spawned, checked ready, watched and stopped.

Xinference 4.1 cannot run CTranslate2 (faster-whisper) models, so a speech model runs in a process of our own
(`python -m qwendesk.daemon.speech.worker`, see its docstring for the contract) on a loopback port with a key
we choose, exactly like the llama-server of a GGUF model. It leads its own process group (ended as a whole),
watches the daemon's pid (a daemon killed with SIGKILL leaves no worker), and writes to
`<log_dir>/speech-<model>.log`. A worker that exits while it should be running is reported through `on_exit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..config import Settings
from ..errors import ModelLoadError
from ..speech.models import SpeechModel
from ..xinference import process_tree
from ..xinference.embedded import LOG_ROTATE_AT_START, rotate_log
from ..xinference.engine_log import log_tail
from .launch import Engine

log = logging.getLogger(__name__)

KEY_ENV = "QWENDESK_SPEECH_KEY"  # the worker reads its key here (a command line is visible to other users)
# The worker's exit statuses (daemon/speech/worker.py).
EXIT_PORT_TAKEN, EXIT_BAD_ARGS, EXIT_LOAD_FAILED = 1, 2, 3
PORT_ATTEMPTS = 3  # a port picked free can be taken before the worker binds it
# Loading is quick (tiny.en: 0.4 s after ~2 s of imports); a large-v3 on a slow disk takes tens of seconds.
READY_TIMEOUT = 300.0
READY_POLL = 0.1
WATCH_EVERY = 0.5  # how often a running worker's process is looked at
STOP_GRACE = 5.0  # the worker stops within ~2 s of SIGTERM, even mid-transcription

OnExit = Callable[[str, Engine, str], None]  # (model name, its engine, why) for a worker that died


@dataclass
class Worker:
    """One running worker process."""

    name: str
    proc: subprocess.Popen[bytes]
    engine: Engine
    log_path: Path
    started: float = field(default_factory=time.monotonic)
    watcher: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


class SpeechWorkers:
    """Every speech worker the daemon runs, by model name."""

    def __init__(self, settings: Settings, threads: int, on_exit: OnExit | None = None) -> None:
        self.settings = settings
        self.threads = threads
        self.on_exit = on_exit
        self.workers: dict[str, Worker] = {}

    # ---- queries ---------------------------------------------------------------------------------
    def pid(self, name: str) -> int | None:
        worker = self.workers.get(name)
        return worker.pid if worker is not None and worker.proc.poll() is None else None

    def alive(self, name: str) -> bool:
        return self.pid(name) is not None

    def log_path(self, name: str) -> Path:
        return self.settings.log_dir / f"speech-{name}.log"

    # ---- start -----------------------------------------------------------------------------------
    async def launch(self, model: SpeechModel) -> Engine:
        """Start a worker for `model` and wait until it answers; ModelLoadError with the reason if it cannot."""
        await self.terminate(model.name)  # never two workers for one model
        log_path = self.log_path(model.name)
        self.settings.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        rotate_log(log_path, LOG_ROTATE_AT_START)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            engine = Engine.new()
            offset = _size(log_path)
            proc = self._spawn(model, engine, log_path)
            try:
                code = await self._wait_ready(model.name, proc, engine, log_path)
            except BaseException:  # a timeout, or the start cancelled (daemon shutting down)
                await asyncio.to_thread(_end, proc)
                raise
            if code is None:
                worker = Worker(model.name, proc, engine, log_path)
                worker.watcher = asyncio.get_running_loop().create_task(
                    self._watch(worker), name=f"watch speech worker {model.name}"
                )
                self.workers[model.name] = worker
                log.info("speech worker for %s ready (pid %d, %s)", model.name, proc.pid, engine.url)
                return engine
            reason = _last_line(log_path, offset)
            if code == EXIT_PORT_TAKEN and attempt < PORT_ATTEMPTS:
                log.info(
                    "speech worker for %s could not bind %s (%s); another port",
                    model.name,
                    engine.url,
                    reason,
                )
                continue
            if code == EXIT_LOAD_FAILED:
                raise ModelLoadError(f"{model.name} could not be loaded: {_strip(reason)}")
            raise ModelLoadError(
                f"The speech worker for {model.name} exited during start-up (status {code}): {reason}. "
                f"See {log_path}."
            )
        raise AssertionError("unreachable")

    def _spawn(self, model: SpeechModel, engine: Engine, log_path: Path) -> subprocess.Popen[bytes]:
        s = self.settings
        cmd = [sys.executable, "-m", "qwendesk.daemon.speech.worker", "--model", str(model.folder),
               "--port", str(engine.port), "--threads", str(self.threads), "--parent", str(os.getpid()),
               "--name", model.name, "--device", "auto", "--max-seconds", f"{s.speech_max_seconds:g}",
               "--max-upload-mib", f"{s.speech_max_upload_mib:g}", "--log-level",
               "debug" if s.log_level == "debug" else "info"]  # fmt: skip
        # Offline: faster-whisper never reaches for the hub (a folder without tokenizer.json is refused earlier).
        env = {**os.environ, KEY_ENV: engine.key, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"\n==== qwendesk: starting the speech worker for {model.name} ====\n".encode())
            return subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                **process_tree.new_group_options(),  # its own group: ended as a whole, not by a terminal's ^C
            )
        finally:
            os.close(fd)

    async def _wait_ready(
        self, name: str, proc: subprocess.Popen[bytes], engine: Engine, log_path: Path
    ) -> int | None:
        """None once GET /health answers 200; the exit status if the worker exits first."""
        deadline = time.monotonic() + READY_TIMEOUT
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                code = proc.poll()
                if code is not None:
                    return code
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(engine.url + "/health", headers=engine.headers)
                    if response.status_code == 200:
                        return None
                if time.monotonic() > deadline:
                    raise ModelLoadError(
                        f"The speech worker for {name} did not answer within {READY_TIMEOUT:.0f} s. Last lines of "
                        f"{log_path}:\n{log_tail(log_path)}"
                    )
                await asyncio.sleep(READY_POLL)

    # ---- running -----------------------------------------------------------------------------------
    async def _watch(self, worker: Worker) -> None:
        """Report the worker's exit unless we stopped it (then `terminate` cancelled this task first)."""
        while (code := worker.proc.poll()) is None:
            await asyncio.sleep(WATCH_EVERY)
        if self.workers.get(worker.name) is not worker:
            return
        del self.workers[worker.name]
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        reason = f"its worker process {worker.pid} ended ({how})"
        log.warning(
            "speech worker for %s ended unexpectedly (%s); log: %s", worker.name, how, worker.log_path
        )
        if self.on_exit is not None:
            self.on_exit(worker.name, worker.engine, reason)

    def check(self, name: str) -> str | None:
        """Why the model's worker is gone (it died and the watcher has not said so yet); None when it runs."""
        worker = self.workers.get(name)
        if worker is None:
            return "its worker process is gone"
        code = worker.proc.poll()
        if code is None:
            return None
        return f"its worker process {worker.pid} ended ({'signal ' + str(-code) if code < 0 else f'status {code}'})"

    # ---- stop ------------------------------------------------------------------------------------
    async def terminate(self, name: str, engine: Engine | None = None) -> None:
        """Stop the model's worker (SIGTERM, then SIGKILL after STOP_GRACE); nothing when none runs, or when
        `engine` is given and the worker running now is another one."""
        worker = self.workers.get(name)
        if worker is None or (engine is not None and worker.engine != engine):
            return
        del self.workers[name]
        if worker.watcher is not None:
            worker.watcher.cancel()
        await asyncio.to_thread(_end, worker.proc)
        log.info("speech worker for %s stopped", name)

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.terminate(name) for name in list(self.workers)))


def _end(proc: subprocess.Popen[bytes]) -> None:
    """End the worker's process group and reap it (blocking: run it in a thread)."""
    if proc.poll() is None:
        process_tree.terminate_tree(proc.pid, [], STOP_GRACE)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _last_line(path: Path, since: int) -> str:
    """The last non-empty line the worker wrote since `since` (its reason for exiting)."""
    try:
        with path.open("rb") as fh:
            fh.seek(since)
            lines = fh.read()[-8192:].decode(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "it wrote nothing"


def _strip(reason: str) -> str:
    """The worker's own reason without its prefix (`qwendesk speech worker: cannot load ...`)."""
    return reason.removeprefix("qwendesk speech worker: ")
