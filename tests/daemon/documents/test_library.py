"""The library of collections (default folder, added folders, persisted list) and live watching."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from qwendesk.daemon.documents.errors import CollectionExists, CollectionFolderError, CollectionNotFound
from qwendesk.daemon.documents.library import DEFAULT_COLLECTION, Library
from tests.daemon.documents.conftest import FakeEmbedder, write


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true after {timeout}s")


def test_default_collection_added_folders_and_the_saved_list(tmp_path: Path) -> None:
    data = tmp_path / "data"
    notes = tmp_path / "notes"
    notes.mkdir()
    library = Library(data, FakeEmbedder())
    try:
        assert library.names() == [DEFAULT_COLLECTION]
        assert library.get(DEFAULT_COLLECTION).folder == data / "documents"
        added = library.add("notes", notes)
        assert added.index_path == data / "collections" / "notes.sqlite"
        with pytest.raises(CollectionExists):
            library.add("notes", notes)
        with pytest.raises(CollectionFolderError, match="not a folder"):
            library.add("missing", tmp_path / "nope")
        with pytest.raises(CollectionFolderError, match="not a valid collection name"):
            library.add("../etc", notes)
        with pytest.raises(CollectionFolderError, match="cannot be removed"):
            library.remove(DEFAULT_COLLECTION)
        with pytest.raises(CollectionNotFound):
            library.get("other")
    finally:
        library.close()

    reopened = Library(data)
    try:
        assert reopened.names() == [DEFAULT_COLLECTION, "notes"]
        write(notes / "a.md", "Kingfishers dive.")
        reopened.get("notes").sync()
        assert (data / "collections" / "notes.sqlite").exists()
        reopened.remove("notes")
        assert reopened.names() == [DEFAULT_COLLECTION]
        assert not (data / "collections" / "notes.sqlite").exists() and (notes / "a.md").exists()
    finally:
        reopened.close()
    assert Library(data).names() == [DEFAULT_COLLECTION]


def test_damaged_list_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "collections").mkdir()
    (tmp_path / "collections" / "collections.json").write_text("{not json")
    with pytest.raises(CollectionFolderError, match="damaged.*delete it"):
        Library(tmp_path)


def test_search_over_several_collections_fuses_by_rank(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    library = Library(tmp_path / "data", FakeEmbedder())
    try:
        library.add("work", work)
        write(library.get(DEFAULT_COLLECTION).folder / "home.md", "Robins sing in the garden.")
        write(work / "office.md", "Robins nest near the office window.")
        for name in library.names():
            library.get(name).sync()
        result = library.search("robins", 5)
        assert {(h.collection, h.path) for h in result.hits} == {
            ("documents", "home.md"),
            ("work", "office.md"),
        }
        assert result.mode == "hybrid" and result.hits[0].score == pytest.approx(1 / 61)
        only = library.search("robins", 5, ["work"])
        assert [h.collection for h in only.hits] == ["work"]
    finally:
        library.close()


def test_watching_reflects_changes_within_seconds(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    library = Library(tmp_path / "data", embedder, settle_seconds=0.2)
    synced = []
    try:
        library.watch(on_synced=lambda c, r: synced.append(r))
        docs = library.get(DEFAULT_COLLECTION)
        assert library.wait_idle(30)
        folder = docs.folder

        def found(query: str) -> list[str]:
            return [h.path for h in docs.search(query, 3, mode="bm25").hits]

        started = time.monotonic()
        (folder / "new.md").write_text("Puffins live on cliffs.")  # written now: the watcher retries
        wait_for(lambda: found("puffins") == ["new.md"])
        added_after = time.monotonic() - started
        (folder / "new.md").write_text("Gannets live on cliffs.")
        wait_for(lambda: found("gannets") == ["new.md"] and not found("puffins"))
        (folder / "new.md").rename(folder / "moved.md")
        wait_for(lambda: found("gannets") == ["moved.md"])
        (folder / "moved.md").unlink()
        wait_for(lambda: not found("gannets"))
        assert added_after < 5.0, added_after
        assert library.wait_idle(30)
        assert embedder.texts.count("Puffins live on cliffs.") == 1
        assert any(r.renamed == [("new.md", "moved.md")] for r in synced)
    finally:
        library.close()
