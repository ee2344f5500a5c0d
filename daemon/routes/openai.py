"""The OpenAI-compatible API at /v1: models, chat completions, completions, embeddings.

A request is checked against the shape OpenAI accepts (`openai_checks`: a 400 naming the field), then
forwarded byte for byte to the model's engine and the response streamed straight back; only the `model`
field of responses is rewritten to the qwendesk name. A stopped model is started on demand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from ..schemas import ModelView
from .documents import chat_with_documents
from .media import prepare_chat_media
from .proxy import forward, new_http_client
from .tool_calls import forward_chat


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One pooled upstream client per app, closed on shutdown."""
    app.state.openai_http = new_http_client()
    try:
        yield
    finally:
        await app.state.openai_http.aclose()


router = APIRouter(prefix="/v1", tags=["openai"], lifespan=_lifespan)

# What a registration's abilities let a client do, in /v1/models' words.
_CAPABILITIES = {"chat": "chat", "generate": "completions", "tools": "tools", "vision": "vision",
                 "audio": "audio", "embed": "embeddings", "rerank": "rerank",
                 "transcribe": "transcriptions", "translate": "translations"}  # fmt: skip


def _capabilities(view: ModelView) -> list[str]:
    """What the model can do: chat, completions, embeddings, rerank, vision, audio, tools."""
    return [_CAPABILITIES[a] for a in view.abilities if a in _CAPABILITIES]


def _model_object(view: ModelView) -> dict[str, Any]:
    """A model as OpenAI lists it, plus qwendesk's state and context (extra keys clients ignore)."""
    return {
        "id": view.name,
        "object": "model",
        "created": 0,
        "owned_by": "qwendesk",
        "state": view.state.value,
        "file": view.file,
        "parameters": view.parameters,
        "quantization": view.quantization,
        "context_length": view.n_ctx or view.context_length,
        "capabilities": _capabilities(view),
        "error": view.error,
        **({"languages": view.languages} if view.kind == "speech" else {}),
    }


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Every model qwendesk can serve; stopped ones start on their first request."""
    views = request.app.state.manager.views()
    return {"object": "list", "data": [_model_object(v) for v in views]}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    return _model_object(request.app.state.manager.find(model_id).view())


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    # Images are checked and scaled first (media.py); a forced tool choice is constrained in tool_calls.py;
    # any other request goes to forward() unchanged.
    # A body with `collections` is answered from those document collections, with citations (documents.py).
    return await chat_with_documents(await prepare_chat_media(request), "/v1/chat/completions", forward_chat)


@router.post("/completions")
async def completions(request: Request) -> Response:
    return await forward(request, "/v1/completions", "chat")


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    return await forward(request, "/v1/embeddings", "embeddings")
