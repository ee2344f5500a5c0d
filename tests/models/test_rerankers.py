"""The tiny reranker fixture is a real graph: llama.cpp (xllamacpp) loads it and answers /v1/rerank and /rerank."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest

from .encoder_fixtures import start_encoder_server

pytestmark = pytest.mark.e2e

QUERY = "what is a panda"
DOCUMENTS = ["a panda is a bear", "beijing is the capital of china", "green tea", "hello world", "the cat"]


def test_llama_cpp_reranks_with_the_fixture(reranker_gguf: Path) -> None:
    server = start_encoder_server(reranker_gguf, rerank=True, n_ctx=128)
    body = {"query": QUERY, "documents": DOCUMENTS}
    replies = [
        httpx.post(server.listening_address + path, json=body, timeout=60)
        for path in ("/v1/rerank", "/rerank")
    ]
    assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    results = replies[0].json()["results"]
    assert replies[1].json()["results"] == results  # the same endpoint under both paths, deterministic
    assert sorted(r["index"] for r in results) == list(range(len(DOCUMENTS)))
    scores = [r["relevance_score"] for r in results]
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(
        scores
    )  # best first, all distinct
    assert server.handle_rerank(body)["results"] == results  # the in-process call Xinference's engine makes

    top = httpx.post(server.listening_address + "/v1/rerank", json={**body, "top_n": 2}, timeout=60).json()
    assert top["results"] == results[:2]
    assert top["usage"]["prompt_tokens"] > len(DOCUMENTS) * 3  # [CLS] query [SEP] document [SEP] per pair


def test_reranker_needs_rank_pooling_at_launch(reranker_gguf: Path) -> None:
    """llama.cpp takes the launch option, not the file's pooling type: without rank pooling there is no /rerank.
    (Xinference's llama.cpp rerank engine sets it; an embedding launch would not.)"""
    server = start_encoder_server(reranker_gguf, n_ctx=128)
    reply = httpx.post(server.listening_address + "/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS})
    assert reply.status_code == 501 and "reranking" in reply.text
