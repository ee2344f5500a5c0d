"""HttpEmbedder against a scripted OpenAI-compatible endpoint (the real one is in the e2e test)."""

from __future__ import annotations

import json

import httpx
import pytest

from qwendesk.daemon.documents.embedder import Embedder, HttpEmbedder
from qwendesk.daemon.documents.errors import EmbeddingError

LIMIT = 40  # characters this fake model accepts


def endpoint(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    assert body["model"] == "mini" and body["encoding_format"] == "float"
    assert request.headers.get("authorization") == "Bearer k"
    texts = body["input"]
    if any(len(t) > LIMIT for t in texts):
        return httpx.Response(500, json={"error": {"message": "input is too large to process"}})
    data = [{"index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(texts)]
    return httpx.Response(200, json={"data": list(reversed(data))})  # out of order: index decides


def make(batch_size: int = 3, handler=endpoint) -> HttpEmbedder:
    client = httpx.Client(transport=httpx.MockTransport(handler), headers={"Authorization": "Bearer k"})
    return HttpEmbedder(
        "http://x/v1/embeddings", "mini", model_id="mini@abc", batch_size=batch_size, client=client
    )


def test_batches_keep_order() -> None:
    embedder = make()
    assert isinstance(embedder, Embedder) and embedder.model_id == "mini@abc"
    texts = [f"t{'x' * i}" for i in range(7)]
    assert embedder.embed(texts) == [[float(len(t)), 1.0] for t in texts]
    assert embedder.calls == 3


def test_a_too_long_text_is_found_and_shortened() -> None:
    embedder = make(batch_size=8)
    texts = ["short", "y" * 100, "also short"]
    vectors = embedder.embed(texts)
    assert vectors[0] == [5.0, 1.0] and vectors[2] == [10.0, 1.0]
    assert vectors[1][0] <= LIMIT  # cut to fit: 100 -> 75 -> 56 -> 42 -> 31


def test_errors_say_what_to_do() -> None:
    refused = make(handler=lambda r: httpx.Response(400, json={"error": "not an embedding model"}))
    with pytest.raises(EmbeddingError, match="HTTP 400.*embedding model"):
        refused.embed(["a"])

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(EmbeddingError, match="did not answer.*daemon is running"):
        make(handler=down).embed(["a"])
    short = make(handler=lambda r: httpx.Response(200, json={"data": []}))
    with pytest.raises(EmbeddingError, match="0 vectors for 1"):
        short.embed(["a"])
