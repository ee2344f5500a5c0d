"""Document collections over HTTP: the control API (/api/collections), chat with documents (a /v1 chat request
with `collections`), and the daemon side of the worker's model requests (run on the model's engine).

Chat with documents: the last user message is searched for in the named collections; the best chunks that
fit in the model's context go before it as numbered sources, with an instruction to cite them; the reply
carries `citations` (and `retrieval`: the search mode and why keywords alone were used, if they were) at
its top level, or in one last chunk before `[DONE]` when streamed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from ..config import Settings
from ..documents import prompt
from ..documents.library import name_for
from ..documents.service import DocumentsService
from ..errors import BadRequest, Conflict, EngineError, QwendeskError
from ..lifecycle.manager import ModelManager
from ..schemas import ModelState
from .proxy import StreamedProxyResponse, describe, new_http_client, post_engine
from .relay import Event, RewrittenStream, json_body, with_body

router = APIRouter(prefix="/api/collections", tags=["documents"])

RETRIEVE_K = 8  # chunks retrieved for a chat request; as many as fit in the context are sent
MAX_COLLECTIONS = 32
INTERACTIVE_TIMEOUT = 10.0  # a search waits this long for its query's embedding, then answers by keywords
ENGINE_PATHS = {"embeddings": "/v1/embeddings", "rerank": "/v1/rerank"}
KINDS = {"embeddings": "embedding model", "rerank": "reranker"}


# ---- wiring ------------------------------------------------------------------------------------------
def create_documents(settings: Settings, manager: ModelManager) -> DocumentsService:
    """The documents service of an app, its worker's model requests run through the manager's lifecycle."""
    clients: list[httpx.AsyncClient] = []  # made on the first model request (an idle daemon has none)

    async def engine(params: dict[str, Any]) -> tuple[int, bytes]:
        if not clients:
            clients.append(new_http_client())
        return await run_on_engine(manager, clients[0], params)

    async def close() -> None:
        for client in clients:
            await client.aclose()

    return DocumentsService(
        settings, engine=engine, models=lambda: manager.views(), events=lambda: manager.events, on_stop=close
    )


async def run_on_engine(
    manager: ModelManager, http: httpx.AsyncClient, params: dict[str, Any]
) -> tuple[int, bytes]:
    """A model request of the documents worker: through `manager.using` (started on demand, held busy, kept
    alive), sent to the model's engine. An interactive one (a search) does not wait for a stopped model:
    it starts it in the background and fails at once, and it waits at most INTERACTIVE_TIMEOUT for an answer."""
    service, body = params.get("service"), params.get("body")
    if service not in ENGINE_PATHS or not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise BadRequest("The documents worker sent a malformed model request.")
    model, path = body["model"], ENGINE_PATHS[service]
    entry = manager.find(model)
    if not params.get("interactive"):
        return await _post(manager, http, model, service, path, body)
    if entry.state == ModelState.ERROR:  # not started again by every search: indexing retries it
        raise Conflict(f"the {KINDS[service]} {model} is in error: {entry.error or 'see `qwendesk models`'}")
    if entry.state != ModelState.RUNNING:
        if not manager.settings.auto_start and entry.state == ModelState.AVAILABLE:
            raise Conflict(
                f"the {KINDS[service]} {model} is not running: start it with `qwendesk start {model}`"
            )
        if entry.state == ModelState.AVAILABLE:
            with suppress(QwendeskError):
                await manager.start(model, wait=False, on_demand=True)
        raise Conflict(f"the {KINDS[service]} {model} is not running yet (it is being started)")
    try:
        return await asyncio.wait_for(_post(manager, http, model, service, path, body), INTERACTIVE_TIMEOUT)
    except asyncio.TimeoutError:
        raise EngineError(
            f"the {KINDS[service]} {model} did not answer within {INTERACTIVE_TIMEOUT:.0f} s (busy indexing?)"
        ) from None


async def _post(
    manager: ModelManager, http: httpx.AsyncClient, model: str, service: Any, path: str, body: dict[str, Any]
) -> tuple[int, bytes]:
    async with manager.using(model, service, path) as endpoint:
        payload = body if endpoint.send_as is None else {**body, "model": endpoint.send_as}
        try:
            upstream = await post_engine(http, endpoint, path, json.dumps(payload).encode())
            try:
                data = await upstream.aread()
            finally:
                await upstream.aclose()
        except httpx.HTTPError as exc:
            manager.engine_failed(endpoint, describe(exc))
            raise EngineError(f"the engine of {model} did not answer ({describe(exc)})") from exc
        return upstream.status_code, data


def _documents(request: Request) -> DocumentsService:
    return request.app.state.documents


# ---- the control API ---------------------------------------------------------------------------------
class NewCollection(BaseModel):
    path: str = Field(min_length=1, description="Absolute path of an existing folder.")
    name: str | None = Field(None, description="Name of the collection (default: from the folder's name).")


class SearchQuery(BaseModel):
    query: str = Field(min_length=1, max_length=8000)
    k: int = Field(5, ge=1, le=50)
    mode: Literal["hybrid", "bm25", "vector"] = "hybrid"


def _public(result: dict[str, Any]) -> dict[str, Any]:
    for hit in result.get("results", []):
        hit.pop("chunk_id", None)
    return result


@router.get("")
async def list_collections(request: Request) -> dict[str, Any]:
    """Every collection: files, chunks, state, progress, problems per file; the models used; a note when
    search is by keywords only (with the command that gets an embedding model)."""
    return await _documents(request).collections()


@router.post("", status_code=201)
async def add_collection(body: NewCollection, request: Request) -> dict[str, Any]:
    """Index a folder as a new collection (its files are never changed; indexing runs in the background)."""
    folder = Path(body.path).expanduser()
    if not folder.is_absolute():
        raise BadRequest(f"{body.path} is a relative path: give the folder's absolute path.")
    return await _documents(request).add(body.name or name_for(folder), str(folder))


@router.delete("/{name}")
async def remove_collection(name: str, request: Request) -> dict[str, Any]:
    """Forget a collection and delete its index; the folder and its files stay."""
    await _documents(request).remove(name)
    return {"removed": name}


@router.post("/{name}/search")
async def search_collection(name: str, body: SearchQuery, request: Request) -> dict[str, Any]:
    """The k best passages: {"results": [{collection, path, page, heading, text, score, start, end}], "mode", "note"}."""
    return _public(await _documents(request).search(body.query, body.k, [name], body.mode))


# ---- chat with documents -----------------------------------------------------------------------------
ChatForward = Callable[[Request, str], Awaitable[Response]]


def _names(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadRequest('`collections` must be a list of collection names, e.g. ["documents"].')
    if len(value) > MAX_COLLECTIONS:
        raise BadRequest(f"`collections` names {len(value)} collections; at most {MAX_COLLECTIONS}.")
    return list(dict.fromkeys(value))


async def chat_with_documents(request: Request, path: str, forward_chat: ChatForward) -> Response:
    """A chat completion; with `collections` in the body, answered from those collections with citations."""
    if b'"collections"' not in await request.body():  # most requests: no second parse of the body
        return await forward_chat(request, path)
    body = await json_body(request)
    if "collections" not in body:
        return await forward_chat(request, path)
    names = _names(body.pop("collections"))
    messages = body.get("messages")
    if not names or not isinstance(messages, list) or not isinstance(body.get("model"), str):
        return await forward_chat(with_body(request, body), path)  # its checks say what is wrong, if anything
    question = prompt.question_of(messages)
    if question is None:
        raise BadRequest("`collections` needs a user message with text to search the documents for.")
    view = request.app.state.manager.find(body["model"]).view()
    n_ctx = view.n_ctx or request.app.state.settings.n_ctx
    result = _public(await _documents(request).search(question, RETRIEVE_K, names))
    budget = n_ctx - prompt.answer_reserve(body, n_ctx) - prompt.estimate(messages)
    sources = prompt.add_sources(messages, result["results"], budget)
    body["messages"] = sources.messages
    extra = {
        "citations": sources.citations,
        "retrieval": {
            "collections": names,
            "mode": result.get("mode"),
            "note": result.get("note"),
            "left_out": sources.dropped,
        },
    }
    return with_citations(await forward_chat(with_body(request, body), path), extra)


def with_citations(response: Response, extra: dict[str, Any]) -> Response:
    """The answer with `extra` added: to the JSON object, or as one chunk before a stream's `[DONE]`."""
    if response.status_code >= 400:
        return response
    if isinstance(response, (StreamedProxyResponse, RewrittenStream)):
        return RewrittenStream(response, CitationChunk(extra))  # type: ignore[arg-type]
    try:
        data = json.loads(response.body)
    except ValueError:
        return response
    if isinstance(data, dict):
        data.update(extra)
    return Response(json.dumps(data), status_code=response.status_code, media_type="application/json")


class CitationChunk:
    """Stream rewrite: one `chat.completion.chunk` with no choices and the citations, just before `[DONE]`."""

    def __init__(self, extra: dict[str, Any]) -> None:
        self.extra = extra
        self.head: dict[str, Any] = {}

    def __call__(self, event: Event) -> Iterator[Event]:
        _, data = event
        if isinstance(data, dict) and not self.head and "id" in data:
            self.head = {k: data[k] for k in ("id", "created", "model") if k in data}
        if data == "[DONE]":
            yield None, {**self.head, "object": "chat.completion.chunk", "choices": [], **self.extra}
        yield event
