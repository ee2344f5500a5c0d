"""The control API used by the CLI and the tray: models, start/stop, status, events."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from qwendesk.models.folder import add_file

from ..errors import NotFound
from ..lifecycle.manager import ModelManager
from ..schemas import AddRequest, ModelView, StartRequest

router = APIRouter()


def _manager(request: Request) -> ModelManager:
    return request.app.state.manager


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/status")
async def status(request: Request) -> dict[str, Any]:
    return _manager(request).status()


@router.get("/api/config")
async def config(request: Request) -> dict[str, Any]:
    return request.app.state.settings.public_dict()


@router.get("/api/models")
async def list_models(request: Request) -> dict[str, list[ModelView]]:
    return {"models": _manager(request).views()}


@router.get("/api/models/{name}")
async def get_model(name: str, request: Request) -> ModelView:
    return _manager(request).find(name).view()


@router.post("/api/models/{name}/start")
async def start_model(
    name: str, request: Request, body: StartRequest | None = None, wait: bool = True
) -> JSONResponse:
    view = await _manager(request).start(name, body or StartRequest(), wait=wait)
    return JSONResponse(view.model_dump(mode="json"), status_code=200 if wait else 202)


@router.post("/api/models/{name}/stop")
async def stop_model(name: str, request: Request) -> ModelView:
    return await _manager(request).stop(name)


@router.post("/api/models/add")
async def add_model(body: AddRequest, request: Request) -> ModelView:
    """Copy a GGUF into the first models folder and return the model it became."""
    manager = _manager(request)
    folder = manager.settings.model_folders[0]
    target = await asyncio.to_thread(add_file, Path(body.path).expanduser(), folder)
    await manager.folders.rescan()
    for view in manager.views():
        if Path(view.file) in (target, target.resolve()):
            return view
    raise NotFound(f"{target.name} was copied but is not listed; see the daemon log.")


@router.post("/api/shutdown")
async def shutdown(request: Request) -> dict[str, str]:
    """Stop the daemon (and with it Xinference and every model) once this answer is sent."""
    request.app.state.shutdown()
    return {"status": "shutting down"}


@router.get("/api/events")
async def events(request: Request) -> EventSourceResponse:
    """Server-sent events: a `snapshot` first, then `model`, `status` and `snapshot` events on change."""
    manager = _manager(request)

    async def stream():
        async with manager.events.subscribe() as queue:
            yield {"event": "snapshot", "data": json.dumps(manager.snapshot())}
            while True:
                event, data = await queue.get()
                yield {"event": event, "data": json.dumps(data)}

    return EventSourceResponse(stream(), ping=15)
