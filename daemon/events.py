"""A tiny in-process publish/subscribe bus behind GET /api/events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

Event = tuple[str, dict[str, Any]]


class EventBus:
    """Fan-out of (event, data) pairs to every subscriber; a slow subscriber drops its oldest events."""

    def __init__(self, queue_size: int = 256) -> None:
        self._queues: set[asyncio.Queue[Event]] = set()
        self._size = queue_size

    def publish(self, event: str, data: dict[str, Any]) -> None:
        for queue in list(self._queues):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait((event, data))

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self._size)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._queues)
