"""What each of qwendesk's newer routes costs over the engine's own, in one run: time to first token (p50)
and decode rate, against llama.cpp's llama-server (the same `xllamacpp.Server` the daemon's engine runs).

| route (qwendesk)               | the engine's own request it is compared with                           |
|--------------------------------|------------------------------------------------------------------------|
| /v1/chat/completions           | /v1/chat/completions (the proxy every route builds on: the baseline)   |
| /v1/responses                  | /v1/responses (bytes through + event fix-ups)                          |
| /v1/messages                   | /v1/messages (bytes through)                                           |
| Ollama /api/chat (NDJSON)      | /v1/chat/completions with the same messages and options (translated)   |
| /v1/responses, forced function | /v1/responses with the constrained body the daemon sends (whole-call latency p50, not TTFT) |
| /v1/rerank (not streamed)      | /v1/rerank of a raw reranker server (latency p50 instead of TTFT)      |

Requests alternate between the two sides, each with a fresh prompt prefix (no prompt-cache reuse), greedy,
fixed length (`ignore_eos`). Decode rate is client-side: (pieces - 1) / (last piece - first piece), pieces
counted alike on both sides. Targets: TTFT p50 <= +20 ms, decode >= 0.97x.

    python -m bench.routes [--model qwen2.5-0.5b-q4_0|smollm2|PATH] [--ttft-n 20] [--decode-n 6] [--tokens 128]

Writes bench/results/routes.{json,md} and prints the table. Run it under `flock /tmp/qwendesk-heavy.lock`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.models import BenchModel, qwen_synthetic, smollm2, user_model
from bench.systems import QwendeskSystem, RawSystem, free_port, wait_http
from bench.workload import nonce, text

RESULTS = Path(__file__).resolve().parent / "results"
TOOL = {"type": "function", "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                       "required": ["city", "days"]}}  # fmt: skip
GREEDY = {"temperature": 0.0, "top_k": 1, "ignore_eos": True}


# ---- one streamed answer, timed ---------------------------------------------------------------------------
@dataclass
class Timing:
    sent: float
    pieces: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        return self.pieces[0] - self.sent if self.pieces else None

    @property
    def decode(self) -> float | None:
        if len(self.pieces) < 3:
            return None
        return (len(self.pieces) - 1) / (self.pieces[-1] - self.pieces[0])


def is_piece(kind: str, data: Any) -> bool:
    """Whether one streamed object carries generated text (or call arguments)."""
    if not isinstance(data, dict):
        return False
    if kind == "chat":
        return any((c.get("delta") or {}).get("content") for c in data.get("choices") or [])
    if kind == "responses":
        return data.get("type") in ("response.output_text.delta", "response.function_call_arguments.delta")
    if kind == "messages":
        return data.get("type") == "content_block_delta"
    if kind == "ollama":
        return bool((data.get("message") or {}).get("content")) and not data.get("done")
    raise ValueError(kind)


async def timed(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], kind: str, headers: dict[str, str]
) -> Timing:
    """One request; sent again once if a pooled connection was closed before any answer (llama-server's
    cpp-httplib closes a kept-alive connection after a few requests; the daemon's proxy retries alike)."""
    for attempt in (1, 2):
        t = Timing(sent=time.perf_counter())
        try:
            if not body.get("stream"):  # a whole answer: its one "piece" is its end
                (await http.post(url, json=body, headers=headers)).raise_for_status()
                t.pieces.append(time.perf_counter())
                return t
            async with http.stream("POST", url, json=body, headers=headers) as r:
                if r.status_code >= 400:
                    t.error = f"HTTP {r.status_code}: {(await r.aread())[:300]!r}"
                    return t
                async for line in r.aiter_lines():
                    payload = line[5:].strip() if line.startswith("data:") else line.strip()
                    if not payload or payload == "[DONE]" or line.startswith("event:"):
                        continue
                    try:
                        data = json.loads(payload)
                    except ValueError:
                        continue
                    if is_piece(kind, data):
                        t.pieces.append(time.perf_counter())
            return t
        except httpx.RemoteProtocolError as exc:
            t.error = f"{type(exc).__name__}: {exc}"
            if t.pieces or attempt == 2:
                return t
        except httpx.HTTPError as exc:
            t.error = f"{type(exc).__name__}: {exc}"
            return t
    return t


# ---- the requests -----------------------------------------------------------------------------------------
def prompt(rng: random.Random) -> tuple[str, str]:
    return f"[{nonce()}] You are a helpful assistant.", text(24, rng)


def chat(model: str, system: str, user: str, tokens: int) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": tokens, "stream": True, **GREEDY}  # fmt: skip


def responses(model: str, system: str, user: str, tokens: int) -> dict[str, Any]:
    return {"model": model, "instructions": system, "input": user, "max_output_tokens": tokens, "stream": True,
            **GREEDY}  # fmt: skip


def messages(model: str, system: str, user: str, tokens: int) -> dict[str, Any]:
    return {"model": model, "system": system, "messages": [{"role": "user", "content": user}],
            "max_tokens": tokens, "stream": True, **GREEDY}  # fmt: skip


def ollama(model: str, system: str, user: str, tokens: int) -> dict[str, Any]:
    return {"model": f"{model}:latest", "stream": True,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "options": {"temperature": 0, "top_k": 1, "num_predict": tokens, "ignore_eos": True}}  # fmt: skip


def forced(model: str, system: str, user: str, tokens: int) -> dict[str, Any]:
    body = {**responses(model, system, user, tokens), "tools": [TOOL],
            "tool_choice": {"type": "function", "name": "get_weather"}}  # fmt: skip
    body.pop("ignore_eos")  # a forced call ends with its grammar
    return body


def forced_raw(model: str, system: str, user: str, tokens: int) -> dict[str, Any]:
    """What the daemon sends the engine for `forced` (daemon/routes/tool_calls.py builds it)."""
    from qwendesk.daemon.routes.responses import chat_format_tools
    from qwendesk.daemon.routes.tool_calls import constrain, forced_choice

    body = forced(model, system, user, tokens)
    tools = chat_format_tools(body["tools"])
    return constrain(body, tools, forced_choice(body["tool_choice"], tools, None))


@dataclass
class Route:
    name: str
    ours: tuple[
        str, Callable[..., dict[str, Any]], str
    ]  # (path, on the daemon or its Ollama port; body; kind)
    theirs: tuple[str, Callable[..., dict[str, Any]], str]
    ollama: bool = False
    # A forced call streams no argument until its name is written, so its first piece is not a first token:
    # the whole non-streamed call's latency is compared instead.
    latency: bool = False


ROUTES = [
    Route(
        "/v1/chat/completions", ("/v1/chat/completions", chat, "chat"), ("/v1/chat/completions", chat, "chat")
    ),
    Route(
        "/v1/responses", ("/v1/responses", responses, "responses"), ("/v1/responses", responses, "responses")
    ),
    Route("/v1/messages", ("/v1/messages", messages, "messages"), ("/v1/messages", messages, "messages")),
    Route(
        "Ollama /api/chat",
        ("/api/chat", ollama, "ollama"),
        ("/v1/chat/completions", chat, "chat"),
        ollama=True,
    ),
    Route(
        "/v1/responses forced call",
        ("/v1/responses", forced, "responses"),
        ("/v1/responses", forced_raw, "responses"),
        latency=True,
    ),
]


# ---- the run ------------------------------------------------------------------------------------------------
def p50(values: list[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return statistics.median(vs) if vs else None


async def measure(route: Route, ours_base: str, theirs_base: str, model: str, args: argparse.Namespace,
                  http: httpx.AsyncClient) -> dict[str, Any]:  # fmt: skip
    rng = random.Random(1)
    headers = {"anthropic-version": "2023-06-01"}
    samples: dict[str, dict[str, list[Any]]] = {"ours": {"ttft": [], "decode": []},
                                                "theirs": {"ttft": [], "decode": []}}  # fmt: skip
    errors: list[str] = []
    first_n = max(args.ttft_n // 2, 5) if route.latency else args.ttft_n  # whole calls take seconds each
    for phase, n, tokens in (("ttft", first_n, 4), ("decode", args.decode_n, args.tokens)):
        for i in range(n):
            sides = [("ours", ours_base, route.ours), ("theirs", theirs_base, route.theirs)]
            for side, base, (path, make, kind) in sides if i % 2 == 0 else sides[::-1]:
                system, user = prompt(rng)
                body = make(model, system, user, tokens)
                if route.latency and phase == "ttft":
                    body = {**body, "stream": False, "max_output_tokens": args.tokens}
                t = await timed(http, base + path, body, kind, headers)
                if t.error:
                    errors.append(f"{side}: {t.error}")
                samples[side][phase].append(t.ttft if phase == "ttft" else t.decode)
    ours_ttft, their_ttft = p50(samples["ours"]["ttft"]), p50(samples["theirs"]["ttft"])
    ours_decode, their_decode = p50(samples["ours"]["decode"]), p50(samples["theirs"]["decode"])
    return {
        "route": route.name + (" (whole-call latency, not TTFT)" if route.latency else ""),
        "ttft_p50_ms": {"ours": _ms(ours_ttft), "engine": _ms(their_ttft),
                        "overhead": _ms(ours_ttft - their_ttft) if ours_ttft and their_ttft else None},  # fmt: skip
        "decode_tps": {"ours": _r(ours_decode), "engine": _r(their_decode),
                       "ratio": _r(ours_decode / their_decode, 3) if ours_decode and their_decode else None},
        "errors": errors[:3],
    }  # fmt: skip


async def measure_rerank(
    ours_base: str, theirs_base: str, model: str, n: int, http: httpx.AsyncClient
) -> dict:
    documents = [text(30, random.Random(i)) for i in range(8)]
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for i in range(n):
        for side, base in (("ours", ours_base), ("theirs", theirs_base))[:: 1 if i % 2 == 0 else -1]:
            started = time.perf_counter()
            r = await http.post(
                base + "/v1/rerank", json={"model": model, "query": nonce(), "documents": documents}
            )
            r.raise_for_status()
            times[side].append(time.perf_counter() - started)
    ours, theirs = p50(times["ours"]), p50(times["theirs"])
    return {"route": "/v1/rerank (8 documents)", "latency_p50_ms": {"ours": _ms(ours), "engine": _ms(theirs),
            "overhead": _ms(ours - theirs) if ours and theirs else None}}  # fmt: skip


def _ms(x: float | None) -> float | None:
    return round(x * 1000, 1) if x is not None else None


def _r(x: float | None, digits: int = 1) -> float | None:
    return round(x, digits) if x is not None else None


class OllamaQwendesk(QwendeskSystem):
    """The daemon with its Ollama-compatible listener on."""

    key, label = "d", "qwendesk"

    def __init__(self, *args: Any, ollama_port: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.extra_env = {"QWENDESK_OLLAMA_PORT": str(ollama_port)}


def start_raw_reranker(path: Path, n_threads: int) -> tuple[Any, str]:
    """The reranker in llama.cpp's own server (in this process: rerank requests are small and not streamed)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.embedding = True
    params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_RANK
    params.n_ctx = params.n_batch = params.n_ubatch = 128
    params.n_parallel = 1
    params.n_gpu_layers = 0
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = n_threads
    params.port = free_port()
    return xllamacpp.Server(params), f"http://127.0.0.1:{params.port}"


def pick_model(name: str) -> BenchModel:
    if name == "smollm2":
        return smollm2()
    if name.startswith("qwen2.5-0.5b-"):
        return qwen_synthetic(name.rsplit("-", 1)[1].upper())
    return user_model(name)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.models.encoder_fixtures import write_reranker_gguf

    model = pick_model(args.model)
    threads = args.threads or psutil.cpu_count(logical=False) or 2
    work = Path(tempfile.mkdtemp(prefix="qwendesk-bench-routes-"))
    reranker = write_reranker_gguf(work / "tiny-bert-reranker-f32.gguf")
    raw = RawSystem(work, threads, 256)
    ollama_port = free_port()
    ours = OllamaQwendesk(work, threads, 256, models=[model], ollama_port=ollama_port)
    result: dict[str, Any] = {"model": model.label, "threads": threads, "routes": []}
    raw_rerank = None
    try:
        print(f"starting llama.cpp and qwendesk with {model.label} ...", file=sys.stderr)
        await raw.launch(model, n_parallel=1, n_ctx=2048)
        await ours.start()
        await ours.launch(model, n_parallel=1, n_ctx=2048)
        await wait_http(f"http://127.0.0.1:{ollama_port}/", 60)
        (work / "qwendesk-home" / "models").mkdir(exist_ok=True)
        os.link(reranker, work / "qwendesk-home" / "models" / reranker.name)
        raw_rerank, raw_rerank_url = start_raw_reranker(reranker, threads)
        # Connections idle while the other side is measured: expire them before llama-server's 5 s idle close,
        # else a request races the close (RemoteProtocolError).
        limits = httpx.Limits(max_connections=16, keepalive_expiry=1.0)
        async with httpx.AsyncClient(timeout=600, limits=limits, trust_env=False) as http:
            for route in ROUTES:
                print(f"measuring {route.name} ...", file=sys.stderr)
                base = f"http://127.0.0.1:{ollama_port}" if route.ollama else ours.base
                assert base is not None and raw.address
                result["routes"].append(await measure(route, base, raw.address, ours.model_name, args, http))
            rerank_name = "tiny-bert-reranker-f32"
            for _ in range(300):  # the folder watcher notices the new file
                listed = (await http.get(f"{ours.base}/api/models")).json()["models"]
                if any(m["name"] == rerank_name for m in listed):
                    break
                await asyncio.sleep(0.1)
            (await http.post(f"{ours.base}/api/models/{rerank_name}/start", timeout=300)).raise_for_status()
            result["rerank"] = await measure_rerank(ours.base, raw_rerank_url, rerank_name, args.ttft_n, http)
    finally:
        await ours.stop()
        await raw.stop()
        del raw_rerank
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Model: {result['model']}, {result['threads']} threads. Overhead = qwendesk - engine.", "",
             "| route | TTFT p50 qwendesk | engine | overhead | decode tok/s qwendesk | engine | ratio |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["routes"]:
        t, d = r["ttft_p50_ms"], r["decode_tps"]
        lines.append(f"| {r['route']} | {t['ours']} ms | {t['engine']} ms | {t['overhead']:+} ms | {d['ours']} | "
                     f"{d['engine']} | {d['ratio']}x |" if t["overhead"] is not None and d["ratio"] is not None
                     else f"| {r['route']} | failed: {r['errors']} |")  # fmt: skip
    rr = result.get("rerank")
    if rr:
        lat = rr["latency_p50_ms"]
        lines.append(f"| {rr['route']} | {lat['ours']} ms (latency) | {lat['engine']} ms | {lat['overhead']:+} ms "
                     "| | | |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="qwen2.5-0.5b-q4_0", help="qwen2.5-0.5b-q4_0, smollm2, or a GGUF path"
    )
    parser.add_argument("--ttft-n", type=int, default=20, help="short requests per side and route")
    parser.add_argument("--decode-n", type=int, default=6, help="long requests per side and route")
    parser.add_argument("--tokens", type=int, default=128, help="tokens of each long request")
    parser.add_argument("--threads", type=int, default=0, help="engine threads (default: physical cores)")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "routes.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (RESULTS / "routes.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
