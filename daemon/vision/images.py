"""Image parts of an OpenAI chat request: decode, check, downscale to the pixel budget, re-encode.

The engine (llama.cpp's mtmd) would take any data URL, fetch http(s) URLs itself (10 MB, 10 s), decode
whatever it gets at full size without applying EXIF rotation, and resize it on the CPU however large it
is. So every image is decoded here first, with Pillow restricted to PNG, JPEG, WebP and GIF: the header's
pixel count is checked before any pixel is decoded (decompression bombs), the image is turned upright
(EXIF), flattened onto white (transparency), cut to its first frame (GIF, animated WebP/PNG) and scaled
down to at most `max_pixels`. The engine then only ever sees a PNG or JPEG data URL within the budget.

The budget in tokens, for Qwen2-VL / Qwen2.5-VL (14-pixel patches, 2x2 merged: 784 pixels a token):
tokens ~= pixels / 784, so the default 401,408 pixels (about 731x548 at 4:3, or 633x633) is at most
~512 image tokens. Qwen3-VL (16-pixel patches: 1024 pixels a token) gets ~392. llama.cpp rounds each
side to whole tokens, so a downscaled image can cost a few tokens more; launching the model with
`image_max_tokens = tokens_cap(max_pixels)` makes the cap exact (for images less elongated than
1:tokens; llama.cpp keeps at least one token a side). Measured on a 2-core x86 CPU (no GPU) with
Qwen2-VL-2B's vision tower (F16, random weights): 64 tokens 3.8 s, 256 tokens 17 s, 529 tokens 42 s,
1024 tokens 133 s to encode, i.e. the default costs about 40 s there; a GPU (Metal) is far faster.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import math
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from ..chat_parts import content_parts
from .errors import BadImage, ImageURLRefused, MediaNotSupported, size_text
from .fetch import fetch_image

FORMATS = ("PNG", "JPEG", "WEBP", "GIF")  # the only decoders Pillow may try on untrusted bytes
PIXELS_PER_TOKEN = 28 * 28  # Qwen2-VL / Qwen2.5-VL: 14-pixel patches, merged 2x2
DEFAULT_MAX_PIXELS = 512 * PIXELS_PER_TOKEN  # 401,408: see the module docstring for the measured cost
DEFAULT_MAX_BYTES = 20 * 2**20  # one image, as sent (after base64 decoding) or downloaded
DEFAULT_MAX_SOURCE_PIXELS = 50_000_000  # decoding this much RGBA takes ~200 MB; 48/50 MP phone photos fit
MAX_ASPECT_RATIO = 200  # Qwen's own image processor refuses more; thinner images break the token cap
JPEG_QUALITY = 90
EXIF_ORIENTATION = 0x0112
IMAGE_TYPES = frozenset({"image_url"})
# llama-server takes these too and downloads their http(s) URLs itself (measured): never pass them on
VIDEO_TYPES = frozenset({"video_url", "input_video"})
_SPACE = re.compile(r"\s")
_DATA_URL = re.compile(r"data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),", re.IGNORECASE)


@dataclass(frozen=True)
class ImageLimits:
    """What an image may be and become (the daemon fills this from its settings)."""

    max_pixels: int = DEFAULT_MAX_PIXELS  # the budget: larger images are scaled down to it
    max_bytes: int = DEFAULT_MAX_BYTES
    max_source_pixels: int = DEFAULT_MAX_SOURCE_PIXELS
    fetch_remote: bool = False  # http(s) URLs are refused unless this is on
    fetch_timeout: float = 10.0


@dataclass(frozen=True)
class ImageNote:
    """What was done to one image part (for logs and tests)."""

    part: str  # "messages[0].content[1]"
    source: str  # "data", "http" or "https"
    format: str  # the decoded format: PNG, JPEG, WEBP or GIF
    original_size: tuple[int, int]
    size: tuple[int, int]  # what the engine gets
    original_bytes: int
    bytes: int
    frames: int  # frames in the source; only the first is kept
    resized: bool
    reencoded: bool  # False: the original bytes went through (the URL itself when already plain)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_parts(body: dict[str, Any]) -> Iterator[tuple[str, int, int, dict[str, Any]]]:
    """(where, message index, part index, part) of every `image_url` content part."""
    return content_parts(body, IMAGE_TYPES)


def has_media(body: dict[str, Any]) -> bool:
    """Whether the request carries image (or video) parts: it needs a vision model and prepare_images."""
    return next(content_parts(body, IMAGE_TYPES | VIDEO_TYPES), None) is not None


def prepare_images(
    body: dict[str, Any], limits: ImageLimits | None = None
) -> tuple[dict[str, Any], list[ImageNote]]:
    """The body with every image part checked and rewritten to a PNG/JPEG data URL within the budget.

    The input is not modified; a body without images comes back as is. CPU-bound (decoding, resizing)
    and, with fetching on, blocking on the network: call it from a worker thread.
    Raises BadImage, ImageURLRefused, ImageFetchFailed or MediaNotSupported naming the part.
    """
    limits = limits or ImageLimits()
    for where, _, _, part in content_parts(body, VIDEO_TYPES):  # before any decoding: refusing is cheap
        raise MediaNotSupported(
            f"{where}: {part['type']} parts are not supported. Send still images as image_url parts "
            "(for a video, a few frames)."
        )
    found = list(image_parts(body))
    if not found:
        return body, []
    out = copy.deepcopy(body)  # the base64 strings themselves are shared, not copied
    notes = []
    for where, i, j, part in found:
        url, note = prepare_image(_url_of(part, where), where, limits)
        new_part = dict(part)
        old = part.get("image_url")
        # OpenAI's shape is {"url": ...}; a bare string (some clients) is normalised to it
        new_part["image_url"] = {**old, "url": url} if isinstance(old, dict) else {"url": url}
        out["messages"][i]["content"][j] = new_part
        notes.append(note)
    return out, notes


def _url_of(part: dict[str, Any], where: str) -> str:
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url.strip():
        raise BadImage(
            f'{where}: the image part has no URL. Send {{"type": "image_url", "image_url": {{"url": '
            '"data:image/png;base64,..."}}.'
        )
    return url.strip()


def prepare_image(url: str, where: str, limits: ImageLimits) -> tuple[str, ImageNote]:
    """One image URL -> (data URL for the engine, what was done)."""
    raw, source = _load(url, where, limits)
    image, fmt, frames, rotated, original_size = _decode(raw, where, limits)
    image, flattened = _flatten(image)
    image, resized = _downscale(image, limits.max_pixels)
    keep = fmt in ("PNG", "JPEG") and not (resized or rotated or flattened or frames > 1)
    if keep:  # already what the engine reads, within budget: the same bytes, no generation loss
        data_url, size = _as_data_url(url, raw, fmt), len(raw)
    else:
        data_url, size = _encode(image, lossy=fmt == "JPEG")
    note = ImageNote(
        part=where, source=source, format=fmt, original_size=original_size, size=image.size,
        original_bytes=len(raw), bytes=size, frames=frames, resized=resized, reencoded=not keep,
    )  # fmt: skip
    return data_url, note


def _as_data_url(url: str, raw: bytes, fmt: str) -> str:
    """`url` itself when it is already the plain form llama.cpp parses (lower-case `;base64`, no line
    breaks), else the same bytes re-wrapped (fetched images, wrapped base64, odd spelling)."""
    head = f"data:image/{fmt.lower()};base64,"
    if url.startswith(head) and not _SPACE.search(url):
        return url
    return head + base64.b64encode(raw).decode("ascii")


def _load(url: str, where: str, limits: ImageLimits) -> tuple[bytes, str]:
    """The image bytes and where they came from ("data", "http", "https")."""
    scheme = url.split(":", 1)[0].lower() if ":" in url[:12] else ""
    if scheme == "data":
        return _from_data_url(url, where, limits.max_bytes), "data"
    if scheme in ("http", "https"):
        if not limits.fetch_remote:
            raise ImageURLRefused(
                f"{where}: remote image URLs are not fetched ({_short(url)}). Send the image inline as a data "
                "URL (data:image/png;base64,...), or turn on the image_fetch setting to let qwendesk download "
                "images."
            )
        return fetch_image(url, where=where, max_bytes=limits.max_bytes, timeout=limits.fetch_timeout), scheme
    hint = "a base64 string without the data: prefix" if not scheme else f"the {scheme}: scheme"
    raise ImageURLRefused(
        f"{where}: unsupported image URL ({hint}). Send a data URL: data:image/png;base64,... "
        "(PNG, JPEG, WebP or GIF)."
    )


def _short(url: str, n: int = 80) -> str:
    return url if len(url) <= n else url[: n - 3] + "..."


def _from_data_url(url: str, where: str, max_bytes: int) -> bytes:
    m = _DATA_URL.match(url)
    if not m:
        raise BadImage(f"{where}: malformed data URL; expected data:image/png;base64,<data>.")
    mime = m["mime"].strip().lower()
    if not mime.startswith("image/"):
        raise BadImage(
            f"{where}: the data URL holds '{mime or 'text/plain'}', not an image. Send PNG, JPEG, WebP or GIF "
            "as data:image/<type>;base64,<data>."
        )
    if "base64" not in m["params"].lower().split(";"):
        raise BadImage(f"{where}: the data URL is not base64-encoded; use data:{mime};base64,<data>.")
    data = url[m.end() :]
    if len(data) * 3 // 4 > max_bytes + 3:  # refuse before decoding: base64 is 4 characters per 3 bytes
        raise BadImage(f"{where}: the image is larger than {size_text(max_bytes)}. Send a smaller image.")
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)  # clients may wrap base64 lines
    except (binascii.Error, ValueError):
        raise BadImage(f"{where}: the data URL's base64 is invalid (corrupt or truncated).") from None
    if not raw:
        raise BadImage(f"{where}: the data URL is empty.")
    if len(raw) > max_bytes:
        raise BadImage(f"{where}: the image is larger than {size_text(max_bytes)}. Send a smaller image.")
    return raw


def _decode(
    raw: bytes, where: str, limits: ImageLimits
) -> tuple[Image.Image, str, int, bool, tuple[int, int]]:
    """(first frame, upright and fully decoded; format; frame count; whether EXIF turned it; the
    upright size as sent, which JPEG's reduced-scale decoding may have shrunk)."""
    try:
        image = Image.open(io.BytesIO(raw), formats=FORMATS)  # reads the header only
    except UnidentifiedImageError:
        raise BadImage(
            f"{where}: the data is not a PNG, JPEG, WebP or GIF image (corrupt, or another format). "
            "Convert it to PNG or JPEG and send it again."
        ) from None
    except Image.DecompressionBombError:  # Pillow's own ceiling (2x Image.MAX_IMAGE_PIXELS) hit at open
        raise BadImage(f"{where}: {_too_many_pixels(limits)}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"{where}: the image cannot be read ({exc}).") from None
    fmt = "JPEG" if image.format == "MPO" else (image.format or "?")  # MPO: a camera's JPEG plus extra views
    w, h = image.size
    if w < 1 or h < 1:
        raise BadImage(f"{where}: the {fmt} image has no pixels ({w}x{h}).")
    if w * h > limits.max_source_pixels:  # before a single pixel is decoded
        raise BadImage(
            f"{where}: the {fmt} image is {w}x{h} ({w * h / 1e6:.1f} megapixels); {_too_many_pixels(limits)}"
        )
    if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        raise BadImage(
            f"{where}: the {fmt} image is {w}x{h}, more than {MAX_ASPECT_RATIO} times as long as it is wide. "
            "Crop it into parts."
        )
    frames = int(getattr(image, "n_frames", 1))
    if fmt == "JPEG" and w * h > 4 * limits.max_pixels:
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale, never below the requested size: a 48 MP photo for the
        # default budget decodes at 1/8 (1/64 of the memory) and is ready in 105 ms instead of 354 ms here
        scale = math.sqrt(limits.max_pixels / (w * h))
        image.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
    try:
        image.load()  # the whole first frame: truncated or corrupt data fails here
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImage(f"{where}: the {fmt} image is corrupt or truncated ({exc}).") from None
    rotated = orientation in range(2, 9)
    if rotated:  # phones store photos sideways plus a tag; the engine ignores the tag
        image = ImageOps.exif_transpose(image)
    return image, fmt, frames, rotated, ((h, w) if orientation in range(5, 9) else (w, h))


def _too_many_pixels(limits: ImageLimits) -> str:
    return f"images may have at most {limits.max_source_pixels / 1e6:g} megapixels. Scale it down before sending."


def _flatten(image: Image.Image) -> tuple[Image.Image, bool]:
    """RGB or L (whether it changed); transparency becomes white (the engine would show whatever colour
    lies under it, often black)."""
    if image.mode in ("RGB", "L"):
        return image, False
    if image.mode.startswith("I"):  # 16-bit greyscale PNG: scale to 8 bits (a plain convert clips at 255)
        return image.convert("I").point(lambda v: v * (1 / 256)).convert("L"), True
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), True
    return image.convert("RGB"), True


def _downscale(image: Image.Image, max_pixels: int) -> tuple[Image.Image, bool]:
    """At most `max_pixels`, aspect ratio kept; smaller images are left alone (the engine upscales)."""
    w, h = image.size
    if w * h <= max_pixels:
        return image, False
    scale = math.sqrt(max_pixels / (w * h))
    size = (max(1, math.floor(w * scale)), max(1, math.floor(h * scale)))
    # reducing_gap: box-reduce by whole factors first, then Lanczos; far faster on big photos
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), True


def _encode(image: Image.Image, *, lossy: bool) -> tuple[str, int]:
    """A data URL: JPEG for photos that were JPEG, PNG for everything else (screenshots stay sharp)."""
    buf = io.BytesIO()
    if lossy:
        image.save(buf, "JPEG", quality=JPEG_QUALITY)
        mime = "image/jpeg"
    else:
        image.save(buf, "PNG")
        mime = "image/png"
    data = buf.getvalue()
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", len(data)


def tokens_cap(max_pixels: int, patch_size: int = 14, merge: int = 2) -> int:
    """The launch kwarg `image_max_tokens` that matches a pixel budget (Qwen2/2.5-VL: 14 and 2;
    Qwen3-VL: 16 and 2; read them from the mmproj's clip.vision.patch_size / spatial_merge_size)."""
    return max(1, max_pixels // (patch_size * merge) ** 2)
