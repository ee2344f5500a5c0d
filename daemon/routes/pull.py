"""POST /api/pull: download a catalog model into the models folder, progress as server-sent events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse

from qwendesk.models.catalog import Catalog, load_catalog
from qwendesk.models.download import Progress, pull

from ..errors import QwendeskError

log = logging.getLogger(__name__)
router = APIRouter()


class PullRequest(BaseModel):
    name: str = Field(description="Catalog name, e.g. qwen2.5:1.5b-instruct-q4_k_m (see `qwendesk catalog`).")


@router.post("/api/pull")
async def pull_model(body: PullRequest, request: Request) -> EventSourceResponse:
    """Stream `progress` events ({file, done, total, speed, eta, ...}), then `done` {model, path} or `error` {error}.

    An unknown name is a plain 404 before any stream starts. Closing the connection stops the download and
    keeps its `.part` file, so the next pull resumes.
    """
    settings = request.app.state.settings
    catalog = load_catalog(settings.catalog_file)
    release = catalog.resolve(body.name)
    return EventSourceResponse(_pull_events(release.name, settings, catalog), ping=15)


async def _pull_events(name: str, settings: Any, catalog: Catalog) -> AsyncIterator[dict[str, str]]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    cancel = threading.Event()

    def post(event: str, data: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone when the daemon shuts down mid-pull
            loop.call_soon_threadsafe(queue.put_nowait, (event, data))

    def work() -> None:
        try:
            result = pull(
                name,
                settings,
                catalog=catalog,
                cancel=cancel,
                on_progress=lambda p: post("progress", _event(p)),
            )
        except QwendeskError as exc:
            post("error", {"error": exc.message, "code": exc.code})
        except Exception as exc:  # a bug must still end the stream with a message, never hang the tray
            log.exception("pull of %s failed", name)
            post(
                "error", {"error": f"The pull of {name} failed unexpectedly: {exc}", "code": "internal_error"}
            )
        else:
            post(
                "done",
                {
                    "model": result.release.name,
                    "path": str(result.path),
                    "files": [str(p) for p in result.paths],
                    "downloaded": result.downloaded,
                    "already_present": result.already_present,
                },
            )

    # A plain thread, not the shared threadpool: a pull can run for an hour.
    threading.Thread(target=work, name=f"pull {name}", daemon=True).start()
    try:
        while True:
            event, data = await queue.get()
            yield {"event": event, "data": json.dumps(data)}
            if event in ("done", "error"):
                return
    finally:
        cancel.set()  # the client went away (or we are done): stop downloading, keep the .part file


def _event(progress: Progress) -> dict[str, Any]:
    data = progress.as_dict()
    data["speed"] = round(data["speed"], 1)
    data["eta"] = None if data["eta"] is None else round(data["eta"], 1)
    return data
