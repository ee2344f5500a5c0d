"""Load: 50 concurrent streams over two models with n_parallel 4; none fails, none is mixed up, nothing leaks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import SMOLLM2_NAME, DaemonProcess, free_port, link_model

pytestmark = pytest.mark.e2e

CLIENTS = 50
QWEN_NAME = "qwen2-tiny-q8_0"


def body(model: str, i: int, stream: bool) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": f"Count to {i} and say the number {i} again."}],
        "max_tokens": 12,
        "temperature": 0,
        "stream": stream,
    }


async def stream_text(client: httpx.AsyncClient, model: str, i: int) -> str:
    """The streamed answer's text; every chunk must belong to this model and end with [DONE]."""
    parts, done = [], False
    async with client.stream("POST", "/v1/chat/completions", json=body(model, i, True)) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            chunk = json.loads(line[6:])
            assert "error" not in chunk, chunk
            assert chunk["model"] == model
            for choice in chunk["choices"]:
                parts.append(choice["delta"].get("content") or "")
    assert done, f"stream {model}/{i} ended without [DONE]"
    return "".join(parts)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path, qwen2_gguf: Path):
    home = tmp_path_factory.mktemp("load-home")
    proc = DaemonProcess(home, free_port(), {"QWENDESK_KEEP_ALIVE": "0", "QWENDESK_N_PARALLEL": "4"})
    link_model(smollm2_gguf, proc.models_dir)
    link_model(qwen2_gguf, proc.models_dir)
    proc.start()
    try:
        for name in (SMOLLM2_NAME, QWEN_NAME):
            proc.wait_for(lambda _c, n=name: proc.model(n), what=f"{name} listed")
            proc.client.start(name, n_ctx=1024)
        yield proc
    finally:
        proc.stop()


async def test_fifty_concurrent_streams_over_two_models(loaded: DaemonProcess) -> None:
    models = [SMOLLM2_NAME, QWEN_NAME]
    jobs = [(models[i % 2], i) for i in range(CLIENTS)]
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=loaded.url, timeout=600, limits=limits) as client:
        # Each request's own greedy answer, one at a time (no batching).
        expected = {}
        for model, i in jobs:
            r = await client.post("/v1/chat/completions", json=body(model, i, False))
            assert r.status_code == 200, r.text
            expected[(model, i)] = r.json()["choices"][0]["message"]["content"]
        daemon = psutil.Process(loaded.proc.pid)
        before = daemon.memory_info().rss

        got = await asyncio.gather(*(stream_text(client, model, i) for model, i in jobs))

    mixed = [(job, text, expected[job]) for job, text in zip(jobs, got, strict=True) if text != expected[job]]
    assert not mixed, f"{len(mixed)} of {CLIENTS} streams differ from their own answer, e.g. {mixed[:2]}"
    assert len(set(expected.values())) > CLIENTS // 4, (
        "the prompts must give distinct answers to tell mix-ups"
    )
    # The daemon relays bytes: 50 streams leave no lasting memory behind (allow allocator noise).
    after = daemon.memory_info().rss
    assert after - before < 40 * 2**20, f"daemon RSS grew {(after - before) / 2**20:.0f} MiB"
    for name in models:
        assert loaded.model(name)["state"] == "running"
