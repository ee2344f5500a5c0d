"""Chat with documents at the route level: which requests are rewritten, what is forwarded, where the citations
go. A stub stands in for the documents service and the engine (the real path is test_documents_daemon_e2e.py)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import Request, Response

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.errors import BadRequest, Conflict
from qwendesk.daemon.routes.documents import CitationChunk, chat_with_documents, run_on_engine, with_citations
from qwendesk.daemon.schemas import ModelState

HITS = [
    {"collection": "notes", "path": "keys.md", "page": None, "heading": "Keys", "text": "Run vault rotate.",
     "score": 0.9, "start": 0, "end": 17, "chunk_id": 4},
]  # fmt: skip


class StubDocuments:
    def __init__(self) -> None:
        self.searched: list[tuple[str, int, list[str]]] = []

    async def search(self, query: str, k: int, names: list[str], mode: str = "hybrid") -> dict[str, Any]:
        self.searched.append((query, k, names))
        return {"results": [dict(h) for h in HITS], "mode": "bm25", "note": "keyword search only: why"}


def make_request(body: Any, documents: StubDocuments) -> Request:
    view = SimpleNamespace(n_ctx=None)
    manager = SimpleNamespace(find=lambda name: SimpleNamespace(view=lambda: view))
    app = SimpleNamespace(
        state=SimpleNamespace(documents=documents, manager=manager, settings=load_settings(env={}))
    )
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [], "app": app}
    return Request(scope, receive)


class Forward:
    """Records what reaches forward_chat and answers like a non-streamed engine reply."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.requests: list[Request] = []

    async def __call__(self, request: Request, path: str) -> Response:
        self.requests.append(request)
        self.bodies.append(json.loads(await request.body()))
        reply = {"id": "c1", "object": "chat.completion", "choices": [{"message": {"content": "Use [1]."}}]}
        return Response(json.dumps(reply), media_type="application/json")


QUESTION = {"model": "m", "messages": [{"role": "user", "content": "How do I rotate keys?"}]}


async def test_a_request_without_collections_passes_untouched() -> None:
    forward, docs = Forward(), StubDocuments()
    request = make_request(QUESTION, docs)
    await chat_with_documents(request, "/v1/chat/completions", forward)
    assert forward.requests == [request] and forward.bodies == [QUESTION] and docs.searched == []
    await chat_with_documents(make_request({**QUESTION, "collections": []}, docs), "/p", forward)
    assert forward.bodies[-1] == QUESTION and docs.searched == []  # empty: the field is dropped


async def test_collections_put_sources_in_the_prompt_and_citations_in_the_reply() -> None:
    forward, docs = Forward(), StubDocuments()
    body = {**QUESTION, "collections": ["notes", "notes"], "max_tokens": 50}
    response = await chat_with_documents(make_request(body, docs), "/v1/chat/completions", forward)
    assert docs.searched == [("How do I rotate keys?", 8, ["notes"])]
    sent = forward.bodies[0]
    assert "collections" not in sent and sent["max_tokens"] == 50
    assert sent["messages"][0]["role"] == "system" and "[1]" in sent["messages"][0]["content"]
    assert sent["messages"][1]["content"].startswith("Sources:\n\n[1] keys.md — Keys\nRun vault rotate.")
    reply = json.loads(response.body)
    assert reply["choices"][0]["message"]["content"] == "Use [1]."
    assert reply["citations"] == [
        {"index": 1, "collection": "notes", "path": "keys.md", "page": None, "heading": "Keys",
         "text": "Run vault rotate.", "score": 0.9},
    ]  # fmt: skip
    assert reply["retrieval"] == {
        "collections": ["notes"],
        "mode": "bm25",
        "note": "keyword search only: why",
        "left_out": 0,
    }


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({**QUESTION, "collections": "notes"}, "list of collection names"),
        ({**QUESTION, "collections": [1]}, "list of collection names"),
        ({**QUESTION, "collections": [f"c{i}" for i in range(40)]}, "at most 32"),
        (
            {"model": "m", "messages": [{"role": "system", "content": "x"}], "collections": ["a"]},
            "user message",
        ),
    ],
)
async def test_bad_collections_are_refused_before_anything_runs(body: dict, words: str) -> None:
    forward, docs = Forward(), StubDocuments()
    with pytest.raises(BadRequest, match=words):
        await chat_with_documents(make_request(body, docs), "/p", forward)
    assert forward.bodies == [] and docs.searched == []


def test_a_stream_gets_one_citations_chunk_before_done() -> None:
    rewrite = CitationChunk({"citations": [{"index": 1}], "retrieval": {"mode": "hybrid"}})
    first = {
        "id": "c9",
        "object": "chat.completion.chunk",
        "created": 5,
        "model": "m",
        "choices": [{"delta": {}}],
    }
    out = [
        e
        for event in [(None, first), (None, {**first, "id": "c9"}), (None, "[DONE]")]
        for e in rewrite(event)
    ]
    assert out[:2] == [(None, first), (None, first)] and out[-1] == (None, "[DONE]")
    assert out[2] == (
        None,
        {"id": "c9", "created": 5, "model": "m", "object": "chat.completion.chunk", "choices": [],
         "citations": [{"index": 1}], "retrieval": {"mode": "hybrid"}},
    )  # fmt: skip
    cut_short = CitationChunk({"citations": []})
    assert list(cut_short((None, {"error": {"message": "x"}}))) == [(None, {"error": {"message": "x"}})]


def test_errors_pass_through_without_citations() -> None:
    failed = Response(b'{"error": {"message": "no"}}', status_code=400, media_type="application/json")
    assert with_citations(failed, {"citations": []}) is failed


def test_the_documents_room_never_reaches_into_the_lifecycle_routes_or_xinference() -> None:
    """The room the routes use (ARCHITECTURE.md): its model requests go through a callable the routes give it."""
    room = Path(__file__).resolve().parents[3] / "daemon" / "documents"
    forbidden = ("qwendesk.daemon.lifecycle", "qwendesk.daemon.routes", "qwendesk.daemon.xinference", "..lifecycle",
                 "..routes", "..xinference", "qwendesk.daemon.app")  # fmt: skip
    for path in room.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert not module.startswith(forbidden), f"{path.name} imports {module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith(forbidden) for a in node.names), path.name


class EngineManager:
    """Just what run_on_engine asks of the manager, for the paths that never reach an engine."""

    def __init__(self, state: ModelState, auto_start: bool = True, error: str | None = None) -> None:
        self.entry = SimpleNamespace(state=state, error=error)
        self.settings = SimpleNamespace(auto_start=auto_start)
        self.started: list[tuple[str, bool, bool]] = []

    def find(self, name: str) -> SimpleNamespace:
        return self.entry

    async def start(self, name: str, *, wait: bool = True, on_demand: bool = False) -> None:
        self.started.append((name, wait, on_demand))


def engine_params(interactive: bool = True) -> dict[str, Any]:
    return {"service": "embeddings", "body": {"model": "emb", "input": ["q"]}, "interactive": interactive}


async def test_a_search_never_waits_for_a_stopped_model_but_starts_it_for_the_next() -> None:
    manager = EngineManager(ModelState.AVAILABLE)
    with pytest.raises(Conflict, match="not running yet"):
        await run_on_engine(manager, None, engine_params())  # type: ignore[arg-type]
    assert manager.started == [("emb", False, True)]  # in the background, stopped again by keep-alive

    starting = EngineManager(ModelState.STARTING)
    with pytest.raises(Conflict, match="not running yet"):
        await run_on_engine(starting, None, engine_params())  # type: ignore[arg-type]
    assert starting.started == []

    broken = EngineManager(ModelState.ERROR, error="not enough memory")
    with pytest.raises(Conflict, match="in error: not enough memory"):
        await run_on_engine(broken, None, engine_params())  # type: ignore[arg-type]
    assert broken.started == []  # a failing model is not relaunched by every search

    manual = EngineManager(ModelState.AVAILABLE, auto_start=False)
    with pytest.raises(Conflict, match="qwendesk start emb"):
        await run_on_engine(manual, None, engine_params())  # type: ignore[arg-type]
    assert manual.started == []

    with pytest.raises(BadRequest, match="malformed"):
        await run_on_engine(manager, None, {"service": "chat", "body": {}})  # type: ignore[arg-type]
