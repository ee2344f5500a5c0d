"""Forwarding a /v1 request to a running model: bytes through, the answer streamed back, `model` rewritten.

Xinference's llama.cpp engine keeps generating after its HTTP client disconnects (its callback into
xllamacpp never asks to stop), so for models of the embedded Xinference the manager hands out the
llama-server that xllamacpp runs inside the model process, on the port and with the key it gave it at
launch: llama-server stops a generation as soon as its connection closes. A remote Xinference (cluster)
is reached through its own REST API instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, MutableMapping
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import anyio
import httpx
from fastapi import Request, Response

from ..errors import BadRequest, EngineError, QwendeskError
from ..lifecycle.manager import Endpoint, ModelManager, Service
from ..xinference.client import clean_detail, error_for

log = logging.getLogger(__name__)
T = TypeVar("T")

# No read timeout: a stream may pause while a long prompt is evaluated.
UPSTREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=60.0, pool=None)
CLIENT_CLOSED = 499  # nginx's convention: the client went away before the answer
# The top-level `model` key of an OpenAI JSON object. A key written inside a JSON string value is
# escaped (`\"model\":`), so this never matches generated text.
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')


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


# ---- forwarding ------------------------------------------------------------------------------------
def parse_body(raw: bytes) -> dict[str, Any]:
    """The request's JSON object, which must name a `model`."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON ({exc}).") from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("The request needs a `model`: one of the ids GET /v1/models lists.")
    return body


async def forward(request: Request, path: str, service: Service) -> Response:
    """Start the model if needed, send the request to its engine, and relay the answer."""
    raw = await request.body()
    body = parse_body(raw)
    manager: ModelManager = request.app.state.manager
    http: httpx.AsyncClient = request.app.state.openai_http
    stack = AsyncExitStack()
    try:
        # The model stays busy (never idle-stopped) until the answer has been relayed.
        # Not raced against a disconnect: a half-cancelled start would leave the model in limbo.
        endpoint = await stack.enter_async_context(manager.using(body["model"], service, path))
        # llama-server ignores `model`: send the client's bytes unchanged. Xinference needs its uid.
        content = (
            raw if endpoint.send_as is None else json.dumps({**body, "model": endpoint.send_as}).encode()
        )
        upstream = await _send(request, http, endpoint, path, content)
        if upstream is None:
            await stack.aclose()
            return Response(status_code=CLIENT_CLOSED)
        stack.push_async_callback(upstream.aclose)
        rewriter = ModelRewriter(endpoint.name)
        if upstream.status_code >= 400:
            raise upstream_error(upstream.status_code, await upstream.aread(), endpoint.name, path)
        if "text/event-stream" in upstream.headers.get("content-type", ""):
            return StreamedProxyResponse(upstream, stack, rewriter)  # it closes the stack when done
        data = await upstream.aread()
        await stack.aclose()
        return Response(rewriter(data), status_code=upstream.status_code, media_type="application/json")
    except BaseException:
        await stack.aclose()
        raise


async def _send(
    request: Request, http: httpx.AsyncClient, endpoint: Endpoint, path: str, content: bytes
) -> httpx.Response | None:
    """POST to the engine and return once its headers arrive (None if the client left first)."""
    headers = {**endpoint.headers, "content-type": "application/json", "accept-encoding": "identity"}
    upstream_request = http.build_request("POST", endpoint.url + path, content=content, headers=headers)
    started = time.monotonic()
    try:
        return await until_disconnect(request, http.send(upstream_request, stream=True))
    except httpx.HTTPError as exc:
        raise EngineError(
            f"The engine of {endpoint.name} did not answer ({type(exc).__name__} after "
            f"{time.monotonic() - started:.1f} s). It may have crashed; check `qwendesk status` and try again."
        ) from exc


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
    """An engine's error response as the matching QwendeskError, keeping its message."""
    message = clean_detail(body)
    if status == 501 and path.endswith("/embeddings"):
        return BadRequest(
            f"{model} does not serve embeddings: it runs as a chat model. Use an embedding model for /v1/embeddings."
        )
    if status >= 500:
        return EngineError(f"{model}: {message}")
    return error_for(status, f"{model}: {message}")
