"""The embedded supervisor: `xinference-local` as a child process on loopback, restarted if it dies.

The executable is the `xinference-local` script installed next to the daemon's Python (the same venv),
falling back to the one on PATH. It runs in its own process group so that we can end its whole tree:
Xinference's supervisor/worker and model processes survive a SIGKILL of the process we started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from ..config import Settings
from ..errors import QwendeskError, SupervisorError
from ..ports import free_port
from . import boot, process_tree
from .auth import CREDENTIALS_FILE, ensure_auth
from .base import Supervisor, backoff_delay
from .client import XinferenceClient
from .engine_log import explain_log_file, log_tail

log = logging.getLogger(__name__)

EXECUTABLE = "xinference-local"
LOG_FILE = "xinference.log"
PID_FILE = "xinference.pid"
LOG_ROTATE_AT_START = 10 * 1024 * 1024  # keep one previous log (.1) when the current one is bigger
LOG_MAX_WHILE_RUNNING = 50 * 1024 * 1024
STABLE_AFTER = 60.0  # a child that ran this long before dying resets the quick-failure count
POLL_INTERVAL = 1.0
PROBE_EVERY = 5.0  # seconds between health probes of a running Xinference


def find_executable(name: str = EXECUTABLE) -> str:
    """`xinference-local` from the daemon's own environment, else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise SupervisorError(
        f"'{name}' was not found next to {sys.executable} or on PATH. Reinstall qwendesk with its "
        "Xinference dependency (pip install 'xinference[llama-cpp]'), or set xinference_endpoint."
    )


def build_env(settings: Settings, xoscar_key: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's whole environment: private home, offline, no virtualenvs or metrics, auth on."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "XINFERENCE_HOME": str(settings.xinference_home),
            "HF_HUB_OFFLINE": "1",  # launches never probe a model hub
            "XINFERENCE_MODEL_SRC": "huggingface",  # skips the HEAD https://huggingface.co at launch
            "XINFERENCE_ENABLE_VIRTUAL_ENV": "0",  # no per-model uv venvs (and no GPU wheel downloads)
            "XINFERENCE_DISABLE_METRICS": "1",  # no extra metrics port
            "XINFERENCE_AUTH_ADVANCED": "1",  # API keys required; the daemon sets up the admin account
            "XOSCAR_AUTH_KEY": xoscar_key,  # actor ports reject frames not signed with this secret
            # Every client is on loopback and keys are 256-bit random: a ban of 127.0.0.1 after 10 bad
            # keys (Xinference's default) would only let any local program lock the daemon out.
            "XINFERENCE_RATE_LIMIT_IP_MAX_FAILURES": "1000000",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env["QWENDESK_XINFERENCE_LIGHT"] = "1" if settings.xinference_light else "0"
    env.update(boot.environment(env))
    return env


def rotate_log(path: Path, limit: int) -> None:
    """Move a log bigger than `limit` to `<name>.1` (dropping the older one) so logs cannot grow forever."""
    with contextlib.suppress(OSError):
        if path.stat().st_size > limit:
            shutil.copyfile(path, path.with_name(path.name + ".1"))
            os.truncate(path, 0)  # the child appends (O_APPEND), so it simply continues at 0


class EmbeddedSupervisor(Supervisor):
    """Owns an `xinference-local` process tree: start, readiness, auth, crash restarts, clean stop."""

    mode = "embedded"

    def __init__(self, settings: Settings, *, max_failures: int = 5, backoff_base: float = 1.0) -> None:
        super().__init__(settings)
        self.log_path = settings.log_dir / LOG_FILE
        self.pid_path = settings.run_dir / PID_FILE
        self.auth_path = settings.run_dir / CREDENTIALS_FILE
        self.max_failures = max_failures
        self.backoff_base = backoff_base
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._tree: list[psutil.Process] = []
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        self._answered_at = self._probed_at = 0.0

    # ---- public --------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    async def start(self) -> XinferenceClient:
        async with self._lock:
            if self.client is not None and self.state == "running":
                return self.client
            self._stopping = False
            await self._set_state("starting")
            try:
                await self._launch()
            except QwendeskError as exc:
                await self._set_state("failed", exc.message)
                raise
            await self._set_state("running")
            if self._monitor is None or self._monitor.done():
                self._monitor = asyncio.create_task(self._watch(), name="xinference-monitor")
            assert self.client is not None
            return self.client

    async def stop(self) -> None:
        self._stopping = True
        monitor, self._monitor = self._monitor, None
        if monitor is not None and monitor is not asyncio.current_task():
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await monitor
        async with self._lock:
            await self._teardown()
            await self._set_state("stopped")

    def log_offset(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def explain_failure(self, since: int) -> str | None:
        return explain_log_file(self.log_path, since)

    def tree_rss(self) -> int:
        """Resident memory of the whole Xinference tree, in bytes."""
        if self.pid is None:
            return 0
        total = 0
        for proc in [psutil.Process(self.pid), *process_tree.descendants(self.pid)]:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    # ---- start ---------------------------------------------------------------------------------
    async def _launch(self) -> None:
        """Spawn the child, wait until it answers, set up auth; on any failure leave nothing behind."""
        try:
            await self._spawn()
            await self._wait_ready(time.monotonic() + self.settings.supervisor_timeout)
        except BaseException:
            await self._teardown()
            raise

    async def _spawn(self) -> None:
        settings = self.settings
        await asyncio.to_thread(process_tree.kill_stale_group, self.pid_path)
        for folder in (settings.xinference_home, settings.log_dir, settings.run_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        rotate_log(self.log_path, LOG_ROTATE_AT_START)
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        cmd = [find_executable(), "-H", "127.0.0.1", "-p", str(port), "--log-level", "info"]
        env = build_env(settings, secrets.token_hex(32))
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"\n==== qwendesk: starting {' '.join(cmd)} ====\n".encode())
            self._proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=settings.xinference_home,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                **process_tree.new_group_options(),  # we can end the whole tree, orphans included
            )
        finally:
            os.close(fd)
        self._started_at = time.monotonic()
        self._tree = []
        process_tree.write_pid_file(self.pid_path, self._proc.pid)
        log.info("Started %s (pid %d), log in %s", EXECUTABLE, self._proc.pid, self.log_path)

    async def _wait_ready(self, deadline: float) -> None:
        """Poll `GET /status` until it answers, then set up auth and check an authorized `GET /v1/models`."""
        assert self._proc is not None and self.endpoint is not None
        probe = XinferenceClient(self.endpoint)
        try:
            while not await probe.alive():
                self._fail_if_exited()
                if time.monotonic() > deadline:
                    raise SupervisorError(
                        f"Xinference did not answer within {self.settings.supervisor_timeout:.0f} s "
                        f"(supervisor_timeout). Last log lines:\n{log_tail(self.log_path)}"
                    )
                await asyncio.sleep(0.5)
        finally:
            await probe.aclose()
        client = await asyncio.wait_for(
            ensure_auth(self.endpoint, self.settings.xinference_home, self.auth_path),
            timeout=max(5.0, deadline - time.monotonic()),
        )
        try:
            await client.request("GET", "/v1/models")  # with the API key, as the OpenAI proxy will
        except BaseException:
            await client.aclose()
            raise
        self.client = client

    def _fail_if_exited(self) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise SupervisorError(
                f"Xinference exited during start-up (exit code {code}). See {self.log_path}; "
                f"last lines:\n{log_tail(self.log_path)}"
            )

    # ---- stop ----------------------------------------------------------------------------------
    async def _teardown(self, grace: float = 10.0) -> None:
        """End the child's whole tree, forget the client and the pid file (safe to call twice)."""
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()
        proc, self._proc = self._proc, None
        if proc is not None:
            extra = self._tree + process_tree.descendants(proc.pid)
            await asyncio.to_thread(process_tree.terminate_tree, proc.pid, extra, grace)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._tree = []
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()

    # ---- crash and hang monitor ----------------------------------------------------------------
    async def _watch(self) -> None:
        """Notice the child dying or hanging, clean up its orphans and restart it with exponential backoff."""
        failures = 0
        self._answered_at = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(POLL_INTERVAL)
            proc = self._proc
            if proc is None or self.state != "running":
                self._answered_at = time.monotonic()
                continue
            code = proc.poll()
            hung = False
            if code is not None:
                reason = f"Xinference exited unexpectedly (exit code {code})"
            elif hung := await self._hung():
                reason = f"Xinference stopped answering for {self.settings.supervisor_hang_timeout:.0f} s"
            else:
                # Remember the tree while the parent chain still exists (orphans lose it).
                self._tree = process_tree.descendants(proc.pid) or self._tree
                rotate_log(self.log_path, LOG_MAX_WHILE_RUNNING)
                continue
            ran_for = time.monotonic() - self._started_at
            failures = 1 if ran_for > STABLE_AFTER else failures + 1
            log.warning("%s after running %.0f s", reason, ran_for)
            result = await self._restart(reason, failures, grace=0.0 if hung else 10.0)
            if result is None:
                return
            failures = result
            self._answered_at = time.monotonic()

    async def _hung(self) -> bool:
        """True once `GET /status` (API process and supervisor actor) has not answered for the hang timeout.

        Probed every PROBE_EVERY s: a stopped or deadlocked Xinference is alive to `poll()` but serves nothing.
        """
        now = time.monotonic()
        if now - self._probed_at < PROBE_EVERY:
            return now - self._answered_at > self.settings.supervisor_hang_timeout
        self._probed_at = now
        client = self.client
        if client is not None and await client.alive():
            self._answered_at = time.monotonic()
        return time.monotonic() - self._answered_at > self.settings.supervisor_hang_timeout

    async def _restart(self, reason: str, failures: int, grace: float) -> int | None:
        """Restart after a crash or hang; returns the quick-failure count, None when giving up or stopping.

        A hung tree gets no grace: a stopped process cannot act on SIGTERM.
        """
        await self._set_state("restarting", f"{reason}; restarting")
        async with self._lock:
            await self._teardown(grace)
        while not self._stopping:
            if failures > self.max_failures:
                await self._set_state(
                    "failed",
                    f"{reason} and failed to restart {self.max_failures} times in a row; giving up. "
                    f"See {self.log_path}. Last lines:\n{log_tail(self.log_path)}",
                )
                return None
            await asyncio.sleep(backoff_delay(failures, self.backoff_base))
            async with self._lock:
                if self._stopping:
                    return None
                # Unless a start() call got there first, launch; either way the manager must relaunch models.
                if not (self.state == "running" and self.client is not None):
                    try:
                        await self._launch()
                    except QwendeskError as exc:
                        log.warning("Restart %d of Xinference failed: %s", failures, exc.message)
                        failures += 1
                        continue
                    await self._set_state("running")
            await self._notify_restarted()
            return failures
        return None

    async def _notify_restarted(self) -> None:
        if self.on_restarted is None:
            return
        try:
            await self.on_restarted()
        except Exception:  # the manager reports its own failures; keep monitoring regardless
            log.exception("on_restarted callback failed")
