"""Forwarding a /v1 request to a running model: bytes through, the answer streamed back, `model` rewritten.

Xinference's llama.cpp engine keeps generating after its HTTP client disconnects (its callback into
xllamacpp never asks to stop), so for models of the embedded Xinference the manager hands out the
llama-server that xllamacpp runs inside the model process, on the port and with the key it gave it at
launch: llama-server stops a generation once its connection closes. A remote Xinference (cluster) is
reached through its own REST API instead.

How soon llama-server notices a closed connection (measured with xllamacpp 2026.10.11549): a streamed
answer at its next token (< 1 s); a non-streamed one at its next 1 s poll, and that poll waits for a
whole second without a result of *any* request, so while another slot streams it is put off until that
one pauses or ends. With one slot (the default) nothing else produces results, so it is ~1 s.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx
from fastapi import Request, Response
from fastapi.responses import JSONResponse

from ..disconnects import until_disconnect
from ..errors import BadRequest, ContextLengthExceeded, EngineError, QwendeskError
from ..http_errors import error_body, status_for
from ..lifecycle.manager import Endpoint, ModelManager, Service
from ..xinference.client import clean_detail, error_for
from .openai_checks import InvalidParameter, check_request

log = logging.getLogger(__name__)

# No read timeout: a stream may pause while a long prompt is evaluated.
UPSTREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=60.0, pool=None)
# llama-server (cpp-httplib) and Xinference (uvicorn) close a connection idle for 5 s (measured: 5.00 s),
# httpx's own default expiry. Equal timers race: the pool hands out a connection as the engine closes
# it. Ours expire well before theirs, so a pooled connection is never one the engine is closing.
KEEPALIVE_EXPIRY = 2.0
CLIENT_CLOSED = 499  # nginx's convention: the client went away before the answer
# The top-level `model` key of an OpenAI JSON object. A key written inside a JSON string value is
# escaped (`\"model\":`), so this never matches generated text.
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')
# llama-server's error type for a prompt over the context; Xinference words it in its message only.
_OVERFLOW_TYPE = "exceed_context_size_error"
_OVERFLOW_TEXT = re.compile(r"exceed\w*\b.*\bcontext|context (length|size|window)\b.*\bexceed", re.I | re.S)


def new_http_client() -> httpx.AsyncClient:
    """The one client every forwarded request shares (pooled keep-alive connections to the engine)."""
    limits = httpx.Limits(
        max_connections=None, max_keepalive_connections=32, keepalive_expiry=KEEPALIVE_EXPIRY
    )
    return httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, limits=limits, trust_env=False)


# ---- the response --------------------------------------------------------------------------------
class ModelRewriter:
    """Puts the qwendesk model name where the engine writes its GGUF path (one regex per flushed block)."""

    def __init__(self, name: str) -> None:
        self.name = name
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
                yield self.events(out)
        if pending:
            yield self.events(pending)

    def events(self, block: bytes) -> bytes:
        """A block of whole lines, `model` rewritten and any error event in OpenAI's shape."""
        block = self(block)
        if b'"error"' not in block:
            return block
        return b"\n".join(self._error_event(line) for line in block.split(b"\n"))

    def _error_event(self, line: bytes) -> bytes:
        """`data: {"error": ...}` as the engine words it -> OpenAI's error object (other lines unchanged)."""
        if not line.startswith(b"data:"):
            return line
        try:
            data = json.loads(line[5:])
        except ValueError:
            return line
        if not isinstance(data, dict) or "error" not in data or "choices" in data:
            return line
        return error_event(openai_error(self.name, data["error"]))


def openai_error(model: str, error: Any) -> dict[str, Any]:
    """An engine's error (an object or a string) as OpenAI's error object, naming the model."""
    detail = error if isinstance(error, dict) else {"message": str(error)}
    message = str(detail.get("message") or detail)
    if is_overflow(detail.get("type"), message):
        overflow = context_overflow(model, message)
        return {
            "message": overflow.message,
            "type": "invalid_request_error",
            "param": "messages",
            "code": overflow.code,
        }
    return {"message": f"{model}: {message}", "type": "server_error", "param": None, "code": EngineError.code}


def error_event(error: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps({"error": error}).encode()


def is_overflow(kind: Any, message: str) -> bool:
    return kind == _OVERFLOW_TYPE or bool(_OVERFLOW_TEXT.search(message))


def context_overflow(model: str, message: str) -> ContextLengthExceeded:
    return ContextLengthExceeded(
        f"{model}: {message.rstrip('.')}. Shorten the conversation, or start the model with a larger context: "
        f"`qwendesk start {model} --n-ctx N`."
    )


class StreamedProxyResponse(Response):
    """Sends an upstream event stream through as it arrives; a client disconnect closes the upstream at once."""

    def __init__(
        self,
        upstream: httpx.Response,
        stack: AsyncExitStack,
        rewriter: ModelRewriter,
        on_broken: Callable[[str], None] | None = None,
    ) -> None:
        self.upstream, self.stack, self.rewriter, self.on_broken = upstream, stack, rewriter, on_broken
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
            reason = describe(exc)
            log.warning("the engine's stream broke off: %s", reason)
            if self.on_broken is not None:
                self.on_broken(reason)
            error = {
                "message": f"The engine of {self.rewriter.name} stopped in the middle of the answer ({reason}). "
                "Try again: the next request starts it again.",
                "type": "server_error",
                "param": None,
                "code": EngineError.code,
            }
            await send(
                {"type": "http.response.body", "body": error_event(error) + b"\n\n", "more_body": True}
            )


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
    """Check the request, start the model if needed, send the request to its engine, and relay the answer."""
    raw = await request.body()
    body = parse_body(raw)
    try:
        check_request(path, body)
    except InvalidParameter as exc:
        return invalid_request(path, exc)
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
        started = time.monotonic()
        try:
            upstream = await until_disconnect(request, post_engine(http, endpoint, path, content))
            if upstream is None:
                await stack.aclose()
                return Response(status_code=CLIENT_CLOSED)
            # Closing it before it was read to the end closes its connection, which is what stops llama.cpp.
            stack.push_async_callback(upstream.aclose)
            rewriter = ModelRewriter(endpoint.name)
            if "text/event-stream" in upstream.headers.get("content-type", "") and upstream.status_code < 400:
                on_broken = lambda reason: manager.engine_failed(endpoint, reason)  # noqa: E731
                return StreamedProxyResponse(upstream, stack, rewriter, on_broken)  # it closes the stack
            data = await until_disconnect(request, upstream.aread())
        except httpx.HTTPError as exc:
            manager.engine_failed(endpoint, describe(exc))
            raise EngineError(
                f"The engine of {endpoint.name} did not answer ({describe(exc)} after "
                f"{time.monotonic() - started:.1f} s). Try again: an engine that stopped is started again by "
                "the next request."
            ) from exc
        await stack.aclose()
        if data is None:
            return Response(status_code=CLIENT_CLOSED)
        if upstream.status_code >= 400:
            raise upstream_error(upstream.status_code, data, endpoint.name, path)
        return Response(rewriter(data), status_code=upstream.status_code, media_type="application/json")
    except BaseException:
        await stack.aclose()
        raise


async def post_engine(
    http: httpx.AsyncClient, endpoint: Endpoint, path: str, content: bytes
) -> httpx.Response:
    """POST to the engine and return once its headers arrive.

    Sent again once when the engine closed a pooled connection before answering: with the expiry above
    that takes a server that drops idle connections early, and such a request was never read.
    """
    headers = {**endpoint.headers, "content-type": "application/json", "accept-encoding": "identity"}
    for attempt in (1, 2):
        connected = False

        async def trace(event: str, info: dict[str, Any]) -> None:
            nonlocal connected
            connected = connected or event == "connection.connect_tcp.complete"

        upstream_request = http.build_request(
            "POST", endpoint.url + path, content=content, headers=headers, extensions={"trace": trace}
        )
        try:
            return await http.send(upstream_request, stream=True)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            if connected or attempt == 2:
                raise
            log.info(
                "the engine closed a pooled connection before answering (%s); sending again", describe(exc)
            )
    raise AssertionError("unreachable")


def invalid_request(path: str, error: InvalidParameter) -> JSONResponse:
    """OpenAI's error body for a refused field: `param` names it."""
    status = status_for(error)
    body = error_body(path, error.message, error.code, status)
    if isinstance(body.get("error"), dict):
        body["error"]["param"] = error.param
    return JSONResponse(body, status_code=status)


def describe(exc: BaseException) -> str:
    """`RemoteProtocolError: Server disconnected without sending a response.` (the name alone if no text)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---- helpers for the routes ------------------------------------------------------------------------
def upstream_error(status: int, body: bytes, model: str, path: str) -> QwendeskError:
    """An engine's error response as the matching QwendeskError, keeping its message."""
    message = clean_detail(body)
    if is_overflow(_error_type(body), message):
        return context_overflow(model, message)
    if status == 501 and path.endswith("/embeddings"):
        return BadRequest(
            f"{model} does not serve embeddings: it runs as a chat model. Use an embedding model for /v1/embeddings."
        )
    if status >= 500:
        return EngineError(f"{model}: {message}")
    return error_for(status, f"{model}: {message}")


def _error_type(body: bytes) -> str | None:
    """llama-server's `{"error": {"type": ...}}`, if the body is that."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("type") if isinstance(error, dict) else None
