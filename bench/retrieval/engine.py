"""The raw engine: a llama.cpp embedding server (xllamacpp) in a child process of its own, so the benchmark's
Python work (parsing, SQLite) does not share its interpreter. Speaks one JSON line (its URL), then waits for
stdin to close."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


class EngineProcess:
    """`with EngineProcess(gguf) as engine:` engine.url is the server's base URL (http://127.0.0.1:PORT)."""

    def __init__(
        self,
        model: Path,
        pooling: str = "mean",
        n_parallel: int = 2,
        n_threads: int = 2,
        log: Path | None = None,
    ) -> None:
        self.model, self.pooling, self.n_parallel, self.n_threads, self.log = (
            model,
            pooling,
            n_parallel,
            n_threads,
            log,
        )
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> EngineProcess:
        stderr = self.log.open("w") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.retrieval.engine",
                str(self.model),
                str(self.n_parallel),
                str(self.n_threads),
                self.pooling,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"the embedding engine did not start (see {self.log})")
        self.url = json.loads(line)["url"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def cpu_seconds(self) -> float:
        """User + system CPU time the engine has used so far (all its threads)."""
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()  # type: ignore[union-attr]
        return times.user + times.system


def main() -> None:
    from tests.daemon.documents.embedding_model import start_embedding_server

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # llama.cpp's own prints go to stderr, never into the protocol
    server = start_embedding_server(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    proto.write(json.dumps({"url": server.listening_address}) + "\n")
    sys.stdin.read()
    del server


if __name__ == "__main__":
    main()
