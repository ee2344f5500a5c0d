"""A full disk while the index grows: a clear error that says what to do, the index as it was before the
sync (still searchable), and the next sync after space is freed catches up."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwendesk.daemon.documents.collection import Collection
from qwendesk.models.errors import NotEnoughSpace
from tests.daemon.documents.conftest import FakeEmbedder, write
from tests.models.small_disk import fill_disk, small_disk  # noqa: F401


def test_a_full_disk_keeps_the_index_and_says_what_to_do(tmp_path: Path, small_disk: Path) -> None:  # noqa: F811
    folder = tmp_path / "docs"
    write(folder / "first.md", "# First\n\nThe zebracorn lives in the first file.\n")
    collection = Collection("notes", folder, small_disk / "index" / "notes.sqlite", FakeEmbedder())
    try:
        assert collection.sync().added == ["first.md"]
        filler = fill_disk(small_disk)
        for i in range(200):
            write(folder / f"more-{i:03}.md", f"# Page {i}\n\n" + f"quokka paragraph {i} " * 400 + "\n")

        with pytest.raises(NotEnoughSpace) as failed:
            collection.sync()
        message = failed.value.message
        assert f"free on {small_disk}" in message and "free some space" in message, message
        # What was indexed before is intact and searchable.
        assert [h.path for h in collection.search("zebracorn", 3).hits] == ["first.md"]

        filler.unlink()
        report = collection.sync()
        assert len(report.added) == 200
        assert collection.search("quokka", 1).hits[0].path.startswith("more-")
    finally:
        collection.close()
