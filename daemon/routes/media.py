"""Images and audio in chat requests: only a model that can see (or hear) gets them, each checked first.

The body is rewritten only when it carries image (or video) parts, which are scaled to the pixel budget; audio
parts are checked and passed on as sent; any other request reaches the engine as the client sent it.
llama-server would download an http(s) image URL by itself, so no such URL ever reaches it.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio
from fastapi import Request

from ..config import Settings
from ..errors import NotFound
from ..speech.hearing import AUDIO_MARKER, check_audio_parts
from ..vision.errors import ImageURLRefused, vision_not_supported
from ..vision.images import ImageLimits, has_media, prepare_images
from .relay import json_body, with_body

# A cheap look at the raw bytes before any parsing: most requests carry no media at all.
_MEDIA_MARKERS = (
    b'"image_url"',
    b'"video_url"',
    b'"input_video"',
    b'"input_image"',
    b'"image"',
    AUDIO_MARKER,
)


def limits(settings: Settings) -> ImageLimits:
    return ImageLimits(
        max_pixels=settings.image_max_pixels,
        max_bytes=settings.image_max_bytes,
        max_source_pixels=settings.image_max_source_pixels,
        fetch_remote=settings.image_fetch,
        fetch_timeout=settings.image_fetch_timeout,
    )


def vision_models(manager: Any) -> list[str]:
    return [v.name for v in manager.views() if "vision" in v.abilities]


async def prepare_chat_media(request: Request) -> Request:
    """The request as the engine should get it: images checked and scaled, or a 400 naming the part."""
    raw = await request.body()
    if not any(marker in raw for marker in _MEDIA_MARKERS):
        return request
    body = await json_body(request)
    manager = request.app.state.manager
    model = body.get("model")
    try:
        view = manager.find(model).view() if isinstance(model, str) else None
    except NotFound:
        return request  # the forward answers the unknown model in its usual words
    if view is not None and AUDIO_MARKER in raw:
        await check_audio(request, body, view)
    if not has_media(body):
        return request
    if view is not None and "vision" not in view.abilities:
        raise vision_not_supported(view.name, vision_models(manager))
    prepared, _notes = await anyio.to_thread.run_sync(
        prepare_images, body, limits(request.app.state.settings)
    )
    return with_body(request, prepared)


async def check_audio(request: Request, body: dict[str, Any], view: Any) -> None:
    """Refuse `input_audio` parts for a model that cannot hear, or that are not the audio they claim."""
    views = request.app.state.manager.views()
    check = functools.partial(
        check_audio_parts,
        body,
        "audio" in view.abilities,
        [v.name for v in views if "audio" in v.abilities],
        model=view.name,
        speech_models=[v.name for v in views if "transcribe" in v.abilities],
        max_bytes=int(request.app.state.settings.speech_max_upload_mib * 2**20),
    )
    await anyio.to_thread.run_sync(check)


def refuse_remote_images(body: dict[str, Any], settings: Settings) -> None:
    """Responses and Messages requests: their image parts are passed on as sent, so no http(s) URL may be in one."""
    if settings.image_fetch:
        return
    for where, url in _image_urls(body, "body"):
        if url.lower().startswith(("http://", "https://")):
            raise ImageURLRefused(
                f"{where}: qwendesk does not download images from the web. Send the image inline as base64 "
                "data, or turn on the image_fetch setting."
            )


def _image_urls(node: Any, where: str):
    """(where, url) of every image URL in a Responses (`input_image`) or Messages (`image` source) body."""
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "input_image" and isinstance(node.get("image_url"), str):
            yield where, node["image_url"]
        source = node.get("source")
        if kind == "image" and isinstance(source, dict) and source.get("type") == "url":
            yield where, str(source.get("url", ""))
        for key, value in node.items():
            yield from _image_urls(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _image_urls(value, f"{where}[{i}]")
