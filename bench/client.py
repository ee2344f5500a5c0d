"""The one HTTP client used for every system reached over HTTP (httpx, streaming, SSE lines parsed alike)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from bench.workload import StreamRecord

TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=None)


def new_client() -> httpx.AsyncClient:
    """Keep-alive pool without env proxies (loopback only)."""
    return httpx.AsyncClient(timeout=TIMEOUT, limits=httpx.Limits(max_connections=64), trust_env=False)


async def stream_one(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> StreamRecord:
    """POST one streamed chat completion and time its chunks as they arrive."""
    record = StreamRecord(sent=time.perf_counter())
    try:
        async with http.stream("POST", url, json=body, headers=headers or {}) as resp:
            if resp.status_code >= 400:
                record.error = f"HTTP {resp.status_code}: {(await resp.aread())[:300]!r}"
            else:
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    now = time.perf_counter()
                    try:
                        record.on_chunk(json.loads(data), now)
                    except ValueError:
                        continue
    except httpx.HTTPError as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    record.end = time.perf_counter()
    return record


async def stream_many(
    http: httpx.AsyncClient, url: str, bodies: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> list[StreamRecord]:
    """All bodies at once (n concurrent streaming clients)."""
    return list(await asyncio.gather(*(stream_one(http, url, b, headers) for b in bodies)))
