"""Run the benchmark: every system on the same GGUF, same threads and context, interleaved round-robin.

`bench/run` (see bench/README.md) -> bench/results/latest.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import metrics, report
from bench.client import new_client, stream_one
from bench.models import CACHE, BenchModel, resolve
from bench.systems import (
    LlamaCppPythonSystem,
    QwendeskSystem,
    RawHttpSystem,
    RawSystem,
    StockQwendeskSystem,
    System,
    XinferenceSystem,
    free_port,
    kill_group,
    link_into,
    qwendesk_env,
    spawn_daemon,
    tree_memory,
    tree_rss,
    wait_http,
)
from bench.workload import StreamRecord, batch_summary, chat_body, text

RESULTS = Path(__file__).resolve().parent / "results"
DECODE_PROMPT = "Write a very long story about the weather in the mountains, with many details."
SHORT_PROMPT = "What is the weather like today? Answer in one sentence."


@dataclass
class Config:
    models: list[str]
    systems: list[str]
    rounds: int
    decode_tokens: int
    prompt_tokens: int
    ttft_requests: int
    ttft_tokens: int
    levels: list[int]
    conc_tokens: int
    conc_rounds: int
    n_threads: int
    n_ctx: int  # per slot (per request)
    cache_ram_mib: int
    startup_reps: int
    keep_alive: float
    wait_load: float
    wait_max: float
    bg_max: float
    quick: bool
    skip_lifecycle: bool = False


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    p.add_argument(
        "--quick", action="store_true", help="SmolLM2 only, few tokens and requests (harness check)"
    )
    p.add_argument("--models", nargs="+", help="smollm2, q4_0, q4_k_m, or paths of GGUF files")
    p.add_argument(
        "--systems", default="a,a-http,b,c,d",
        help="comma-separated subset of a,a-http,b,c,d,d0 (d0: qwendesk with Xinference as shipped)",
    )  # fmt: skip
    p.add_argument("--rounds", type=int)
    p.add_argument("--threads", type=int, default=psutil.cpu_count(logical=False) or 2)
    p.add_argument("--n-ctx", type=int, default=2048, help="context per request (slot)")
    p.add_argument("--cache-ram-mib", type=int, default=256, help="llama.cpp prompt cache, same everywhere")
    p.add_argument("--wait-load", type=float, default=1.5, help="wait until the 1-min load average is below")
    p.add_argument("--wait-max", type=float, default=1500, help="total seconds a run may wait for quiet")
    p.add_argument("--bg-max", type=float, default=0.5, help="most other runnable tasks allowed per request")
    p.add_argument("--skip-lifecycle", action="store_true", help="skip qwendesk start-up/idle/cold-start")
    a = p.parse_args(argv)
    systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    if a.quick:
        return Config(skip_lifecycle=a.skip_lifecycle,
            models=a.models or ["smollm2"], systems=systems, rounds=a.rounds or 1, decode_tokens=32,
            prompt_tokens=128, ttft_requests=5, ttft_tokens=4, levels=[1, 2, 4], conc_tokens=16, conc_rounds=1,
            n_threads=a.threads, n_ctx=a.n_ctx, cache_ram_mib=a.cache_ram_mib, startup_reps=1, keep_alive=5,
            wait_load=math.inf, wait_max=0, bg_max=math.inf, quick=True,
        )  # fmt: skip
    return Config(
        skip_lifecycle=a.skip_lifecycle,
        models=a.models or ["smollm2", "q4_0", "q4_k_m"], systems=systems, rounds=a.rounds or 3,
        decode_tokens=128, prompt_tokens=512, ttft_requests=20, ttft_tokens=4, levels=[1, 2, 4, 8],
        conc_tokens=64, conc_rounds=1, n_threads=a.threads, n_ctx=a.n_ctx, cache_ram_mib=a.cache_ram_mib,
        startup_reps=3, keep_alive=5, wait_load=a.wait_load, wait_max=a.wait_max, bg_max=a.bg_max,
        quick=False,
    )  # fmt: skip


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", flush=True)


_waited = 0.0  # seconds spent waiting for a quiet machine in this run (one budget: --wait-max)


def background_load(samples: int = 6, every: float = 0.05) -> float:
    """Runnable tasks other than this sampler right now (/proc/stat procs_running), averaged.

    The 1-minute load average lags by a minute; other jobs' bursts on a 2-core machine need a gate
    that sees them at once. Between our requests our own engines are idle, so what runs is someone else.
    """
    total = 0
    for i in range(samples):
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("procs_running"):
                    total += int(line.split()[1]) - 1
                    break
        if i + 1 < samples:
            time.sleep(every)
    return total / samples


async def gate(cfg: Config) -> float:
    """Before each measured request: wait (within the run's budget) until nothing else is running."""
    global _waited
    bg = background_load()
    while bg > cfg.bg_max and _waited < cfg.wait_max:
        await asyncio.sleep(1.0)
        _waited += 1.3
        bg = background_load()
    return bg


async def wait_quiet(cfg: Config) -> float:
    """Sleep in steps until the 1-minute load average is below the threshold, within the run's wait budget."""
    global _waited
    while os.getloadavg()[0] >= cfg.wait_load and _waited < cfg.wait_max:
        say(
            f"waiting for the load average to fall below {cfg.wait_load} ({_waited:.0f}/{cfg.wait_max:.0f} s used)"
        )
        await asyncio.sleep(15)
        _waited += 15
    return os.getloadavg()[0]


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor()
    with open("/proc/cpuinfo") as fh:  # Linux; elsewhere platform.processor() stays
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for pkg in ("qwendesk", "xinference", "xllamacpp", "llama_cpp_python", "httpx", "uvicorn"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    return {
        "platform": platform.platform(), "cpu": cpu, "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0], "versions": versions,
    }  # fmt: skip


# ---- lifecycle: qwendesk start-up, idle footprint, cold auto-start ------------------------------------
async def lifecycle(cfg: Config, model: BenchModel, workdir: Path) -> dict[str, Any]:
    """Daemon start-up to /health, idle RSS, a cold /v1 request, and RSS after the keep-alive stopped all."""
    out: dict[str, Any] = {"health_s": [], "idle_fresh_rss": [], "daemon_only_fresh_rss": []}
    for i in range(cfg.startup_reps):
        home = workdir / f"life-{i}"
        link_into(home / "models", model)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = qwendesk_env(
            home, port, cfg.n_threads, cfg.cache_ram_mib, QWENDESK_KEEP_ALIVE=str(cfg.keep_alive)
        )
        started = time.perf_counter()
        proc = spawn_daemon(home, env, (workdir / f"life-{i}.log").open("ab"))
        try:
            ready = await wait_http(url + "/health", 120, proc, every=0.01)
            out["health_s"].append(ready - started)
            await asyncio.sleep(3)
            out["idle_fresh_rss"].append(tree_rss(proc.pid))
            out["daemon_only_fresh_rss"].append(psutil.Process(proc.pid).memory_info().rss)
            # Every repetition measures the cold path (few samples on a noisy machine: report the median).
            cycle = await _cold_cycle(cfg, url, model, proc.pid)
            for key in ("cold_first_token_s", "loaded_pss", "loaded_rss"):
                out.setdefault(f"{key}_all", []).append(cycle[key])
            if i == cfg.startup_reps - 1:
                out.update(cycle)
        finally:
            async with httpx.AsyncClient(trust_env=False) as http:
                with contextlib.suppress(httpx.HTTPError):
                    await http.post(url + "/api/shutdown", timeout=10)
            await asyncio.to_thread(kill_group, proc, 30)
    if out.get("cold_first_token_s_all"):
        out["cold_first_token_s"] = metrics.median(out["cold_first_token_s_all"])
    return out


async def _cold_cycle(cfg: Config, url: str, model: BenchModel, pid: int) -> dict[str, Any]:
    """A /v1 request to a stopped model (Xinference not yet running), then wait for the idle stop."""
    out: dict[str, Any] = {}
    async with new_client() as http:
        names = {
            Path(m["file"]).stem: m["name"] for m in (await http.get(url + "/api/models")).json()["models"]
        }
        name = names.get(model.key, model.key)
        rec = await stream_one(http, url + "/v1/chat/completions", chat_body("Hi", 1, model=name))
        out["cold_first_token_s"] = rec.ttft
        out["cold_error"] = rec.error
        await asyncio.sleep(1)
        out["loaded_rss"] = tree_rss(pid)
        out["loaded_pss"] = tree_memory(pid)["pss"]
        stopped_at = None
        deadline = time.perf_counter() + cfg.keep_alive * 4 + 90
        idle_started = time.perf_counter()
        while time.perf_counter() < deadline:
            st = (await http.get(url + "/api/status")).json()
            if st["supervisor"]["state"] == "stopped" and st["running"] == 0:
                stopped_at = time.perf_counter()
                break
            await asyncio.sleep(0.5)
        out["idle_stop_after_s"] = None if stopped_at is None else stopped_at - idle_started
        await asyncio.sleep(3)
        out["idle_after_rss"] = tree_rss(pid)
        out["daemon_only_after_rss"] = psutil.Process(pid).memory_info().rss
    return out


# ---- one model, all systems ---------------------------------------------------------------------
def empty() -> dict[str, Any]:
    return {"launch": [], "decode": [], "prefill": [], "ttft": [], "concurrency": {}, "rss": {}}


def rotate(items: list[System], n: int) -> list[System]:
    """Round-robin with a shifted start each round, so no system always runs first (or right after a launch)."""
    n %= len(items)
    return items[n:] + items[:n]


async def launch_all(
    systems: list[System], model: BenchModel, n_parallel: int, cfg: Config, raw: dict
) -> None:
    for s in systems:
        say(f"{model.key}: launching on {s.key} (n_parallel={n_parallel})")
        bg = await gate(cfg)
        info = await s.launch(model, n_parallel, cfg.n_ctx * n_parallel)
        info["bg"] = bg
        info["n_parallel"] = n_parallel
        if "launch_s" in info:
            raw[s.key]["launch"].append(info)
        raw[s.key]["rss"].setdefault("loaded", []).append(s.rss())
        raw[s.key].setdefault("pss", {}).setdefault("loaded", []).append(s.pss())


async def calibrate_prompt(system: System, target: int) -> str:
    """Words so that the chat prompt is about `target` tokens for this model's tokenizer."""
    import random

    rng = random.Random(7)
    words = target
    prompt = text(words, rng)
    for _ in range(3):
        rec = (await system.run([system.body(prompt, 1)]))[0]
        if not rec.prompt_tokens:
            break
        if abs(rec.prompt_tokens - target) <= 2:
            break
        words = max(8, words + (target - rec.prompt_tokens))
        prompt = text(words, random.Random(7))
    return prompt


async def measure(cfg: Config, s: System, prompt: str, max_tokens: int) -> dict[str, Any]:
    """One gated, streamed request; the record notes how busy the machine was just before it."""
    bg = await gate(cfg)
    rec = (await s.run([s.body(prompt, max_tokens)]))[0]
    return {**rec.as_dict(), "bg": bg}


async def bench_model(cfg: Config, model: BenchModel, systems: list[System]) -> dict[str, Any]:
    raw: dict[str, Any] = {s.key: empty() for s in systems}
    warm_page_cache(model.path)  # every system, the first launched included, loads from RAM
    # ---- single-stream phase: n_parallel = 1 ----
    await launch_all(systems, model, 1, cfg, raw)
    prompt = await calibrate_prompt(systems[0], cfg.prompt_tokens)
    for s in systems:  # warm-up (first-use allocations, HTTP connections)
        await s.run([s.body(SHORT_PROMPT, 4)])
    per_round = math.ceil(cfg.ttft_requests / cfg.rounds)
    loads = []
    for r in range(cfg.rounds):
        loads.append(os.getloadavg()[0])
        order = rotate(systems, r)
        say(f"{model.key}: round {r + 1}/{cfg.rounds} ({', '.join(s.key for s in order)})")
        for s in order:
            raw[s.key]["decode"].append(await measure(cfg, s, DECODE_PROMPT, cfg.decode_tokens))
        for s in order:
            raw[s.key]["prefill"].append(await measure(cfg, s, prompt, 1))
        for i in range(per_round):
            if r * per_round + i >= cfg.ttft_requests:
                break
            for s in order:
                raw[s.key]["ttft"].append(await measure(cfg, s, SHORT_PROMPT, cfg.ttft_tokens))
    for s in systems:
        raw[s.key]["rss"].setdefault("after", []).append(s.rss())
        raw[s.key].setdefault("pss", {}).setdefault("after", []).append(s.pss())
    for s in reversed(systems):
        await s.stop_model()
    # ---- concurrency phase: n_parallel = max level ----
    slots = max(cfg.levels)
    await launch_all(systems, model, slots, cfg, raw)
    for s in systems:
        await s.run([s.body(SHORT_PROMPT, 4) for _ in range(2)])
    for r in range(cfg.conc_rounds):
        loads.append(os.getloadavg()[0])
        for level in cfg.levels:
            for s in rotate(systems, r + level):
                say(f"{model.key}: {level} concurrent clients on {s.key}")
                bg = await gate(cfg)
                recs: list[StreamRecord] = await s.run(
                    [s.body(SHORT_PROMPT, cfg.conc_tokens) for _ in range(level)]
                )
                raw[s.key]["concurrency"].setdefault(str(level), []).append({**batch_summary(recs), "bg": bg})
    for s in systems:
        raw[s.key]["rss"].setdefault("after", []).append(s.rss())
        raw[s.key].setdefault("pss", {}).setdefault("after", []).append(s.pss())
    for s in reversed(systems):
        await s.stop_model()
    fill_prompt_tokens(raw)
    return {"label": model.label, "file": str(model.path), "size_bytes": model.path.stat().st_size,
            "prompt_words": len(prompt.split()), "load_during_rounds": loads, "raw": raw}  # fmt: skip


def warm_page_cache(path: Path) -> None:
    with path.open("rb") as fh:
        while fh.read(16 * 2**20):
            pass


def fill_prompt_tokens(raw: dict[str, Any]) -> None:
    """b streams no usage: take the prompt length from a (same GGUF, same chat template) and mark it."""
    ref = metrics.median([r["prompt_tokens"] for r in raw.get("a", {}).get("prefill", [])])
    if not ref:
        return
    for system in raw.values():
        for rec in system["prefill"]:
            if not rec["prompt_tokens"] and rec["ttft"]:
                rec["prompt_tokens"], rec["prompt_tokens_from"] = ref, "a"
                rec["prompt_tps"] = ref / rec["ttft"]


def make_systems(cfg: Config, workdir: Path, models: list[BenchModel]) -> list[System]:
    common = {"workdir": workdir, "n_threads": cfg.n_threads, "cache_ram_mib": cfg.cache_ram_mib}
    raw_sys = RawSystem(**common)
    by_key: dict[str, System] = {
        "a": raw_sys,
        "a-http": RawHttpSystem(raw_sys),
        "b": LlamaCppPythonSystem(**common),
        "c": XinferenceSystem(**common),
        "d": QwendeskSystem(**common, models=models),
        "d0": StockQwendeskSystem(**common, models=models),
    }
    if "a-http" in cfg.systems and "a" not in cfg.systems:
        raise SystemExit("a-http needs a (it is a's llama-server)")
    return [by_key[k] for k in ("a", "a-http", "b", "c", "d", "d0") if k in cfg.systems]


async def run(cfg: Config) -> dict[str, Any]:
    models = resolve(cfg.models)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = CACHE / "runs" / stamp  # beside the models: hard links work
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "started": stamp, "machine": machine(), "config": cfg.__dict__,
        "load_at_start": os.getloadavg(), "models": {}, "startup": {},
    }  # fmt: skip
    say(f"work folder {workdir}")
    result["load_before_wait"] = os.getloadavg()
    await wait_quiet(cfg)
    result["load_at_start"] = os.getloadavg()
    if "d" in cfg.systems and not cfg.skip_lifecycle:
        say("qwendesk lifecycle: start-up, idle footprint, cold auto-start, keep-alive stop")
        result["lifecycle"] = await lifecycle(cfg, models[0], workdir)
    systems = make_systems(cfg, workdir, models)
    # SIGTERM (and SIGINT, which a background job ignores) cancel the run so every server is stopped.
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
    try:
        for s in systems:
            say(f"starting {s.key}: {s.label}")
            result["startup"][s.key] = await s.start()
        for m in models:
            say(f"model {m.key}")
            result["models"][m.key] = await bench_model(cfg, m, systems)
            result["waited_s"] = _waited
            RESULTS.mkdir(parents=True, exist_ok=True)  # partial results survive an interrupted run
            (RESULTS / "partial.json").write_text(json.dumps(result, indent=1, default=str))
    finally:
        for s in reversed(systems):
            await s.stop()
    result["load_at_end"] = os.getloadavg()
    result["waited_s"] = _waited
    result["finished"] = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    result["labels"] = {s.key: s.label for s in systems}
    if not os.environ.get("QWENDESK_BENCH_KEEP"):
        shutil.rmtree(workdir, ignore_errors=True)  # logs and homes; hard links only
    return result


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    result = asyncio.run(run(cfg))
    report.add_summaries(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    prefix = "quick" if cfg.quick else "latest"
    (RESULTS / f"{prefix}.json").write_text(json.dumps(result, indent=1, default=str))
    table = report.markdown(result)
    (RESULTS / f"{prefix}.md").write_text(table)
    report.chart(result, RESULTS / f"{prefix}.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
