"""Forwarding with a changed request or a rewritten answer, around `proxy.forward` (never a second copy of it).

The routes that translate (Responses and Anthropic fix-ups, forced tool calls, the Ollama API) hand
`forward` a request whose body they replaced, and wrap its answer: a JSON body is rewritten once, an event
stream event by event as it passes, so disconnects, the engine's errors and the `model` rewrite stay
`forward`'s.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from fastapi import Request, Response

from ..errors import BadRequest
from ..lifecycle.manager import Service
from .proxy import StreamedProxyResponse, forward

# One server-sent event: (event name or None, data). `data` is the JSON object, or the raw text when the
# data is not JSON (e.g. OpenAI's `[DONE]`).
Event = tuple[str | None, Any]
EventRewrite = Callable[[Event], Iterable[Event]]


def with_body(request: Request, body: dict[str, Any]) -> Request:
    """The same request carrying another JSON body; later receives (the disconnect) reach the client's."""
    data = json.dumps(body).encode()
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        return await request.receive()

    return Request(request.scope, receive)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (the body stays readable for `forward`)."""
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON ({exc}).") from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


async def forward_rewritten(
    request: Request,
    path: str,
    body: dict[str, Any] | None,
    *,
    on_json: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    on_event: Callable[[], EventRewrite] | None = None,
    service: Service = "chat",
    ndjson: bool = False,
) -> Response:
    """`forward` with `body` (None: the client's bytes), its JSON answer passed through `on_json` and its
    event stream through a fresh `on_event()` rewriter (each None: unchanged); `ndjson` writes the
    rewritten events as JSON lines (Ollama's streaming) instead of server-sent events."""
    response = await forward(request if body is None else with_body(request, body), path, service)
    if isinstance(response, StreamedProxyResponse):
        if on_event is None:
            return response
        return RewrittenStream(response, on_event(), format_line if ndjson else format_event)
    if on_json is None or response.status_code >= 400:
        return response
    data = json.loads(response.body)
    return Response(
        json.dumps(on_json(data)), status_code=response.status_code, media_type="application/json"
    )


class EventBuffer:
    """Splits a byte stream into server-sent events (an event may arrive in pieces)."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, chunk: bytes) -> list[Event]:
        self.pending += chunk.replace(b"\r\n", b"\n")
        *blocks, self.pending = self.pending.split(b"\n\n")
        return [e for e in map(parse_event, blocks) if e is not None]

    def flush(self) -> list[Event]:
        block, self.pending = self.pending, b""
        event = parse_event(block)
        return [] if event is None else [event]


def parse_event(block: bytes) -> Event | None:
    """One `event:`/`data:` block; comments and empty blocks are None."""
    name, data = None, []
    for line in block.decode("utf-8", errors="replace").split("\n"):
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if not data:
        return None
    text = "\n".join(data)
    try:
        return name, json.loads(text)
    except ValueError:
        return name, text


def format_event(event: Event) -> bytes:
    name, data = event
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {text}\n\n".encode()


def format_line(event: Event) -> bytes:
    """An event's data as one JSON line (NDJSON)."""
    return json.dumps(event[1], ensure_ascii=False).encode() + b"\n"


class RewrittenStream(Response):
    """`forward`'s streamed answer with every event passed through `rewrite` on its way to the client."""

    def __init__(
        self,
        inner: StreamedProxyResponse,
        rewrite: EventRewrite,
        fmt: Callable[[Event], bytes] = format_event,
    ) -> None:
        self.inner, self.rewrite, self.fmt = inner, rewrite, fmt
        self.status_code = inner.status_code
        self.background = None
        self.buffer = EventBuffer()
        self.media_type = b"application/x-ndjson" if fmt is format_line else None

    def _rewrite(self, events: list[Event]) -> bytes:
        return b"".join(self.fmt(out) for event in events for out in self.rewrite(event))

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        async def send_rewritten(message: MutableMapping[str, Any]) -> Awaitable[None] | None:
            if message["type"] == "http.response.start" and self.media_type is not None:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-type"]
                message = {**message, "headers": [(b"content-type", self.media_type), *headers]}
            if message["type"] != "http.response.body":
                return await send(message)
            body = self._rewrite(self.buffer.feed(message.get("body", b"")))
            more = message.get("more_body", False)
            if not more:
                body += self._rewrite(self.buffer.flush())
            if body or not more:
                await send({"type": "http.response.body", "body": body, "more_body": more})
            return None

        await self.inner(scope, receive, send_rewritten)
