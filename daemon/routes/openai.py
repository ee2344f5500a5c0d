"""The OpenAI-compatible API at /v1: models, chat completions, completions, embeddings.

Requests are forwarded byte for byte to the model's engine and responses streamed straight back; only the
`model` field of responses is rewritten to the qwendesk name. A stopped model is started on demand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from ..schemas import ModelView
from .proxy import forward, new_http_client


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One pooled upstream client per app, closed on shutdown."""
    app.state.openai_http = new_http_client()
    try:
        yield
    finally:
        await app.state.openai_http.aclose()


router = APIRouter(prefix="/v1", tags=["openai"], lifespan=_lifespan)


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
        "error": view.error,
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
    return await forward(request, "/v1/chat/completions", "chat")


@router.post("/completions")
async def completions(request: Request) -> Response:
    return await forward(request, "/v1/completions", "chat")


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    return await forward(request, "/v1/embeddings", "embeddings")
