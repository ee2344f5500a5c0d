"""The /v1 proxy against a scripted engine: `model` rewrite, keep-alive reuse, disconnects, broken engines.

Unit tests (the engine is a tiny asyncio server, the manager a fake); the real engine is in the e2e tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from qwendesk.daemon.lifecycle.manager import Endpoint
from qwendesk.daemon.routes.proxy import KEEPALIVE_EXPIRY, ModelRewriter, new_http_client, post_engine
from tests.daemon.routes.upstream import (
    Exchange,
    FakeManager,
    ScriptedUpstream,
    daemon_app,
    hold_until_closed,
)

CHAT = "/v1/chat/completions"
HELLO = {"model": "smol", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = {"object": "chat.completion", "model": "/models/smol.gguf", "choices": []}
# llama-server's own answer to a prompt over the context (xllamacpp 2026.10.11549), streamed or not.
OVERFLOW = {
    "error": {
        "code": 400,
        "message": "request (5031 tokens) exceeds the available context size (4096 tokens), try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 5031,
        "n_ctx": 4096,
    }
}
ENGINE_KEEPALIVE = 5.0  # what llama-server and uvicorn close idle connections after (measured 5.00 s)


def test_rewriter_replaces_only_the_model_key_even_across_chunk_boundaries() -> None:
    rewrite = ModelRewriter("smol")
    event = (
        b'data: {"choices":[{"delta":{"content":"say \\"model\\":\\"x\\""}}],'
        b'"model":"/a/b/c.gguf","object":"chat.completion.chunk"}\n\n'
    )
    assert rewrite(event) == event.replace(b'"/a/b/c.gguf"', b'"smol"')
    assert rewrite(b'{"model": "/p/with \\"quote\\".gguf", "x": 1}') == b'{"model":"smol", "x": 1}'

    async def split() -> list[bytes]:
        async def chunks():
            for i in range(0, len(event) * 3, 7):  # cut in the middle of the key and value
                yield (event * 3)[i : i + 7]

        return [b async for b in rewrite.stream(chunks())]

    out = b"".join(asyncio.run(split()))
    assert out == (event * 3).replace(b'"/a/b/c.gguf"', b'"smol"')


def test_error_events_get_openai_shape_and_the_overflow_code() -> None:
    rewrite = ModelRewriter("smol")
    xinference_style = b'data: {"error": "Requested tokens (9000) exceed context window of 4096"}\n\n'
    (line, blank, end) = rewrite.events(xinference_style).split(b"\n")
    error = json.loads(line.removeprefix(b"data: "))["error"]
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    assert "smol" in error["message"] and "--n-ctx" in error["message"] and (blank, end) == (b"", b"")
    other = json.loads(rewrite.events(b'data: {"error": {"message": "boom"}}\n\n').split(b"\n")[0][6:])
    assert other["error"] == {
        "message": "smol: boom",
        "type": "server_error",
        "param": None,
        "code": "engine_error",
    }
    content = b'data: {"choices":[{"delta":{"content":"\\"error\\""}}],"model":"x"}\n\n'
    assert rewrite.events(content) == content.replace(b'"x"', b'"smol"')


# ---- keep-alive: the pool must never hand out a connection the engine is closing ---------------------
async def answer_first_then_drop(exchange: Exchange) -> None:
    """The race, made deterministic: the engine closes an idle connection just as a request arrives on it."""
    if exchange.index == 0:
        await exchange.json(200, ANSWER)
    else:
        exchange.conn.writer.close()


async def test_a_pooled_connection_closed_by_the_engine_fails_a_plain_client_and_is_retried_by_ours() -> None:
    async with ScriptedUpstream(answer_first_then_drop) as engine:
        endpoint = Endpoint("smol", engine.url, {}, None)
        plain = httpx.AsyncClient()  # httpx's defaults, as the proxy had them
        try:
            assert (await plain.post(engine.url + CHAT, content=b"{}")).status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):  # the 503 users saw ("did not answer")
                await plain.post(engine.url + CHAT, content=b"{}")
        finally:
            await plain.aclose()

        ours = new_http_client()
        try:
            for _ in range(3):
                response = await post_engine(ours, endpoint, CHAT, b"{}")
                assert response.status_code == 200 and json.loads(await response.aread()) == ANSWER
                await response.aclose()
        finally:
            await ours.aclose()
    # The plain client's one; ours: every reused connection was dropped, and each retry opened the next.
    assert len(engine.connections) == 1 + 3


async def test_no_retry_on_a_fresh_connection_or_twice() -> None:
    async def drop(exchange: Exchange) -> None:
        exchange.conn.writer.close()

    async with ScriptedUpstream(drop) as engine:
        http = new_http_client()
        try:
            with pytest.raises(httpx.RemoteProtocolError):
                await post_engine(http, Endpoint("smol", engine.url, {}, None), CHAT, b"{}")
        finally:
            await http.aclose()
    assert len(engine.connections) == 1  # a request the engine may have read is not sent twice


def test_our_connections_expire_before_the_engines() -> None:
    http = new_http_client()
    pool = http._transport._pool  # type: ignore[attr-defined]
    assert pool._keepalive_expiry == KEEPALIVE_EXPIRY < ENGINE_KEEPALIVE / 2
    asyncio.run(http.aclose())


# ---- the client leaves: the engine's connection must close -------------------------------------------
async def test_a_client_leaving_a_non_streamed_request_closes_the_engine_connection(tmp_path: Path) -> None:
    async with ScriptedUpstream(hold_until_closed) as engine:
        manager = FakeManager(engine.url)
        async with daemon_app(tmp_path, manager) as url:
            async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=0.5)) as client:
                with pytest.raises(httpx.ReadTimeout):
                    await client.post(url + CHAT, json=HELLO)
                left = time.monotonic()
            (conn,) = engine.connections
            closed = await engine.wait_closed_by_peer(conn, timeout=5)
    assert closed - left < 1.0, "the engine's connection must close as soon as the client leaves"
    assert manager.failed == []  # a client leaving is not an engine failure


async def test_a_client_leaving_a_stream_closes_the_engine_connection(tmp_path: Path) -> None:
    async def endless(exchange: Exchange) -> None:
        await exchange.start_events()
        try:
            while True:
                await exchange.event(b'{"choices":[],"model":"/m.gguf"}')
                await asyncio.sleep(0.05)
        except ConnectionError:
            exchange.conn.closed_by_peer = time.monotonic()

    async with ScriptedUpstream(endless) as engine:
        manager = FakeManager(engine.url)
        async with daemon_app(tmp_path, manager) as url:
            async with httpx.AsyncClient(timeout=10) as client:
                async with client.stream("POST", url + CHAT, json={**HELLO, "stream": True}) as r:
                    lines = r.aiter_lines()
                    assert '"model":"smol"' in await anext(lines)
                left = time.monotonic()
            (conn,) = engine.connections
            closed = await engine.wait_closed_by_peer(conn, timeout=5)
    assert closed - left < 1.0
    assert manager.failed == []


# ---- the engine breaks -------------------------------------------------------------------------------
async def test_an_engine_dying_mid_stream_ends_it_with_an_error_event_and_tells_the_manager(
    tmp_path: Path,
) -> None:
    async def dies(exchange: Exchange) -> None:
        await exchange.start_events()
        await exchange.event(b'{"choices":[{"delta":{"content":"Once"}}],"model":"/m.gguf"}')
        exchange.conn.writer.transport.abort()  # as a killed process: no last chunk

    async with ScriptedUpstream(dies) as engine:
        manager = FakeManager(engine.url)
        async with (
            daemon_app(tmp_path, manager) as url,
            httpx.AsyncClient(timeout=10) as client,
            client.stream("POST", url + CHAT, json={**HELLO, "stream": True}) as r,
        ):
            events = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    assert "Once" in events[0]
    error = json.loads(events[-1].removeprefix("data: "))["error"]
    assert error["code"] == "engine_error" and "next request starts it again" in error["message"]
    ((endpoint, reason),) = manager.failed
    assert endpoint == manager.endpoint and "RemoteProtocolError" in reason


async def test_an_engine_that_refuses_is_a_502_and_reported(tmp_path: Path) -> None:
    async with ScriptedUpstream(hold_until_closed) as gone:
        dead_url = gone.url  # nothing listens there once the block ends
    manager = FakeManager(dead_url)
    async with daemon_app(tmp_path, manager) as url, httpx.AsyncClient(timeout=10) as client:
        r = await client.post(url + CHAT, json=HELLO)
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "engine_error" and "ConnectError" in r.json()["error"]["message"]
    assert len(manager.failed) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_a_context_overflow_is_openai_context_length_exceeded(tmp_path: Path, stream: bool) -> None:
    async def overflow(exchange: Exchange) -> None:
        await exchange.json(400, OVERFLOW)

    async with ScriptedUpstream(overflow) as engine:
        manager = FakeManager(engine.url)
        async with daemon_app(tmp_path, manager) as url, httpx.AsyncClient(timeout=10) as client:
            r = await client.post(url + CHAT, json={**HELLO, "stream": stream})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    assert "5031 tokens" in error["message"] and "--n-ctx" in error["message"]
    assert manager.failed == []


# ---- the request is checked before any model is touched ----------------------------------------------
async def test_an_invalid_request_is_a_400_naming_the_field_before_the_model_is_used(tmp_path: Path) -> None:
    manager = FakeManager("http://127.0.0.1:9")
    async with daemon_app(tmp_path, manager) as url, httpx.AsyncClient(timeout=10) as client:
        r = await client.post(url + CHAT, json={**HELLO, "messages": [{"role": "wizard", "content": "x"}]})
        empty = await client.post(url + CHAT, json={**HELLO, "messages": []})
        hot = await client.post(url + CHAT, json={**HELLO, "temperature": 3})
        embed = await client.post(url + "/v1/embeddings", json={"model": "smol", "input": []})
    assert [x.status_code for x in (r, empty, hot, embed)] == [400] * 4
    assert r.json()["error"] == {
        "message": r.json()["error"]["message"],
        "type": "invalid_request_error",
        "code": "bad_request",
        "param": "messages[0].role",
    }
    assert "'wizard' is not one of" in r.json()["error"]["message"]
    assert empty.json()["error"]["param"] == "messages" and hot.json()["error"]["param"] == "temperature"
    assert embed.json()["error"]["param"] == "input"
    assert manager.used == 0


async def test_a_valid_request_reaches_the_engine_byte_for_byte(tmp_path: Path) -> None:
    seen: list[bytes] = []

    async def echo(exchange: Exchange) -> None:
        seen.append(exchange.body)
        await exchange.json(200, ANSWER)

    raw = b'{"model":"smol", "messages":[{"role":"user","content":"h\\u00e9"}], "top_k":1, "ignore_eos":true}'
    async with (
        ScriptedUpstream(echo) as engine,
        daemon_app(tmp_path, FakeManager(engine.url)) as url,
        httpx.AsyncClient(timeout=10) as client,
    ):
        r = await client.post(url + CHAT, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["model"] == "smol"
    assert seen == [raw]
