"""System (a): llama.cpp driven in-process through xllamacpp's Server API, in a child process of its own.

The harness talks to it with one JSON object per line on stdin/stdout; llama.cpp logs go to stderr.
A child process keeps the measurement clean: its RSS is the raw engine's, and the harness's own client
work does not share its interpreter. Ops: load, stream, rss, unload, quit.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from bench.workload import StreamRecord


class RawEngine:
    """One xllamacpp.Server; requests run on threads, as Xinference's engine runs them."""

    def __init__(self) -> None:
        self.server: Any = None

    def load(
        self, model: str, n_ctx: int, n_parallel: int, n_threads: int, cache_ram_mib: int
    ) -> dict[str, Any]:
        started = time.perf_counter()
        import xllamacpp

        imported = time.perf_counter()
        params = xllamacpp.CommonParams()
        params.model.path = model
        params.n_ctx = n_ctx
        params.n_parallel = n_parallel
        params.n_gpu_layers = 0
        params.use_jinja = True
        params.cache_ram_mib = cache_ram_mib
        params.cpuparams.n_threads = n_threads
        params.cpuparams_batch.n_threads = n_threads
        self.server = xllamacpp.Server(params)
        loaded = time.perf_counter()
        return {
            "import_s": imported - started,
            "load_s": loaded - imported,
            "address": self.server.listening_address,
        }

    def one(self, body: dict[str, Any]) -> StreamRecord:
        record = StreamRecord(sent=time.perf_counter())

        def callback(result: Any) -> None:
            now = time.perf_counter()
            for item in result if isinstance(result, list) else [result]:
                record.on_chunk(item, now)

        try:
            self.server.handle_chat_completions(body, callback)
        except Exception as exc:  # report, keep serving
            record.error = repr(exc)
        record.end = time.perf_counter()
        return record

    def stream(self, bodies: list[dict[str, Any]]) -> list[StreamRecord]:
        """All bodies at once, one thread each (n clients = n threads)."""
        records: list[StreamRecord | None] = [None] * len(bodies)

        def run(i: int) -> None:
            records[i] = self.one(bodies[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [r for r in records if r is not None]

    def unload(self) -> None:
        self.server = None


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything llama.cpp prints goes to stderr, never into the protocol
    engine = RawEngine()
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg.pop("op")
        if op == "load":
            out: Any = engine.load(**msg)
        elif op == "stream":
            out = [r.as_dict() for r in engine.stream(msg["bodies"])]
        elif op == "rss":
            out = {"rss": rss()}
        elif op == "unload":
            engine.unload()
            out = {"rss": rss()}
        elif op == "quit":
            proto.write(json.dumps({"ok": True}) + "\n")
            return
        else:
            out = {"error": f"unknown op {op}"}
        proto.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
