"""Incremental sync: add, edit, rename, delete and restart are reflected, and only changed text is embedded."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from qwendesk.daemon.documents.collection import Collection
from qwendesk.daemon.documents.sync import Progress
from tests.daemon.documents.conftest import FakeEmbedder, settle, write

LONG = "\n\n".join(f"Paragraph {i} about topic{i} " + "filler words here " * 60 for i in range(6))


def top_path(collection: Collection, query: str, mode: str = "hybrid") -> str | None:
    hits = collection.search(query, 1, mode=mode).hits
    return hits[0].path if hits else None


def test_add_edit_rename_delete_and_restart(
    tmp_path: Path, folder: Path, collection: Collection, embedder: FakeEmbedder
) -> None:
    write(folder / "birds.md", "# Birds\n\nThe heron stands in water.")
    write(folder / "sub" / "fish.txt", "Salmon swim upstream.")
    events: list[Progress] = []
    report = collection.sync(events.append)
    assert sorted(report.added) == ["birds.md", "sub/fish.txt"] and report.texts_embedded == 2
    assert events[-1].phase == "done" and any(e.phase == "index" and e.files_total == 2 for e in events)
    assert top_path(collection, "heron") == "birds.md"
    hit = collection.search("salmon", 1).hits[0]
    assert (hit.path, hit.text, hit.start, hit.end) == ("sub/fish.txt", "Salmon swim upstream.", 0, 21)

    # Edit in place: re-parsed and re-embedded; the old text is gone from search.
    write(folder / "birds.md", "# Birds\n\nThe pelican dives for fish.")
    report = collection.sync()
    assert report.updated == ["birds.md"] and report.texts_embedded == 1
    assert top_path(collection, "pelican") == "birds.md"
    assert collection.search("heron", 5, mode="bm25").hits == []

    # Rename (and move into a sub-folder): no parsing, no embedding.
    calls = embedder.calls
    (folder / "birds.md").rename(folder / "sub" / "seabirds.md")
    report = collection.sync()
    assert report.renamed == [("birds.md", "sub/seabirds.md")] and not report.added and not report.removed
    assert embedder.calls == calls and report.chunks_written == 0
    assert top_path(collection, "pelican") == "sub/seabirds.md"

    # Delete.
    (folder / "sub" / "fish.txt").unlink()
    report = collection.sync()
    assert report.removed == ["sub/fish.txt"]
    assert collection.search("salmon", 5, mode="bm25").hits == []

    # Touch without a change: hashed, not re-parsed.
    settle(folder / "sub" / "seabirds.md", age=2)
    report = collection.sync()
    assert report.unchanged == 1 and not report.updated and report.chunks_written == 0

    # Restart: a new object on the same index file re-embeds and re-parses nothing.
    collection.close()
    fresh = FakeEmbedder()
    again = Collection("test", folder, collection.index_path, fresh)
    try:
        report = again.sync()
        assert report.unchanged == 1 and report.texts_embedded == 0 and fresh.calls == 0
        assert not (report.added or report.updated or report.removed)
        assert top_path(again, "pelican") == "sub/seabirds.md" and again.search("pelican").mode == "hybrid"
        assert fresh.calls == 2  # only the two queries
    finally:
        again.close()


def test_edit_re_embeds_only_the_changed_chunks(
    folder: Path, collection: Collection, embedder: FakeEmbedder
) -> None:
    write(folder / "long.md", LONG)
    first = collection.sync()
    n = first.chunks_written
    assert n >= 3 and first.texts_embedded == n
    write(folder / "long.md", LONG.replace("Paragraph 5 about topic5", "Paragraph 5 about zeppelins"))
    report = collection.sync()
    assert report.updated == ["long.md"] and report.chunks_written == n
    assert report.texts_embedded == 1  # the one chunk whose text changed
    assert "zeppelins" in embedder.texts[-1]


def test_copy_of_a_file_reuses_vectors(folder: Path, collection: Collection, embedder: FakeEmbedder) -> None:
    write(folder / "a.md", LONG)
    collection.sync()
    texts = len(embedder.texts)
    write(folder / "copy of a.md", LONG)
    report = collection.sync()
    assert report.added == ["copy of a.md"] and len(embedder.texts) == texts


def test_file_being_written_is_indexed_once_complete(folder: Path, collection: Collection) -> None:
    path = folder / "growing.txt"
    path.write_text("first half")  # mtime is now: still being written
    report = collection.sync()
    assert report.pending == ["growing.txt"] and report.retry_after is not None and not report.added
    assert collection.search("first", 1, mode="bm25").hits == []
    with path.open("a") as f:
        f.write(" and the complete ending")
    settle(path)
    report = collection.sync()
    assert report.added == ["growing.txt"] and not report.pending
    assert collection.search("ending", 1).hits[0].text == "first half and the complete ending"


def test_a_known_file_being_rewritten_keeps_its_old_version_until_settled(
    folder: Path, collection: Collection
) -> None:
    write(folder / "a.txt", "old version of albatross")
    collection.sync()
    (folder / "a.txt").write_text("new version of")  # half-written, fresh mtime
    assert collection.sync().pending == ["a.txt"]
    assert top_path(collection, "albatross", "bm25") == "a.txt"


def test_no_embedder_means_keyword_search_that_says_so(tmp_path: Path, folder: Path) -> None:
    collection = Collection("plain", folder, tmp_path / "p.sqlite")
    try:
        write(folder / "a.md", "Cormorants dry their wings.")
        report = collection.sync()
        assert report.added == ["a.md"] and report.texts_embedded == 0
        result = collection.search("cormorants")
        assert result.mode == "bm25" and result.hits[0].path == "a.md"
        assert result.note == "keyword search only: no embedding model is set for this collection"
        assert collection.search("cormorants", mode="bm25").note is None
        assert collection.status().embedding_model is None
    finally:
        collection.close()


def test_model_change_re_embeds_while_search_uses_the_old_vectors(
    folder: Path, collection: Collection, embedder: FakeEmbedder
) -> None:
    for i in range(5):
        write(folder / f"doc{i}.md", f"# Doc {i}\n\nUnique word{i} lives here.")
    collection.sync()
    assert collection.status().search_model == "fake-a"

    new = FakeEmbedder("fake-b", dim=32)
    collection.set_embedder(new)
    report = collection.sync(should_stop=lambda: True)  # a change came in: embedding waits
    assert report.embed_interrupted and report.texts_embedded == 0
    status = collection.status()
    assert (status.embedding_model, status.search_model, status.vectors_missing) == ("fake-b", "fake-a", 5)

    # Batches of 2 show the in-between state: search still answers from fake-a's vectors.
    from qwendesk.daemon.documents.sync import Syncer

    syncer = Syncer("test", folder, collection.index)
    syncer.run_embeddings(new, should_stop=iter([False, True]).__next__, batch=2)
    status = collection.status()
    assert status.search_model == "fake-a" and status.vectors_missing == 3
    queries = embedder.calls
    result = collection.search("word3")
    assert result.mode == "hybrid" and result.hits[0].path == "doc3.md"
    assert embedder.calls == queries + 1  # the query went to the old model

    report = collection.sync()
    assert report.texts_embedded == 3 and report.vectors_missing == 0
    status = collection.status()
    assert status.search_model == "fake-b" and status.vectors_missing == 0
    assert [m.model_id for m in collection.index.models()] == ["fake-b"]  # old vectors dropped
    before = new.calls
    assert collection.search("word3").hits[0].path == "doc3.md" and new.calls == before + 1


def test_readers_never_see_half_a_file(folder: Path, collection: Collection) -> None:
    """While one thread rewrites a many-chunk file, another counts its chunks: always all or nothing."""
    big = "\n\n".join(f"Section {i} " + "more words " * 100 for i in range(60))
    versions = [big.replace("more", f"v{i}more") for i in range(8)]
    write(folder / "big.md", versions[0])
    full = collection.sync().chunks_written
    seen: set[int] = set()
    stop = threading.Event()

    def read() -> None:
        reader = collection.index.reader()
        while not stop.is_set():
            (n,) = reader.execute(
                "SELECT count(*) FROM chunks c JOIN files f ON f.id = c.file_id WHERE f.path = 'big.md'"
            ).fetchone()
            seen.add(n)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for text in versions[1:]:
            write(folder / "big.md", text)
            assert collection.sync().updated == ["big.md"]
    finally:
        stop.set()
        thread.join()
    assert full >= 30 and seen == {full}


def test_sync_is_one_at_a_time(folder: Path, collection: Collection) -> None:
    for i in range(20):
        write(folder / f"f{i}.txt", f"file {i} " + "text " * 200)
    results = []
    threads = [threading.Thread(target=lambda: results.append(collection.sync())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r.added) for r in results) == [0, 0, 20]
    assert collection.status().files == 20


@pytest.mark.parametrize("age", [-3600.0])
def test_file_dated_in_the_future_is_not_pending_forever(
    folder: Path, collection: Collection, age: float
) -> None:
    path = folder / "future.txt"
    path.write_text("clock skew")
    t = time.time() - age
    os.utime(path, (t, t))
    assert collection.sync().added == ["future.txt"]


def test_empty_folder_opens_no_index_until_a_file_arrives(folder: Path, collection: Collection) -> None:
    report = collection.sync()
    assert not report.added and not collection.index_path.exists()  # SQLite stays unloaded while idle
    status = collection.status()
    assert (status.files, status.chunks, status.embedding_model, status.vectors_missing) == (
        0,
        0,
        "fake-a",
        0,
    )
    write(folder / "first.md", "The first note.")
    assert collection.sync().added == ["first.md"] and collection.index_path.exists()
    assert collection.status().files == 1


def test_a_model_without_the_query_language_leaves_it_to_keywords(folder: Path, tmp_path: Path) -> None:
    english = FakeEmbedder()
    english.languages = ("en",)
    collection = Collection("langs", folder, tmp_path / "l.sqlite", english)
    try:
        write(folder / "zh.txt", "今天天气很好，我们去公园散步。")
        write(folder / "en.txt", "The weather is fine today.")
        collection.sync()
        calls = english.calls
        chinese = collection.search("今天天气怎么样", 2)
        assert chinese.mode == "bm25" and chinese.hits[0].path == "zh.txt" and english.calls == calls
        assert "does not know this query's language" in (chinese.note or "")
        assert collection.search("weather today", 2).mode == "hybrid"
        english.languages = ("en", "zh")
        assert collection.search("今天天气怎么样", 2).mode == "hybrid"
    finally:
        collection.close()


def test_reranker_hook_reorders_the_fused_candidates(folder: Path, tmp_path: Path) -> None:
    seen: list[tuple[str, int]] = []

    def prefer_owls(query: str, texts: list[str]) -> list[float]:
        seen.append((query, len(texts)))
        return [1.0 if "owl" in t else 0.0 for t in texts]

    collection = Collection("rr", folder, tmp_path / "r.sqlite", FakeEmbedder(), reranker=prefer_owls)
    try:
        write(folder / "a.md", "Birds birds birds: sparrows and finches.")
        write(folder / "b.md", "A bird: the owl.")
        collection.sync()
        assert collection.search("birds", 2, rerank=False).hits[0].path == "a.md"
        reranked = collection.search("birds", 2)
        assert [h.path for h in reranked.hits] == ["b.md", "a.md"] and reranked.hits[0].score == 1.0
        assert seen == [("birds", 2)]
    finally:
        collection.close()
