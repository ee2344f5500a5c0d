"""One real daemon for the end-to-end tests of the extra APIs (Responses, Anthropic, rerank, tools, Ollama).

It serves a tiny random-weight Qwen2 chat model (Qwen2.5's template, tools included), a Qwen embedding
model, a tiny random-weight BERT reranker, and the real SmolLM2 (slow enough to see a generation stop when
its client leaves), with a token (so every client authenticates as it would on a
shared machine) and the Ollama-compatible listener on. Test modules import `api_daemon`; the process is
shared by all of them (started by the first, stopped at the end of the session). A test module declares

    @pytest.fixture(scope="session")
    def api_daemon(tmp_path_factory, qwen2_gguf, smollm2_gguf):
        yield from shared_daemon(tmp_path_factory, qwen2_gguf, smollm2_gguf)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess, free_port, link_model

TOKEN = "e2e-token-7f3a"
CHAT = "qwen2-tiny-q8_0"
SLOW = "smollm2-135m-instruct.q4_1"
EMBED = "qwen-embed-tiny-q8_0"
RERANK = "tiny-bert-reranker-f32"


@dataclass
class ApiDaemon:
    proc: DaemonProcess
    ollama_url: str
    token: str = TOKEN

    @property
    def url(self) -> str:
        return self.proc.url

    @property
    def v1(self) -> str:
        return self.proc.url + "/v1"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


_shared: dict[str, ApiDaemon] = {}


def start_api_daemon(home: Path, qwen2_gguf: Path, smollm2_gguf: Path) -> ApiDaemon:
    from tests.fixtures.synthetic import write_qwen_gguf
    from tests.models.encoder_fixtures import write_reranker_gguf

    ollama_port = free_port()
    env = {
        "QWENDESK_KEEP_ALIVE": "0",
        "QWENDESK_TOKEN": TOKEN,
        "QWENDESK_OLLAMA_PORT": str(ollama_port),
        "QWENDESK_N_CTX": "4096",
    }
    proc = DaemonProcess(home, free_port(), env)
    link_model(qwen2_gguf, proc.models_dir, "qwen2-tiny-q8_0.gguf")
    write_qwen_gguf(proc.models_dir / "qwen-embed-tiny-q8_0.gguf", arch="qwen2", pooling_type="last", seed=3)
    write_reranker_gguf(proc.models_dir / "tiny-bert-reranker-f32.gguf")
    link_model(smollm2_gguf, proc.models_dir)
    proc.start()
    proc.wait_for(lambda c: len(c.models()) == 4, 60, "the four models to be listed")
    return ApiDaemon(proc, f"http://127.0.0.1:{ollama_port}")


def shared_daemon(
    tmp_path_factory: pytest.TempPathFactory, qwen2_gguf: Path, smollm2_gguf: Path
) -> Iterator[ApiDaemon]:
    """The shared daemon (see the module doc)."""
    if "daemon" not in _shared:
        _shared["daemon"] = start_api_daemon(tmp_path_factory.mktemp("api-daemon"), qwen2_gguf, smollm2_gguf)
    try:
        yield _shared["daemon"]
    finally:
        if "daemon" in _shared:
            _shared.pop("daemon").proc.stop()


class Reference:
    """The same GGUF in xllamacpp's own llama-server, in this process, on a port of its own (no key): what
    llama.cpp answers by itself, for comparing qwendesk's bytes-through routes with."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int, *, rerank: bool = False) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.use_jinja = True
        params.n_ctx = n_ctx
        params.n_parallel = 1
        params.n_gpu_layers = 0
        params.cpuparams.n_threads = n_threads
        params.cpuparams_batch.n_threads = n_threads
        if rerank:  # as the daemon launches a reranker: rank pooling, a whole input in one batch
            params.embedding = True
            params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_RANK
            params.n_batch = params.n_ubatch = n_ctx
        self.port = free_port()
        params.port = self.port
        self.server = xllamacpp.Server(params)
        self.url = f"http://127.0.0.1:{self.port}"


def reference_for(api: ApiDaemon, name: str, path: Path, **kwargs: object) -> Reference:
    """A reference engine configured as the daemon runs `name` (which it starts)."""
    api.proc.client.start(name)
    view = api.proc.model(name)
    threads = api.proc.client.status()["accelerator"]["physical_cores"]
    return Reference(path, view["n_ctx"], api.proc.settings.n_threads or threads, **kwargs)


def engine_load(api: ApiDaemon):
    """How hard the daemon's llama-servers work together (CPU seconds per second over a window): the
    other models idle, it is the one generating. The daemon keeps their keys, so the test watches CPU."""
    import time

    procs = {proc.pid: proc for proc, _port in api.proc.engines()}.values()
    assert procs, "no running engine found"

    def load(window: float = 0.5) -> float:
        before = sum(sum(p.cpu_times()[:2]) for p in procs)
        time.sleep(window)
        return (sum(sum(p.cpu_times()[:2]) for p in procs) - before) / window

    return load


IDLE = 0.25  # CPU s/s: engines that stopped decoding (decoding takes ~1-2 on 2 cores)


def assert_stops_after_disconnect(api: ApiDaemon, stream_request) -> None:
    """Open a stream with `stream_request()` (a context manager giving a line iterator), read a few lines,
    leave: within seconds the engines must be idle, long before the generation's end."""
    import time

    load = engine_load(api)
    deadline = time.monotonic() + 30
    while load() >= IDLE and time.monotonic() < deadline:
        pass  # a previous test's generation winding down
    with stream_request() as lines:
        for n, _line in enumerate(lines):
            if n >= 12:
                break
        busy = load()
        assert busy > IDLE, f"the engine should be generating while the client reads ({busy:.2f} CPU s/s)"
    deadline = time.monotonic() + 30
    while (now := load()) >= IDLE and time.monotonic() < deadline:
        pass
    assert now < IDLE, f"llama.cpp kept generating after the client left ({now:.2f} CPU s/s)"
