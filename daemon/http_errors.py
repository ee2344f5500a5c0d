"""The one place an error becomes an HTTP response: the status of each error code, and the body shapes."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from .errors import QwendeskError

# A code not listed is a bug on our side: 500.
STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "config_error": 400,
    "collection_folder_invalid": 400,
    "bad_catalog": 400,
    "context_length_exceeded": 400,
    "bad_image": 400,
    "image_url_refused": 400,
    "image_fetch_failed": 400,
    "media_not_supported": 400,
    "vision_not_supported": 400,
    "bad_audio": 400,
    "audio_too_long": 400,
    "speech_unsupported": 400,
    "audio_not_supported": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "not_in_catalog": 404,
    "collection_not_found": 404,
    "upload_too_large": 413,
    "conflict": 409,
    "already_running": 409,
    "pull_in_progress": 409,
    "collection_exists": 409,
    "bad_model_file": 422,
    "document_unreadable": 422,
    "pull_cancelled": 499,
    "missing_dependency": 501,
    "download_error": 502,
    "engine_error": 502,
    "embedding_failed": 502,
    "xinference_unavailable": 503,
    "documents_unavailable": 503,
    "model_load_failed": 503,
    "daemon_not_running": 503,
    "not_enough_memory": 507,
    "not_enough_space": 507,
}


def status_for(error: QwendeskError) -> int:
    """The HTTP status an error is answered with."""
    return STATUS_BY_CODE.get(error.code, 500)


def error_body(path: str, message: str, code: str, status: int) -> dict[str, Any]:
    """`{"error": msg, "code": code}` on the control API; OpenAI's `{"error": {...}}` shape under /v1."""
    if path.startswith("/v1"):
        kind = "invalid_request_error" if status < 500 else "server_error"
        return {"error": {"message": message, "type": kind, "code": code}}
    return {"error": message, "code": code}


def error_response(path: str, error: QwendeskError) -> JSONResponse:
    status = status_for(error)
    return JSONResponse(error_body(path, error.message, error.code, status), status_code=status)
