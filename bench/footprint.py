"""RSS of the daemon's imports, one module at a time in this fresh interpreter (where the idle MiB go).

`python -m bench.footprint [module …]`; by default the modules `qwendesk serve` imports, in order.
"""

from __future__ import annotations

import importlib
import sys

import psutil

DAEMON_IMPORTS = [
    "pydantic", "fastapi", "uvicorn", "httpx", "anyio", "sse_starlette", "watchdog.observers", "filelock",
    "qwendesk.models.gguf_info", "qwendesk.daemon.config", "qwendesk.daemon.server", "qwendesk.daemon.routes.api",
    "qwendesk.daemon.routes.openai", "qwendesk.daemon.routes.pull", "qwendesk.daemon.routes.chat",
    "qwendesk.daemon.watcher",
]  # fmt: skip


def main(modules: list[str]) -> None:
    proc = psutil.Process()
    prev = proc.memory_info().rss / 2**20
    print(f"{'python + psutil':40s} {prev:6.1f} MiB")
    for mod in modules:
        importlib.import_module(mod)
        now = proc.memory_info().rss / 2**20
        print(f"+ {mod:38s} {now:6.1f} MiB  (+{now - prev:5.1f})")
        prev = now
    heavy = [m for m in ("numpy", "gguf", "yaml", "rich", "pygments", "click") if m in sys.modules]
    print(f"{len(sys.modules)} modules loaded; heavy ones: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main(sys.argv[1:] or DAEMON_IMPORTS)
