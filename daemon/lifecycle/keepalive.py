"""Keep-alive: models started on demand stop after `keep_alive` idle seconds, then the embedded Xinference."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..schemas import ModelState

if TYPE_CHECKING:
    from .manager import ModelManager

log = logging.getLogger(__name__)


class KeepAlive:
    """Checks every `every` seconds what has been idle for longer than the setting, and stops it."""

    def __init__(self, manager: ModelManager, every: float = 5.0) -> None:
        self.manager = manager
        self.keep = manager.settings.keep_alive
        self.every = every

    async def run(self) -> None:
        """Loop until cancelled (does nothing when keep_alive is 0: never stop)."""
        while self.keep > 0:
            await asyncio.sleep(min(self.every, self.keep))
            await self.check()

    async def check(self, now: float | None = None) -> None:
        """Stop what has been idle too long: on-demand models first, then Xinference once nothing runs."""
        manager, keep = self.manager, self.keep
        now = time.monotonic() if now is None else now
        for entry in list(manager.models.values()):
            if (
                entry.on_demand
                and entry.state == ModelState.RUNNING
                and not entry.busy
                and now - entry.last_used > keep
            ):
                log.info("stopping %s: idle for %.0f s", entry.name, now - entry.last_used)
                await manager.stop(entry.name)
        supervisor = manager.supervisor
        if (
            supervisor.mode == "embedded"
            and supervisor.client is not None
            and not any(
                e.active for e in manager.models.values() if not e.speech
            )  # workers are not Xinference's
            and now - manager.last_activity > keep
        ):
            log.info("no model has run for %.0f s: stopping the embedded Xinference", keep)
            await manager.stop_supervisor()
