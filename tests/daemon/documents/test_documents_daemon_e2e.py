"""Chat with your documents, end to end: a real daemon (uvicorn, embedded Xinference, llama.cpp) indexes its
documents folder with all-MiniLM-L6-v2 (converted by qwendesk, served like any model: started on demand through
the daemon's lifecycle) in its documents worker (real SQLite, sqlite-vec, watchdog), reflects edits, renames and
deletes, answers searches, the CLI, and chat with citations through the official openai SDK with SmolLM2; a
restart embeds nothing unchanged; the idle daemon stays small once the worker has stopped."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from qwendesk.daemon.client import DaemonClient
from tests.conftest import SMOLLM2_NAME, DaemonProcess, free_port, link_model
from tests.daemon.documents.conftest import write
from tests.daemon.documents.test_documents_e2e import DOCS, make_docx
from tests.daemon.documents.test_parsing import make_pdf

pytestmark = pytest.mark.e2e

EMBED = "all-minilm-l6-v2-f16"
IDLE_LIMIT_MIB = 80.0
ENV = {
    "QWENDESK_KEEP_ALIVE": "0",  # models stay up between the steps
    "QWENDESK_DOCUMENTS_KEEP_ALIVE": "3",  # the worker stops between them (and starts again on demand)
    "QWENDESK_N_CTX": "2048",
}


def fill(folder: Path) -> None:
    for path, text in DOCS.items():
        write(folder / path, text)
    write(folder / "ocean.pdf", make_pdf(["Blue whales are the largest animals ever known to have lived."]))
    write(folder / "garden.docx", make_docx("Water tomato plants in the morning and pick them when red."))


def start_daemon(home: Path, port: int, smollm2: Path | None, minilm: Path | None) -> DaemonProcess:
    proc = DaemonProcess(home, port, ENV)
    if smollm2 is not None:
        link_model(smollm2, proc.models_dir)
    if minilm is not None:
        link_model(minilm, proc.models_dir, "all-MiniLM-L6-v2-f16.gguf")
    return proc.start()


@pytest.fixture(scope="module")
def docs_daemon(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Iterator[DaemonProcess]:
    from tests.models.encoder_fixtures import minilm_gguf_path

    home = tmp_path_factory.mktemp("docs-home")
    fill(home / "documents")
    proc = start_daemon(home, free_port(), smollm2_gguf, minilm_gguf_path())
    try:
        yield proc
    finally:
        proc.stop()


def collections(daemon: DaemonProcess) -> dict[str, Any]:
    r = httpx.get(daemon.url + "/api/collections", timeout=150)
    assert r.status_code == 200, r.text
    return r.json()


def collection(daemon: DaemonProcess, name: str = "documents") -> dict[str, Any]:
    return next(c for c in collections(daemon)["collections"] if c["name"] == name)


def search(
    daemon: DaemonProcess, query: str, mode: str = "hybrid", name: str = "documents", k: int = 3
) -> dict:
    r = httpx.post(
        f"{daemon.url}/api/collections/{name}/search",
        json={"query": query, "k": k, "mode": mode},
        timeout=150,
    )
    assert r.status_code == 200, r.text
    return r.json()


def top(daemon: DaemonProcess, query: str, mode: str = "vector") -> str | None:
    hits = search(daemon, query, mode)["results"]
    return hits[0]["path"] if hits else None


def indexed(daemon: DaemonProcess, files: int) -> dict | None:
    c = collection(daemon)
    done = (
        c["state"] == "ready"
        and c["files"] == files
        and c["vectors_missing"] == 0
        and c["search"] == "hybrid"
    )
    return c if done else None


def cli(daemon: DaemonProcess, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qwendesk.daemon", *args],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def worker_processes(daemon: DaemonProcess) -> list[psutil.Process]:
    out = []
    for p in daemon.tree()[1:]:
        try:
            if "qwendesk.daemon.documents.worker" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            continue
    return out


def test_documents_indexed_searched_kept_current_and_chatted_with(
    docs_daemon: DaemonProcess, tmp_path: Path
) -> None:
    from openai import OpenAI

    d = docs_daemon
    first = d.wait_for(lambda c: indexed(d, 6), 600, "the documents folder indexed with real embeddings")
    assert first["chunks"] == 6 and first["embedding_model"] == first["search_model"] == EMBED
    assert first["problems"] == [] and first["note"] is None
    listing = collections(d)
    assert listing["embedding_model"] == EMBED and listing["note"] is None and listing["pull_command"] is None
    assert listing["embedded"]["texts"] == 6 and listing["embedded"]["requests"] >= 1
    # The embedding model was started on demand by the daemon's lifecycle, like any model.
    assert d.model(EMBED)["state"] == "running"

    # Meaning, not keywords (none of these queries shares a content word with its answer).
    assert top(d, "which bird hunts in ponds") == "birds/heron.md"
    assert top(d, "biggest creature in the sea") == "ocean.pdf"
    assert top(d, "how do I make a loaf") == "bread.html"
    hybrid = search(d, "largest animals")
    assert hybrid["mode"] == "hybrid" and hybrid["note"] is None
    best = hybrid["results"][0]
    assert (best["path"], best["page"], best["collection"]) == ("ocean.pdf", 1, "documents")
    assert set(best) >= {"path", "page", "heading", "text", "score"}

    # In-place edit: reflected within seconds, one new text embedded.
    folder = d.home / "documents"
    texts = collections(d)["embedded"]["texts"]
    write(folder / "space.txt", "Mars has two small moons called Phobos and Deimos.", age=1)
    d.wait_for(lambda c: top(d, "Phobos", "bm25") == "space.txt", 60, "the edit to be searchable")
    d.wait_for(
        lambda c: indexed(d, 6) and collections(d)["embedded"]["texts"] > texts, 60, "the edit embedded"
    )
    assert collections(d)["embedded"]["texts"] == texts + 1
    assert top(d, "moons of the red planet") == "space.txt"
    assert search(d, "tides", "bm25")["results"] == []

    # Rename: the same vectors under the new path (nothing embedded).
    (folder / "birds" / "heron.md").rename(folder / "wading-birds.md")
    d.wait_for(lambda c: top(d, "which bird hunts in ponds") == "wading-birds.md", 60, "the rename")
    assert collections(d)["embedded"]["texts"] == texts + 1

    # Delete.
    (folder / "bread.html").unlink()
    d.wait_for(lambda c: indexed(d, 5), 60, "the delete")
    assert all(h["path"] != "bread.html" for h in search(d, "bake bread in an oven", k=5)["results"])

    # The CLI: add a folder (progress, then its counts), list, search.
    notes = tmp_path / "team notes"
    write(
        notes / "keys.md",
        "# Backup\n\n## Keys\n\nTo rotate the backup keys, run `vault rotate` and restart the agent.",
    )
    write(notes / "scan.pdf", b"%PDF-1.4 broken")
    seen: list[tuple[str, dict]] = []
    follower = DaemonClient.from_settings(d.settings, timeout=30)

    def follow() -> None:
        with contextlib.suppress(Exception):  # ends when the test closes the client
            seen.extend(follower.events(timeout=120))

    threading.Thread(target=follow, daemon=True).start()
    added = cli(d, "docs", "add", str(notes), "--name", "notes")
    assert added.returncode == 0, added.stderr
    # Progress on /api/events (what the tray and the chat page follow), then the collection's new state.
    d.wait_for(
        lambda c: any(e == "collection" and x["name"] == "notes" and x["state"] == "ready" for e, x in seen),
        30,
        "the collection event",
    )
    progress = [x for e, x in seen if e == "indexing" and x["collection"] == "notes"]
    assert [p["phase"] for p in progress][-1] == "done" and any(p["phase"] == "index" for p in progress)
    follower.close()
    assert "Added collection notes" in added.stdout and "notes: 1 files" in added.stdout, added.stdout
    listed = cli(d, "docs")
    assert listed.returncode == 0 and "notes" in listed.stdout and "hybrid" in listed.stdout, listed.stdout
    assert "scan.pdf: error: " in listed.stdout and "not a readable PDF" in listed.stdout
    found = cli(d, "docs", "search", "notes", "how do I rotate the backup keys")
    assert found.returncode == 0 and "[1] keys.md · Backup > Keys" in found.stdout, found.stdout

    # Chat with citations through the official SDK, the collections passed with extra_body.
    client = OpenAI(base_url=d.url + "/v1", api_key="unused", max_retries=0, timeout=600)
    question = [{"role": "user", "content": "How do I rotate the backup keys?"}]
    plain = client.chat.completions.create(
        model=SMOLLM2_NAME, messages=question, max_tokens=24, temperature=0
    )
    answer = client.chat.completions.create(
        model=SMOLLM2_NAME,
        messages=question,
        max_tokens=24,
        temperature=0,
        extra_body={"collections": ["notes", "documents"]},
    )
    citations = answer.model_extra["citations"]
    assert citations and citations[0]["index"] == 1 and citations[0]["path"] == "keys.md"
    assert citations[0]["collection"] == "notes" and citations[0]["heading"] == "Backup > Keys"
    assert "vault rotate" in citations[0]["text"] and [c["index"] for c in citations] == list(
        range(1, len(citations) + 1)
    )
    assert answer.model_extra["retrieval"]["mode"] == "hybrid" and answer.choices[0].message.content
    # The sources went into the prompt (and fit in the 2048-token context).
    assert answer.usage.prompt_tokens > plain.usage.prompt_tokens + 30
    assert answer.usage.prompt_tokens + 24 <= 2048

    chunks = list(
        client.chat.completions.create(
            model=SMOLLM2_NAME,
            messages=question,
            max_tokens=16,
            temperature=0,
            stream=True,
            extra_body={"collections": ["notes"]},
        )
    )
    with_citations = [i for i, ch in enumerate(chunks) if (ch.model_extra or {}).get("citations")]
    assert with_citations == [len(chunks) - 1], "one chunk with the citations, the last before [DONE]"
    last = chunks[-1]
    assert last.choices == [] and last.model_extra["citations"][0]["path"] == "keys.md"
    assert last.id == chunks[0].id and last.model == SMOLLM2_NAME
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks[:-1] if ch.choices)

    asked = cli(d, "ask", "--docs", "notes", "How do I rotate the backup keys?")
    assert asked.returncode == 0, asked.stderr
    assert "Sources:" in asked.stdout and "[1] notes: keys.md · Backup > Keys" in asked.stdout, asked.stdout

    removed = cli(d, "docs", "remove", "notes")
    assert removed.returncode == 0 and (notes / "keys.md").exists()
    bad = httpx.post(
        d.url + "/v1/chat/completions",
        json={"model": SMOLLM2_NAME, "messages": question, "collections": ["notes"]},
        timeout=60,
    )
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "collection_not_found"


def test_restart_embeds_nothing_unchanged_and_the_idle_daemon_stays_small(docs_daemon: DaemonProcess) -> None:
    d = docs_daemon
    d.wait_for(lambda c: collection(d)["state"] == "ready" and collection(d)["vectors_missing"] == 0, 600)
    files = collection(d)["files"]
    assert files >= 5
    home, port = d.home, d.settings.port
    d.stop()

    again = DaemonProcess(home, port, ENV)
    again.start()
    try:
        again.wait_for(
            lambda c: collection(again)["last_sync"] is not None and collection(again)["state"] == "ready",
            120,
            "the catch-up sync after the restart",
        )
        listing = collections(again)
        assert (
            listing["embedded"]["texts"] == 0 and listing["embedded"]["requests"] == 0
        )  # nothing re-embedded
        assert (
            listing["collections"][0]["files"] == files and listing["collections"][0]["vectors_missing"] == 0
        )
        assert again.model(EMBED)["state"] == "available"  # and the embedding model was not even started

        # A search while the embedding model is stopped answers at once, by keywords, and says why; the model
        # starts in the background and the next searches are hybrid again.
        started = time.monotonic()
        first = search(again, "largest animals")
        assert time.monotonic() - started < 10
        assert first["mode"] == "bm25" and "not running yet" in first["note"], first
        assert first["results"][0]["path"] == "ocean.pdf"
        again.wait_for(lambda c: again.model(EMBED)["state"] == "running", 300, "the embedding model started")
        assert search(again, "biggest creature in the sea", "vector")["results"][0]["path"] == "ocean.pdf"

        # Idle: the worker stops after documents_keep_alive; the daemon process is back under the limit.
        again.wait_for(lambda c: not collections(again)["worker"]["running"], 60, "the idle worker to stop")
        again.wait_for(lambda c: not worker_processes(again), 30, "the worker process gone")
        time.sleep(1)
        daemon_rss = rss_mib(again.proc.pid)  # type: ignore[union-attr]
        print(f"\nidle daemon after documents were used: {daemon_rss:.1f} MiB RSS")
        assert daemon_rss <= IDLE_LIMIT_MIB, daemon_rss
        maps = Path(f"/proc/{again.proc.pid}/maps").read_text()  # type: ignore[union-attr]
        assert "apsw" not in maps and "vec0" not in maps, "the daemon itself never loads the index"
    finally:
        again.stop()
