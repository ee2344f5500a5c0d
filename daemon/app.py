"""The FastAPI application: routes, guards, and the one place errors become HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .config import Settings
from .errors import QwendeskError
from .manager import ModelManager
from .routes import api, chat, openai, pull
from .security import SecurityMiddleware

log = logging.getLogger(__name__)


def error_response(path: str, status: int, message: str, code: str) -> JSONResponse:
    """`{"error": msg}` on the control API; OpenAI's `{"error": {...}}` shape under /v1."""
    if path.startswith("/v1"):
        kind = "invalid_request_error" if status < 500 else "server_error"
        body: dict = {"error": {"message": message, "type": kind, "code": code}}
    else:
        body = {"error": message}
    return JSONResponse(body, status_code=status)


def create_app(
    settings: Settings, manager: ModelManager, on_shutdown: Callable[[], None] | None = None
) -> FastAPI:
    """Build the app around a manager; `on_shutdown` is what POST /api/shutdown calls."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await manager.start_up()
        try:
            yield
        finally:
            await manager.shut_down()

    app = FastAPI(title="qwendesk", lifespan=lifespan, docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.state.settings = settings
    app.state.manager = manager
    app.state.shutdown = on_shutdown or (lambda: None)
    app.add_middleware(SecurityMiddleware, settings=settings)

    @app.exception_handler(QwendeskError)
    async def on_qwendesk_error(request: Request, exc: QwendeskError) -> JSONResponse:
        return error_response(request.url.path, exc.status, exc.message, exc.code)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'] if p != 'body') or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        return error_response(request.url.path, 400, f"Bad request: {problems}", "bad_request")

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request.url.path, exc.status_code, str(exc.detail), "http_error")

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(
            request.url.path,
            500,
            f"Internal error: {exc}. See the daemon log in {settings.log_dir}.",
            "internal",
        )

    for module in (api, openai, pull, chat):
        app.include_router(module.router)
    return app
