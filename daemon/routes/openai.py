"""The OpenAI-compatible API at /v1: models, chat completions, completions, embeddings.

Requests are forwarded byte for byte to the model's engine and responses streamed straight back; only the
`model` field of responses is rewritten to the qwendesk name. A stopped model is started on demand.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request, Response

from ..errors import BadRequest, SupervisorError
from ..schemas import ModelView
from .openai_proxy import (
    ModelRewriter,
    StreamedProxyResponse,
    Target,
    new_http_client,
    until_disconnect,
    upstream_error,
)

CLIENT_CLOSED = 499  # nginx's convention: the client went away before the answer


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
    return await _forward(request, "/v1/chat/completions")


@router.post("/completions")
async def completions(request: Request) -> Response:
    return await _forward(request, "/v1/completions")


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    return await _forward(request, "/v1/embeddings")


# ---- forwarding ------------------------------------------------------------------------------------
def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON ({exc}).") from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("The request needs a `model`: one of the ids GET /v1/models lists.")
    return body


async def _target(running: Any) -> Target:
    """The model's own llama-server when the manager launched it (stops on disconnect), else Xinference's API."""
    if running.engine_url:
        return Target(running.engine_url, running.engine_headers, direct=True)
    client = running.client
    return Target(client.endpoint, await client.fresh_headers(), direct=False)


async def _forward(request: Request, path: str) -> Response:
    """Start the model if needed, send the request to its engine, and relay the answer."""
    raw = await request.body()
    body = _parse(raw)
    manager = request.app.state.manager
    entry = manager.find(body["model"])
    name = entry.name
    _check_kind(name, entry.files.registration, path)
    http: httpx.AsyncClient = request.app.state.openai_http
    stack = AsyncExitStack()
    try:
        # The model stays busy (never idle-stopped) until the answer has been relayed.
        # Not raced against a disconnect: a half-cancelled start would leave the model in limbo.
        running = await stack.enter_async_context(manager.using(name))
        target = await _target(running)
        # llama-server ignores `model`: send the client's bytes unchanged. Xinference needs its uid.
        content = raw if target.direct else json.dumps({**body, "model": running.uid}).encode()
        upstream = await _send(request, http, target, path, content, running.uid)
        if upstream is None:
            await stack.aclose()
            return Response(status_code=CLIENT_CLOSED)
        stack.push_async_callback(upstream.aclose)
        rewriter = ModelRewriter(name)
        if upstream.status_code >= 400:
            raise upstream_error(upstream.status_code, await upstream.aread(), name, path)
        if "text/event-stream" in upstream.headers.get("content-type", ""):
            return StreamedProxyResponse(upstream, stack, rewriter)  # it closes the stack when done
        data = await upstream.aread()
        await stack.aclose()
        return Response(rewriter(data), status_code=upstream.status_code, media_type="application/json")
    except BaseException:
        await stack.aclose()
        raise


def _check_kind(name: str, registration: Any, path: str) -> None:
    """Refuse, before starting anything, a request the model cannot answer (chat vs embeddings)."""
    if registration is None:
        return  # an unusable file: `using` explains why
    if path.endswith("/embeddings") and registration.kind != "embedding":
        raise BadRequest(
            f"{name} does not serve embeddings: it is a chat model. Use an embedding model for /v1/embeddings."
        )
    if not path.endswith("/embeddings") and registration.kind == "embedding":
        raise BadRequest(
            f"{name} is an embedding model: it serves /v1/embeddings only. Use a chat model for {path}."
        )


async def _send(
    request: Request, http: httpx.AsyncClient, target: Target, path: str, content: bytes, uid: str
) -> httpx.Response | None:
    """POST to the engine and return once its headers arrive (None if the client left first)."""
    headers = {**target.headers, "content-type": "application/json", "accept-encoding": "identity"}
    upstream_request = http.build_request("POST", target.base + path, content=content, headers=headers)
    started = time.monotonic()
    try:
        return await until_disconnect(request, http.send(upstream_request, stream=True))
    except httpx.HTTPError as exc:
        raise SupervisorError(
            f"The engine of {uid} did not answer ({type(exc).__name__} after {time.monotonic() - started:.1f} s)."
            " It may have crashed; check `qwendesk status` and try again."
        ) from exc
