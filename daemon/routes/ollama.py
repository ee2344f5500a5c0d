"""An Ollama-compatible API for apps that speak only Ollama's protocol: its own small app, served on
`ollama_port` (off by default) by a second listener of the daemon, behind the same guards.

/api/tags, /api/ps, /api/show, /api/version, /api/chat, /api/generate, /api/embed and /api/embeddings, with
Ollama's shapes and NDJSON streaming, over the same models and lifecycle as /v1: every request is
translated to the engine's OpenAI API and goes through `proxy.forward` (models start on demand, a client
that disconnects stops generation). It never reads or writes an Ollama installation's files. Managing
models (pull, push, create, copy, delete) stays with qwendesk's own commands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import Settings
from ..errors import BadRequest, NotFound, QwendeskError, describe_problems
from ..http_errors import status_for
from ..lifecycle.entry import ModelEntry
from ..lifecycle.manager import ModelManager
from ..schemas import ModelState
from ..security import SecurityMiddleware
from . import ollama_shapes as shapes
from .proxy import new_http_client
from .relay import forward_rewritten, json_body

log = logging.getLogger(__name__)
# The Ollama release whose API this follows (clients check it before using newer fields).
OLLAMA_VERSION = "0.12.6"
router = APIRouter()


def _manager(request: Request) -> ModelManager:
    return request.app.state.manager


def resolve(manager: ModelManager, requested: Any) -> ModelEntry:
    """The model an Ollama name means (`name:latest`, `name`, or any name qwendesk accepts)."""
    if not isinstance(requested, str) or not requested:
        raise BadRequest("model is required")
    for name in shapes.model_candidates(requested):
        try:
            return manager.find(name)
        except NotFound:
            continue
    raise NotFound(f"model '{requested}' not found; `qwendesk models` lists what is available")


def _stream(request: dict[str, Any]) -> bool:
    return request.get("stream") is not False  # Ollama streams unless told not to


# ---- listing ------------------------------------------------------------------------------------------------
@router.get("/")
@router.head("/")
async def root() -> PlainTextResponse:
    return PlainTextResponse("Ollama is running")  # the text apps probe for


@router.get("/api/version")
async def version() -> dict[str, str]:
    return {"version": OLLAMA_VERSION}


@router.get("/api/tags")
async def tags(request: Request) -> dict[str, Any]:
    return {"models": [shapes.tag_entry(v) for v in _manager(request).views() if shapes.listed(v)]}


@router.get("/api/ps")
async def ps(request: Request) -> dict[str, Any]:
    manager = _manager(request)
    keep = manager.settings.keep_alive
    running = []
    for name in sorted(manager.models):
        entry = manager.models[name]
        if entry.state == ModelState.RUNNING and shapes.listed(entry.view()):
            left = max(keep - (time.monotonic() - entry.last_used), 0) if entry.on_demand and keep else None
            running.append(shapes.running_entry(entry.view(), left))
    return {"models": running}


@router.post("/api/show")
async def show(request: Request) -> dict[str, Any]:
    body = await json_body(request)
    entry = resolve(_manager(request), body.get("model") or body.get("name"))
    template = entry.files.info.chat_template if entry.files.info else None
    return shapes.show(entry.view(), template)


# ---- generation ---------------------------------------------------------------------------------------------
async def _load_or_unload(request: Request, entry: ModelEntry, body: dict[str, Any]) -> dict[str, Any]:
    """An empty prompt loads the model, or with keep_alive 0 stops it (as Ollama does)."""
    manager = _manager(request)
    if body.get("keep_alive") in (0, "0", "0s", "0m"):
        await manager.stop(entry.name)
        reason = "unload"
    else:
        await manager.start(entry.name, on_demand=True)
        reason = "load"
    reply = {"model": body["model"], "created_at": shapes.now_iso(), "done": True, "done_reason": reason}
    return (
        {**reply, "message": {"role": "assistant", "content": ""}}
        if "messages" in body
        else {**reply, "response": ""}
    )


@router.post("/api/chat", response_model=None)
async def chat(request: Request) -> Response | dict[str, Any]:
    body = await json_body(request)
    entry = resolve(_manager(request), body.get("model"))
    if not body.get("messages"):
        return await _load_or_unload(request, entry, body)
    started, stream = time.monotonic(), _stream(body)
    return await forward_rewritten(
        request,
        "/v1/chat/completions",
        shapes.chat_request(body, entry.name, stream),
        on_json=lambda data: shapes.reply(data, body["model"], started, "chat"),
        on_event=lambda: shapes.ReplyStream(body["model"], started, "chat"),
        ndjson=True,
    )


@router.post("/api/generate", response_model=None)
async def generate(request: Request) -> Response | dict[str, Any]:
    body = await json_body(request)
    entry = resolve(_manager(request), body.get("model"))
    if not body.get("prompt") and not body.get("images"):
        return await _load_or_unload(request, entry, body)
    started, stream = time.monotonic(), _stream(body)
    path, openai_body = shapes.generate_request(body, entry.name, stream)
    return await forward_rewritten(
        request,
        path,
        openai_body,
        on_json=lambda data: shapes.reply(data, body["model"], started, "generate"),
        on_event=lambda: shapes.ReplyStream(body["model"], started, "generate"),
        ndjson=True,
    )


@router.post("/api/embed")
async def embed(request: Request) -> Response:
    body = await json_body(request)
    entry = resolve(_manager(request), body.get("model"))
    texts = body.get("input")
    if not isinstance(texts, (str, list)):
        raise BadRequest("input must be a string or a list of strings")
    openai_body: dict[str, Any] = {"model": entry.name, "input": texts}
    if body.get("dimensions"):
        openai_body["dimensions"] = body["dimensions"]
    started = time.monotonic()
    return await forward_rewritten(
        request,
        "/v1/embeddings",
        openai_body,
        on_json=lambda data: shapes.embed_reply(data, body["model"], started),
        service="embeddings",
    )


@router.post("/api/embeddings")
async def embeddings(request: Request) -> Response:
    """The older single-text endpoint: `prompt` -> `embedding`."""
    body = await json_body(request)
    entry = resolve(_manager(request), body.get("model"))
    openai_body = {"model": entry.name, "input": str(body.get("prompt") or "")}
    return await forward_rewritten(
        request,
        "/v1/embeddings",
        openai_body,
        on_json=lambda data: {"embedding": (data.get("data") or [{}])[0].get("embedding", [])},
        service="embeddings",
    )


@router.api_route("/api/{action}", methods=["POST", "DELETE"], include_in_schema=False)
async def model_management(action: str) -> JSONResponse:
    """Ollama's model management has no counterpart here: models are files in qwendesk's folders."""
    if action not in ("pull", "push", "create", "copy", "delete"):
        raise NotFound(f"404 page not found: /api/{action}")
    return JSONResponse(
        {
            "error": f"qwendesk's Ollama-compatible API does not {action} models. Use `qwendesk pull` or put GGUF "
            "files into the models folder (`qwendesk models` lists them)."
        },  # fmt: skip
        status_code=501,
    )


# ---- the app --------------------------------------------------------------------------------------------------
def create_ollama_app(settings: Settings, manager: ModelManager) -> FastAPI:
    """The Ollama-compatible app over the daemon's manager (its lifespan belongs to the main app)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.openai_http = new_http_client()
        try:
            yield
        finally:
            await app.state.openai_http.aclose()

    app = FastAPI(title="qwendesk (Ollama-compatible)", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)  # fmt: skip
    app.state.settings = settings
    app.state.manager = manager
    app.add_middleware(SecurityMiddleware, settings=settings, port=settings.ollama_port)

    @app.exception_handler(QwendeskError)
    async def on_error(request: Request, exc: QwendeskError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": describe_problems(list(exc.errors()))}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s (Ollama-compatible API)", request.url.path)
        message = f"Internal error: {exc}. See the daemon log in {settings.log_dir}."
        return JSONResponse({"error": message}, status_code=500)

    app.include_router(router)
    return app
