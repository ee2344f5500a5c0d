"""The Xinference supervisor the daemon talks to: embedded (a child process we own) or remote (a cluster)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import QwendeskError, SupervisorError
from .schemas import SupervisorView
from .xinference import XinferenceClient

log = logging.getLogger(__name__)

STATES = ("stopped", "starting", "running", "restarting", "failed", "remote")

# llama.cpp / xllamacpp lines that name the real cause of a failed load, best first, with a hint.
FAILURE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"invalid magic", re.I), "the file is not a GGUF model or is corrupt"),
    (re.compile(r"not within the file bounds", re.I), "the file is truncated (incomplete download?)"),
    (
        re.compile(r"No such file or directory|failed to open|file not found", re.I),
        "the model file is missing",
    ),
    (re.compile(r"out of memory|failed to allocate|cannot allocate|\bOOM\b", re.I), "not enough memory"),
    (re.compile(r"unknown model architecture", re.I), "llama.cpp does not support this architecture"),
    (re.compile(r"error loading model|failed to load model", re.I), "llama.cpp could not load the model"),
]
# Xinference's line prefix: "2026-11-25T08:54:04.327Z ERROR logger pid:1 role:local address:… node:vm "
# and llama.cpp's "0.00.160.115 E ".
_LOG_PREFIX = re.compile(
    r"^(?:\d{4}-\d\d-\d\dT\S+\s+[A-Z]+\s+\S+\s+(?:[a-z_]+:\S*\s+)*|\d+\.\d+\.\d+\.\d+\s+[A-Z]\s+)"
)
MAX_SCAN = 4 * 1024 * 1024


def explain_log_text(text: str) -> str | None:
    """The engine's reason for a failed load found in log text, as one short human line."""
    lines = text.splitlines()
    for pattern, hint in FAILURE_PATTERNS:
        for line in lines:
            if pattern.search(line):
                detail = _LOG_PREFIX.sub("", line.strip())
                detail = detail if len(detail) <= 240 else detail[:237] + "..."
                return f"{hint} (llama.cpp: {detail})"
    return None


def explain_log_file(path: Path, since: int) -> str | None:
    """Scan a log written since byte offset `since` (from 0 if the log was truncated meanwhile)."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            start = since if 0 <= since <= size else 0
            start = max(start, size - MAX_SCAN)
            fh.seek(start)
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    return explain_log_text(text)


def backoff_delay(failures: int, base: float = 1.0, cap: float = 30.0) -> float:
    """Delay before restart number `failures` (1-based): 1, 2, 4, … capped at 30 s."""
    return min(cap, base * 2 ** max(0, failures - 1))


def parse_remote_key(value: str | None) -> tuple[str | None, tuple[str, str] | None]:
    """`xinference_api_key` is an API key (`xf-…`) or `username:password` of an admin account."""
    if not value:
        return None, None
    if ":" in value and not value.startswith(("xf-", "sk-")):
        user, _, password = value.partition(":")
        return None, (user, password)
    return value, None


class Supervisor(ABC):
    """What the model manager needs from Xinference: start, stop, a client, a state and failure causes."""

    mode: str = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = "stopped"
        self.endpoint: str | None = None
        self.client: XinferenceClient | None = None
        self.error: str | None = None
        self.on_state_change: Callable[[], Any] | None = None
        self.on_restarted: Callable[[], Awaitable[None]] | None = None
        self._lock = asyncio.Lock()

    @abstractmethod
    async def start(self) -> XinferenceClient:
        """Make sure the supervisor is usable and return its client (idempotent; callers share one start)."""

    @abstractmethod
    async def stop(self) -> None:
        """Release the supervisor (idempotent)."""

    @property
    def pid(self) -> int | None:
        return None

    def view(self) -> SupervisorView:
        return SupervisorView(
            mode=self.mode, state=self.state, endpoint=self.endpoint, pid=self.pid, error=self.error
        )

    def log_offset(self) -> int:
        """Position in the supervisor log; pass it to explain_failure after a failed launch."""
        return 0

    def explain_failure(self, since: int) -> str | None:
        """The engine's reason for a failure logged since `since`, if it can be found."""
        return None

    async def _set_state(self, state: str, error: str | None = None) -> None:
        if state == self.state and error == self.error:
            return
        self.state, self.error = state, error
        log.info("Xinference supervisor: %s%s", state, f" ({error})" if error else "")
        if self.on_state_change is None:
            return
        try:
            result = self.on_state_change()
            if inspect.isawaitable(result):
                await result
        except Exception:  # a listener's bug must not break the supervisor
            log.exception("on_state_change callback failed")


class RemoteSupervisor(Supervisor):
    """An existing Xinference (e.g. a cluster) at `settings.xinference_endpoint`; we never start or stop it."""

    mode = "remote"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.endpoint = (settings.xinference_endpoint or "").rstrip("/")

    async def start(self) -> XinferenceClient:
        async with self._lock:
            if self.client is not None:
                return self.client
            api_key, credentials = parse_remote_key(self.settings.xinference_api_key)
            client = XinferenceClient(self.endpoint, api_key, credentials=credentials)
            try:
                if not await client.alive():
                    raise SupervisorError(
                        f"No Xinference answers at {self.endpoint} (xinference_endpoint). Start it, or "
                        "unset xinference_endpoint to let qwendesk run its own."
                    )
                await client.check_authorized()
            except QwendeskError as exc:
                await client.aclose()
                await self._set_state("failed", exc.message)
                raise
            self.client = client
            await self._set_state("remote")
            return client

    async def stop(self) -> None:
        async with self._lock:
            if self.client is not None:
                await self.client.aclose()
                self.client = None
            await self._set_state("stopped")

    def explain_failure(self, since: int) -> str | None:
        return (
            f"the engine's reason is only in the log of the remote Xinference at {self.endpoint} "
            "(no local log in remote mode); look there"
        )

    def view(self) -> SupervisorView:
        view = super().view()
        if self.state == "stopped":
            view.state = "remote"
        return view


def make_supervisor(settings: Settings) -> Supervisor:
    """The remote supervisor when `xinference_endpoint` is set, else the embedded one."""
    if settings.xinference_endpoint:
        return RemoteSupervisor(settings)
    from .supervisor_embedded import EmbeddedSupervisor

    return EmbeddedSupervisor(settings)
