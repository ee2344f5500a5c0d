"""Images made with Pillow for the vision tests, as bytes and data URLs."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Any

from PIL import Image


def pattern(w: int, h: int, mode: str = "RGB") -> Image.Image:
    """A deterministic, non-flat picture (so encoders cannot cheat and resizing shows)."""
    img = Image.new("RGB", (w, h))
    img.putdata([((x * 7) % 256, (y * 5) % 256, ((x ^ y) * 3) % 256) for y in range(h) for x in range(w)])
    return img.convert(mode) if mode != "RGB" else img


def encode(img: Image.Image, fmt: str, **save: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def png_url(w: int, h: int) -> str:
    return data_url(encode(pattern(w, h), "PNG"))


def decode_url(url: str) -> Image.Image:
    """The image inside a data URL (fully loaded)."""
    head, data = url.split(",", 1)
    img = Image.open(io.BytesIO(base64.b64decode(data)))
    img.load()
    return img


def png_claiming(w: int, h: int) -> bytes:
    """A valid-looking PNG whose header claims w x h pixels but holds almost no data (a bomb's header)."""
    raw = encode(Image.new("L", (1, 1)), "PNG")
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    patched = struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    return raw[:8] + patched + raw[8 + 25 :]


def chat(*parts: dict[str, Any], text: str = "What is this?") -> dict[str, Any]:
    """A chat body with one user message holding `parts` then a text part."""
    return {
        "model": "m",
        "messages": [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}],
    }


def image_part(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}
