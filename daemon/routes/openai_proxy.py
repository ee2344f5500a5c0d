"""Forwarding /v1 requests to a running model: finding its engine, streaming bytes through, rewriting `model`.

Xinference's llama.cpp engine keeps generating after its HTTP client disconnects (its callback into
xllamacpp never asks to stop), so for models of the embedded Xinference we talk to the llama-server that
xllamacpp runs inside the model process, on the port and with the key the manager gave it at launch:
llama-server stops a generation as soon as its connection closes. A remote Xinference (cluster) is
reached through its own REST API instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, MutableMapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx
from fastapi import Request, Response

from ..errors import BadRequest, QwendeskError
from ..xinference.client import clean_detail, error_for

log = logging.getLogger(__name__)
T = TypeVar("T")

# No read timeout: a stream may pause while a long prompt is evaluated.
UPSTREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=60.0, pool=None)
PROBE_TIMEOUT = 2.0
# The top-level `model` key of an OpenAI JSON object. A key written inside a JSON string value is
# escaped (`\"model\":`), so this never matches generated text.
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')


@dataclass(frozen=True)
class Target:
    """Where one request goes: `base` + the /v1 path, with these headers."""

    base: str
    headers: dict[str, str]
    direct: bool  # True: xllamacpp's llama-server itself; False: Xinference's REST API


def new_http_client() -> httpx.AsyncClient:
    """The one client every forwarded request shares (pooled keep-alive connections to the engine)."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
    return httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, limits=limits, trust_env=False)


# ---- the response --------------------------------------------------------------------------------
class ModelRewriter:
    """Puts the qwendesk model name where the engine writes its GGUF path (one regex per flushed block)."""

    def __init__(self, name: str) -> None:
        self.replacement = b'"model":' + json.dumps(name).encode()

    def __call__(self, data: bytes) -> bytes:
        return _MODEL_FIELD.sub(lambda _m: self.replacement, data)

    async def stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Forward each chunk up to its last newline (a JSON line never spans one), keeping the rest."""
        pending = b""
        async for chunk in chunks:
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if cut:
                out, pending = pending[:cut], pending[cut:]
                yield self(out)
        if pending:
            yield self(pending)


class StreamedProxyResponse(Response):
    """Sends an upstream event stream through as it arrives; a client disconnect closes the upstream at once."""

    def __init__(self, upstream: httpx.Response, stack: AsyncExitStack, rewriter: ModelRewriter) -> None:
        self.upstream, self.stack, self.rewriter = upstream, stack, rewriter
        self.status_code = upstream.status_code
        self.background = None
        self.raw_headers = [
            (b"content-type", upstream.headers.get("content-type", "text/event-stream").encode("latin-1")),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def cancel_on_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(cancel_on_disconnect)
                await send(
                    {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
                )
                await self._relay(send)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.upstream.aclose()  # closing the connection is what stops llama.cpp
                await self.stack.aclose()

    async def _relay(self, send: Any) -> None:
        """Copy the engine's stream; if the engine dies mid-way, end with an OpenAI-style error event."""
        try:
            async for block in self.rewriter.stream(self.upstream.aiter_raw()):
                await send({"type": "http.response.body", "body": block, "more_body": True})
        except httpx.HTTPError as exc:
            log.warning("the engine's stream broke off: %r", exc)
            error = {
                "message": f"The model's engine stopped answering ({type(exc).__name__}).",
                "type": "server_error",
            }
            event = b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": event, "more_body": True})


# ---- helpers for the routes ------------------------------------------------------------------------
async def until_disconnect(request: Request, work: Awaitable[T]) -> T | None:
    """Await `work`, or cancel it and return None if the client disconnects first."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            pending.cancel()  # no-op when already done
        await asyncio.gather(task, watcher, return_exceptions=True)
    if task.cancelled():
        return None
    return task.result()


def upstream_error(status: int, body: bytes, model: str, path: str) -> QwendeskError:
    """An engine's error response as the matching QwendeskError, keeping its status and message."""
    message = clean_detail(body)
    if status == 501 and path.endswith("/embeddings"):
        return BadRequest(
            f"{model} does not serve embeddings: it runs as a chat model. Use an embedding model for /v1/embeddings."
        )
    error = error_for(status, f"{model}: {message}")
    error.status = status
    return error
