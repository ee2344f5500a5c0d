"""/v1/rerank with a GGUF reranker registered and launched through Xinference like an embedding model:
llama.cpp's own scores, in its order, with `top_n`; models of other kinds are refused before starting.

The fixture reranker has random weights: its scores mean nothing, so the test checks that the daemon gives
exactly the engine's own scores and order for the same file. No real reranker GGUF can be had here (no model
hub), so ranking quality with real weights is not verified.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.daemon.routes.api_daemon import (
    CHAT,
    EMBED,
    RERANK,
    ApiDaemon,
    Reference,
    shared_daemon,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def api_daemon(tmp_path_factory: pytest.TempPathFactory, qwen2_gguf: Path, smollm2_gguf: Path):
    yield from shared_daemon(tmp_path_factory, qwen2_gguf, smollm2_gguf)


QUERY = "what is a panda"
DOCUMENTS = ["the panda is a bear", "beijing is the capital of china", "hello world", "green tea", "a cat"]


def rerank(api: ApiDaemon, model: str, **body: object) -> httpx.Response:
    return httpx.post(api.v1 + "/rerank", json={"model": model, **body}, headers=api.headers, timeout=300)


def test_rerank_gives_the_engines_scores_in_order(api_daemon: ApiDaemon, tmp_path: Path) -> None:
    api_daemon.proc.client.stop(RERANK)
    r = rerank(api_daemon, RERANK, query=QUERY, documents=DOCUMENTS)  # starts it on demand
    assert r.status_code == 200, r.text
    ours = r.json()
    assert ours["model"] == RERANK and api_daemon.proc.model(RERANK)["state"] == "running"
    results = ours["results"]
    assert sorted(x["index"] for x in results) == list(range(len(DOCUMENTS)))
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1

    view = api_daemon.proc.model(RERANK)
    threads = api_daemon.proc.client.status()["accelerator"]["physical_cores"]
    ref = Reference(Path(view["file"]), view["n_ctx"], threads, rerank=True)
    theirs = httpx.post(
        ref.url + "/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS}, timeout=60
    ).json()
    assert [x["index"] for x in results] == [x["index"] for x in theirs["results"]]
    assert scores == pytest.approx([x["relevance_score"] for x in theirs["results"]], abs=1e-5)

    top = rerank(api_daemon, RERANK, query=QUERY, documents=DOCUMENTS, top_n=2).json()["results"]
    assert [x["index"] for x in top] == [x["index"] for x in results[:2]]


def test_other_kinds_are_refused_before_starting(api_daemon: ApiDaemon) -> None:
    api_daemon.proc.client.stop(CHAT)
    r = rerank(api_daemon, CHAT, query=QUERY, documents=DOCUMENTS)
    assert r.status_code == 400 and "does not rerank" in r.json()["error"]["message"]
    assert api_daemon.proc.model(CHAT)["state"] == "available"
    r = rerank(api_daemon, EMBED, query=QUERY, documents=DOCUMENTS)
    assert r.status_code == 400 and "embedding model" in r.json()["error"]["message"]
    chat = httpx.post(api_daemon.v1 + "/chat/completions", headers=api_daemon.headers, timeout=60,
                      json={"model": RERANK, "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert chat.status_code == 400 and "reranker" in chat.json()["error"]["message"]
    listed = {m["name"]: m for m in api_daemon.proc.client.models()}
    assert listed[RERANK]["abilities"] == ["rerank"]


def test_v1_models_says_what_each_model_can_do(api_daemon: ApiDaemon) -> None:
    models = httpx.get(api_daemon.v1 + "/models", headers=api_daemon.headers, timeout=30).json()["data"]
    can = {m["id"]: set(m["capabilities"]) for m in models}
    assert can[RERANK] == {"rerank"} and can[EMBED] == {"embeddings"}
    assert {"chat", "tools"} <= can[CHAT] and "rerank" not in can[CHAT]
