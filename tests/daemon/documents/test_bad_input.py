"""Bad files and folders: each is skipped or marked in error with a reason, indexing goes on, and nothing
outside the collection folder is read."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest

from qwendesk.daemon.documents import sync as sync_module
from qwendesk.daemon.documents.collection import Collection
from qwendesk.daemon.documents.scan import scan_folder, wanted_change
from tests.daemon.documents.conftest import FakeEmbedder, settle, write
from tests.daemon.documents.test_parsing import make_pdf


def test_every_bad_input_gets_a_reason_and_the_good_files_are_indexed(
    tmp_path: Path, folder: Path, collection: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = write(tmp_path / "outside" / "secret.txt", "zebracorn password outside")
    write(folder / "good.md", "# Good\n\nThe good file mentions aardvarks.")
    write(folder / "corrupt.pdf", b"%PDF-1.7\n\x00garbage")
    write(folder / "locked.pdf", make_pdf(["zebracorn locked"], owner_password="o", user_password="pw"))
    write(folder / "program.txt", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)
    huge = folder / "huge.txt"
    with huge.open("wb") as f:  # a sparse 1 GiB file: nothing is written to disk
        f.truncate(2**30)
    settle(huge)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "escape.txt").symlink_to(outside)
    (folder / "escape_dir").symlink_to(outside.parent, target_is_directory=True)
    (folder / "dangling.txt").symlink_to(folder / "missing.txt")
    os.mkfifo(folder / "pipe.txt")
    write(folder / "photo.jpg", b"\xff\xd8\xff")  # unsupported: left out, not an error
    write(folder / ".hidden.md", "zebracorn hidden")

    opened: list[Path] = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(Path(file).resolve())
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(sync_module, "open", spy, raising=False)
    report = collection.sync()

    assert report.added == ["good.md"]
    assert set(report.errors) == {"corrupt.pdf", "locked.pdf", "program.txt"}
    assert "password-protected" in report.errors["locked.pdf"]
    assert "not a text file" in report.errors["program.txt"]
    assert "not a readable PDF" in report.errors["corrupt.pdf"]
    assert set(report.skipped) == {"huge.txt", "loop", "escape.txt", "escape_dir", "dangling.txt", "pipe.txt"}
    assert "larger than the 64 MiB limit (1024 MiB)" in report.skipped["huge.txt"]
    assert "outside the collection folder" in report.skipped["escape.txt"]
    assert "outside the collection folder" in report.skipped["escape_dir"]
    assert "already indexed" in report.skipped["loop"]
    assert "broken" in report.skipped["dangling.txt"]
    assert "not a regular file" in report.skipped["pipe.txt"]

    root = folder.resolve()
    assert opened and all(p.is_relative_to(root) for p in opened), opened
    assert huge.resolve() not in opened  # too large: never opened
    assert collection.search("zebracorn", 5, mode="bm25").hits == []
    assert not any("zebracorn" in hit.text for hit in collection.search("zebracorn", 5).hits)
    assert collection.search("aardvarks", 5).hits[0].path == "good.md"

    status = collection.status()
    assert (status.files, status.errors, status.skipped) == (1, 3, 6)
    reasons = {p["path"]: p["reason"] for p in status.problems}
    assert "password-protected" in reasons["locked.pdf"] and "1024 MiB" in reasons["huge.txt"]


def test_files_in_error_are_not_reparsed_until_they_change(folder: Path, collection: Collection) -> None:
    bad = write(folder / "bad.pdf", b"%PDF-1.7 broken")
    assert "bad.pdf" in collection.sync().errors
    again = collection.sync()
    assert again.unchanged == 1 and "bad.pdf" in again.errors and not again.added
    write(bad, make_pdf(["Now a fixed PDF about pelicans."]))
    fixed = collection.sync()
    assert fixed.updated == ["bad.pdf"] and not fixed.errors
    hit = collection.search("pelicans", 1).hits[0]
    assert (hit.path, hit.page) == ("bad.pdf", 1)


def test_unreadable_file_is_an_error_and_the_rest_goes_on(
    folder: Path, collection: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(folder / "a.txt", "readable alpha")
    write(folder / "b.txt", "unreadable beta")
    real_open = builtins.open

    def denied(file, *args, **kwargs):  # as root, chmod 000 does not stop reads: fail the open instead
        if Path(file).name == "b.txt":
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(sync_module, "open", denied, raising=False)
    report = collection.sync()
    assert report.added == ["a.txt"]
    assert "Permission denied" in report.errors["b.txt"] and "permissions" in report.errors["b.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_file_without_read_permission_is_skipped(folder: Path, collection: Collection) -> None:
    locked = write(folder / "locked.txt", "no access")
    locked.chmod(0)
    assert "no permission" in collection.sync().skipped["locked.txt"]


def test_missing_folder_keeps_the_index(tmp_path: Path, folder: Path, collection: Collection) -> None:
    write(folder / "a.txt", "kept while the drive is away")
    collection.sync()
    folder.rename(tmp_path / "unplugged")
    from qwendesk.daemon.documents.errors import CollectionFolderError

    with pytest.raises(CollectionFolderError, match="is missing"):
        collection.sync()
    assert collection.search("drive", 1).hits[0].path == "a.txt"


def test_symlinks_inside_the_folder_are_followed_once(folder: Path) -> None:
    write(folder / "real" / "doc.md", "inside")
    (folder / "alias").symlink_to(folder / "real", target_is_directory=True)
    (folder / "link.md").symlink_to(folder / "real" / "doc.md")
    result = scan_folder(folder)
    assert sorted(c.rel for c in result.candidates) == ["link.md", "real/doc.md"]
    assert [(s.rel, s.reason) for s in result.skipped] == [
        ("alias", "folder already indexed through another path")
    ]


def test_watcher_filter() -> None:
    assert wanted_change(("notes.md",), False)
    assert wanted_change(("sub",), True)
    assert not wanted_change(("photo.png",), False)
    assert not wanted_change(("node_modules", "x.js"), False)


def test_embedder_failure_keeps_keyword_search_and_backfills_later(folder: Path, tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    embedder.fail = "the embedding model is not running: start it with qwendesk start"
    collection = Collection("t", folder, tmp_path / "t.sqlite", embedder)
    try:
        write(folder / "a.md", "# Ibis\n\nThe sacred ibis.")
        report = collection.sync()
        assert report.added == ["a.md"] and "not running" in (report.embed_error or "")
        result = collection.search("ibis", 3)
        assert result.mode == "bm25" and result.hits[0].path == "a.md"
        assert "keyword search only" in (result.note or "")
        embedder.fail = None
        report = collection.sync()
        assert report.texts_embedded == 1 and report.vectors_missing == 0 and not report.added
        assert collection.search("ibis", 3).mode == "hybrid"
    finally:
        collection.close()
