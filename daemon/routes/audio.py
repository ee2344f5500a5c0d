"""OpenAI's speech-to-text API at /v1/audio: transcriptions and translations, answered by a speech model.

The multipart body is read once, bounded by `speech_max_upload_mib` (a Content-Length over it is refused before
a byte is read), its `model` field picked out without parsing the audio (speech/forms.py), and then sent
unchanged to the model's speech worker (started on demand like any model); the worker's answer, error or not,
comes back as it is (status, body and content type). Decoding, format checks and the transcript formats
(json, text, srt, vtt, verbose_json) are the worker's.
"""

from __future__ import annotations

import time

import httpx
from fastapi import APIRouter, Request, Response

from ..disconnects import until_disconnect
from ..errors import BadRequest, EngineError
from ..lifecycle.manager import ModelManager, Service
from ..speech.forms import FieldReader
from ..speech.limits import FORM_SLACK, check_upload_size
from .proxy import CLIENT_CLOSED, describe

router = APIRouter(prefix="/v1/audio", tags=["openai"])

# What a relayed answer keeps of the worker's headers.
_RELAYED_HEADERS = ("content-type",)


@router.post("/transcriptions")
async def transcriptions(request: Request) -> Response:
    """Speech to text in the language spoken (OpenAI's form: file, model, language, prompt, response_format, ...)."""
    return await forward_audio(request, "/v1/audio/transcriptions", "transcriptions")


@router.post("/translations")
async def translations(request: Request) -> Response:
    """Speech in any language to English text (multilingual Whisper models)."""
    return await forward_audio(request, "/v1/audio/translations", "translations")


async def read_upload(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """(the whole body, its `model` field); UploadTooLarge as soon as it passes the limit, BadRequest when it
    is not a multipart form or names no model."""
    content_type = request.headers.get("content-type", "")
    reader = FieldReader(content_type, "model")  # refuses anything but multipart/form-data at once
    limit = max_bytes + FORM_SLACK  # the form's framing and small fields around a file of the maximum size
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        check_upload_size(int(length), max_bytes)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            check_upload_size(received, max_bytes)
        chunks.append(chunk)
        reader.feed(chunk)  # stops parsing once the field has been read
    if not reader.done or not reader.value:
        raise BadRequest(
            "The request needs a `model` field naming a speech model (GET /v1/models lists them with the "
            "capability `transcriptions`)."
        )
    return b"".join(chunks), reader.value


async def forward_audio(request: Request, path: str, service: Service) -> Response:
    """Start the speech model if needed, send it the client's body unchanged, relay its answer."""
    settings = request.app.state.settings
    body, model = await read_upload(request, int(settings.speech_max_upload_mib * 2**20))
    manager: ModelManager = request.app.state.manager
    http: httpx.AsyncClient = request.app.state.openai_http
    headers = {"content-type": request.headers["content-type"], "accept-encoding": "identity"}
    async with manager.using(model, service, path) as endpoint:
        started = time.monotonic()
        try:
            upstream = await until_disconnect(
                request,
                http.post(endpoint.url + path, content=body, headers={**endpoint.headers, **headers}),
            )
        except httpx.HTTPError as exc:
            manager.engine_failed(endpoint, describe(exc))
            raise EngineError(
                f"The speech worker of {endpoint.name} did not answer ({describe(exc)} after "
                f"{time.monotonic() - started:.1f} s). Try again: the next request starts it again."
            ) from exc
    if upstream is None:  # the client left; closing the connection abandoned the transcription
        return Response(status_code=CLIENT_CLOSED)
    if upstream.status_code == 401:  # our own key refused: a bug, not the client's fault
        raise EngineError(
            f"The speech worker of {endpoint.name} refused the daemon's key; stop and start it."
        )
    kept = {k: v for k, v in upstream.headers.items() if k.lower() in _RELAYED_HEADERS}
    return Response(upstream.content, status_code=upstream.status_code, headers=kept)
