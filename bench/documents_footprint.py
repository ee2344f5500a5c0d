"""RSS of the daemon and its documents worker: the daemon fresh, while its worker indexes and searches, and once
the worker has stopped; the worker per file format it has parsed. No model (search by keywords).

    python -m bench.documents_footprint            # ~1 min; prints one line per case

The idle daemon must stay <= 80 MiB whatever documents did (the worker is a separate process that stops after
`documents_keep_alive` seconds).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from qwendesk.daemon.ports import free_port

FORMATS = (("md",), ("md", "html"), ("md", "pdf"), ("md", "docx"), ("md", "html", "pdf", "docx"))
FILES_PER_FORMAT = 10
SEARCHES = 30


def mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def fill(folder: Path, kinds: tuple[str, ...]) -> None:
    from tests.daemon.documents.test_documents_e2e import make_docx
    from tests.daemon.documents.test_parsing import make_pdf

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(FILES_PER_FORMAT):
        if "md" in kinds:
            (folder / f"n{i}.md").write_text(f"# Note {i}\n\n" + "Kingfishers and herons hunt fish. " * 40)
        if "html" in kinds:
            (folder / f"h{i}.html").write_text(f"<h1>Bread {i}</h1><p>Knead the dough and bake it.</p>")
        if "pdf" in kinds:
            (folder / f"p{i}.pdf").write_bytes(make_pdf([f"Blue whales {i}.", "A second page."]))
        if "docx" in kinds:
            (folder / f"w{i}.docx").write_bytes(make_docx(f"Water the tomatoes {i}."))
    old = time.time() - 10
    for path in folder.iterdir():
        os.utime(path, (old, old))  # settled: not taken for files still being written


def run(kinds: tuple[str, ...]) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="qwendesk-bench-docs-"))
    fill(home / "documents", kinds)
    port = free_port()
    env = {
        **os.environ,
        "QWENDESK_HOME": str(home),
        "QWENDESK_PORT": str(port),
        "QWENDESK_DOCUMENTS_KEEP_ALIVE": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwendesk.daemon", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                listing = httpx.get(url + "/api/collections", timeout=30).json()
                if listing["collections"][0]["state"] == "ready" and listing["collections"][0]["files"]:
                    break
            except (httpx.HTTPError, KeyError, IndexError):
                pass
            time.sleep(0.2)
        busy_daemon, worker = mib(proc.pid), 0.0
        for i in range(SEARCHES):
            httpx.post(
                url + "/api/collections/documents/search", json={"query": f"herons whales {i}"}, timeout=60
            )
            for child in psutil.Process(proc.pid).children():
                worker = max(worker, mib(child.pid))
        deadline = time.monotonic() + 60
        while psutil.Process(proc.pid).children() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        return {"daemon_busy": busy_daemon, "worker": worker, "daemon_after": mib(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(30)


def fresh() -> float:
    home = Path(tempfile.mkdtemp(prefix="qwendesk-bench-docs-"))
    port = free_port()
    env = {**os.environ, "QWENDESK_HOME": str(home), "QWENDESK_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwendesk.daemon", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        time.sleep(5)
        return mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    print(f"idle daemon, fresh, no documents: {fresh():.1f} MiB RSS")
    for kinds in FORMATS:
        r = run(kinds)
        print(
            f"{'+'.join(kinds):<20} worker {r['worker']:6.1f} MiB | daemon while it runs {r['daemon_busy']:5.1f}"
            f" | daemon after it stopped {r['daemon_after']:5.1f} MiB"
        )


if __name__ == "__main__":
    main()
