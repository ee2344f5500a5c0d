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
from .errors import BadRequest, QwendeskError, describe_problems
from .http_errors import error_body, error_response
from .lifecycle.manager import ModelManager
from .routes import anthropic, api, audio, chat, documents, openai, pull, rerank, responses
from .routes.documents import create_documents
from .security import SecurityMiddleware

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, manager: ModelManager, on_shutdown: Callable[[], None] | None = None
) -> FastAPI:
    """Build the app around a manager; `on_shutdown` is what POST /api/shutdown calls."""

    collections = create_documents(settings, manager)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await manager.start_up()
        await collections.start()  # after the models are scanned: it picks its embedding model among them
        try:
            yield
        finally:
            try:
                await collections.stop()
            finally:
                await manager.shut_down()

    # No Swagger UI: FastAPI's loads its script from a CDN into our origin. The schema stays, for tools.
    app = FastAPI(
        title="qwendesk", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url="/api/openapi.json"
    )
    app.state.settings = settings
    app.state.manager = manager
    app.state.documents = collections
    app.state.shutdown = on_shutdown or (lambda: None)
    app.add_middleware(SecurityMiddleware, settings=settings)

    @app.exception_handler(QwendeskError)
    async def on_qwendesk_error(request: Request, exc: QwendeskError) -> JSONResponse:
        return error_response(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problem = BadRequest(f"Bad request: {describe_problems(list(exc.errors()))}")
        return error_response(request.url.path, problem)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Routing answers (unknown path, wrong method): keep Starlette's status.
        code = "not_found" if exc.status_code == 404 else "http_error"
        body = error_body(request.url.path, str(exc.detail), code, exc.status_code)
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        problem = QwendeskError(f"Internal error: {exc}. See the daemon log in {settings.log_dir}.")
        return error_response(request.url.path, problem)

    for module in (api, openai, audio, responses, anthropic, rerank, pull, chat, documents):
        app.include_router(module.router)
    return app
