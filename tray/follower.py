"""A background thread that follows GET /api/events and reconnects when the daemon comes back."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx

from qwendesk.daemon.client import DaemonClient
from qwendesk.daemon.errors import DaemonNotRunning, QwendeskError

log = logging.getLogger(__name__)

# sse-starlette pings every 15 s, so a stream silent for longer than this belongs to a hung daemon.
READ_TIMEOUT = 45.0


class EventFollower(threading.Thread):
    """Calls on_event(event, data) for every server-sent event and on_down(reason) when the stream is lost."""

    def __init__(
        self,
        client_factory: Callable[[], DaemonClient],
        on_event: Callable[[str, Any], None],
        on_down: Callable[[str | None], None],
        *,
        min_delay: float = 0.25,
        max_delay: float = 2.0,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        super().__init__(name="qwendesk-tray-events", daemon=True)
        self._factory = client_factory
        self._on_event = on_event
        self._on_down = on_down
        self._min, self._max = min_delay, max_delay
        self._read_timeout = read_timeout
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._client: DaemonClient | None = None

    def stop(self) -> None:
        """Ask the thread to end; closing the client breaks a blocking read where the OS allows."""
        self._stopped.set()
        self._wake.set()
        client = self._client
        if client is not None:
            # Closing from another thread may race the reader; it ends either way.
            with contextlib.suppress(Exception):
                client.close()

    def wake(self) -> None:
        """Reconnect now instead of after the back-off (e.g. the tray just started the daemon)."""
        self._wake.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def run(self) -> None:
        delay = self._min
        while not self._stopped.is_set():
            reason = self._follow_once()
            if self._stopped.is_set():
                return
            if reason == "":
                delay = self._min  # we were connected: retry quickly, the daemon may be restarting
            self._on_down(reason or None)
            self._wake.wait(delay)
            self._wake.clear()
            delay = min(delay * 2, self._max)

    def _follow_once(self) -> str | None:
        """Follow one connection; return '' if events flowed, else why it failed."""
        self._client = client = self._factory()
        got_events = False
        try:
            for event, data in client.events(timeout=self._read_timeout):
                if self._stopped.is_set():
                    return ""
                got_events = True
                self._on_event(event, data)
            return "" if got_events else None
        except DaemonNotRunning:
            return None  # plain "nothing listens": the menu says so without a message
        except QwendeskError as exc:  # e.g. a wrong token: worth showing
            return exc.message
        except (httpx.HTTPError, ValueError, RuntimeError) as exc:
            log.debug("event stream ended: %r", exc)
            return "" if got_events else None
        finally:
            self._client = None
            client.close()
