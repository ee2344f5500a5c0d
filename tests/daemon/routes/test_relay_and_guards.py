"""Forwarding helpers (bodies replaced, streams rewritten event by event), the `x-api-key` token, and the
Ollama listener's own guards, port checks and lifetime."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.requests import Request

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.errors import ConfigError
from qwendesk.daemon.routes.relay import EventBuffer, RewrittenStream, format_event, format_line, with_body
from qwendesk.daemon.security import SecurityMiddleware
from qwendesk.daemon.server import CompanionServer, _check_ollama_port, serve_with_companion
from tests.conftest import free_port


def test_events_are_split_wherever_the_bytes_are_cut() -> None:
    stream = b'event: a\ndata: {"x": 1}\n\ndata: [DONE]\n\n: comment\n\ndata: {"y":\n\n'
    for cut in range(1, len(stream)):
        buffer = EventBuffer()
        events = buffer.feed(stream[:cut]) + buffer.feed(stream[cut:]) + buffer.flush()
        assert events == [("a", {"x": 1}), (None, "[DONE]"), (None, '{"y":')]
    assert format_event(("a", {"x": 1})) == b'event: a\ndata: {"x": 1}\n\n'
    assert format_line((None, {"é": 1})) == '{"é": 1}\n'.encode()


async def test_a_replaced_body_then_the_clients_own_receives() -> None:
    messages = [
        {"type": "http.request", "body": b'{"a": 1}', "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive():
        return messages.pop(0)

    original = Request({"type": "http", "method": "POST", "headers": [], "path": "/"}, receive)
    assert await original.body() == b'{"a": 1}'
    replaced = with_body(original, {"b": 2})
    assert json.loads(await replaced.body()) == {"b": 2}
    assert (await replaced.receive())["type"] == "http.disconnect"  # the watcher still sees the client leave


async def test_a_rewritten_stream_passes_every_event_through_the_rewrite() -> None:
    class Inner:  # stands for forward's StreamedProxyResponse
        status_code = 200

        async def __call__(self, scope, receive, send):
            await inner(scope, receive, send)

    async def inner(scope, receive, send):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for piece in (b'data: {"n": 1}\n\nda', b'ta: {"n": 2}\n\n', b""):
            await send({"type": "http.response.body", "body": piece, "more_body": piece != b""})

    def double(event):
        yield None, {"n": event[1]["n"] * 10}
        yield None, {"n": event[1]["n"] * 10 + 1}

    sent = []

    async def send(message):
        sent.append(message)

    response = RewrittenStream(Inner(), double, format_line)  # type: ignore[arg-type]
    await response({"type": "http"}, None, send)
    assert (b"content-type", b"application/x-ndjson") in sent[0]["headers"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert [json.loads(line) for line in body.splitlines()] == [{"n": 10}, {"n": 11}, {"n": 20}, {"n": 21}]
    assert sent[-1]["more_body"] is False


def guarded(port: int, token: str | None = "t0ken") -> httpx.AsyncClient:
    settings = load_settings(flags={"port": 11470, "token": token, "ollama_port": port}, env={})
    app = FastAPI()

    @app.get("/v1/models")
    @app.get("/api/tags")
    async def ok() -> dict:
        return {"ok": True}

    guarded_app = SecurityMiddleware(app, settings, port=port)
    return httpx.AsyncClient(transport=httpx.ASGITransport(guarded_app), base_url=f"http://127.0.0.1:{port}")


async def test_x_api_key_carries_the_token_on_v1_only() -> None:
    async with guarded(11470) as c:
        assert (await c.get("/v1/models", headers={"x-api-key": "t0ken"})).status_code == 200
        assert (await c.get("/v1/models", headers={"x-api-key": "wrong"})).status_code == 401
        assert (await c.get("/v1/models", headers={"authorization": "Bearer t0ken"})).status_code == 200
        assert (await c.get("/api/tags", headers={"x-api-key": "t0ken"})).status_code == 401


async def test_the_ollama_listener_answers_to_its_own_port() -> None:
    async with guarded(11434) as c:
        auth = {"authorization": "Bearer t0ken"}
        assert (await c.get("/api/tags", headers=auth)).status_code == 200
        assert (await c.get("/api/tags", headers={**auth, "host": "localhost:11434"})).status_code == 200
        r = await c.get("/api/tags", headers={**auth, "host": "evil.test:11434"})
        assert r.status_code == 403 and "DNS-rebinding" in r.json()["error"]
        assert (await c.get("/api/tags")).status_code == 401


def test_the_ollama_port_must_be_free_and_its_own() -> None:
    port = free_port()
    _check_ollama_port(load_settings(flags={"port": port, "ollama_port": 0}, env={}))  # off: nothing to check
    with pytest.raises(ConfigError, match="both"):
        _check_ollama_port(load_settings(flags={"port": port, "ollama_port": port}, env={}))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(ConfigError, match="perhaps by Ollama itself"):
            _check_ollama_port(load_settings(flags={"port": port, "ollama_port": taken}, env={}))


async def test_the_companion_listener_lives_and_stops_with_the_api() -> None:
    def server(app: FastAPI, cls=uvicorn.Server) -> uvicorn.Server:
        return cls(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None, lifespan="off"))

    api, other = FastAPI(), FastAPI()

    @other.get("/")
    async def root() -> str:
        return "Ollama is running"

    main, companion = server(api), server(other, CompanionServer)
    running = asyncio.create_task(serve_with_companion(main, companion))
    async with httpx.AsyncClient() as c:
        for _ in range(200):
            if companion.started:
                break
            await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{companion.config.port}/"
        assert (await c.get(url)).json() == "Ollama is running"
        main.should_exit = True  # what a signal or POST /api/shutdown does
        await asyncio.wait_for(running, 10)
        with pytest.raises(httpx.ConnectError):
            await c.get(url)
