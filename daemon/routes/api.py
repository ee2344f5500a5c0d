"""The control API used by the CLI and the tray: models, start/stop, status, events."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from ..errors import BadRequest, Conflict, NotFound
from ..manager import ModelManager
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
    """Copy a GGUF into the first models folder (via a .part name, so the watcher sees it once, whole)."""
    manager = _manager(request)
    source = Path(body.path).expanduser()
    if not source.is_absolute():
        raise BadRequest(f"Give an absolute path (got '{body.path}').")
    if not source.is_file():
        raise NotFound(f"No file at {source}.")
    if source.suffix.lower() != ".gguf":
        raise BadRequest(f"{source.name} is not a .gguf file.")
    folder = manager.settings.model_folders[0]
    target = folder / source.name
    if target.exists():
        raise Conflict(f"{target.name} is already in {folder}.")
    free = shutil.disk_usage(folder).free
    size = source.stat().st_size
    if size > free:
        from ..errors import InsufficientResources

        raise InsufficientResources(
            f"{source.name} needs {size / 2**30:.2f} GiB but only {free / 2**30:.2f} GiB is free on {folder}."
        )
    part = target.with_name(target.name + ".part")
    try:
        await asyncio.to_thread(shutil.copyfile, source, part)
        part.rename(target)
    finally:
        part.unlink(missing_ok=True)
    await manager.rescan()
    for view in manager.views():
        if Path(view.file) == target.resolve() or Path(view.file) == target:
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
