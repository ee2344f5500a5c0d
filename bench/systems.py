"""The systems under test, each behind the same small interface: start, launch a model, stream, measure RSS, stop.

a      llama.cpp in-process through xllamacpp.Server (a worker child; see raw_worker.py)
a-http the llama-server that the same xllamacpp.Server runs, over HTTP (diagnostic: the HTTP cost alone)
b      llama-cpp-python's own server (python -m llama_cpp.server)
c      Xinference on its own (xinference-local, its REST API)
d      qwendesk's /v1 endpoint (python -m qwendesk.daemon serve)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.client import new_client, stream_many
from bench.models import BenchModel
from bench.workload import StreamRecord, chat_body
from qwendesk.daemon.ports import free_port

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
CHAT = "/v1/chat/completions"


def tree_rss(pid: int | None) -> int:
    """Resident bytes of a process and all its descendants."""
    if pid is None:
        return 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def tree_memory(pid: int | None, skip_root: bool = False) -> dict[str, int]:
    """RSS and PSS (bytes) of a process and all its descendants (optionally without the process itself).

    RSS counts a page shared by several processes in each of them; PSS divides it among them, so it is
    what a tree whose processes were forked from one pre-imported parent costs the machine. Where psutil
    has no PSS (macOS, Windows), RSS stands in."""
    total = {"rss": 0, "pss": 0}
    if pid is None:
        return total
    try:
        root = psutil.Process(pid)
        procs = [*([] if skip_root else [root]), *root.children(recursive=True)]
    except psutil.Error:
        return total
    for p in procs:
        with contextlib.suppress(psutil.Error):
            info = p.memory_full_info()
            total["rss"] += info.rss
            total["pss"] += getattr(info, "pss", info.rss)
    return total


def kill_group(proc: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
    """SIGTERM the child's process group, wait, then SIGKILL whatever is left (its group and descendants)."""
    if proc is None:
        return
    family: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        family = psutil.Process(proc.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for p in family:
        with contextlib.suppress(psutil.Error):
            p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


async def wait_http(
    url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None, every: float = 0.02
) -> float:
    """Poll `url` until it answers 200; returns when it did (perf_counter)."""
    deadline = time.perf_counter() + timeout
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
        while time.perf_counter() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{url}: process exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return time.perf_counter()
            await asyncio.sleep(every)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


class System:
    """Base: HTTP systems stream through one shared client; subclasses start/launch/stop."""

    key = "?"
    label = "?"
    engine_timings = True  # whether the system passes llama.cpp's `timings` through

    def __init__(self, workdir: Path, n_threads: int, cache_ram_mib: int) -> None:
        self.workdir = workdir
        self.n_threads = n_threads
        self.cache_ram_mib = cache_ram_mib
        self.http = new_client()
        self.base: str | None = None
        self.model_name = "bench"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> dict[str, Any]:
        return {}

    async def launch(self, model: BenchModel, n_parallel: int, n_ctx: int) -> dict[str, Any]:
        raise NotImplementedError

    async def first_token(self, started: float) -> float:
        """Seconds from `started` until the first token of a 1-token request arrives."""
        rec = (await self.run([self.body("Hi", 1)]))[0]
        if rec.first is None:
            raise RuntimeError(f"{self.key}: first request failed: {rec.error}")
        return rec.first - started

    def body(self, user: str, max_tokens: int) -> dict[str, Any]:
        return chat_body(user, max_tokens, model=self.model_name)

    async def run(self, bodies: list[dict[str, Any]]) -> list[StreamRecord]:
        assert self.base is not None
        return await stream_many(self.http, self.base + CHAT, bodies)

    async def stop_model(self) -> None:
        pass

    async def stop(self) -> None:
        await self.http.aclose()

    def rss(self) -> int:
        return tree_rss(self.proc.pid if self.proc else None)

    def pss(self) -> int:
        return tree_memory(self.proc.pid if self.proc else None)["pss"]

    def log(self, name: str) -> Any:
        return (self.workdir / f"{self.key}-{name}.log").open("ab")


# ---- (a) in-process -----------------------------------------------------------------------------
class RawSystem(System):
    key, label = "a", "llama.cpp in-process (xllamacpp.Server)"

    async def launch(self, model: BenchModel, n_parallel: int, n_ctx: int) -> dict[str, Any]:
        self.proc = subprocess.Popen(
            [PY, "-m", "bench.raw_worker"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log("worker"),
            start_new_session=True,
        )
        started = time.perf_counter()
        info = await self._call(
            op="load", model=str(model.path), n_ctx=n_ctx, n_parallel=n_parallel,
            n_threads=self.n_threads, cache_ram_mib=self.cache_ram_mib,
        )  # fmt: skip
        # The raw number is the library's own load (the worker's Python start and import are not a launch).
        first = await self.first_token(time.perf_counter())
        self.address = info["address"]
        del started
        return {"load_s": info["load_s"], "launch_s": info["load_s"] + first, "import_s": info["import_s"]}

    async def _call(self, **msg: Any) -> Any:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        line = json.dumps(msg) + "\n"

        def io() -> Any:
            self.proc.stdin.write(line.encode())  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            answer = self.proc.stdout.readline()  # type: ignore[union-attr]
            if not answer:
                raise RuntimeError(f"raw worker died; see {self.workdir / 'a-worker.log'}")
            return json.loads(answer)

        return await asyncio.to_thread(io)

    async def run(self, bodies: list[dict[str, Any]]) -> list[StreamRecord]:
        out = await self._call(op="stream", bodies=bodies)
        records = []
        for d in out:
            rec = StreamRecord(**{k: d[k] for k in StreamRecord.__dataclass_fields__})
            records.append(rec)
        return records

    async def stop_model(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._call(op="quit"), 10)
        kill_group(self.proc, grace=5)
        self.proc = None

    async def stop(self) -> None:
        await self.stop_model()
        await super().stop()


class RawHttpSystem(System):
    """The llama-server inside system (a)'s xllamacpp.Server: what qwendesk proxies to."""

    key, label = "a-http", "llama.cpp's llama-server (same process as a, over HTTP)"

    def __init__(self, raw: RawSystem) -> None:
        super().__init__(raw.workdir, raw.n_threads, raw.cache_ram_mib)
        self.raw = raw

    async def launch(self, model: BenchModel, n_parallel: int, n_ctx: int) -> dict[str, Any]:
        self.base = self.raw.address
        return {}

    def rss(self) -> int:
        return self.raw.rss()

    def pss(self) -> int:
        return self.raw.pss()


# ---- (b) llama-cpp-python -----------------------------------------------------------------------
class LlamaCppPythonSystem(System):
    key, label = "b", "llama-cpp-python server"
    engine_timings = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eos_bias: dict[str, float] = {}

    async def launch(self, model: BenchModel, n_parallel: int, n_ctx: int) -> dict[str, Any]:
        # llama-cpp-python serves one request at a time (a lock around its one context): no n_parallel.
        self.eos_bias = {str(i): -100.0 for i in eos_ids(model.path)}
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [PY, "-m", "llama_cpp.server", "--model", str(model.path), "--n_threads", str(self.n_threads),
             "--n_threads_batch", str(self.n_threads), "--n_ctx", str(n_ctx // n_parallel), "--n_gpu_layers", "0",
             "--host", "127.0.0.1", "--port", str(port),
             # Its default lets a new request cancel the one streaming (a client disconnect): queue instead.
             "--interrupt_requests", "False"],
            cwd=self.workdir, stdout=self.log("server"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        ready = await wait_http(self.base + "/v1/models", 300, self.proc)
        first = await self.first_token(started)
        return {"launch_s": first, "ready_s": ready - started}

    def body(self, user: str, max_tokens: int) -> dict[str, Any]:
        return chat_body(user, max_tokens, model=self.model_name, ignore_eos=False, eos_bias=self.eos_bias)

    async def stop_model(self) -> None:
        kill_group(self.proc, grace=10)
        self.proc = None

    async def stop(self) -> None:
        await self.stop_model()
        await super().stop()


def eos_ids(path: Path) -> list[int]:
    """Token ids that end a turn (EOS and the ChatML end tokens), from the GGUF's vocabulary."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    ids: set[int] = set()
    field = reader.get_field("tokenizer.ggml.eos_token_id")
    if field is not None:
        ids.add(int(field.parts[field.data[0]][0]))
    tokens = reader.get_field("tokenizer.ggml.tokens")
    if tokens is not None:
        for i, idx in enumerate(tokens.data):
            if bytes(tokens.parts[idx]) in (b"<|im_end|>", b"<|endoftext|>", b"<|eot_id|>"):
                ids.add(i)
    return sorted(ids)


# ---- (c) Xinference alone ----------------------------------------------------------------------
def xinference_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        XINFERENCE_HOME=str(home), XINFERENCE_AUTH_ADVANCED="0", HF_HUB_OFFLINE="1",
        XINFERENCE_MODEL_SRC="huggingface", XINFERENCE_ENABLE_VIRTUAL_ENV="0", XINFERENCE_DISABLE_METRICS="1",
    )  # fmt: skip
    return env


class XinferenceSystem(System):
    key, label = "c", "Xinference alone (REST API)"

    async def start(self) -> dict[str, Any]:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        home = self.workdir / "xinference-home"
        home.mkdir(parents=True, exist_ok=True)
        exe = str(Path(PY).parent / "xinference-local")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(port), "--log-level", "warning"],
            env=xinference_env(home), cwd=home, stdout=self.log("server"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        ready = await wait_http(self.base + "/v1/models", 300, self.proc, every=0.1)
        await asyncio.sleep(2.0)
        return {"startup_s": ready - started, "idle_rss": self.rss()}

    async def register(self, model: BenchModel) -> None:
        spec = {
            "version": 2, "model_name": model.key, "model_lang": ["en"], "model_ability": ["chat"],
            "model_family": "bench", "chat_template": "",
            "model_specs": [{
                "model_format": "ggufv2", "model_size_in_billions": "0_5", "quantization": "bench",
                "model_file_name_template": model.path.name, "model_uri": str(model.path),
            }],
        }  # fmt: skip
        resp = await self.http.post(
            self.base + "/v1/model_registrations/LLM", json={"model": json.dumps(spec), "persist": False}
        )
        if resp.status_code >= 400 and "already" not in resp.text:
            raise RuntimeError(f"Xinference registration failed: {resp.text[:300]}")

    async def launch(self, model: BenchModel, n_parallel: int, n_ctx: int) -> dict[str, Any]:
        await self.register(model)
        self.model_name = model.key
        body = {
            "model_uid": model.key, "model_name": model.key, "model_type": "LLM", "model_engine": "llama.cpp",
            "model_format": "ggufv2", "model_size_in_billions": "0_5", "quantization": "bench",
            "n_ctx": n_ctx, "n_parallel": n_parallel, "n_threads": self.n_threads, "n_gpu_layers": 0,
            "cache_ram_mib": self.cache_ram_mib,
        }  # fmt: skip
        started = time.perf_counter()
        resp = await self.http.post(
            self.base + "/v1/models", json=body, params={"wait_ready": "true"}, timeout=600
        )
        if resp.status_code >= 400:
            raise RuntimeError(f"Xinference launch failed: {resp.text[:300]}")
        launched = time.perf_counter()
        first = await self.first_token(started)
        return {"launch_s": first, "api_s": launched - started}

    async def stop_model(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self.http.delete(f"{self.base}/v1/models/{self.model_name}", timeout=120)

    async def stop(self) -> None:
        await super().stop()
        await asyncio.to_thread(kill_group, self.proc, 20)
        self.proc = None


# ---- (d) qwendesk -------------------------------------------------------------------------------
def qwendesk_env(home: Path, port: int, n_threads: int, cache_ram_mib: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWENDESK_")}
    env.update(
        QWENDESK_HOME=str(home), QWENDESK_PORT=str(port), QWENDESK_N_THREADS=str(n_threads),
        QWENDESK_CACHE_RAM_MIB=str(cache_ram_mib), QWENDESK_LOG_LEVEL="info", **extra,
    )  # fmt: skip
    return env


def link_into(folder: Path, model: BenchModel) -> Path:
    """Hard-link (else copy) the GGUF into a models folder under the benchmark key's name."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{model.key}.gguf"
    if not target.exists():
        try:
            os.link(model.path, target)
        except OSError:
            shutil.copyfile(model.path, target)
    return target


def spawn_daemon(home: Path, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PY, "-m", "qwendesk.daemon", "serve"], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


class QwendeskSystem(System):
    key, label = "d", "qwendesk /v1"
    extra_env: dict[str, str] = {}  # noqa: RUF012 (a class constant)

    def __init__(self, *args: Any, models: list[BenchModel], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.models = models
        self.names: dict[str, str] = {}

    async def start(self) -> dict[str, Any]:
        home = self.workdir / ("qwendesk-home" if self.key == "d" else f"qwendesk-home-{self.key}")
        for m in self.models:
            link_into(home / "models", m)
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = qwendesk_env(home, port, self.n_threads, self.cache_ram_mib, QWENDESK_KEEP_ALIVE="0",
                           QWENDESK_SUPERVISOR_START="eager", **self.extra_env)  # fmt: skip
        started = time.perf_counter()
        self.proc = spawn_daemon(home, env, self.log("daemon"))
        ready = await wait_http(self.base + "/health", 120, self.proc)
        deadline = time.perf_counter() + 300
        while time.perf_counter() < deadline:  # eager: wait for the embedded Xinference
            status = (await self.http.get(self.base + "/api/status")).json()
            if status["supervisor"]["state"] == "running":
                break
            if status["supervisor"]["state"] == "failed":
                raise RuntimeError(f"qwendesk's Xinference failed: {status['supervisor'].get('error')}")
            await asyncio.sleep(0.2)
        supervisor_up = time.perf_counter()
        for m in (await self.http.get(self.base + "/api/models")).json()["models"]:
            self.names[Path(m["file"]).stem] = m["name"]
        await asyncio.sleep(2.0)
        xinference = tree_memory(self.proc.pid if self.proc else None, skip_root=True)  # without the daemon
        return {
            "health_s": ready - started, "startup_s": supervisor_up - started, "idle_rss": self.rss(),
            "idle_pss": self.pss(), "xinference_idle_rss": xinference["rss"],
            "xinference_idle_pss": xinference["pss"],
        }  # fmt: skip

    async def launch(self, model: BenchModel, n_parallel: int, n_ctx: int) -> dict[str, Any]:
        self.model_name = self.names.get(model.key, model.key)
        started = time.perf_counter()
        resp = await self.http.post(
            f"{self.base}/api/models/{self.model_name}/start",
            json={"n_ctx": n_ctx // n_parallel, "n_parallel": n_parallel}, params={"wait": "true"}, timeout=600,
        )  # fmt: skip
        if resp.status_code >= 400:
            raise RuntimeError(f"qwendesk start failed: {resp.text[:300]}")
        launched = time.perf_counter()
        first = await self.first_token(started)
        return {"launch_s": first, "api_s": launched - started}

    async def stop_model(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self.http.post(f"{self.base}/api/models/{self.model_name}/stop", timeout=120)

    async def stop(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self.http.post(self.base + "/api/shutdown", timeout=30)
        await super().stop()
        await asyncio.to_thread(kill_group, self.proc, 30)
        self.proc = None


class StockQwendeskSystem(QwendeskSystem):
    """qwendesk with its embedded Xinference as it ships (no light mode): the comparison for bench/FINDINGS."""

    key, label = "d0", "qwendesk /v1, Xinference as shipped"
    extra_env = {"QWENDESK_XINFERENCE_LIGHT": "0"}  # noqa: RUF012
