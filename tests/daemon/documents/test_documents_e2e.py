"""End to end with real embeddings: all-MiniLM-L6-v2 converted to GGUF, served by llama.cpp (xllamacpp) at an
OpenAI-compatible /v1/embeddings, reached over HTTP by HttpEmbedder. Every format, edit, rename, delete,
restart and live watching, counting the embedding requests."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import httpx
import pytest

from qwendesk.daemon.documents.collection import Collection
from qwendesk.daemon.documents.embedder import HttpEmbedder
from qwendesk.daemon.documents.library import DEFAULT_COLLECTION, Library
from tests.daemon.documents.conftest import write
from tests.daemon.documents.embedding_model import DIMENSIONS, minilm_gguf, start_embedding_server
from tests.daemon.documents.test_parsing import make_pdf

pytestmark = pytest.mark.e2e

DOCS = {
    "birds/heron.md": "# Herons\n\nThe grey heron stands motionless in shallow water, waiting to spear fish "
    "and frogs with its long beak.",
    "space.txt": "The Moon orbits the Earth roughly every twenty-seven days, and its gravity raises the tides.",
    "bread.html": "<h1>Baking</h1><p>Knead the dough, let it rise for an hour, then bake it in a hot oven "
    "until the crust is brown.</p>",
    "guide.rst": "Taxes\n=====\n\nFile your income tax return before the April deadline to avoid a penalty.",
}


@pytest.fixture(scope="module")
def embeddings_url() -> str:
    server = start_embedding_server(minilm_gguf())
    url = server.listening_address + "/v1/embeddings"
    yield url
    del server


def embedder_for(url: str) -> HttpEmbedder:
    return HttpEmbedder(url, "all-MiniLM-L6-v2", model_id="all-MiniLM-L6-v2-f16", batch_size=16)


def make_docx(text: str) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Gardening", 1)
    document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def top(collection: Collection, query: str, mode: str = "vector") -> str:
    return collection.search(query, 1, mode=mode).hits[0].path


def test_real_embeddings_index_edit_rename_delete_restart(tmp_path: Path, embeddings_url: str) -> None:
    folder = tmp_path / "docs"
    for path, text in DOCS.items():
        write(folder / path, text)
    write(folder / "ocean.pdf", make_pdf(["Blue whales are the largest animals ever known to have lived."]))
    write(folder / "garden.docx", make_docx("Water tomato plants in the morning and pick them when red."))

    embedder = embedder_for(embeddings_url)
    collection = Collection("e2e", folder, tmp_path / "e2e.sqlite", embedder)
    try:
        report = collection.sync()
        assert len(report.added) == 6 and not report.errors and report.vectors_missing == 0
        assert report.texts_embedded == report.chunks_written == 6
        vector = collection.index.reader().execute("SELECT embedding FROM vec_1 LIMIT 1").fetchone()[0]
        assert len(vector) == DIMENSIONS * 4

        # Meaning, not keywords: none of these queries shares a content word with its answer.
        assert top(collection, "which bird hunts in ponds") == "birds/heron.md"
        assert top(collection, "biggest creature in the sea") == "ocean.pdf"
        assert top(collection, "what causes high tide") == "space.txt"
        assert top(collection, "how do I make a loaf") == "bread.html"
        assert top(collection, "when to harvest vegetables") == "garden.docx"
        hit = collection.search("largest animals", 1).hits[0]
        assert (hit.path, hit.page, collection.search("largest animals").mode) == ("ocean.pdf", 1, "hybrid")
        assert math.isfinite(hit.score)

        # Edit in place: one new text embedded, old meaning gone.
        write(folder / "space.txt", "Mars has two small moons called Phobos and Deimos.")
        calls = embedder.calls
        report = collection.sync()
        assert report.updated == ["space.txt"] and report.texts_embedded == 1 and embedder.calls == calls + 1
        assert top(collection, "moons of the red planet") == "space.txt"
        assert collection.search("tides", 3, mode="bm25").hits == []

        # Rename: nothing embedded.
        calls = embedder.calls
        (folder / "birds" / "heron.md").rename(folder / "wading-birds.md")
        report = collection.sync()
        assert report.renamed == [("birds/heron.md", "wading-birds.md")] and embedder.calls == calls
        assert top(collection, "which bird hunts in ponds") == "wading-birds.md"

        # Delete.
        (folder / "bread.html").unlink()
        assert collection.sync().removed == ["bread.html"]
        assert all(h.path != "bread.html" for h in collection.search("bake bread in an oven", 5).hits)
    finally:
        collection.close()

    # Restart: a new collection object and a new embedder on the same index re-embed nothing.
    fresh = embedder_for(embeddings_url)
    again = Collection("e2e", folder, tmp_path / "e2e.sqlite", fresh)
    try:
        report = again.sync()
        assert report.unchanged == 5 and report.texts_embedded == 0 and fresh.calls == 0
        assert top(again, "which bird hunts in ponds") == "wading-birds.md" and fresh.calls == 1
    finally:
        again.close()


def test_watched_folder_with_real_embeddings(tmp_path: Path, embeddings_url: str) -> None:
    embedder = embedder_for(embeddings_url)
    library = Library(tmp_path / "data", embedder, settle_seconds=0.2)
    try:
        library.watch()
        assert library.wait_idle(60)
        docs = library.get(DEFAULT_COLLECTION)
        path = docs.folder / "note.md"
        path.write_text("# Trains\n\nThe night train to Vienna leaves at ten.")

        def vector_top(query: str) -> str | None:
            hits = docs.search(query, 1, mode="vector").hits
            return hits[0].path if hits else None

        deadline = time.monotonic() + 60
        while vector_top("railway journey to Austria") != "note.md" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert vector_top("railway journey to Austria") == "note.md"
        assert library.wait_idle(60) and docs.status().vectors_missing == 0
    finally:
        library.close()
    assert httpx.post(embeddings_url, json={"input": ["still up"]}).status_code == 200
