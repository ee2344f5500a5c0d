"""The local chat page: `/` and `/chat` serve it, `/static/*` its assets (all shipped in the package)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from ..errors import NotFound

STATIC = Path(__file__).resolve().parent.parent / "static"
# The page talks only to its own origin; nothing loads from elsewhere, and no one may frame it.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/chat")
async def chat_alias() -> RedirectResponse:
    return RedirectResponse("/", status_code=307)


@router.get("/static/{name:path}")
async def asset(name: str) -> FileResponse:
    """One file from the static folder (never outside it)."""
    path = (STATIC / name).resolve()
    if not path.is_relative_to(STATIC) or not path.is_file():
        raise NotFound(f"No asset named '{name}'.")
    media_type = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media_type, headers=PAGE_HEADERS)
