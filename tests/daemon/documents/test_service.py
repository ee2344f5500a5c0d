"""The daemon's documents service with its real worker process, real SQLite and real folder watching; only the
model is a stand-in (a fake engine answering embedding requests with FakeEmbedder's vectors). The real model
and daemon are in test_documents_daemon_e2e.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.documents.errors import DocumentsUnavailable
from qwendesk.daemon.documents.service import DocumentsService
from qwendesk.daemon.events import EventBus
from qwendesk.models.errors import Conflict, QwendeskError
from tests.daemon.documents.conftest import FakeEmbedder, write
from tests.daemon.documents.test_parsing import make_pdf

EMBED = "embed-a"


class FakeEngine:
    """Answers the worker's embedding requests as an engine would; records them."""

    def __init__(self) -> None:
        self.embedders: dict[str, FakeEmbedder] = {}
        self.requests: list[tuple[str, int, bool]] = []  # (model, texts, interactive)
        self.stopped: set[str] = set()  # models that are "not running": interactive requests are refused
        self.slow: dict[str, float] = {}  # model -> seconds each indexing request takes

    async def __call__(self, params: dict[str, Any]) -> tuple[int, bytes]:
        body = params["body"]
        model = body["model"]
        if params["interactive"] and model in self.stopped:
            raise Conflict(f"the embedding model {model} is not running yet (it is being started)")
        self.requests.append((model, len(body["input"]), params["interactive"]))
        if not params["interactive"] and self.slow.get(model):
            await asyncio.sleep(self.slow[model])
        vectors = self.embedders.setdefault(model, FakeEmbedder(model)).embed(body["input"])
        data = {"object": "list", "data": [{"index": i, "embedding": v} for i, v in enumerate(vectors)]}
        return 200, json.dumps(data, indent=1).encode()  # with newlines, as some servers write it

    def texts(self, interactive: bool = False) -> int:
        return sum(n for _, n, i in self.requests if i == interactive)


def views(*names: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(name=n, kind="embedding", file=f"/m/{n}.gguf", error=None) for n in names]


@asynccontextmanager
async def service_in(
    home: Path, engine: FakeEngine, models: list[Any], **settings: Any
) -> AsyncIterator[tuple[DocumentsService, list[tuple[str, dict]]]]:
    env = {"QWENDESK_HOME": str(home), **{f"QWENDESK_{k.upper()}": str(v) for k, v in settings.items()}}
    bus = EventBus()
    service = DocumentsService(
        load_settings(env=env), engine=engine, models=lambda: models, events=lambda: bus
    )
    events: list[tuple[str, dict]] = []

    async def record() -> None:
        async with bus.subscribe() as queue:
            while True:
                events.append(await queue.get())

    recorder = asyncio.ensure_future(record())
    await asyncio.sleep(0)
    await service.start()
    try:
        yield service, events
    finally:
        await service.stop()
        recorder.cancel()


async def until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true after {timeout}s: {what}")


def ready(service: DocumentsService, name: str = "documents", files: int | None = None) -> bool:
    view = service.view(name)
    return view["state"] == "ready" and (files is None or view["files"] == files)


async def paths(service: DocumentsService, query: str, name: str = "documents", mode: str = "hybrid") -> list:
    return [h["path"] for h in (await service.search(query, 5, [name], mode))["results"]]


async def test_index_search_edit_rename_delete_with_progress_on_the_bus(tmp_path: Path) -> None:
    home, engine = tmp_path / "home", FakeEngine()
    docs = home / "documents"
    write(docs / "birds/heron.md", "# Herons\n\nThe grey heron stands in shallow water to spear fish.")
    write(docs / "moon.txt", "The Moon raises the tides of the sea.")
    async with service_in(home, engine, views(EMBED), documents_keep_alive=0) as (service, events):
        assert service.embedding.name == EMBED
        await until(lambda: ready(service, files=2), what="first sync")
        view = service.view("documents")
        assert view["chunks"] == 2 and view["search_model"] == EMBED and view["vectors_missing"] == 0
        assert view["search"] == "hybrid" and view["note"] is None and view["problems"] == []
        kinds = [e for e, _ in events]
        assert "indexing" in kinds and kinds[-1] == "collection"
        phases = [d["phase"] for e, d in events if e == "indexing"]
        assert phases[0] == "scan" and "index" in phases and "embed" in phases and phases[-1] == "done"
        assert engine.texts() == 2 and service.embedded == {"requests": 1, "texts": 2, "queries": 0}

        result = await service.search("heron fish", 5, ["documents"])
        assert result["mode"] == "hybrid" and result["note"] is None
        assert result["results"][0]["path"] == "birds/heron.md"
        assert result["results"][0]["heading"] == "Herons" and engine.texts(interactive=True) == 1

        write(docs / "moon.txt", "Mars has two small moons, Phobos and Deimos.", age=2)
        await until(lambda: engine.texts() == 3, what="the edit embedded")
        await until(lambda: ready(service))
        assert await paths(service, "phobos", mode="bm25") == ["moon.txt"]
        assert await paths(service, "tides", mode="bm25") == []

        before = engine.texts()
        (docs / "birds" / "heron.md").rename(docs / "wading.md")
        for _ in range(100):
            if await paths(service, "heron", mode="bm25") == ["wading.md"]:
                break
            await asyncio.sleep(0.1)
        assert await paths(service, "heron", mode="bm25") == ["wading.md"] and engine.texts() == before

        (docs / "wading.md").unlink()
        for _ in range(100):
            if not await paths(service, "heron", mode="bm25"):
                break
            await asyncio.sleep(0.1)
        assert await paths(service, "heron", mode="bm25") == []
        await until(lambda: ready(service, files=1))


async def test_a_restart_embeds_nothing_unchanged_and_an_idle_worker_stops(tmp_path: Path) -> None:
    home, engine = tmp_path / "home", FakeEngine()
    write(home / "documents" / "a.md", "# Alpha\n\nAardvarks dig burrows at night.")
    async with service_in(home, engine, views(EMBED), documents_keep_alive=0) as (service, _):
        await until(lambda: ready(service, files=1))
    assert engine.texts() == 1

    again = FakeEngine()
    async with service_in(home, again, views(EMBED), documents_keep_alive=1) as (service, events):
        await until(lambda: any(e == "collection" for e, _ in events), what="the catch-up sync")
        assert again.texts() == 0 and service.view("documents")["files"] == 1  # nothing re-embedded
        worker = service.worker
        assert worker is not None and worker.running
        await until(lambda: not worker.running, 15, "the idle worker to stop")
        assert service.view("documents")["files"] == 1  # still shown from its last report
        listing = await service.collections()  # listing does not start it
        assert listing["worker"]["running"] is False and listing["collections"][0]["files"] == 1
        assert await paths(service, "aardvarks") == ["a.md"]  # a search starts it again
        assert service.worker is not None and service.worker.running and service.worker is not worker
        assert again.texts() == 0 and again.texts(interactive=True) == 1


async def test_bad_files_are_listed_with_reasons_and_the_rest_is_searchable(tmp_path: Path) -> None:
    home, engine = tmp_path / "home", FakeEngine()
    docs = home / "documents"
    outside = write(tmp_path / "outside.txt", "secret outside")
    write(docs / "good.md", "Kingfishers dive into rivers.")
    write(docs / "corrupt.pdf", b"%PDF-1.7\n\x00garbage")
    write(docs / "locked.pdf", make_pdf(["locked text"], owner_password="o", user_password="pw"))
    write(docs / "binary.txt", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)
    huge = docs / "huge.txt"
    with huge.open("wb") as f:
        f.truncate(2**30)  # sparse: nothing written
    os.utime(huge, (time.time() - 10, time.time() - 10))
    (docs / "loop").symlink_to(docs, target_is_directory=True)
    (docs / "escape.txt").symlink_to(outside)
    async with service_in(home, engine, views(EMBED), documents_keep_alive=0) as (service, _):
        await until(lambda: ready(service, files=1))
        view = service.view("documents")
        problems = {p["path"]: (p["state"], p["reason"]) for p in view["problems"]}
        assert view["errors"] == 3 and view["skipped"] == 3
        assert problems["locked.pdf"][0] == "error" and "password-protected" in problems["locked.pdf"][1]
        assert "not a readable PDF" in problems["corrupt.pdf"][1]
        assert "not a text file" in problems["binary.txt"][1]
        assert problems["huge.txt"][0] == "skipped" and "64 MiB limit" in problems["huge.txt"][1]
        assert "outside the collection folder" in problems["escape.txt"][1]
        assert "already indexed" in problems["loop"][1]
        assert await paths(service, "kingfishers") == ["good.md"]
        assert await paths(service, "secret", mode="bm25") == []  # nothing outside the folder was read


async def test_without_an_embedding_model_search_is_by_keywords_and_says_how_to_get_one(
    tmp_path: Path,
) -> None:
    home, engine = tmp_path / "home", FakeEngine()
    write(home / "documents" / "a.md", "Puffins nest on cliffs.")
    async with service_in(home, engine, [], documents_keep_alive=0) as (service, _):
        await until(lambda: ready(service, files=1))
        listing = await service.collections()
        assert (
            listing["embedding_model"] is None
            and listing["pull_command"] == "qwendesk pull qwen3-embedding:0.6b"
        )
        assert (
            "keywords only" in listing["note"] and "`qwendesk pull qwen3-embedding:0.6b`" in listing["note"]
        )
        view = listing["collections"][0]
        assert view["search"] == "keywords" and view["note"] == listing["note"]
        result = await service.search("puffins", 3, ["documents"])
        assert result["mode"] == "bm25" and result["note"] == listing["note"]
        assert [h["path"] for h in result["results"]] == ["a.md"] and engine.requests == []


async def test_a_stopped_embedding_model_makes_search_answer_by_keywords_at_once(tmp_path: Path) -> None:
    home, engine = tmp_path / "home", FakeEngine()
    write(home / "documents" / "a.md", "Otters hold hands while they sleep.")
    async with service_in(home, engine, views(EMBED), documents_keep_alive=0) as (service, _):
        await until(lambda: ready(service, files=1))
        engine.stopped.add(EMBED)
        started = time.monotonic()
        result = await service.search("otters", 3, ["documents"])
        assert time.monotonic() - started < 5
        assert result["mode"] == "bm25" and "not running yet" in result["note"]
        assert [h["path"] for h in result["results"]] == ["a.md"]
        engine.stopped.clear()
        assert (await service.search("otters", 3, ["documents"]))["mode"] == "hybrid"


async def test_collections_are_added_and_removed_and_their_files_stay(tmp_path: Path) -> None:
    home, engine = tmp_path / "home", FakeEngine()
    notes = tmp_path / "My Notes"
    write(notes / "gannets.md", "Gannets plunge into the sea.")
    async with service_in(home, engine, views(EMBED), documents_keep_alive=0) as (service, events):
        added = await service.add("notes", str(notes))
        assert added["name"] == "notes" and added["folder"] == str(notes.resolve())
        await until(lambda: any(e == "collection" and d["name"] == "notes" for e, d in events))
        await until(lambda: ready(service, "notes", files=1))
        assert await paths(service, "gannets", "notes") == ["gannets.md"]
        names = [c["name"] for c in (await service.collections())["collections"]]
        assert names == ["documents", "notes"]

        for name, folder, code in [
            ("notes", str(notes), "collection_exists"),
            ("../x", str(notes), "collection_folder_invalid"),
            ("other", str(tmp_path / "missing"), "collection_folder_invalid"),
        ]:
            with pytest.raises(QwendeskError) as err:
                await service.add(name, folder)
            assert err.value.code == code
        with pytest.raises(QwendeskError) as err:
            await service.remove("documents")
        assert err.value.code == "collection_folder_invalid" and "cannot be removed" in err.value.message
        with pytest.raises(QwendeskError) as err:
            await service.search("x", 3, ["nope"])
        assert err.value.code == "collection_not_found"

        await service.remove("notes")
        assert not (home / "collections" / "notes.sqlite").exists() and (notes / "gannets.md").exists()
        assert [c["name"] for c in (await service.collections())["collections"]] == ["documents"]
        await until(lambda: ("collection", {"name": "notes", "removed": True}) in events)


async def test_an_unplugged_folder_keeps_its_index_and_comes_back(tmp_path: Path) -> None:
    home, engine = tmp_path / "home", FakeEngine()
    drive = tmp_path / "drive"
    write(drive / "owls.md", "Owls hunt at night.")
    async with service_in(home, engine, views(EMBED), documents_keep_alive=0) as (service, _):
        await service.add("drive", str(drive))
        await until(lambda: ready(service, "drive", files=1))
        drive.rename(tmp_path / "elsewhere")
        await until(lambda: service.view("drive")["state"] == "error", 20, "the missing folder reported")
        view = service.view("drive")
        assert "missing" in view["last_error"] and view["files"] == 1  # the index is kept as it was
        assert await paths(service, "owls", "drive") == ["owls.md"]
        (tmp_path / "elsewhere").rename(drive)
        await until(
            lambda: ready(service, "drive", files=1), 20, "the folder back (noticed by the idle check)"
        )


async def test_a_new_embedding_model_re_embeds_in_the_background_while_search_keeps_the_old_vectors(
    tmp_path: Path,
) -> None:
    home, engine = tmp_path / "home", FakeEngine()
    for i in range(70):  # three embedding requests to re-embed (batches of 32)
        write(home / "documents" / f"d{i}.md", f"Document {i} tells of herons and water number {i}.")
    models = views(EMBED)
    async with service_in(home, engine, models, documents_keep_alive=0, embedding_model=EMBED) as (
        service,
        _,
    ):
        await until(lambda: ready(service, files=70))
        engine.slow["embed-b"] = 1.0  # a slow re-embedding: search runs in the middle of it
        service.settings = service.settings.model_copy(update={"embedding_model": "embed-b"})
        models.append(views("embed-b")[0])
        service.events().publish("snapshot", {})
        await until(
            lambda: any(m == "embed-b" for m, _, _ in engine.requests), what="the re-embedding to start"
        )
        result = await service.search("herons", 3, ["documents"])
        assert result["mode"] == "hybrid" and result["note"] is None  # embed-a's vectors...
        assert engine.requests[-1] == (EMBED, 1, True)  # ...queried with embed-a
        view = (await service.collections())["collections"][0]  # fresh from the worker
        assert view["embedding_model"] == "embed-b" and view["search_model"] == EMBED
        assert view["vectors_missing"] > 0 and view["search"] == "hybrid"
        await until(lambda: service.view("documents")["search_model"] == "embed-b", 30, "the switch")
        assert service.view("documents")["vectors_missing"] == 0
        assert service.view("documents")["embedding_model"] == "embed-b"


async def test_a_crashed_worker_is_started_again_by_the_next_request(tmp_path: Path) -> None:
    home, engine = tmp_path / "home", FakeEngine()
    write(home / "documents" / "a.md", "Lynx live in forests.")
    async with service_in(home, engine, views(EMBED), documents_keep_alive=0) as (service, _):
        await until(lambda: ready(service, files=1))
        worker = service.worker
        assert worker is not None and worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        await until(lambda: not worker.running, what="the crash noticed")
        with pytest.raises(DocumentsUnavailable):
            await worker.call("status", {})
        assert await paths(service, "lynx") == ["a.md"]
        assert service.worker is not worker and service.worker.running  # type: ignore[union-attr]


async def test_after_a_restart_with_another_model_search_answers_from_the_old_vectors(tmp_path: Path) -> None:
    home, engine = tmp_path / "home", FakeEngine()
    for i in range(70):
        write(home / "documents" / f"d{i}.md", f"Document {i} tells of herons and water number {i}.")
    async with service_in(home, engine, views(EMBED), documents_keep_alive=0) as (service, _):
        await until(lambda: ready(service, files=70))

    engine.slow["embed-b"] = 1.0
    both = views(EMBED, "embed-b")
    async with service_in(home, engine, both, documents_keep_alive=0, embedding_model="embed-b") as (
        service,
        _,
    ):
        await until(lambda: any(m == "embed-b" for m, _, _ in engine.requests), what="the re-embedding")
        result = await service.search("herons", 3, ["documents"])
        assert result["mode"] == "hybrid" and engine.requests[-1] == (
            EMBED,
            1,
            True,
        )  # the old model's vectors
        await until(lambda: service.view("documents")["search_model"] == "embed-b", 30, "the switch")
        assert (await service.search("herons", 3, ["documents"]))["mode"] == "hybrid"
        assert engine.requests[-1] == ("embed-b", 1, True)
