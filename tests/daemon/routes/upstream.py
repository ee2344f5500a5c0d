"""A scripted HTTP/1.1 server standing in for an engine in unit tests, and the daemon's app around a fake manager.

The server records every connection it accepts and when the peer closed it, which is what these tests are
about (keep-alive reuse, a closed upstream after a client leaves). Real engines are in the e2e tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from qwendesk.daemon.app import create_app
from qwendesk.daemon.config import load_settings
from qwendesk.daemon.lifecycle.manager import Endpoint
from qwendesk.daemon.ports import free_port


@dataclass
class Exchange:
    """One request read from a connection; `reply` writes raw bytes back."""

    conn: Connection
    index: int  # 0 for the first request on its connection
    head: bytes
    body: bytes

    async def reply(self, data: bytes) -> None:
        self.conn.writer.write(data)
        await self.conn.writer.drain()

    async def json(self, status: int, obj: Any, *, close: bool = False) -> None:
        payload = json.dumps(obj).encode()
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        await self.reply(head.encode() + (b"Connection: close\r\n" if close else b"") + b"\r\n" + payload)

    async def start_events(self) -> None:
        await self.reply(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )

    async def event(self, data: bytes) -> None:
        chunk = b"data: " + data + b"\n\n"
        await self.reply(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    async def end_events(self) -> None:
        await self.reply(b"0\r\n\r\n")


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    opened: float = field(default_factory=time.monotonic)
    closed_by_peer: float | None = None  # when the client closed its side (EOF or reset seen)


Handler = Callable[[Exchange], Awaitable[None]]


class ScriptedUpstream:
    """Serves each request with `handler`; a handler that returns without replying just leaves."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections: list[Connection] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> ScriptedUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for conn in self.connections:
            conn.writer.close()
        await asyncio.sleep(0.01)  # let the handlers see their connections end

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(reader, writer)
        self.connections.append(conn)
        index = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                body = await reader.readexactly(length)
                await self.handler(Exchange(conn, index, head, body))
                index += 1
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            conn.closed_by_peer = time.monotonic()
        except asyncio.CancelledError:  # the test is over
            writer.close()

    async def wait_closed_by_peer(self, conn: Connection, timeout: float) -> float:
        """Seconds until the client closed `conn` (reading what it may still send); raises on timeout."""

        async def watch() -> None:
            while conn.closed_by_peer is None:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(watch(), timeout)
        assert conn.closed_by_peer is not None
        return conn.closed_by_peer


async def hold_until_closed(exchange: Exchange) -> None:
    """Never answer: wait for the client to close the connection (as a long generation does)."""
    try:
        while await exchange.conn.reader.read(1024):
            pass
    except ConnectionError:
        pass
    exchange.conn.closed_by_peer = time.monotonic()
    exchange.conn.writer.close()


class FakeManager:
    """The part of ModelManager the /v1 routes use: one endpoint, and what the routes reported."""

    def __init__(self, url: str) -> None:
        self.endpoint = Endpoint("smol", url, {"Authorization": "Bearer k"}, send_as=None)
        self.used = 0
        self.failed: list[tuple[Endpoint, str]] = []

    async def start_up(self) -> None:
        pass

    async def shut_down(self) -> None:
        pass

    @asynccontextmanager
    async def using(self, model_id: str, service: str, path: str) -> AsyncIterator[Endpoint]:
        self.used += 1
        yield self.endpoint

    def engine_failed(self, endpoint: Endpoint, reason: str) -> None:
        self.failed.append((endpoint, reason))


@asynccontextmanager
async def daemon_app(home: Path, manager: FakeManager) -> AsyncIterator[str]:
    """The daemon's real app under a real uvicorn on a free port, around `manager`; yields its URL."""
    settings = load_settings(flags={"home": str(home), "port": free_port()}, env={})
    app = create_app(settings, manager)  # type: ignore[arg-type]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=settings.port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
    try:
        yield settings.url
    finally:
        server.should_exit = True
        await task
