"""Forwarding /v1 requests to a running model: finding its engine, streaming bytes through, rewriting `model`.

Xinference's llama.cpp engine keeps generating after its HTTP client disconnects (its callback into
xllamacpp never asks to stop), so when the model process is ours we talk to the llama-server that
xllamacpp runs inside it: llama-server stops a generation as soon as its connection closes.
A remote Xinference (cluster) is reached through its own REST API instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, MutableMapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx
import psutil
from fastapi import Request, Response

from ..errors import BadRequest, QwendeskError
from ..xinference import clean_detail, error_for

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


# ---- finding the engine ------------------------------------------------------------------------
class EngineLocator:
    """Finds the llama-server inside a model process that descends from this daemon (embedded Xinference)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[psutil.Process, str]] = {}

    async def locate(self, http: httpx.AsyncClient, uid: str, model_file: str | None) -> str | None:
        """Base URL of the model's llama-server, or None (remote Xinference, or not found)."""
        cached = self._cache.get(uid)
        if cached is not None:
            proc, url = cached
            if _alive(proc):
                return url
            del self._cache[uid]
        procs = await asyncio.to_thread(_model_processes, uid)
        for proc in procs:
            ports = await asyncio.to_thread(_listening_ports, proc)
            for port in ports:
                url = f"http://127.0.0.1:{port}"
                if await _is_llama_server(http, url, model_file):
                    self._cache[uid] = (proc, url)
                    log.info("model %s: streaming directly from its llama-server at %s", uid, url)
                    return url
        return None

    def forget(self, uid: str) -> None:
        self._cache.pop(uid, None)


def _alive(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    return False


def _process_title(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error, IndexError):
        return proc.cmdline()[0]
    with contextlib.suppress(psutil.Error):
        return proc.name()
    return ""


def _model_processes(uid: str) -> list[psutil.Process]:
    """Our descendants that xoscar titled `Model: <uid>-rep<N>` (only ours: other daemons may serve the same uid)."""
    prefix = f"Model: {uid}-rep"
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    return [p for p in children if _process_title(p).startswith(prefix)]


def _listening_ports(proc: psutil.Process) -> list[int]:
    with contextlib.suppress(psutil.Error):
        conns = proc.net_connections(kind="tcp")
        return sorted(
            c.laddr.port
            for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr.ip in ("127.0.0.1", "::1")
        )
    return []


async def _is_llama_server(http: httpx.AsyncClient, url: str, model_file: str | None) -> bool:
    """True when `url` answers /props like llama-server, for the expected GGUF file."""
    try:
        resp = await http.get(f"{url}/props", timeout=PROBE_TIMEOUT)
        props = resp.json()
    except (httpx.HTTPError, ValueError):
        return False
    path = props.get("model_path") if isinstance(props, dict) else None
    if not isinstance(path, str):
        return False
    return model_file is None or _same_file(path, model_file)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


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
