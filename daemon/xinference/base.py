"""The base every Xinference connection shares: a state, a client, callbacks, and failure causes."""

from __future__ import annotations

import asyncio
import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import Settings
from ..schemas import SupervisorView
from .client import XinferenceClient

log = logging.getLogger(__name__)


def backoff_delay(failures: int, base: float = 1.0, cap: float = 30.0) -> float:
    """Delay before restart number `failures` (1-based): 1, 2, 4, … capped at 30 s."""
    return min(cap, base * 2 ** max(0, failures - 1))


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
